"""DescribeConfigs rows as Kafka writes them (tests/differential/test_configs_text.py compares
them with real Kafka 4.2.2 and 4.4.0): error messages, sensitive and null values, internal and
later-release broker configs, GROUP synonyms per release."""

from __future__ import annotations

from collections.abc import Sequence

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.client.connection import Connection
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.messages import DescribeConfigsRequest, DescribeConfigsResponse
from aioshare.protocol.types import ConfigSource

from .share_fetch_support import alter_group_config

TOPIC, BROKER, GROUP = 2, 4, 32
Result = DescribeConfigsResponse.DescribeConfigsResult


async def describe(
    broker: EmbeddedBroker, resource_type: int, name: str, keys: Sequence[str] | None = None
) -> Result:
    host, port = broker.address(broker.node_ids[0])
    connection = await Connection.open(host, port)
    try:
        response = await connection.send(
            DescribeConfigsRequest(
                resources=[
                    DescribeConfigsRequest.DescribeConfigsResource(
                        resource_type=resource_type,
                        resource_name=name,
                        configuration_keys=None if keys is None else list(keys),
                    )
                ],
                include_synonyms=True,
            ),
            response_type=DescribeConfigsResponse,
        )
    finally:
        await connection.close()
    (result,) = response.results
    return result


def synonyms(result: Result, name: str) -> list[tuple[str, str | None, int]]:
    (row,) = [c for c in result.configs if c.name == name]
    return [(s.name, s.value, s.source) for s in row.synonyms]


async def test_error_messages_are_kafkas() -> None:
    async with EmbeddedBroker() as broker:
        await broker.create_topic("t")
        found = await describe(broker, TOPIC, "t", ["retention.ms"])
        # Kafka leaves ErrorMessage at its default: "" (not null) on success...
        assert (found.error_code, found.error_message) == (ErrorCode.NONE, "")
        # ...and for a topic its metadata does not have.
        missing = await describe(broker, TOPIC, "missing")
        assert (missing.error_code, missing.error_message, missing.configs) == (
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
            "",
            [],
        )
        invalid = await describe(broker, TOPIC, "no good")
        # Topic.validate's words (CreateTopics words it otherwise).
        assert (invalid.error_code, invalid.error_message) == (
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            "Topic name is invalid: 'no good' contains one or more characters other than ASCII "
            "alphanumerics, '.', '_' and '-'",
        )
        empty = await describe(broker, TOPIC, "")
        assert (empty.error_code, empty.error_message) == (
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            "Topic name is invalid: the empty string is not allowed",
        )
        empty_group = await describe(broker, GROUP, "")
        assert (empty_group.error_code, empty_group.error_message) == (
            ErrorCode.INVALID_REQUEST,
            "Group name must not be empty",
        )


async def test_broker_rows_hide_secrets_null_defaults_and_internal_configs() -> None:
    async with EmbeddedBroker(config={"ssl.key.password": "secret"}) as broker:
        rows = await describe(broker, BROKER, str(broker.node_ids[0]))
        by_name = {c.name: c for c in rows.configs}
        password = by_name["ssl.key.password"]
        assert (password.value, password.is_sensitive, password.config_source) == (
            None,
            True,
            ConfigSource.STATIC_BROKER_CONFIG,
        )
        assert synonyms(rows, "ssl.key.password") == [
            ("ssl.key.password", None, ConfigSource.STATIC_BROKER_CONFIG),
            ("ssl.key.password", None, ConfigSource.DEFAULT_CONFIG),
        ]
        # Kafka's default is null: no value, no DEFAULT_CONFIG synonym.
        location = by_name["ssl.keystore.location"]
        assert (location.value, location.is_sensitive, location.synonyms) == (None, False, [])
        assert by_name["aioshare.scram.credentials"].is_sensitive
        for internal in ("group.share.enable", "group.share.persister.class.name"):
            assert internal not in by_name
        assert "group.share.max.share.sessions" in by_name


async def test_broker_configs_of_later_releases_are_not_listed_when_emulating_4_2() -> None:
    async with EmbeddedBroker(kafka_version="4.2") as broker:
        names = {c.name for c in (await describe(broker, BROKER, str(broker.node_ids[0]))).configs}
    assert "group.share.delivery.count.limit" in names
    assert "group.share.max.delivery.count.limit" not in names  # 4.3
    assert "errors.deadletterqueue.topic.name.prefix" not in names  # 4.4


async def test_group_synonyms_name_the_broker_config_from_4_3() -> None:
    config = {"group.share.session.timeout.ms": 50000}
    async with EmbeddedBroker(config=config) as broker:
        await alter_group_config(broker, "g", share_auto_offset_reset="earliest")
        rows = await describe(broker, GROUP, "g")
    assert synonyms(rows, "share.session.timeout.ms") == [
        ("group.share.session.timeout.ms", "50000", ConfigSource.STATIC_BROKER_CONFIG),
        ("group.share.session.timeout.ms", "45000", ConfigSource.DEFAULT_CONFIG),
    ]
    assert synonyms(rows, "share.record.lock.duration.ms") == [
        ("group.share.record.lock.duration.ms", "30000", ConfigSource.DEFAULT_CONFIG)
    ]
    # No broker config behind it: the group config's own default.
    assert synonyms(rows, "share.auto.offset.reset") == [
        ("share.auto.offset.reset", "earliest", ConfigSource.GROUP_CONFIG),
        ("share.auto.offset.reset", "latest", ConfigSource.DEFAULT_CONFIG),
    ]


async def test_group_synonyms_are_the_config_itself_in_4_2() -> None:
    config = {"group.share.session.timeout.ms": 50000}
    async with EmbeddedBroker(config=config, kafka_version="4.2") as broker:
        rows = await describe(broker, GROUP, "g")
    assert synonyms(rows, "share.session.timeout.ms") == [
        ("share.session.timeout.ms", "50000", ConfigSource.DEFAULT_CONFIG)
    ]
