"""Describe/Alter/DeleteShareGroupOffsets over real sockets (semantics doc, 5.2-5.4), and
kafka-python's admin client against the share-group coordinator APIs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.broker.share_partition import PersistedState
from aioshare.broker.share_state import ShareStateKey
from aioshare.client.connection import Connection
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.messages import (
    AlterShareGroupOffsetsRequest,
    AlterShareGroupOffsetsResponse,
    DeleteShareGroupOffsetsRequest,
    DeleteShareGroupOffsetsResponse,
    DescribeShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsResponse,
    ProduceResponse,
)
from aioshare.protocol.types import NIL_UUID

from .test_server_frames import produce_request, records
from .test_share_groups_api import GROUP, Member, clients_factory

# Kafka 4.3+ computes a new assignment at most once per group.share.assignment.interval.ms
# (1 s by default); these tests are about what is assigned, not when (the throttling has its
# own tests in test_kafka_versions.py).
ASSIGN_AT_ONCE = {"group.share.assignment.interval.ms": "0"}

__all__ = ["clients_factory"]  # the fixture, used by name

NO_OFFSETS = "There is no offset information to delete."
UNKNOWN_TP = "This server does not host this topic-partition."

DescribeGroup = DescribeShareGroupOffsetsRequest.DescribeShareGroupOffsetsRequestGroup
DescribeTopic = DescribeShareGroupOffsetsRequest.DescribeShareGroupOffsetsRequestTopic
AlterTopic = AlterShareGroupOffsetsRequest.AlterShareGroupOffsetsRequestTopic
AlterPartition = AlterShareGroupOffsetsRequest.AlterShareGroupOffsetsRequestPartition
DeleteTopic = DeleteShareGroupOffsetsRequest.DeleteShareGroupOffsetsRequestTopic


async def produce(conn: Connection, topic: str, partition: int, count: int) -> None:
    values = [f"{topic}-{partition}-{i}".encode() for i in range(count)]
    response = await conn.send(
        produce_request(topic, partition, records(*values)), 9, response_type=ProduceResponse
    )
    assert response.responses[0].partition_responses[0].error_code == ErrorCode.NONE


async def describe_offsets(
    conn: Connection, group_id: str, topics: dict[str, list[int]] | None = None, version: int | None = None
) -> DescribeShareGroupOffsetsResponse.DescribeShareGroupOffsetsResponseGroup:
    wanted = (
        None if topics is None else [DescribeTopic(topic_name=n, partitions=p) for n, p in topics.items()]
    )
    request = DescribeShareGroupOffsetsRequest(groups=[DescribeGroup(group_id=group_id, topics=wanted)])
    response = await conn.send(request, version, response_type=DescribeShareGroupOffsetsResponse)
    (group,) = response.groups
    return group


def rows(
    group: DescribeShareGroupOffsetsResponse.DescribeShareGroupOffsetsResponseGroup,
) -> dict[tuple[str, int], tuple[int, int, int, int]]:
    """(topic, partition) -> (start offset, leader epoch, lag, error code)."""
    return {
        (topic.topic_name, p.partition_index): (p.start_offset, p.leader_epoch, p.lag, p.error_code)
        for topic in group.topics
        for p in topic.partitions
    }


async def alter_offsets(
    conn: Connection, group_id: str, offsets: dict[str, dict[int, int]]
) -> AlterShareGroupOffsetsResponse:
    request = AlterShareGroupOffsetsRequest(
        group_id=group_id,
        topics=[
            AlterTopic(
                topic_name=name,
                partitions=[AlterPartition(partition_index=p, start_offset=o) for p, o in partitions.items()],
            )
            for name, partitions in offsets.items()
        ],
    )
    return await conn.send(request, response_type=AlterShareGroupOffsetsResponse)


async def delete_offsets(conn: Connection, group_id: str, *topics: str) -> DeleteShareGroupOffsetsResponse:
    request = DeleteShareGroupOffsetsRequest(
        group_id=group_id, topics=[DeleteTopic(topic_name=t) for t in topics]
    )
    return await conn.send(request, response_type=DeleteShareGroupOffsetsResponse)


async def test_describe_offsets(clients_factory: Any) -> None:
    async with EmbeddedBroker(config=ASSIGN_AT_ONCE) as broker:
        topic_id = await broker.create_topic("jobs", partitions=2)
        conn = await clients_factory(broker).coordinator()
        assert conn.api_versions[90] == (0, 1)
        await produce(conn, "jobs", 0, 5)

        # Kafka 4.2/4.4 do not look the group up for Topics = null either: an unknown group has
        # no initialised partitions, so no topics and no error.
        missing = await describe_offsets(conn, "nobody")
        assert (missing.group_id, missing.error_code, missing.error_message, missing.topics) == (
            "nobody",
            ErrorCode.NONE,
            None,
            [],
        )
        # Naming topics does not look the group up: an unknown group simply has no offsets.
        assert rows(await describe_offsets(conn, "nobody", {"jobs": [0]})) == {("jobs", 0): (-1, 0, -1, 0)}

        member = Member(conn, ["jobs"])
        await member.beat()
        # Initialised, start offset not decided until a leader loads the partition: -1, no lag.
        everything = await describe_offsets(conn, GROUP)
        assert [(t.topic_name, t.topic_id) for t in everything.topics] == [("jobs", topic_id)]
        assert rows(everything) == {("jobs", 0): (-1, 0, -1, 0), ("jobs", 1): (-1, 0, -1, 0)}

        # A leader decided the start offset and finished some records after it (as the leader
        # engineer's SharePartition persists them): lag = end offset - start - completed.
        store = broker.cluster.share_state
        store.write(
            ShareStateKey(GROUP, topic_id, 0),
            PersistedState(state_epoch=1, start_offset=1, delivery_complete_count=2, leader_epoch=3),
        )
        store.write(ShareStateKey(GROUP, topic_id, 1), PersistedState(state_epoch=1, start_offset=0))
        assert rows(await describe_offsets(conn, GROUP)) == {
            ("jobs", 0): (1, 3, 5 - 1 - 2, 0),
            ("jobs", 1): (0, 0, 0, 0),
        }
        # v0 has no Lag on the wire.
        v0 = await describe_offsets(conn, GROUP, version=0)
        assert {k: v[:2] for k, v in rows(v0).items()} == {("jobs", 0): (1, 3), ("jobs", 1): (0, 0)}
        assert all(v[2] == -1 for v in rows(v0).values())

        # Named topics: unknown topics and partitions without state read as "no offset".
        named = await describe_offsets(conn, GROUP, {"jobs": [1, 7], "ghost": [0]})
        assert [(t.topic_name, t.topic_id) for t in named.topics] == [("jobs", topic_id), ("ghost", NIL_UUID)]
        assert rows(named) == {
            ("jobs", 1): (0, 0, 0, 0),
            ("jobs", 7): (-1, 0, -1, 0),
            ("ghost", 0): (-1, 0, -1, 0),
        }
        assert (await describe_offsets(conn, GROUP, {})).topics == []


async def test_alter_offsets(clients_factory: Any) -> None:
    async with EmbeddedBroker(config=ASSIGN_AT_ONCE) as broker:
        topic_id = await broker.create_topic("jobs", partitions=2)
        conn = await clients_factory(broker).coordinator()
        await produce(conn, "jobs", 1, 4)
        member = Member(conn, ["jobs"])
        await member.beat()

        busy = await alter_offsets(conn, GROUP, {"jobs": {0: 0}})
        assert (busy.error_code, busy.error_message, busy.responses) == (
            ErrorCode.NON_EMPTY_GROUP,
            "The group is not empty.",
            [],
        )
        await member.leave()

        resets: list[ShareStateKey] = []
        broker.cluster.share_state.add_reset_listener(resets.append)
        altered = await alter_offsets(conn, GROUP, {"jobs": {1: 3, 5: 0}, "ghost": {0: 1}})
        assert altered.error_code == ErrorCode.NONE
        assert [
            (
                t.topic_name,
                t.topic_id,
                [(p.partition_index, p.error_code, p.error_message) for p in t.partitions],
            )
            for t in altered.responses
        ] == [
            ("jobs", topic_id, [(1, 0, None), (5, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TP)]),
            ("ghost", NIL_UUID, [(0, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TP)]),
        ]
        # The leaders learn that the state was replaced (they drop their cached partition).
        assert resets == [ShareStateKey(GROUP, topic_id, 1)]
        state = broker.cluster.share_state.read(ShareStateKey(GROUP, topic_id, 1))
        # The group epoch went 1 (join) -> 2 (leave) -> 3 (alter): the new state epoch.
        assert state is not None and (state.start_offset, state.state_epoch, state.batches) == (3, 3, [])
        assert rows(await describe_offsets(conn, GROUP, {"jobs": [1]})) == {("jobs", 1): (3, 0, 4 - 3, 0)}

        # Altering a group that does not exist creates it, empty.
        created = await alter_offsets(conn, "fresh", {"jobs": {0: 0}})
        assert created.error_code == ErrorCode.NONE
        assert rows(await describe_offsets(conn, "fresh")) == {("jobs", 0): (0, 0, 0, 0)}
        # Its members then start from the altered offset: the partition is not re-initialised.
        newcomer = Member(conn, ["jobs"], "fresh")
        await newcomer.beat()
        assert newcomer.assigned == {topic_id: [0, 1]}
        assert rows(await describe_offsets(conn, "fresh")) == {
            ("jobs", 0): (0, 0, 0, 0),
            ("jobs", 1): (-1, 0, -1, 0),
        }

        assert (await alter_offsets(conn, "", {"jobs": {0: 0}})).error_code == ErrorCode.INVALID_GROUP_ID


async def test_delete_offsets(clients_factory: Any) -> None:
    async with EmbeddedBroker(config=ASSIGN_AT_ONCE) as broker:
        jobs = await broker.create_topic("jobs", partitions=2)
        await broker.create_topic("unused")
        conn = await clients_factory(broker).coordinator()
        member = Member(conn, ["jobs"])
        await member.beat()

        missing = await delete_offsets(conn, "nobody", "jobs")
        assert (missing.error_code, missing.error_message) == (
            ErrorCode.GROUP_ID_NOT_FOUND,
            "Group nobody not found.",
        )
        busy = await delete_offsets(conn, GROUP, "jobs")
        assert (busy.error_code, busy.responses) == (ErrorCode.NON_EMPTY_GROUP, [])
        await member.leave()

        deleted = await delete_offsets(conn, GROUP, "jobs", "unused", "ghost")
        assert deleted.error_code == ErrorCode.NONE
        assert [(t.topic_name, t.topic_id, t.error_code, t.error_message) for t in deleted.responses] == [
            ("jobs", jobs, ErrorCode.NONE, None),
            ("unused", NIL_UUID, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, NO_OFFSETS),
            ("ghost", NIL_UUID, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TP),
        ]
        assert list(broker.cluster.share_state.keys(GROUP)) == []
        assert (await describe_offsets(conn, GROUP)).topics == []
        again = await delete_offsets(conn, GROUP, "jobs")
        assert [(t.error_code, t.error_message) for t in again.responses] == [
            (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, NO_OFFSETS)
        ]

        # A later subscription initialises the topic again (auto offset reset applies anew).
        rejoined = Member(conn, ["jobs"])
        await rejoined.beat()
        assert rejoined.assigned == {jobs: [0, 1]}
        assert rows(await describe_offsets(conn, GROUP)) == {
            ("jobs", 0): (-1, 0, -1, 0),
            ("jobs", 1): (-1, 0, -1, 0),
        }


async def test_offsets_apis_on_the_wrong_node(clients_factory: Any) -> None:
    async with EmbeddedBroker(nodes=3, config=ASSIGN_AT_ONCE) as broker:
        await broker.create_topic("jobs")
        clients = clients_factory(broker)
        wrong = await clients.other_than_coordinator()
        described = await describe_offsets(wrong, GROUP)
        assert (described.error_code, described.error_message) == (
            ErrorCode.NOT_COORDINATOR,
            "This is not the correct coordinator.",
        )
        assert (await alter_offsets(wrong, GROUP, {"jobs": {0: 0}})).error_code == ErrorCode.NOT_COORDINATOR
        assert (await delete_offsets(wrong, GROUP, "jobs")).error_code == ErrorCode.NOT_COORDINATOR
        right = await clients.coordinator()
        assert (await alter_offsets(right, GROUP, {"jobs": {0: 0}})).error_code == ErrorCode.NONE


# --------------------------------------------------------------------------- kafka-python


@pytest.mark.interop
async def test_kafka_python_lists_share_groups_and_group_configs(clients_factory: Any) -> None:
    kafka_admin = pytest.importorskip("kafka.admin")
    async with EmbeddedBroker(nodes=3, config=ASSIGN_AT_ONCE) as broker:
        await broker.create_topic("jobs")
        conn = await clients_factory(broker).coordinator()
        await Member(conn, ["jobs"]).beat()
        bootstrap = broker.bootstrap_servers

        def admin_calls() -> tuple[Any, Any, Any]:
            admin = kafka_admin.KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
            try:
                listed = admin.list_groups(types_filter=["share"])
                consumers = admin.list_groups(types_filter=["consumer"])
                resource = kafka_admin.ConfigResource(kafka_admin.ConfigResourceType.GROUP, GROUP)
                configs = admin.describe_configs([resource], config_filter="all")
                return listed, consumers, configs
            finally:
                admin.close()

        listed, consumers, configs = await asyncio.to_thread(admin_calls)
        assert GROUP in repr(listed) and "share" in repr(listed)
        assert GROUP not in repr(consumers)
        assert "share.auto.offset.reset" in repr(configs)
