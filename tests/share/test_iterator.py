"""ConsumerIterator: the runs ``async for`` serves from the buffer itself, and everything else
handed to the consumer's ``__anext__``.  Compiled and as source (tests/test_compiled.py)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from aioshare.protocol.types import TopicIdPartition
from aioshare.share.buffer import ReadyBuffer
from aioshare.share.demand import Demand
from aioshare.share.iterator import ConsumerIterator
from aioshare.share.leases import LeaseTable
from aioshare.share.message import DeliveryContext, Message, detached_message

TP = TopicIdPartition(uuid.UUID(int=7), 0)
NOW = 100.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Consumer:
    """The consumer's side: what its __anext__ was asked, and what it answers."""

    def __init__(self, answers: list[Message | BaseException]) -> None:
        self.answers = answers
        self.calls = 0

    async def next_message(self) -> Message:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


CTX = DeliveryContext("jobs", TP, None, None, None)


def held(leases: LeaseTable, ready: ReadyBuffer, offsets: range, deadline: float = NOW + 30) -> list[int]:
    """Buffer ``offsets``, acquired with one lock until ``deadline``; returns the offsets."""
    leases.add_acquired(TP, offsets[0], offsets[-1], 1, deadline)
    ready.add(CTX, [(offset, 0, None, b"v", None) for offset in offsets], 1, deadline, None)
    return list(offsets)


def answer(offset: int) -> Message:
    """What the consumer's __anext__ returns in these tests: a message it served itself."""
    return detached_message(
        topic="jobs",
        tp=TP,
        offset=offset,
        key=None,
        value=b"v",
        headers=[],
        timestamp=0,
        delivery_count=1,
        lock_expires_at=NOW + 30,
    )


def setup(
    ready: ReadyBuffer, answers: list[Message | BaseException], leases: LeaseTable
) -> tuple[ConsumerIterator, Consumer, Demand, Clock]:
    demand = Demand()
    consumer = Consumer(answers)
    iterator = ConsumerIterator(ready, leases, demand, consumer.next_message)
    clock = Clock()
    iterator.clock = clock
    demand.fresh_until = NOW + 0.001
    return iterator, consumer, demand, clock


async def test_outside_a_run_every_record_comes_from_the_consumer() -> None:
    leases, ready = LeaseTable(), ReadyBuffer()
    held(leases, ready, range(3))
    iterator, consumer, _, _ = setup(ready, [answer(0)], leases)
    assert iterator.run == 0
    assert (await anext(iterator)).offset == 0
    assert consumer.calls == 1 and len(ready) == 3  # the iterator took nothing itself


async def test_a_run_serves_buffered_records_in_order_then_hands_back() -> None:
    leases, ready = LeaseTable(), ReadyBuffer()
    held(leases, ready, range(5))
    iterator, consumer, _, _ = setup(ready, [answer(3)], leases)
    iterator.run = 3
    served = [await anext(iterator) for _ in range(4)]
    assert [m.offset for m in served] == [0, 1, 2, 3]
    assert [m.lock_expires_at for m in served[:3]] == [NOW + 30] * 3
    assert consumer.calls == 1 and iterator.run == 0
    assert len(ready) == 2  # 3 and 4: the consumer's answer was stubbed


async def test_a_run_ends_once_demand_would_count_the_record() -> None:
    leases, ready = LeaseTable(), ReadyBuffer()
    held(leases, ready, range(4))
    iterator, consumer, demand, clock = setup(ready, [answer(1)], leases)
    iterator.run = 10
    assert (await anext(iterator)).offset == 0
    clock.now = demand.fresh_until + 0.001  # took_one would change something now
    assert (await anext(iterator)).offset == 1
    assert consumer.calls == 1 and iterator.run == 0
    assert len(ready) == 3  # the consumer's answer was stubbed: nothing popped


async def test_a_run_skips_records_no_longer_held_and_hands_back_when_none_is() -> None:
    leases, ready = LeaseTable(), ReadyBuffer()
    held(leases, ready, range(3))
    assert leases.settle(TP, 1)  # acknowledged elsewhere (e.g. released by close)
    held(leases, ready, range(10, 11), deadline=NOW)  # its lock ran out as it waited
    iterator, consumer, _, _ = setup(ready, [answer(99)], leases)
    iterator.run = 10
    assert (await anext(iterator)).offset == 0
    assert (await anext(iterator)).offset == 2  # 1 dropped
    assert (await anext(iterator)).offset == 99  # the consumer's answer: nothing held left
    assert consumer.calls == 1 and iterator.run == 0 and not ready


async def test_the_end_and_errors_of_the_consumer_reach_async_for() -> None:
    leases, ready = LeaseTable(), ReadyBuffer()
    held(leases, ready, range(2))
    iterator, _, _, _ = setup(ready, [StopAsyncIteration()], leases)
    iterator.run = 1
    seen = [msg.offset async for msg in iterator]
    assert seen == [0]

    failure = RuntimeError("broker lost")
    iterator, _, _, _ = setup(ReadyBuffer(), [failure], LeaseTable())
    with pytest.raises(RuntimeError) as raised:
        await anext(iterator)
    assert raised.value is failure


async def test_cancelling_a_wait_in_the_consumer_cancels_the_iteration() -> None:
    entered = asyncio.Event()

    async def waits_forever() -> Message:
        entered.set()
        await asyncio.Event().wait()
        raise AssertionError("not reached")

    iterator = ConsumerIterator(ReadyBuffer(), LeaseTable(), Demand(), waits_forever)
    step = asyncio.ensure_future(anext(iterator))
    await asyncio.wait_for(entered.wait(), 5)
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step
