"""ShareConsumer scenarios against a real Apache Kafka >= 4.2 (or the embedded broker).

Selected by the environment variable ``AIOSHARE_TEST_BOOTSTRAP``:

* unset: every test in this directory is skipped (CI has no Kafka);
* ``host:port[,host:port...]``: a running Kafka >= 4.2 with share groups enabled (the default
  from 4.2 on), e.g. the one of ``docs/kafka-4.2-compose.yml``;
* ``embedded``: aioshare's own ``EmbeddedBroker``, started per test with Kafka's default
  broker configs - this proves the tests themselves where no Kafka is at hand.

The tests only use what a real cluster offers: topics and group configs through
``ShareAdmin``, records through librdkafka's producer, and broker defaults (lock duration
30 s, minimum 15 s, heartbeat interval 5 s).  Topic and group names are uuid-suffixed, so
runs against a long-lived cluster never see each other's records or offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from aioshare.admin import ShareAdmin

confluent_kafka = pytest.importorskip("confluent_kafka")

BOOTSTRAP_ENV = "AIOSHARE_TEST_BOOTSTRAP"
_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Marked at collection, so no fixture (and no connection attempt) runs for a skipped test.
    if os.environ.get(BOOTSTRAP_ENV):
        return
    skip = pytest.mark.skip(
        reason=f"{BOOTSTRAP_ENV} is not set: these tests need a Kafka >= 4.2 broker "
        f"({BOOTSTRAP_ENV}=host:port) or {BOOTSTRAP_ENV}=embedded"
    )
    for item in items:
        if _HERE in Path(str(item.path)).parents:
            item.add_marker(skip)


class KafkaTarget:
    """The cluster one test runs against, with the few setup steps the scenarios need."""

    def __init__(self, name: str, bootstrap: str, admin: ShareAdmin) -> None:
        self.name = name
        self.bootstrap = bootstrap
        self.admin = admin
        self._topics: list[str] = []
        self._groups: list[str] = []

    async def new_topic(self, partitions: int = 1) -> str:
        name = f"aioshare-it-{uuid.uuid4().hex[:10]}"
        await self.admin.create_topic(name, partitions, replication_factor=1)
        self._topics.append(name)
        return name

    async def new_group(self, **configs: str) -> str:
        """A fresh share group reading from the start of its topics.

        Kafka's default ``share.auto.offset.reset`` is ``latest``, evaluated when a partition's
        share state is first loaded, and the scenarios produce before they consume.
        """
        group = f"aioshare-it-{uuid.uuid4().hex[:10]}"
        settings = {"share.auto.offset.reset": "earliest", **configs}
        await self.admin.alter_group_config(group, settings)
        self._groups.append(group)
        return group

    async def produce(
        self,
        topic: str,
        values: Sequence[bytes],
        *,
        partition: Callable[[int], int] | None = None,
        records_per_batch: int = 10_000,
    ) -> None:
        """Produce ``values`` (keys are their indexes); ``partition(i)`` picks a partition.

        ``records_per_batch`` caps librdkafka's log batches: Kafka acquires whole batches in
        batch_optimized mode, so small batches are how several members get a share of one
        partition.
        """
        producer: Any = confluent_kafka.Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "linger.ms": 5,
                "batch.num.messages": records_per_batch,
                "enable.idempotence": False,
            }
        )

        def run() -> int:
            # librdkafka blocks; it runs on a worker thread so an embedded broker on this
            # event loop keeps serving.
            for i, value in enumerate(values):
                kwargs: dict[str, Any] = {} if partition is None else {"partition": partition(i)}
                while True:
                    try:
                        producer.produce(topic, value, key=str(i).encode(), **kwargs)
                        break
                    except BufferError:
                        producer.poll(0.05)
            left: int = producer.flush(60)
            return left

        left = await asyncio.to_thread(run)
        assert left == 0, f"{left} records were not acknowledged by the cluster"

    async def cleanup(self) -> None:
        """Best effort: a long-lived cluster should not collect test topics and groups."""
        if self._groups:
            with contextlib.suppress(Exception):
                await self.admin.delete_share_groups(self._groups)
        for topic in self._topics:
            with contextlib.suppress(Exception):
                await self.admin.delete_topic(topic)


@pytest.fixture
async def kafka() -> AsyncIterator[KafkaTarget]:
    target = os.environ.get(BOOTSTRAP_ENV, "")
    if not target:
        pytest.skip(f"{BOOTSTRAP_ENV} is not set")
    broker: Any = None
    if target == "embedded":
        from aioshare.broker.embedded import EmbeddedBroker

        # Kafka's broker defaults, deliberately: the tests must hold on a stock Kafka 4.2.
        broker = EmbeddedBroker(nodes=3)
        await broker.start()
        if broker.registry.lookup(78, 1) is None:
            await broker.close()
            pytest.skip("this EmbeddedBroker does not serve ShareFetch")
        bootstrap = broker.bootstrap_servers
    else:
        bootstrap = target
    admin = ShareAdmin(bootstrap)
    try:
        await admin.start()
        made = KafkaTarget("embedded" if broker is not None else "kafka", bootstrap, admin)
        try:
            yield made
        finally:
            await made.cleanup()
    finally:
        await admin.close()
        if broker is not None:
            await broker.close()
