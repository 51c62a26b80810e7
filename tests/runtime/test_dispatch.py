"""The dispatcher and the isolation of each job's context, on their own (no consumer)."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Hashable
from typing import Any

import pytest

from aioshare.runtime.dispatch import Dispatcher
from aioshare.runtime.isolation import isolated
from aioshare.runtime.jobs import Job
from tests.kit import wait_until

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


class Blocks:
    """Counts on_block / on_unblock calls."""

    def __init__(self) -> None:
        self.blocked = 0
        self.unblocked = 0

    def block(self) -> None:
        self.blocked += 1

    def unblock(self) -> None:
        self.unblocked += 1


# ------------------------------------------------------------------------------ isolated()


async def test_isolated_runs_each_step_in_its_own_context() -> None:
    seen: list[str | None] = []

    async def job() -> None:
        request_id.set("job")
        await asyncio.sleep(0)
        seen.append(request_id.get())  # still its own, after a suspension
        task = asyncio.create_task(asyncio.sleep(0, request_id.get()))
        seen.append(await task)  # a task it starts copies its context

    blocks = Blocks()
    request_id.set("outer")
    await isolated(job(), contextvars.copy_context(), blocks.block, blocks.unblock)
    assert seen == ["job", "job"]
    assert request_id.get() == "outer"
    assert (blocks.blocked, blocks.unblocked) == (1, 1)


async def test_isolated_reports_no_block_for_a_coroutine_that_never_waits() -> None:
    blocks = Blocks()
    done: list[bool] = []

    async def fast() -> None:
        done.append(True)

    await isolated(fast(), contextvars.copy_context(), blocks.block, blocks.unblock)
    assert done == [True] and (blocks.blocked, blocks.unblocked) == (0, 0)


async def test_isolated_passes_exceptions_out_and_reports_the_end_of_a_block() -> None:
    blocks = Blocks()

    async def failing() -> None:
        await asyncio.sleep(0)
        raise ValueError("handler bug")

    with pytest.raises(ValueError, match="handler bug"):
        await isolated(failing(), contextvars.copy_context(), blocks.block, blocks.unblock)
    assert (blocks.blocked, blocks.unblocked) == (1, 1)


async def test_timeouts_and_current_task_inside_isolated_are_the_awaiting_tasks() -> None:
    outcome: list[str] = []

    async def job(me: asyncio.Task[Any] | None) -> None:
        assert asyncio.current_task() is me
        try:
            async with asyncio.timeout(0.01):
                await asyncio.Event().wait()
        except TimeoutError:
            outcome.append("timed out")
        await asyncio.sleep(0)  # the task goes on normally after its timeout
        outcome.append("went on")

    async def worker() -> None:
        await isolated(job(asyncio.current_task()), contextvars.copy_context(), lambda: None, lambda: None)

    await asyncio.wait_for(worker(), 5)
    assert outcome == ["timed out", "went on"]


async def test_cancelling_the_awaiting_task_cancels_the_isolated_coroutine() -> None:
    cleaned = asyncio.Event()
    started = asyncio.Event()
    blocks = Blocks()

    async def job() -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            cleaned.set()

    task = asyncio.create_task(isolated(job(), contextvars.copy_context(), blocks.block, blocks.unblock))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned.is_set() and (blocks.blocked, blocks.unblocked) == (1, 1)


# ------------------------------------------------------------------------------ Dispatcher


def job(n: int, key: Hashable | None = None) -> Job:
    return Job([n], key)  # type: ignore[list-item]  # the dispatcher never looks inside


class Harness:
    """A dispatcher whose jobs are scripted: ``gates[n]`` holds job n until set."""

    def __init__(self, concurrency: int, prefetch: int = 0) -> None:
        self.started: list[int] = []
        self.finished: list[int] = []
        self.dropped: list[int] = []
        self.failures: list[BaseException] = []
        self.gates: dict[int, asyncio.Event] = {}
        self.seen_context: list[str | None] = []
        self.dispatcher = Dispatcher(
            "r",
            concurrency,
            run=self.run,
            drop=lambda j: self.dropped.append(j.messages[0]),  # type: ignore[arg-type]
            fail=self.failures.append,
            prefetch=prefetch,
        )

    async def run(self, j: Job) -> None:
        n: int = j.messages[0]  # type: ignore[assignment]
        self.seen_context.append(request_id.get())
        request_id.set(f"job {n}")
        self.started.append(n)
        gate = self.gates.get(n)
        if gate is not None:
            await gate.wait()
        self.finished.append(n)


async def test_jobs_that_never_wait_run_one_after_another_on_one_worker() -> None:
    h = Harness(concurrency=50)
    h.dispatcher.submit([job(n) for n in range(200)])
    await wait_until(lambda: len(h.finished) == 200)
    assert h.finished == list(range(200))
    assert h.dispatcher.workers == 1  # no task per job, and no worker woken for nothing
    assert h.seen_context == [None] * 200  # each job in a fresh copy of the route's context
    await h.dispatcher.drain(asyncio.get_running_loop().time())


async def test_jobs_that_wait_run_concurrency_at_a_time() -> None:
    h = Harness(concurrency=3)
    h.gates = {n: asyncio.Event() for n in range(7)}
    h.dispatcher.submit([job(n) for n in range(7)])
    await wait_until(lambda: h.started == [0, 1, 2])
    assert h.dispatcher.active == 3 and h.dispatcher.queued == 4 and h.dispatcher.slots.free == 0
    h.gates[1].set()
    await wait_until(lambda: h.started == [0, 1, 2, 3])
    for gate in h.gates.values():
        gate.set()
    await wait_until(lambda: len(h.finished) == 7)
    assert h.dispatcher.workers <= 3 and h.dispatcher.slots.free == 3
    await h.dispatcher.drain(asyncio.get_running_loop().time())


async def test_a_key_runs_one_job_at_a_time_in_order() -> None:
    h = Harness(concurrency=4)
    h.gates = {0: asyncio.Event()}
    h.dispatcher.submit([job(0, "k"), job(1, "k"), job(2, "other"), job(3, "k")])
    await wait_until(lambda: sorted(h.started) == [0, 2])
    assert h.dispatcher.slots.used == 1  # "k" holds one slot; its later jobs wait in its lane
    h.gates[0].set()
    await wait_until(lambda: len(h.finished) == 4)
    assert [n for n in h.finished if n != 2] == [0, 1, 3]
    await h.dispatcher.drain(asyncio.get_running_loop().time())


async def test_room_is_free_slots_plus_prefetch_minus_queued() -> None:
    h = Harness(concurrency=2, prefetch=3)
    assert await h.dispatcher.wait_room() == 5
    h.gates = {n: asyncio.Event() for n in range(5)}
    h.dispatcher.submit([job(n) for n in range(5)])
    await wait_until(lambda: h.started == [0, 1])
    waiting = asyncio.create_task(h.dispatcher.wait_room())
    await asyncio.sleep(0)
    assert not waiting.done()  # 0 free + 3 prefetch - 3 queued
    h.gates[0].set()
    assert await asyncio.wait_for(waiting, 5) == 1  # job 2 took the freed slot at once
    assert h.started == [0, 1, 2]
    for gate in h.gates.values():
        gate.set()
    await wait_until(lambda: len(h.finished) == 5)
    await h.dispatcher.drain(asyncio.get_running_loop().time())


async def test_drain_drops_queued_jobs_waits_then_cancels_running_ones() -> None:
    h = Harness(concurrency=2)
    h.gates = {n: asyncio.Event() for n in range(5)}
    h.dispatcher.submit([job(0), job(1, "k"), job(2), job(3, "k")])
    await wait_until(lambda: h.started == [0, 1])
    h.gates[0].set()  # ends during the drain's wait: not cancelled
    loop = asyncio.get_running_loop()
    await h.dispatcher.drain(loop.time() + 0.2)
    assert h.finished == [0]
    assert sorted(h.dropped) == [2, 3]  # never started (queued, or behind job 1 in its lane)
    assert h.dispatcher.workers == 0 and h.dispatcher.slots.used == 0
    assert h.failures == []


async def test_a_bug_in_a_job_is_reported_and_the_worker_goes_on() -> None:
    h = Harness(concurrency=1)

    async def run(j: Job) -> None:
        n: int = j.messages[0]  # type: ignore[assignment]
        if n == 0:
            raise ZeroDivisionError("runtime bug")
        h.finished.append(n)

    h.dispatcher = Dispatcher("r", 1, run=run, drop=lambda j: None, fail=h.failures.append)
    h.dispatcher.submit([job(0), job(1)])
    await wait_until(lambda: h.finished == [1])
    assert [type(e) for e in h.failures] == [ZeroDivisionError]
    await h.dispatcher.drain(asyncio.get_running_loop().time())


async def test_a_job_that_cancels_its_worker_costs_that_worker_only() -> None:
    h = Harness(concurrency=1)

    async def run(j: Job) -> None:
        n: int = j.messages[0]  # type: ignore[assignment]
        if n == 0:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # a handler cancelling "its" task: the worker running it
            await asyncio.sleep(0)
        h.finished.append(n)

    h.dispatcher = Dispatcher("r", 1, run=run, drop=lambda j: None, fail=h.failures.append)
    h.dispatcher.submit([job(0), job(1)])
    await wait_until(lambda: h.finished == [1])  # a new worker took the next job
    assert h.failures == [] and h.dispatcher.slots.used == 0 and h.dispatcher.active == 0
    await h.dispatcher.drain(asyncio.get_running_loop().time())
