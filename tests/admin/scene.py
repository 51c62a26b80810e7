"""The state most admin tests read, built on the embedded broker through the Kafka protocol:

* topic `jobs`, 3 partitions with one replica each, holding offsets 5..19 (20 records produced
  per partition, the first 5 deleted); record k of each partition is stamped `stamp(k)`;
* `idle`, an empty share group whose start offsets were set to `IDLE_OFFSETS`;
* `workers`, a share group with one member (a ShareConsumer, client id `worker-a`, rack
  `rack-a`) holding all three partitions; it fetches nothing, so its start offsets stay
  undecided (-1).

The two groups have different coordinators, so a ListGroups that asked only one broker would
miss one. The scene is built and read by clients with their own client ids: `Faults` sees only
the admin's requests, the ones under test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer

from aioshare.admin import PartitionOffsetInfo, ShareAdmin, TopicPartition
from aioshare.broker.embedded import EmbeddedBroker
from aioshare.share import ShareConsumer
from aioshare.testing import ThreadedBroker
from tests.kit import wait_until

TOPIC, PARTITIONS = "jobs", 3
LOG_START, LOG_END = 5, 20  # every partition of TOPIC
WORKERS, IDLE = "workers", "idle"
IDLE_OFFSETS = {0: 7, 1: 10, 2: LOG_END}
MEMBER_CLIENT_ID, MEMBER_RACK = "worker-a", "rack-a"
SETUP_CLIENT_ID = "admin-test-setup"
BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)
JOIN_TIMEOUT = 20.0


def stamp(k: int) -> datetime:
    """The timestamp of record k of every partition of TOPIC."""
    return BASE_TIME + timedelta(seconds=k)


def setup_admin(broker: ThreadedBroker) -> ShareAdmin:
    """A ShareAdmin for setting up and checking state, out of the faults' sight."""
    return ShareAdmin(broker.bootstrap_servers, client_id=SETUP_CLIENT_ID, request_timeout=10.0)


@dataclass
class Scene:
    broker: ThreadedBroker
    member: ShareConsumer  # the one member of WORKERS

    async def offsets(self, group: str) -> dict[TopicPartition, PartitionOffsetInfo]:
        """The group's offsets as the broker has them now."""
        async with setup_admin(self.broker) as admin:
            return await admin.describe_share_group_offsets(group)


@asynccontextmanager
async def scene_on(broker: ThreadedBroker) -> AsyncIterator[Scene]:
    await fill_topic(broker)
    async with setup_admin(broker) as admin:
        # AlterShareGroupOffsets creates the group, empty, as Kafka does.
        assert await admin.reset_share_group_offsets(IDLE, TOPIC, to=IDLE_OFFSETS) == IDLE_OFFSETS
        coordinators = {(await admin.cluster.find_coordinator(g)).node_id for g in (IDLE, WORKERS)}
        assert len(coordinators) == 2, "the scene wants its groups on different coordinators"
    member = ShareConsumer(
        TOPIC,
        group_id=WORKERS,
        bootstrap_servers=broker.bootstrap_servers,
        client_id=MEMBER_CLIENT_ID,
        rack_id=MEMBER_RACK,
    )
    await member.start()
    try:
        await wait_until(lambda: len(member.assignment()) == PARTITIONS, JOIN_TIMEOUT)
        yield Scene(broker, member)
    finally:
        await member.close()


async def fill_topic(broker: ThreadedBroker) -> None:
    await broker.create_topic(TOPIC, PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, client_id=SETUP_CLIENT_ID)
    await producer.start()
    try:
        for p in range(PARTITIONS):
            for k in range(LOG_END):
                ms = int(stamp(k).timestamp() * 1000)
                await producer.send(TOPIC, f"{p}-{k}".encode(), partition=p, timestamp_ms=ms)
        await producer.flush()
    finally:
        await producer.stop()

    async def trim(embedded: EmbeddedBroker) -> None:
        for p in range(PARTITIONS):
            embedded.partition(TOPIC, p).log.delete_records(LOG_START)

    await broker.acall(trim)


async def stop_leader_of_partition_1(broker: EmbeddedBroker) -> None:
    """Stops the node leading jobs-1, its only replica: the partition goes offline."""
    await broker.stop_node(broker.partition(TOPIC, 1).leader)
