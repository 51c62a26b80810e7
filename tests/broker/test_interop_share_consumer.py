"""librdkafka's ShareConsumer (confluent-kafka) against EmbeddedBroker: ShareGroupHeartbeat,
ShareFetch and ShareAcknowledge as a client nobody here wrote drives them.

Consumers run in threads (their calls block), each bounded by a deadline; the event loop keeps
serving the broker meanwhile."""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import confluent_kafka
import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported without __all__
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from aioshare.broker.embedded import EmbeddedBroker
from tests.kit import wait_until

from .share_fetch_support import leader_of

pytestmark = pytest.mark.interop

TIMEOUT = 60.0
GROUP = "share-interop"
SHORT_LOCKS = {"group.share.min.record.lock.duration.ms": 1000, "group.share.record.lock.duration.ms": 1000}
T = TypeVar("T")

Delivery = tuple[int, int, int, bytes]  # partition, offset, delivery count, value


async def in_thread(function: Callable[[], T]) -> T:
    async with asyncio.timeout(TIMEOUT + 15):
        return await asyncio.to_thread(function)


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker() as running:
        yield running


async def earliest(broker: EmbeddedBroker, group: str = GROUP) -> None:
    """share.auto.offset.reset=earliest through librdkafka's IncrementalAlterConfigs (GROUP)."""

    def alter() -> None:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        resource = ConfigResource(
            ResourceType.GROUP,
            group,
            incremental_configs=[
                ConfigEntry(
                    "share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET
                )
            ],
        )
        for future in admin.incremental_alter_configs([resource]).values():
            future.result(TIMEOUT)

    await in_thread(alter)
    assert broker.cluster.group_configs.get(group).share_auto_offset_reset.kind == "earliest"


async def produce(
    broker: EmbeddedBroker, topic: str, count: int, partitions: int = 1, batch: int = 10_000
) -> None:
    def run() -> None:
        producer = confluent_kafka.Producer(
            {"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 5, "batch.num.messages": batch}
        )
        for n in range(count):
            producer.produce(topic, value=f"v{n}".encode(), partition=n % partitions)
        assert producer.flush(TIMEOUT) == 0

    await in_thread(run)


def share_consumer(broker: EmbeddedBroker, mode: str = "explicit", **extra: Any) -> Any:
    consumer = confluent_kafka.ShareConsumer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": GROUP,
            "share.acknowledgement.mode": mode,
            **extra,
        }
    )
    return consumer


def consume(
    consumer: Any,
    want: Callable[[list[Delivery]], bool],
    decide: Callable[[Any], int | None] = lambda message: 1,
    *,
    deadline: float,
) -> list[Delivery]:
    """Poll until `want(deliveries)`; `decide` returns the ack type per message (None: no ack)."""
    deliveries: list[Delivery] = []
    while not want(deliveries):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up with {len(deliveries)} deliveries")
        for message in consumer.poll(0.5):
            if message.error() is not None:
                raise AssertionError(message.error())
            deliveries.append(
                (message.partition(), message.offset(), message.delivery_count(), message.value())
            )
            ack_type = decide(message)
            if ack_type is not None:
                consumer.acknowledge(message, confluent_kafka.AcknowledgeType(ack_type))
    return deliveries


def share_state(broker: EmbeddedBroker, topic: str, partition: int = 0) -> Any:
    part = broker.partition(topic, partition)
    return leader_of(broker).cached(part.leader, GROUP, part)


async def test_every_record_is_delivered_once_in_explicit_mode(broker: EmbeddedBroker) -> None:
    await broker.create_topic("t", 3)
    await earliest(broker)
    await produce(broker, "t", 300, partitions=3)

    def run() -> list[Delivery]:
        consumer = share_consumer(broker)
        try:
            consumer.subscribe(["t"])
            got = consume(consumer, lambda d: len(d) >= 300, deadline=time.monotonic() + TIMEOUT)
            results = consumer.commit_sync(TIMEOUT)
            assert all(error is None for error in results.values()), results
            return got
        finally:
            consumer.close()

    deliveries = await in_thread(run)
    assert len(deliveries) == 300
    assert len({(p, o) for p, o, _c, _v in deliveries}) == 300
    assert {count for _p, _o, count, _v in deliveries} == {1}
    assert sorted(v for *_rest, v in deliveries) == sorted(f"v{n}".encode() for n in range(300))

    def finished(partition: int) -> bool:
        state = share_state(broker, "t", partition)
        return state is None or state.start_offset == 100

    for partition in range(3):
        await wait_until(lambda p=partition: finished(p), timeout=TIMEOUT)  # type: ignore[misc]


async def test_implicit_mode_accepts_everything_polled(broker: EmbeddedBroker) -> None:
    await broker.create_topic("t", 1)
    await earliest(broker)
    await produce(broker, "t", 50)

    def run() -> list[Delivery]:
        consumer = share_consumer(broker, "implicit")
        try:
            consumer.subscribe(["t"])
            got = consume(
                consumer, lambda d: len(d) >= 50, lambda m: None, deadline=time.monotonic() + TIMEOUT
            )
            consumer.commit_sync(TIMEOUT)
            return got
        finally:
            consumer.close()

    deliveries = await in_thread(run)
    assert sorted(o for _p, o, _c, _v in deliveries) == list(range(50))
    state = leader_of(broker).cluster.share_state
    # Everything was accepted: the persisted start offset is past the last record.
    await wait_until(
        lambda: any(getattr(state.read(key), "start_offset", -1) == 50 for key in state.keys(GROUP)),
        timeout=TIMEOUT,
    )


async def test_release_redelivers_with_delivery_count_two(broker: EmbeddedBroker) -> None:
    await broker.create_topic("t", 1)
    await earliest(broker)
    await produce(broker, "t", 10)
    release = confluent_kafka.AcknowledgeType.RELEASE
    accept = confluent_kafka.AcknowledgeType.ACCEPT

    def run() -> list[Delivery]:
        consumer = share_consumer(broker)
        try:
            consumer.subscribe(["t"])
            # Release every record on its first delivery, accept it on the second.
            got = consume(
                consumer,
                lambda d: sum(1 for entry in d if entry[2] == 2) >= 10,
                lambda m: int(release) if m.delivery_count() == 1 else int(accept),
                deadline=time.monotonic() + TIMEOUT,
            )
            consumer.commit_sync(TIMEOUT)
            return got
        finally:
            consumer.close()

    deliveries = await in_thread(run)
    counts = Counter(o for _p, o, _c, _v in deliveries)
    assert counts == Counter({offset: 2 for offset in range(10)})
    assert sorted(c for _p, _o, c, _v in deliveries) == [1] * 10 + [2] * 10


async def test_reject_is_never_redelivered(broker: EmbeddedBroker) -> None:
    await broker.create_topic("t", 1)
    await earliest(broker)
    await produce(broker, "t", 20)
    reject = confluent_kafka.AcknowledgeType.REJECT

    def run() -> list[Delivery]:
        consumer = share_consumer(broker)
        try:
            consumer.subscribe(["t"])
            got = consume(
                consumer,
                lambda d: len(d) >= 20,
                lambda m: int(reject) if m.offset() % 2 else 1,
                deadline=time.monotonic() + TIMEOUT,
            )
            consumer.commit_sync(TIMEOUT)
            # Nothing comes back: poll a few more times (each poll waits on the broker).
            extra: list[Delivery] = []
            for _ in range(3):
                extra += [
                    (m.partition(), m.offset(), m.delivery_count(), m.value()) for m in consumer.poll(0.3)
                ]
            assert extra == []
            return got
        finally:
            consumer.close()

    deliveries = await in_thread(run)
    assert sorted(o for _p, o, _c, _v in deliveries) == list(range(20))
    await wait_until(lambda: (s := share_state(broker, "t")) is None or s.start_offset == 20, timeout=TIMEOUT)


async def test_unacknowledged_records_come_back_after_the_lock_expires() -> None:
    async with EmbeddedBroker(config=SHORT_LOCKS) as broker:
        await broker.create_topic("t", 1)
        await earliest(broker)
        await produce(broker, "t", 5)

        def run() -> tuple[list[Delivery], list[Delivery]]:
            holder = share_consumer(broker)
            taker = share_consumer(broker)
            try:
                holder.subscribe(["t"])
                # The holder takes the records and never acknowledges them.
                held = consume(
                    holder, lambda d: len(d) >= 5, lambda m: None, deadline=time.monotonic() + TIMEOUT
                )
                taker.subscribe(["t"])
                taken = consume(taker, lambda d: len(d) >= 5, deadline=time.monotonic() + TIMEOUT)
                taker.commit_sync(TIMEOUT)
                return held, taken
            finally:
                taker.close()
                holder.close()

        held, taken = await in_thread(run)
        assert sorted((o, c) for _p, o, c, _v in held) == [(o, 1) for o in range(5)]
        assert sorted((o, c) for _p, o, c, _v in taken) == [(o, 2) for o in range(5)]


async def test_delivery_count_limit_archives() -> None:
    config = {**SHORT_LOCKS, "group.share.delivery.count.limit": 2}
    async with EmbeddedBroker(config=config) as broker:
        await broker.create_topic("t", 1)
        await earliest(broker)
        await produce(broker, "t", 4)
        release = int(confluent_kafka.AcknowledgeType.RELEASE)

        def run() -> list[Delivery]:
            consumer = share_consumer(broker)
            try:
                consumer.subscribe(["t"])
                got = consume(
                    consumer, lambda d: len(d) >= 8, lambda m: release, deadline=time.monotonic() + TIMEOUT
                )
                consumer.commit_sync(TIMEOUT)
                for _ in range(3):
                    got += [
                        (m.partition(), m.offset(), m.delivery_count(), m.value()) for m in consumer.poll(0.3)
                    ]
                return got
            finally:
                consumer.close()

        deliveries = await in_thread(run)
        # Delivered twice (the limit), then archived on the second release.
        assert Counter(o for _p, o, _c, _v in deliveries) == Counter({o: 2 for o in range(4)})
        await wait_until(
            lambda: (s := share_state(broker, "t")) is None or s.start_offset == 4, timeout=TIMEOUT
        )


async def test_several_consumers_on_one_partition_never_share_a_record(broker: EmbeddedBroker) -> None:
    await broker.create_topic("t", 1)
    await earliest(broker)
    total = 600
    done: Counter[int] = Counter()
    deadline = time.monotonic() + TIMEOUT

    def run(name: str) -> list[Delivery]:
        consumer = share_consumer(broker, **{"client.id": name, "max.poll.records": "10"})
        try:
            consumer.subscribe(["t"])
            got: list[Delivery] = []
            while sum(done.values()) < total:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} gave up")
                for message in consumer.poll(0.2):
                    assert message.error() is None, message.error()
                    got.append(
                        (message.partition(), message.offset(), message.delivery_count(), message.value())
                    )
                    consumer.acknowledge(message)
                    done[message.offset()] += 1
            consumer.commit_sync(TIMEOUT)
            return got
        finally:
            consumer.close()

    consumers = [asyncio.ensure_future(in_thread(functools.partial(run, f"c{n}"))) for n in range(3)]
    # Produce once all three have a share session on the leader, so they compete for the
    # records (small log batches and small polls make them interleave).
    leader = leader_of(broker)
    node = broker.partition("t", 0).leader
    await wait_until(lambda: leader.sessions(node).session_count(GROUP) == 3, timeout=TIMEOUT)
    await produce(broker, "t", total, batch=10)
    results = await asyncio.gather(*consumers)
    everything = [entry for result in results for entry in result]
    # Each record went to exactly one consumer, once (locks never expired, all accepted).
    assert sorted(o for _p, o, _c, _v in everything) == list(range(total))
    assert {c for _p, _o, c, _v in everything} == {1}
    assert sum(1 for result in results if result) >= 2, [len(result) for result in results]


async def test_close_releases_what_was_not_acknowledged(broker: EmbeddedBroker) -> None:
    await broker.create_topic("t", 1)
    await earliest(broker)
    await produce(broker, "t", 10)

    def first() -> list[Delivery]:
        consumer = share_consumer(broker)
        try:
            consumer.subscribe(["t"])
            return consume(
                consumer,
                lambda d: len(d) >= 10,
                lambda m: 1 if m.offset() < 4 else None,
                deadline=time.monotonic() + TIMEOUT,
            )
        finally:
            # Acks of 0-3 go out with the final epoch; 4-9 are released with the session.
            consumer.close()

    def second() -> list[Delivery]:
        consumer = share_consumer(broker)
        try:
            consumer.subscribe(["t"])
            got = consume(consumer, lambda d: len(d) >= 6, deadline=time.monotonic() + TIMEOUT)
            consumer.commit_sync(TIMEOUT)
            return got
        finally:
            consumer.close()

    assert len(await in_thread(first)) == 10
    redelivered = await in_thread(second)
    # Released on close with the delivery count kept (Kafka 4.2+, KAFKA-19972): count 2.
    assert sorted((o, c) for _p, o, c, _v in redelivered) == [(o, 2) for o in range(4, 10)]
