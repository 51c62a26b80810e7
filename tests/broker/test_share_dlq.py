"""KIP-1191's dead-letter queue in the embedded broker: which transitions dead-letter a record
(SharePartition) and what the writer puts on the DLQ topic. Compared with real Kafka 4.4.0 in
tests/differential/test_dlq.py."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from aioshare.broker.config_resources import AlterOp, ConfigChange
from aioshare.broker.embedded import EmbeddedBroker
from aioshare.broker.share_dlq import DeadLetterWriter
from aioshare.broker.share_partition import (
    CLIENT_REJECT,
    DELIVERY_COUNT_EXCEEDED,
    AckBatch,
    DeadLetter,
    SharePartition,
)
from aioshare.protocol.records import DecodedRecord, RecordToWrite, encode_batch, iter_batches
from aioshare.protocol.types import AckType, AcquireMode

LOCK_MS = 30_000


def partition(*, dlq: bool = True, limit: int = 2) -> SharePartition:
    sp = SharePartition(start_offset=0, max_in_flight_records=2000, max_delivery_count=limit)
    sp.set_group_limits(max_in_flight_records=2000, max_delivery_count=limit, dead_letter_queue=dlq)
    return sp


def acquire(sp: SharePartition, member: str, last: int, now: int = 0) -> None:
    offset = sp.next_fetch_offset()
    sp.acquire(
        member,
        [(n, n) for n in range(offset, last + 1)],
        max_records=500,
        batch_size=500,
        now_ms=now,
        lock_duration_ms=LOCK_MS,
        mode=AcquireMode.BATCH_OPTIMIZED,
    )


def ack(sp: SharePartition, member: str, first: int, last: int, ack_type: int) -> None:
    result = sp.acknowledge(member, [AckBatch(first, last, (ack_type,))], now_ms=0, lock_duration_ms=LOCK_MS)
    assert result.error_code == 0, result


def test_reject_and_exhausted_deliveries_are_dead_lettered() -> None:
    sp = partition()
    acquire(sp, "m", 3)
    ack(sp, "m", 0, 0, AckType.GAP)  # archived, not dead-lettered
    ack(sp, "m", 1, 1, AckType.REJECT)
    ack(sp, "m", 2, 3, AckType.RELEASE)
    assert sp.take_dead_letters() == [DeadLetter(1, 1, 1, CLIENT_REJECT)]
    assert sp.take_dead_letters() == []
    acquire(sp, "m", 3)
    ack(sp, "m", 2, 2, AckType.RELEASE)  # the second delivery was the last
    assert sp.take_dead_letters() == [DeadLetter(2, 2, 2, DELIVERY_COUNT_EXCEEDED)]
    sp.release_member("m")  # a closed share session releases 3 at the limit
    assert sp.take_dead_letters() == [DeadLetter(3, 3, 2, DELIVERY_COUNT_EXCEEDED)]


def test_lock_expiry_at_the_limit_is_dead_lettered() -> None:
    sp = partition()
    acquire(sp, "m", 1)
    ack(sp, "m", 0, 1, AckType.RELEASE)
    acquire(sp, "m", 1, now=10)
    sp.expire_locks(10 + LOCK_MS)
    assert sp.take_dead_letters() == [DeadLetter(0, 1, 2, DELIVERY_COUNT_EXCEEDED)]


def test_nothing_is_dead_lettered_without_a_dlq() -> None:
    sp = partition(dlq=False)
    acquire(sp, "m", 1)
    ack(sp, "m", 0, 0, AckType.REJECT)
    ack(sp, "m", 1, 1, AckType.RELEASE)
    acquire(sp, "m", 1)
    ack(sp, "m", 1, 1, AckType.RELEASE)
    assert sp.start_offset == 2  # both archived
    assert sp.take_dead_letters() == []


# ------------------------------------------------------------------ the writer


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker(config={"errors.deadletterqueue.auto.create.topics.enable": "true"}) as running:
        await running.create_topic("orders", 3)
        log = running.partition("orders", 2).log
        batch = encode_batch([RecordToWrite(f"k{n}".encode(), f"v{n}".encode()) for n in range(3)])
        log.append(batch, leader_epoch=0, now_ms=0)
        yield running


def set_group(broker: EmbeddedBroker, group: str, **configs: str) -> None:
    changes = [ConfigChange(name.replace("_", "."), AlterOp.SET, value) for name, value in configs.items()]
    broker.cluster.group_configs.alter(group, changes, False)


def dlq_records(broker: EmbeddedBroker, topic: str, index: int) -> list[DecodedRecord]:
    log = broker.partition(topic, index).log
    data = log.read(log.log_start_offset, 1 << 20).records
    return [record for batch in iter_batches(data) for record in batch.records()]


async def test_writer_appends_kafkas_headers_and_copies_the_record(broker: EmbeddedBroker) -> None:
    set_group(
        broker,
        "g",
        errors_deadletterqueue_topic_name="dlq.orders",
        errors_deadletterqueue_copy_record_enable="true",
    )
    writer = DeadLetterWriter(broker.cluster)
    assert writer.enabled("g") and not writer.enabled("other")
    source = broker.partition("orders", 2)
    writer.write("g", source, [DeadLetter(1, 2, 3, CLIENT_REJECT)])
    dlq = broker.cluster.topics.get("dlq.orders")
    assert dlq is not None and len(dlq.partitions) == 1  # num.partitions
    assert dlq.config("message.timestamp.type") == "CreateTime"
    records = dlq_records(broker, "dlq.orders", 0)
    assert [(r.key, r.value) for r in records] == [(b"k1", b"v1"), (b"k2", b"v2")]
    assert [dict(r.headers) for r in records][1] == {
        "__dlq.errors.topic": b"orders",
        "__dlq.errors.partition": b"2",
        "__dlq.errors.offset": b"2",
        "__dlq.errors.group": b"g",
        "__dlq.errors.delivery.count": b"3",
        "__dlq.errors.message": b"Offset rejected by client.",
    }


async def test_source_partition_picks_the_dlq_partition() -> None:
    config = {"errors.deadletterqueue.auto.create.topics.enable": "true", "num.partitions": "2"}
    async with EmbeddedBroker(config=config) as broker:
        await broker.create_topic("orders", 3)
        set_group(broker, "g", errors_deadletterqueue_topic_name="dlq.orders")
        writer = DeadLetterWriter(broker.cluster)
        for index in (1, 2):
            writer.write("g", broker.partition("orders", index), [DeadLetter(0, 0, 1, CLIENT_REJECT)])
        by_partition = [
            [dict(r.headers)["__dlq.errors.partition"] for r in dlq_records(broker, "dlq.orders", p)]
            for p in (0, 1)
        ]
    assert by_partition == [[b"2"], [b"1"]]  # source partition % DLQ partitions


@pytest.mark.parametrize(
    ("topic_name", "auto_create", "message"),
    [
        (
            "orders.dlq",
            True,
            "does not comply with the DLQ topic prefix in share group: g, topic: orders.dlq, prefix: dlq.",
        ),
        (
            "dlq.x",
            False,
            "DLQ topic does not exist and auto create is disabled on cluster for share group: g, topic: dlq.x.",
        ),
        ("orders", True, "DLQ is not enabled on configured DLQ topic for share group: g, topic: orders."),
    ],
)
async def test_refused_writes_are_logged(
    topic_name: str, auto_create: bool, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = {"errors.deadletterqueue.auto.create.topics.enable": str(auto_create).lower()}
    async with EmbeddedBroker(config=config) as broker:
        await broker.create_topic("orders", 1)
        set_group(broker, "g", errors_deadletterqueue_topic_name=topic_name)
        with caplog.at_level(logging.ERROR, "aioshare.broker.dlq"):
            DeadLetterWriter(broker.cluster).write(
                "g", broker.partition("orders", 0), [DeadLetter(0, 0, 1, CLIENT_REJECT)]
            )
        assert message in caplog.text
        assert broker.partition("orders", 0).log.log_end_offset == 0
        assert (broker.cluster.topics.get(topic_name) is None) == (topic_name != "orders")


async def test_no_dlq_before_kafka_44() -> None:
    async with EmbeddedBroker(kafka_version="4.3") as broker:
        assert not DeadLetterWriter(broker.cluster).enabled("g")
