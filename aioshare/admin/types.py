"""What ShareAdmin returns: plain frozen values, decoupled from the generated wire structs."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from aioshare.protocol.errors import BrokerError
from aioshare.protocol.types import TopicPartition

__all__ = [
    "ConfigEntry",
    "ConfigSource",
    "PartitionOffsetInfo",
    "ResetTarget",
    "ShareGroupDescription",
    "ShareGroupListing",
    "ShareMemberDescription",
    "TopicListing",
    "TopicPartition",
]

ResetTarget = Literal["earliest", "latest"] | datetime | Mapping[int, int]
"""Where `reset_share_group_offsets` moves the start offset: the log start, the log end, the
first record at or after a time, or explicit offsets per partition."""


@dataclass(frozen=True, slots=True)
class ShareGroupListing:
    group_id: str
    state: str
    """`Empty`, `Stable`, ... as the coordinator reports it; "" from brokers before ListGroups v4."""


@dataclass(frozen=True, slots=True)
class ShareMemberDescription:
    member_id: str
    client_id: str
    host: str
    rack_id: str | None
    member_epoch: int
    subscriptions: tuple[str, ...]
    assignment: Mapping[str, tuple[int, ...]]
    """Assigned partitions by topic name."""


@dataclass(frozen=True, slots=True)
class ShareGroupDescription:
    group_id: str
    state: str
    group_epoch: int
    assignment_epoch: int
    assignor: str
    members: tuple[ShareMemberDescription, ...]


@dataclass(frozen=True, slots=True)
class PartitionOffsetInfo:
    """One share-partition's persisted state (DescribeShareGroupOffsets).

    `start_offset` is the share-partition start offset (SPSO): the earliest record not yet
    finished; records after it may already be acknowledged. `lag` is -1 when the broker does
    not report it (DescribeShareGroupOffsets v0, or unknown).
    """

    start_offset: int
    leader_epoch: int
    lag: int
    error: BrokerError | None = None


class ConfigSource(enum.IntEnum):
    """DescribeConfigs ConfigSource values (Kafka's DescribeConfigsResponse.ConfigSource)."""

    UNKNOWN = 0
    TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5
    DYNAMIC_BROKER_LOGGER_CONFIG = 6
    CLIENT_METRICS_CONFIG = 7
    GROUP_CONFIG = 8

    @classmethod
    def of(cls, value: int) -> ConfigSource:
        # A newer broker may send a source this list does not know yet.
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    name: str
    value: str | None
    """None for sensitive values, which brokers never send back."""
    source: ConfigSource
    read_only: bool = False
    sensitive: bool = False
    documentation: str | None = None

    @property
    def is_default(self) -> bool:
        return self.source is ConfigSource.DEFAULT_CONFIG


@dataclass(frozen=True, slots=True)
class TopicListing:
    name: str
    topic_id: uuid.UUID
    partitions: int
    internal: bool = False
