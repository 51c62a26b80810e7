"""ShareAdmin against fake brokers: every method's success and error paths, and coordinator retries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

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
    NonEmptyGroupError,
    NotLeaderOrFollowerError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from tests.client.fakes import owned_tasks

from .fakes import AdminFake, FakeMember, FakeShareGroup

FIND, LIST_GROUPS, LIST_OFFSETS, DESCRIBE, DESCRIBE_OFFSETS, ALTER_OFFSETS = 10, 16, 2, 77, 90, 91


@pytest.fixture
async def fake() -> AsyncIterator[AdminFake]:
    async with AdminFake() as cluster:
        cluster.add_topic("jobs", {0: 1, 1: 2, 2: 3}, start=5, end=100)
        cluster.logs[("jobs", 1)].timestamps = [(1_000, 10), (2_000, 20), (3_000, 30)]
        cluster.groups["workers"] = FakeShareGroup(
            members=[
                FakeMember("m-1", ["jobs"], {"jobs": [0, 1]}),
                FakeMember("m-2", ["jobs"], {"jobs": [2]}),
            ],
            offsets={("jobs", 0): (7, 93), ("jobs", 1): (40, 60), ("jobs", 2): (100, 0)},
            lister=2,
        )
        cluster.groups["idle"] = FakeShareGroup(offsets={("jobs", 0): (0, 100)}, lister=3)
        cluster.consumer_groups["classic-app"] = 1
        yield cluster


@pytest.fixture
async def admin(fake: AdminFake) -> AsyncIterator[ShareAdmin]:
    async with ShareAdmin(fake.bootstrap, request_timeout=5.0, retry_backoff=0.001) as client:
        yield client


# --------------------------------------------------------------------------------- lifecycle


async def test_close_leaves_no_tasks(fake: AdminFake) -> None:
    admin = ShareAdmin(fake.bootstrap)
    await admin.start()
    await admin.describe_share_groups(["workers"])
    await admin.close()
    assert not owned_tasks()


# --------------------------------------------------------------------------------- list


async def test_list_asks_every_broker_for_share_groups_and_merges(fake: AdminFake, admin: ShareAdmin) -> None:
    listings = await admin.list_share_groups()
    assert [(g.group_id, g.state) for g in listings] == [("idle", "Empty"), ("workers", "Stable")]
    requests = fake.requests(LIST_GROUPS)
    assert len(requests) == 3  # one per broker: each lists only the groups it coordinates
    assert all(r.version == 5 and r.body.types_filter == ["share"] for r in requests)


async def test_list_passes_states(fake: AdminFake, admin: ShareAdmin) -> None:
    listings = await admin.list_share_groups(states=["Stable"])
    assert [g.group_id for g in listings] == ["workers"]


async def test_list_without_v5_filters_by_protocol_type() -> None:
    versions = {16: (0, 4)}
    async with AdminFake() as fake:
        for broker in fake.brokers.values():
            broker.api_versions = {**broker.api_versions, **versions}
        fake.groups["workers"] = FakeShareGroup(lister=1)
        fake.consumer_groups["classic-app"] = 1
        async with ShareAdmin(fake.bootstrap) as admin:
            listings = await admin.list_share_groups()
        assert [(g.group_id, g.state) for g in listings] == [("workers", "Empty")]
        assert {(r.version, tuple(r.body.types_filter)) for r in fake.requests(LIST_GROUPS)} == {(4, ())}


async def test_list_retries_a_loading_broker(fake: AdminFake, admin: ShareAdmin) -> None:
    fake.inject[LIST_GROUPS] = [ErrorCode.COORDINATOR_LOAD_IN_PROGRESS]
    listings = await admin.list_share_groups()
    assert len(listings) == 2
    assert len(fake.requests(LIST_GROUPS)) == 4


async def test_list_raises_a_non_retriable_error(fake: AdminFake, admin: ShareAdmin) -> None:
    fake.inject[LIST_GROUPS] = [ErrorCode.CLUSTER_AUTHORIZATION_FAILED]
    with pytest.raises(BrokerError) as info:
        await admin.list_share_groups()
    assert info.value.code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED


# --------------------------------------------------------------------------------- describe


async def test_describe_maps_members_and_assignments(admin: ShareAdmin) -> None:
    found = await admin.describe_share_groups(["workers", "idle"])
    workers = found["workers"]
    assert isinstance(workers, ShareGroupDescription)
    assert (workers.state, workers.group_epoch, workers.assignment_epoch, workers.assignor) == (
        "Stable",
        3,
        3,
        "simple",
    )
    first = workers.members[0]
    assert (first.member_id, first.client_id, first.host, first.subscriptions) == (
        "m-1",
        "worker",
        "/127.0.0.1",
        ("jobs",),
    )
    assert dict(first.assignment) == {"jobs": (0, 1)}
    idle = found["idle"]
    assert isinstance(idle, ShareGroupDescription) and idle.state == "Empty" and idle.members == ()


async def test_describe_reports_unknown_groups_per_group(admin: ShareAdmin) -> None:
    found = await admin.describe_share_groups(["workers", "nope", "classic-app"])
    assert isinstance(found["workers"], ShareGroupDescription)
    assert isinstance(found["nope"], GroupIdNotFoundError)
    assert isinstance(found["classic-app"], GroupIdNotFoundError)
    assert "not a share group" in str(found["classic-app"])


async def test_describe_follows_a_moved_coordinator(fake: AdminFake, admin: ShareAdmin) -> None:
    await admin.describe_share_groups(["workers"])
    fake.coordinator = 2  # node 1 now answers NOT_COORDINATOR
    found = await admin.describe_share_groups(["workers"])
    assert isinstance(found["workers"], ShareGroupDescription)
    assert len(fake.requests(FIND)) == 2  # looked up again after NOT_COORDINATOR
    assert [fake.node_of_request(r) for r in fake.requests(DESCRIBE)] == [1, 1, 2]


@pytest.mark.parametrize(
    "code",
    [ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS],
)
async def test_coordinator_errors_are_retried(fake: AdminFake, admin: ShareAdmin, code: int) -> None:
    fake.inject[DESCRIBE] = [code, code]
    found = await admin.describe_share_groups(["workers"])
    assert isinstance(found["workers"], ShareGroupDescription)
    assert len(fake.requests(DESCRIBE)) == 3
    assert len(fake.requests(FIND)) == 3  # the coordinator is forgotten after each


async def test_find_coordinator_errors_are_retried(fake: AdminFake, admin: ShareAdmin) -> None:
    fake.coordinator_errors = [ErrorCode.COORDINATOR_NOT_AVAILABLE]
    found = await admin.describe_share_groups(["workers"])
    assert isinstance(found["workers"], ShareGroupDescription)


async def test_find_coordinator_fatal_error_is_the_groups_result(fake: AdminFake, admin: ShareAdmin) -> None:
    fake.coordinator_errors = [ErrorCode.GROUP_AUTHORIZATION_FAILED]
    found = await admin.describe_share_groups(["workers"])
    assert isinstance(found["workers"], GroupAuthorizationFailedError)


async def test_coordinator_retries_stop_at_the_timeout(fake: AdminFake) -> None:
    fake.inject[DESCRIBE] = [ErrorCode.COORDINATOR_LOAD_IN_PROGRESS] * 10_000
    fake.inject[DESCRIBE_OFFSETS] = [ErrorCode.COORDINATOR_LOAD_IN_PROGRESS] * 10_000
    async with ShareAdmin(fake.bootstrap, request_timeout=0.3, retry_backoff=0.01) as admin:
        found = await admin.describe_share_groups(["workers"])
        assert isinstance(found["workers"], CoordinatorLoadInProgressError)
        with pytest.raises(CoordinatorLoadInProgressError):
            await admin.describe_share_group_offsets("workers")


async def test_unreachable_coordinator_times_out(fake: AdminFake) -> None:
    async with ShareAdmin(fake.bootstrap, request_timeout=0.3, retry_backoff=0.01) as admin:
        await fake.brokers[1].close()  # the coordinator goes away for good
        with pytest.raises(KafkaTimeoutError):
            await admin.describe_share_groups(["workers"])


# --------------------------------------------------------------------------------- offsets


async def test_describe_offsets_all_topics(admin: ShareAdmin) -> None:
    found = await admin.describe_share_group_offsets("workers")
    assert found == {
        TopicPartition("jobs", 0): PartitionOffsetInfo(7, 0, 93),
        TopicPartition("jobs", 1): PartitionOffsetInfo(40, 0, 60),
        TopicPartition("jobs", 2): PartitionOffsetInfo(100, 0, 0),
    }


async def test_describe_offsets_by_topic_name_asks_for_every_partition(
    fake: AdminFake, admin: ShareAdmin
) -> None:
    found = await admin.describe_share_group_offsets("idle", ["jobs"])
    request = fake.requests(DESCRIBE_OFFSETS)[0]
    assert [(t.topic_name, t.partitions) for t in request.body.groups[0].topics] == [("jobs", [0, 1, 2])]
    assert found[TopicPartition("jobs", 0)] == PartitionOffsetInfo(0, 0, 100)
    missing = found[TopicPartition("jobs", 1)]
    assert isinstance(missing.error, UnknownTopicOrPartitionError) and missing.start_offset == -1


async def test_describe_offsets_by_partition(admin: ShareAdmin) -> None:
    found = await admin.describe_share_group_offsets("workers", {"jobs": [2]})
    assert list(found) == [TopicPartition("jobs", 2)]


async def test_describe_offsets_v0_has_no_lag() -> None:
    async with AdminFake() as fake:
        for broker in fake.brokers.values():
            broker.api_versions = {**broker.api_versions, DESCRIBE_OFFSETS: (0, 0)}
        fake.add_topic("jobs", {0: 1})
        fake.groups["g"] = FakeShareGroup(offsets={("jobs", 0): (3, 10)})
        async with ShareAdmin(fake.bootstrap) as admin:
            found = await admin.describe_share_group_offsets("g")
        assert found == {TopicPartition("jobs", 0): PartitionOffsetInfo(3, 0, -1)}
        assert fake.requests(DESCRIBE_OFFSETS)[0].version == 0


async def test_describe_offsets_of_unknown_group_is_empty(admin: ShareAdmin) -> None:
    # As Kafka 4.2.2 and 4.4.0 answer (tests/realkafka/test_admin_real_kafka.py): no error.
    assert await admin.describe_share_group_offsets("nope") == {}


async def test_describe_offsets_of_unknown_topic_raises(admin: ShareAdmin) -> None:
    with pytest.raises(UnknownTopicOrPartitionError):
        await admin.describe_share_group_offsets("workers", ["no-such-topic"])


# --------------------------------------------------------------------------------- reset


async def test_reset_to_earliest_asks_each_leader(fake: AdminFake, admin: ShareAdmin) -> None:
    found = await admin.reset_share_group_offsets("idle", "jobs", to="earliest")
    assert found == {0: 5, 1: 5, 2: 5}
    assert sorted(fake.node_of_request(r) for r in fake.requests(LIST_OFFSETS)) == [1, 2, 3]
    assert all(r.body.replica_id == -1 for r in fake.requests(LIST_OFFSETS))
    assert fake.groups["idle"].offsets[("jobs", 2)] == (5, 95)


async def test_reset_to_latest_some_partitions(fake: AdminFake, admin: ShareAdmin) -> None:
    found = await admin.reset_share_group_offsets("idle", "jobs", to="latest", partitions=[1])
    assert found == {1: 100}
    request = fake.requests(ALTER_OFFSETS)[0].body
    assert [
        (t.topic_name, [(p.partition_index, p.start_offset) for p in t.partitions]) for t in request.topics
    ] == [("jobs", [(1, 100)])]


async def test_reset_to_datetime_falls_back_to_the_end(fake: AdminFake, admin: ShareAdmin) -> None:
    when = datetime.fromtimestamp(1.5, UTC)
    found = await admin.reset_share_group_offsets("idle", "jobs", to=when, partitions=[1, 2])
    # Partition 1 has a record at 2 s; partition 2 has none after 1.5 s, so its log end is used.
    assert found == {1: 20, 2: 100}
    timestamps = [
        p.timestamp for r in fake.requests(LIST_OFFSETS) for t in r.body.topics for p in t.partitions
    ]
    assert sorted(timestamps) == [-1, 1500, 1500]


async def test_reset_to_explicit_offsets(fake: AdminFake, admin: ShareAdmin) -> None:
    found = await admin.reset_share_group_offsets("idle", "jobs", to={0: 12, 7: 3})
    assert found[0] == 12
    assert isinstance(found[7], UnknownTopicOrPartitionError)
    assert not fake.requests(LIST_OFFSETS)


async def test_reset_of_a_group_with_members_raises_non_empty(admin: ShareAdmin) -> None:
    with pytest.raises(NonEmptyGroupError):
        await admin.reset_share_group_offsets("workers", "jobs", to="earliest")


async def test_reset_unknown_partition_is_a_partition_error(fake: AdminFake, admin: ShareAdmin) -> None:
    found = await admin.reset_share_group_offsets("idle", "jobs", to="latest", partitions=[0, 9])
    assert found[0] == 100
    assert isinstance(found[9], UnknownTopicOrPartitionError)


async def test_reset_unknown_topic_raises(admin: ShareAdmin) -> None:
    with pytest.raises(UnknownTopicOrPartitionError):
        await admin.reset_share_group_offsets("idle", "nope", to="earliest")


async def test_reset_retries_leader_errors_after_a_metadata_refresh(
    fake: AdminFake, admin: ShareAdmin
) -> None:
    fake.inject[LIST_OFFSETS] = [ErrorCode.NOT_LEADER_OR_FOLLOWER]
    metadata_before = len(fake.requests(3))
    found = await admin.reset_share_group_offsets("idle", "jobs", to="earliest", partitions=[0])
    assert found == {0: 5}
    assert len(fake.requests(LIST_OFFSETS)) == 2
    assert len(fake.requests(3)) >= metadata_before + 2  # the reset's own lookup, then one per retry


async def test_reset_with_a_persistent_leader_error_reports_it(fake: AdminFake) -> None:
    fake.inject[LIST_OFFSETS] = [ErrorCode.NOT_LEADER_OR_FOLLOWER] * 10_000
    async with ShareAdmin(fake.bootstrap, request_timeout=0.3, retry_backoff=0.01) as admin:
        found = await admin.reset_share_group_offsets("idle", "jobs", to="earliest", partitions=[0])
    assert isinstance(found[0], NotLeaderOrFollowerError)
    assert not fake.requests(ALTER_OFFSETS)  # nothing left to set


async def test_reset_rejects_bad_targets(admin: ShareAdmin) -> None:
    with pytest.raises(ValueError):
        await admin.reset_share_group_offsets("idle", "jobs", to="yesterday")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await admin.reset_share_group_offsets("idle", "jobs", to={0: 1}, partitions=[0])
    with pytest.raises(ValueError):
        await admin.reset_share_group_offsets("idle", "jobs", to={0: -1})


# --------------------------------------------------------------------------------- deletes


async def test_delete_offsets(fake: AdminFake, admin: ShareAdmin) -> None:
    found = await admin.delete_share_group_offsets("idle", ["jobs", "other"])
    assert found["jobs"] is None
    assert isinstance(found["other"], UnknownTopicOrPartitionError)
    assert fake.groups["idle"].offsets == {}


async def test_delete_offsets_of_a_group_with_members_raises(admin: ShareAdmin) -> None:
    with pytest.raises(NonEmptyGroupError):
        await admin.delete_share_group_offsets("workers", "jobs")


async def test_delete_groups(fake: AdminFake, admin: ShareAdmin) -> None:
    found = await admin.delete_share_groups(["idle", "workers", "nope"])
    assert found["idle"] is None
    assert isinstance(found["workers"], NonEmptyGroupError)
    assert isinstance(found["nope"], GroupIdNotFoundError)
    assert set(fake.groups) == {"workers"}


async def test_delete_groups_retries_the_coordinator(fake: AdminFake, admin: ShareAdmin) -> None:
    fake.inject[42] = [ErrorCode.NOT_COORDINATOR]
    assert await admin.delete_share_groups(["idle"]) == {"idle": None}


# --------------------------------------------------------------------------------- configs


async def test_describe_group_config(fake: AdminFake, admin: ShareAdmin) -> None:
    fake.group_configs["workers"] = {"share.auto.offset.reset": "earliest"}
    entries = await admin.describe_group_config("workers")
    reset = entries["share.auto.offset.reset"]
    assert (reset.value, reset.source, reset.is_default) == ("earliest", ConfigSource.GROUP_CONFIG, False)
    lock = entries["share.record.lock.duration.ms"]
    assert (lock.value, lock.source, lock.is_default) == ("30000", ConfigSource.DEFAULT_CONFIG, True)
    assert lock.documentation == "docs for share.record.lock.duration.ms"
    request = fake.requests(32)[0].body
    assert [(r.resource_type, r.resource_name, r.configuration_keys) for r in request.resources] == [
        (32, "workers", None)
    ]


async def test_alter_group_config_sets_and_deletes(fake: AdminFake, admin: ShareAdmin) -> None:
    fake.group_configs["workers"] = {"share.isolation.level": "read_committed"}
    await admin.alter_group_config(
        "workers", set={"share.auto.offset.reset": "earliest"}, delete=["share.isolation.level"]
    )
    assert fake.group_configs["workers"] == {"share.auto.offset.reset": "earliest"}
    ops = [(c.name, c.config_operation, c.value) for c in fake.requests(44)[0].body.resources[0].configs]
    assert ops == [("share.auto.offset.reset", 0, "earliest"), ("share.isolation.level", 1, None)]


async def test_alter_group_config_invalid(fake: AdminFake, admin: ShareAdmin) -> None:
    with pytest.raises(InvalidConfigError, match="Invalid value sideways"):
        await admin.alter_group_config("workers", set={"share.auto.offset.reset": "sideways"})
    with pytest.raises(InvalidConfigError):
        await admin.alter_group_config("workers", set={"share.no.such.thing": "1"})
    assert "workers" not in fake.group_configs


async def test_alter_group_config_validate_only(fake: AdminFake, admin: ShareAdmin) -> None:
    await admin.alter_group_config("workers", set={"share.auto.offset.reset": "earliest"}, validate_only=True)
    assert "workers" not in fake.group_configs


async def test_alter_group_config_rejects_nonsense_locally(admin: ShareAdmin) -> None:
    with pytest.raises(ValueError):
        await admin.alter_group_config("workers")
    with pytest.raises(ValueError):
        await admin.alter_group_config("workers", set={"a": "1"}, delete=["a"])


# --------------------------------------------------------------------------------- topics


async def test_create_list_delete_topics(fake: AdminFake, admin: ShareAdmin) -> None:
    topic_id = await admin.create_topic("events", partitions=4, config={"retention.ms": "1000"})
    assert fake.topics["events"][0] == topic_id
    created = fake.requests(19)[0]
    assert fake.node_of_request(created) == 1  # the controller Metadata names
    topic = created.body.topics[0]
    assert (topic.num_partitions, topic.replication_factor) == (4, 1)
    assert [(c.name, c.value) for c in topic.configs] == [("retention.ms", "1000")]
    with pytest.raises(TopicAlreadyExistsError):
        await admin.create_topic("events")
    listings = await admin.list_topics()
    assert [(t.name, t.partitions) for t in listings] == [("events", 4), ("jobs", 3)]
    await admin.delete_topic("events")
    assert "events" not in fake.topics
    with pytest.raises(UnknownTopicOrPartitionError):
        await admin.delete_topic("events")
