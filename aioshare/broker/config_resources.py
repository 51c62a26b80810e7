"""Config resources served by DescribeConfigs / IncrementalAlterConfigs."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from aioshare.broker.config import ConfigEntry


class ResourceType(enum.IntEnum):
    """ConfigResource.Type codes used by DescribeConfigs / IncrementalAlterConfigs."""

    UNKNOWN = 0
    TOPIC = 2
    BROKER = 4
    BROKER_LOGGER = 8
    CLIENT_METRICS = 16
    GROUP = 32


class AlterOp(enum.IntEnum):
    SET = 0
    DELETE = 1
    APPEND = 2
    SUBTRACT = 3


class ConfigChange(NamedTuple):
    name: str
    operation: AlterOp
    value: str | None


class ConfigResourceHandler(Protocol):
    """Serves DescribeConfigs / IncrementalAlterConfigs for one resource type (e.g. GROUP).

    Both raise a `BrokerError` (e.g. InvalidConfigError, GroupIdNotFoundError) to report a
    resource-level error; its code and message go into the response.
    """

    def describe(self, resource_name: str, names: Sequence[str] | None) -> list[ConfigEntry]: ...

    def alter(self, resource_name: str, changes: Sequence[ConfigChange], validate_only: bool) -> None: ...
