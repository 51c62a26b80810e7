"""Scenarios against real Apache Kafka, started from Maven's jars (``aioshare.testing.kafka``).

Every test here runs once per version in ``TESTED_KAFKA_VERSIONS`` (the newest 4.2 patch and the
newest release); one cluster per version serves the whole session.  Without a JDK and Maven the
tests skip with one line saying what to install; under CI (``CI`` set) they fail instead.

The broker runs with Kafka's own test-friendly bounds (``TEST_BROKER_CONFIG``: one-second minimum
locks, half-second heartbeats); a scenario picks its group's timings through group configs, as a
user would.  Topic and group names are uuid-suffixed, so scenarios never see each other's records.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import pytest

from aioshare.admin import ShareAdmin
from aioshare.testing.kafka import TESTED_KAFKA_VERSIONS
from aioshare.testing.kafka.cluster import KafkaCluster

confluent_kafka = pytest.importorskip("confluent_kafka")


@pytest.fixture(scope="session", params=TESTED_KAFKA_VERSIONS, ids=lambda v: f"kafka-{v}")
def kafka_cluster(request: pytest.FixtureRequest, real_kafka: Callable[[str], KafkaCluster]) -> KafkaCluster:
    """The session's single-node Kafka of each tested version (tests/conftest.py)."""
    return real_kafka(request.param)


class KafkaTarget:
    """The cluster one test runs against, with the few setup steps the scenarios need."""

    def __init__(self, name: str, bootstrap: str, admin: ShareAdmin) -> None:
        self.name = name
        self.bootstrap = bootstrap
        self.admin = admin
        self._topics: list[str] = []
        self._groups: list[str] = []
        self.version = ""

    async def new_topic(
        self, partitions: int = 1, replication_factor: int = 1, config: Mapping[str, str] | None = None
    ) -> str:
        name = f"aioshare-it-{uuid.uuid4().hex[:10]}"
        await self.admin.create_topic(name, partitions, replication_factor=replication_factor, config=config)
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
        timestamp: Callable[[int], int] | None = None,
    ) -> None:
        """Produce ``values`` (keys are their indexes); ``partition(i)`` picks a partition and
        ``timestamp(i)`` the record's CreateTime in epoch milliseconds (default: now).

        ``records_per_batch`` caps librdkafka's log batches: Kafka acquires whole batches in
        batch_optimized mode, so small batches are how several members get a share of one
        partition.
        """
        producer: Any = confluent_kafka.Producer(
            {
                "bootstrap.servers": self.bootstrap,
                # flush() sends at once; the linger only has to outlast the gaps between
                # produce() calls, so small scenarios usually form one log batch.  Where a
                # test needs exactly one, it uses tests.kit.produce_one_batch.
                "linger.ms": 200,
                "batch.num.messages": records_per_batch,
                "enable.idempotence": False,
            }
        )

        def run() -> int:
            # librdkafka blocks; it runs on a worker thread so an embedded broker on this
            # event loop keeps serving.
            for i, value in enumerate(values):
                kwargs: dict[str, Any] = {} if partition is None else {"partition": partition(i)}
                if timestamp is not None:
                    kwargs["timestamp"] = timestamp(i)
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


@contextlib.asynccontextmanager
async def target(cluster: KafkaCluster) -> AsyncIterator[KafkaTarget]:
    """A ``KafkaTarget`` on ``cluster``, cleaning up its topics and groups afterwards."""
    admin = ShareAdmin(cluster.bootstrap_servers)
    try:
        await admin.start()
        made = KafkaTarget(f"kafka-{cluster.version}", cluster.bootstrap_servers, admin)
        made.version = cluster.version
        try:
            yield made
        finally:
            await made.cleanup()
    finally:
        await admin.close()


@pytest.fixture
async def kafka(kafka_cluster: KafkaCluster) -> AsyncIterator[KafkaTarget]:
    async with target(kafka_cluster) as made:
        yield made
