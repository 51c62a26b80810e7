"""Says so when a subscribed topic does not exist.

Kafka's share-group coordinator just assigns nothing for a topic it does not know (the
heartbeat carries no error), so without this a consumer of a misspelt or not yet created
topic idles without a word.  ``TopicWatch`` (task) asks metadata for the subscribed topics
(never creating them), logs one WARNING per missing topic, repeats it every
``warn_every`` seconds while the topic stays missing, and one INFO once it appears - the
coordinator then assigns its partitions by itself.  While a topic is missing it looks again
every ``check_every`` seconds; otherwise only when the subscription changes or every
``recheck_every`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from aioshare.client.cluster import Cluster
from aioshare.client.metadata import TopicRef
from aioshare.protocol.errors import BrokerError, KafkaError, UnknownTopicOrPartitionError

__all__ = ["TopicWatch"]

log = logging.getLogger(__name__)


class TopicWatch:
    def __init__(
        self,
        cluster: Cluster,
        subscription: Callable[[], frozenset[str]],
        *,
        check_every: float = 5.0,
        warn_every: float = 300.0,
        recheck_every: float = 300.0,
    ) -> None:
        self._cluster = cluster
        self._subscription = subscription
        self.check_every = check_every
        self.warn_every = warn_every
        self.recheck_every = recheck_every
        self._changed = asyncio.Event()
        self.missing: dict[str, float] = {}  # topic -> when its last WARNING was logged

    def subscription_changed(self) -> None:
        self._changed.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()
            topics = self._subscription()
            for gone in [t for t in self.missing if t not in topics]:
                del self.missing[gone]  # unsubscribed: no longer our concern
            wait = self.recheck_every
            if topics:
                try:
                    errors = await self._cluster.refresh(sorted(topics))
                except KafkaError as exc:
                    # Brokers unreachable: the cluster logs that; look again soon.
                    log.debug("subscribed topics not checked: %s", exc)
                    wait = self.check_every
                else:
                    self._note(topics, errors, loop.time())
                    if self.missing:
                        wait = self.check_every
            try:
                async with asyncio.timeout(wait):
                    await self._changed.wait()
            except TimeoutError:
                pass

    def _note(self, topics: frozenset[str], errors: Mapping[TopicRef, BrokerError], now: float) -> None:
        for topic in sorted(topics):
            unknown = isinstance(errors.get(topic), UnknownTopicOrPartitionError)
            warned = self.missing.get(topic)
            if unknown:
                if warned is None or now - warned >= self.warn_every:
                    log.warning(
                        "subscribed topic %r does not exist; nothing will be consumed from it until "
                        "it is created",
                        topic,
                    )
                    self.missing[topic] = now
            elif warned is not None:
                del self.missing[topic]
                log.info("subscribed topic %r exists now", topic)
