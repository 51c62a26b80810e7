"""What ShareAdmin returns: plain frozen values, decoupled from the generated wire structs."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from aioshare.protocol.errors import BrokerError
from aioshare.protocol.types import ConfigSource, TopicPartition

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
