"""ShareAdmin on the embedded broker: every method's answers and refusals, and its retries.

What a share group, its members, offsets and configs look like is the broker's own state (the
scene of scene.py); the faults a healthy broker does not produce (a coordinator loading,
answers of older Kafka releases, leaders that keep moving) are scripted in front of it
(`Faults`). Where Kafka's answer is not obvious, the test says where Kafka's source or the
real-Kafka tests (tests/realkafka/test_admin_real_kafka.py) show it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from aioshare.admin import (
    ConfigSource,
    PartitionOffsetInfo,
    ShareAdmin,
    ShareGroupDescription,
    TopicPartition,
)
from aioshare.protocol.errors import (
    BrokerError,
    CoordinatorLoadInProgressError,
    ErrorCode,
    GroupAuthorizationFailedError,
    GroupIdNotFoundError,
    InvalidConfigError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    NonEmptyGroupError,
    NotLeaderOrFollowerError,
    UnknownTopicOrPartitionError,
)
from aioshare.protocol.messages import ListGroupsResponse
from aioshare.testing import ThreadedBroker
from tests.client.fakes import owned_tasks

from .faults import (
    ALTER_SHARE_GROUP_OFFSETS,
    CREATE_TOPICS,
    DELETE_GROUPS,
    DESCRIBE_CONFIGS,
    DESCRIBE_SHARE_GROUP_OFFSETS,
    FIND_COORDINATOR,
    INCREMENTAL_ALTER_CONFIGS,
    LIST_GROUPS,
    LIST_OFFSETS,
    METADATA,
    SHARE_GROUP_DESCRIBE,
    Faults,
)
from .scene import (
    IDLE,
    IDLE_OFFSETS,
    LOG_END,
    LOG_START,
    MEMBER_CLIENT_ID,
    MEMBER_RACK,
    TOPIC,
    WORKERS,
    Scene,
    setup_admin,
    stamp,
    stop_leader_of_partition_1,
)


def short_admin(broker: ThreadedBroker) -> ShareAdmin:
    """An admin whose calls give up after 0.3 s, for faults that never end."""
    return ShareAdmin(broker.bootstrap_servers, request_timeout=0.3, retry_backoff=0.01)


def tp(partition: int) -> TopicPartition:
    return TopicPartition(TOPIC, partition)


# --------------------------------------------------------------------------------- lifecycle


async def test_close_leaves_no_tasks(broker: ThreadedBroker) -> None:
    # The broker serves from its own thread and loop: every task here is the admin's.
    admin = ShareAdmin(broker.bootstrap_servers)
    await admin.start()
    await admin.describe_share_groups([WORKERS, IDLE])
    assert owned_tasks()  # the metadata refresher, at least: the check below can fail
    await admin.close()
    assert not owned_tasks()


# --------------------------------------------------------------------------------- list


async def test_list_asks_every_broker_for_share_groups_and_merges(
    scene: Scene, admin: ShareAdmin, faults: Faults
) -> None:
    listings = await admin.list_share_groups()
    assert [(g.group_id, g.state) for g in listings] == [(IDLE, "Empty"), (WORKERS, "Stable")]
    sent = faults.sent(LIST_GROUPS)
    # One per broker: each lists only the groups it coordinates (the two are on different nodes).
    assert sorted(r.node_id for r in sent) == [1, 2, 3]
    assert all(r.version == 5 and r.body.types_filter == ["share"] for r in sent)


async def test_list_passes_states(scene: Scene, admin: ShareAdmin, faults: Faults) -> None:
    assert [g.group_id for g in await admin.list_share_groups(states=["Stable"])] == [WORKERS]
    assert [g.group_id for g in await admin.list_share_groups(states=["Empty"])] == [IDLE]
    assert {tuple(r.body.states_filter) for r in faults.sent(LIST_GROUPS)} == {("Stable",), ("Empty",)}


async def test_list_without_v5_filters_by_protocol_type(scene: Scene, faults: Faults) -> None:
    # Before v5 a broker lists every type of group; this one also coordinates a consumer group.
    await faults.cap(LIST_GROUPS, 4)

    def with_a_consumer_group(request: Any, answer: ListGroupsResponse) -> ListGroupsResponse:
        Listed = ListGroupsResponse.ListedGroup
        answer.groups.append(Listed(group_id="classic-app", protocol_type="consumer", group_state="Stable"))
        return answer

    await faults.rewrite(LIST_GROUPS, with_a_consumer_group, times=None)
    async with ShareAdmin(scene.broker.bootstrap_servers, request_timeout=10.0) as admin:
        listings = await admin.list_share_groups()
    assert [(g.group_id, g.state) for g in listings] == [(IDLE, "Empty"), (WORKERS, "Stable")]
    assert {(r.version, tuple(r.body.types_filter)) for r in faults.sent(LIST_GROUPS)} == {(4, ())}


async def test_list_retries_a_loading_broker(scene: Scene, admin: ShareAdmin, faults: Faults) -> None:
    await faults.refuse(LIST_GROUPS, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS)
    listings = await admin.list_share_groups()
    assert [g.group_id for g in listings] == [IDLE, WORKERS]
    assert len(faults.sent(LIST_GROUPS)) == 4


async def test_list_raises_a_non_retriable_error(admin: ShareAdmin, faults: Faults) -> None:
    await faults.refuse(LIST_GROUPS, ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
    with pytest.raises(BrokerError) as info:
        await admin.list_share_groups()
    assert info.value.code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED


# --------------------------------------------------------------------------------- describe


async def test_describe_maps_members_and_assignments(scene: Scene, admin: ShareAdmin) -> None:
    found = await admin.describe_share_groups([WORKERS, IDLE])
    workers = found[WORKERS]
    assert isinstance(workers, ShareGroupDescription)
    member = scene.member
    # One member joined once: the group, its assignment and the member share one epoch.
    assert (workers.state, workers.group_epoch, workers.assignment_epoch, workers.assignor) == (
        "Stable",
        member.member_epoch,
        member.member_epoch,
        "simple",
    )
    (seen,) = workers.members
    assert (seen.member_id, seen.member_epoch, seen.client_id, seen.host, seen.rack_id) == (
        member.member_id,
        member.member_epoch,
        MEMBER_CLIENT_ID,
        "/127.0.0.1",
        MEMBER_RACK,
    )
    assert seen.subscriptions == (TOPIC,)
    assert dict(seen.assignment) == {TOPIC: (0, 1, 2)}
    idle = found[IDLE]
    assert isinstance(idle, ShareGroupDescription)
    assert (idle.state, idle.members) == ("Empty", ())


async def test_describe_reports_unknown_groups_per_group(scene: Scene, admin: ShareAdmin) -> None:
    found = await admin.describe_share_groups([WORKERS, "nope"])
    assert isinstance(found[WORKERS], ShareGroupDescription)
    missing = found["nope"]
    assert isinstance(missing, GroupIdNotFoundError)
    assert (missing.context, missing.message) == ("group 'nope'", "Group nope not found.")


async def test_describe_follows_a_moved_coordinator(
    scene: Scene, broker: ThreadedBroker, admin: ShareAdmin, faults: Faults
) -> None:
    home = (await admin.cluster.find_coordinator(WORKERS)).node_id

    async def described() -> None:
        assert isinstance((await admin.describe_share_groups([WORKERS]))[WORKERS], ShareGroupDescription)

    await described()
    # Its node stops: the connection fails, and the group is looked up again elsewhere.
    await broker.acall(lambda b: b.stop_node(home))
    await described()
    stand_in = faults.sent(SHARE_GROUP_DESCRIBE)[-1].node_id
    assert stand_in != home
    # Back again, it takes the group back: the stand-in answers NOT_COORDINATOR.
    await broker.acall(lambda b: b.start_node(home))
    await described()
    assert [r.node_id for r in faults.sent(SHARE_GROUP_DESCRIBE)] == [home, stand_in, stand_in, home]


@pytest.mark.parametrize(
    "code",
    [ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS],
)
async def test_coordinator_errors_are_retried(admin: ShareAdmin, faults: Faults, code: int) -> None:
    await faults.refuse(SHARE_GROUP_DESCRIBE, code, times=2)
    found = await admin.describe_share_groups(["nope"])
    assert isinstance(found["nope"], GroupIdNotFoundError)  # the broker's own answer, third time
    assert len(faults.sent(SHARE_GROUP_DESCRIBE)) == 3
    assert len(faults.sent(FIND_COORDINATOR)) == 3  # the coordinator is forgotten after each


async def test_find_coordinator_errors_are_retried(scene: Scene, admin: ShareAdmin, faults: Faults) -> None:
    await faults.refuse(FIND_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE)
    found = await admin.describe_share_groups([WORKERS])
    assert isinstance(found[WORKERS], ShareGroupDescription)
    assert len(faults.sent(FIND_COORDINATOR)) == 2


async def test_find_coordinator_fatal_error_is_the_groups_result(admin: ShareAdmin, faults: Faults) -> None:
    await faults.refuse(FIND_COORDINATOR, ErrorCode.GROUP_AUTHORIZATION_FAILED)
    refused = (await admin.describe_share_groups([WORKERS]))[WORKERS]
    assert isinstance(refused, GroupAuthorizationFailedError)
    assert refused.context == f"group {WORKERS!r}"
    assert not faults.sent(SHARE_GROUP_DESCRIBE)


async def test_coordinator_retries_stop_at_the_timeout(broker: ThreadedBroker, faults: Faults) -> None:
    await faults.refuse(SHARE_GROUP_DESCRIBE, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, times=None)
    await faults.refuse(DESCRIBE_SHARE_GROUP_OFFSETS, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, times=None)
    async with short_admin(broker) as admin:
        found = await admin.describe_share_groups([WORKERS])
        assert isinstance(found[WORKERS], CoordinatorLoadInProgressError)
        with pytest.raises(CoordinatorLoadInProgressError):
            await admin.describe_share_group_offsets(WORKERS)
    assert len(faults.sent(SHARE_GROUP_DESCRIBE)) > 1  # retried until the time was up


async def test_unreachable_coordinator_times_out(broker: ThreadedBroker, faults: Faults) -> None:
    async with short_admin(broker) as admin:
        home = await admin.cluster.find_coordinator(WORKERS)
        await broker.acall(lambda b: b.stop_node(home.node_id))

        def still_naming_it(request: Any, answer: Any) -> Any:
            # As during a failover before the election: the others keep naming the node that is gone.
            for coordinator in answer.coordinators:
                coordinator.node_id, coordinator.host, coordinator.port = home.node_id, home.host, home.port
            return answer

        await faults.rewrite(FIND_COORDINATOR, still_naming_it, times=None)
        with pytest.raises(KafkaTimeoutError, match=f"group {WORKERS!r}: no coordinator answered"):
            await admin.describe_share_groups([WORKERS])


# --------------------------------------------------------------------------------- offsets


async def test_describe_offsets_all_topics(scene: Scene, admin: ShareAdmin) -> None:
    # lag = log end - start offset (nothing delivered since the reset); leader epoch 0 as Kafka
    # initialises altered state (ShareGroupOffset.fromRequest: UNINITIALIZED_EPOCH).
    assert await admin.describe_share_group_offsets(IDLE) == {
        tp(p): PartitionOffsetInfo(offset, 0, LOG_END - offset) for p, offset in IDLE_OFFSETS.items()
    }
    # The member fetched nothing: every partition has state, with its start offset undecided.
    assert await admin.describe_share_group_offsets(WORKERS) == {
        tp(p): PartitionOffsetInfo(-1, 0, -1) for p in range(3)
    }


async def test_describe_offsets_by_topic_name_asks_for_every_partition(
    scene: Scene, admin: ShareAdmin, faults: Faults
) -> None:
    async with setup_admin(scene.broker) as setup:
        await setup.reset_share_group_offsets("partial", TOPIC, to={0: 6})
    found = await admin.describe_share_group_offsets("partial", [TOPIC])
    (request,) = faults.sent(DESCRIBE_SHARE_GROUP_OFFSETS)
    assert [(t.topic_name, t.partitions) for t in request.body.groups[0].topics] == [(TOPIC, [0, 1, 2])]
    assert found[tp(0)] == PartitionOffsetInfo(6, 0, LOG_END - 6)
    # No state is no offset, not an error (GroupCoordinatorService.computeShareGroupLagAndBuildResponse).
    assert found[tp(1)] == found[tp(2)] == PartitionOffsetInfo(-1, 0, -1)


async def test_describe_offsets_reports_a_partition_error(scene: Scene, admin: ShareAdmin) -> None:
    # The one replica of jobs-1 stops: Kafka cannot look up its log end for the lag, and that
    # partition carries LEADER_NOT_AVAILABLE (GroupCoordinatorService.computeShareGroupLagAndBuildResponse).
    await scene.broker.acall(stop_leader_of_partition_1)
    found = await admin.describe_share_group_offsets(IDLE)
    assert isinstance(found[tp(1)].error, LeaderNotAvailableError)
    assert found[tp(0)] == PartitionOffsetInfo(IDLE_OFFSETS[0], 0, LOG_END - IDLE_OFFSETS[0])


async def test_describe_offsets_by_partition(scene: Scene, admin: ShareAdmin) -> None:
    found = await admin.describe_share_group_offsets(IDLE, {TOPIC: [2]})
    assert found == {tp(2): PartitionOffsetInfo(LOG_END, 0, 0)}


async def test_describe_offsets_v0_has_no_lag(scene: Scene, faults: Faults) -> None:
    await faults.cap(DESCRIBE_SHARE_GROUP_OFFSETS, 0)  # Lag arrived in v1 (KIP-1226, Kafka 4.2)
    async with ShareAdmin(scene.broker.bootstrap_servers, request_timeout=10.0) as admin:
        found = await admin.describe_share_group_offsets(IDLE)
    assert found == {tp(p): PartitionOffsetInfo(offset, 0, -1) for p, offset in IDLE_OFFSETS.items()}
    assert {r.version for r in faults.sent(DESCRIBE_SHARE_GROUP_OFFSETS)} == {0}


async def test_describe_offsets_of_unknown_group_is_empty(scene: Scene, admin: ShareAdmin) -> None:
    # As Kafka 4.2.2 and 4.4.0 answer (tests/realkafka/test_admin_real_kafka.py): no error. Asked
    # for a topic, Kafka does not look the group up either: no state, so no offsets.
    assert await admin.describe_share_group_offsets("nope") == {}
    found = await admin.describe_share_group_offsets("nope", [TOPIC])
    assert found == {tp(p): PartitionOffsetInfo(-1, 0, -1) for p in range(3)}


async def test_describe_offsets_of_unknown_topic_raises(admin: ShareAdmin, faults: Faults) -> None:
    with pytest.raises(UnknownTopicOrPartitionError) as info:
        await admin.describe_share_group_offsets(WORKERS, ["no-such-topic"])
    assert info.value.context == "topic 'no-such-topic'"
    assert not faults.sent(DESCRIBE_SHARE_GROUP_OFFSETS)


async def test_describe_offsets_raises_a_group_error(admin: ShareAdmin, faults: Faults) -> None:
    await faults.refuse(DESCRIBE_SHARE_GROUP_OFFSETS, ErrorCode.GROUP_AUTHORIZATION_FAILED)
    with pytest.raises(GroupAuthorizationFailedError) as info:
        await admin.describe_share_group_offsets(WORKERS)
    assert info.value.context == f"group {WORKERS!r}"


# --------------------------------------------------------------------------------- reset


async def test_reset_to_earliest_asks_each_leader(scene: Scene, admin: ShareAdmin, faults: Faults) -> None:
    found = await admin.reset_share_group_offsets(IDLE, TOPIC, to="earliest")
    assert found == dict.fromkeys(range(3), LOG_START)  # the log start, not 0: records were deleted
    leaders = sorted(admin.cluster.leader_for(TOPIC, p).node_id for p in range(3))  # type: ignore[union-attr]
    assert leaders == [1, 2, 3]
    sent = faults.sent(LIST_OFFSETS)
    assert sorted(r.node_id for r in sent) == leaders  # a leader answers only for its partitions
    assert all(r.body.replica_id == -1 for r in sent)
    assert (await scene.offsets(IDLE))[tp(2)] == PartitionOffsetInfo(LOG_START, 0, LOG_END - LOG_START)


async def test_reset_to_latest_some_partitions(scene: Scene, admin: ShareAdmin, faults: Faults) -> None:
    assert await admin.reset_share_group_offsets(IDLE, TOPIC, to="latest", partitions=[1]) == {1: LOG_END}
    (request,) = faults.sent(ALTER_SHARE_GROUP_OFFSETS)
    assert [
        (t.topic_name, [(p.partition_index, p.start_offset) for p in t.partitions])
        for t in request.body.topics
    ] == [(TOPIC, [(1, LOG_END)])]
    offsets = await scene.offsets(IDLE)
    assert [offsets[tp(p)].start_offset for p in range(3)] == [IDLE_OFFSETS[0], LOG_END, IDLE_OFFSETS[2]]


async def test_reset_to_datetime_falls_back_to_the_end(
    scene: Scene, admin: ShareAdmin, faults: Faults
) -> None:
    between = stamp(7) + timedelta(milliseconds=500)  # the first record at or after it: offset 8
    assert await admin.reset_share_group_offsets(IDLE, TOPIC, to=between, partitions=[1]) == {1: 8}
    # After the last record there is no offset for the time: the log end is used.
    after = stamp(LOG_END)
    assert await admin.reset_share_group_offsets(IDLE, TOPIC, to=after, partitions=[2]) == {2: LOG_END}
    timestamps = [p.timestamp for r in faults.sent(LIST_OFFSETS) for t in r.body.topics for p in t.partitions]
    millis = [int(when.timestamp() * 1000) for when in (between, after)]
    assert timestamps == [*millis, -1]
    offsets = await scene.offsets(IDLE)
    assert (offsets[tp(1)].start_offset, offsets[tp(2)].start_offset) == (8, LOG_END)


async def test_reset_to_explicit_offsets(scene: Scene, admin: ShareAdmin, faults: Faults) -> None:
    found = await admin.reset_share_group_offsets(IDLE, TOPIC, to={0: 12, 7: 3})
    assert found[0] == 12
    # Kafka answers a partition the topic does not have with UNKNOWN_TOPIC_OR_PARTITION
    # (GroupMetadataManager.alterShareGroupOffsets), and sets the others.
    assert isinstance(found[7], UnknownTopicOrPartitionError)
    assert not faults.sent(LIST_OFFSETS)
    assert (await scene.offsets(IDLE))[tp(0)] == PartitionOffsetInfo(12, 0, LOG_END - 12)


async def test_reset_of_a_group_with_members_raises_non_empty(scene: Scene, admin: ShareAdmin) -> None:
    before = await scene.offsets(WORKERS)
    with pytest.raises(NonEmptyGroupError):
        await admin.reset_share_group_offsets(WORKERS, TOPIC, to="earliest")
    assert await scene.offsets(WORKERS) == before


async def test_reset_unknown_partition_is_a_partition_error(scene: Scene, admin: ShareAdmin) -> None:
    found = await admin.reset_share_group_offsets(IDLE, TOPIC, to="latest", partitions=[0, 9])
    assert found[0] == LOG_END
    assert isinstance(found[9], UnknownTopicOrPartitionError)


async def test_reset_unknown_topic_raises(scene: Scene, admin: ShareAdmin, faults: Faults) -> None:
    with pytest.raises(UnknownTopicOrPartitionError):
        await admin.reset_share_group_offsets(IDLE, "nope", to="earliest")
    assert not faults.sent(ALTER_SHARE_GROUP_OFFSETS)


async def test_reset_retries_leader_errors_after_a_metadata_refresh(
    scene: Scene, admin: ShareAdmin, faults: Faults
) -> None:
    await faults.refuse(LIST_OFFSETS, ErrorCode.NOT_LEADER_OR_FOLLOWER)
    metadata_before = len(faults.sent(METADATA))
    found = await admin.reset_share_group_offsets(IDLE, TOPIC, to="earliest", partitions=[0])
    assert found == {0: LOG_START}
    assert len(faults.sent(LIST_OFFSETS)) == 2
    assert len(faults.sent(METADATA)) >= metadata_before + 2  # the reset's own lookup, then one per retry


async def test_reset_with_a_persistent_leader_error_reports_it(scene: Scene, faults: Faults) -> None:
    await faults.refuse(LIST_OFFSETS, ErrorCode.NOT_LEADER_OR_FOLLOWER, times=None)
    async with short_admin(scene.broker) as admin:
        found = await admin.reset_share_group_offsets(IDLE, TOPIC, to="earliest", partitions=[0])
    assert isinstance(found[0], NotLeaderOrFollowerError)
    assert not faults.sent(ALTER_SHARE_GROUP_OFFSETS)  # nothing left to set
    assert (await scene.offsets(IDLE))[tp(0)].start_offset == IDLE_OFFSETS[0]


async def test_reset_of_an_offline_partition_reports_it(scene: Scene, faults: Faults) -> None:
    await scene.broker.acall(stop_leader_of_partition_1)
    async with short_admin(scene.broker) as admin:
        found = await admin.reset_share_group_offsets(IDLE, TOPIC, to="latest", partitions=[0, 1])
    # No leader to ask, however often the metadata is read again; the other partition is set.
    assert found[0] == LOG_END
    assert isinstance(found[1], LeaderNotAvailableError)
    (request,) = faults.sent(ALTER_SHARE_GROUP_OFFSETS)
    assert [p.partition_index for p in request.body.topics[0].partitions] == [0]


async def test_reset_rejects_bad_targets(admin: ShareAdmin, faults: Faults) -> None:
    with pytest.raises(ValueError):
        await admin.reset_share_group_offsets(IDLE, TOPIC, to="yesterday")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await admin.reset_share_group_offsets(IDLE, TOPIC, to={0: 1}, partitions=[0])
    with pytest.raises(ValueError):
        await admin.reset_share_group_offsets(IDLE, TOPIC, to={0: -1})
    assert not faults.sent(ALTER_SHARE_GROUP_OFFSETS) and not faults.sent(LIST_OFFSETS)


# --------------------------------------------------------------------------------- deletes


async def test_delete_offsets(scene: Scene, admin: ShareAdmin) -> None:
    await scene.broker.create_topic("other")
    found = await admin.delete_share_group_offsets(IDLE, [TOPIC, "other", "missing"])
    assert found[TOPIC] is None
    # A topic without state and one that does not exist: both UNKNOWN_TOPIC_OR_PARTITION, as
    # from real Kafka (tests/realkafka/test_admin_real_kafka.py, _compare_offset_deletion).
    assert isinstance(found["other"], UnknownTopicOrPartitionError)
    assert isinstance(found["missing"], UnknownTopicOrPartitionError)
    assert await scene.offsets(IDLE) == {}


async def test_delete_offsets_of_a_group_with_members_raises(scene: Scene, admin: ShareAdmin) -> None:
    before = await scene.offsets(WORKERS)
    with pytest.raises(NonEmptyGroupError):
        await admin.delete_share_group_offsets(WORKERS, TOPIC)
    assert await scene.offsets(WORKERS) == before


async def test_delete_offsets_of_unknown_group_raises(scene: Scene, admin: ShareAdmin) -> None:
    # GroupCoordinatorShard.initiateDeleteShareGroupOffsets looks the group up first.
    with pytest.raises(GroupIdNotFoundError, match="Group nope not found"):
        await admin.delete_share_group_offsets("nope", [TOPIC])


async def test_delete_groups(scene: Scene, admin: ShareAdmin) -> None:
    found = await admin.delete_share_groups([IDLE, WORKERS, "nope"])
    assert found[IDLE] is None
    assert isinstance(found[WORKERS], NonEmptyGroupError)
    assert isinstance(found["nope"], GroupIdNotFoundError)
    assert [g.group_id for g in await admin.list_share_groups()] == [WORKERS]
    assert await scene.offsets(IDLE) == {}  # its state went with it


async def test_delete_groups_retries_the_coordinator(scene: Scene, admin: ShareAdmin, faults: Faults) -> None:
    await faults.refuse(DELETE_GROUPS, ErrorCode.NOT_COORDINATOR)
    assert await admin.delete_share_groups(IDLE) == {IDLE: None}  # a lone name is one group
    assert len(faults.sent(DELETE_GROUPS)) == 2


# --------------------------------------------------------------------------------- configs


async def test_describe_group_config(broker: ThreadedBroker, admin: ShareAdmin, faults: Faults) -> None:
    async with setup_admin(broker) as setup:
        await setup.alter_group_config(WORKERS, set={"share.auto.offset.reset": "earliest"})
    entries = await admin.describe_group_config(WORKERS)
    reset = entries["share.auto.offset.reset"]
    assert (reset.value, reset.source, reset.is_default) == ("earliest", ConfigSource.GROUP_CONFIG, False)
    lock = entries["share.record.lock.duration.ms"]
    assert (lock.value, lock.source, lock.is_default) == ("30000", ConfigSource.DEFAULT_CONFIG, True)
    (request,) = faults.sent(DESCRIBE_CONFIGS)
    assert [(r.resource_type, r.resource_name, r.configuration_keys) for r in request.body.resources] == [
        (32, WORKERS, None)
    ]
    assert request.version >= 3 and request.body.include_documentation


async def test_describe_group_config_passes_documentation_on(admin: ShareAdmin, faults: Faults) -> None:
    # Kafka sends GroupConfig's documentation of each name (ConfigHelper.createGroupConfigEntry);
    # the embedded broker sends "", which ShareAdmin reports as no documentation.
    assert all(e.documentation is None for e in (await admin.describe_group_config(WORKERS)).values())

    def documented(request: Any, answer: Any) -> Any:
        for result in answer.results:
            for config in result.configs:
                config.documentation = f"what {config.name} does"
        return answer

    await faults.rewrite(DESCRIBE_CONFIGS, documented)
    entries = await admin.describe_group_config(WORKERS)
    assert entries["share.isolation.level"].documentation == "what share.isolation.level does"


async def test_describe_group_config_raises_the_resource_error(admin: ShareAdmin, faults: Faults) -> None:
    def unauthorized(request: Any, answer: Any) -> Any:
        for result in answer.results:
            result.error_code = ErrorCode.GROUP_AUTHORIZATION_FAILED  # as ConfigHelper refuses
            result.configs = []
        return answer

    await faults.rewrite(DESCRIBE_CONFIGS, unauthorized)
    with pytest.raises(GroupAuthorizationFailedError) as info:
        await admin.describe_group_config(WORKERS)
    assert info.value.context == f"group {WORKERS!r}"


async def test_alter_group_config_sets_and_deletes(admin: ShareAdmin, faults: Faults) -> None:
    await admin.alter_group_config(WORKERS, set={"share.isolation.level": "read_committed"})
    await admin.alter_group_config(
        WORKERS, set={"share.auto.offset.reset": "earliest"}, delete=["share.isolation.level"]
    )
    entries = await admin.describe_group_config(WORKERS)
    assert (entries["share.auto.offset.reset"].value, entries["share.auto.offset.reset"].source) == (
        "earliest",
        ConfigSource.GROUP_CONFIG,
    )
    assert (entries["share.isolation.level"].value, entries["share.isolation.level"].source) == (
        "read_uncommitted",
        ConfigSource.DEFAULT_CONFIG,
    )
    request = faults.sent(INCREMENTAL_ALTER_CONFIGS)[1].body
    assert [(r.resource_type, r.resource_name) for r in request.resources] == [(32, WORKERS)]
    ops = [(c.name, c.config_operation, c.value) for c in request.resources[0].configs]
    assert ops == [("share.auto.offset.reset", 0, "earliest"), ("share.isolation.level", 1, None)]


async def test_alter_group_config_invalid(admin: ShareAdmin) -> None:
    with pytest.raises(InvalidConfigError, match="Invalid value sideways for configuration") as info:
        await admin.alter_group_config(WORKERS, set={"share.auto.offset.reset": "sideways"})
    assert info.value.context == f"group {WORKERS!r}"
    with pytest.raises(InvalidConfigError, match=r"Unknown group config name: share\.no\.such\.thing"):
        await admin.alter_group_config(WORKERS, set={"share.no.such.thing": "1"})
    entries = await admin.describe_group_config(WORKERS)
    assert not [e.name for e in entries.values() if e.source == ConfigSource.GROUP_CONFIG]


async def test_alter_group_config_validate_only(admin: ShareAdmin, faults: Faults) -> None:
    await admin.alter_group_config(WORKERS, set={"share.auto.offset.reset": "earliest"}, validate_only=True)
    assert faults.sent(INCREMENTAL_ALTER_CONFIGS)[0].body.validate_only
    reset = (await admin.describe_group_config(WORKERS))["share.auto.offset.reset"]
    assert (reset.value, reset.source) == ("latest", ConfigSource.DEFAULT_CONFIG)
    # Validation still applies.
    with pytest.raises(InvalidConfigError):
        await admin.alter_group_config(
            WORKERS, set={"share.auto.offset.reset": "sideways"}, validate_only=True
        )


async def test_alter_group_config_rejects_nonsense_locally(admin: ShareAdmin, faults: Faults) -> None:
    with pytest.raises(ValueError):
        await admin.alter_group_config(WORKERS)
    with pytest.raises(ValueError):
        await admin.alter_group_config(WORKERS, set={"a": "1"}, delete=["a"])
    assert not faults.sent(INCREMENTAL_ALTER_CONFIGS)


# --------------------------------------------------------------------------------- topics


async def test_create_topic_goes_to_the_controller(broker: ThreadedBroker, faults: Faults) -> None:
    # Kafka's admin sends topic creation to the controller Metadata names; here node 3 (the
    # embedded broker names its first live node).
    def controller_3(request: Any, answer: Any) -> Any:
        answer.controller_id = 3
        return answer

    await faults.rewrite(METADATA, controller_3, times=None)
    async with ShareAdmin(broker.bootstrap_servers, request_timeout=10.0) as admin:
        topic_id = await admin.create_topic("events", partitions=4, config={"retention.ms": "1000"})
        listings = {t.name: t for t in await admin.list_topics()}
    assert (listings["events"].topic_id, listings["events"].partitions) == (topic_id, 4)
    (created,) = faults.sent(CREATE_TOPICS)
    assert created.node_id == 3
    topic = created.body.topics[0]
    assert (topic.num_partitions, topic.replication_factor) == (4, 1)
    assert [(c.name, c.value) for c in topic.configs] == [("retention.ms", "1000")]


async def test_create_topic_retries_not_controller(admin: ShareAdmin, faults: Faults) -> None:
    # The controller moved: NOT_CONTROLLER, then metadata is read again and the call repeated.
    await faults.refuse(CREATE_TOPICS, ErrorCode.NOT_CONTROLLER)
    metadata_before = len(faults.sent(METADATA))
    topic_id = await admin.create_topic("events")
    assert [t.topic_id for t in await admin.list_topics() if t.name == "events"] == [topic_id]
    assert len(faults.sent(CREATE_TOPICS)) == 2
    assert len(faults.sent(METADATA)) >= metadata_before + 1
