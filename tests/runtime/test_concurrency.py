"""Slots, fetching only into free slots, several consumers, jobs builders, priorities."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable

import pytest

from aioshare.runtime import App, EventKind, Message, per_batch
from aioshare.runtime.limits import Limiter

from .fakes import FakeBroker, Recorder, wait_until

AppFactory = Callable[..., App]


async def test_concurrency_bounds_handlers_and_fetching_waits_for_a_free_slot(
    make_app: AppFactory, broker: FakeBroker
) -> None:
    app = make_app()
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

    recs = broker.produce("jobs", [b"%d" % i for i in range(5)])
    async with app:
        (consumer,) = broker.consumers
        assert consumer.spec.max_in_flight == 2  # sized from the concurrency: no local backlog
        await wait_until(lambda: len(running) == 2)
        runner = app.runners[0]
        # Both slots busy: the fetch loop waits for a slot, not inside getmany.
        await wait_until(lambda: not consumer.in_getmany)
        assert len(consumer.held) == 2 and [r.state for r in recs].count("acquired") == 2
        calls = len(consumer.getmany_calls)
        gates[0].set()
        await wait_until(lambda: len(consumer.getmany_calls) > calls and len(running) == 2)
        assert consumer.getmany_calls[calls] == 1  # one free slot -> at most one record
        for offset in range(1, 5):
            await wait_until(lambda o=offset: o in gates)
            gates[offset].set()
        await wait_until(lambda: broker.states()["acknowledged"] == 5)
        assert runner.running_count == 0 and runner.held_count == 0
    assert most == 2
    assert all(n is not None and n <= 2 for n in consumer.getmany_calls)


async def test_several_consumers_share_the_route_slots(make_app: AppFactory, broker: FakeBroker) -> None:
    app = make_app()
    gate = asyncio.Event()
    started = 0

    @app.handler("jobs", group_id="g", concurrency=4, consumers=2, prefetch=0)
    async def handle(msg: Message[bytes]) -> None:
        nonlocal started
        started += 1
        await gate.wait()

    broker.produce("jobs", [b"x"] * 6)
    async with app:
        assert [c.spec.member_index for c in broker.consumers] == [0, 1]
        assert [c.spec.max_in_flight for c in broker.consumers] == [2, 2]
        await wait_until(lambda: started == 4)
        assert [len(c.held) for c in broker.consumers] == [2, 2]
        gate.set()
        await wait_until(lambda: broker.states()["acknowledged"] == 6)
    assert all(c.closed and c.commits == 1 for c in broker.consumers)


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


async def test_prefetched_jobs_start_as_slots_free_up_without_a_fetch(
    make_app: AppFactory, broker: FakeBroker, recorder: Recorder
) -> None:
    app = make_app()
    gates = {offset: asyncio.Event() for offset in range(4)}
    started: list[int] = []

    @app.handler("jobs", group_id="g", concurrency=2, prefetch=2)
    async def handle(msg: Message[bytes]) -> None:
        started.append(msg.offset)
        await gates[msg.offset].wait()

    broker.produce("jobs", [b"x"] * 6)
    async with app:
        (consumer,) = broker.consumers
        assert consumer.spec.max_in_flight == 4
        await wait_until(lambda: started == [0, 1] and app.runners[0].held_count == 4)
        # Two running, two queued for a slot; the fetch loop waits for room, not in getmany.
        await wait_until(lambda: not consumer.in_getmany)
        assert app.runners[0].dispatcher.queued == 2 and len(consumer.held) == 4
        calls = len(consumer.getmany_calls)
        gates[0].set()
        await wait_until(lambda: started == [0, 1, 2])
        # The freed slot took a queued job at once; the fetch that refills the queue asks
        # for what it lacks: 0 free slots + 2 prefetch - 1 still queued.
        await wait_until(lambda: len(consumer.getmany_calls) > calls)
        assert consumer.getmany_calls[calls] == 1
        for gate in gates.values():
            gate.set()
        gates.update({offset: gates[0] for offset in range(4, 6)})
        await wait_until(lambda: broker.states()["acknowledged"] == 6)
    assert recorder.outcome_counts() == {"accepted": 6}


async def test_prefetched_jobs_are_released_at_shutdown(
    make_app: AppFactory, broker: FakeBroker, recorder: Recorder
) -> None:
    app = make_app()
    never = asyncio.Event()

    @app.handler("jobs", group_id="g", concurrency=1, prefetch=2)
    async def handle(msg: Message[bytes]) -> None:
        await never.wait()

    recs = broker.produce("jobs", [b"x"] * 3)
    async with app:
        await wait_until(lambda: app.runners[0].held_count == 3 and app.runners[0].running_count == 1)
        await app.stop(timeout=0)
    assert [r.history for r in recs] == [["acquired#1", "RELEASE"]] * 3
    assert sorted(e.reason or "" for e in recorder.kinds(EventKind.RELEASED)) == ["shutdown"] * 3


async def test_per_key_jobs_never_overlap_for_one_key(make_app: AppFactory, broker: FakeBroker) -> None:
    app = make_app()
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

    broker.produce("jobs", [b"a0", b"b0", b"a1", b"a2", b"b1"], keys=[b"A", b"B", b"A", b"A", b"B"])
    async with app:
        # One job per key runs; the other records of the key wait their turn (held, renewed).
        await wait_until(lambda: len(gates) == 2)
        assert active == {b"A", b"B"}
        done = lambda: broker.states()["acknowledged"] == 5  # noqa: E731
        while not done():
            for gate in gates:
                gate.set()
            await wait_until(lambda: done() or any(not g.is_set() for g in gates))
    assert overlaps == []
    assert order == {b"A": [0, 2, 3], b"B": [1, 4]}


async def test_per_partition_jobs_keep_offset_order(make_app: AppFactory, broker: FakeBroker) -> None:
    app = make_app()
    batches: list[tuple[int, list[int]]] = []

    @app.handler("jobs", group_id="g", concurrency=2, jobs="per_partition", max_messages_per_job=2)
    async def handle(msgs: list[Message[bytes]]) -> None:
        assert len({m.partition for m in msgs}) == 1
        batches.append((msgs[0].partition, [m.offset for m in msgs]))

    broker.produce("jobs", [b"x"] * 3, partition=0)
    broker.produce("jobs", [b"y"] * 1, partition=1)
    async with app:
        await wait_until(lambda: broker.states()["acknowledged"] == 4)
    by_partition: dict[int, list[int]] = {}
    for partition, offsets in batches:
        assert len(offsets) <= 2
        by_partition.setdefault(partition, []).extend(offsets)
    assert by_partition == {0: [0, 1, 2], 1: [0]}


async def test_custom_jobs_builder_cannot_drop_records(
    make_app: AppFactory, broker: FakeBroker, recorder: Recorder
) -> None:
    app = make_app()
    calls: list[list[bytes]] = []

    def only_evens(msgs: list[Message[bytes]]) -> list[list[Message[bytes]]]:
        return [[m for m in msgs if m.offset % 2 == 0]]  # forgets the odd ones

    @app.handler("jobs", group_id="g", jobs=only_evens, max_messages_per_job=4, concurrency=1)
    async def handle(msgs: list[Message[bytes]]) -> None:
        calls.append([m.value for m in msgs])

    broker.produce("jobs", [b"0", b"1", b"2", b"3"])
    async with app:
        await wait_until(lambda: broker.states()["acknowledged"] == 4)
    assert sorted(v for call in calls for v in call) == [b"0", b"1", b"2", b"3"]
    assert recorder.outcome_counts() == {"accepted": 4}


async def test_higher_priority_routes_get_freed_process_slots_first(
    make_app: AppFactory, broker: FakeBroker
) -> None:
    app = make_app(max_concurrency=1)
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

    broker.produce("low", [b"x"] * 4)
    async with app:
        await wait_until(lambda: order == ["low0"])
        limiter = app.runners[0].rt.global_limit
        assert limiter is not None
        # Each route queues its next job for a process slot (its later jobs wait behind it).
        await wait_until(lambda: limiter.waiting == 1)  # low1, queued first
        broker.produce("high", [b"y"] * 3)
        await wait_until(lambda: limiter.waiting == 2)  # high0, queued second
        blocker.set()
        await wait_until(lambda: broker.states()["acknowledged"] == 7)
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
        await wait_until(lambda e=expected: got == e)
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
    make_app: Callable[..., App], broker: FakeBroker
) -> None:
    # One worker runs every job in turn (concurrency 1); each job must still start from the
    # app's context, as it would in a task of its own.
    request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
    app = make_app()
    seen: list[str | None] = []

    @app.handler("jobs", group_id="g", concurrency=1)
    async def handle(msg: Message[bytes]) -> None:
        seen.append(request_id.get())
        request_id.set(msg.value.decode())

    broker.produce("jobs", [b"a", b"b", b"c"])
    async with app:
        await wait_until(lambda: broker.states()["acknowledged"] == 3)
    assert seen == [None, None, None]
