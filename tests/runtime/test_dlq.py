"""The dead-letter producer against the embedded broker (Produce/Fetch; no share groups needed)."""

from __future__ import annotations

import asyncio

import pytest

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.runtime import KafkaDeadLetterSink, dead_letter_headers

from .kit import message_at


async def test_kafka_sink_produces_with_acks_all_and_keeps_the_record() -> None:
    aiokafka = pytest.importorskip("aiokafka")
    async with EmbeddedBroker() as broker:
        await broker.create_topic("jobs.dlq", 1)
        sink = KafkaDeadLetterSink(broker.bootstrap_servers)
        await sink.start()
        try:
            original = message_at("jobs", 42, partition=3, key=b"k")
            headers = dead_letter_headers(
                original, group_id="g", reason="exhausted", error=ValueError("nope")
            )
            await sink.send("jobs.dlq", key=b"k", value=b"payload", headers=headers, timeout=10)
        finally:
            await sink.close()
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=broker.bootstrap_servers, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tp = aiokafka.TopicPartition("jobs.dlq", 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            record = await asyncio.wait_for(consumer.getone(), 10)
        finally:
            await consumer.stop()
    assert (record.key, record.value) == (b"k", b"payload")
    got = {k: v.decode() for k, v in record.headers}
    assert got["aioshare.dlq.original.topic"] == "jobs"
    assert got["aioshare.dlq.original.partition"] == "3"
    assert got["aioshare.dlq.original.offset"] == "42"
    assert got["aioshare.dlq.delivery.count"] == "1"
    assert got["aioshare.dlq.reason"] == "exhausted"
    assert got["aioshare.dlq.exception.class"] == "builtins.ValueError"
    assert got["aioshare.dlq.exception.message"] == "nope"


async def test_kafka_sink_failure_is_raised_not_swallowed() -> None:
    async with EmbeddedBroker(config={"auto.create.topics.enable": "false"}) as broker:
        sink = KafkaDeadLetterSink(broker.bootstrap_servers, request_timeout_ms=1000)
        await sink.start()
        try:
            with pytest.raises(Exception):  # noqa: B017 -- any failure: the runtime then RELEASEs
                await sink.send("no.such.topic", key=None, value=b"x", headers=[], timeout=0.5)
        finally:
            await sink.close()


def test_kafka_sink_insists_on_acks_all() -> None:
    with pytest.raises(ValueError, match="acks"):
        KafkaDeadLetterSink("127.0.0.1:9092", acks=1)


async def test_unstarted_sink_refuses_to_send() -> None:
    sink = KafkaDeadLetterSink("127.0.0.1:9092")
    with pytest.raises(RuntimeError):
        await sink.send("t", key=None, value=None, headers=[], timeout=1)
    await sink.close()
