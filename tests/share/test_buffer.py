"""ReadyBuffer: fetched records kept as the reader's tuples, handed out as Messages while their
lock holds.  Compiled and as source (tests/test_compiled.py)."""

from __future__ import annotations

import gc
import uuid

from aioshare.protocol.types import TopicIdPartition
from aioshare.share.buffer import ReadyBuffer
from aioshare.share.leases import LeaseTable
from aioshare.share.message import DeliveryContext, Message

T1 = TopicIdPartition(uuid.UUID(int=1), 0)
T2 = TopicIdPartition(uuid.UUID(int=2), 3)
NOW = 50.0
LOCK = NOW + 30


def ctx(tp: TopicIdPartition) -> DeliveryContext:
    return DeliveryContext(f"topic-{tp.partition}", tp, None, None, None)


def buffered(
    leases: LeaseTable,
    ready: ReadyBuffer,
    tp: TopicIdPartition,
    offsets: range,
    *,
    delivery_count: int = 1,
    deadline: float = LOCK,
) -> None:
    leases.add_acquired(tp, offsets[0], offsets[-1], delivery_count, deadline)
    records = [(o, 1000 + o, None, b"v%d" % o, None) for o in offsets]
    ready.add(ctx(tp), records, delivery_count, deadline, leases.lease_at(tp, offsets[0]))


def coordinates(messages: list[Message]) -> list[tuple[int, int]]:
    return [(m.partition, m.offset) for m in messages]


def rest(ready: ReadyBuffer, leases: LeaseTable) -> list[Message]:
    """Every record left, handed out (all still held in these tests)."""
    out: list[Message] = []
    ready.take_held(out, len(ready), leases, NOW)
    return out


def test_records_come_out_in_delivery_order_as_messages_of_their_range() -> None:
    leases, ready = LeaseTable(), ReadyBuffer()
    assert not ready and len(ready) == 0
    buffered(leases, ready, T1, range(0, 3))
    buffered(leases, ready, T2, range(7, 9), delivery_count=2, deadline=LOCK + 1)
    ready.add(ctx(T1), [], 1, LOCK, None)  # an empty range adds nothing
    assert ready and len(ready) == 5
    served = []
    while (msg := ready.pop_held(leases, NOW)) is not None:
        served.append(msg)
    assert coordinates(served) == [(0, 0), (0, 1), (0, 2), (3, 7), (3, 8)]
    last = served[-1]
    assert (last.topic, last.value, last.timestamp, last.delivery_count) == ("topic-3", b"v8", 1008, 2)
    assert last.lock_expires_at == LOCK + 1 and last.acknowledged is None
    assert not ready and len(ready) == 0


def test_records_whose_delivery_ended_while_buffered_are_dropped() -> None:
    leases, ready = LeaseTable(), ReadyBuffer()
    buffered(leases, ready, T1, range(0, 6))
    assert leases.settle(T1, 1)  # released by close, say
    leases.acquire(T1, 3, 3, 2, LOCK, NOW)  # redelivered meanwhile: a later delivery count
    buffered(leases, ready, T2, range(0, 2), deadline=NOW)  # the lock ran out
    out: list[Message] = []
    ready.take_held(out, 100, leases, NOW)
    assert coordinates(out) == [(0, 0), (0, 2), (0, 4), (0, 5)]
    assert not ready


def test_take_held_stops_at_the_limit_and_the_next_call_goes_on() -> None:
    leases, ready = LeaseTable(), ReadyBuffer()
    buffered(leases, ready, T1, range(0, 5))
    buffered(leases, ready, T2, range(0, 5))
    assert leases.settle(T1, 2)
    first: list[Message] = [ready.pop_held(leases, NOW)]  # type: ignore[list-item]
    ready.take_held(first, 4, leases, NOW)  # 2 is dropped on the way: 0, 1, 3, 4
    assert coordinates(first) == [(0, 0), (0, 1), (0, 3), (0, 4)]
    assert len(ready) == 5
    second: list[Message] = []
    ready.take_held(second, 3, leases, NOW)
    assert coordinates(second) == [(3, 0), (3, 1), (3, 2)]
    assert len(ready) == 2
    third: list[Message] = []
    ready.take_held(third, 10, leases, NOW)
    assert coordinates(third) == [(3, 3), (3, 4)] and not ready


def test_dropping_partitions_forgets_their_records_only() -> None:
    leases, ready = LeaseTable(), ReadyBuffer()
    buffered(leases, ready, T1, range(0, 3))
    buffered(leases, ready, T2, range(0, 3))
    buffered(leases, ready, T1, range(3, 5))
    assert ready.pop_held(leases, NOW) is not None  # T1 0
    ready.drop_partitions({T1})
    assert len(ready) == 3
    assert coordinates(rest(ready, leases)) == [(3, 0), (3, 1), (3, 2)]


def test_moving_a_delivery_into_the_buffer_empties_it() -> None:
    leases, ready, arrived = LeaseTable(), ReadyBuffer(), ReadyBuffer()
    buffered(leases, ready, T1, range(0, 2))
    buffered(leases, arrived, T2, range(0, 3))
    ready.move_from(arrived)
    assert (len(ready), len(arrived)) == (5, 0) and not arrived
    assert coordinates(rest(ready, leases)) == [(0, 0), (0, 1), (3, 0), (3, 1), (3, 2)]


def test_buffered_records_are_not_messages_yet() -> None:
    """The point of the buffer: a fetch's records wait as the reader's tuples, so the
    collector finds no Message of theirs to promote before the application takes them."""

    def messages() -> set[int]:
        return {id(obj) for obj in gc.get_objects() if isinstance(obj, Message)}

    gc.collect()  # other tests' garbage
    leases, ready = LeaseTable(), ReadyBuffer()
    before = messages()  # other tests' live ones, if any
    buffered(leases, ready, T1, range(0, 1000))
    assert messages() - before == set()
    msg = ready.pop_held(leases, NOW)
    assert msg is not None and messages() - before == {id(msg)}
