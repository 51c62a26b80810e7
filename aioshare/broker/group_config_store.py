"""Dynamic per-group configs (ConfigResource type GROUP), shared by coordinator and leaders.

The group coordinator reads heartbeat interval and session timeout from here; partition leaders
read the record lock duration, auto offset reset and isolation level. Kafka lets a GROUP
resource be altered whether or not the group exists, so entries are keyed by group id alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from aioshare.broker.config import (
    BrokerConfig,
    ConfigEntry,
    ConfigError,
    GroupConfigs,
    InvalidGroupConfig,
    RawValue,
)
from aioshare.broker.config_resources import AlterOp, ConfigChange
from aioshare.protocol.errors import InvalidConfigError

_FILE = "group-configs.json"


class GroupConfigStore:
    """Implements the cluster's ConfigResourceHandler protocol for resource type GROUP (32)."""

    def __init__(self, broker: BrokerConfig, directory: Path | None = None) -> None:
        self._broker = broker
        self._defaults = GroupConfigs(broker)
        self._groups: dict[str, GroupConfigs] = {}
        self._path = directory / _FILE if directory is not None else None
        if self._path is not None and self._path.exists():
            stored: dict[str, dict[str, RawValue]] = json.loads(self._path.read_text())
            self._groups = {
                group: GroupConfigs.restore(broker, overrides) for group, overrides in stored.items()
            }

    def get(self, group_id: str) -> GroupConfigs:
        return self._groups.get(group_id, self._defaults)

    def forget(self, group_id: str) -> None:
        """DeleteGroups removes a group's dynamic configs with it, as Kafka does."""
        if self._groups.pop(group_id, None) is not None:
            self._save()

    # ------------------------------------------------------------------ ConfigResourceHandler

    def describe(self, resource_name: str, names: Sequence[str] | None) -> list[ConfigEntry]:
        return self.get(resource_name).describe(names)

    def alter(self, resource_name: str, changes: Sequence[ConfigChange], validate_only: bool) -> None:
        try:
            self._alter(resource_name, changes, validate_only)
        except ConfigError as exc:
            raise InvalidConfigError(str(exc)) from exc

    def _alter(self, resource_name: str, changes: Sequence[ConfigChange], validate_only: bool) -> None:
        set_values: dict[str, RawValue] = {}
        delete: list[str] = []
        for change in changes:
            if change.operation == AlterOp.SET:
                if change.value is None:
                    raise InvalidGroupConfig(change.name, "a value is required to SET a group config")
                set_values[change.name] = change.value
            elif change.operation == AlterOp.DELETE:
                delete.append(change.name)
            else:
                # Group configs are scalars: APPEND/SUBTRACT only apply to list-typed configs.
                raise InvalidGroupConfig(
                    change.name, f"operation {change.operation.name} is not valid for it"
                )
        updated = self.get(resource_name).with_changes(set_values, delete)
        if validate_only:
            return
        if updated.overrides:
            self._groups[resource_name] = updated
        else:
            self._groups.pop(resource_name, None)
        self._save()

    def _save(self) -> None:
        if self._path is None:
            return
        data = {group: configs.overrides for group, configs in self._groups.items()}
        temporary = self._path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, sort_keys=True, default=str))
        os.replace(temporary, self._path)
