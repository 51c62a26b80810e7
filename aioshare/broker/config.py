"""Broker and per-group configuration with Kafka's names, defaults and validation rules.

``BrokerConfig.from_mapping`` parses a ``server.properties``-style mapping the way Kafka's
``ConfigDef`` does (strings are trimmed, ints parsed, booleans are ``true``/``false`` in any
case) and then applies the cross-key rules of GroupCoordinatorConfig/ShareGroupConfig.
``GroupConfigs`` is the dynamic per-group configuration of a GROUP resource
(IncrementalAlterConfigs / DescribeConfigs), validated like Kafka 4.2's ``GroupConfig``.
Error messages follow Kafka's wording so they can be returned to clients unchanged.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Literal

from aioshare.broker import _codes
from aioshare.broker.kafka_versions import CONFIGS_SINCE, NEWEST, KafkaVersion, parse_kafka_version
from aioshare.broker.listeners import DEFAULT_PROTOCOL_MAP, ListenerSpec, parse_listeners, parse_protocol_map
from aioshare.protocol import errors
from aioshare.protocol.types import ConfigSource

ConfigValue = bool | int | str | tuple[str, ...]
RawValue = str | int | bool


class ConfigType(enum.IntEnum):
    """DescribeConfigs ``ConfigType`` values."""

    UNKNOWN = 0
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7
    CLASS = 8
    PASSWORD = 9


class ConfigError(errors.ConfigError):
    """A configuration was rejected; ``key`` names the config, ``rule`` says what was broken."""

    error_code: ClassVar[int] = _codes.INVALID_CONFIG

    def __init__(self, key: str, rule: str, message: str | None = None) -> None:
        super().__init__(message if message is not None else rule)
        self.key = key
        self.rule = rule


class InvalidBrokerConfig(ConfigError):
    """A static broker config (server.properties) is invalid."""


class InvalidGroupConfig(ConfigError):
    """A dynamic GROUP-resource config is invalid (IncrementalAlterConfigs → INVALID_CONFIG)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigKey:
    """One config definition: Kafka's type, default and range."""

    name: str
    type: ConfigType
    default: ConfigValue
    min: int | None = None
    max: int | None = None
    choices: tuple[str, ...] | None = None
    # Extra single-value check; returns a rule text when the value is invalid.
    check: Callable[[ConfigValue], str | None] | None = None


def _invalid(name: str, value: object, rule: str) -> str:
    # Kafka's ConfigException(name, value, message) text.
    return f"Invalid value {value} for configuration {name}: {rule}"


def _parse_value(key: ConfigKey, raw: object, error: type[ConfigError]) -> ConfigValue:
    """Parse one raw value like ConfigDef.parseType, then apply the key's validators."""
    value = _coerce(key, raw, error)
    _check(key, value, error)
    return value


def _coerce(key: ConfigKey, raw: object, error: type[ConfigError]) -> ConfigValue:
    def fail(rule: str) -> ConfigError:
        return error(key.name, rule, _invalid(key.name, raw, rule))

    if key.type in (ConfigType.INT, ConfigType.LONG):
        bits = 31 if key.type is ConfigType.INT else 63
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            return _raise(
                fail(f"Expected value to be a {bits + 1}-bit integer, but it was a {type(raw).__name__}")
            )
        try:
            number = int(raw.strip(), 10) if isinstance(raw, str) else raw
        except ValueError:
            return _raise(fail(f"Not a number of type {key.type.name}"))
        if not -(2**bits) <= number < 2**bits:
            return _raise(fail(f"Not a number of type {key.type.name}"))
        return number
    if key.type is ConfigType.BOOLEAN:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
            return raw.strip().lower() == "true"
        return _raise(fail("Expected value to be either true or false"))
    if key.type is ConfigType.LIST:
        if isinstance(raw, tuple | list) and all(isinstance(item, str) for item in raw):
            return tuple(str(item).strip() for item in raw)
        if not isinstance(raw, str):
            return _raise(fail("Expected a comma separated list"))
        text = raw.strip()
        return tuple(item.strip() for item in text.split(",")) if text else ()
    if not isinstance(raw, str):
        return _raise(fail(f"Expected value to be a string, but it was a {type(raw).__name__}"))
    return raw.strip()


def _check(key: ConfigKey, value: ConfigValue, error: type[ConfigError]) -> None:
    rule: str | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        if key.min is not None and value < key.min:
            rule = f"Value must be at least {key.min}"
        elif key.max is not None and value > key.max:
            rule = f"Value must be no more than {key.max}"
    if rule is None and key.choices is not None and value not in key.choices:
        rule = f"String must be one of: {', '.join(key.choices)}"
    if rule is None and key.check is not None:
        rule = key.check(value)
    if rule is not None:
        # Kafka's ConfigException shows a PASSWORD value as [hidden].
        shown = "[hidden]" if key.type is ConfigType.PASSWORD else config_value_to_string(value)
        raise error(key.name, rule, _invalid(key.name, shown, rule))


def _raise(error: ConfigError) -> ConfigValue:
    raise error


def config_value_to_string(value: ConfigValue) -> str:
    """ConfigDef.convertToString: how DescribeConfigs shows a parsed value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


# --------------------------------------------------------------------------------------
# Auto offset reset and isolation level (group configs share.auto.offset.reset / share.isolation.level)

# java.time.Duration.parse's grammar (letters are case-insensitive, every number may carry a sign).
_ISO_DURATION = re.compile(
    r"([-+]?)P(?:([-+]?[0-9]+)D)?"
    r"(T(?:([-+]?[0-9]+)H)?(?:([-+]?[0-9]+)M)?(?:([-+]?[0-9]+)(?:[.,]([0-9]{0,9}))?S)?)?",
    re.IGNORECASE,
)
_NANOS_PER_SECOND = 1_000_000_000
_NANOS_PER_MS = 1_000_000


def parse_iso8601_duration_ns(text: str) -> int:
    """Parse an ISO-8601 duration (``PnDTnHnMn.nS``) exactly as java.time.Duration.parse does.

    Returns nanoseconds; raises ValueError when Java would throw DateTimeParseException.
    """
    match = _ISO_DURATION.fullmatch(text)
    if match is None or (match.group(3) is not None and match.group(3).upper() == "T"):
        raise ValueError(f"Text cannot be parsed to a Duration: {text}")
    negate, days, _t, hours, minutes, seconds, fraction = match.groups()
    if days is None and hours is None and minutes is None and seconds is None:
        raise ValueError(f"Text cannot be parsed to a Duration: {text}")
    total_seconds = int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes or 0) * 60
    total_seconds += int(seconds or 0)
    nanos = 0
    if fraction:
        nanos = int(fraction.ljust(9, "0"))
        if seconds is not None and seconds.startswith("-"):
            nanos = -nanos
    total = total_seconds * _NANOS_PER_SECOND + nanos
    return -total if negate == "-" else total


@dataclasses.dataclass(frozen=True, slots=True)
class AutoOffsetReset:
    """A parsed ``share.auto.offset.reset``: where a fresh share-partition starts (section 4.9)."""

    kind: Literal["latest", "earliest", "by_duration"]
    duration_ns: int = 0

    @classmethod
    def parse(cls, text: str) -> AutoOffsetReset:
        """ShareGroupAutoOffsetResetStrategy.fromString: exact lower-case names, no trimming."""
        if text == "by_duration":
            raise ValueError("<:duration> part is missing in by_duration auto offset reset strategy.")
        if text == "latest":
            return cls("latest")
        if text == "earliest":
            return cls("earliest")
        if text.startswith("by_duration:"):
            try:
                duration_ns = parse_iso8601_duration_ns(text[len("by_duration:") :])
            except ValueError:
                raise ValueError(
                    "Unable to parse duration string in by_duration offset reset strategy."
                ) from None
            if duration_ns < 0:
                # Kafka wraps this one in the same "unable to parse" error.
                raise ValueError("Unable to parse duration string in by_duration offset reset strategy.")
            return cls("by_duration", duration_ns)
        raise ValueError(f"Unknown auto offset reset strategy: {text}")

    def timestamp_ms(self, now_ms: int) -> int:
        """The ListOffsets timestamp for ``by_duration``: now - duration, floored to ms like Instant."""
        return (now_ms * _NANOS_PER_MS - self.duration_ns) // _NANOS_PER_MS


def _check_auto_offset_reset(value: ConfigValue) -> str | None:
    try:
        AutoOffsetReset.parse(str(value))
    except ValueError:
        return (
            f"Invalid value `{value}` for configuration share.auto.offset.reset. The value must be "
            "either 'earliest', 'latest' or of the format 'by_duration:<PnDTnHnMn.nS.>'."
        )
    return None


class IsolationLevel(enum.StrEnum):
    READ_UNCOMMITTED = "read_uncommitted"
    READ_COMMITTED = "read_committed"


# --------------------------------------------------------------------------------------
# Broker (static) configs

_SIMPLE_ASSIGNOR_NAMES = ("simple", "org.apache.kafka.coordinator.group.assignor.SimpleAssignor")


def _check_share_assignors(value: ConfigValue) -> str | None:
    assert isinstance(value, tuple)
    if len(value) != 1:
        return "group.share.assignors must contain exactly one assignor"
    if value[0] not in _SIMPLE_ASSIGNOR_NAMES:
        # Kafka would load a custom class; the embedded broker only has the built-in one.
        return f"Unsupported share group assignor {value[0]}; the embedded broker only supports 'simple'"
    return None


def _check_scram_credentials(value: ConfigValue) -> str | None:
    from aioshare.broker.security import parse_scram_credentials

    try:
        parse_scram_credentials(str(value))
    except ValueError as exc:
        return str(exc)
    return None


def _check_kafka_version(value: ConfigValue) -> str | None:
    try:
        parse_kafka_version(str(value))
    except ValueError as exc:
        return str(exc)
    return None


def _int(name: str, default: int, lo: int | None = None, hi: int | None = None) -> ConfigKey:
    return ConfigKey(name, ConfigType.INT, default, lo, hi)


# Java's Long.MAX_VALUE, the default of Kafka's flush settings ("never").
_LONG_MAX = 2**63 - 1


BROKER_CONFIG_KEYS: tuple[ConfigKey, ...] = (
    # Share groups, coordinator side (GroupCoordinatorConfig).
    _int("group.share.max.size", 200, 1, 1000),
    _int("group.share.session.timeout.ms", 45000, 1),
    _int("group.share.min.session.timeout.ms", 45000, 1),
    _int("group.share.max.session.timeout.ms", 60000, 1),
    _int("group.share.heartbeat.interval.ms", 5000, 1),
    _int("group.share.min.heartbeat.interval.ms", 5000, 1),
    _int("group.share.max.heartbeat.interval.ms", 15000, 1),
    ConfigKey("group.share.assignors", ConfigType.LIST, ("simple",), check=_check_share_assignors),
    _int("group.share.initialize.retry.interval.ms", 30000, 1),
    # Internal switch; share.version=1 is what enables share groups in 4.2 (section 1.1).
    ConfigKey("group.share.enable", ConfigType.BOOLEAN, False),
    # Share groups, partition-leader side (ShareGroupConfig).
    _int("group.share.delivery.count.limit", 5, 2, 10),
    _int("group.share.record.lock.duration.ms", 30000, 1000, 3600000),
    _int("group.share.min.record.lock.duration.ms", 15000, 1000, 30000),
    _int("group.share.max.record.lock.duration.ms", 60000, 30000, 3600000),
    _int("group.share.partition.max.record.locks", 2000, 100, 10000),
    _int("group.share.max.share.sessions", 2000, 1),
    _int("share.fetch.purgatory.purge.interval.requests", 1000),
    ConfigKey(
        "group.share.persister.class.name",
        ConfigType.STRING,
        "org.apache.kafka.server.share.persister.DefaultStatePersister",
    ),
    # Kafka 4.3: bounds of the per-group share configs, and the least time between two target
    # assignments per group type (kafka_versions.CONFIGS_SINCE gates them by release).
    _int("group.share.min.delivery.count.limit", 2, 2, 5),
    _int("group.share.max.delivery.count.limit", 10, 5, 25),
    _int("group.share.min.partition.max.record.locks", 100, 100, 2000),
    _int("group.share.max.partition.max.record.locks", 4000, 2000, 10000),
    _int("group.share.assignment.interval.ms", 1000, 0),
    _int("group.share.min.assignment.interval.ms", 0, 0),
    _int("group.share.max.assignment.interval.ms", 15000, 0),
    _int("group.consumer.assignment.interval.ms", 1000, 0),
    _int("group.consumer.min.assignment.interval.ms", 0, 0),
    _int("group.consumer.max.assignment.interval.ms", 15000, 0),
    _int("group.streams.assignment.interval.ms", 1000, 0),
    _int("group.streams.min.assignment.interval.ms", 0, 0),
    _int("group.streams.max.assignment.interval.ms", 15000, 0),
    # Kafka 4.4: streams assignors by name, and the share groups' dead-letter queue (KIP-1191).
    ConfigKey("group.streams.assignors", ConfigType.LIST, ("sticky",)),
    ConfigKey("group.streams.rack.aware.assignment.tags", ConfigType.LIST, ()),
    ConfigKey("errors.deadletterqueue.auto.create.topics.enable", ConfigType.BOOLEAN, False),
    ConfigKey("errors.deadletterqueue.topic.name.prefix", ConfigType.STRING, "dlq."),
    # Consumer and streams group bounds: needed to validate consumer.* / streams.* group configs.
    _int("group.consumer.session.timeout.ms", 45000, 1),
    _int("group.consumer.min.session.timeout.ms", 45000, 1),
    _int("group.consumer.max.session.timeout.ms", 60000, 1),
    _int("group.consumer.heartbeat.interval.ms", 5000, 1),
    _int("group.consumer.min.heartbeat.interval.ms", 5000, 1),
    _int("group.consumer.max.heartbeat.interval.ms", 15000, 1),
    _int("group.streams.session.timeout.ms", 45000, 1),
    _int("group.streams.min.session.timeout.ms", 45000, 1),
    _int("group.streams.max.session.timeout.ms", 60000, 1),
    _int("group.streams.heartbeat.interval.ms", 5000, 1),
    _int("group.streams.min.heartbeat.interval.ms", 5000, 1),
    _int("group.streams.max.heartbeat.interval.ms", 15000, 1),
    _int("group.streams.num.standby.replicas", 0, 0),
    _int("group.streams.max.standby.replicas", 2, 0),
    _int("group.streams.initial.rebalance.delay.ms", 3000, 0),
    # General broker settings the embedded broker uses.
    ConfigKey("auto.create.topics.enable", ConfigType.BOOLEAN, True),
    _int("num.partitions", 1, 1),
    _int("message.max.bytes", 1048588, 0),
    _int("socket.request.max.bytes", 104857600, 1),
    # Kafka's default is -1 (unbounded); the embedded broker bounds request memory by default.
    ConfigKey("queued.max.request.bytes", ConfigType.LONG, 104857600),
    ConfigKey("connections.max.idle.ms", ConfigType.LONG, 600000),
    _int("max.connections", 2147483647, 0),
    ConfigKey("default.replication.factor", ConfigType.INT, 1),
    _int("fetch.max.bytes", 57671680, 1024),
    # Log flushing (ServerLogConfigs). Kafka's log.flush.interval.ms has no default (null: the
    # scheduler interval applies, see effective_log_flush_interval_ms); NEVER stands for unset.
    ConfigKey("log.flush.interval.messages", ConfigType.LONG, _LONG_MAX, 1),
    ConfigKey("log.flush.interval.ms", ConfigType.LONG, _LONG_MAX),
    ConfigKey("log.flush.scheduler.interval.ms", ConfigType.LONG, _LONG_MAX),
    # Listeners, TLS and SASL (SocketServerConfigs, SslConfigs, BrokerSecurityConfigs). Kafka's
    # default listeners is PLAINTEXT://:9092; unset here means one PLAINTEXT listener on the
    # EmbeddedBroker's host and port (the CLI's --host/--port).
    ConfigKey("listeners", ConfigType.LIST, ()),
    ConfigKey("listener.security.protocol.map", ConfigType.STRING, DEFAULT_PROTOCOL_MAP),
    ConfigKey("ssl.keystore.type", ConfigType.STRING, "JKS"),
    ConfigKey("ssl.keystore.location", ConfigType.STRING, ""),
    ConfigKey("ssl.keystore.password", ConfigType.PASSWORD, ""),
    ConfigKey("ssl.key.password", ConfigType.PASSWORD, ""),
    ConfigKey("ssl.truststore.type", ConfigType.STRING, "JKS"),
    ConfigKey("ssl.truststore.location", ConfigType.STRING, ""),
    ConfigKey("ssl.truststore.certificates", ConfigType.PASSWORD, ""),
    ConfigKey("ssl.client.auth", ConfigType.STRING, "none", choices=("required", "requested", "none")),
    ConfigKey("sasl.enabled.mechanisms", ConfigType.LIST, ("GSSAPI",)),
    ConfigKey("connections.max.reauth.ms", ConfigType.LONG, 0),
    _int("connection.failed.authentication.delay.ms", 100, 0),
    # Not a Kafka config: SCRAM users for the embedded broker, in kafka-storage format's
    # --add-scram syntax, ';'-separated (Kafka seeds them when formatting its storage).
    ConfigKey("aioshare.scram.credentials", ConfigType.PASSWORD, "", check=_check_scram_credentials),
    # Not a Kafka config: the Kafka release the embedded broker emulates (kafka_versions.py).
    ConfigKey("aioshare.kafka.version", ConfigType.STRING, NEWEST, check=_check_kafka_version),
)
_BROKER_KEYS_BY_NAME = {key.name: key for key in BROKER_CONFIG_KEYS}
_LISTENER_PREFIX = "listener.name."
# Configs that may carry a listener.name.<listener>. prefix (the mechanism-prefixed
# <mechanism>.sasl.jaas.config and <mechanism>.connections.max.reauth.ms are matched apart).
_LISTENER_KEYS = frozenset(
    {
        "ssl.keystore.type",
        "ssl.keystore.location",
        "ssl.keystore.password",
        "ssl.key.password",
        "ssl.truststore.type",
        "ssl.truststore.location",
        "ssl.truststore.certificates",
        "ssl.client.auth",
        "sasl.enabled.mechanisms",
        "connections.max.reauth.ms",
    }
)
_MECHANISM_KEYS = ("sasl.jaas.config", "connections.max.reauth.ms")
_MECHANISM_NAME = re.compile(r"[a-z0-9-]+")


def _listener_key(name: str) -> tuple[str, str, ConfigKey] | None:
    """``listener.name.<listener>.<key>`` -> (LISTENER, key, definition), None if not one."""
    if not name.startswith(_LISTENER_PREFIX):
        return None
    listener, _, key = name[len(_LISTENER_PREFIX) :].partition(".")
    if not listener or not key:
        return None
    if key in _LISTENER_KEYS:
        return listener.upper(), key, _BROKER_KEYS_BY_NAME[key]
    mechanism, _, rest = key.partition(".")
    if rest in _MECHANISM_KEYS and _MECHANISM_NAME.fullmatch(mechanism):
        kind = ConfigType.PASSWORD if rest == "sasl.jaas.config" else ConfigType.LONG
        return listener.upper(), key, ConfigKey(name, kind, "")
    return None


def _attribute(name: str) -> str:
    return name.replace(".", "_")


@dataclasses.dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Parsed static broker configuration. Attribute names are the Kafka names with ``_`` for ``.``."""

    group_share_max_size: int = 200
    group_share_session_timeout_ms: int = 45000
    group_share_min_session_timeout_ms: int = 45000
    group_share_max_session_timeout_ms: int = 60000
    group_share_heartbeat_interval_ms: int = 5000
    group_share_min_heartbeat_interval_ms: int = 5000
    group_share_max_heartbeat_interval_ms: int = 15000
    group_share_assignors: tuple[str, ...] = ("simple",)
    group_share_initialize_retry_interval_ms: int = 30000
    group_share_enable: bool = False
    group_share_delivery_count_limit: int = 5
    group_share_record_lock_duration_ms: int = 30000
    group_share_min_record_lock_duration_ms: int = 15000
    group_share_max_record_lock_duration_ms: int = 60000
    group_share_partition_max_record_locks: int = 2000
    group_share_max_share_sessions: int = 2000
    share_fetch_purgatory_purge_interval_requests: int = 1000
    group_share_persister_class_name: str = "org.apache.kafka.server.share.persister.DefaultStatePersister"
    group_share_min_delivery_count_limit: int = 2
    group_share_max_delivery_count_limit: int = 10
    group_share_min_partition_max_record_locks: int = 100
    group_share_max_partition_max_record_locks: int = 4000
    group_share_assignment_interval_ms: int = 1000
    group_share_min_assignment_interval_ms: int = 0
    group_share_max_assignment_interval_ms: int = 15000
    group_consumer_assignment_interval_ms: int = 1000
    group_consumer_min_assignment_interval_ms: int = 0
    group_consumer_max_assignment_interval_ms: int = 15000
    group_streams_assignment_interval_ms: int = 1000
    group_streams_min_assignment_interval_ms: int = 0
    group_streams_max_assignment_interval_ms: int = 15000
    group_streams_assignors: tuple[str, ...] = ("sticky",)
    group_streams_rack_aware_assignment_tags: tuple[str, ...] = ()
    errors_deadletterqueue_auto_create_topics_enable: bool = False
    errors_deadletterqueue_topic_name_prefix: str = "dlq."
    group_consumer_session_timeout_ms: int = 45000
    group_consumer_min_session_timeout_ms: int = 45000
    group_consumer_max_session_timeout_ms: int = 60000
    group_consumer_heartbeat_interval_ms: int = 5000
    group_consumer_min_heartbeat_interval_ms: int = 5000
    group_consumer_max_heartbeat_interval_ms: int = 15000
    group_streams_session_timeout_ms: int = 45000
    group_streams_min_session_timeout_ms: int = 45000
    group_streams_max_session_timeout_ms: int = 60000
    group_streams_heartbeat_interval_ms: int = 5000
    group_streams_min_heartbeat_interval_ms: int = 5000
    group_streams_max_heartbeat_interval_ms: int = 15000
    group_streams_num_standby_replicas: int = 0
    group_streams_max_standby_replicas: int = 2
    group_streams_initial_rebalance_delay_ms: int = 3000
    auto_create_topics_enable: bool = True
    num_partitions: int = 1
    message_max_bytes: int = 1048588
    socket_request_max_bytes: int = 104857600
    queued_max_request_bytes: int = 104857600
    connections_max_idle_ms: int = 600000
    max_connections: int = 2147483647
    default_replication_factor: int = 1
    fetch_max_bytes: int = 57671680
    log_flush_interval_messages: int = _LONG_MAX
    log_flush_interval_ms: int = _LONG_MAX
    log_flush_scheduler_interval_ms: int = _LONG_MAX
    listeners: tuple[str, ...] = ()
    listener_security_protocol_map: str = DEFAULT_PROTOCOL_MAP
    ssl_keystore_type: str = "JKS"
    ssl_keystore_location: str = ""
    ssl_keystore_password: str = dataclasses.field(default="", repr=False)
    ssl_key_password: str = dataclasses.field(default="", repr=False)
    ssl_truststore_type: str = "JKS"
    ssl_truststore_location: str = ""
    ssl_truststore_certificates: str = dataclasses.field(default="", repr=False)
    ssl_client_auth: str = "none"
    sasl_enabled_mechanisms: tuple[str, ...] = ("GSSAPI",)
    connections_max_reauth_ms: int = 0
    connection_failed_authentication_delay_ms: int = 100
    aioshare_scram_credentials: str = dataclasses.field(default="", repr=False)
    aioshare_kafka_version: str = NEWEST
    # listener.name.<LISTENER>.<key> values: ((LISTENER, key), value) pairs, parsed; not a Kafka field.
    listener_overrides: tuple[tuple[tuple[str, str], str], ...] = dataclasses.field(default=(), repr=False)
    # Names given explicitly in from_mapping (for DescribeConfigs sources); not a Kafka config.
    explicitly_set: frozenset[str] = frozenset()

    @classmethod
    def from_mapping(cls, values: Mapping[str, RawValue]) -> BrokerConfig:
        """Parse and validate like Kafka; raises InvalidBrokerConfig naming the key and the rule."""
        parsed: dict[str, Any] = {}
        overrides: list[tuple[tuple[str, str], str]] = []
        for name, raw in values.items():
            key = _BROKER_KEYS_BY_NAME.get(name)
            if key is None:
                prefixed = _listener_key(name)
                if prefixed is None:
                    raise InvalidBrokerConfig(name, "unknown config", f"Unknown broker config name: {name}")
                listener, suffix, definition = prefixed
                value = _parse_value(dataclasses.replace(definition, name=name), raw, InvalidBrokerConfig)
                overrides.append(((listener, suffix), config_value_to_string(value)))
                continue
            parsed[_attribute(name)] = _parse_value(key, raw, InvalidBrokerConfig)
        config = cls(**parsed, listener_overrides=tuple(overrides), explicitly_set=frozenset(values))
        config.validate()
        return config

    def get(self, name: str) -> ConfigValue:
        if name not in _BROKER_KEYS_BY_NAME:
            raise KeyError(name)
        value: ConfigValue = getattr(self, _attribute(name))
        return value

    def listener_value(self, listener: str, key: str) -> str | None:
        """The value of ``listener.name.<listener>.<key>``, None when it is not set."""
        for (name, suffix), value in self.listener_overrides:
            if name == listener.upper() and suffix == key:
                return value
        return None

    def listener_specs(self, host: str, port: int) -> list[ListenerSpec]:
        """`listeners` parsed like Kafka; unset: one PLAINTEXT listener on host:port."""
        protocol_map = parse_protocol_map(self.listener_security_protocol_map)
        if not self.listeners:
            from aioshare.broker.listeners import SecurityProtocol

            return [ListenerSpec("PLAINTEXT", SecurityProtocol.PLAINTEXT, host, port)]
        return parse_listeners(self.listeners, protocol_map)

    def validate(self) -> None:
        """Cross-key rules of GroupCoordinatorConfig and ShareGroupConfig (Kafka's wording)."""
        for group_type in ("share", "consumer", "streams"):
            self._validate_session_bounds(group_type)
        self._require_between(
            "group.share.record.lock.duration.ms",
            "group.share.min.record.lock.duration.ms",
            "group.share.max.record.lock.duration.ms",
        )
        if self.group_streams_num_standby_replicas > self.group_streams_max_standby_replicas:
            raise _cross_rule(
                "group.streams.num.standby.replicas",
                "less than or equal to",
                "group.streams.max.standby.replicas",
            )
        if self.group_share_max_share_sessions < self.group_share_max_size:
            raise _cross_rule(
                "group.share.max.share.sessions", "greater than or equal to", "group.share.max.size"
            )
        if (
            "queued.max.request.bytes" in self.explicitly_set
            and 0 < self.queued_max_request_bytes < self.socket_request_max_bytes
        ):
            # KafkaConfig.validateValues (queued.max.request.bytes <= 0 means unbounded). Only
            # for an explicit value: the embedded default (Kafka's is -1) must not reject a
            # larger socket.request.max.bytes; the pool admits one request of any size anyway.
            raise _cross_rule("queued.max.request.bytes", "larger or equal to", "socket.request.max.bytes")
        self.listener_specs("", 0)  # listeners / listener.security.protocol.map
        self._validate_release_configs()
        self._validate_log_flush_interval()
        for key in BROKER_CONFIG_KEYS:
            # Direct dataclass construction bypasses parsing; re-check single-key rules here.
            _check(key, self.get(key.name), InvalidBrokerConfig)

    @property
    def effective_log_flush_interval_ms(self) -> int:
        """KafkaConfig.logFlushIntervalMs: log.flush.interval.ms, else the scheduler interval."""
        return self._int(self.log_flush_interval_ms_source)

    @property
    def log_flush_interval_ms_source(self) -> str:
        """The broker config `effective_log_flush_interval_ms` comes from."""
        if "log.flush.interval.ms" in self.explicitly_set or self.log_flush_interval_ms != _LONG_MAX:
            return "log.flush.interval.ms"
        return "log.flush.scheduler.interval.ms"

    def _validate_log_flush_interval(self) -> None:
        # Neither broker key has a validator; Kafka rejects a negative value when LogManager
        # builds the default LogConfig, whose flush.ms must be at least 0 (same message).
        value = self.effective_log_flush_interval_ms
        if value < 0:
            rule = "Value must be at least 0"
            raise InvalidBrokerConfig(
                self.log_flush_interval_ms_source, rule, _invalid("flush.ms", value, rule)
            )

    def _validate_release_configs(self) -> None:
        """Configs of a later release than the emulated one are refused; those of 4.3+ get
        ShareGroupConfig's and GroupCoordinatorConfig's cross-key rules."""
        release = parse_kafka_version(self.aioshare_kafka_version)
        for name in sorted(self.explicitly_set):
            since = CONFIGS_SINCE.get(name)
            if since is not None and not release.at_least(since):
                raise InvalidBrokerConfig(
                    name, f"{name} is a Kafka {since} config; the broker emulates Kafka {release.name}"
                )
        if not release.at_least("4.3"):
            return
        for lower, upper in (
            ("group.share.min.delivery.count.limit", "group.share.max.delivery.count.limit"),
            ("group.share.min.partition.max.record.locks", "group.share.max.partition.max.record.locks"),
        ):
            value = upper.replace(".max.", ".", 1)
            self._require_ordered(upper, value)
            if self._int(value) < self._int(lower):
                raise _cross_rule(value, "greater than or equal to", lower)
        for group_type in ("consumer", "share", "streams"):
            prefix = f"group.{group_type}"
            self._require_ordered(
                f"{prefix}.max.assignment.interval.ms", f"{prefix}.min.assignment.interval.ms"
            )
            self._require_between(
                f"{prefix}.assignment.interval.ms",
                f"{prefix}.min.assignment.interval.ms",
                f"{prefix}.max.assignment.interval.ms",
            )

    def _validate_session_bounds(self, group_type: str) -> None:
        prefix = f"group.{group_type}"
        self._require_ordered(f"{prefix}.max.heartbeat.interval.ms", f"{prefix}.min.heartbeat.interval.ms")
        self._require_between(
            f"{prefix}.heartbeat.interval.ms",
            f"{prefix}.min.heartbeat.interval.ms",
            f"{prefix}.max.heartbeat.interval.ms",
        )
        self._require_ordered(f"{prefix}.max.session.timeout.ms", f"{prefix}.min.session.timeout.ms")
        self._require_between(
            f"{prefix}.session.timeout.ms",
            f"{prefix}.min.session.timeout.ms",
            f"{prefix}.max.session.timeout.ms",
        )
        heartbeat, session = f"{prefix}.heartbeat.interval.ms", f"{prefix}.session.timeout.ms"
        if self._int(heartbeat) >= self._int(session):
            raise _cross_rule(heartbeat, "less than", session)

    def _require_ordered(self, upper: str, lower: str) -> None:
        if self._int(upper) < self._int(lower):
            raise _cross_rule(upper, "greater than or equal to", lower)

    def _require_between(self, name: str, lower: str, upper: str) -> None:
        if self._int(name) < self._int(lower):
            raise _cross_rule(name, "greater than or equal to", lower)
        if self._int(name) > self._int(upper):
            raise _cross_rule(name, "less than or equal to", upper)

    def _int(self, name: str) -> int:
        value = self.get(name)
        assert isinstance(value, int)
        return value


def _cross_rule(name: str, relation: str, other: str) -> InvalidBrokerConfig:
    rule = f"{name} must be {relation} {other}"
    return InvalidBrokerConfig(name, rule)


# --------------------------------------------------------------------------------------
# Group (dynamic) configs, resource type GROUP
#
# Which configs exist depends on the emulated release (kafka_versions.CONFIGS_SINCE), and so does
# how they are validated: Kafka 4.2 and 4.3 validate the group's overrides merged with the broker
# defaults and name the broker bound a value broke ("... must be greater than or equal to
# group.share.min.record.lock.duration.ms"); 4.4 (KAFKA-20337) validates only the overrides and
# names the numbers ("... must be in the range 1000 to 60000 inclusive."). From 4.3 on, a stored
# value that a restart's tighter broker bounds exclude is clamped to them, not refused.


@dataclasses.dataclass(frozen=True, slots=True)
class _GroupKey:
    key: ConfigKey
    # The broker config whose value is this group config's default.
    broker_default: str | None
    # Broker configs bounding the value (Kafka checks these after parsing).
    broker_min: str | None = None
    broker_max: str | None = None


def _bounded(name: str, default: int, at_least: int, group_type: str, setting: str) -> _GroupKey:
    """A group config with broker default group.<type>.<setting> and min/max bounds."""
    prefix = f"group.{group_type}"
    return _GroupKey(
        _int(name, default, at_least),
        f"{prefix}.{setting}",
        f"{prefix}.min.{setting}",
        f"{prefix}.max.{setting}",
    )


# In Kafka 4.4's GroupConfig definition order.
GROUP_CONFIG_KEYS: tuple[_GroupKey, ...] = (
    _bounded("consumer.session.timeout.ms", 45000, 1, "consumer", "session.timeout.ms"),
    _bounded("consumer.heartbeat.interval.ms", 5000, 1, "consumer", "heartbeat.interval.ms"),
    _bounded("consumer.assignment.interval.ms", 1000, 0, "consumer", "assignment.interval.ms"),
    _bounded("share.session.timeout.ms", 45000, 1, "share", "session.timeout.ms"),
    _bounded("share.heartbeat.interval.ms", 5000, 1, "share", "heartbeat.interval.ms"),
    _bounded("share.record.lock.duration.ms", 30000, 1000, "share", "record.lock.duration.ms"),
    _bounded("share.delivery.count.limit", 5, 2, "share", "delivery.count.limit"),
    _bounded("share.partition.max.record.locks", 2000, 100, "share", "partition.max.record.locks"),
    _GroupKey(
        ConfigKey("share.auto.offset.reset", ConfigType.STRING, "latest", check=_check_auto_offset_reset),
        None,
    ),
    _GroupKey(
        ConfigKey(
            "share.isolation.level",
            ConfigType.STRING,
            "read_uncommitted",
            choices=(IsolationLevel.READ_COMMITTED.value, IsolationLevel.READ_UNCOMMITTED.value),
        ),
        None,
    ),
    _GroupKey(ConfigKey("share.renew.acknowledge.enable", ConfigType.BOOLEAN, True), None),
    _bounded("share.assignment.interval.ms", 1000, 0, "share", "assignment.interval.ms"),
    _bounded("streams.session.timeout.ms", 45000, 1, "streams", "session.timeout.ms"),
    _bounded("streams.heartbeat.interval.ms", 5000, 1, "streams", "heartbeat.interval.ms"),
    _GroupKey(
        _int("streams.num.standby.replicas", 0, 0),
        "group.streams.num.standby.replicas",
        None,
        "group.streams.max.standby.replicas",
    ),
    _GroupKey(
        _int("streams.initial.rebalance.delay.ms", 3000, 0), "group.streams.initial.rebalance.delay.ms"
    ),
    _bounded("streams.assignment.interval.ms", 1000, 0, "streams", "assignment.interval.ms"),
    _GroupKey(
        ConfigKey("streams.rack.aware.assignment.tags", ConfigType.LIST, ()),
        "group.streams.rack.aware.assignment.tags",
    ),
    # Kafka's default is null: the first of the broker's group.streams.assignors.
    _GroupKey(ConfigKey("streams.assignor.name", ConfigType.STRING, ""), "group.streams.assignors"),
    _GroupKey(ConfigKey("errors.deadletterqueue.topic.name", ConfigType.STRING, ""), None),
    _GroupKey(ConfigKey("errors.deadletterqueue.copy.record.enable", ConfigType.BOOLEAN, False), None),
)
_GROUP_KEYS_BY_NAME = {entry.key.name: entry for entry in GROUP_CONFIG_KEYS}
# The order GroupConfig.validateValues checks the broker bounds in (4.2 to 4.4 alike).
_BOUND_CHECK_ORDER = (
    "consumer.heartbeat.interval.ms",
    "consumer.session.timeout.ms",
    "consumer.assignment.interval.ms",
    "share.heartbeat.interval.ms",
    "share.session.timeout.ms",
    "share.record.lock.duration.ms",
    "share.delivery.count.limit",
    "share.partition.max.record.locks",
    "share.assignment.interval.ms",
    "streams.heartbeat.interval.ms",
    "streams.session.timeout.ms",
    "streams.num.standby.replicas",
    "streams.assignment.interval.ms",
)
# Before 4.4 these were checked only when the group sets them ("TODO ... KAFKA-20337").
_CHECKED_ONLY_WHEN_SET = frozenset(
    {"consumer.assignment.interval.ms", "share.assignment.interval.ms", "streams.assignment.interval.ms"}
)
# session > heartbeat, checked per group type after the range checks (GroupConfig.validateValues).
_SESSION_HEARTBEAT_PAIRS = (
    ("consumer.session.timeout.ms", "consumer.heartbeat.interval.ms"),
    ("share.session.timeout.ms", "share.heartbeat.interval.ms"),
    ("streams.session.timeout.ms", "streams.heartbeat.interval.ms"),
)
_DLQ_TOPIC_NAME = "errors.deadletterqueue.topic.name"
_RACK_TAGS = "streams.rack.aware.assignment.tags"


def _release(broker: BrokerConfig) -> KafkaVersion:
    return parse_kafka_version(broker.aioshare_kafka_version)


def _exists_in(name: str, release: KafkaVersion) -> bool:
    since = CONFIGS_SINCE.get(name)
    return since is None or release.at_least(since)


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One DescribeConfigs result row."""

    name: str
    value: str
    is_default: bool
    read_only: bool
    source: ConfigSource
    config_type: ConfigType
    is_sensitive: bool = False


class GroupConfigs:
    """The effective dynamic configuration of one group: overrides on top of broker defaults.

    Construction validates the complete set the way the emulated Kafka release does on every
    IncrementalAlterConfigs, so an instance is always valid; `restore` re-reads stored overrides
    (clamping values outside the broker's current bounds from Kafka 4.3 on).
    """

    __slots__ = ("_broker", "_keys", "_overrides", "_release", "_values")

    def __init__(
        self, broker: BrokerConfig, overrides: Mapping[str, RawValue] | None = None, *, clamp: bool = False
    ) -> None:
        self._broker = broker
        self._release = _release(broker)
        self._keys = tuple(entry for entry in GROUP_CONFIG_KEYS if _exists_in(entry.key.name, self._release))
        known = {entry.key.name: entry for entry in self._keys}
        raw = dict(overrides or {})
        for name in raw:
            if name not in known:
                raise InvalidGroupConfig(name, "unknown config", f"Unknown group config name: {name}")
        if _RACK_TAGS in raw:
            tags = (
                [tag.strip() for tag in str(raw[_RACK_TAGS]).strip().split(",")]
                if str(raw[_RACK_TAGS]).strip()
                else []
            )
            if len(set(tags)) != len(tags):
                raise InvalidGroupConfig(_RACK_TAGS, f"{_RACK_TAGS} must not contain duplicate tag keys.")
        parsed: dict[str, ConfigValue] = {}
        for entry in self._keys:  # ConfigDef.parse goes through the keys in definition order
            if entry.key.name in raw:
                parsed[entry.key.name] = _parse_value(entry.key, raw[entry.key.name], InvalidGroupConfig)
        self._overrides = parsed
        self._values = {entry.key.name: self._default(entry) for entry in self._keys} | parsed
        if clamp and self._release.at_least("4.3"):
            self._clamp()
        elif self._release.at_least("4.4"):
            self._validate_overrides()
        else:
            self._validate_merged()

    @classmethod
    def restore(cls, broker: BrokerConfig, overrides: Mapping[str, RawValue]) -> GroupConfigs:
        """Stored overrides, read back after a restart (GroupConfigManager with evaluate())."""
        return cls(broker, overrides, clamp=True)

    def _default(self, entry: _GroupKey) -> ConfigValue:
        if entry.broker_default is None:
            return entry.key.default
        value = self._broker.get(entry.broker_default)
        if entry.key.type is ConfigType.STRING and isinstance(value, tuple):
            return value[0] if value else ""  # streams.assignor.name: the first assignor
        return value

    def _bounds(self, entry: _GroupKey) -> tuple[int | None, int | None]:
        low = self._broker_int(entry.broker_min) if entry.broker_min is not None else None
        high = self._broker_int(entry.broker_max) if entry.broker_max is not None else None
        return low, high

    def _validate_merged(self) -> None:
        """Kafka 4.2/4.3: every value, the broker defaults included, names the bound it broke."""
        for name in _BOUND_CHECK_ORDER:
            entry = _GROUP_KEYS_BY_NAME[name]
            if name not in self._values or (name in _CHECKED_ONLY_WHEN_SET and name not in self._overrides):
                continue
            low, high = self._bounds(entry)
            value = self.int_value(name)
            if low is not None and value < low:
                assert entry.broker_min is not None
                raise _group_rule(name, "greater than or equal to", entry.broker_min)
            if high is not None and value > high:
                assert entry.broker_max is not None
                raise _group_rule(name, "less than or equal to", entry.broker_max)
        for session, heartbeat in _SESSION_HEARTBEAT_PAIRS:
            if self.int_value(session) <= self.int_value(heartbeat):
                raise _group_rule(session, "greater than", heartbeat)

    def _validate_overrides(self) -> None:
        """Kafka 4.4: only the group's own values, against the broker bounds by number."""
        for name in _BOUND_CHECK_ORDER:
            if name not in self._overrides:
                continue
            low, high = self._bounds(_GROUP_KEYS_BY_NAME[name])
            value = self.int_value(name)
            if low is None and high is not None and value > high:
                raise InvalidGroupConfig(name, f"{name} must be less than or equal to {high}")
            if low is not None and high is not None and not low <= value <= high:
                raise InvalidGroupConfig(name, f"{name} must be in the range {low} to {high} inclusive.")
        assignor = self._overrides.get("streams.assignor.name")
        if assignor is not None and assignor not in self._broker.group_streams_assignors:
            registered = "[" + ", ".join(self._broker.group_streams_assignors) + "]"
            raise InvalidGroupConfig(
                "streams.assignor.name",
                f"streams.assignor.name '{assignor}' is not a registered task assignor. "
                f"Registered assignors are: {registered}.",
            )
        for session, heartbeat in _SESSION_HEARTBEAT_PAIRS:
            if session not in self._overrides and heartbeat not in self._overrides:
                continue
            if self.int_value(session) <= self.int_value(heartbeat):
                raise _group_rule(session, "greater than", heartbeat)
        dlq_topic = str(self._overrides.get(_DLQ_TOPIC_NAME, ""))
        if dlq_topic.startswith("__"):
            raise InvalidGroupConfig(
                _DLQ_TOPIC_NAME, f"{_DLQ_TOPIC_NAME}: DLQ topic name must not start with '__'"
            )

    def _clamp(self) -> None:
        for entry in self._keys:
            name = entry.key.name
            if name not in self._overrides or (entry.broker_min is None and entry.broker_max is None):
                continue
            low, high = self._bounds(entry)
            value = self.int_value(name)
            if low is not None and value < low:
                self._values[name] = low
            elif high is not None and value > high:
                self._values[name] = high

    def _broker_int(self, name: str) -> int:
        return self._int_value(self._broker.get(name))

    @staticmethod
    def _int_value(value: ConfigValue) -> int:
        assert isinstance(value, int) and not isinstance(value, bool)
        return value

    @staticmethod
    def is_valid_name(name: str) -> bool:
        """A group config of some release (the newest's names)."""
        return name in _GROUP_KEYS_BY_NAME

    @staticmethod
    def names() -> tuple[str, ...]:
        return tuple(entry.key.name for entry in GROUP_CONFIG_KEYS)

    @property
    def broker(self) -> BrokerConfig:
        return self._broker

    @property
    def overrides(self) -> dict[str, ConfigValue]:
        """The explicitly set values (what a config store persists)."""
        return dict(self._overrides)

    def value(self, name: str) -> ConfigValue:
        return self._values[name]

    def int_value(self, name: str) -> int:
        return self._int_value(self._values[name])

    def with_changes(
        self, set_values: Mapping[str, RawValue] | None = None, delete: Iterable[str] = ()
    ) -> GroupConfigs:
        """IncrementalAlterConfigs SET/DELETE applied to a copy; raises InvalidGroupConfig."""
        merged: dict[str, RawValue] = {name: _raw(value) for name, value in self._overrides.items()}
        for name in delete:
            # Kafka validates the resulting overrides: deleting a name that is not set (even an
            # unknown one) changes nothing and succeeds.
            merged.pop(name, None)
        merged.update(set_values or {})
        return GroupConfigs(self._broker, merged)

    def _broker_or_own(self, name: str, broker_name: str) -> ConfigValue:
        """A group config of a later release than the emulated one: the broker-wide setting."""
        return self._values[name] if name in self._values else self._broker.get(broker_name)

    @property
    def share_auto_offset_reset(self) -> AutoOffsetReset:
        return AutoOffsetReset.parse(str(self._values["share.auto.offset.reset"]))

    @property
    def share_isolation_level(self) -> IsolationLevel:
        return IsolationLevel(str(self._values["share.isolation.level"]))

    @property
    def share_record_lock_duration_ms(self) -> int:
        return self.int_value("share.record.lock.duration.ms")

    @property
    def share_session_timeout_ms(self) -> int:
        return self.int_value("share.session.timeout.ms")

    @property
    def share_heartbeat_interval_ms(self) -> int:
        return self.int_value("share.heartbeat.interval.ms")

    @property
    def consumer_session_timeout_ms(self) -> int:
        return self.int_value("consumer.session.timeout.ms")

    @property
    def consumer_heartbeat_interval_ms(self) -> int:
        return self.int_value("consumer.heartbeat.interval.ms")

    @property
    def share_delivery_count_limit(self) -> int:
        """Deliveries before a record is archived (4.3+: per group; 4.2: the broker's)."""
        return self._int_value(
            self._broker_or_own("share.delivery.count.limit", "group.share.delivery.count.limit")
        )

    @property
    def share_partition_max_record_locks(self) -> int:
        """In-flight records per share-partition (4.3+: per group; 4.2: the broker's)."""
        return self._int_value(
            self._broker_or_own("share.partition.max.record.locks", "group.share.partition.max.record.locks")
        )

    @property
    def share_renew_acknowledge_enable(self) -> bool:
        """Whether RENEW acknowledgements are accepted (4.3+: per group; always in 4.2)."""
        return bool(self._values.get("share.renew.acknowledge.enable", True))

    @property
    def share_assignment_interval_ms(self) -> int:
        """The least time between two assignment changes (4.3+; 0 in 4.2: assign at once)."""
        return self._int_value(self._values.get("share.assignment.interval.ms", 0))

    @property
    def dead_letter_topic(self) -> str:
        """KIP-1191's errors.deadletterqueue.topic.name ("" when none, and before 4.4)."""
        return str(self._values.get(_DLQ_TOPIC_NAME, ""))

    @property
    def dead_letter_copy_record(self) -> bool:
        return bool(self._values.get("errors.deadletterqueue.copy.record.enable", False))

    def describe(self, names: Iterable[str] | None = None) -> list[ConfigEntry]:
        """DescribeConfigs rows for a GROUP resource, in definition order (all when names is None).

        Unknown names are skipped, as Kafka only returns the configs it knows. An override is
        GROUP_CONFIG; from 4.3 on (KAFKA-20289) a value inherited from a broker config set in the
        broker's properties is STATIC_BROKER_CONFIG, in 4.2 DEFAULT_CONFIG like any default.
        """
        wanted = None if names is None else set(names)
        rows = []
        for entry in self._keys:
            name = entry.key.name
            if wanted is not None and name not in wanted:
                continue
            overridden = name in self._overrides
            if overridden:
                source = ConfigSource.GROUP_CONFIG
            elif (
                self._release.at_least("4.3")
                and entry.broker_default is not None
                and entry.broker_default in self._broker.explicitly_set
            ):
                source = ConfigSource.STATIC_BROKER_CONFIG
            else:
                source = ConfigSource.DEFAULT_CONFIG
            rows.append(
                ConfigEntry(
                    name=name,
                    value=config_value_to_string(self._overrides.get(name, self._values[name])),
                    is_default=not overridden,
                    read_only=False,
                    source=source,
                    config_type=entry.key.type,
                )
            )
        return rows


def _raw(value: ConfigValue) -> RawValue:
    return config_value_to_string(value) if isinstance(value, tuple) else value


def _group_rule(name: str, relation: str, other: str) -> InvalidGroupConfig:
    return InvalidGroupConfig(name, f"{name} must be {relation} {other}")
