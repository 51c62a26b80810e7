"""The share-group coordinator APIs over real sockets: ShareGroupHeartbeat, ShareGroupDescribe,
ListGroups, DeleteGroups, GROUP config resources, coordinator placement, session timeouts and
restarts (semantics doc, sections 1.3, 2, 5 and 6). Offsets APIs: test_share_groups_api_offsets."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.broker.share_state import ShareStateKey
from aioshare.client.connection import Connection
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.messages import (
    DeleteGroupsRequest,
    DeleteGroupsResponse,
    DeleteTopicsRequest,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
    ListGroupsRequest,
    ListGroupsResponse,
    ShareGroupDescribeRequest,
    ShareGroupDescribeResponse,
    ShareGroupHeartbeatRequest,
    ShareGroupHeartbeatResponse,
)
from aioshare.protocol.types import kafka_uuid_str
from tests.kit import wait_for

# Kafka 4.3+ computes a new assignment at most once per group.share.assignment.interval.ms
# (1 s by default); these tests are about what is assigned, not when (the throttling has its
# own tests in test_kafka_versions.py).
ASSIGN_AT_ONCE = {"group.share.assignment.interval.ms": "0"}

TIMEOUT = 20.0
GROUP = "workers"
GROUP_RESOURCE = 32
INT32_MIN = -(2**31)
# The smallest session settings the broker config accepts while keeping Kafka's rules
# (heartbeat < session, each inside its min/max), so timeouts happen within a test.
FAST_SESSIONS = {
    "group.share.min.session.timeout.ms": "200",
    # Long enough that a member heartbeating every 100 ms never lapses on a loaded CI machine.
    "group.share.session.timeout.ms": "1000",
    "group.share.min.heartbeat.interval.ms": "50",
    "group.share.heartbeat.interval.ms": "100",
}
# Short enough to watch a member lapse, long enough that a restart does not fence the members first.
RESTART_SESSIONS = FAST_SESSIONS | {"group.share.session.timeout.ms": "6000"}


def new_member_id() -> str:
    return kafka_uuid_str(uuid.uuid4())


async def connect(broker: EmbeddedBroker, node_id: int | None = None) -> Connection:
    host, port = broker.address(broker.node_ids[0] if node_id is None else node_id)
    return await Connection.open(host, port, client_id="api-test", request_timeout=TIMEOUT)


def coordinator_of(broker: EmbeddedBroker, group_id: str) -> int:
    node = broker.cluster.group_coordinator(group_id)
    assert node is not None
    return node.node_id


class Clients:
    """One connection per node, closed together."""

    def __init__(self, broker: EmbeddedBroker) -> None:
        self.broker = broker
        self._connections: dict[int, Connection] = {}

    async def node(self, node_id: int) -> Connection:
        if node_id not in self._connections:
            self._connections[node_id] = await connect(self.broker, node_id)
        return self._connections[node_id]

    async def coordinator(self, group_id: str = GROUP) -> Connection:
        return await self.node(coordinator_of(self.broker, group_id))

    async def other_than_coordinator(self, group_id: str = GROUP) -> Connection:
        node_id = next(n for n in self.broker.node_ids if n != coordinator_of(self.broker, group_id))
        return await self.node(node_id)

    async def close(self) -> None:
        for connection in self._connections.values():
            await connection.close()


@pytest.fixture
async def clients_factory() -> AsyncIterator[Callable[[EmbeddedBroker], Clients]]:
    made: list[Clients] = []

    def factory(broker: EmbeddedBroker) -> Clients:
        made.append(Clients(broker))
        return made[-1]

    yield factory
    for clients in made:
        await clients.close()


async def heartbeat(
    conn: Connection,
    member_id: str | None,
    epoch: int,
    topics: Sequence[str] | None = None,
    *,
    group_id: str = GROUP,
    rack_id: str | None = None,
) -> ShareGroupHeartbeatResponse:
    request = ShareGroupHeartbeatRequest(
        group_id=group_id,
        member_id=member_id if member_id is not None else "",
        member_epoch=epoch,
        rack_id=rack_id,
        subscribed_topic_names=None if topics is None else list(topics),
    )
    return await conn.send(request, response_type=ShareGroupHeartbeatResponse)


def assignment(response: ShareGroupHeartbeatResponse) -> dict[uuid.UUID, list[int]] | None:
    if response.assignment is None:
        return None
    return {tp.topic_id: sorted(tp.partitions) for tp in response.assignment.topic_partitions}


async def describe(
    conn: Connection, *group_ids: str, operations: bool = False
) -> list[ShareGroupDescribeResponse.DescribedGroup]:
    request = ShareGroupDescribeRequest(group_ids=list(group_ids), include_authorized_operations=operations)
    response = await conn.send(request, response_type=ShareGroupDescribeResponse)
    return response.groups


class Member:
    """A share-group member reduced to its heartbeats."""

    def __init__(self, conn: Connection, topics: Sequence[str], group_id: str = GROUP) -> None:
        self.conn = conn
        self.topics = list(topics)
        self.group_id = group_id
        self.member_id = new_member_id()
        self.epoch = 0
        self.assigned: dict[uuid.UUID, list[int]] = {}

    async def beat(self) -> ShareGroupHeartbeatResponse:
        response = await heartbeat(
            self.conn,
            self.member_id,
            self.epoch,
            self.topics if self.epoch == 0 else None,
            group_id=self.group_id,
        )
        assert response.error_code == ErrorCode.NONE, response
        self.epoch = response.member_epoch
        if (got := assignment(response)) is not None:
            self.assigned = got
        return response

    async def leave(self) -> ShareGroupHeartbeatResponse:
        self.epoch = -1
        return await self.beat()


async def settle(members: Sequence[Member]) -> None:
    """Heartbeats every member until a full round changes no assignment and no epoch."""
    for _ in range(10):
        before = [(m.epoch, m.assigned) for m in members]
        for member in members:
            await member.beat()
        if before == [(m.epoch, m.assigned) for m in members]:
            return
    raise AssertionError("the assignment did not settle")


# --------------------------------------------------------------------------- heartbeat


async def test_join_gets_member_epoch_and_assignment_by_topic_id(clients_factory: Any) -> None:
    async with EmbeddedBroker(config=ASSIGN_AT_ONCE) as broker:
        topic_id = await broker.create_topic("jobs", partitions=3)
        clients = clients_factory(broker)
        conn = await clients.coordinator()
        member_id = new_member_id()

        joined = await heartbeat(conn, member_id, 0, ["jobs"])
        assert joined.error_code == ErrorCode.NONE and joined.error_message is None
        assert joined.member_id == member_id
        assert joined.member_epoch == 1
        assert joined.heartbeat_interval_ms == 5000  # group.share.heartbeat.interval.ms default
        # The embedded broker initialises share state synchronously: assigned on the first beat.
        assert assignment(joined) == {topic_id: [0, 1, 2]}

        # State exists for every partition, start offset undecided, state epoch = group epoch.
        states = [broker.cluster.share_state.read(ShareStateKey(GROUP, topic_id, p)) for p in range(3)]
        assert [(s.start_offset, s.state_epoch) for s in states if s is not None] == [(-1, 1)] * 3

        # Nothing changed: no assignment in the answer, the client keeps what it has.
        again = await heartbeat(conn, member_id, 1)
        assert (again.error_code, again.member_epoch, again.assignment) == (ErrorCode.NONE, 1, None)
        # A full request (subscription sent) always carries the assignment.
        full = await heartbeat(conn, member_id, 1, ["jobs"])
        assert assignment(full) == {topic_id: [0, 1, 2]} and full.member_epoch == 1

        # A topic created later and subscribed to bumps the epoch and is assigned.
        other_id = await broker.create_topic("more", partitions=1)
        changed = await heartbeat(conn, member_id, 1, ["jobs", "more"])
        assert changed.member_epoch == 2
        assert assignment(changed) == {topic_id: [0, 1, 2], other_id: [0]}

        # Subscribing to a topic that does not exist yet is fine; it is assigned once created.
        # (A subscription change bumps the group epoch, and so does the topic appearing.)
        assert (await heartbeat(conn, member_id, 2, ["jobs", "more", "later"])).member_epoch == 3
        later_id = await broker.create_topic("later", partitions=2)
        beat = await heartbeat(conn, member_id, 3)
        assert beat.member_epoch == 4 and assignment(beat) == {
            topic_id: [0, 1, 2],
            other_id: [0],
            later_id: [0, 1],
        }


@pytest.mark.parametrize(
    ("group", "member", "epoch", "rack", "topics", "message"),
    [
        ("", "m", 0, None, ["t"], "GroupId can't be empty."),
        (GROUP, "", 0, None, ["t"], "MemberId can't be empty."),
        (GROUP, "m" * 37, 0, None, ["t"], "MemberId can't be longer than 36 characters."),
        (GROUP, "m", 0, "", ["t"], "RackId can't be empty."),
        (GROUP, "m", 0, None, None, "SubscribedTopicNames must be set in first request."),
        (GROUP, "m", 0, None, [], "SubscribedTopicNames must be set in first request."),
        (GROUP, "m", -2, None, None, "MemberEpoch is invalid."),
    ],
)
async def test_invalid_heartbeats(
    clients_factory: Any,
    group: str,
    member: str,
    epoch: int,
    rack: str | None,
    topics: list[str] | None,
    message: str,
) -> None:
    async with EmbeddedBroker(nodes=3, config=ASSIGN_AT_ONCE) as broker:
        clients = clients_factory(broker)
        # Validation happens before the coordinator lookup: every node answers INVALID_REQUEST.
        for node_id in broker.node_ids:
            conn = await clients.node(node_id)
            response = await heartbeat(conn, member, epoch, topics, group_id=group, rack_id=rack)
            assert (response.error_code, response.error_message) == (ErrorCode.INVALID_REQUEST, message)
            assert response.member_id is None and response.assignment is None
        assert broker.cluster.share_state.read(ShareStateKey(GROUP, uuid.UUID(int=0), 0)) is None


async def test_epoch_and_membership_errors(clients_factory: Any) -> None:
    async with EmbeddedBroker(config=ASSIGN_AT_ONCE) as broker:
        await broker.create_topic("jobs")
        conn = await clients_factory(broker).coordinator()
        member_id = new_member_id()

        missing = await heartbeat(conn, member_id, 1, group_id="nobody")
        assert (missing.error_code, missing.error_message) == (
            ErrorCode.GROUP_ID_NOT_FOUND,
            "Share group nobody not found.",
        )
        leaving = await heartbeat(conn, member_id, -1, group_id="nobody")
        assert (leaving.error_code, leaving.error_message) == (
            ErrorCode.GROUP_ID_NOT_FOUND,
            "Group nobody not found.",
        )

        assert (await heartbeat(conn, member_id, 0, ["jobs"])).member_epoch == 1
        fenced = await heartbeat(conn, member_id, 5)
        assert fenced.error_code == ErrorCode.FENCED_MEMBER_EPOCH
        assert fenced.error_message is not None and "greater member epoch (5)" in fenced.error_message

        stranger = new_member_id()
        unknown = await heartbeat(conn, stranger, 1)
        assert (unknown.error_code, unknown.error_message) == (
            ErrorCode.UNKNOWN_MEMBER_ID,
            f"Member {stranger} is not a member of group {GROUP}.",
        )
        assert (await heartbeat(conn, stranger, -1)).error_code == ErrorCode.UNKNOWN_MEMBER_ID

        # The previous epoch is tolerated (a lost response): bump to 2, then beat with 1.
        await broker.create_topic("more")
        assert (await heartbeat(conn, member_id, 1, ["jobs", "more"])).member_epoch == 2
        stale = await heartbeat(conn, member_id, 1)
        assert (stale.error_code, stale.member_epoch) == (ErrorCode.NONE, 2)
        assert (await heartbeat(conn, member_id, 0, ["jobs"])).error_code == ErrorCode.NONE  # rejoin


async def test_group_max_size(clients_factory: Any) -> None:
    async with EmbeddedBroker(config={"group.share.max.size": "2", **ASSIGN_AT_ONCE}) as broker:
        await broker.create_topic("jobs")
        conn = await clients_factory(broker).coordinator()
        first, second = new_member_id(), new_member_id()
        assert (await heartbeat(conn, first, 0, ["jobs"])).error_code == ErrorCode.NONE
        assert (await heartbeat(conn, second, 0, ["jobs"])).error_code == ErrorCode.NONE
        full = await heartbeat(conn, new_member_id(), 0, ["jobs"])
        assert (full.error_code, full.error_message) == (
            ErrorCode.GROUP_MAX_SIZE_REACHED,
            "The share group has reached its maximum capacity of 2 members.",
        )
        # A member already in the group may rejoin.
        assert (await heartbeat(conn, second, 0, ["jobs"])).error_code == ErrorCode.NONE
        assert (await heartbeat(conn, first, -1)).member_epoch == -1
        assert (await heartbeat(conn, new_member_id(), 0, ["jobs"])).error_code == ErrorCode.NONE


async def test_leave(clients_factory: Any) -> None:
    async with EmbeddedBroker(config=ASSIGN_AT_ONCE) as broker:
        await broker.create_topic("jobs")
        conn = await clients_factory(broker).coordinator()
        member = Member(conn, ["jobs"])
        await member.beat()
        left = await member.leave()
        assert (left.member_id, left.member_epoch, left.assignment) == (member.member_id, -1, None)
        (group,) = await describe(conn, GROUP)
        assert (group.group_state, group.group_epoch, group.members) == ("Empty", 2, [])
        assert (await heartbeat(conn, member.member_id, 1)).error_code == ErrorCode.UNKNOWN_MEMBER_ID


async def test_session_timeout_removes_a_silent_member(clients_factory: Any) -> None:
    async with EmbeddedBroker(config={**FAST_SESSIONS, **ASSIGN_AT_ONCE}) as broker:
        topic_id = await broker.create_topic("jobs", partitions=2)
        conn = await clients_factory(broker).coordinator()
        silent, alive = Member(conn, ["jobs"]), Member(conn, ["jobs"])
        await silent.beat()
        await alive.beat()
        assert (await alive.beat()).heartbeat_interval_ms == 100

        async def only_alive_left() -> bool:
            # Describe before the beat: the silent member is expired by the broker's timer task,
            # which can run between the two requests. Once describe shows it gone, the beat that
            # follows is sure to carry the new assignment (and it keeps this member's session going).
            (group,) = await describe(conn, GROUP)
            await alive.beat()
            return [m.member_id for m in group.members] == [alive.member_id]

        await wait_for(only_alive_left, bool, timeout=TIMEOUT)
        assert alive.assigned == {topic_id: [0, 1]}  # the survivor gets every partition
        lapsed = await heartbeat(conn, silent.member_id, silent.epoch)
        assert lapsed.error_code == ErrorCode.UNKNOWN_MEMBER_ID

        async def empty() -> bool:
            (group,) = await describe(conn, GROUP)
            return group.group_state == "Empty"

        await wait_for(empty, bool, timeout=TIMEOUT)


async def test_simple_assignor_shares_partitions(clients_factory: Any) -> None:
    async with EmbeddedBroker(config=ASSIGN_AT_ONCE) as broker:
        single = await broker.create_topic("single", partitions=1)
        double = await broker.create_topic("double", partitions=2)
        clients = clients_factory(broker)

        conn = await clients.coordinator("three")
        three = [Member(conn, ["single"], "three") for _ in range(3)]
        await settle(three)
        assert [m.assigned for m in three] == [{single: [0]}] * 3

        conn = await clients.coordinator("four")
        four = [Member(conn, ["double"], "four") for _ in range(4)]
        await settle(four)
        counts = {0: 0, 1: 0}
        for member in four:
            (partition,) = member.assigned[double]  # balanced: one partition each
            counts[partition] += 1
        assert counts == {0: 2, 1: 2}


async def test_not_coordinator_on_other_nodes(clients_factory: Any) -> None:
    async with EmbeddedBroker(nodes=3, config=ASSIGN_AT_ONCE) as broker:
        await broker.create_topic("jobs")
        clients = clients_factory(broker)
        right, wrong = await clients.coordinator(), await clients.other_than_coordinator()

        found = await right.send(FindCoordinatorRequest(key=GROUP), 3, response_type=FindCoordinatorResponse)
        assert found.node_id == coordinator_of(broker, GROUP)

        member_id = new_member_id()
        refused = await heartbeat(wrong, member_id, 0, ["jobs"])
        assert (refused.error_code, refused.error_message) == (
            ErrorCode.NOT_COORDINATOR,
            "This is not the correct coordinator.",
        )
        assert (await heartbeat(right, member_id, 0, ["jobs"])).error_code == ErrorCode.NONE

        (group,) = await describe(wrong, GROUP)
        assert group.error_code == ErrorCode.NOT_COORDINATOR
        deleted = await wrong.send(
            DeleteGroupsRequest(groups_names=[GROUP]), response_type=DeleteGroupsResponse
        )
        assert [(r.group_id, r.error_code) for r in deleted.results] == [(GROUP, ErrorCode.NOT_COORDINATOR)]
        # Each broker lists only the groups it coordinates.
        assert await list_groups(wrong) == []
        assert [g.group_id for g in await list_groups(right)] == [GROUP]

        # When the coordinator stops, the group moves to another node with its members.
        await broker.stop_node(coordinator_of(broker, GROUP))
        moved = await clients.node(coordinator_of(broker, GROUP))
        assert (await heartbeat(moved, member_id, 1)).error_code == ErrorCode.NONE


# --------------------------------------------------------------------------- describe and list


async def test_describe(clients_factory: Any) -> None:
    async with EmbeddedBroker(config=ASSIGN_AT_ONCE) as broker:
        topic_id = await broker.create_topic("jobs", partitions=2)
        conn = await clients_factory(broker).coordinator()
        member_id = new_member_id()
        await heartbeat(conn, member_id, 0, ["jobs"], rack_id="rack-a")

        group, missing, empty_id = await describe(conn, GROUP, "nobody", "")
        assert (group.error_code, group.error_message, group.group_id) == (ErrorCode.NONE, None, GROUP)
        assert (group.group_state, group.group_epoch, group.assignment_epoch) == ("Stable", 1, 1)
        assert group.assignor_name == "simple"
        assert group.authorized_operations == INT32_MIN
        (member,) = group.members
        assert (member.member_id, member.member_epoch, member.rack_id) == (member_id, 1, "rack-a")
        assert (member.client_id, member.client_host) == ("api-test", "/127.0.0.1")
        assert member.subscribed_topic_names == ["jobs"]
        assert [(tp.topic_id, tp.topic_name, tp.partitions) for tp in member.assignment.topic_partitions] == [
            (topic_id, "jobs", [0, 1])
        ]
        assert (missing.error_code, missing.error_message) == (
            ErrorCode.GROUP_ID_NOT_FOUND,
            "Group nobody not found.",
        )
        assert empty_id.error_code == ErrorCode.INVALID_GROUP_ID

        (with_ops,) = await describe(conn, GROUP, operations=True)
        # READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS
        assert with_ops.authorized_operations == (1 << 3) | (1 << 6) | (1 << 8) | (1 << 10) | (1 << 11)


async def list_groups(
    conn: Connection,
    version: int | None = None,
    *,
    states: list[str] | None = None,
    types: list[str] | None = None,
) -> list[ListGroupsResponse.ListedGroup]:
    request = ListGroupsRequest(states_filter=states or [], types_filter=types or [])
    response = await conn.send(request, version, response_type=ListGroupsResponse)
    assert response.error_code == ErrorCode.NONE
    return sorted(response.groups, key=lambda g: g.group_id)


async def test_list_groups_with_filters(clients_factory: Any) -> None:
    async with EmbeddedBroker(config=ASSIGN_AT_ONCE) as broker:
        await broker.create_topic("jobs")
        conn = await clients_factory(broker).coordinator()
        await Member(conn, ["jobs"], "busy").beat()
        idle = Member(conn, ["jobs"], "idle")
        await idle.beat()
        await idle.leave()

        everything = await list_groups(conn)
        assert [(g.group_id, g.protocol_type, g.group_state, g.group_type) for g in everything] == [
            ("busy", "share", "Stable", "share"),
            ("idle", "share", "Empty", "share"),
        ]
        assert [g.group_id for g in await list_groups(conn, types=["share"])] == ["busy", "idle"]
        assert [g.group_id for g in await list_groups(conn, types=["SHARE"])] == ["busy", "idle"]
        assert await list_groups(conn, types=["consumer", "classic"]) == []
        assert await list_groups(conn, types=["nonsense"]) == []
        assert [g.group_id for g in await list_groups(conn, states=["stable"])] == ["busy"]
        assert [g.group_id for g in await list_groups(conn, states=["Empty", "Dead"])] == ["idle"]
        assert [g.group_id for g in await list_groups(conn, states=["EMPTY"], types=["Share"])] == ["idle"]
        # Old versions: no filters, no state or type on the wire.
        v0 = await list_groups(conn, 0)
        assert [(g.group_id, g.protocol_type, g.group_state, g.group_type) for g in v0] == [
            ("busy", "share", "", ""),
            ("idle", "share", "", ""),
        ]
        (v4_busy,) = await list_groups(conn, 4, states=["Stable"])
        assert (v4_busy.group_id, v4_busy.group_state) == ("busy", "Stable")


# --------------------------------------------------------------------------- delete groups


async def alter_group_config(
    conn: Connection, group_id: str, name: str, value: str | None
) -> tuple[int, str | None]:
    request = IncrementalAlterConfigsRequest(
        resources=[
            IncrementalAlterConfigsRequest.AlterConfigsResource(
                resource_type=GROUP_RESOURCE,
                resource_name=group_id,
                configs=[
                    IncrementalAlterConfigsRequest.AlterableConfig(
                        name=name, config_operation=0 if value is not None else 1, value=value
                    )
                ],
            )
        ]
    )
    response = await conn.send(request, response_type=IncrementalAlterConfigsResponse)
    (result,) = response.responses
    return result.error_code, result.error_message


async def group_config(
    conn: Connection, group_id: str, name: str
) -> DescribeConfigsResponse.DescribeConfigsResourceResult:
    request = DescribeConfigsRequest(
        resources=[
            DescribeConfigsRequest.DescribeConfigsResource(
                resource_type=GROUP_RESOURCE, resource_name=group_id, configuration_keys=[name]
            )
        ]
    )
    response = await conn.send(request, response_type=DescribeConfigsResponse)
    (result,) = response.results
    assert result.error_code == ErrorCode.NONE
    (entry,) = result.configs
    return entry


async def test_delete_groups(clients_factory: Any) -> None:
    async with EmbeddedBroker(config=ASSIGN_AT_ONCE) as broker:
        topic_id = await broker.create_topic("jobs", partitions=2)
        conn = await clients_factory(broker).coordinator()
        member = Member(conn, ["jobs"])
        await member.beat()
        assert await alter_group_config(conn, GROUP, "share.auto.offset.reset", "earliest") == (0, None)

        async def delete(*group_ids: str, version: int | None = None) -> list[tuple[str, int]]:
            request = DeleteGroupsRequest(groups_names=list(group_ids))
            response = await conn.send(request, version, response_type=DeleteGroupsResponse)
            return [(r.group_id, r.error_code) for r in response.results]

        assert conn.api_versions[42] == (0, 3)  # v3 from Kafka 4.4, the default emulated release
        assert await delete(GROUP, "nobody") == [
            (GROUP, ErrorCode.NON_EMPTY_GROUP),
            ("nobody", ErrorCode.GROUP_ID_NOT_FOUND),
        ]
        await member.leave()
        assert await delete(GROUP, version=0) == [(GROUP, ErrorCode.NONE)]
        assert await delete(GROUP) == [(GROUP, ErrorCode.GROUP_ID_NOT_FOUND)]

        # The group, its share state and its dynamic configs are gone.
        (gone,) = await describe(conn, GROUP)
        assert gone.error_code == ErrorCode.GROUP_ID_NOT_FOUND
        assert list(broker.cluster.share_state.keys(GROUP)) == []
        entry = await group_config(conn, GROUP, "share.auto.offset.reset")
        assert (entry.value, entry.config_source) == ("latest", 5)  # DEFAULT_CONFIG

        # A re-created group starts from scratch.
        fresh = Member(conn, ["jobs"])
        await fresh.beat()
        assert fresh.epoch == 1 and fresh.assigned == {topic_id: [0, 1]}


# --------------------------------------------------------------------------- group configs


async def test_group_config_resources(clients_factory: Any) -> None:
    async with EmbeddedBroker(config=ASSIGN_AT_ONCE) as broker:
        await broker.create_topic("jobs")
        conn = await clients_factory(broker).coordinator()

        # Alterable whether or not the group exists.
        assert await alter_group_config(conn, GROUP, "share.auto.offset.reset", "by_duration:PT1H") == (
            0,
            None,
        )
        entry = await group_config(conn, GROUP, "share.auto.offset.reset")
        assert (entry.value, entry.config_source) == ("by_duration:PT1H", 8)  # GROUP_CONFIG

        for name, value in [
            ("share.record.lock.duration.ms", "500"),  # below the broker minimum of 15000
            ("share.record.lock.duration.ms", "100000"),  # above the broker maximum of 60000
            ("share.auto.offset.reset", "sideways"),
            ("share.auto.offset.reset", "by_duration:1H"),
            ("share.isolation.level", "serializable"),
            ("share.heartbeat.interval.ms", "nope"),
            ("share.no.such.config", "1"),
        ]:
            code, message = await alter_group_config(conn, GROUP, name, value)
            assert code == ErrorCode.INVALID_CONFIG, (name, value)
            assert message, (name, value)
        assert await alter_group_config(conn, GROUP, "share.record.lock.duration.ms", "20000") == (0, None)
        assert (await group_config(conn, GROUP, "share.record.lock.duration.ms")).value == "20000"

        # The heartbeat interval comes from the group's config.
        assert await alter_group_config(conn, GROUP, "share.heartbeat.interval.ms", "6000") == (0, None)
        member_id = new_member_id()
        assert (await heartbeat(conn, member_id, 0, ["jobs"])).heartbeat_interval_ms == 6000
        assert await alter_group_config(conn, GROUP, "share.heartbeat.interval.ms", None) == (0, None)
        assert (await heartbeat(conn, member_id, 1)).heartbeat_interval_ms == 5000


# --------------------------------------------------------------------------- topics and restarts


async def test_deleting_a_topic_drops_its_share_state(clients_factory: Any) -> None:
    async with EmbeddedBroker(config=ASSIGN_AT_ONCE) as broker:
        doomed = await broker.create_topic("doomed", partitions=2)
        kept = await broker.create_topic("kept")
        conn = await clients_factory(broker).coordinator()
        member = Member(conn, ["doomed", "kept"])
        await member.beat()
        assert member.assigned == {doomed: [0, 1], kept: [0]}
        assert {key.topic_id for key in broker.cluster.share_state.keys(GROUP)} == {doomed, kept}

        await conn.send(DeleteTopicsRequest(topic_names=["doomed"]), 5)
        assert {key.topic_id for key in broker.cluster.share_state.keys(GROUP)} == {kept}
        await member.beat()
        assert member.assigned == {kept: [0]}

        # Re-created under the same name, it is a new topic (new id) with fresh state.
        reborn = await broker.create_topic("doomed")
        await member.beat()
        assert member.assigned == {kept: [0], reborn: [0]}
        state = broker.cluster.share_state.read(ShareStateKey(GROUP, reborn, 0))
        assert state is not None and state.start_offset == -1


async def test_membership_survives_a_restart(tmp_path: Path) -> None:
    async with EmbeddedBroker(data_dir=tmp_path, config={**RESTART_SESSIONS, **ASSIGN_AT_ONCE}) as broker:
        topic_id = await broker.create_topic("jobs", partitions=2)
        conn = await connect(broker, coordinator_of(broker, GROUP))
        stays, goes = Member(conn, ["jobs"]), Member(conn, ["jobs"])
        await settle([stays, goes])
        epochs = (stays.epoch, goes.epoch)
        assert await alter_group_config(conn, GROUP, "share.auto.offset.reset", "earliest") == (0, None)
        await conn.close()

    async with EmbeddedBroker(data_dir=tmp_path, config={**RESTART_SESSIONS, **ASSIGN_AT_ONCE}) as broker:
        conn = await connect(broker, coordinator_of(broker, GROUP))
        try:
            (group,) = await describe(conn, GROUP)
            assert group.group_state == "Stable" and group.group_epoch == max(epochs)
            assert sorted(m.member_id for m in group.members) == sorted([stays.member_id, goes.member_id])
            assert {m.member_id: m.member_epoch for m in group.members} == {
                stays.member_id: epochs[0],
                goes.member_id: epochs[1],
            }
            # The member carries on with its epoch; no rejoin needed.
            stays.conn = conn
            await stays.beat()
            assert stays.epoch == epochs[0]
            state = broker.cluster.share_state.read(ShareStateKey(GROUP, topic_id, 0))
            assert state is not None and state.start_offset == -1
            assert (await group_config(conn, GROUP, "share.auto.offset.reset")).value == "earliest"

            # The member that stays silent is fenced by its session timeout after the restart.
            async def only_stays() -> bool:
                # Describe first, then beat: see test_session_timeout_removes_a_silent_member.
                (group,) = await describe(conn, GROUP)
                await stays.beat()
                return [m.member_id for m in group.members] == [stays.member_id]

            await wait_for(only_stays, bool, timeout=TIMEOUT)
            assert stays.assigned == {topic_id: [0, 1]}
        finally:
            await conn.close()

    async with EmbeddedBroker(data_dir=tmp_path, config=ASSIGN_AT_ONCE) as broker:
        conn = await connect(broker, coordinator_of(broker, GROUP))
        try:
            # A deleted group stays deleted after a restart.
            assert (await heartbeat(conn, stays.member_id, -1)).error_code == ErrorCode.NONE
            deleted = await conn.send(
                DeleteGroupsRequest(groups_names=[GROUP]), response_type=DeleteGroupsResponse
            )
            assert [r.error_code for r in deleted.results] == [ErrorCode.NONE]
        finally:
            await conn.close()
    async with EmbeddedBroker(data_dir=tmp_path, config=ASSIGN_AT_ONCE) as broker:
        conn = await connect(broker, coordinator_of(broker, GROUP))
        try:
            (group,) = await describe(conn, GROUP)
            assert group.error_code == ErrorCode.GROUP_ID_NOT_FOUND
        finally:
            await conn.close()
