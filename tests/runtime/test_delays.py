"""The app's one timer (heap + one task) on a manual clock, and the real loop clock."""

from __future__ import annotations

import asyncio
import logging

import pytest

from aioshare.runtime import LoopClock, ManualClock
from aioshare.runtime.delays import DelayBudget, Scheduler
from tests.kit import wait_until


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def timer(clock: ManualClock) -> Scheduler:
    scheduler = Scheduler(clock)
    scheduler.start()
    yield scheduler  # type: ignore[misc]
    await scheduler.close()


async def test_callbacks_fire_in_deadline_order_on_one_task(timer: Scheduler, clock: ManualClock) -> None:
    fired: list[str] = []
    for name, at in [("c", 30), ("a", 10), ("b", 20), ("a2", 10)]:
        timer.call_at(clock.now + at, lambda n=name: fired.append(n))
    tasks_before = len(asyncio.all_tasks())
    clock.advance(10)
    await wait_until(lambda: fired == ["a", "a2"])  # same deadline: insertion order
    clock.advance(25)
    await wait_until(lambda: fired == ["a", "a2", "b", "c"])
    assert len(asyncio.all_tasks()) == tasks_before  # no task per entry
    assert len(timer) == 0


async def test_an_earlier_entry_wakes_the_sleeping_timer(timer: Scheduler, clock: ManualClock) -> None:
    fired: list[str] = []
    timer.call_at(clock.now + 100, lambda: fired.append("late"))
    await wait_until(lambda: clock.waiting == 1)  # asleep until t+100
    timer.call_at(clock.now + 5, lambda: fired.append("early"))
    clock.advance(5)
    await wait_until(lambda: fired == ["early"])


async def test_cancelled_entries_never_fire_and_are_compacted(timer: Scheduler, clock: ManualClock) -> None:
    fired: list[int] = []
    handles = [timer.call_at(clock.now + 1 + i, lambda i=i: fired.append(i)) for i in range(200)]
    for h in handles[:150]:
        h.cancel()
        h.cancel()  # twice is once
    assert len(timer) == 50
    assert len(timer._heap) < 200  # compacted once cancelled entries outnumbered live ones
    clock.advance(1000)
    await wait_until(lambda: len(fired) == 50)
    assert fired == list(range(150, 200))


async def test_a_failing_callback_does_not_stop_the_timer(
    timer: Scheduler, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    fired: list[str] = []

    def broken() -> None:
        raise RuntimeError("bad callback")

    timer.call_at(clock.now + 1, broken)
    timer.call_at(clock.now + 1, lambda: fired.append("after"))
    with caplog.at_level(logging.ERROR):
        clock.advance(1)
        await wait_until(lambda: fired == ["after"])
    assert "timer callback failed" in caplog.text


async def test_loop_clock_waits_until_the_deadline_or_the_event() -> None:
    clock = LoopClock()
    event = asyncio.Event()
    start = clock.time()
    await clock.wait(event, start + 0.02)
    assert clock.time() - start >= 0.015
    event.set()
    await asyncio.wait_for(clock.wait(event, None), 1)


def test_delay_budget_bounds_and_refills() -> None:
    budget = DelayBudget(2)
    assert budget.take() and budget.take() and not budget.take()
    budget.give_back()
    assert budget.take()
    with pytest.raises(ValueError):
        DelayBudget(-1)
