"""Kafka version emulation: what ApiVersions advertises, compared per release.

`aioshare.kafka.version` (``--kafka-version``) makes the embedded broker answer like Kafka 4.2 or
4.4 (and 4.3, read from source); here each embedded broker is compared with the real release it
emulates (harness.run_per_version).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Mapping
from typing import Any

import pytest

from aioshare.broker.config import InvalidBrokerConfig
from aioshare.broker.embedded import EmbeddedBroker
from aioshare.protocol.errors import ErrorCode, KafkaError
from aioshare.protocol.framing import decode_response, encode_request
from aioshare.protocol.messages import (
    ApiVersionsRequest,
    ApiVersionsResponse,
    MetadataRequest,
    MetadataResponse,
)
from aioshare.testing.kafka import find_java
from aioshare.testing.kafka.cluster import KafkaCluster, KafkaStartError
from aioshare.testing.kafka.requirement import require, require_kafka

from .harness import (
    EMULATED,
    KAFKA_42,
    KAFKA_44,
    TIMEOUT,
    Member,
    Observations,
    Target,
    ack_summary,
    acquired,
    alter_configs,
    assert_same_per_version,
    assigned_count,
    code,
    describe_configs,
    describe_offsets,
    offsets_summary,
    one_member,
    run_per_version,
)

# Where the embedded broker's ranges differ from the release's on purpose, or not yet served:
# {api key: (embedded range, why)}, per release.
KNOWN_RANGE_DIFFERENCES: dict[str, dict[int, tuple[tuple[int, int], str]]] = {
    KAFKA_42: {0: ((3, 13), "Produce v0-2: removed in Kafka 4.0 (KIP-896); Kafka still lists v0")},
    KAFKA_44: {
        0: ((3, 13), "Produce v0-2: removed in Kafka 4.0 (KIP-896); Kafka still lists v0"),
    },
}


async def raw_api_versions(target: Target, version: int, **fields: Any) -> ApiVersionsResponse:
    """One ApiVersions request on a fresh connection, below our client's negotiation: an error
    answer to an unknown version comes as a v0 body, as Kafka's ApiVersionsResponse.parse reads it."""
    request = ApiVersionsRequest(client_software_name="aioshare-diff", client_software_version="1", **fields)
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        writer.write(encode_request(request, version, 7, "diff"))
        async with asyncio.timeout(TIMEOUT):
            (size,) = struct.unpack(">i", await reader.readexactly(4))
            frame = await reader.readexactly(size)
    finally:
        writer.close()
    try:
        response = decode_response(frame, ApiVersionsRequest.API_KEY, version)
    except KafkaError:
        response = decode_response(frame, ApiVersionsRequest.API_KEY, 0)
    assert isinstance(response, ApiVersionsResponse)
    return response


def features(response: ApiVersionsResponse) -> dict[str, Any]:
    return {
        "error": code(response.error_code),
        "supported": [(f.name, f.min_version, f.max_version) for f in response.supported_features],
        "finalized": [
            (f.name, f.min_version_level, f.max_version_level) for f in response.finalized_features
        ],
        # The epoch is the metadata offset of the last feature change: only its sign is Kafka's.
        "epoch": "<epoch>" if response.finalized_features_epoch > 0 else response.finalized_features_epoch,
    }


async def feature_levels(target: Target) -> Observations:
    obs = Observations()
    for version in (3, 4):
        obs.add(f"ApiVersions v{version}", features(await raw_api_versions(target, version)))
    return obs


async def test_features(clusters: Mapping[str, KafkaCluster]) -> None:
    results = await run_per_version(feature_levels, clusters)
    assert_same_per_version(results)
    # The releases differ where the embedded broker must follow them: share.version 2 is 4.4's.
    assert results[KAFKA_42].steps != results[KAFKA_44].steps


async def api_ranges(target: Target) -> Observations:
    obs = Observations()
    response = await raw_api_versions(target, 4)
    obs.add("ranges", {entry.api_key: (entry.min_version, entry.max_version) for entry in response.api_keys})
    return obs


async def test_api_version_ranges(clusters: Mapping[str, KafkaCluster]) -> None:
    """Every API the embedded broker serves has the release's range, bar the known differences."""
    results = await run_per_version(api_ranges, clusters)
    for embedded, real in EMULATED.items():
        ((_, served),) = results[embedded].steps
        ((_, kafka),) = results[real].steps
        known = KNOWN_RANGE_DIFFERENCES[real]
        assert set(served) <= set(kafka), f"{embedded} serves APIs {real} does not have"
        expected = {key: known[key][0] if key in known else kafka[key] for key in served}
        assert served == expected, f"{embedded} vs {real}"
    # ApiVersions v5 (KIP-1242) is 4.4's: the 4.2 emulation does not advertise it.
    assert dict(results["embedded-4.2"].steps)["ranges"][18] == (0, 4)
    assert dict(results["embedded-4.4"].steps)["ranges"][18] == (0, 5)


async def rebootstrap(target: Target) -> Observations:
    """KIP-1242: ApiVersions v5 naming the cluster and node the client meant to reach."""
    obs = Observations()
    connection = await target.connect()
    metadata = await connection.send(
        MetadataRequest(topics=[], allow_auto_topic_creation=False), response_type=MetadataResponse
    )
    cluster_id, (broker,) = metadata.cluster_id, metadata.brokers
    cases = {
        "the right cluster and node": {"cluster_id": cluster_id, "node_id": broker.node_id},
        "another cluster": {"cluster_id": "AAAAAAAAAAAAAAAAAAAAAA", "node_id": broker.node_id},
        "another node": {"cluster_id": cluster_id, "node_id": broker.node_id + 1},
        "a node id without a cluster id": {"cluster_id": None, "node_id": broker.node_id},
        "a cluster id without a node id": {"cluster_id": cluster_id, "node_id": -1},
        "neither": {"cluster_id": None, "node_id": -1},
    }
    for case, fields in cases.items():
        response = await raw_api_versions(target, 5, **fields)
        listed = [(e.api_key, e.min_version, e.max_version) for e in response.api_keys if e.api_key == 18]
        obs.add(case, (code(response.error_code), listed))
    return obs


async def test_rebootstrap_required(clusters: Mapping[str, KafkaCluster]) -> None:
    results = await run_per_version(rebootstrap, clusters)
    assert_same_per_version(results)
    assert dict(results[KAFKA_44].steps)["another cluster"] == ("REBOOTSTRAP_REQUIRED", [])
    assert dict(results[KAFKA_42].steps)["another cluster"] == ("UNSUPPORTED_VERSION", [(18, 0, 4)])


# ------------------------------------------------------------------------------ group configs

ACCEPT, RELEASE, REJECT, RENEW = 1, 2, 3, 4

# IncrementalAlterConfigs on a GROUP, each case on its own: 4.3's per-group share configs are
# unknown to 4.2; 4.4 names the broker bounds by number where 4.2 names the bound's config.
GROUP_CONFIG_CASES: list[tuple[str, dict[str, str | None]]] = [
    ("delivery count limit", {"share.delivery.count.limit": "3"}),
    ("delivery count limit below ConfigDef's 2", {"share.delivery.count.limit": "1"}),
    ("delivery count limit above the broker's max", {"share.delivery.count.limit": "11"}),
    ("record locks", {"share.partition.max.record.locks": "200"}),
    ("record locks below ConfigDef's 100", {"share.partition.max.record.locks": "50"}),
    ("record locks above the broker's max", {"share.partition.max.record.locks": "5000"}),
    ("renew enable", {"share.renew.acknowledge.enable": "false"}),
    ("renew enable not a boolean", {"share.renew.acknowledge.enable": "maybe"}),
    ("assignment interval", {"share.assignment.interval.ms": "0"}),
    ("assignment interval above the broker's max", {"share.assignment.interval.ms": "20000"}),
    ("assignment interval negative", {"share.assignment.interval.ms": "-1"}),
    ("consumer assignment interval", {"consumer.assignment.interval.ms": "16000"}),
    ("lock above the broker's max", {"share.record.lock.duration.ms": "999999999"}),
    ("lock below ConfigDef's 1000", {"share.record.lock.duration.ms": "500"}),
    ("heartbeat below the broker's min", {"share.heartbeat.interval.ms": "100"}),
    ("session below the broker's min", {"share.session.timeout.ms": "1000"}),
    (
        "session not above the heartbeat",
        {"share.heartbeat.interval.ms": "5000", "share.session.timeout.ms": "4000"},
    ),
    ("standby replicas above the broker's max", {"streams.num.standby.replicas": "3"}),
    ("dlq topic", {"errors.deadletterqueue.topic.name": "dlq.orders"}),
    ("dlq topic with an internal name", {"errors.deadletterqueue.topic.name": "__orders"}),
    ("dlq copy record", {"errors.deadletterqueue.copy.record.enable": "true"}),
    ("streams assignor", {"streams.assignor.name": "fancy"}),
    ("rack tags with a duplicate", {"streams.rack.aware.assignment.tags": "zone,rack,zone"}),
    ("unknown name", {"share.no.such.config": "1"}),
]


async def group_config_answers(target: Target) -> Observations:
    obs = Observations()
    group = await target.group()
    conn = await target.connect()
    for case, configs in GROUP_CONFIG_CASES:
        obs.add(case, await alter_configs(conn, group, configs))
    obs.add("delete an unknown name", await alter_configs(conn, group, {"share.no.such": None}, operation=1))
    # What the group holds after the cases that succeeded (DescribeConfigs, sorted by name).
    described = await describe_configs(conn, group)
    (result,) = described.results
    obs.add(
        "describe",
        (
            code(result.error_code),
            sorted((c.name, c.value, c.config_source, c.read_only, c.config_type) for c in result.configs),
        ),
    )
    return obs


async def test_group_config_validation_per_release(clusters: Mapping[str, KafkaCluster]) -> None:
    """IncrementalAlterConfigs' answers (code and message) and DescribeConfigs for a GROUP."""
    results = await run_per_version(group_config_answers, clusters)
    assert_same_per_version(results)
    on_42, on_44 = dict(results[KAFKA_42].steps), dict(results[KAFKA_44].steps)
    assert on_42["delivery count limit"] == (
        ErrorCode.INVALID_CONFIG,
        "Unknown group config name: share.delivery.count.limit",
    )
    assert on_44["delivery count limit"] == (ErrorCode.NONE, None)


async def delivery_count_limit(target: Target) -> Observations:
    """share.delivery.count.limit=2 for one group: released twice, a record is archived (4.4);
    4.2 refuses the config and keeps the broker's limit of 5."""
    obs = Observations()
    topic = await target.topic()
    group = await target.group()
    conn = await target.connect()
    obs.add("set the limit", await alter_configs(conn, group, {"share.delivery.count.limit": "2"}))
    await target.produce(conn, topic, 2)
    member = Member(target, conn, group, "m1")
    await member.join([topic.name])
    deliveries = []
    while True:
        fetched = await member.fetch_until(topic, lambda r: bool(acquired(r)), max_records=1)
        first = acquired(fetched)[0]
        deliveries.append(first)
        if first[0] != 0:
            break
        await member.acknowledge(topic, {0: [(0, 0, [RELEASE])]})
    obs.add("deliveries until record 1 comes", deliveries)
    obs.add("offsets", offsets_summary(target, await describe_offsets(conn, group, {topic.name: [0]})))
    return obs


async def test_delivery_count_limit_per_group(clusters: Mapping[str, KafkaCluster]) -> None:
    results = await run_per_version(delivery_count_limit, clusters)
    assert_same_per_version(results)
    assert len(dict(results[KAFKA_44].steps)["deliveries until record 1 comes"]) == 3
    assert len(dict(results[KAFKA_42].steps)["deliveries until record 1 comes"]) == 6


async def limit_changed_in_flight(target: Target) -> Observations:
    """Kafka reads the limit on every operation: lowered while a record is acquired (delivery 2),
    its release archives it."""
    obs = Observations()
    topic, group, conn, member = await one_member(target, 2)
    for attempt in (1, 2):
        fetched = await member.fetch_until(topic, lambda r: bool(acquired(r)), max_records=1)
        obs.add(f"delivery {attempt}", acquired(fetched))
        if attempt == 1:
            await member.acknowledge(topic, {0: [(0, 0, [RELEASE])]})
    obs.add("lower the limit to 2", await alter_configs(conn, group, {"share.delivery.count.limit": "2"}))
    obs.add("release", ack_summary(target, await member.acknowledge(topic, {0: [(0, 0, [RELEASE])]})))
    fetched = await member.fetch_until(topic, lambda r: bool(acquired(r)), max_records=1)
    obs.add("next", acquired(fetched))
    return obs


async def test_delivery_count_limit_applies_to_records_in_flight(
    clusters: Mapping[str, KafkaCluster],
) -> None:
    results = await run_per_version(limit_changed_in_flight, clusters)
    assert_same_per_version(results)
    assert dict(results[KAFKA_44].steps)["next"] == [(1, 1, 1)]


async def renew_disabled(target: Target) -> Observations:
    obs = Observations()
    topic = await target.topic()
    group = await target.group()
    conn = await target.connect()
    obs.add("disable renew", await alter_configs(conn, group, {"share.renew.acknowledge.enable": "false"}))
    await target.produce(conn, topic, 3)
    member = Member(target, conn, group, "m1")
    await member.join([topic.name])
    obs.add("acquired", acquired(await member.fetch_until(topic, lambda r: bool(acquired(r)))))
    response = await member.acknowledge(topic, {0: [(0, 0, [ACCEPT]), (1, 1, [RENEW])]}, renew=True)
    obs.add(
        "accept 0, renew 1",
        [(code(p.error_code), p.error_message) for t in response.responses for p in t.partitions],
    )
    # Nothing was applied: 0 is still acquired and can be accepted now.
    obs.add("accept 0..2", ack_summary(target, await member.acknowledge(topic, {0: [(0, 2, [ACCEPT])]})))
    return obs


async def test_renew_acknowledge_disabled(clusters: Mapping[str, KafkaCluster]) -> None:
    results = await run_per_version(renew_disabled, clusters)
    assert_same_per_version(results)
    assert dict(results[KAFKA_44].steps)["accept 0, renew 1"] == [
        ("INVALID_RECORD_STATE", "Renewing acquisition locks is not enabled for the group.")
    ]


async def record_locks(target: Target) -> Observations:
    """share.partition.max.record.locks=100: one fetch acquires at most 100 records."""
    obs = Observations()
    topic = await target.topic()
    group = await target.group()
    conn = await target.connect()
    obs.add("set", await alter_configs(conn, group, {"share.partition.max.record.locks": "100"}))
    await target.produce(conn, topic, 150, per_batch=10)
    member = Member(target, conn, group, "m1")
    await member.join([topic.name])
    fetched = await member.fetch_until(topic, lambda r: bool(acquired(r)))
    obs.add("acquired", acquired(fetched))
    return obs


async def test_partition_max_record_locks(clusters: Mapping[str, KafkaCluster]) -> None:
    results = await run_per_version(record_locks, clusters)
    assert_same_per_version(results)
    ((first, last, _),) = dict(results[KAFKA_44].steps)["acquired"]
    assert (first, last) == (0, 99)


async def assignment_interval(target: Target) -> Observations:
    """share.assignment.interval.ms: a member joining soon after an assignment gets nothing
    until a heartbeat comes the interval after it (4.3+); 4.2 assigns at once."""
    obs = Observations()
    topic = await target.topic(partitions=2)
    group = await target.group()
    conn = await target.connect()
    obs.add("interval", await alter_configs(conn, group, {"share.assignment.interval.ms": "3000"}))
    first = Member(target, conn, group, "m1")
    await first.join([topic.name], partitions=2)
    second = Member(target, conn, group, "m2")
    joined = await second.heartbeat([topic.name])
    obs.add("m2 at once", assigned_count(joined))
    assigned = await second.join([topic.name], partitions=1)
    obs.add("m2 later", assigned_count(assigned))
    return obs


async def test_assignment_interval(clusters: Mapping[str, KafkaCluster]) -> None:
    results = await run_per_version(assignment_interval, clusters)
    assert_same_per_version(results)
    assert dict(results[KAFKA_44].steps)["m2 at once"] == 0


def test_broker_config_cross_rules() -> None:
    """4.3's bounds come with ShareGroupConfig's cross-key rules: a broker raising only
    group.share.partition.max.record.locks (fine in 4.2) does not start."""
    config = {"group.share.partition.max.record.locks": "10000"}
    require(find_java)
    require_kafka("4.4.0")
    cluster = KafkaCluster("4.4.0", broker_config=config, start_timeout=60)
    try:
        with pytest.raises(KafkaStartError) as refused:
            cluster.start()
    finally:
        cluster.stop()
        cluster.cleanup()
    rule = "group.share.max.partition.max.record.locks must be greater than or equal to group.share.partition.max.record.locks"
    assert rule in str(refused.value)
    with pytest.raises(InvalidBrokerConfig) as embedded:
        EmbeddedBroker(config=config)
    assert str(embedded.value) == rule
    assert (
        EmbeddedBroker(config=config, kafka_version="4.2").config.group_share_partition_max_record_locks
        == 10000
    )
