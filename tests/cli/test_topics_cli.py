"""`aioshare topics create|list|describe|delete` through the real CLI, against an embedded broker."""

from __future__ import annotations

from aioshare.testing.broker import ThreadedBroker

from ._cli import aioshare, assert_one_line_error, dead_address


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


def test_create_list_describe_delete(broker: ThreadedBroker) -> None:
    b = broker.bootstrap_servers
    created = aioshare(
        "topics", "create", "orders", "-b", b, "--partitions", "3", "--config", "retention.ms=60000"
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout == "Created topic 'orders' (3 partitions, replication factor 1).\n"

    listed = aioshare("topics", "list", "-b", b)
    assert listed.returncode == 0, listed.stderr
    assert ["orders", "3"] in rows(listed.stdout)

    described = aioshare("topics", "describe", "orders", "-b", b)
    assert described.returncode == 0, described.stderr
    lines = rows(described.stdout)
    assert ["Partitions:", "3"] in lines
    assert ["Replication", "factor:", "1"] in lines
    assert ["Configs:", "retention.ms=60000"] in lines
    assert ["PARTITION", "LEADER", "REPLICAS", "ISR"] in lines
    assert [["0", "1", "1", "1"], ["1", "1", "1", "1"], ["2", "1", "1", "1"]] == lines[-3:]

    deleted = aioshare("topics", "delete", "orders", "-b", b)
    assert (deleted.returncode, deleted.stdout) == (0, "Deleted topic 'orders'.\n"), deleted.stderr
    assert "orders" not in aioshare("topics", "list", "-b", b).stdout


def test_create_existing_topic_fails(broker: ThreadedBroker) -> None:
    b = broker.bootstrap_servers
    assert aioshare("topics", "create", "twice", "-b", b).returncode == 0
    result = aioshare("topics", "create", "twice", "-b", b)
    assert_one_line_error(result, 1, "aioshare topics: error:", "TOPIC_ALREADY_EXISTS")


def test_invalid_topic_config_fails(broker: ThreadedBroker) -> None:
    result = aioshare("topics", "create", "badconf", "-b", broker.bootstrap_servers, "--config", "no.such=1")
    assert_one_line_error(result, 1, "INVALID_CONFIG", "no.such")


def test_unknown_topics(broker: ThreadedBroker) -> None:
    b = broker.bootstrap_servers
    described = aioshare("topics", "describe", "nope", "-b", b)
    assert_one_line_error(described, 1, "unknown topic 'nope'")
    deleted = aioshare("topics", "delete", "nope", "-b", b)
    assert_one_line_error(deleted, 1, "topic 'nope'", "UNKNOWN_TOPIC_OR_PARTITION")


def test_list_empty_and_internal(broker: ThreadedBroker) -> None:
    result = aioshare("topics", "list", "-b", broker.bootstrap_servers, "--internal")
    assert result.returncode == 0, result.stderr
    assert rows(result.stdout)[0][0] in ("TOPIC", "No")


def test_no_broker() -> None:
    dead = dead_address()
    result = aioshare("topics", "describe", "x", "-b", dead, "--timeout", "1")
    assert_one_line_error(result, 1, f"aioshare topics: error: cannot reach Kafka at {dead}")
