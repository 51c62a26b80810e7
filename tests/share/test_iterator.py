"""ConsumerIterator: the runs ``async for`` serves from the buffer itself, and everything else
handed to the consumer's ``__anext__``.  Compiled and as source (tests/test_compiled.py)."""

from __future__ import annotations

import asyncio
import collections
import uuid

import pytest

from aioshare.protocol.types import TopicIdPartition
from aioshare.share.demand import Demand
from aioshare.share.iterator import ConsumerIterator
from aioshare.share.leases import LeaseTable
from aioshare.share.message import Message, detached_message

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


def held(leases: LeaseTable, offsets: range, deadline: float = NOW + 30) -> list[Message]:
    leases.add_acquired(TP, offsets[0], offsets[-1], 1, deadline)
    return [
        detached_message(
            topic="jobs",
            tp=TP,
            offset=offset,
            key=None,
            value=b"v",
            headers=[],
            timestamp=0,
            delivery_count=1,
            lock_expires_at=deadline,
        )
        for offset in offsets
    ]


def setup(
    messages: list[Message], answers: list[Message | BaseException], leases: LeaseTable
) -> tuple[ConsumerIterator, Consumer, Demand, Clock, collections.deque[Message]]:
    ready = collections.deque(messages)
    demand = Demand()
    consumer = Consumer(answers)
    iterator = ConsumerIterator(ready, leases, demand, consumer.next_message)
    clock = Clock()
    iterator.clock = clock
    demand.fresh_until = NOW + 0.001
    return iterator, consumer, demand, clock, ready


async def test_outside_a_run_every_record_comes_from_the_consumer() -> None:
    leases = LeaseTable()
    buffered = held(leases, range(3))
    answer = buffered[0]
    iterator, consumer, _, _, ready = setup(buffered, [answer], leases)
    assert iterator.run == 0
    assert await anext(iterator) is answer
    assert consumer.calls == 1 and len(ready) == 3  # the iterator took nothing itself


async def test_a_run_serves_buffered_records_in_order_then_hands_back() -> None:
    leases = LeaseTable()
    buffered = held(leases, range(5))
    after = held(leases, range(5, 6))[0]
    iterator, consumer, _, _, ready = setup(buffered, [after], leases)
    iterator.run = 3
    served = [await anext(iterator) for _ in range(4)]
    assert served == [*buffered[:3], after]
    assert consumer.calls == 1 and iterator.run == 0
    assert list(ready) == buffered[3:]


async def test_a_run_ends_once_demand_would_count_the_record() -> None:
    leases = LeaseTable()
    buffered = held(leases, range(4))
    iterator, consumer, demand, clock, ready = setup(buffered, [buffered[1]], leases)
    iterator.run = 10
    assert await anext(iterator) is buffered[0]
    clock.now = demand.fresh_until + 0.001  # took_one would change something now
    assert await anext(iterator) is buffered[1]
    assert consumer.calls == 1 and iterator.run == 0
    assert list(ready) == buffered[1:]  # the consumer's answer was stubbed: nothing popped


async def test_a_run_skips_records_no_longer_held_and_hands_back_when_none_is() -> None:
    leases = LeaseTable()
    buffered = held(leases, range(3))
    assert leases.settle(TP, 1)  # acknowledged elsewhere (e.g. released by close)
    late = held(leases, range(10, 11), deadline=NOW)[0]  # its lock ran out as it waited
    iterator, consumer, _, _, ready = setup([*buffered, late], [buffered[2]], leases)
    iterator.run = 10
    assert await anext(iterator) is buffered[0]
    assert await anext(iterator) is buffered[2]  # 1 dropped
    assert await anext(iterator) is buffered[2]  # the consumer's answer: nothing held left
    assert consumer.calls == 1 and iterator.run == 0 and not ready


async def test_the_end_and_errors_of_the_consumer_reach_async_for() -> None:
    leases = LeaseTable()
    buffered = held(leases, range(2))
    iterator, _, _, _, _ = setup(buffered, [StopAsyncIteration()], leases)
    iterator.run = 1
    seen = [msg async for msg in iterator]
    assert seen == buffered[:1]

    failure = RuntimeError("broker lost")
    iterator, _, _, _, _ = setup([], [failure], LeaseTable())
    with pytest.raises(RuntimeError) as raised:
        await anext(iterator)
    assert raised.value is failure


async def test_cancelling_a_wait_in_the_consumer_cancels_the_iteration() -> None:
    entered = asyncio.Event()

    async def waits_forever() -> Message:
        entered.set()
        await asyncio.Event().wait()
        raise AssertionError("not reached")

    iterator = ConsumerIterator(collections.deque(), LeaseTable(), Demand(), waits_forever)
    step = asyncio.ensure_future(anext(iterator))
    await asyncio.wait_for(entered.wait(), 5)
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step
