"""The Apache Kafka release the embedded broker emulates (``aioshare.kafka.version``).

The embedded broker answers like the newest release it knows by default, and like an older one
when asked (``EmbeddedBroker(kafka_version="4.2")``, ``aioshare broker --kafka-version 4.2``),
where the two differ: the API versions ApiVersions advertises, the supported and finalized
features, which group configs exist and how they are validated, and the features those configs
turn on (KIP-1191's dead-letter queue needs ``share.version`` 2).

The tables come from the real brokers' ApiVersions responses (4.2.2 and 4.4.0, read by
``tests/differential/test_versions.py``); 4.3 has no release in our cache, so its table is read
from the ``4.3`` branch's message schemas and feature enums (``MetadataVersion.LATEST_PRODUCTION``
= IBP_4_3_IV0, ``ShareVersion.LATEST_PRODUCTION`` = SV_1) and equals 4.4 where 4.4 did not
change it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

# ApiVersions of real Kafka 4.2.2 (broker listener): {api key: (min, max)}.
_API_VERSIONS_42: Mapping[int, tuple[int, int]] = {
    0: (0, 13), 1: (4, 18), 2: (1, 11), 3: (0, 13), 8: (2, 10), 9: (1, 10), 10: (0, 6),
    11: (0, 9), 12: (0, 4), 13: (0, 5), 14: (0, 5), 15: (0, 6), 16: (0, 5), 17: (0, 1),
    18: (0, 4), 19: (2, 7), 20: (1, 6), 21: (0, 2), 22: (0, 5), 23: (2, 4), 24: (0, 5),
    25: (0, 4), 26: (0, 5), 27: (1, 2), 28: (0, 5), 29: (1, 3), 30: (1, 3), 31: (1, 3),
    32: (1, 4), 33: (0, 2), 34: (1, 2), 35: (1, 4), 36: (0, 2), 37: (0, 3), 38: (1, 3),
    39: (1, 2), 40: (1, 2), 41: (1, 3), 42: (0, 2), 43: (0, 2), 44: (0, 1), 45: (0, 1),
    46: (0, 0), 47: (0, 0), 48: (0, 1), 49: (0, 1), 50: (0, 0), 51: (0, 0), 55: (0, 2),
    57: (0, 2), 60: (0, 2), 61: (0, 0), 64: (0, 0), 65: (0, 0), 66: (0, 2), 68: (0, 1),
    69: (0, 1), 74: (0, 1), 75: (0, 0), 76: (1, 1), 77: (1, 1), 78: (1, 2), 79: (1, 2),
    80: (0, 1), 81: (0, 0), 83: (0, 0), 84: (0, 0), 85: (0, 1), 86: (0, 0), 87: (0, 1),
    88: (0, 0), 89: (0, 0), 90: (0, 1), 91: (0, 0), 92: (0, 0),
}  # fmt: skip
# 4.3 (from the 4.3 branch's schemas): DescribeLogDirs v5 (KIP-1066's cordoned log dirs).
_API_VERSIONS_43: Mapping[int, tuple[int, int]] = {**_API_VERSIONS_42, 35: (1, 5)}
# Real Kafka 4.4.0: ApiVersions v5 (KIP-1242), TxnOffsetCommit v6, DeleteGroups v3 (per-group
# ErrorMessage), streams groups v1, and two new APIs.
_API_VERSIONS_44: Mapping[int, tuple[int, int]] = {
    **_API_VERSIONS_43,
    18: (0, 5),
    28: (0, 6),
    42: (0, 3),
    88: (0, 1),
    89: (0, 1),
    93: (0, 0),
    94: (0, 0),
}

# (name, min, max) in the order Kafka lists them.
Supported = tuple[tuple[str, int, int], ...]
# (name, level) in the order Kafka lists them.
Finalized = tuple[tuple[str, int], ...]


def _supported(metadata_version: int, share_version: int) -> Supported:
    return (
        ("group.version", 0, 1),
        ("kraft.version", 0, 1),
        ("metadata.version", 7, metadata_version),
        ("share.version", 0, share_version),
        ("streams.version", 0, 1),
        ("transaction.version", 0, 2),
        ("eligible.leader.replicas.version", 0, 1),
    )


def _finalized(metadata_version: int, share_version: int) -> Finalized:
    return (
        ("group.version", 1),
        ("streams.version", 1),
        ("transaction.version", 2),
        ("eligible.leader.replicas.version", 1),
        ("share.version", share_version),
        ("metadata.version", metadata_version),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class KafkaVersion:
    """One emulated release: what it advertises and which of its behaviours differ."""

    name: str  # "4.4"
    api_versions: Mapping[int, tuple[int, int]]
    supported_features: Supported
    finalized_features: Finalized

    @property
    def key(self) -> tuple[int, int]:
        major, minor = self.name.split(".")
        return int(major), int(minor)

    def at_least(self, name: str) -> bool:
        """True when this release is `name` ("4.3") or newer."""
        return self.key >= KAFKA_VERSIONS[name].key

    def feature_level(self, feature: str) -> int:
        return dict(self.finalized_features).get(feature, 0)

    @property
    def supports_share_group_dlq(self) -> bool:
        """ShareVersion.supportsShareGroupDLQ: KIP-1191's broker-side dead-letter queue."""
        return self.feature_level("share.version") >= 2


KAFKA_VERSIONS: Mapping[str, KafkaVersion] = {
    "4.2": KafkaVersion("4.2", _API_VERSIONS_42, _supported(29, 1), _finalized(29, 1)),
    "4.3": KafkaVersion("4.3", _API_VERSIONS_43, _supported(30, 1), _finalized(30, 1)),
    "4.4": KafkaVersion("4.4", _API_VERSIONS_44, _supported(33, 2), _finalized(33, 2)),
}
NEWEST = "4.4"


def parse_kafka_version(text: str) -> KafkaVersion:
    """A version ("4.4") or a release of it ("4.4.0"); raises ValueError naming the known ones."""
    parts = text.strip().split(".")
    name = ".".join(parts[:2])
    if len(parts) in (2, 3) and all(part.isdigit() for part in parts) and name in KAFKA_VERSIONS:
        return KAFKA_VERSIONS[name]
    raise ValueError(
        f"Kafka version {text!r} cannot be emulated; the embedded broker emulates "
        f"{', '.join(KAFKA_VERSIONS)} (default {NEWEST})"
    )


# Broker and group configs by the release that introduced them (GroupCoordinatorConfig,
# ShareGroupConfig and GroupConfig on each branch); a config not listed exists in every release.
_CONFIGS_43 = (
    "group.share.min.delivery.count.limit",
    "group.share.max.delivery.count.limit",
    "group.share.min.partition.max.record.locks",
    "group.share.max.partition.max.record.locks",
    "group.share.assignment.interval.ms",
    "group.share.min.assignment.interval.ms",
    "group.share.max.assignment.interval.ms",
    "group.consumer.assignment.interval.ms",
    "group.consumer.min.assignment.interval.ms",
    "group.consumer.max.assignment.interval.ms",
    "group.streams.assignment.interval.ms",
    "group.streams.min.assignment.interval.ms",
    "group.streams.max.assignment.interval.ms",
    # Group configs.
    "consumer.assignment.interval.ms",
    "share.delivery.count.limit",
    "share.partition.max.record.locks",
    "share.renew.acknowledge.enable",
    "share.assignment.interval.ms",
    "streams.assignment.interval.ms",
)
_CONFIGS_44 = (
    "group.streams.assignors",
    "group.streams.rack.aware.assignment.tags",
    "errors.deadletterqueue.auto.create.topics.enable",
    "errors.deadletterqueue.topic.name.prefix",
    # Group configs.
    "streams.rack.aware.assignment.tags",
    "streams.assignor.name",
    "errors.deadletterqueue.topic.name",
    "errors.deadletterqueue.copy.record.enable",
)
CONFIGS_SINCE: Mapping[str, str] = {
    **dict.fromkeys(_CONFIGS_43, "4.3"),
    **dict.fromkeys(_CONFIGS_44, "4.4"),
}
