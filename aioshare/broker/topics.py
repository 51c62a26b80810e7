"""Topics: names, ids, partitions with their leader and leader epoch, per-topic configs.

Every node of an embedded cluster lives in one process, so a partition has exactly one log
whichever node leads it: leadership is routing metadata (which node answers for it, and with
which leader epoch). Moving a leader bumps the epoch and wakes waiters on the log so that long
polls notice.

Topic configs use Kafka's names, defaults, types and validation wording; a value not set on
the topic comes from its broker synonym where the embedded BrokerConfig has one
(`max.message.bytes` ← `message.max.bytes`), else from Kafka's default.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from aioshare.broker.config import BrokerConfig, ConfigEntry, ConfigType
from aioshare.broker.flush import (
    NEVER,
    FlushPolicy,
    FlushScheduler,
    FlushTarget,
    broker_flush_policy,
    monotonic_ms,
    replace_file,
)
from aioshare.broker.log import PartitionLog
from aioshare.protocol.errors import (
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidReplicaAssignmentError,
    InvalidReplicationFactorError,
    InvalidRequestError,
    InvalidTopicError,
    TopicAlreadyExistsError,
)
from aioshare.protocol.types import ConfigSource, random_kafka_uuid

logger = logging.getLogger("aioshare.broker")

TOPICS_FILE = "topics.json"
MAX_TOPIC_NAME_LENGTH = 249
_LEGAL_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]+")
# DescribeConfigs ConfigType codes that config.ConfigType does not define.
DOUBLE_TYPE = 6
_LONG_MAX = 2**63 - 1


class TopicConfigDef(NamedTuple):
    name: str
    type: int  # DescribeConfigs ConfigType code
    default: str
    # The broker config this topic config falls back to (LogConfig's TopicConfigSynonyms).
    synonym: str | None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None


def _long(name: str, default: int, synonym: str | None, minimum: int | None = None) -> TopicConfigDef:
    return TopicConfigDef(name, ConfigType.LONG, str(default), synonym, minimum)


def _int(
    name: str, default: int, synonym: str | None, minimum: int | None = None, maximum: int | None = None
) -> TopicConfigDef:
    return TopicConfigDef(name, ConfigType.INT, str(default), synonym, minimum, maximum)


def _bool(name: str, default: bool, synonym: str | None) -> TopicConfigDef:
    return TopicConfigDef(name, ConfigType.BOOLEAN, "true" if default else "false", synonym)


# Kafka 4.x topic configs (LogConfig / TopicConfig), in DescribeConfigs order (sorted by name).
TOPIC_CONFIGS: dict[str, TopicConfigDef] = {
    d.name: d
    for d in sorted(
        (
            TopicConfigDef(
                "cleanup.policy",
                ConfigType.LIST,
                "delete",
                "log.cleanup.policy",
                choices=("compact", "delete"),
            ),
            TopicConfigDef(
                "compression.type",
                ConfigType.STRING,
                "producer",
                "compression.type",
                choices=("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"),
            ),
            _int("compression.gzip.level", -1, "compression.gzip.level", -1, 9),
            _int("compression.lz4.level", 9, "compression.lz4.level", 1, 17),
            _int("compression.zstd.level", 3, "compression.zstd.level", -131072, 22),
            _long("delete.retention.ms", 86400000, "log.cleaner.delete.retention.ms", 0),
            _long("file.delete.delay.ms", 60000, "log.segment.delete.delay.ms", 0),
            _long("flush.messages", _LONG_MAX, "log.flush.interval.messages", 1),
            _long("flush.ms", _LONG_MAX, "log.flush.interval.ms", 0),
            TopicConfigDef("follower.replication.throttled.replicas", ConfigType.LIST, "", None),
            _int("index.interval.bytes", 4096, "log.index.interval.bytes", 0),
            TopicConfigDef("leader.replication.throttled.replicas", ConfigType.LIST, "", None),
            _long("local.retention.bytes", -2, "log.local.retention.bytes", -2),
            _long("local.retention.ms", -2, "log.local.retention.ms", -2),
            _long("max.compaction.lag.ms", _LONG_MAX, "log.cleaner.max.compaction.lag.ms", 1),
            _int("max.message.bytes", 1048588, "message.max.bytes", 0),
            _long("message.timestamp.after.max.ms", 3600000, "log.message.timestamp.after.max.ms", 0),
            _long("message.timestamp.before.max.ms", _LONG_MAX, "log.message.timestamp.before.max.ms", 0),
            TopicConfigDef(
                "message.timestamp.type",
                ConfigType.STRING,
                "CreateTime",
                "log.message.timestamp.type",
                choices=("CreateTime", "LogAppendTime"),
            ),
            TopicConfigDef(
                "min.cleanable.dirty.ratio", DOUBLE_TYPE, "0.5", "log.cleaner.min.cleanable.ratio", 0, 1
            ),
            _long("min.compaction.lag.ms", 0, "log.cleaner.min.compaction.lag.ms", 0),
            _int("min.insync.replicas", 1, "min.insync.replicas", 1),
            _bool("preallocate", False, "log.preallocate"),
            _bool("remote.log.copy.disable", False, None),
            _bool("remote.log.delete.on.disable", False, None),
            _bool("remote.storage.enable", False, None),
            _long("retention.bytes", -1, "log.retention.bytes"),
            _long("retention.ms", 604800000, "log.retention.ms", -1),
            _int("segment.bytes", 1073741824, "log.segment.bytes", 1048576),
            _int("segment.index.bytes", 10485760, "log.index.size.max.bytes", 4),
            _long("segment.jitter.ms", 0, "log.roll.jitter.ms", 0),
            _long("segment.ms", 604800000, "log.roll.ms", 1),
            _bool("unclean.leader.election.enable", False, "unclean.leader.election.enable"),
        ),
        key=lambda d: d.name,
    )
}


def _normalise(definition: TopicConfigDef, value: str) -> str:
    """Parse like Kafka's ConfigDef; return the canonical text or raise InvalidConfigError."""
    raw = value.strip()

    def invalid(rule: str) -> InvalidConfigError:
        return InvalidConfigError(f"Invalid value {value} for configuration {definition.name}: {rule}")

    number: float
    if definition.type in (ConfigType.INT, ConfigType.LONG):
        try:
            number = int(raw, 10)
        except ValueError:
            raise invalid(f"Not a number of type {ConfigType(definition.type).name}") from None
        bits = 31 if definition.type == ConfigType.INT else 63
        if not -(2**bits) <= number < 2**bits:
            raise invalid(f"Not a number of type {ConfigType(definition.type).name}")
        text = str(number)
    elif definition.type == DOUBLE_TYPE:
        try:
            number = float(raw)
        except ValueError:
            raise invalid("Not a number of type DOUBLE") from None
        text = str(number)
    elif definition.type == ConfigType.BOOLEAN:
        if raw.lower() not in ("true", "false"):
            raise invalid("Expected value to be either true or false")
        return raw.lower()
    elif definition.type == ConfigType.LIST:
        items = [item.strip() for item in raw.split(",")] if raw else []
        if definition.choices is not None:
            for item in items:
                if item not in definition.choices:
                    raise invalid(f"String must be one of: {', '.join(definition.choices)}")
        return ",".join(items)
    else:
        if definition.choices is not None and raw not in definition.choices:
            raise invalid(f"String must be one of: {', '.join(definition.choices)}")
        return raw
    if definition.minimum is not None and number < definition.minimum:
        raise invalid(f"Value must be at least {_num(definition.minimum)}")
    if definition.maximum is not None and number > definition.maximum:
        raise invalid(f"Value must be no more than {_num(definition.maximum)}")
    return text


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def validate_topic_configs(configs: Mapping[str, str | None]) -> dict[str, str]:
    """Canonical overrides, or InvalidConfigError with Kafka's message."""
    result: dict[str, str] = {}
    for name, value in configs.items():
        definition = TOPIC_CONFIGS.get(name)
        if definition is None:
            raise InvalidConfigError(f"Unknown topic config name: {name}")
        if value is None:
            raise InvalidConfigError(f"Null value not supported for topic configs: {name}")
        result[name] = _normalise(definition, value)
    return result


def validate_topic_name(name: str) -> None:
    """Kafka's Topic.validate; raises InvalidTopicError."""
    if not name:
        raise InvalidTopicError("Topic name is illegal, it can't be empty")
    if name in (".", ".."):
        raise InvalidTopicError('Topic name cannot be "." or ".."')
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise InvalidTopicError(
            f"Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LENGTH} characters, "
            f"topic name: {name}"
        )
    if not _LEGAL_TOPIC_NAME.fullmatch(name):
        raise InvalidTopicError(
            f'Topic name "{name}" is illegal, it contains a character other than ASCII alphanumerics, '
            "'.', '_' and '-'"
        )


def _collision_key(name: str) -> str:
    # Metric names replace '.' with '_', so Kafka refuses topics that differ only there.
    return name.replace(".", "_")


class Partition:
    """One partition: its log and who leads it."""

    __slots__ = ("index", "leader", "leader_epoch", "log", "replicas", "topic")

    def __init__(
        self,
        topic: Topic,
        index: int,
        log: PartitionLog,
        replicas: list[int],
        leader: int,
        leader_epoch: int = 0,
    ) -> None:
        self.topic = topic
        self.index = index
        self.log = log
        self.replicas = replicas
        self.leader = leader
        self.leader_epoch = leader_epoch

    def set_leader(self, node_id: int) -> None:
        self.leader = node_id
        self.leader_epoch += 1
        if node_id >= 0 and node_id not in self.replicas:
            self.replicas.append(node_id)
        # Long polls on this partition must re-check who leads it.
        self.log.notify()

    def __repr__(self) -> str:
        return f"Partition({self.topic.name}-{self.index}, leader={self.leader}, epoch={self.leader_epoch})"


class Topic:
    __slots__ = ("_broker", "configs", "name", "partitions", "topic_id")

    def __init__(self, name: str, topic_id: uuid.UUID, configs: dict[str, str], broker: BrokerConfig) -> None:
        self.name = name
        self.topic_id = topic_id
        self.configs = configs  # explicit overrides, canonical text
        self.partitions: list[Partition] = []
        self._broker = broker

    def partition(self, index: int) -> Partition | None:
        return self.partitions[index] if 0 <= index < len(self.partitions) else None

    @property
    def replication_factor(self) -> int:
        return len(self.partitions[0].replicas) if self.partitions else 0

    def config(self, name: str) -> str:
        """The effective value of a topic config."""
        if name in self.configs:
            return self.configs[name]
        return self._default(TOPIC_CONFIGS[name])[0]

    def int_config(self, name: str) -> int:
        return int(self.config(name))

    def flush_policy(self) -> FlushPolicy:
        """When this topic's logs are fsynced: flush.messages and flush.ms (LogConfig)."""
        return FlushPolicy(self.int_config("flush.messages"), self.int_config("flush.ms"))

    def _default(self, definition: TopicConfigDef) -> tuple[str, ConfigSource]:
        value, source, _ = self._broker_default(definition)
        return value, source

    def _broker_default(self, definition: TopicConfigDef) -> tuple[str, ConfigSource, str | None]:
        """(value, source, broker config it came from) of a config the topic does not set."""
        synonym = definition.synonym
        if synonym is None:
            return definition.default, ConfigSource.DEFAULT_CONFIG, None
        if definition.name == "flush.ms":
            # Kafka's second synonym: log.flush.scheduler.interval.ms when log.flush.interval.ms
            # is not set (ServerTopicConfigSynonyms).
            synonym = self._broker.log_flush_interval_ms_source
        try:
            value = self._broker.get(synonym)
        except KeyError:
            return definition.default, ConfigSource.DEFAULT_CONFIG, None
        source = (
            ConfigSource.STATIC_BROKER_CONFIG
            if synonym in self._broker.explicitly_set
            else ConfigSource.DEFAULT_CONFIG
        )
        return str(value).lower() if isinstance(value, bool) else str(value), source, synonym

    def describe_configs(
        self, names: Iterable[str] | None = None
    ) -> list[tuple[ConfigEntry, list[ConfigEntry]]]:
        """DescribeConfigs rows with their synonyms (most specific first), in name order."""
        wanted = None if names is None else set(names)
        rows = []
        for definition in TOPIC_CONFIGS.values():
            if wanted is not None and definition.name not in wanted:
                continue
            synonyms: list[ConfigEntry] = []
            if definition.name in self.configs:
                synonyms.append(
                    self._entry(
                        definition.name, definition, self.configs[definition.name], ConfigSource.TOPIC_CONFIG
                    )
                )
            default, source, broker_name = self._broker_default(definition)
            if source is ConfigSource.STATIC_BROKER_CONFIG and broker_name is not None:
                synonyms.append(self._entry(broker_name, definition, default, source))
            synonyms.append(
                self._entry(
                    definition.synonym or definition.name,
                    definition,
                    definition.default,
                    ConfigSource.DEFAULT_CONFIG,
                )
            )
            top = synonyms[0]
            rows.append((self._entry(definition.name, definition, top.value, top.source), synonyms))
        return rows

    @staticmethod
    def _entry(name: str, definition: TopicConfigDef, value: str, source: ConfigSource) -> ConfigEntry:
        return ConfigEntry(
            name=name,
            value=value,
            is_default=source is ConfigSource.DEFAULT_CONFIG,
            read_only=False,
            source=source,
            config_type=definition.type,  # type: ignore[arg-type]  # DOUBLE is not in ConfigType
        )

    def __repr__(self) -> str:
        return f"Topic({self.name!r}, id={self.topic_id}, partitions={len(self.partitions)})"


class TopicRegistry:
    """All topics of the cluster, by name and by id; persisted to `data_dir/topics.json`.

    With a data directory it also runs Kafka's log flusher when log.flush.scheduler.interval.ms
    is set (which needs a running event loop), and flushes every log when it closes, as a clean
    Kafka shutdown does. `clock` (milliseconds) times the flushes.
    """

    def __init__(
        self,
        broker: BrokerConfig,
        node_ids: Sequence[int],
        data_dir: Path | None = None,
        *,
        clock: Callable[[], int] = monotonic_ms,
    ) -> None:
        self._broker = broker
        self._clock = clock
        # Other stores the flusher checks and a close flushes (the share-state store).
        self._flush_targets: list[FlushTarget] = []
        self._flush_scheduler: FlushScheduler | None = None
        self._node_ids = list(node_ids)
        self._data_dir = data_dir
        self._by_name: dict[str, Topic] = {}
        self._by_id: dict[uuid.UUID, Topic] = {}
        self._placement_cursor = 0
        # Called after a topic is deleted; the group coordinator drops share state with it
        # (Kafka's coordinators learn of deleted topics from the metadata image delta).
        self._delete_listeners: list[Callable[[Topic], None]] = []
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
            self._load()
            if broker.log_flush_scheduler_interval_ms < NEVER:
                self._flush_scheduler = FlushScheduler(broker.log_flush_scheduler_interval_ms, self.flush_due)

    # ------------------------------------------------------------------ lookups

    def __iter__(self) -> Iterator[Topic]:
        return iter(list(self._by_name.values()))

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> Topic | None:
        return self._by_name.get(name)

    def by_id(self, topic_id: uuid.UUID) -> Topic | None:
        return self._by_id.get(topic_id)

    def partition(self, name: str, index: int) -> Partition | None:
        topic = self._by_name.get(name)
        return topic.partition(index) if topic is not None else None

    # ------------------------------------------------------------------ changes

    def check_new_topic(
        self,
        name: str,
        num_partitions: int,
        replication_factor: int,
        configs: Mapping[str, str | None],
        alive: Sequence[int],
        assignments: Mapping[int, Sequence[int]] | None = None,
    ) -> tuple[int, int, dict[str, str]]:
        """Validate a CreateTopics entry like Kafka; returns (partitions, replication factor, configs).

        -1 for partitions / replication factor means the broker default. Raises the BrokerError
        Kafka would answer with.
        """
        validate_topic_name(name)
        if name in self._by_name:
            raise TopicAlreadyExistsError(f"Topic '{name}' already exists.")
        key = _collision_key(name)
        for existing in self._by_name:
            if _collision_key(existing) == key:
                raise InvalidTopicError(f"Topic '{name}' collides with existing topic: {existing}")
        if assignments:
            if num_partitions != -1 or replication_factor != -1:
                raise InvalidRequestError(
                    "Both numPartitions or replicationFactor and replicasAssignments were set. "
                    "Both cannot be used at the same time."
                )
            self._check_assignments(assignments, 0, alive)
            num_partitions = len(assignments)
            replication_factor = len(next(iter(assignments.values())))
        if num_partitions == -1:
            num_partitions = self._broker.num_partitions
        if replication_factor == -1:
            replication_factor = self._broker.default_replication_factor
        if num_partitions <= 0:
            raise InvalidPartitionsError("Number of partitions was set to an invalid non-positive value.")
        if replication_factor <= 0:
            raise InvalidReplicationFactorError(
                "Replication factor must be larger than 0, or -1 to use the default value."
            )
        if replication_factor > len(alive):
            raise InvalidReplicationFactorError(
                f"Unable to replicate the partition {replication_factor} time(s): The target replication "
                f"factor of {replication_factor} cannot be reached because only {len(alive)} broker(s) "
                "are registered."
            )
        return num_partitions, replication_factor, validate_topic_configs(configs)

    def _check_assignments(
        self, assignments: Mapping[int, Sequence[int]], first: int, alive: Sequence[int]
    ) -> None:
        sizes = {len(replicas) for replicas in assignments.values()}
        if len(sizes) != 1 or 0 in sizes:
            raise InvalidReplicaAssignmentError("All partitions should have the same number of replicas.")
        if sorted(assignments) != list(range(first, first + len(assignments))):
            raise InvalidReplicaAssignmentError("Partitions should be a consecutive 0-based integer sequence")
        for replicas in assignments.values():
            if len(set(replicas)) != len(replicas):
                raise InvalidReplicaAssignmentError(
                    f"Duplicate brokers not allowed in replica assignment: {list(replicas)}"
                )
            for node in replicas:
                if node not in self._node_ids:
                    raise InvalidReplicaAssignmentError(
                        f"The manual partition assignment includes broker {node}, but no such broker is registered."
                    )

    def create(
        self,
        name: str,
        num_partitions: int = -1,
        replication_factor: int = -1,
        configs: Mapping[str, str | None] | None = None,
        *,
        alive: Sequence[int],
        assignments: Mapping[int, Sequence[int]] | None = None,
        topic_id: uuid.UUID | None = None,
    ) -> Topic:
        assignments = assignments or None
        partitions, factor, overrides = self.check_new_topic(
            name, num_partitions, replication_factor, configs or {}, alive, assignments
        )
        topic = Topic(name, topic_id or random_kafka_uuid(), overrides, self._broker)
        self._add_partitions(topic, partitions, factor, alive, assignments)
        self._by_name[name] = topic
        self._by_id[topic.topic_id] = topic
        self._save()
        return topic

    def check_new_partitions(
        self, topic: Topic, count: int, alive: Sequence[int], assignments: Sequence[Sequence[int]] | None
    ) -> None:
        current = len(topic.partitions)
        if count < current:
            raise InvalidPartitionsError(
                f"Topic currently has {current} partitions, which is higher than the requested {count}."
            )
        if count == current:
            raise InvalidPartitionsError(f"Topic already has {current} partitions.")
        if assignments is not None:
            if len(assignments) != count - current:
                raise InvalidReplicaAssignmentError(
                    f"Attempted to add {count - current} additional partition(s), but only "
                    f"{len(assignments)} assignment(s) were specified."
                )
            self._check_assignments(dict(enumerate(assignments, current)), current, alive)
        elif topic.replication_factor > len(alive):
            raise InvalidReplicationFactorError(
                f"Unable to replicate the partition {topic.replication_factor} time(s): The target "
                f"replication factor of {topic.replication_factor} cannot be reached because only "
                f"{len(alive)} broker(s) are registered."
            )

    def add_partitions(
        self,
        topic: Topic,
        count: int,
        alive: Sequence[int],
        assignments: Sequence[Sequence[int]] | None = None,
    ) -> None:
        self.check_new_partitions(topic, count, alive, assignments)
        current = len(topic.partitions)
        manual = dict(enumerate(assignments, current)) if assignments is not None else None
        self._add_partitions(topic, count - current, topic.replication_factor, alive, manual, first=current)
        self._save()

    def _add_partitions(
        self,
        topic: Topic,
        count: int,
        replication_factor: int,
        alive: Sequence[int],
        assignments: Mapping[int, Sequence[int]] | None,
        first: int = 0,
    ) -> None:
        nodes = sorted(alive)
        # Kafka's striped placement: consecutive partitions lead on consecutive brokers, and each
        # new topic starts one broker further, so leaders spread across the cluster.
        start = self._placement_cursor
        self._placement_cursor += 1
        for index in range(first, first + count):
            if assignments is not None:
                replicas = list(assignments[index])
            else:
                replicas = [nodes[(start + index + k) % len(nodes)] for k in range(replication_factor)]
            leader = next((node for node in replicas if node in alive), -1)
            topic.partitions.append(Partition(topic, index, self._open_log(topic, index), replicas, leader))

    def delete(self, topic: Topic) -> None:
        self._by_name.pop(topic.name, None)
        self._by_id.pop(topic.topic_id, None)
        for partition in topic.partitions:
            partition.leader = -1
            partition.log.close()
            if partition.log.directory is not None:
                shutil.rmtree(partition.log.directory, ignore_errors=True)
        self._save()
        for listener in list(self._delete_listeners):
            listener(topic)

    def add_delete_listener(self, listener: Callable[[Topic], None]) -> None:
        self._delete_listeners.append(listener)

    def remove_delete_listener(self, listener: Callable[[Topic], None]) -> None:
        if listener in self._delete_listeners:
            self._delete_listeners.remove(listener)

    def move_leader(self, partition: Partition, node_id: int) -> None:
        if node_id not in self._node_ids:
            raise ValueError(f"no node {node_id} in this cluster")
        partition.set_leader(node_id)
        self._save()

    def node_stopped(self, node_id: int, alive: Sequence[int]) -> None:
        """A stopped node loses its leaderships to another live replica, or the partition goes offline."""
        for topic in self:
            for partition in topic.partitions:
                if partition.leader == node_id:
                    partition.set_leader(
                        next((n for n in partition.replicas if n in alive and n != node_id), -1)
                    )
        self._save()

    def node_started(self, node_id: int) -> None:
        """Offline partitions with a replica on the restarted node get it as leader again."""
        for topic in self:
            for partition in topic.partitions:
                if partition.leader == -1 and node_id in partition.replicas:
                    partition.set_leader(node_id)
        self._save()

    def set_configs(self, topic: Topic, configs: dict[str, str]) -> None:
        topic.configs = configs
        policy = topic.flush_policy()
        for partition in topic.partitions:
            partition.log.flush_policy = policy
        self._save()

    def close(self) -> None:
        if self._flush_scheduler is not None:
            self._flush_scheduler.close()
        self.flush_all()
        for topic in self:
            for partition in topic.partitions:
                partition.log.close()

    # ------------------------------------------------------------------ flushing

    def add_flush_target(self, target: FlushTarget) -> None:
        """Have the flusher check `target` too, and flush it on close."""
        self._flush_targets.append(target)

    @property
    def flush_scheduler_running(self) -> bool:
        return self._flush_scheduler is not None and self._flush_scheduler.running

    def _flushables(self) -> list[FlushTarget]:
        logs: list[FlushTarget] = [partition.log for topic in self for partition in topic.partitions]
        return logs + self._flush_targets

    def flush_due(self) -> None:
        """LogManager.flushDirtyLogs: flush what was last flushed flush.ms ago or earlier."""
        for target in self._flushables():
            target.flush_if_due()

    def flush_all(self) -> None:
        """Flush everything unflushed (a clean shutdown: Kafka flushes every log then)."""
        for target in self._flushables():
            try:
                target.flush()
            except OSError:
                logger.exception("flushing %r failed", target)

    # ------------------------------------------------------------------ persistence

    def _open_log(self, topic: Topic, index: int) -> PartitionLog:
        directory = self._data_dir / f"{topic.name}-{index}" if self._data_dir is not None else None
        return PartitionLog(directory, flush_policy=topic.flush_policy(), clock=self._clock)

    def _metadata_durable(self) -> bool:
        """topics.json is fsynced when it changes once any flush policy is configured: the
        operator asked for durability (Kafka keeps this metadata in its fsynced KRaft log)."""
        if broker_flush_policy(self._broker).enabled:
            return True
        return any(topic.flush_policy().enabled for topic in self._by_name.values())

    def _save(self) -> None:
        if self._data_dir is None:
            return
        state = {
            "placement_cursor": self._placement_cursor,
            "topics": [
                {
                    "name": topic.name,
                    "id": str(topic.topic_id),
                    "configs": topic.configs,
                    "partitions": [
                        {"replicas": p.replicas, "leader": p.leader, "leader_epoch": p.leader_epoch}
                        for p in topic.partitions
                    ],
                }
                for topic in self._by_name.values()
            ],
        }
        data = json.dumps(state, indent=1).encode()
        replace_file(self._data_dir / TOPICS_FILE, data, durable=self._metadata_durable())

    def _load(self) -> None:
        assert self._data_dir is not None
        path = self._data_dir / TOPICS_FILE
        if not path.exists():
            return
        state = json.loads(path.read_text())
        self._placement_cursor = int(state.get("placement_cursor", 0))
        for entry in state["topics"]:
            topic = Topic(entry["name"], uuid.UUID(entry["id"]), dict(entry["configs"]), self._broker)
            for index, p in enumerate(entry["partitions"]):
                replicas = [int(n) for n in p["replicas"]]
                topic.partitions.append(
                    Partition(
                        topic,
                        index,
                        self._open_log(topic, index),
                        replicas,
                        int(p["leader"]),
                        int(p["leader_epoch"]),
                    )
                )
            self._by_name[topic.name] = topic
            self._by_id[topic.topic_id] = topic

    def restore_leaders(self, alive: Callable[[int], bool]) -> None:
        """After a restart, leaders recorded on nodes that are not running move to live replicas."""
        for topic in self:
            for partition in topic.partitions:
                if partition.leader < 0 or not alive(partition.leader):
                    live = next((n for n in partition.replicas if alive(n)), -1)
                    if live != partition.leader:
                        partition.set_leader(live)
        self._save()

    @property
    def max_producer_id(self) -> int:
        return max((p.log.max_producer_id for t in self for p in t.partitions), default=-1)
