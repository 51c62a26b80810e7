"""Clients nobody here wrote, against EmbeddedBroker with one and three nodes: aiokafka,
confluent-kafka (librdkafka) and kafka-python. Every produced record must come back exactly
once and in order per partition."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

import confluent_kafka
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported without __all__
    AdminClient,
    ConfigResource,
    NewPartitions,
    NewTopic,
)
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaPythonTopicPartition
from kafka.admin import ConfigResource as KafkaPythonConfigResource
from kafka.admin import ConfigResourceType
from kafka.admin import NewTopic as KafkaPythonNewTopic

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.protocol.records import ControlType, RecordToWrite, encode_batch, transaction_marker

pytestmark = pytest.mark.interop

TIMEOUT = 60
PARTITIONS = 3
T = TypeVar("T")

Expected = dict[int, list[bytes]]


def expected_records(count: int, partitions: int = PARTITIONS) -> Expected:
    expected: Expected = defaultdict(list)
    for i in range(count):
        expected[i % partitions].append(f"p{i % partitions}-{i}".encode())
    return dict(expected)


def assert_exactly_once(got: dict[int, list[bytes]], expected: Expected) -> None:
    assert {p: len(v) for p, v in got.items() if v} == {p: len(v) for p, v in expected.items()}
    for partition, values in expected.items():
        assert got[partition] == values, f"partition {partition} differs"


async def in_thread(function: Callable[[], T]) -> T:
    async with asyncio.timeout(TIMEOUT):
        return await asyncio.to_thread(function)


async def consume_with_aiokafka(broker: EmbeddedBroker, topic: str, total: int) -> dict[int, list[bytes]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap_servers, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    got: dict[int, list[bytes]] = defaultdict(list)
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        async with asyncio.timeout(TIMEOUT):
            while sum(len(v) for v in got.values()) < total:
                batches = await consumer.getmany(timeout_ms=200)
                for tp, messages in batches.items():
                    for message in messages:
                        assert message.value is not None
                        got[tp.partition].append(message.value)
        # Nothing more than expected shows up either.
        extra = await consumer.getmany(timeout_ms=300)
        assert not any(extra.values())
    finally:
        await consumer.stop()
    return got


# --------------------------------------------------------------------------- aiokafka

AIOKAFKA_CASES = [
    pytest.param(0, None, False, id="acks0"),
    pytest.param(1, None, False, id="acks1"),
    pytest.param("all", None, True, id="all-idempotent"),
    pytest.param(1, "gzip", False, id="gzip"),
    pytest.param("all", "snappy", True, id="snappy-idempotent"),
    pytest.param(1, "lz4", False, id="lz4"),
    pytest.param("all", "zstd", True, id="zstd-idempotent"),
]


@pytest.mark.parametrize("nodes", [1, 3])
@pytest.mark.parametrize(("acks", "compression", "idempotent"), AIOKAFKA_CASES)
async def test_aiokafka_produce_and_consume(
    nodes: int, acks: Any, compression: str | None, idempotent: bool
) -> None:
    async with EmbeddedBroker(nodes=nodes) as broker:
        await broker.create_topic("events", partitions=PARTITIONS)
        expected = expected_records(300)
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap_servers,
            acks=acks,
            compression_type=compression,
            enable_idempotence=idempotent,
            linger_ms=5,
        )
        await producer.start()
        try:
            sent = []
            for partition, values in expected.items():
                for value in values:
                    sent.append(await producer.send("events", value, key=b"k", partition=partition))
            await producer.flush()
            metadata = await asyncio.gather(*sent)
        finally:
            await producer.stop()
        if acks != 0:
            offsets = defaultdict(list)
            for record in metadata:
                offsets[record.partition].append(record.offset)
            assert {p: o for p, o in offsets.items()} == {p: list(range(len(v))) for p, v in expected.items()}
        got = await consume_with_aiokafka(broker, "events", 300)
        assert_exactly_once(got, expected)


async def test_aiokafka_auto_creates_topics_and_lists_offsets() -> None:
    async with EmbeddedBroker(config={"num.partitions": PARTITIONS}) as broker:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
        await producer.start()
        try:
            for i in range(30):
                await producer.send_and_wait("fresh", f"v{i}".encode(), partition=i % PARTITIONS)
        finally:
            await producer.stop()
        assert len(broker.cluster.topics.get("fresh").partitions) == PARTITIONS  # type: ignore[union-attr]
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap_servers, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = [TopicPartition("fresh", p) for p in range(PARTITIONS)]
            consumer.assign(partitions)
            assert await consumer.end_offsets(partitions) == {tp: 10 for tp in partitions}
            assert await consumer.beginning_offsets(partitions) == {tp: 0 for tp in partitions}
            found = await consumer.offsets_for_times({partitions[0]: 0})
            assert found[partitions[0]] is not None and found[partitions[0]].offset == 0
            consumer.seek(partitions[1], 4)
            first = await consumer.getone(partitions[1])
            assert (first.offset, first.value) == (4, b"v13")
        finally:
            await consumer.stop()


async def test_aiokafka_idempotent_producer_survives_a_node_stop() -> None:
    async with EmbeddedBroker(nodes=3, config={"default.replication.factor": 3}) as broker:
        await broker.create_topic("events", partitions=PARTITIONS)
        expected = expected_records(600)
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            request_timeout_ms=5000,
            retry_backoff_ms=50,
        )
        await producer.start()
        try:
            pending = []
            victim = broker.partition("events", 0).leader
            for i in range(200):
                for partition in range(PARTITIONS):
                    pending.append(await producer.send("events", expected[partition][i], partition=partition))
                if i == 100:
                    await broker.stop_node(victim)
            await producer.flush()
            await asyncio.gather(*pending)
        finally:
            await producer.stop()
        assert broker.partition("events", 0).leader != victim
        got = await consume_with_aiokafka(broker, "events", 600)
        assert_exactly_once(got, expected)


async def test_aiokafka_read_committed_skips_aborted_records() -> None:
    async with EmbeddedBroker() as broker:
        await broker.create_topic("events")
        log = broker.partition("events", 0).log
        now = broker.cluster.now_ms()

        def txn_batch(pid: int, seq: int, *values: bytes) -> bytes:
            return encode_batch(
                [RecordToWrite(None, v) for v in values],
                producer_id=pid,
                producer_epoch=0,
                base_sequence=seq,
                transactional=True,
            )

        def marker(pid: int, control: ControlType) -> bytes:
            return encode_batch(
                [transaction_marker(control)],
                is_control=True,
                transactional=True,
                producer_id=pid,
                producer_epoch=0,
            )

        # Transactions are written straight into the log: no client can run one against a
        # broker without a transaction coordinator.
        for data in (
            encode_batch([RecordToWrite(None, b"before")]),
            txn_batch(1, 0, b"aborted-1", b"aborted-2"),
            txn_batch(2, 0, b"committed"),
            marker(1, ControlType.ABORT),
            marker(2, ControlType.COMMIT),
            encode_batch([RecordToWrite(None, b"after")]),
        ):
            log.append(data, leader_epoch=0, now_ms=now)
        results = {}
        for isolation in ("read_committed", "read_uncommitted"):
            consumer = AIOKafkaConsumer(
                bootstrap_servers=broker.bootstrap_servers,
                enable_auto_commit=False,
                isolation_level=isolation,
            )
            await consumer.start()
            try:
                tp = TopicPartition("events", 0)
                consumer.assign([tp])
                await consumer.seek_to_beginning(tp)
                seen: list[bytes] = []
                async with asyncio.timeout(TIMEOUT):
                    while not seen or seen[-1] != b"after":
                        for message in (await consumer.getmany(tp, timeout_ms=200)).get(tp, []):
                            seen.append(message.value)
                results[isolation] = seen
            finally:
                await consumer.stop()
        assert results["read_committed"] == [b"before", b"committed", b"after"]
        assert results["read_uncommitted"] == [b"before", b"aborted-1", b"aborted-2", b"committed", b"after"]


# --------------------------------------------------------------------------- confluent-kafka


def confluent_produce(bootstrap: str, topic: str, expected: Expected, **config: Any) -> None:
    errors: list[Any] = []
    delivered: list[tuple[int, int]] = []

    def on_delivery(error: Any, message: Any) -> None:
        if error is not None:
            errors.append(error)
        else:
            delivered.append((message.partition(), message.offset()))

    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **config})
    for partition, values in expected.items():
        for value in values:
            producer.produce(topic, value, partition=partition, on_delivery=on_delivery)
            producer.poll(0)
    assert producer.flush(TIMEOUT / 2) == 0
    assert errors == []
    assert sorted(delivered) == sorted((p, o) for p, v in expected.items() for o in range(len(v)))


def confluent_consume(bootstrap: str, topic: str, total: int) -> dict[int, list[bytes]]:
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False}
    )
    got: dict[int, list[bytes]] = defaultdict(list)
    try:
        consumer.assign(
            [
                confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                for p in range(PARTITIONS)
            ]
        )
        deadline = time.monotonic() + TIMEOUT / 2
        while sum(len(v) for v in got.values()) < total and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            assert message.error() is None, message.error()
            partition, value = message.partition(), message.value()
            assert partition is not None and value is not None
            got[partition].append(value)
    finally:
        consumer.close()
    return got


@pytest.mark.parametrize("nodes", [1, 3])
@pytest.mark.parametrize("compression", ["none", "lz4", "zstd"])
async def test_confluent_idempotent_producer_and_consumer(nodes: int, compression: str) -> None:
    async with EmbeddedBroker(nodes=nodes) as broker:
        await broker.create_topic("events", partitions=PARTITIONS)
        expected = expected_records(1000)
        bootstrap = broker.bootstrap_servers
        await in_thread(
            lambda: confluent_produce(
                bootstrap, "events", expected, **{"enable.idempotence": True, "compression.type": compression}
            )
        )
        got = await in_thread(lambda: confluent_consume(bootstrap, "events", 1000))
        assert_exactly_once(got, expected)
        # librdkafka reads on aiokafka's side too: the same data through another client.
        assert_exactly_once(await consume_with_aiokafka(broker, "events", 1000), expected)


async def test_confluent_producer_follows_a_leader_move() -> None:
    async with EmbeddedBroker(nodes=3) as broker:
        await broker.create_topic("events", partitions=PARTITIONS)
        bootstrap = broker.bootstrap_servers
        first, second = (
            expected_records(300),
            {p: [v + b"-2" for v in vs] for p, vs in expected_records(300).items()},
        )
        await in_thread(lambda: confluent_produce(bootstrap, "events", first, **{"enable.idempotence": True}))
        for partition in range(PARTITIONS):
            current = broker.partition("events", partition).leader
            await broker.move_leader(
                "events", partition, broker.node_ids[(broker.node_ids.index(current) + 1) % 3]
            )

        def produce_more() -> None:
            errors: list[Any] = []
            producer = confluent_kafka.Producer(
                {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
            )

            def on_delivery(error: Any, _message: Any) -> None:
                if error is not None:
                    errors.append(error)

            for partition, values in second.items():
                for value in values:
                    producer.produce("events", value, partition=partition, on_delivery=on_delivery)
            assert producer.flush(TIMEOUT / 2) == 0
            assert errors == []

        await in_thread(produce_more)
        got = await in_thread(lambda: confluent_consume(bootstrap, "events", 600))
        assert_exactly_once(got, {p: first[p] + second[p] for p in range(PARTITIONS)})


@pytest.mark.parametrize("nodes", [1, 3])
async def test_confluent_admin_client(nodes: int) -> None:
    async with EmbeddedBroker(nodes=nodes) as broker:
        bootstrap = broker.bootstrap_servers

        def admin_round_trip() -> None:
            admin = AdminClient({"bootstrap.servers": bootstrap})
            futures = admin.create_topics(
                [
                    NewTopic(
                        "orders",
                        num_partitions=4,
                        replication_factor=nodes,
                        config={"retention.ms": "3600000"},
                    ),
                    NewTopic("bad name", num_partitions=1, replication_factor=1),
                ],
                operation_timeout=10,
            )
            futures["orders"].result(TIMEOUT / 4)
            with pytest.raises(confluent_kafka.KafkaException) as info:
                futures["bad name"].result(TIMEOUT / 4)
            assert info.value.args[0].code() == confluent_kafka.KafkaError.TOPIC_EXCEPTION
            listed = admin.list_topics(timeout=10)
            assert "orders" in listed.topics and len(listed.topics["orders"].partitions) == 4
            assert sorted(listed.brokers) == broker.node_ids
            resource = ConfigResource("topic", "orders")
            configs = admin.describe_configs([resource])[resource].result(TIMEOUT / 4)
            assert configs["retention.ms"].value == "3600000" and not configs["retention.ms"].is_default
            assert configs["cleanup.policy"].value == "delete" and configs["cleanup.policy"].is_default
            admin.create_partitions([NewPartitions("orders", 6)])["orders"].result(TIMEOUT / 4)
            assert len(admin.list_topics(timeout=10).topics["orders"].partitions) == 6
            admin.delete_topics(["orders"], operation_timeout=10)["orders"].result(TIMEOUT / 4)
            assert "orders" not in admin.list_topics(timeout=10).topics

        await in_thread(admin_round_trip)
        assert broker.cluster.topics.get("orders") is None


# --------------------------------------------------------------------------- kafka-python


@pytest.mark.parametrize("nodes", [1, 3])
async def test_kafka_python_admin_client(nodes: int) -> None:
    async with EmbeddedBroker(nodes=nodes) as broker:
        bootstrap = broker.bootstrap_servers

        def admin_round_trip() -> None:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
            try:
                admin.create_topics(
                    [KafkaPythonNewTopic("orders", 2, 1, topic_configs={"cleanup.policy": "compact"})],
                    timeout_ms=10_000,
                )
                assert "orders" in admin.list_topics()
                described = admin.describe_configs(
                    [KafkaPythonConfigResource(ConfigResourceType.TOPIC, "orders")]
                )
                assert "compact" in repr(described)
                cluster = admin.describe_cluster()
                assert sorted(b["broker_id"] for b in cluster["brokers"]) == broker.node_ids
                admin.delete_topics(["orders"], timeout_ms=10_000)
                assert "orders" not in admin.list_topics()
            finally:
                admin.close()

        await in_thread(admin_round_trip)


@pytest.mark.parametrize("nodes", [1, 3])
async def test_kafka_python_producer_and_consumer(nodes: int) -> None:
    async with EmbeddedBroker(nodes=nodes) as broker:
        await broker.create_topic("events", partitions=PARTITIONS)
        bootstrap = broker.bootstrap_servers
        expected = expected_records(300)

        def produce() -> None:
            producer = KafkaProducer(
                bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, compression_type="gzip"
            )
            try:
                futures = [
                    producer.send("events", value, partition=partition)
                    for partition, values in expected.items()
                    for value in values
                ]
                producer.flush(TIMEOUT / 2)
                offsets = sorted((f.get(1).partition, f.get(1).offset) for f in futures)
                assert offsets == sorted((p, o) for p, v in expected.items() for o in range(len(v)))
            finally:
                producer.close()

        def consume() -> dict[int, list[bytes]]:
            consumer = KafkaConsumer(
                bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=2000
            )
            got: dict[int, list[bytes]] = defaultdict(list)
            try:
                consumer.assign([KafkaPythonTopicPartition("events", p) for p in range(PARTITIONS)])
                consumer.seek_to_beginning()
                for message in consumer:
                    got[message.partition].append(message.value)
            finally:
                consumer.close()
            return got

        await in_thread(produce)
        assert_exactly_once(await in_thread(consume), expected)
