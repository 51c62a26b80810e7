"""ShareAdmin end to end against EmbeddedBroker, with records produced by aiokafka.

One share group's whole life in one scenario, its member played by raw ShareGroupHeartbeats, so
this depends on the broker only, not on the share consumer (test_share_admin.py takes each
method apart on the same broker).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import NamedTuple

import pytest
from aiokafka import AIOKafkaProducer

from aioshare.admin import ConfigSource, ShareAdmin, ShareGroupDescription, TopicPartition
from aioshare.broker.embedded import EmbeddedBroker
from aioshare.protocol.errors import (
    GroupIdNotFoundError,
    InvalidConfigError,
    NonEmptyGroupError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    raise_for_code,
)
from aioshare.protocol.messages import ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse
from aioshare.protocol.types import kafka_uuid_str

TIMEOUT = 20.0
TOPIC, GROUP, PARTITIONS, PER_PARTITION = "jobs", "workers", 3, 10
BASE_MS = 1_700_000_000_000  # record timestamps: BASE_MS + offset * 1000 in every partition


class Env(NamedTuple):
    broker: EmbeddedBroker
    admin: ShareAdmin


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with (
        EmbeddedBroker(nodes=3) as broker,
        ShareAdmin(broker.bootstrap_servers, request_timeout=TIMEOUT) as admin,
    ):
        yield Env(broker, admin)


async def produce(broker: EmbeddedBroker) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    await producer.start()
    try:
        for p in range(PARTITIONS):
            for i in range(PER_PARTITION):
                await producer.send(TOPIC, f"{p}-{i}".encode(), partition=p, timestamp_ms=BASE_MS + i * 1000)
        await producer.flush()
    finally:
        await producer.stop()


class Member:
    """A share-group member reduced to its heartbeats."""

    def __init__(self, admin: ShareAdmin) -> None:
        self.admin = admin
        self.member_id = kafka_uuid_str(uuid.uuid4())
        self.epoch = 0
        self.assigned: dict[uuid.UUID, list[int]] = {}

    async def heartbeat(self, subscribe: list[str] | None = None) -> ShareGroupHeartbeatResponse:
        cluster = self.admin.cluster
        node = await cluster.find_coordinator(GROUP)
        conn = await cluster.connection(node.node_id)
        request = ShareGroupHeartbeatRequest(
            group_id=GROUP,
            member_id=self.member_id,
            member_epoch=self.epoch,
            subscribed_topic_names=subscribe,
        )
        response = await conn.send(request, response_type=ShareGroupHeartbeatResponse)
        raise_for_code(response.error_code, response.error_message)
        self.epoch = response.member_epoch
        if response.assignment is not None:
            self.assigned = {
                tp.topic_id: sorted(tp.partitions) for tp in response.assignment.topic_partitions
            }
        return response

    async def join_until_assigned(self, partitions: int) -> None:
        """Joins, then heartbeats until the assignment covers `partitions` partitions.

        Share partitions are assigned once the broker has initialised their state, which may
        take a few heartbeats; each heartbeat's round trip paces the loop.
        """
        await self.heartbeat([TOPIC])
        async with asyncio.timeout(TIMEOUT):
            while sum(len(ps) for ps in self.assigned.values()) < partitions:
                await self.heartbeat()

    async def leave(self) -> None:
        self.epoch = -1
        await self.heartbeat()


async def test_topics_round_trip(env: Env) -> None:
    admin = env.admin
    topic_id = await admin.create_topic("events", partitions=4, config={"retention.ms": "60000"})
    assert topic_id == env.broker.cluster.topics.get("events").topic_id  # type: ignore[union-attr]
    with pytest.raises(TopicAlreadyExistsError):
        await admin.create_topic("events")
    listings = {t.name: t for t in await admin.list_topics()}
    assert listings["events"].partitions == 4 and listings["events"].topic_id == topic_id
    await admin.delete_topic("events")
    assert "events" not in {t.name for t in await admin.list_topics()}
    with pytest.raises(UnknownTopicOrPartitionError):
        await admin.delete_topic("events")


async def test_share_group_lifecycle(env: Env) -> None:
    broker, admin = env
    await admin.create_topic(TOPIC, partitions=PARTITIONS)
    await produce(broker)

    member = Member(admin)
    await member.join_until_assigned(PARTITIONS)

    assert (GROUP, "Stable") in [(g.group_id, g.state) for g in await admin.list_share_groups()]
    described = (await admin.describe_share_groups([GROUP]))[GROUP]
    assert isinstance(described, ShareGroupDescription)
    assert described.state == "Stable" and described.assignor == "simple"
    (seen,) = described.members
    assert seen.member_id == member.member_id and seen.subscriptions == (TOPIC,)
    assert dict(seen.assignment) == {TOPIC: tuple(range(PARTITIONS))}

    # Kafka 4.2 initialises the state with an undecided start offset (-1); the partition leader
    # applies share.auto.offset.reset only when a member first fetches, so before any fetch
    # both the start offset and the lag are unknown.
    offsets = await admin.describe_share_group_offsets(GROUP)
    assert {tp: info.start_offset for tp, info in offsets.items()} == {
        TopicPartition(TOPIC, p): -1 for p in range(PARTITIONS)
    }
    assert all(info.error is None and info.lag == -1 for info in offsets.values())

    # Kafka only moves or deletes the offsets of an empty group.
    with pytest.raises(NonEmptyGroupError):
        await admin.reset_share_group_offsets(GROUP, TOPIC, to="earliest")
    assert isinstance((await admin.delete_share_groups([GROUP]))[GROUP], NonEmptyGroupError)

    await member.leave()
    described = (await admin.describe_share_groups([GROUP]))[GROUP]
    assert isinstance(described, ShareGroupDescription) and described.state == "Empty"

    assert await admin.reset_share_group_offsets(GROUP, TOPIC, to="earliest") == dict.fromkeys(
        range(PARTITIONS), 0
    )
    offsets = await admin.describe_share_group_offsets(GROUP, [TOPIC])
    assert {tp.partition: (i.start_offset, i.lag) for tp, i in offsets.items()} == {
        p: (0, PER_PARTITION) for p in range(PARTITIONS)
    }

    middle = datetime.fromtimestamp((BASE_MS + 4_500) / 1000, UTC)  # first record at/after: offset 5
    assert await admin.reset_share_group_offsets(GROUP, TOPIC, to=middle, partitions=[1]) == {1: 5}
    assert await admin.reset_share_group_offsets(GROUP, TOPIC, to={2: 7}) == {2: 7}
    offsets = await admin.describe_share_group_offsets(GROUP, {TOPIC: [0, 1, 2]})
    assert [offsets[TopicPartition(TOPIC, p)].start_offset for p in range(PARTITIONS)] == [0, 5, 7]

    assert await admin.delete_share_group_offsets(GROUP, [TOPIC]) == {TOPIC: None}
    assert await admin.describe_share_group_offsets(GROUP) == {}

    assert await admin.delete_share_groups([GROUP]) == {GROUP: None}
    assert GROUP not in [g.group_id for g in await admin.list_share_groups()]
    assert isinstance((await admin.describe_share_groups([GROUP]))[GROUP], GroupIdNotFoundError)


async def test_group_configs(env: Env) -> None:
    admin = env.admin
    entries = await admin.describe_group_config(GROUP)
    assert entries["share.auto.offset.reset"].value == "latest"

    await admin.alter_group_config(GROUP, set={"share.auto.offset.reset": "earliest"})
    entry = (await admin.describe_group_config(GROUP))["share.auto.offset.reset"]
    assert (entry.value, entry.source) == ("earliest", ConfigSource.GROUP_CONFIG)

    with pytest.raises(InvalidConfigError):
        await admin.alter_group_config(GROUP, set={"share.auto.offset.reset": "sideways"})
    with pytest.raises(InvalidConfigError):
        await admin.alter_group_config(GROUP, set={"share.no.such.config": "1"})

    await admin.alter_group_config(GROUP, delete=["share.auto.offset.reset"])
    assert (await admin.describe_group_config(GROUP))["share.auto.offset.reset"].value == "latest"
