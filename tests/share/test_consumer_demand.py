"""Demand-driven fetching, counted: nothing hoarded, nothing archived unseen, no duplicate
without a named cause - on aioshare's embedded broker and on real Apache Kafka.

The scenarios are the ones that caught the capacity-driven consumer: several members
sharing one partition through ``getmany()`` (records handed out late came back as
duplicates), and a member whose application stopped asking (it kept re-acquiring the
group's records until Kafka archived them unprocessed).
"""

from __future__ import annotations

import asyncio
import collections

import pytest

from aioshare.admin import ShareAdmin
from aioshare.share import Message, ShareConsumer
from tests.kit import wait_until

from .consumer_clusters import EmbeddedCluster, RealKafkaCluster, new_group

Cluster = EmbeddedCluster | RealKafkaCluster


async def group_with_lock(cluster: Cluster, lock_ms: int) -> str:
    """A new group reading from the earliest offset with ``lock_ms`` acquisition locks."""
    group = new_group()
    async with ShareAdmin(cluster.bootstrap) as admin:
        await admin.alter_group_config(
            group, {"share.auto.offset.reset": "earliest", "share.record.lock.duration.ms": str(lock_ms)}
        )
    return group


def member(cluster: Cluster, topic: str, group: str, **kwargs: object) -> ShareConsumer:
    kwargs.setdefault("ack_mode", "explicit")
    kwargs.setdefault("fetch_max_wait", 0.1)
    return ShareConsumer(topic, group_id=group, bootstrap_servers=cluster.bootstrap, **kwargs)  # type: ignore[arg-type]


async def take(c: ShareConsumer, n: int, timeout: float = 30.0) -> list[Message]:  # noqa: ASYNC109
    out: list[Message] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            out.extend(await c.getmany(max_records=n - len(out), timeout=1.0))
    return out


async def test_members_sharing_a_partition_through_getmany_process_each_record_once(cluster: Cluster) -> None:
    """Four members, one partition, 2 s locks, ``getmany(max_records=100)`` and every record
    accepted at once: a record reaches an application while its lock is fresh, so none is
    acknowledged late and none comes back (the capacity-driven consumer duplicated 60-100
    of these 400 records)."""
    topic = "demand-shared"
    await cluster.create_topic(topic, 1)
    n, lock_ms = 400, 2000
    # Kafka acquires whole log batches: batches of 10 let all four members get a share.
    await cluster.produce(topic, [str(i).encode() for i in range(n)], batch_records=10)
    group = await group_with_lock(cluster, lock_ms)
    seen: collections.Counter[int] = collections.Counter()
    redelivered: list[Message] = []
    members = [member(cluster, topic, group) for _ in range(4)]

    async def work(c: ShareConsumer) -> None:
        while len(seen) < n:
            for msg in await c.getmany(max_records=100, timeout=0.5):
                seen[msg.offset] += 1
                if msg.delivery_count > 1:
                    redelivered.append(msg)
                msg.accept()

    try:
        for c in members:
            await c.start()
        async with asyncio.timeout(90):
            await asyncio.gather(*(work(c) for c in members))
        results = [await c.commit() for c in members]
    finally:
        for c in members:
            await c.close()
    assert set(seen) == set(range(n))
    assert [o for o, k in seen.items() if k > 1] == [], "records processed twice"
    assert redelivered == []
    assert all(r is None for res in results for r in res.values()), results


async def test_a_member_whose_application_stops_asking_gives_its_records_back(cluster: Cluster) -> None:
    """One member takes a batch and its application stops asking (the consumer stays open):
    it acquires at most the one batch it was fetching ahead, gives that back within a quarter
    of the lock, and the other member gets every remaining record, each with at most one
    delivery spent by the stall (the capacity-driven consumer kept re-acquiring them until
    Kafka archived 13 of 20 unseen)."""
    topic = "demand-stall"
    await cluster.create_topic(topic, 1)
    n, batch, lock_ms = 20, 5, 4000
    await cluster.produce(topic, [str(i).encode() for i in range(n)], batch_records=1)
    group = await group_with_lock(cluster, lock_ms)
    async with member(cluster, topic, group, max_poll_records=batch) as stalled:
        first = await take(stalled, batch)
        for msg in first:
            msg.accept()
        assert all(r is None for r in (await stalled.commit()).values())
        # The application asks no more.  Whatever was fetched ahead goes back unasked.
        await wait_until(lambda: stalled.held == 0, timeout=lock_ms / 1000)
        async with member(cluster, topic, group) as other:
            rest = await take(other, n - batch, timeout=60)
            for msg in rest:
                msg.accept()
            assert all(r is None for r in (await other.commit()).values())
            # Nothing more is acquired by the stalled member while the other works.
            assert stalled.held == 0
    assert sorted(m.offset for m in first + rest) == list(range(n))
    counts = collections.Counter(m.delivery_count for m in rest)
    assert set(counts) <= {1, 2}, counts
    assert counts[2] <= batch, f"the stall cost more than one batch a delivery: {counts}"


@pytest.mark.parametrize(
    ("n", "batch", "lock_ms", "work"),
    [
        pytest.param(20, 5, 2000, 0.05, id="small-batches"),
        # A run of up to QUICK_RUN records is served without the bookkeeping: 48 of them
        # here, 1.9 s of work against a 1.5 s stall window.
        pytest.param(100, 100, 6000, 0.04, id="runs"),
    ],
)
async def test_an_application_taking_records_one_by_one_is_never_taken_for_stalled(
    cluster: Cluster, n: int, batch: int, lock_ms: int, work: float
) -> None:
    """``async for`` with ``work`` seconds per record: the iterator is served from the
    buffer, never waiting, for longer than the stall window (a quarter of the lock), yet
    each record counts as the application asking - nothing is given back unasked and nothing
    comes back with a second delivery (found when the iterator's bookkeeping was skipped for
    every record served from the buffer; it may skip it only within
    demand.TOOK_ONE_RESOLUTION of the last record it counted)."""
    topic = f"demand-steady-{batch}"
    await cluster.create_topic(topic, 1)
    await cluster.produce(topic, [str(i).encode() for i in range(n)], batch_records=batch)
    group = await group_with_lock(cluster, lock_ms)
    seen: list[Message] = []
    async with member(cluster, topic, group, max_poll_records=batch) as c:
        async with asyncio.timeout(30):
            async for msg in c:
                seen.append(msg)
                msg.accept()
                if len(seen) == n:
                    break
                await asyncio.sleep(work)  # the application's work on the record
        assert all(r is None for r in (await c.commit()).values())
    assert sorted(m.offset for m in seen) == list(range(n))
    assert [(m.offset, m.delivery_count) for m in seen if m.delivery_count > 1] == []


async def test_records_reach_the_application_with_most_of_their_lock_left(cluster: Cluster) -> None:
    """A loop that accepts each record as it comes: fetching ahead keeps it busy without a
    buffer aging the locks; every record is handed out with at least 90% of its lock left -
    also once the loop, faster than a round trip, has the consumer fetch further ahead."""
    topic = "demand-fresh"
    await cluster.create_topic(topic, 3)
    n, lock_ms = 3000, 30_000
    await cluster.produce(topic, [str(i).encode() for i in range(n)], batch_records=50)
    group = await group_with_lock(cluster, lock_ms)
    loop = asyncio.get_running_loop()
    worst = 1.0
    got = furthest = 0
    async with member(cluster, topic, group, max_poll_records=200) as c:
        async with asyncio.timeout(60):
            async for msg in c:
                furthest = max(furthest, c.fetching_ahead)
                worst = min(worst, (msg.lock_expires_at - loop.time()) / (lock_ms / 1000))
                assert msg.delivery_count == 1
                msg.accept()
                got += 1
                if got == n:
                    break
        assert c.held <= 2 * 200
        assert all(r is None for r in (await c.commit()).values())
    assert worst >= 0.9, f"a record was handed out with {worst:.0%} of its lock left"
    assert furthest > 200, f"never fetched more than a batch ahead ({furthest})"


async def test_a_commit_after_the_last_record_does_not_wait_behind_a_long_poll(cluster: Cluster) -> None:
    """A loop that accepts each record and commits at the end: the fetch ahead sent after the
    last records must not long-poll (a request on the connection holds back the acks), nor
    may the fetch for a caller that is about to return with records.  With a 10 s
    ``fetch_max_wait`` either would hold the commit for seconds."""
    topic = "demand-commit"
    await cluster.create_topic(topic, 2)
    n = 1000
    await cluster.produce(topic, [str(i).encode() for i in range(n)], batch_records=50)
    group = await group_with_lock(cluster, 30_000)
    seen: set[tuple[int, int]] = set()
    async with member(cluster, topic, group, max_poll_records=100, fetch_max_wait=10.0) as c:
        async with asyncio.timeout(60):
            async for msg in c:
                seen.add((msg.partition, msg.offset))
                msg.accept()
                if len(seen) == n:
                    break
        async with asyncio.timeout(3):
            results = await c.commit()
        assert results and all(r is None for r in results.values()), results
    assert len(seen) == n


async def test_a_run_of_buffered_records_ends_at_once_when_the_consumer_closes(cluster: Cluster) -> None:
    """The iterator serves runs of buffered records without its bookkeeping (``__anext__``,
    ``QUICK_RUN``); ``close()`` ends a run at once: nothing is handed out after it, though
    most of the fetched batch still waits in the buffer."""
    topic = "demand-run-close"
    await cluster.create_topic(topic, 1)
    await cluster.produce(topic, [str(i).encode() for i in range(200)], batch_records=200)
    group = await group_with_lock(cluster, 30_000)
    async with member(cluster, topic, group, max_poll_records=200) as c:
        it = aiter(c)
        async with asyncio.timeout(30):
            got = [await anext(it) for _ in range(10)]
        assert [m.offset for m in got] == list(range(10))
        assert c.held == 200  # the rest of the batch is buffered
        for msg in got:
            msg.accept()
        await c.close()
        with pytest.raises(StopAsyncIteration):
            await anext(it)


async def test_getmany_between_runs_of_the_iterator_takes_the_next_records(cluster: Cluster) -> None:
    """``async for`` and ``getmany()`` on one consumer share the buffer: a getmany between
    the iterator's runs takes the records that follow, and the iterator goes on after them -
    each record once, in order."""
    topic = "demand-run-mixed"
    await cluster.create_topic(topic, 1)
    n = 300
    await cluster.produce(topic, [str(i).encode() for i in range(n)], batch_records=100)
    group = await group_with_lock(cluster, 30_000)
    seen: list[Message] = []
    async with member(cluster, topic, group, max_poll_records=100) as c:
        it = aiter(c)
        async with asyncio.timeout(30):
            while len(seen) < n:
                for _ in range(min(7, n - len(seen))):
                    seen.append(await anext(it))
                    seen[-1].accept()
                for msg in await c.getmany(max_records=min(11, n - len(seen)), timeout=1.0):
                    seen.append(msg)
                    msg.accept()
        assert all(r is None for r in (await c.commit()).values())
    assert [m.offset for m in seen] == list(range(n))
    assert {m.delivery_count for m in seen} == {1}
