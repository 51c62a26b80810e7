"""`aioshare produce TOPIC` through the real CLI, against an embedded broker; records read back."""

from __future__ import annotations

import asyncio
from typing import Any

from aioshare.testing.broker import ThreadedBroker

from ._cli import aioshare, assert_one_line_error, dead_address


async def _read(bootstrap: str, topic: str, partition: int) -> list[Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        records: list[Any] = []
        while len(records) < end:
            batch = await consumer.getmany(tp, timeout_ms=2000)
            records += batch.get(tp, [])
        return records
    finally:
        await consumer.stop()


def read(broker: ThreadedBroker, topic: str, partition: int = 0) -> list[Any]:
    return asyncio.run(asyncio.wait_for(_read(broker.bootstrap_servers, topic, partition), 30))


def test_lines_of_stdin(broker: ThreadedBroker) -> None:
    broker.call(lambda b: b.create_topic("lines", 1))
    result = aioshare("produce", "lines", "-b", broker.bootstrap_servers, stdin="first\nsecond\n\nfourth\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Produced 4 records to lines: partition 0 offsets 0-3.\n"
    assert [r.value for r in read(broker, "lines")] == [b"first", b"second", b"", b"fourth"]

    again = aioshare("produce", "lines", "-b", broker.bootstrap_servers, stdin="fifth")
    assert again.stdout == "Produced 1 record to lines: partition 0 offset 4.\n"


def test_count_key_partition_headers(broker: ThreadedBroker) -> None:
    broker.call(lambda b: b.create_topic("generated", 3))
    result = aioshare(
        "produce", "generated", "-b", broker.bootstrap_servers,
        "--count", "5", "--key", "k1", "--partition", "2", "--header", "source=cli", "--header", "try=1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Produced 5 records to generated: partition 2 offsets 0-4.\n"
    records = read(broker, "generated", 2)
    assert [r.value for r in records] == [f"message-{i}".encode() for i in range(5)]
    assert {r.key for r in records} == {b"k1"}
    assert [list(r.headers) for r in records[:1]] == [[("source", b"cli"), ("try", b"1")]]


def test_spread_over_partitions(broker: ThreadedBroker) -> None:
    broker.call(lambda b: b.create_topic("spread", 2))
    result = aioshare("produce", "spread", "--bootstrap-servers", broker.bootstrap_servers, "--count", "40")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Produced 40 records to spread: partition 0 offsets 0-")
    assert ", partition 1 offsets 0-" in result.stdout


def test_unknown_topic_is_not_created(broker: ThreadedBroker) -> None:
    b = broker.bootstrap_servers
    result = aioshare("produce", "missing", "-b", b, "--count", "1")
    assert_one_line_error(result, 1, "aioshare produce: error: unknown topic 'missing'")
    assert "missing" not in aioshare("topics", "list", "-b", b).stdout


def test_no_such_partition(broker: ThreadedBroker) -> None:
    broker.call(lambda b: b.create_topic("onepart", 1))
    result = aioshare(
        "produce", "onepart", "-b", broker.bootstrap_servers, "--count", "1", "--partition", "3"
    )
    assert_one_line_error(result, 1, "no partition 3")


def test_no_broker() -> None:
    dead = dead_address()
    result = aioshare("produce", "jobs", "-b", dead, "--timeout", "1", stdin="x\n")
    assert_one_line_error(result, 1, f"aioshare produce: error: cannot reach Kafka at {dead}")
