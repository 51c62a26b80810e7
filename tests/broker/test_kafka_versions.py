"""Choosing the Kafka release the embedded broker emulates: EmbeddedBroker, the config, the CLI
and the pytest fixtures (what each release answers is compared with real Kafka in
tests/differential/test_versions.py)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from aioshare.broker import _codes
from aioshare.broker.config import (
    BrokerConfig,
    GroupConfigs,
    InvalidBrokerConfig,
    InvalidGroupConfig,
    RawValue,
)
from aioshare.broker.embedded import EmbeddedBroker
from aioshare.broker.kafka_versions import KAFKA_VERSIONS, NEWEST, parse_kafka_version
from aioshare.broker.share_groups import ShareGroupCoordinator, TopicMetadata
from aioshare.broker.share_partition import AckBatch, AcquiredRange, SharePartition
from aioshare.client.connection import Connection
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.messages import (
    ApiVersionsRequest,
    ApiVersionsResponse,
    DeleteGroupsRequest,
    DeleteGroupsResponse,
)
from aioshare.protocol.types import AckType, AcquireMode
from aioshare.testing import ThreadedBroker
from tests.cli._cli import start_cli_broker

pytest_plugins = ["pytester"]

API_VERSIONS = 18


async def finalized(host: str, port: int) -> tuple[dict[str, int], tuple[int, int]]:
    """The finalized feature levels and the ApiVersions range a broker advertises."""
    connection = await Connection.open(host, port)
    try:
        response = await connection.send(
            ApiVersionsRequest(client_software_name="test", client_software_version="1"),
            4,
            response_type=ApiVersionsResponse,
        )
        return (
            {f.name: f.max_version_level for f in response.finalized_features},
            connection.api_versions[API_VERSIONS],
        )
    finally:
        await connection.close()


@pytest.mark.parametrize(("name", "highest"), [("4.2", 2), ("4.3", 2), ("4.4", 3)])
async def test_delete_groups_v3_on_44(name: str, highest: int) -> None:
    """DeleteGroups v3 (a per-group ErrorMessage) is 4.4's; a share group's results carry no
    message there (GroupCoordinatorShard.deleteGroups sets one only on the streams path)."""
    async with EmbeddedBroker(kafka_version=name) as broker:
        host, port = broker.address(broker.node_ids[0])
        connection = await Connection.open(host, port)
        try:
            assert connection.api_versions[DeleteGroupsRequest.API_KEY] == (0, highest)
            response = await connection.send(
                DeleteGroupsRequest(groups_names=["never-existed"]),
                highest,
                response_type=DeleteGroupsResponse,
            )
        finally:
            await connection.close()
    (result,) = response.results
    assert (result.group_id, result.error_code, result.error_message) == (
        "never-existed",
        ErrorCode.GROUP_ID_NOT_FOUND,
        None,
    )


@pytest.mark.parametrize("name", list(KAFKA_VERSIONS))
async def test_each_release_is_selectable(name: str) -> None:
    async with EmbeddedBroker(kafka_version=name) as broker:
        assert broker.kafka_version == name
        host, port = broker.address(broker.node_ids[0])
        levels, api_versions = await finalized(host, port)
    assert levels["share.version"] == (2 if name == "4.4" else 1)
    assert levels["metadata.version"] == {"4.2": 29, "4.3": 30, "4.4": 33}[name]
    # ApiVersions v5 (KIP-1242) is 4.4's.
    assert api_versions == ((0, 5) if name == "4.4" else (0, 4))


async def test_newest_by_default_and_as_a_config() -> None:
    async with EmbeddedBroker() as broker:
        assert broker.kafka_version == NEWEST
    async with EmbeddedBroker(config={"aioshare.kafka.version": "4.2.2"}) as broker:
        assert broker.kafka_version == "4.2"
        assert broker.cluster.kafka_version.feature_level("share.version") == 1


@pytest.mark.parametrize("text", ["4.1", "5.0", "4", "4.4.0.1", "latest", ""])
def test_unknown_releases_are_refused(text: str) -> None:
    with pytest.raises(InvalidBrokerConfig, match=r"cannot be emulated; the embedded broker emulates 4\.2"):
        EmbeddedBroker(kafka_version=text)
    with pytest.raises(ValueError, match="cannot be emulated"):
        parse_kafka_version(text)


def test_a_contradicting_config_is_refused() -> None:
    with pytest.raises(InvalidBrokerConfig, match=r"contradicts aioshare\.kafka\.version"):
        EmbeddedBroker(kafka_version="4.2", config={"aioshare.kafka.version": "4.4"})
    # Saying the same twice is fine.
    assert EmbeddedBroker(kafka_version="4.2", config={"aioshare.kafka.version": "4.2"}).config


async def test_threaded_broker_passes_the_release_through() -> None:
    with ThreadedBroker(kafka_version="4.2") as broker:
        host, _, port = broker.bootstrap_servers.partition(":")
        levels, api_versions = await finalized(host, int(port))
    assert levels["share.version"] == 1
    assert api_versions == (0, 4)


async def test_cli_kafka_version() -> None:
    process, line = await start_cli_broker("--kafka-version", "4.2")
    try:
        host, _, port = line.rsplit(" ", 1)[1].strip().rpartition(":")
        levels, api_versions = await finalized(host, int(port))
        assert (levels["share.version"], api_versions) == (1, (0, 4))
    finally:
        process.terminate()
        async with asyncio.timeout(30):
            assert await process.wait() == 0


async def test_cli_refuses_an_unknown_release() -> None:
    process, line = await start_cli_broker("--kafka-version", "3.9")
    async with asyncio.timeout(30):
        _, stderr = await process.communicate()
    assert line == ""
    assert process.returncode == 2
    assert b"Kafka version '3.9' cannot be emulated" in stderr


FIXTURE_TESTS = """
import pytest


async def test_ini_option(aioshare_broker, aioshare_session_broker):
    for broker in (aioshare_broker, aioshare_session_broker):
        assert await broker.acall(lambda b: _name(b)) == "4.2"


async def _name(broker):
    return broker.kafka_version


class TestOverride:
    @pytest.fixture
    def aioshare_broker_kafka_version(self):
        return "4.3"

    async def test_fixture_override(self, aioshare_broker):
        assert await aioshare_broker.acall(lambda b: _name(b)) == "4.3"
"""


def test_fixtures_take_the_release_from_the_ini_file_or_a_fixture(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "aioshare_broker_kafka_version = 4.2\n"
    )
    pytester.makepyfile(test_release=FIXTURE_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=2)


# ------------------------------------------------------------------ group configs per release


def broker_config(release: str, **values: RawValue) -> BrokerConfig:
    return BrokerConfig.from_mapping(
        {"aioshare.kafka.version": release, **{k.replace("_", "."): v for k, v in values.items()}}
    )


@pytest.mark.parametrize(
    ("release", "overrides", "message"),
    [
        ("4.2", {"share.delivery.count.limit": "3"}, "Unknown group config name: share.delivery.count.limit"),
        ("4.2", {"errors.deadletterqueue.topic.name": "dlq.x"}, "Unknown group config name: errors"),
        ("4.3", {"errors.deadletterqueue.topic.name": "dlq.x"}, "Unknown group config name: errors"),
        (
            "4.3",
            {"share.delivery.count.limit": "11"},
            "share.delivery.count.limit must be less than or equal to group.share.max.delivery.count.limit",
        ),
        (
            "4.4",
            {"share.delivery.count.limit": "11"},
            "share.delivery.count.limit must be in the range 2 to 10 inclusive.",
        ),
        ("4.4", {"share.delivery.count.limit": "1"}, "Invalid value 1 for configuration share.delivery"),
        (
            "4.4",
            {"share.partition.max.record.locks": "4001"},
            "share.partition.max.record.locks must be in the range 100 to 4000 inclusive.",
        ),
        (
            "4.4",
            {"errors.deadletterqueue.topic.name": "__x"},
            "errors.deadletterqueue.topic.name: DLQ topic name must not start with '__'",
        ),
        (
            "4.4",
            {"streams.rack.aware.assignment.tags": "a,b,a"},
            "streams.rack.aware.assignment.tags must not contain duplicate tag keys.",
        ),
        (
            "4.4",
            {"streams.assignor.name": "x"},
            "streams.assignor.name 'x' is not a registered task assignor. Registered assignors are: [sticky].",
        ),
    ],
)
def test_group_config_validation(release: str, overrides: dict[str, RawValue], message: str) -> None:
    with pytest.raises(InvalidGroupConfig) as raised:
        GroupConfigs(broker_config(release), overrides)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize("release", list(KAFKA_VERSIONS))
def test_session_must_exceed_heartbeat_in_every_release(release: str) -> None:
    broker = broker_config(release, group_share_min_session_timeout_ms=1000)
    with pytest.raises(InvalidGroupConfig) as raised:
        GroupConfigs(broker, {"share.heartbeat.interval.ms": "10000"}).with_changes(
            {"share.session.timeout.ms": "8000"}
        )
    assert str(raised.value) == "share.session.timeout.ms must be greater than share.heartbeat.interval.ms"


def test_stored_values_are_clamped_to_new_bounds_from_43() -> None:
    stored = {"share.delivery.count.limit": "9", "share.auto.offset.reset": "earliest"}
    tighter = broker_config("4.4", group_share_max_delivery_count_limit=6)
    restored = GroupConfigs.restore(tighter, stored)
    assert restored.share_delivery_count_limit == 6
    assert restored.overrides["share.delivery.count.limit"] == 9
    assert (
        GroupConfigs.restore(
            broker_config("4.3", group_share_max_delivery_count_limit=6), stored
        ).share_delivery_count_limit
        == 6
    )
    with pytest.raises(InvalidGroupConfig):
        GroupConfigs(tighter, stored)


def test_42_uses_the_broker_limits() -> None:
    configs = GroupConfigs(broker_config("4.2", group_share_delivery_count_limit=3))
    assert configs.share_delivery_count_limit == 3
    assert configs.share_partition_max_record_locks == 2000
    assert configs.share_renew_acknowledge_enable is True
    assert configs.share_assignment_interval_ms == 0
    assert configs.dead_letter_topic == ""
    assert "share.delivery.count.limit" not in {row.name for row in configs.describe()}


def test_deleting_an_unset_or_unknown_name_changes_nothing() -> None:
    configs = GroupConfigs(broker_config("4.4"), {"share.delivery.count.limit": "3"})
    assert configs.with_changes(delete=["share.no.such", "share.isolation.level"]).overrides == {
        "share.delivery.count.limit": 3
    }


def test_later_broker_configs_are_refused_on_an_earlier_release() -> None:
    with pytest.raises(InvalidBrokerConfig, match=r"is a Kafka 4\.4 config; the broker emulates Kafka 4\.3"):
        broker_config("4.3", errors_deadletterqueue_auto_create_topics_enable="true")
    with pytest.raises(
        InvalidBrokerConfig, match=r"must be greater than or equal to group\.share\.min\.delivery"
    ):
        broker_config("4.4", group_share_min_delivery_count_limit=4, group_share_delivery_count_limit=3)


# ------------------------------------------------------------------ assignment interval (4.3+)


def coordinator(release: str, interval_ms: int) -> ShareGroupCoordinator:
    broker = broker_config(release)
    configs = GroupConfigs(
        broker, {"share.assignment.interval.ms": interval_ms} if release != "4.2" else None
    )
    return ShareGroupCoordinator(broker, group_configs=lambda _group: configs)


TOPICS = {"jobs": TopicMetadata(uuid.UUID(int=1), 2)}


def join(c: ShareGroupCoordinator, member: str, now_ms: int) -> int:
    result = c.heartbeat("g", member, 0, topics=TOPICS, now_ms=now_ms, subscribed_topic_names=["jobs"])
    assert result.error_code == 0
    return sum(len(parts) for parts in (result.assignment or {}).values())


def test_assignment_waits_for_the_interval() -> None:
    c = coordinator("4.4", 1000)
    assert join(c, "m1", 10_000) == 2  # the first assignment is computed at once
    assert join(c, "m2", 10_500) == 0  # half an interval later: the old target assignment
    group = c.group("g")
    assert group is not None and group.group_epoch > group.assignment_epoch
    again = c.heartbeat("g", "m2", group.assignment_epoch, topics=TOPICS, now_ms=11_000)
    assert again.assignment and sum(len(p) for p in again.assignment.values()) > 0


@pytest.mark.parametrize(("release", "interval_ms"), [("4.2", 0), ("4.4", 0)])
def test_without_an_interval_assignment_is_immediate(release: str, interval_ms: int) -> None:
    c = coordinator(release, interval_ms)
    assert join(c, "m1", 10_000) == 2
    assert join(c, "m2", 10_001) > 0


# ------------------------------------------------------------------ per-group limits in the partition


def acquire(sp: SharePartition, member: str, last: int, now: int = 0) -> list[AcquiredRange]:
    offset = sp.next_fetch_offset()
    log = [(n, n) for n in range(offset, last + 1)]
    return sp.acquire(
        member,
        log,
        max_records=500,
        batch_size=500,
        now_ms=now,
        lock_duration_ms=30_000,
        mode=AcquireMode.BATCH_OPTIMIZED,
    ).acquired


def test_renew_refused_when_the_group_disables_it() -> None:
    sp = SharePartition(start_offset=0, max_in_flight_records=2000, max_delivery_count=5)
    acquire(sp, "m", 2)
    sp.set_group_limits(max_in_flight_records=2000, max_delivery_count=5, renew_enabled=False)
    result = sp.acknowledge(
        "m",
        [AckBatch(0, 0, (AckType.ACCEPT,)), AckBatch(1, 1, (AckType.RENEW,))],
        now_ms=1,
        lock_duration_ms=30_000,
    )
    assert (result.error_code, result.error_message) == (
        _codes.INVALID_RECORD_STATE,
        "Renewing acquisition locks is not enabled for the group.",
    )
    # Nothing was applied: offset 0 can still be accepted.
    assert (
        sp.acknowledge("m", [AckBatch(0, 2, (AckType.ACCEPT,))], now_ms=2, lock_duration_ms=30_000).error_code
        == 0
    )


def test_a_lowered_limit_applies_to_records_in_flight() -> None:
    sp = SharePartition(start_offset=0, max_in_flight_records=2000, max_delivery_count=5)
    for _ in range(2):
        assert acquire(sp, "m", 0)[0].first_offset == 0
        sp.acknowledge("m", [AckBatch(0, 0, (AckType.RELEASE,))], now_ms=0, lock_duration_ms=30_000)
    assert acquire(sp, "m", 0) == [AcquiredRange(0, 0, 3)]
    sp.set_group_limits(max_in_flight_records=2000, max_delivery_count=3)
    sp.acknowledge("m", [AckBatch(0, 0, (AckType.RELEASE,))], now_ms=0, lock_duration_ms=30_000)
    assert sp.start_offset == 1  # archived, so the start moved past it
    sp.set_group_limits(max_in_flight_records=100, max_delivery_count=3)
    assert acquire(sp, "m", 500) == [AcquiredRange(1, 100, 1)]
