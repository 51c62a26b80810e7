"""Slots, fetching only into free slots, several consumers, jobs builders, priorities.

The runtime runs the real ShareConsumer against the embedded broker.  What a consumer
acquired is the broker's own count (``kafka.share_records``): the rule under test is that a
route acquires no more records than its handler slots (and ``prefetch``) can take.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import operator

import pytest

from aioshare.protocol.types import RecordState
from aioshare.runtime import App, EventKind, Message, per_batch
from aioshare.runtime.limits import Limiter
from aioshare.testing import ThreadedBroker
from tests.kit import produce_one_batch, wait_until

from .kit import AppFactory, Ready, Recorder, Watch, applied_acks, settled_at_broker

# In Kafka's default acquire mode (batch_optimized) a ShareFetch's MaxRecords is soft: the
# broker acquires whole log batches, so a producer's batch is acquired whole whatever the free
# slots (the runtime's default: a bounded overshoot, kept alive, for 4x fewer fetches - see
# docs/runtime.md).  "auto" and "record_limit" must hold the route to exactly its slots.
ACQUIRE_MODES = [
    pytest.param("auto", id="auto"),
    pytest.param("record_limit", id="record_limit"),
]


def watched_app(kafka: ThreadedBroker, kafka_app: AppFactory, acquire_mode: str) -> tuple[App, Watch]:
    """An app whose consumers are watched, fetching in ``acquire_mode``."""
    watch = Watch(kafka)
    app = kafka_app(
        consumer_factory=watch, consumer_options={"acquire_mode": acquire_mode}, shutdown_timeout=0.5
    )
    return app, watch


async def sample_acquired(kafka: ThreadedBroker, group: str, topic: str, seen: list[int]) -> None:
    """Sample how many records the broker has acquired for ``group`` until cancelled (every
    10 ms: between the test's own checks, to catch a fetch that overshoots and settles back)."""
    while True:
        held = await kafka.share_records(group, topic)
        if held is not None:
            seen.append(held.counts()["acquired"])
        await asyncio.sleep(0.01)


async def acquired(kafka: ThreadedBroker, group: str, topic: str) -> int:
    held = await kafka.share_records(group, topic)
    return 0 if held is None else held.counts()["acquired"]


@pytest.mark.parametrize("acquire_mode", ACQUIRE_MODES)
async def test_concurrency_bounds_handlers_and_fetching_waits_for_a_free_slot(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, acquire_mode: str
) -> None:
    app, watch = watched_app(kafka, kafka_app, acquire_mode)
    gates: dict[int, asyncio.Event] = {}
    running: set[int] = set()
    most = 0

    @app.handler("jobs", group_id="g", concurrency=2, prefetch=0)
    async def handle(msg: Message[bytes]) -> None:
        nonlocal most
        running.add(msg.offset)
        most = max(most, len(running))
        gates[msg.offset] = asyncio.Event()
        await gates[msg.offset].wait()
        running.discard(msg.offset)

    await ready(app)
    await produce_one_batch(kafka.bootstrap_servers, "jobs", [b"%d" % i for i in range(5)])
    samples: list[int] = []
    async with app:
        (consumer,) = watch.consumers
        assert consumer.spec.max_in_flight == 2  # sized from the concurrency: no local backlog
        sampler = asyncio.create_task(sample_acquired(kafka, "g", "jobs", samples))
        try:
            await wait_until(lambda: len(running) == 2)
            runner = app.runners[0]
            # Both slots busy: the fetch loop waits for a slot, not inside getmany, and the
            # broker has handed out just the two records being handled.
            await wait_until(lambda: not consumer.in_getmany)
            assert (await acquired(kafka, "g", "jobs"), consumer.held) == (2, 2)
            calls = len(consumer.getmany_calls)
            gates[0].set()
            await wait_until(lambda: len(consumer.getmany_calls) > calls and len(running) == 2)
            assert consumer.getmany_calls[calls] == 1  # one free slot -> at most one record
            for offset in range(1, 5):
                await wait_until(functools.partial(operator.contains, gates, offset))
                gates[offset].set()
            await settled_at_broker(kafka, "g", "jobs", 5)
            assert runner.running_count == 0 and runner.held_count == 0
        finally:
            sampler.cancel()
    assert most == 2
    assert all(n is not None and n <= 2 for n in consumer.getmany_calls)
    assert samples and max(samples) <= 2


@pytest.mark.parametrize("acquire_mode", ACQUIRE_MODES)
async def test_several_consumers_share_the_route_slots(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, acquire_mode: str
) -> None:
    app, watch = watched_app(kafka, kafka_app, acquire_mode)
    gate = asyncio.Event()
    started = 0

    @app.handler("jobs", group_id="g", concurrency=4, consumers=2, prefetch=0)
    async def handle(msg: Message[bytes]) -> None:
        nonlocal started
        started += 1
        await gate.wait()

    await ready(app)
    await produce_one_batch(kafka.bootstrap_servers, "jobs", [b"x"] * 6)
    async with app:
        assert [c.spec.member_index for c in watch.consumers] == [0, 1]
        assert [c.spec.max_in_flight for c in watch.consumers] == [2, 2]
        await wait_until(lambda: started == 4)
        # Both members fetch from the one partition, each only into its share of the slots.
        assert await acquired(kafka, "g", "jobs") == 4
        assert [c.held for c in watch.consumers] == [2, 2]
        gate.set()
        await settled_at_broker(kafka, "g", "jobs", 6)
    assert all(c.closed and c.commits == 1 for c in watch.consumers)


def test_max_in_flight_follows_concurrency_jobs_and_consumers() -> None:
    app = App(consumer_factory=lambda spec: None)  # type: ignore[arg-type,return-value]

    async def handle(msgs: list[Message[bytes]]) -> None:
        pass

    app.handler("jobs", group_id="g", concurrency=10, consumers=3, jobs=per_batch(5))(handle)
    app.handler(
        "jobs", name="exact", group_id="g", concurrency=10, consumers=3, jobs=per_batch(5), prefetch=0
    )(handle)
    app.handler("jobs", name="ahead", group_id="g", concurrency=1, prefetch=3)(handle)
    from aioshare.runtime.member import max_in_flight_per_member

    default, exact, ahead = app.routes
    assert default.prefetch_jobs == 2  # a quarter of the concurrency (at least 1)
    assert max_in_flight_per_member(default) == 20  # ceil((10 + 2) * 5 / 3)
    assert max_in_flight_per_member(exact) == 17  # ceil(10 * 5 / 3)
    assert max_in_flight_per_member(ahead) == 4


@pytest.mark.parametrize("acquire_mode", ACQUIRE_MODES)
async def test_prefetched_jobs_start_as_slots_free_up_without_a_fetch(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder, acquire_mode: str
) -> None:
    app, watch = watched_app(kafka, kafka_app, acquire_mode)
    gates = {offset: asyncio.Event() for offset in range(6)}
    started: list[int] = []

    @app.handler("jobs", group_id="g", concurrency=2, prefetch=2)
    async def handle(msg: Message[bytes]) -> None:
        started.append(msg.offset)
        await gates[msg.offset].wait()

    await ready(app)
    await produce_one_batch(kafka.bootstrap_servers, "jobs", [b"x"] * 6)
    async with app:
        (consumer,) = watch.consumers
        assert consumer.spec.max_in_flight == 4
        runner = app.runners[0]
        await wait_until(lambda: started == [0, 1] and runner.held_count == 4)
        # Two running, two queued for a slot; the fetch loop waits for room, not in getmany.
        await wait_until(lambda: not consumer.in_getmany)
        assert (await acquired(kafka, "g", "jobs"), consumer.held) == (4, 4)
        assert runner.dispatcher.queued == 2
        calls = len(consumer.getmany_calls)
        gates[0].set()
        await wait_until(lambda: started == [0, 1, 2])
        # The freed slot took a queued job at once; the fetch that refills the queue asks
        # for what it lacks: 0 free slots + 2 prefetch - 1 still queued.
        await wait_until(lambda: len(consumer.getmany_calls) > calls)
        assert consumer.getmany_calls[calls] == 1
        for gate in gates.values():
            gate.set()
        await settled_at_broker(kafka, "g", "jobs", 6)
    assert recorder.outcome_counts() == {"accepted": 6}
    assert all(n is not None and n <= 4 for n in consumer.getmany_calls)


async def test_prefetched_jobs_are_released_at_shutdown(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    watch = Watch(kafka)
    app = kafka_app(consumer_factory=watch)
    never = asyncio.Event()

    @app.handler("jobs", group_id="g", concurrency=1, prefetch=2)
    async def handle(msg: Message[bytes]) -> None:
        await never.wait()

    await ready(app)
    await kafka.produce("jobs", [b"x"] * 3, partition=0)
    async with app:
        runner = app.runners[0]
        await wait_until(lambda: runner.held_count == 3 and runner.running_count == 1)
        await app.stop(timeout=0)
    # Each record was delivered once and RELEASEd by the app before its consumer closed (not
    # left to a lock expiry or the session close): available again, its one delivery counted.
    (consumer,) = watch.consumers
    held = consumer.at_close
    assert held is not None
    assert [held.state_of(offset) for offset in range(3)] == [(RecordState.AVAILABLE, 1)] * 3
    assert applied_acks(recorder) == {("jobs", offset): ["release"] for offset in range(3)}
    assert sorted(e.reason or "" for e in recorder.kinds(EventKind.RELEASED)) == ["shutdown"] * 3


async def test_per_key_jobs_never_overlap_for_one_key(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready
) -> None:
    app = kafka_app()
    active: set[bytes] = set()
    overlaps: list[bytes] = []
    order: dict[bytes, list[int]] = {}
    gates: list[asyncio.Event] = []

    @app.handler("jobs", group_id="g", concurrency=4, jobs="per_key", max_messages_per_job=1)
    async def handle(msgs: list[Message[bytes]]) -> None:
        (msg,) = msgs
        key = msg.raw_key
        assert key is not None
        if key in active:
            overlaps.append(key)
        active.add(key)
        order.setdefault(key, []).append(msg.offset)
        gate = asyncio.Event()
        gates.append(gate)
        await gate.wait()
        active.discard(key)

    await ready(app)
    await kafka.produce(
        "jobs", [b"a0", b"b0", b"a1", b"a2", b"b1"], keys=[b"A", b"B", b"A", b"A", b"B"], partition=0
    )
    async with app:
        # One job per key runs; the other records of the key wait their turn (held, renewed).
        await wait_until(lambda: len(gates) == 2)
        assert active == {b"A", b"B"}
        while len(gates) < 5 or not all(g.is_set() for g in gates):
            for gate in gates:
                gate.set()
            await wait_until(lambda: len(gates) == 5 or any(not g.is_set() for g in gates))
        await settled_at_broker(kafka, "g", "jobs", 5)
    assert overlaps == []
    assert order == {b"A": [0, 2, 3], b"B": [1, 4]}


async def test_per_partition_jobs_keep_offset_order(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready
) -> None:
    app = kafka_app()
    batches: list[tuple[int, list[int]]] = []

    @app.handler("jobs", group_id="g", concurrency=2, jobs="per_partition", max_messages_per_job=2)
    async def handle(msgs: list[Message[bytes]]) -> None:
        assert len({m.partition for m in msgs}) == 1
        batches.append((msgs[0].partition, [m.offset for m in msgs]))

    await ready(app, partitions=2)
    await kafka.produce("jobs", [b"x"] * 3, partition=0)
    await kafka.produce("jobs", [b"y"] * 1, partition=1)
    async with app:
        await settled_at_broker(kafka, "g", "jobs", 3, partition=0)
        await settled_at_broker(kafka, "g", "jobs", 1, partition=1)
    by_partition: dict[int, list[int]] = {}
    for partition, offsets in batches:
        assert len(offsets) <= 2
        by_partition.setdefault(partition, []).extend(offsets)
    assert by_partition == {0: [0, 1, 2], 1: [0]}


async def test_custom_jobs_builder_cannot_drop_records(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()
    calls: list[list[bytes]] = []

    def only_evens(msgs: list[Message[bytes]]) -> list[list[Message[bytes]]]:
        return [[m for m in msgs if m.offset % 2 == 0]]  # forgets the odd ones

    @app.handler("jobs", group_id="g", jobs=only_evens, max_messages_per_job=4, concurrency=1)
    async def handle(msgs: list[Message[bytes]]) -> None:
        calls.append([m.value for m in msgs])

    await ready(app)
    await kafka.produce("jobs", [b"0", b"1", b"2", b"3"], partition=0)
    async with app:
        await settled_at_broker(kafka, "g", "jobs", 4)
    assert sorted(v for call in calls for v in call) == [b"0", b"1", b"2", b"3"]
    assert recorder.outcome_counts() == {"accepted": 4}


async def test_higher_priority_routes_get_freed_process_slots_first(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready
) -> None:
    app = kafka_app(max_concurrency=1)
    order: list[str] = []
    blocker = asyncio.Event()

    @app.handler("low", group_id="g-low", concurrency=5, priority=0)
    async def low(msg: Message[bytes]) -> None:
        order.append(f"low{msg.offset}")
        if msg.offset == 0:
            await blocker.wait()

    @app.handler("high", group_id="g-high", concurrency=5, priority=10)
    async def high(msg: Message[bytes]) -> None:
        order.append(f"high{msg.offset}")

    await ready(app)
    await kafka.produce("low", [b"x"] * 4, partition=0)
    async with app:
        by_name = {r.name: r for r in app.runners}
        await wait_until(lambda: order == ["low0"])
        limiter = by_name["low"].rt.global_limit
        assert limiter is not None
        # Each route queues its next job for a process slot (its later jobs wait behind it).
        await wait_until(lambda: limiter.waiting == 1)  # low1, queued first
        await kafka.produce("high", [b"y"] * 3, partition=0)
        await wait_until(lambda: limiter.waiting == 2)  # high0, queued second
        # Every high record is in (however the fetches split them) before the slot frees.
        await wait_until(lambda: by_name["high"].held_count == 3)
        blocker.set()
        await settled_at_broker(kafka, "g-low", "low", 4)
        await settled_at_broker(kafka, "g-high", "high", 3)
    assert order == ["low0", "high0", "high1", "high2", "low1", "low2", "low3"]


async def test_limiter_serves_waiters_by_priority_then_arrival() -> None:
    limiter = Limiter(1)
    assert limiter.try_acquire()
    got: list[str] = []

    async def take(name: str, priority: int) -> None:
        await limiter.acquire(priority)
        got.append(name)

    tasks = [asyncio.create_task(take(n, p)) for n, p in [("a", 0), ("b", 5), ("c", 0), ("d", 5)]]
    await wait_until(lambda: limiter.waiting == 4)
    for expected in (["b"], ["b", "d"], ["b", "d", "a"], ["b", "d", "a", "c"]):
        limiter.release()
        await wait_until(functools.partial(operator.eq, got, expected))
    await asyncio.gather(*tasks)
    assert limiter.used == 1


async def test_limiter_cancelled_waiter_gives_up_its_place() -> None:
    limiter = Limiter(1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire(3))
    await wait_until(lambda: limiter.waiting == 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.waiting == 0
    limiter.release()
    assert limiter.used == 0 and limiter.free == 1
    await asyncio.wait_for(limiter.wait_free(), 1)


async def test_a_context_variable_set_by_a_handler_never_reaches_the_next_job(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready
) -> None:
    # One worker runs every job in turn (concurrency 1); each job must still start from the
    # app's context, as it would in a task of its own.
    request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
    app = kafka_app()
    seen: list[str | None] = []

    @app.handler("jobs", group_id="g", concurrency=1)
    async def handle(msg: Message[bytes]) -> None:
        seen.append(request_id.get())
        request_id.set(msg.value.decode())

    await ready(app)
    await kafka.produce("jobs", [b"a", b"b", b"c"], partition=0)
    async with app:
        await settled_at_broker(kafka, "g", "jobs", 3)
    assert seen == [None, None, None]
