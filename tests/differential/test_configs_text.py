"""DescribeConfigs as text: the rows of a TOPIC, a BROKER and a GROUP resource (values, sources,
types, read-only and sensitive flags, synonyms, documentation), compared with real Kafka: the
embedded broker emulating 4.4 with Kafka 4.4.0, emulating 4.2 with Kafka 4.2.2 (the releases
differ here: group config synonyms, sources and names, broker configs added in 4.3 and 4.4).

The embedded broker need not list every config Kafka lists, but a row it lists must be Kafka's.
The rows that still differ, and the names only one side lists, are pinned below with the
reason (docs/embedded-broker.md, "DescribeConfigs"): a change either way fails the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aioshare.client.connection import Connection
from aioshare.protocol.messages import (
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
)
from aioshare.testing.kafka.cluster import KafkaCluster

from .harness import (
    EMULATED,
    GROUP_RESOURCE,
    TIMEOUT,
    Observations,
    Target,
    code,
    run_per_version,
)

TOPIC_RESOURCE, BROKER_RESOURCE = 2, 4
# (IncludeSynonyms, IncludeDocumentation)
VARIANTS = ((False, False), (True, False), (True, True))
TOPIC_OVERRIDES = {"retention.ms": "3600000", "cleanup.policy": "compact"}
GROUP_OVERRIDES = {"share.record.lock.duration.ms": "5000"}

_TOPIC_SYNONYMS = (
    "to fix in topics.py (Topic.describe_configs): Kafka lists a topic config's broker synonyms "
    "only when its first broker synonym has a value (ConfigHelper.configSynonyms drops the rest), "
    "and none for a config without a broker synonym"
)
_MIN_INSYNC = (
    "to fix: KRaft's activation records set min.insync.replicas=1 as a cluster default "
    "(DYNAMIC_DEFAULT_BROKER_CONFIG); the embedded broker has no such config"
)
_LISTENERS = (
    "kept: the embedded broker's listeners default to one PLAINTEXT listener on --host/--port, "
    "not a config value; the real cluster sets both in server.properties"
)
# Rows both sides list that still differ: (resource, config name) -> why.
KNOWN_DIFFERENCES: dict[tuple[str, str], str] = {
    ("broker", "listeners"): _LISTENERS,
    ("broker", "listener.security.protocol.map"): _LISTENERS,
    (
        "broker",
        "queued.max.request.bytes",
    ): "kept: bounded by default (docs/embedded-broker.md, hostile clients)",
    ("topic", "min.insync.replicas"): _MIN_INSYNC,
    **{
        ("topic", name): _TOPIC_SYNONYMS
        for name in (
            "flush.ms",
            "follower.replication.throttled.replicas",
            "leader.replication.throttled.replicas",
            "remote.log.copy.disable",
            "remote.log.delete.on.disable",
            "remote.storage.enable",
            "retention.ms",
            "segment.jitter.ms",
            "segment.ms",
        )
    },
}

# Names Kafka lists and the embedded broker does not, per emulated release (the BROKER
# resource's ~300 are not pinned: the embedded broker lists the broker configs it uses).
KAFKA_ONLY: dict[str, dict[str, set[str]]] = {
    "embedded-4.4": {
        "cluster default": {"min.insync.replicas"},  # _MIN_INSYNC
        # Topic configs the embedded broker does not implement: tiered storage's copy lag (4.4),
        # KIP-1191's dead-letter queue switch (4.4), the bound on decompressed batch size.
        "topic": {
            "errors.deadletterqueue.group.enable",
            "max.decompressed.message.bytes",
            "remote.copy.lag.bytes",
            "remote.copy.lag.ms",
        },
    },
    "embedded-4.2": {
        "cluster default": {"min.insync.replicas"},
        "topic": {"max.decompressed.message.bytes"},
    },
}

# Names only the embedded broker lists (not Kafka configs: docs/embedded-broker.md).
EMBEDDED_ONLY: dict[str, set[str]] = {"broker": {"aioshare.kafka.version", "aioshare.scram.credentials"}}


async def _alter_topic(connection: Connection, topic: str, configs: Mapping[str, str]) -> None:
    response = await connection.send(
        IncrementalAlterConfigsRequest(
            resources=[
                IncrementalAlterConfigsRequest.AlterConfigsResource(
                    resource_type=TOPIC_RESOURCE,
                    resource_name=topic,
                    configs=[
                        IncrementalAlterConfigsRequest.AlterableConfig(
                            name=name, config_operation=0, value=value
                        )
                        for name, value in configs.items()
                    ],
                )
            ]
        ),
        response_type=IncrementalAlterConfigsResponse,
    )
    assert [r.error_code for r in response.responses] == [0], response


def _rows(target: Target, result: DescribeConfigsResponse.DescribeConfigsResult) -> dict[str, Any]:
    return {
        c.name: {
            "value": target.shape(c.value),
            "read_only": c.read_only,
            "source": c.config_source,
            "sensitive": c.is_sensitive,
            "type": c.config_type,
            "synonyms": [(s.name, target.shape(s.value), s.source) for s in c.synonyms],
            "documentation": c.documentation,
        }
        for c in result.configs
    }


async def _describe(
    connection: Connection,
    resource_type: int,
    name: str,
    keys: list[str] | None = None,
    *,
    synonyms: bool = False,
    documentation: bool = False,
) -> DescribeConfigsResponse.DescribeConfigsResult:
    response = await connection.send(
        DescribeConfigsRequest(
            resources=[
                DescribeConfigsRequest.DescribeConfigsResource(
                    resource_type=resource_type, resource_name=name, configuration_keys=keys
                )
            ],
            include_synonyms=synonyms,
            include_documentation=documentation,
        ),
        response_type=DescribeConfigsResponse,
    )
    (result,) = response.results
    return result


async def _wait_visible(
    connection: Connection, resource_type: int, name: str, configs: Mapping[str, str]
) -> None:
    """Until DescribeConfigs shows `configs`: Kafka's broker applies what the controller
    committed shortly after IncrementalAlterConfigs answers."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            result = await _describe(connection, resource_type, name, list(configs))
            if {c.name: c.value for c in result.configs} == dict(configs):
                return
            await asyncio.sleep(0.05)


async def describe_resources(target: Target) -> Observations:
    """Every variant of DescribeConfigs on each resource: {resource: (error, message, rows)}."""
    obs = Observations()
    conn = await target.connect()
    topic = await target.topic()
    await _alter_topic(conn, topic.name, TOPIC_OVERRIDES)
    group = await target.group(**{name.replace(".", "_"): value for name, value in GROUP_OVERRIDES.items()})
    await _wait_visible(conn, TOPIC_RESOURCE, topic.name, TOPIC_OVERRIDES)
    await _wait_visible(conn, GROUP_RESOURCE, group, GROUP_OVERRIDES)
    target.names["diff-never-configured"] = "<other group>"
    resources = {
        "topic": (TOPIC_RESOURCE, topic.name),
        "unknown topic": (TOPIC_RESOURCE, "diff-no-such-topic"),
        "invalid topic": (TOPIC_RESOURCE, "no good"),
        "broker": (BROKER_RESOURCE, "1"),
        "cluster default": (BROKER_RESOURCE, ""),
        "other broker": (BROKER_RESOURCE, "7"),
        "group": (GROUP_RESOURCE, group),
        "unconfigured group": (GROUP_RESOURCE, "diff-never-configured"),
        "empty group name": (GROUP_RESOURCE, ""),
    }
    for synonyms, documentation in VARIANTS:
        for label, (resource_type, name) in resources.items():
            result = await _describe(
                conn, resource_type, name, synonyms=synonyms, documentation=documentation
            )
            obs.add(
                (label, synonyms, documentation),
                (code(result.error_code), result.error_message, _rows(target, result)),
            )
    return obs


def _differences(embedded: Observations, kafka: Observations) -> dict[str, Any]:
    """What differs between the two sides, by resource: errors, names on one side, rows (all
    but the documentation text: see _documentation)."""
    found: dict[str, Any] = {"errors": {}, "kafka only": {}, "embedded only": {}, "rows": {}}
    for (step, (e_code, e_message, e_rows)), (k_step, (k_code, k_message, k_rows)) in zip(
        embedded.steps, kafka.steps, strict=True
    ):
        assert step == k_step
        label, _synonyms, _documentation = step
        if (e_code, e_message) != (k_code, k_message):
            found["errors"][step] = ((e_code, e_message), (k_code, k_message))
        if label != "broker" and set(k_rows) - set(e_rows):
            found["kafka only"].setdefault(label, set()).update(set(k_rows) - set(e_rows))
        if set(e_rows) - set(k_rows):
            found["embedded only"].setdefault(label, set()).update(set(e_rows) - set(k_rows))
        # Every broker config is read-only on the embedded broker (kept: it has no dynamic
        # broker configs; IncrementalAlterConfigs refuses them like Kafka's static ones).
        skipped = {"documentation", "read_only"} if label == "broker" else {"documentation"}
        for name in set(e_rows) & set(k_rows):
            differing = {
                key: (e_rows[name][key], k_rows[name][key])
                for key in e_rows[name]
                if key not in skipped and e_rows[name][key] != k_rows[name][key]
            }
            if differing:
                found["rows"].setdefault((label, name), []).append((step, differing))
    return found


def _documentation(observations: Observations) -> set[tuple[bool, str]]:
    """(IncludeDocumentation, what the rows' documentation is: null, empty or text)."""
    return {
        (
            documentation,
            "null" if row["documentation"] is None else "text" if row["documentation"] else "empty",
        )
        for (_label, _synonyms, documentation), (_code, _message, rows) in observations.steps
        for row in rows.values()
    }


async def test_describe_configs_text(clusters: Mapping[str, KafkaCluster]) -> None:
    results = await run_per_version(describe_resources, clusters)
    for embedded, kafka in EMULATED.items():
        found = _differences(results[embedded], results[kafka])
        assert found["errors"] == {}, embedded
        assert found["kafka only"] == KAFKA_ONLY[embedded], embedded
        assert found["embedded only"] == EMBEDDED_ONLY, embedded
        assert set(found["rows"]) == set(KNOWN_DIFFERENCES), (embedded, found["rows"])
        assert {
            row["read_only"]
            for (label, *_variant), (_code, _message, rows) in results[embedded].steps
            if label == "broker"
            for row in rows.values()
        } == {True}
        # The documentation text is not served (kept): an empty string where Kafka has its text.
        assert _documentation(results[kafka]) == {(False, "null"), (True, "text")}
        assert _documentation(results[embedded]) == {(False, "null"), (True, "empty")}
