"""ShareConsumer modes and life cycle on real Apache Kafka: implicit acks, the delivery-count limit,
record_limit acquisition, a member SIGKILLed while holding records, close, subscription changes.

Delivery counts asserted here are what Kafka reports; where our embedded broker was found to
differ, the test says so.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sys
import textwrap

import pytest

from aioshare.share import Message, ShareConsumer, TopicPartition
from tests.kit import produce_one_batch

from .conftest import KafkaTarget
from .test_consumer_real_kafka import JOIN_TIMEOUT, consumer, nothing_left, take, wait_until

# Kafka's default group.share.delivery.count.limit (the tests' broker keeps it).
DELIVERY_LIMIT = 5


async def test_implicit_mode_accepts_what_the_application_took(kafka: KafkaTarget) -> None:
    topic = await kafka.new_topic(2)
    n = 200
    await kafka.produce(topic, [b"%d" % i for i in range(n)], partition=lambda i: i % 2)
    group = await kafka.new_group()
    seen: collections.Counter[tuple[int, int]] = collections.Counter()
    async with consumer(kafka, topic, group, ack_mode="implicit", max_poll_records=50) as c:
        async with asyncio.timeout(JOIN_TIMEOUT + 20):
            async for msg in c:
                seen[(msg.partition, msg.offset)] += 1
                if len(seen) == n:
                    break
        # The last message is accepted by commit(), as every earlier one was by the next __anext__.
        results = await c.commit()
        assert all(r is None for r in results.values()), results
    assert len(seen) == n and max(seen.values()) == 1
    await nothing_left(kafka, group, topic, 2)


async def test_delivery_count_limit_archives_the_record(kafka: KafkaTarget) -> None:
    topic = await kafka.new_topic()
    await kafka.produce(topic, [b"poison", b"fine"])
    group = await kafka.new_group()
    counts: list[int] = []
    async with consumer(kafka, topic, group) as c:
        poison, fine = sorted(await take(c, 2), key=lambda m: m.offset)
        fine.accept()
        counts.append(poison.delivery_count)
        poison.release()
        # Released DELIVERY_LIMIT - 1 more times: each comes back with one more delivery...
        while len(counts) < DELIVERY_LIMIT:
            (again,) = await take(c, 1)
            assert again.offset == poison.offset
            counts.append(again.delivery_count)
            again.release()
        assert all(r is None for r in (await c.commit()).values())
        # ...and the release of the last one archives it: it never comes back.
        assert await c.getmany(timeout=3.0) == []
    assert counts == list(range(1, DELIVERY_LIMIT + 1))
    await nothing_left(kafka, group, topic, 1)


async def test_record_limit_acquires_exactly_what_was_asked(kafka: KafkaTarget) -> None:
    topic = await kafka.new_topic()
    # One log batch of 20: batch_optimized would hand out the whole batch.
    await produce_one_batch(kafka.bootstrap, topic, [b"%d" % i for i in range(20)])
    group = await kafka.new_group()
    async with consumer(kafka, topic, group, acquire_mode="record_limit", max_poll_records=3) as c:
        first = await take(c, 3)
        # Held counts what Kafka acquired for this member: exactly MaxRecords, the batch split.
        assert c.held == 3
        assert [m.offset for m in first] == [0, 1, 2]
        for msg in first:
            msg.accept()
        rest: list[Message] = []
        async with asyncio.timeout(JOIN_TIMEOUT):
            while len(rest) < 17:
                got = await c.getmany(timeout=1.0)
                assert len(got) <= 3
                for msg in got:
                    msg.accept()
                rest.extend(got)
        assert [m.offset for m in rest] == list(range(3, 20))
        assert all(r is None for r in (await c.commit()).values())
    await nothing_left(kafka, group, topic, 1)


_HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from aioshare.share import ShareConsumer

    async def main(bootstrap, topic, group, n):
        async with ShareConsumer(topic, group_id=group, bootstrap_servers=bootstrap,
                                 ack_mode="explicit", max_poll_records=n) as c:
            held = []
            while len(held) < n:
                held += await c.getmany(max_records=n - len(held), timeout=1.0)
            print("holding", " ".join(f"{m.offset}:{m.delivery_count}" for m in held), flush=True)
            await asyncio.Event().wait()  # until SIGKILLed

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
    """
)


async def test_member_sigkilled_while_holding_records(kafka: KafkaTarget) -> None:
    """Kafka >= 4.2 keeps the delivery count when a member's session ends without acks.

    The records come back when the broker drops the dead connection's share session (or when
    their locks run out, whichever is first), and the survivor sees delivery count 2: Kafka 4.1
    decremented it (KAFKA-19972 changed that in 4.2), so a member that crashes on a poison record
    every time gets it archived at the limit instead of forever.
    """
    topic = await kafka.new_topic()
    n = 10
    await kafka.produce(topic, [b"%d" % i for i in range(n)])
    group = await kafka.new_group(**{"share.record.lock.duration.ms": "5000"})
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HOLDER,
        kafka.bootstrap,
        topic,
        group,
        str(n),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stderr is not None
    try:
        line = (await asyncio.wait_for(holder.stdout.readline(), JOIN_TIMEOUT)).decode()
        if not line.startswith("holding"):
            holder.kill()
            pytest.fail(f"holder said {line!r}; stderr: {(await holder.stderr.read()).decode()}")
        held = dict(tuple(map(int, pair.split(":"))) for pair in line.split()[1:])
        assert held == dict.fromkeys(range(n), 1)
    finally:
        if holder.returncode is None:
            os.kill(holder.pid, signal.SIGKILL)
        await holder.wait()
    async with consumer(kafka, topic, group) as survivor:
        back = await take(survivor, n, timeout=JOIN_TIMEOUT)
        assert sorted(m.offset for m in back) == list(range(n))
        assert {m.delivery_count for m in back} == {2}
        for msg in back:
            msg.accept()
        assert all(r is None for r in (await survivor.commit()).values())
    await nothing_left(kafka, group, topic, 1)


async def test_close_gives_held_records_back(kafka: KafkaTarget) -> None:
    topic = await kafka.new_topic()
    await kafka.produce(topic, [b"a", b"b", b"c", b"d"])
    group = await kafka.new_group()
    async with consumer(kafka, topic, group) as first:
        done, *unfinished = sorted(await take(first, 4), key=lambda m: m.offset)
        done.accept()
        results = await first.close()
        assert results == {TopicPartition(topic, 0): None}
    # What close() left unacknowledged is released by the session's end: another member gets it
    # at once (no lock to wait out) with the delivery count Kafka kept.
    async with consumer(kafka, topic, group) as second:
        back = await take(second, 3, timeout=JOIN_TIMEOUT)
        assert sorted(m.offset for m in back) == [m.offset for m in unfinished]
        assert {m.delivery_count for m in back} == {2}
        for msg in back:
            msg.accept()
        assert all(r is None for r in (await second.commit()).values())
    await nothing_left(kafka, group, topic, 1)


async def test_subscribe_and_unsubscribe(kafka: KafkaTarget) -> None:
    first_topic = await kafka.new_topic()
    second_topic = await kafka.new_topic()
    await kafka.produce(first_topic, [b"one"])
    await kafka.produce(second_topic, [b"two"])
    group = await kafka.new_group()
    async with consumer(kafka, first_topic, group) as c:
        (msg,) = await take(c, 1)
        assert (msg.topic, msg.value) == (first_topic, b"one")
        msg.accept()
        c.subscribe([second_topic])
        assert c.subscription() == frozenset({second_topic})
        await wait_until(lambda: {tp.topic for tp in c.assignment()} == {second_topic}, timeout=JOIN_TIMEOUT)
        (other,) = await take(c, 1)
        assert (other.topic, other.value) == (second_topic, b"two")
        other.accept()
        assert all(r is None for r in (await c.commit()).values())
        c.unsubscribe()
        await wait_until(lambda: not c.assignment(), timeout=JOIN_TIMEOUT)
        await kafka.produce(second_topic, [b"three"])
        assert await c.getmany(timeout=2.0) == []
    await nothing_left(kafka, group, first_topic, 1)


@pytest.mark.parametrize("ack_mode", ["explicit", "implicit"])
async def test_close_leaves_no_task(kafka: KafkaTarget, ack_mode: str) -> None:
    topic = await kafka.new_topic()
    await kafka.produce(topic, [b"x"])
    before = asyncio.all_tasks()
    c = ShareConsumer(
        topic, group_id=await kafka.new_group(), bootstrap_servers=kafka.bootstrap, ack_mode=ack_mode
    )  # type: ignore[arg-type]
    await c.start()
    (msg,) = await take(c, 1)
    msg.accept()
    await c.close()
    assert asyncio.all_tasks() - before == set()
