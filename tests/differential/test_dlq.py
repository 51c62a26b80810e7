"""KIP-1191: the share groups' broker-side dead-letter queue (Kafka 4.4, share.version 2).

A group with ``errors.deadletterqueue.topic.name`` has the records it REJECTs, and those that run
out of deliveries, written to that topic by the share-partition leader, with ``__dlq.errors.*``
headers, before they are ARCHIVED. The scenarios run on the embedded broker (emulating 4.4) and
on a real Kafka 4.4.0 started for this module with DLQ topic auto-creation on
(``errors.deadletterqueue.auto.create.topics.enable``), and compare the DLQ topics' records.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.testing.kafka.cluster import KafkaCluster
from aioshare.testing.kafka.requirement import require
from tests.kit import wait_for

from .harness import (
    EMBEDDED,
    KAFKA_44,
    TIMEOUT,
    Member,
    Observations,
    Target,
    ack_summary,
    acquired,
    describe_offsets,
    embedded_broker,
    offsets_summary,
    run_everywhere,
)

GAP, ACCEPT, RELEASE, REJECT = 0, 1, 2, 3
DLQ_BROKER_CONFIG = {"errors.deadletterqueue.auto.create.topics.enable": "true"}


@pytest.fixture(scope="module")
def kafka_44_dlq() -> Iterator[dict[str, KafkaCluster]]:
    """Real Kafka 4.4.0 with DLQ topic auto-creation (not the session's clusters: a broker config)."""
    cluster = KafkaCluster("4.4.0", broker_config=DLQ_BROKER_CONFIG)
    require(cluster.start)
    try:
        yield {KAFKA_44: cluster}
    finally:
        cluster.stop()
        cluster.cleanup()


@pytest.fixture
async def dlq_broker() -> AsyncIterator[EmbeddedBroker]:
    async with embedded_broker(DLQ_BROKER_CONFIG, kafka_version="4.4") as running:
        yield running


async def read_topic(target: Target, topic: str, count: int) -> list[Any]:
    """The first `count` records of every partition of `topic` (waiting up to TIMEOUT for them)."""
    async with asyncio.timeout(TIMEOUT):
        # The broker creates the DLQ topic when it writes the first dead letter.
        while True:
            found = [t for t in await target.admin.list_topics() if t.name == topic]
            if found:
                break
            await asyncio.sleep(0.05)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=f"{target.host}:{target.port}", enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in range(found[0].partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        records: list[Any] = []
        async with asyncio.timeout(TIMEOUT):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(batch)
        return records
    finally:
        await consumer.stop()


def dlq_record(target: Target, record: Any, produced_at: tuple[int, int]) -> dict[str, Any]:
    """A DLQ record with the ids shaped: its timestamp is the write time, between the bounds."""
    headers = [(name, value.decode() if value is not None else None) for name, value in record.headers]
    return {
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key,
        "value": record.value,
        "headers": [(name, target.shape(value)) for name, value in headers],
        "timestamp type": record.timestamp_type,
        "timestamp at write time": produced_at[0] <= record.timestamp <= produced_at[1],
    }


async def dlq_group(target: Target, dlq: str, **configs: str) -> str:
    """A fresh group dead-lettering to `dlq` (shaped as <dlq>) with a delivery limit of 2."""
    target.names[dlq] = "<dlq>"
    settings = {"errors.deadletterqueue.topic.name": dlq, "share.delivery.count.limit": "2", **configs}
    return await target.group(**{name.replace(".", "_"): value for name, value in settings.items()})


async def dead_letters(target: Target, *, copy_record: bool) -> Observations:
    """REJECT one record, run another out of deliveries with RELEASEs, accept the rest."""
    obs = Observations()
    topic = await target.topic()
    dlq = f"dlq.diff-{uuid.uuid4().hex[:10]}"
    group = await dlq_group(target, dlq, errors_deadletterqueue_copy_record_enable=str(copy_record).lower())
    conn = await target.connect()
    written_after = now_ms()
    await target.produce(conn, topic, 4)
    member = Member(target, conn, group, "m1")
    await member.join([topic.name])
    obs.add("acquired", acquired(await member.fetch_until(topic, lambda r: bool(acquired(r)))))
    ack = await member.acknowledge(topic, {0: [(0, 0, [ACCEPT]), (1, 1, [REJECT]), (2, 3, [RELEASE])]})
    obs.add("accept 0, reject 1, release 2..3", ack_summary(target, ack))
    # Record 1's dead letter lands before record 2 can be dead-lettered. Kafka 4.4 persists the
    # start offset as it was before a DLQ write's own archive (SharePartition.
    # initiateDLQAndArchive), so when record 1's write (delayed by the DLQ topic's creation)
    # completed after record 2's, no later write carried start offset 2 and Kafka reported 1
    # for good (a CI run waited 10 s).
    await read_topic(target, dlq, 1)
    again = await member.fetch_until(topic, lambda r: bool(acquired(r)))
    obs.add("redelivered", acquired(again))
    ack = await member.acknowledge(topic, {0: [(2, 2, [RELEASE]), (3, 3, [ACCEPT])]})
    obs.add("release 2 at the limit, accept 3", ack_summary(target, ack))
    records = await read_topic(target, dlq, 2)
    # Kafka writes each dead letter asynchronously, and the first one waits for the topic to be
    # created: the two may land in either order. Compare them by source offset.
    seen = [dlq_record(target, r, (written_after, now_ms())) for r in records]
    obs.add("dlq offsets", sorted((r.pop("partition"), r.pop("offset")) for r in seen))
    obs.add("dlq records", sorted(seen, key=lambda r: dict(r["headers"])["__dlq.errors.offset"]))
    # Records 0 (accepted) and 1 (dead-lettered: its DLQ record was read above) are done.
    obs.add("offsets", await offsets_once_done(target, conn, group, topic.name, start_at_least=2))
    return obs


async def offsets_once_done(
    target: Target, conn: Any, group: str, topic: str, *, start_at_least: int
) -> list[Any]:
    """The group's offsets once no record is left to deliver (lag 0) and the start offset is
    past the records known to be done: Kafka 4.4 archives a dead-lettered record only when its
    asynchronous DLQ write completes, and persists the share state after that, so an answer
    taken at once may still show the state before.  Lag 0 alone was not enough: a CI run read
    start offset 1, lag 0, after record 1's dead letter had been read from the DLQ topic (the
    first DLQ write waits for the topic's creation, and may complete after the last ack)."""

    async def summary() -> list[Any]:
        return offsets_summary(target, await describe_offsets(conn, group, {topic: [0]}))

    def done(answer: list[Any]) -> bool:
        return all(
            p[5] == 0 and p[4] >= start_at_least for _group, _error, partitions in answer for p in partitions
        )

    try:
        return await wait_for(summary, done, timeout=10, interval=0.1)
    except AssertionError:
        return await summary()  # compared as it is: the difference shows in the assertion


def now_ms() -> int:
    return int(time.time() * 1000)


async def dead_letters_headers_only(target: Target) -> Observations:
    return await dead_letters(target, copy_record=False)


async def dead_letters_copied(target: Target) -> Observations:
    return await dead_letters(target, copy_record=True)


async def expiry_and_session_end(target: Target) -> Observations:
    """Deliveries used up by a lock expiry and by a closed share session are dead-lettered too;
    a GAP acknowledgement archives without dead-lettering."""
    obs = Observations()
    topic = await target.topic()
    dlq = f"dlq.diff-{uuid.uuid4().hex[:10]}"
    group = await dlq_group(target, dlq, share_record_lock_duration_ms="1000")
    conn = await target.connect()
    await target.produce(conn, topic, 4, per_batch=4)
    member = Member(target, conn, group, "m1")
    await member.join([topic.name])
    obs.add("delivery 1", acquired(await member.fetch_until(topic, lambda r: bool(acquired(r)))))
    await member.acknowledge(topic, {0: [(0, 3, [RELEASE])]})
    obs.add("delivery 2", acquired(await member.fetch_until(topic, lambda r: bool(acquired(r)))))
    obs.add("gap 0", ack_summary(target, await member.acknowledge(topic, {0: [(0, 0, [GAP])]})))
    # RELEASE 1 at the limit, and close the share session, which releases 2..3 at the limit.
    closed = await member.acknowledge(topic, {0: [(1, 1, [RELEASE])]}, epoch=-1)
    obs.add("release 1 and close the session", ack_summary(target, closed))
    records = await read_topic(target, dlq, 3)
    obs.add("dlq records", sorted(dlq_record(target, r, (0, now_ms()))["headers"] for r in records))
    return obs


async def lock_expiry(target: Target) -> Observations:
    obs = Observations()
    topic = await target.topic()
    dlq = f"dlq.diff-{uuid.uuid4().hex[:10]}"
    group = await dlq_group(target, dlq, share_record_lock_duration_ms="1000")
    conn = await target.connect()
    await target.produce(conn, topic, 1)
    member = Member(target, conn, group, "m1")
    await member.join([topic.name])
    obs.add("delivery 1", acquired(await member.fetch_until(topic, lambda r: bool(acquired(r)))))
    await member.acknowledge(topic, {0: [(0, 0, [RELEASE])]})
    obs.add("delivery 2", acquired(await member.fetch_until(topic, lambda r: bool(acquired(r)))))
    # Not acknowledged: the lock runs out at the delivery limit.
    records = await read_topic(target, dlq, 1)
    obs.add("dlq records", [dlq_record(target, r, (0, now_ms()))["headers"] for r in records])
    return obs


async def not_written(target: Target) -> Observations:
    """What the DLQ manager refuses: a name without the broker's prefix (dlq.), an existing topic
    that is not a DLQ topic. The records are archived all the same."""
    obs = Observations()
    existing = f"dlq.diff-{uuid.uuid4().hex[:10]}"
    await target.admin.create_topic(existing, 1)
    for case, dlq in (("without the prefix", f"diff-{uuid.uuid4().hex[:10]}"), ("not a DLQ topic", existing)):
        topic = await target.topic()
        group = await dlq_group(target, dlq)
        conn = await target.connect()
        await target.produce(conn, topic, 1)
        member = Member(target, conn, group, f"m-{case}")
        await member.join([topic.name])
        await member.fetch_until(topic, lambda r: bool(acquired(r)))
        obs.add(
            f"{case}: reject", ack_summary(target, await member.acknowledge(topic, {0: [(0, 0, [REJECT])]}))
        )
        # Archived all the same: the next record acquired is a new one.
        await target.produce(conn, topic, 1)
        obs.add(f"{case}: next", acquired(await member.fetch_until(topic, lambda r: bool(acquired(r)))))
        listed = {t.name: t.partitions for t in await target.admin.list_topics()}
        obs.add(f"{case}: dlq topic", listed.get(dlq))
    obs.add("the existing topic's records", await end_offset(target, existing))
    await target.admin.delete_topic(existing)
    return obs


async def end_offset(target: Target, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=f"{target.host}:{target.port}", group_id=None)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        return int((await consumer.end_offsets([partition]))[partition])
    finally:
        await consumer.stop()


def assert_embedded_like_44(results: Mapping[str, Observations]) -> None:
    for mine, theirs in zip(results[EMBEDDED].steps, results[KAFKA_44].steps, strict=True):
        assert mine == theirs, f"embedded: {mine}\nkafka-4.4.0: {theirs}"


async def test_dead_letters_with_headers(
    kafka_44_dlq: Mapping[str, KafkaCluster], dlq_broker: EmbeddedBroker
) -> None:
    results = await run_everywhere(dead_letters_headers_only, kafka_44_dlq, dlq_broker)
    assert_embedded_like_44(results)
    records = dict(results[KAFKA_44].steps)["dlq records"]
    assert [dict(r["headers"])["__dlq.errors.message"] for r in records] == [
        "Offset rejected by client.",
        "Offset delivery count exceeded the threshold.",
    ]


async def test_dead_letters_copy_the_record(
    kafka_44_dlq: Mapping[str, KafkaCluster], dlq_broker: EmbeddedBroker
) -> None:
    results = await run_everywhere(dead_letters_copied, kafka_44_dlq, dlq_broker)
    assert_embedded_like_44(results)
    assert [r["value"] for r in dict(results[KAFKA_44].steps)["dlq records"]] == [b"v1", b"v2"]


async def test_dead_letters_on_lock_expiry_and_session_end(
    kafka_44_dlq: Mapping[str, KafkaCluster], dlq_broker: EmbeddedBroker
) -> None:
    results = await run_everywhere(expiry_and_session_end, kafka_44_dlq, dlq_broker)
    assert_embedded_like_44(results)
    offsets = [dict(h)["__dlq.errors.offset"] for h in dict(results[KAFKA_44].steps)["dlq records"]]
    assert offsets == ["1", "2", "3"]
    results = await run_everywhere(lock_expiry, kafka_44_dlq, dlq_broker)
    assert_embedded_like_44(results)


async def test_refused_dead_letters_are_archived(
    kafka_44_dlq: Mapping[str, KafkaCluster], dlq_broker: EmbeddedBroker
) -> None:
    results = await run_everywhere(not_written, kafka_44_dlq, dlq_broker)
    assert_embedded_like_44(results)
    assert dict(results[KAFKA_44].steps)["without the prefix: dlq topic"] is None
    assert dict(results[KAFKA_44].steps)["the existing topic's records"] == 0
