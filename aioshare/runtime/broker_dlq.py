"""Dead letters written by the broker (KIP-1191, Kafka 4.4), with the client-side copy as fallback.

Kafka 4.4 (``share.version`` 2) can keep a share group's dead letters itself: with the group
config ``errors.deadletterqueue.topic.name`` set, every record the group REJECTs - and every
record that runs out of deliveries - is written to that topic by the broker, with Kafka's
``__dlq.errors.*`` headers (``errors.deadletterqueue.copy.record.enable`` adds key and value).
``BrokerDeadLetterSink`` is a ``DeadLetterSink`` that uses it where the cluster has it:

* ``start()`` asks the cluster for its finalized ``share.version``.  From 2 on it sets each
  group's DLQ topic (and the copy of key and value) as group configs, and from then on
  ``send()`` has nothing to do: the runtime's REJECT, which follows a confirmed ``send()``,
  is what makes the broker write the dead letter.  Below 2 it starts ``fallback`` (by
  default a ``KafkaDeadLetterSink`` on the same cluster) and ``send()`` produces the copy
  itself, as without this sink.
* ``mode`` says which one is in use once started (``"broker"`` or ``"client"``).

What changes with the broker's DLQ (docs/runtime.md, "Dead letters written by the broker"):
the copy carries Kafka's headers instead of ``aioshare.dlq.*`` (no exception text, reason or
route); the broker writes it after the REJECT, not before, and logs a failed write instead of
refusing the REJECT; and Kafka dead-letters *every* REJECT of the group and records whose
deliveries ran out while their lock expired - a route's plain reject is dead-lettered too.  The
topic name must start with the broker's ``errors.deadletterqueue.topic.name.prefix`` (``dlq.``
by default; ``topic_prefix`` here, checked when the sink is made, since Kafka only logs it when
a dead letter cannot be written) and be a DLQ topic or auto-creatable; a group config the
broker refuses makes ``start()`` raise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from aioshare.admin import ShareAdmin
from aioshare.protocol.errors import ConfigError
from aioshare.runtime.dlq import DeadLetterSink, KafkaDeadLetterSink

__all__ = ["BROKER_DLQ_SHARE_VERSION", "BrokerDeadLetterSink"]

log = logging.getLogger(__name__)

# ShareVersion.SV_2: the feature level with the share-group dead-letter queue (Kafka 4.4).
BROKER_DLQ_SHARE_VERSION = 2
DLQ_TOPIC_CONFIG = "errors.deadletterqueue.topic.name"
DLQ_COPY_CONFIG = "errors.deadletterqueue.copy.record.enable"


class BrokerDeadLetterSink:
    """See the module docstring.  ``groups`` maps each share group to its dead-letter topic."""

    def __init__(
        self,
        bootstrap_servers: str | Iterable[str],
        groups: Mapping[str, str],
        *,
        fallback: DeadLetterSink | None = None,
        copy_record: bool = True,
        topic_prefix: str = "dlq.",
        **admin_options: Any,
    ) -> None:
        if not groups:
            raise ConfigError("BrokerDeadLetterSink needs at least one group and its dead-letter topic")
        # Kafka checks the prefix only when it writes a dead letter, and then just logs and
        # archives the record: refuse here, where the application can still be fixed.
        # ``topic_prefix`` must be the brokers' errors.deadletterqueue.topic.name.prefix.
        for group, topic in groups.items():
            if topic_prefix and not topic.startswith(topic_prefix):
                raise ConfigError(
                    f"group {group}: dead-letter topic {topic!r} does not start with {topic_prefix!r}, "
                    "the brokers' errors.deadletterqueue.topic.name.prefix (Kafka would archive the "
                    "records without writing them)"
                )
        self._bootstrap = bootstrap_servers
        self._groups = dict(groups)
        self._fallback = fallback
        self._copy_record = copy_record
        self._admin_options = admin_options
        self._topics = set(self._groups.values())
        self.mode: Literal["broker", "client"] | None = None

    async def start(self) -> None:
        if self.mode is not None:
            return
        servers = self._bootstrap if isinstance(self._bootstrap, str) else ",".join(self._bootstrap)
        async with ShareAdmin(servers, **self._admin_options) as admin:
            level = (await admin.finalized_features()).get("share.version", 0)
            if level >= BROKER_DLQ_SHARE_VERSION:
                for group, topic in self._groups.items():
                    settings = {DLQ_TOPIC_CONFIG: topic, DLQ_COPY_CONFIG: str(self._copy_record).lower()}
                    try:
                        await admin.alter_group_config(group, settings)
                    except ConfigError:
                        raise
                    except Exception as exc:
                        raise ConfigError(
                            f"group {group}: the broker refused {DLQ_TOPIC_CONFIG}={topic}: {exc}"
                        ) from exc
                self.mode = "broker"
                log.info(
                    "dead letters of %s are written by the broker (share.version %d)",
                    ", ".join(f"group {g} -> {t}" for g, t in sorted(self._groups.items())),
                    level,
                )
                return
        if self._fallback is None:
            self._fallback = KafkaDeadLetterSink(self._bootstrap)
        await self._fallback.start()
        self.mode = "client"
        log.info(
            "the cluster has no broker-side dead-letter queue (share.version %d < %d, Kafka 4.4+): "
            "the runtime produces dead-letter copies itself",
            level,
            BROKER_DLQ_SHARE_VERSION,
        )

    async def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes | None]],
        timeout: float,  # noqa: ASYNC109
    ) -> None:
        if self.mode == "broker":
            if topic not in self._topics:
                raise ConfigError(
                    f"dead-letter topic {topic!r} is not one this sink configured on the broker "
                    f"({', '.join(sorted(self._topics))})"
                )
            return  # the REJECT that follows makes the broker write it
        if self._fallback is None or self.mode is None:
            raise RuntimeError("the dead-letter sink is not started")
        await self._fallback.send(topic, key=key, value=value, headers=headers, timeout=timeout)

    async def close(self) -> None:
        if self._fallback is not None and self.mode == "client":
            await self._fallback.close()
        self.mode = None
