"""Broker and group config parsing and validation (semantics doc, sections 1.2-1.3)."""

from __future__ import annotations

import dataclasses

import pytest

from aioshare.broker import _codes
from aioshare.broker.config import (
    BROKER_CONFIG_KEYS,
    AutoOffsetReset,
    BrokerConfig,
    ConfigError,
    ConfigSource,
    GroupConfigs,
    InvalidBrokerConfig,
    InvalidGroupConfig,
    IsolationLevel,
    parse_iso8601_duration_ns,
)
from aioshare.protocol import errors


class TestBrokerConfig:
    def test_kafka_defaults(self) -> None:
        config = BrokerConfig.from_mapping({})
        assert config == BrokerConfig()
        assert config.group_share_record_lock_duration_ms == 30000
        assert config.group_share_delivery_count_limit == 5
        assert config.group_share_partition_max_record_locks == 2000
        assert config.group_share_max_share_sessions == 2000
        assert config.group_share_max_size == 200
        assert (config.group_share_session_timeout_ms, config.group_share_heartbeat_interval_ms) == (
            45000,
            5000,
        )
        assert config.auto_create_topics_enable is True
        assert (config.num_partitions, config.message_max_bytes, config.socket_request_max_bytes) == (
            1,
            1048588,
            104857600,
        )
        assert config.default_replication_factor == 1

    def test_every_key_has_a_field_with_its_default(self) -> None:
        fields = {field.name for field in dataclasses.fields(BrokerConfig)} - {
            "explicitly_set",
            "listener_overrides",
        }
        assert fields == {key.name.replace(".", "_") for key in BROKER_CONFIG_KEYS}
        defaults = BrokerConfig()
        for key in BROKER_CONFIG_KEYS:
            assert defaults.get(key.name) == key.default, key.name

    def test_strings_are_parsed_like_kafka(self) -> None:
        config = BrokerConfig.from_mapping(
            {
                "group.share.record.lock.duration.ms": " 20000 ",
                "auto.create.topics.enable": "FALSE",
                "group.share.assignors": " simple ",
                "num.partitions": 3,
                "group.share.enable": True,
            }
        )
        assert config.group_share_record_lock_duration_ms == 20000
        assert config.auto_create_topics_enable is False
        assert config.group_share_assignors == ("simple",)
        assert config.num_partitions == 3
        assert config.explicitly_set == {
            "group.share.record.lock.duration.ms",
            "auto.create.topics.enable",
            "group.share.assignors",
            "num.partitions",
            "group.share.enable",
        }

    @pytest.mark.parametrize(
        ("values", "key", "message"),
        [
            ({"no.such.config": "1"}, "no.such.config", "Unknown broker config name: no.such.config"),
            (
                {"num.partitions": "many"},
                "num.partitions",
                "Invalid value many for configuration num.partitions: Not a number of type INT",
            ),
            ({"num.partitions": True}, "num.partitions", None),
            (
                {"num.partitions": "0"},
                "num.partitions",
                "Invalid value 0 for configuration num.partitions: Value must be at least 1",
            ),
            ({"group.share.delivery.count.limit": "1"}, "group.share.delivery.count.limit", None),
            (
                {"group.share.delivery.count.limit": "11"},
                "group.share.delivery.count.limit",
                "Invalid value 11 for configuration group.share.delivery.count.limit: Value must be no more than 10",
            ),
            (
                {"group.share.partition.max.record.locks": "99"},
                "group.share.partition.max.record.locks",
                None,
            ),
            (
                {"group.share.partition.max.record.locks": "10001"},
                "group.share.partition.max.record.locks",
                None,
            ),
            ({"group.share.record.lock.duration.ms": "999"}, "group.share.record.lock.duration.ms", None),
            ({"group.share.max.size": "1001"}, "group.share.max.size", None),
            ({"auto.create.topics.enable": "yes"}, "auto.create.topics.enable", None),
            ({"num.partitions": str(2**31)}, "num.partitions", None),
        ],
    )
    def test_single_value_rules(self, values: dict[str, str], key: str, message: str | None) -> None:
        with pytest.raises(InvalidBrokerConfig) as raised:
            BrokerConfig.from_mapping(values)
        assert raised.value.key == key
        if message is not None:
            assert str(raised.value) == message

    @pytest.mark.parametrize(
        ("values", "rule"),
        [
            (
                {"group.share.record.lock.duration.ms": "10000"},
                "group.share.record.lock.duration.ms must be greater than or equal to "
                "group.share.min.record.lock.duration.ms",
            ),
            (
                {"group.share.record.lock.duration.ms": "70000"},
                "group.share.record.lock.duration.ms must be less than or equal to "
                "group.share.max.record.lock.duration.ms",
            ),
            (
                {
                    "group.share.heartbeat.interval.ms": "15000",
                    "group.share.min.session.timeout.ms": "10000",
                    "group.share.session.timeout.ms": "12000",
                },
                "group.share.heartbeat.interval.ms must be less than group.share.session.timeout.ms",
            ),
            (
                {
                    "group.share.min.session.timeout.ms": "50000",
                    "group.share.max.session.timeout.ms": "40000",
                },
                "group.share.max.session.timeout.ms must be greater than or equal to group.share.min.session.timeout.ms",
            ),
            (
                {"group.share.heartbeat.interval.ms": "4000"},
                "group.share.heartbeat.interval.ms must be greater than or equal to "
                "group.share.min.heartbeat.interval.ms",
            ),
            (
                {"group.share.max.share.sessions": "10", "group.share.max.size": "20"},
                "group.share.max.share.sessions must be greater than or equal to group.share.max.size",
            ),
            (
                {"group.consumer.session.timeout.ms": "70000"},
                "group.consumer.session.timeout.ms must be less than or equal to group.consumer.max.session.timeout.ms",
            ),
            (
                {"group.streams.num.standby.replicas": "3"},
                "group.streams.num.standby.replicas must be less than or equal to group.streams.max.standby.replicas",
            ),
            (
                {"group.share.assignors": "simple,simple"},
                "group.share.assignors must contain exactly one assignor",
            ),
        ],
    )
    def test_cross_key_rules(self, values: dict[str, str], rule: str) -> None:
        with pytest.raises(InvalidBrokerConfig) as raised:
            BrokerConfig.from_mapping(values)
        assert raised.value.rule == rule

    def test_consistent_overrides_are_accepted(self) -> None:
        config = BrokerConfig.from_mapping(
            {
                "group.share.min.record.lock.duration.ms": "1000",
                "group.share.record.lock.duration.ms": "2000",
                "group.share.min.session.timeout.ms": "6000",
                "group.share.session.timeout.ms": "6000",
                "group.share.min.heartbeat.interval.ms": "1000",
                "group.share.heartbeat.interval.ms": "1000",
                "group.share.assignors": "org.apache.kafka.coordinator.group.assignor.SimpleAssignor",
            }
        )
        assert config.group_share_record_lock_duration_ms == 2000

    def test_config_errors_are_typed(self) -> None:
        with pytest.raises(ConfigError) as raised:
            BrokerConfig.from_mapping({"nope": "1"})
        assert isinstance(raised.value, ValueError) and isinstance(raised.value, errors.ConfigError)
        assert raised.value.error_code == _codes.INVALID_CONFIG


class TestIsoDurations:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [
            ("PT1H", 3600),
            ("P1D", 86400),
            ("p1dt2h3m4s", 86400 + 7200 + 180 + 4),
            ("PT0.5S", 0.5),
            ("PT-0.5S", -0.5),
            ("-PT1M", -60),
            ("PT1H-30M", 1800),
            ("P0D", 0),
        ],
    )
    def test_java_duration_grammar(self, text: str, seconds: float) -> None:
        assert parse_iso8601_duration_ns(text) == int(seconds * 1_000_000_000)

    @pytest.mark.parametrize("text", ["", "P", "PT", "1H", "P1W", "P1Y", "PT1.1234567891S", "PT1H ", "P1DT"])
    def test_rejected(self, text: str) -> None:
        with pytest.raises(ValueError):
            parse_iso8601_duration_ns(text)


class TestAutoOffsetReset:
    def test_strategies(self) -> None:
        assert AutoOffsetReset.parse("latest") == AutoOffsetReset("latest")
        assert AutoOffsetReset.parse("earliest") == AutoOffsetReset("earliest")
        by_duration = AutoOffsetReset.parse("by_duration:PT1.5S")
        assert by_duration == AutoOffsetReset("by_duration", 1_500_000_000)
        assert by_duration.timestamp_ms(10_000) == 8_500

    @pytest.mark.parametrize(
        "text", ["LATEST", " latest", "none", "by_duration", "by_duration:", "by_duration:-PT1H"]
    )
    def test_invalid(self, text: str) -> None:
        with pytest.raises(ValueError):
            AutoOffsetReset.parse(text)


KAFKA_42 = BrokerConfig.from_mapping({"aioshare.kafka.version": "4.2"})


class TestGroupConfigs:
    def test_defaults_come_from_the_broker(self) -> None:
        broker = BrokerConfig.from_mapping({"group.share.record.lock.duration.ms": "20000"})
        configs = GroupConfigs(broker)
        assert configs.share_record_lock_duration_ms == 20000
        assert configs.share_auto_offset_reset == AutoOffsetReset("latest")
        assert configs.share_isolation_level is IsolationLevel.READ_UNCOMMITTED
        assert (configs.share_session_timeout_ms, configs.share_heartbeat_interval_ms) == (45000, 5000)
        assert (configs.consumer_session_timeout_ms, configs.consumer_heartbeat_interval_ms) == (45000, 5000)

    def test_overrides(self) -> None:
        configs = GroupConfigs(
            BrokerConfig(),
            {
                "share.auto.offset.reset": "by_duration:PT1H",
                "share.isolation.level": "read_committed",
                "share.record.lock.duration.ms": 15000,
                "share.session.timeout.ms": "50000",
                "share.heartbeat.interval.ms": "6000",
                "consumer.session.timeout.ms": "50000",
                "streams.num.standby.replicas": "1",
            },
        )
        assert configs.share_auto_offset_reset == AutoOffsetReset("by_duration", 3_600_000_000_000)
        assert configs.share_isolation_level is IsolationLevel.READ_COMMITTED
        assert configs.share_record_lock_duration_ms == 15000
        assert configs.share_session_timeout_ms == 50000

    @pytest.mark.parametrize(
        ("overrides", "key", "message"),
        [
            (
                {"share.delivery.count.limit": "3"},
                "share.delivery.count.limit",
                "Unknown group config name: share.delivery.count.limit",
            ),
            ({"group.share.max.size": "3"}, "group.share.max.size", None),
            (
                {"share.record.lock.duration.ms": "999"},
                "share.record.lock.duration.ms",
                "Invalid value 999 for configuration share.record.lock.duration.ms: Value must be at least 1000",
            ),
            (
                {"share.record.lock.duration.ms": "14999"},
                "share.record.lock.duration.ms",
                "share.record.lock.duration.ms must be greater than or equal to group.share.min.record.lock.duration.ms",
            ),
            (
                {"share.record.lock.duration.ms": "60001"},
                "share.record.lock.duration.ms",
                "share.record.lock.duration.ms must be less than or equal to group.share.max.record.lock.duration.ms",
            ),
            ({"share.session.timeout.ms": "44999"}, "share.session.timeout.ms", None),
            ({"share.heartbeat.interval.ms": "15001"}, "share.heartbeat.interval.ms", None),
            ({"consumer.heartbeat.interval.ms": "4999"}, "consumer.heartbeat.interval.ms", None),
            (
                {"share.isolation.level": "serializable"},
                "share.isolation.level",
                "Invalid value serializable for configuration share.isolation.level: "
                "String must be one of: read_committed, read_uncommitted",
            ),
            (
                {"share.auto.offset.reset": "by_duration:1h"},
                "share.auto.offset.reset",
                "Invalid value by_duration:1h for configuration share.auto.offset.reset: Invalid value "
                "`by_duration:1h` for configuration share.auto.offset.reset. The value must be either "
                "'earliest', 'latest' or of the format 'by_duration:<PnDTnHnMn.nS.>'.",
            ),
            ({"streams.num.standby.replicas": "3"}, "streams.num.standby.replicas", None),
        ],
    )
    def test_invalid(self, overrides: dict[str, str], key: str, message: str | None) -> None:
        # Kafka 4.2's names and messages (4.3 added per-group delivery limits, 4.4 reworded the
        # bounds: tests/broker/test_kafka_versions.py and tests/differential/test_versions.py).
        with pytest.raises(InvalidGroupConfig) as raised:
            GroupConfigs(KAFKA_42, overrides)
        assert raised.value.key == key
        assert raised.value.error_code == _codes.INVALID_CONFIG
        if message is not None:
            assert str(raised.value) == message

    def test_session_must_exceed_heartbeat(self) -> None:
        broker = BrokerConfig.from_mapping(
            {"group.share.max.heartbeat.interval.ms": "60000", "group.share.min.session.timeout.ms": "10000"}
        )
        with pytest.raises(InvalidGroupConfig) as raised:
            GroupConfigs(
                broker, {"share.heartbeat.interval.ms": "20000", "share.session.timeout.ms": "20000"}
            )
        assert (
            raised.value.rule == "share.session.timeout.ms must be greater than share.heartbeat.interval.ms"
        )

    def test_consumer_and_streams_names_are_valid_on_a_group(self) -> None:
        for name in (
            "consumer.session.timeout.ms",
            "consumer.heartbeat.interval.ms",
            "streams.session.timeout.ms",
        ):
            assert GroupConfigs.is_valid_name(name)
        assert not GroupConfigs.is_valid_name("share.acquire.mode")

    def test_incremental_changes(self) -> None:
        configs = GroupConfigs(BrokerConfig(), {"share.auto.offset.reset": "earliest"})
        changed = configs.with_changes({"share.isolation.level": "read_committed"})
        assert changed.overrides == {
            "share.auto.offset.reset": "earliest",
            "share.isolation.level": "read_committed",
        }
        reverted = changed.with_changes(delete=["share.auto.offset.reset"])
        assert reverted.overrides == {"share.isolation.level": "read_committed"}
        # Deleting a name that is not set (or not a config at all) changes nothing, and Kafka
        # answers it with NONE (tests/differential/test_versions.py).
        assert configs.with_changes(delete=["bogus"]).overrides == configs.overrides
        assert configs.overrides == {"share.auto.offset.reset": "earliest"}

    def test_describe(self) -> None:
        configs = GroupConfigs(BrokerConfig(), {"share.auto.offset.reset": "earliest"})
        rows = {row.name: row for row in configs.describe()}
        assert set(rows) == set(GroupConfigs.names())
        assert (rows["share.auto.offset.reset"].value, rows["share.auto.offset.reset"].is_default) == (
            "earliest",
            False,
        )
        assert rows["share.auto.offset.reset"].source is ConfigSource.GROUP_CONFIG
        default = rows["share.record.lock.duration.ms"]
        assert (default.value, default.is_default, default.read_only, default.source) == (
            "30000",
            True,
            False,
            ConfigSource.DEFAULT_CONFIG,
        )
        assert [row.name for row in configs.describe(["share.isolation.level", "unknown"])] == [
            "share.isolation.level"
        ]
