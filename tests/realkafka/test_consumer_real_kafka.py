"""ShareConsumer end to end on real Apache Kafka, every tested version (see conftest.py).

The broker's bounds are set for tests (half-second heartbeats, locks from one second); each
scenario sets its group's lock through the ``share.record.lock.duration.ms`` group config.
"""

from __future__ import annotations

import asyncio
import collections

import pytest

from aioshare.protocol.errors import InvalidRecordStateError
from aioshare.share import LockExpiry, Message, ShareConsumer, TopicPartition
from tests.kit import wait_until

from .conftest import KafkaTarget

# Joining, the first (possibly empty) assignment and share-state initialisation take a few
# heartbeats on Kafka.
JOIN_TIMEOUT = 30.0
# Short enough to watch a lock run out, long enough for a loaded 2-core machine to ack in time.
SHORT_LOCK_MS = 4_000


def consumer(kafka: KafkaTarget, topic: str, group: str, **kwargs: object) -> ShareConsumer:
    kwargs.setdefault("ack_mode", "explicit")
    return ShareConsumer(topic, group_id=group, bootstrap_servers=kafka.bootstrap, **kwargs)  # type: ignore[arg-type]


async def take(c: ShareConsumer, n: int, timeout: float = JOIN_TIMEOUT) -> list[Message]:  # noqa: ASYNC109
    """Exactly ``n`` messages (fails the test if they do not arrive within ``timeout``)."""
    out: list[Message] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            out.extend(await c.getmany(max_records=n - len(out), timeout=1.0))
    return out


async def sleep_until(when: float) -> None:
    """Let the event-loop clock reach ``when``: the lock tests are about time passing."""
    delay = when - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


async def lag(kafka: KafkaTarget, group: str, topic: str) -> dict[int, int | None]:
    """The group's lag per partition of ``topic`` (DescribeShareGroupOffsets v1)."""
    offsets = await kafka.admin.describe_share_group_offsets(group, [topic])
    return {tp.partition: info.lag for tp, info in offsets.items() if info.error is None}


async def nothing_left(kafka: KafkaTarget, group: str, topic: str, partitions: int) -> None:
    """Wait until the group's lag is 0 on every partition; fails the test after 20 seconds.

    Lag, not the start offset: Kafka persists a share-partition's start offset with the state
    write that *follows* the one that finished its records, so after the last ACCEPT it still
    reads 0 (seen on 4.2.2 and 4.4.0), while the lag (log end - start - records finished in
    flight) is exact.
    """
    expected = dict.fromkeys(range(partitions), 0)
    got: dict[int, int | None] = {}
    try:
        async with asyncio.timeout(20):
            while (got := await lag(kafka, group, topic)) != expected:  # noqa: ASYNC110 -- broker state: no event to await
                await asyncio.sleep(0.2)
    except TimeoutError:
        pytest.fail(f"the group's lag stayed {got}, expected {expected}")


async def test_every_record_accepted_exactly_once(kafka: KafkaTarget) -> None:
    topic = await kafka.new_topic(3)
    n = 600
    await kafka.produce(topic, [f"job-{i}".encode() for i in range(n)], partition=lambda i: i % 3)
    group = await kafka.new_group()
    seen: collections.Counter[tuple[int, int]] = collections.Counter()
    async with consumer(kafka, topic, group, max_poll_records=100) as c:
        async with asyncio.timeout(JOIN_TIMEOUT + 30):
            async for msg in c:
                assert msg.delivery_count == 1
                seen[(msg.partition, msg.offset)] += 1
                msg.accept()
                if len(seen) == n:
                    break
        results = await c.commit()
        assert results and all(r is None for r in results.values()), results
        assert {tp.topic for tp in results} == {topic}
        assert max(seen.values()) == 1
        assert await c.getmany(timeout=2.0) == []
    assert sum(seen.values()) == n
    # Accepted is final for the whole group (Kafka persists acks before it answers them).
    await nothing_left(kafka, group, topic, 3)
    # ...and another member of the group gets nothing.
    async with consumer(kafka, topic, group) as again:
        assert await again.getmany(timeout=3.0) == []


async def test_release_redelivers_with_delivery_count_2(kafka: KafkaTarget) -> None:
    topic = await kafka.new_topic()
    await kafka.produce(topic, [b"a", b"b", b"c"])
    async with consumer(kafka, topic, await kafka.new_group()) as c:
        first = await take(c, 3)
        assert [m.delivery_count for m in first] == [1, 1, 1]
        for msg in first:
            msg.release()
        again = await take(c, 3)
        assert sorted(m.offset for m in again) == sorted(m.offset for m in first)
        assert {m.delivery_count for m in again} == {2}
        assert {m.value for m in again} == {b"a", b"b", b"c"}
        for msg in again:
            msg.accept()
        results = await c.commit()
        assert results == {TopicPartition(topic, 0): None}


async def test_reject_never_comes_back(kafka: KafkaTarget) -> None:
    topic = await kafka.new_topic()
    await kafka.produce(topic, [b"poison", b"ok"])
    group = await kafka.new_group()
    async with consumer(kafka, topic, group) as c:
        poison, ok = sorted(await take(c, 2), key=lambda m: m.offset)
        assert poison.value == b"poison"
        poison.reject()
        ok.accept()
        assert await c.commit() == {TopicPartition(topic, 0): None}
        # A rejected record is archived (terminal): nothing is left to deliver.  A released
        # or expired one would stay AVAILABLE and count in the lag.
        await nothing_left(kafka, group, topic, 1)
        assert await c.getmany(timeout=2.0) == []


async def test_unacknowledged_record_returns_after_lock_expiry(kafka: KafkaTarget) -> None:
    topic = await kafka.new_topic()
    await kafka.produce(topic, [b"slow"])
    group = await kafka.new_group(**{"share.record.lock.duration.ms": str(SHORT_LOCK_MS)})
    expired: list[LockExpiry] = []
    held_at_expiry: list[int] = []
    acks: list[tuple[dict[TopicPartition, set[int]], BaseException | None]] = []
    lock = SHORT_LOCK_MS / 1000

    def on_lock_expired(ranges: list[LockExpiry]) -> None:
        expired.extend(ranges)
        # Read here, not after the wait: Kafka's own lock runs out a few milliseconds after
        # ours, and the consumer may hold the record again by the time the test looks.
        held_at_expiry.append(c.held)

    async with consumer(
        kafka,
        topic,
        group,
        on_lock_expired=on_lock_expired,
        on_ack_commit=lambda offsets, exc: acks.append((dict(offsets), exc)),
    ) as c:
        (msg,) = await take(c, 1)
        assert c.acquisition_lock_timeout_ms == SHORT_LOCK_MS
        assert msg.lock_expires_at > asyncio.get_running_loop().time()
        await wait_until(lambda: expired, timeout=lock + 5)
        assert expired == [LockExpiry(TopicPartition(topic, 0), msg.offset, msg.offset)]
        assert held_at_expiry == [0]
        # The broker's lock started a little after ours (when it acquired): the record
        # comes back once the broker's timer fires, as a second delivery.
        (back,) = await take(c, 1, timeout=lock + 10)
        # Exactly 2: a 3 means the consumer let the second delivery's lock run out unseen
        # (the redelivery reached it before its own sweep of the first lock had run).
        assert (back.offset, back.delivery_count, back.value) == (msg.offset, 2, b"slow")
        msg.accept()  # too late: reported failed, never sent (it would hit the new delivery)
        back.accept()
        results = await c.commit()
        assert isinstance(results[TopicPartition(topic, 0)], InvalidRecordStateError)
    failed = [exc for _, exc in acks if exc is not None]
    assert len(failed) == 1 and isinstance(failed[0], InvalidRecordStateError)
    assert ({TopicPartition(topic, 0): {back.offset}}, None) in acks


async def test_four_consumers_share_one_partition(kafka: KafkaTarget) -> None:
    topic = await kafka.new_topic(1)
    n = 400
    # Ten records per log batch: Kafka acquires whole batches, so this is what lets four
    # members take turns on one partition.
    await kafka.produce(topic, [str(i).encode() for i in range(n)], records_per_batch=10)
    group = await kafka.new_group()
    counts: collections.Counter[int] = collections.Counter()
    per_member: collections.Counter[str] = collections.Counter()
    consumers = [consumer(kafka, topic, group, max_poll_records=10) for _ in range(4)]
    for c in consumers:
        await c.start()
    try:
        # Kafka's SimpleAssignor gives a partition to ceil(members / partitions) members:
        # all four.  Each member holds at most max_in_flight (= 10) records until it works.
        await wait_until(lambda: all(c.assignment() for c in consumers), timeout=JOIN_TIMEOUT)

        async def work(c: ShareConsumer) -> None:
            while sum(counts.values()) < n:
                for msg in await c.getmany(timeout=0.2):
                    counts[msg.offset] += 1
                    per_member[c.member_id] += 1
                    await asyncio.sleep(0.002)  # the "work": lets the other members run
                    msg.accept()

        async with asyncio.timeout(90):
            await asyncio.gather(*(work(c) for c in consumers))
        assert set(counts) == set(range(n))
        assert max(counts.values()) == 1, "a record was processed twice"
        assert len(per_member) == 4, f"not every member got work: {per_member}"
        for c in consumers:
            assert all(r is None for r in (await c.commit()).values())
    finally:
        for c in consumers:
            await c.close()


async def test_renew_extends_the_lock(kafka: KafkaTarget) -> None:
    topic = await kafka.new_topic()
    await kafka.produce(topic, [b"long job"])
    group = await kafka.new_group(**{"share.record.lock.duration.ms": str(SHORT_LOCK_MS)})
    expired: list[LockExpiry] = []
    async with consumer(kafka, topic, group, on_lock_expired=expired.extend) as c:
        (msg,) = await take(c, 1)
        first_deadline = msg.lock_expires_at
        # Renew late in the lock, so the new deadline is clearly past the first one.
        await sleep_until(first_deadline - 2.0)
        renewed = await msg.renew()  # every tested version serves RENEW (ShareFetch v2)
        assert renewed == msg.lock_expires_at
        assert renewed >= first_deadline + 1.5
        # Work on past the first deadline: without the renewal the broker would have
        # released the record and the ACCEPT below would fail with INVALID_RECORD_STATE.
        await sleep_until(first_deadline + 1.0)
        assert expired == []
        assert c.held == 1
        msg.accept()
        assert await c.commit() == {TopicPartition(topic, 0): None}
        assert await c.getmany(timeout=2.0) == []
