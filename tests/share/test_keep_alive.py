"""``msg.keep_alive()``: the consumer renews a held record's lock until it is acknowledged, or
until a given time when it applies a given acknowledgement.

The deadline logic is driven sans-IO with a fake clock: the lease table, the ack tracker and
a loop that does what the one ``LeaseTimer`` task does (sleep to the earliest deadline,
sweep), with the fetcher's part (take the renewals, answer them) played by the test.  Then
end to end on the embedded broker and real Kafka with 2 s locks.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
import tracemalloc
import uuid
from collections.abc import Iterable

import pytest

from aioshare.protocol.errors import (
    ErrorCode,
    IllegalStateError,
    InvalidRecordStateError,
    KafkaConnectionError,
)
from aioshare.protocol.records import DecodedRecord
from aioshare.protocol.types import AckType, TopicIdPartition, TopicPartition
from aioshare.share import LockExpiry, Message, RenewUnsupportedError, ShareConsumer
from aioshare.share.ack_tracker import AckTracker, RenewRequest, keep_alive_step
from aioshare.share.lease_timer import LeaseTimer
from aioshare.share.leases import ExpiredRange, LeaseTable, Timer
from aioshare.share.message import DeliveryContext
from tests.client.fakes import FakeCluster, all_versions
from tests.kit import wait_until

from .consumer_clusters import EmbeddedCluster, RealKafkaCluster
from .consumer_fake import TOPIC, ShareFake
from .test_consumer_demand import group_with_lock, member, take

TP = TopicIdPartition(uuid.UUID(int=7), 0)
LOCK = 30.0
NODE = 1


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """A consumer's share-layer core without I/O: leases, tracker, and the timer's sweep."""

    def __init__(self, n: int = 1, *, fraction: float = 0.7, lock: float = LOCK) -> None:
        self.clock = Clock()
        self.leases = LeaseTable()
        self.expired: list[ExpiredRange] = []
        self.errors: list[tuple[int, BaseException]] = []
        self.tracker = AckTracker(
            self.leases,
            lambda tp: TopicPartition("jobs", tp.partition),
            linger=0.0,
            on_expired=self.expired.extend,
            keep_alive_fraction=fraction,
            on_keep_alive_error=lambda msg, exc: self.errors.append((msg.offset, exc)),
            clock=self.clock,
        )
        self.tracker.routes[TP] = NODE
        self.lock = lock
        self.msgs = self.acquire(0, n)
        self.requests: list[RenewRequest] = []

    def acquire(self, first: int, n: int) -> list[Message]:
        deadline = self.clock.now + self.lock
        self.leases.add_acquired(TP, first, first + n - 1, 1, deadline)
        ctx = DeliveryContext("jobs", TP, self.tracker, None, None)
        records = [DecodedRecord(o, 0, None, b"v", []) for o in range(first, first + n)]
        hint = self.leases.lease_at(TP, first)
        return [Message(ctx, rec, 1, deadline, hint) for rec in records]

    def run_until(self, t: float) -> None:
        """What LeaseTimer.run does between now and ``t``: wake at each deadline, sweep."""
        while True:
            due = self.leases.next_deadline()
            if due is None or due > t:
                break
            self.clock.now = max(self.clock.now, due)
            expired = self.leases.expire(self.clock.now)
            fired = self.leases.take_fired()
            self.expired.extend(expired)
            if fired:
                self.tracker.timers_due(fired, self.clock.now)
        self.clock.now = t

    def take(self) -> RenewRequest | None:
        request = self.tracker.take_renewals(NODE)
        if request is not None:
            self.requests.append(request)
        return request

    def answer(self, request: RenewRequest, refuse: Iterable[int] = ()) -> None:
        """The leader answers ``request`` now: the partition fails if it holds a refused offset."""
        offsets = {o for b in request.batches[TP] for o in range(b.first_offset, b.last_offset + 1)}
        code = ErrorCode.INVALID_RECORD_STATE if offsets & set(refuse) else 0
        self.tracker.complete_renewals(request, {TP: code}, {TP: None}, self.clock.now + self.lock)

    def serve(self, refuse: Iterable[int] = ()) -> int:
        """Send and answer every pending renewal, one request at a time; returns how many."""
        n = 0
        while (request := self.take()) is not None:
            self.answer(request, refuse)
            n += 1
        return n

    def renewed_offsets(self, request: RenewRequest) -> list[int]:
        return [o for b in request.batches[TP] for o in range(b.first_offset, b.last_offset + 1)]

    def pending_acks(self) -> dict[int, int]:
        snapshot = self.tracker.take(NODE)
        if snapshot is None:
            return {}
        return {
            o: b.acknowledge_types[0]
            for b in snapshot.batches[TP]
            for o in range(b.first_offset, b.last_offset + 1)
        }


def renewal_times(h: Harness, until: float, refuse: Iterable[int] = ()) -> list[float]:
    """Run to ``until``, answering every renewal as soon as it is due; when each went out."""
    times: list[float] = []
    while True:
        due = h.leases.next_deadline()
        if due is None or due > until:
            h.run_until(until)
            return times
        h.run_until(due)
        if h.serve(refuse):
            times.append(h.clock.now)


# -- the schedule ----------------------------------------------------------------------


def test_the_renewal_is_due_at_the_fraction_of_the_lock_left_on_a_coarse_grid() -> None:
    # 70% of 30 s is 21 s; the margin left (9 s) allows a 2 s grid: due at 20 s.
    assert keep_alive_step(0.0, 30.0, None, 0.7) == (20.0, True)
    assert keep_alive_step(0.0, 30.0, None, 0.5) == (14.0, True)  # 15 s, margin 15 s: 2 s grid
    # Records kept alive a few milliseconds apart fall due at the same instant.
    assert {keep_alive_step(t / 1000, 30.0, None, 0.7)[0] for t in range(50)} == {20.0}
    # Never earlier than a quarter of the margin before the exact time, never in the past.
    for now in (0.0, 3.3, 17.1, 29.9):
        when, renew = keep_alive_step(now, 30.0, None, 0.7)
        exact = now + 0.7 * (30.0 - now)
        assert renew and exact - (30.0 - exact) / 4 <= when <= exact and when >= now


def test_until_before_the_renewal_needs_no_renew() -> None:
    assert keep_alive_step(0.0, 30.0, 10.0, 0.7) == (10.0, False)
    assert keep_alive_step(0.0, 30.0, 21.0, 0.7) == (21.0, False)
    assert keep_alive_step(0.0, 30.0, 25.0, 0.7) == (20.0, True)  # would end after the renewal time


# -- the tracker and the lease table under a fake clock ---------------------------------


def test_a_kept_record_is_renewed_before_its_lock_runs_out_until_it_is_accepted() -> None:
    h = Harness()
    (msg,) = h.msgs
    msg.keep_alive()
    assert msg.kept_alive and h.leases.timer_count == 1
    h.run_until(19.99)
    assert h.take() is None
    # Each renewal is answered at once with a fresh 30 s lock: due again 20 s later.
    assert renewal_times(h, 100.0) == [20.0, 40.0, 60.0, 80.0, 100.0]
    assert msg.lock_expires_at == 130.0 and h.leases.deadline_of(TP, 0) == 130.0
    msg.accept()
    assert not msg.kept_alive and h.leases.timer_count == 0
    assert renewal_times(h, 500.0) == []
    assert h.expired == [] and h.errors == []
    assert h.pending_acks() == {0: AckType.ACCEPT}


def test_until_before_the_lock_would_be_renewed_applies_then_without_a_renew() -> None:
    h = Harness()
    (msg,) = h.msgs
    msg.keep_alive(until=10.0, then=AckType.RELEASE)
    h.run_until(9.99)
    assert msg.acknowledged is None
    h.run_until(10.0)
    assert msg.acknowledged is AckType.RELEASE and not msg.kept_alive
    assert h.requests == [] and h.take() is None
    assert h.pending_acks() == {0: AckType.RELEASE}
    assert h.leases.held_count == 0


def test_until_after_several_locks_renews_then_applies_then_at_until() -> None:
    h = Harness()
    (msg,) = h.msgs
    msg.keep_alive(until=70.0, then=AckType.ACCEPT)
    # 20, 40, 60: renewed; at 60 the next renewal (81) would come after until (70).
    assert renewal_times(h, 69.99) == [20.0, 40.0, 60.0]
    assert msg.acknowledged is None
    h.run_until(70.0)
    assert msg.acknowledged is AckType.ACCEPT
    assert h.pending_acks() == {0: AckType.ACCEPT}
    assert renewal_times(h, 300.0) == [] and h.expired == []


def test_until_without_then_only_stops_renewing() -> None:
    h = Harness()
    (msg,) = h.msgs
    msg.keep_alive(until=25.0)
    assert renewal_times(h, 200.0) == [20.0]  # 25 s comes after the first renewal time
    assert msg.acknowledged is None and not msg.kept_alive
    assert h.expired == [ExpiredRange(TP, 0, 0)]  # the renewed lock (50 s) ran out as usual
    assert h.errors == []


def test_stopped_keep_alive_lets_the_lock_expire_at_its_deadline() -> None:
    h = Harness()
    (msg,) = h.msgs
    msg.keep_alive()
    h.run_until(5.0)
    msg.stop_keep_alive()
    msg.stop_keep_alive()  # no-op
    assert not msg.kept_alive and h.leases.timer_count == 0
    assert renewal_times(h, 29.99) == [] and h.expired == []
    h.run_until(30.0)
    assert h.expired == [ExpiredRange(TP, 0, 0)] and h.errors == []


def test_any_acknowledgement_ends_it() -> None:
    h = Harness(3)
    for msg in h.msgs:
        msg.keep_alive(until=100.0, then=AckType.ACCEPT)
    h.msgs[0].release()
    h.msgs[1].reject()
    assert [m.kept_alive for m in h.msgs] == [False, False, True]
    h.run_until(20.0)
    request = h.take()
    assert request is not None and h.renewed_offsets(request) == [2]


def test_transient_failures_are_retried_while_the_lock_lasts_then_the_record_is_lost() -> None:
    h = Harness()
    (msg,) = h.msgs
    msg.keep_alive()
    attempts: list[float] = []
    while h.clock.now < 40.0:
        due = h.leases.next_deadline()
        if due is None:
            break
        h.run_until(due)
        while (request := h.take()) is not None:
            attempts.append(h.clock.now)
            h.tracker.fail(request, KafkaConnectionError("connection lost"), in_doubt=True)
    # First at 20 s, then every second, then at half the lock left: never past the lock.
    assert attempts[:3] == [20.0, 21.0, 22.0]
    assert all(t < 30.0 for t in attempts) and len(attempts) < 20
    assert h.expired == [ExpiredRange(TP, 0, 0)]  # at its deadline, through on_lock_expired
    ((offset, exc),) = h.errors
    assert offset == 0 and isinstance(exc, InvalidRecordStateError)
    assert not msg.kept_alive and h.leases.timer_count == 0


def test_a_refused_renew_loses_the_lock_at_once() -> None:
    h = Harness()
    (msg,) = h.msgs
    msg.keep_alive()
    h.run_until(20.0)
    request = h.take()
    assert request is not None
    h.answer(request, refuse=[0])
    ((tp, first, last, why),) = h.expired
    assert (tp, first, last) == (TP, 0, 0) and h.leases.held_count == 0  # not at 30 s
    assert isinstance(why, InvalidRecordStateError)  # on_lock_expired says why: the broker's refusal
    ((offset, exc),) = h.errors
    assert offset == 0 and isinstance(exc, InvalidRecordStateError)
    msg.accept()  # the lock is gone: the ack fails here, nothing is sent
    assert h.pending_acks() == {}


def test_renewals_refused_together_are_asked_again_in_halves_to_find_the_lost_one() -> None:
    # The broker applies a partition's acknowledgements atomically: one record it no longer
    # holds for us fails the RENEW of all eight.
    h = Harness(8)
    for msg in h.msgs:
        msg.keep_alive()
    h.run_until(20.0)
    sent = h.serve(refuse=[5])
    assert [h.renewed_offsets(r) for r in h.requests] == [
        [0, 1, 2, 3, 4, 5, 6, 7],
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [4, 5],
        [4],
        [5],
        [6, 7],
    ]
    assert sent == 7
    assert [e[:3] for e in h.expired] == [(TP, 5, 5)]
    assert [o for o, _ in h.errors] == [5]
    assert [m.offset for m in h.msgs if m.kept_alive] == [0, 1, 2, 3, 4, 6, 7]
    assert all(h.leases.deadline_of(TP, o) == 50.0 for o in (0, 1, 2, 3, 4, 6, 7))


def test_renew_unsupported_applies_then_at_the_renewal_time_and_reports_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness(2)
    delayed, long_job = h.msgs
    delayed.keep_alive(until=100.0, then=AckType.RELEASE)
    long_job.keep_alive()
    h.run_until(20.0)
    unsupported = RenewUnsupportedError("RENEW needs ShareAcknowledge v2 (Kafka 4.2+); node 1 offers v1")
    with caplog.at_level(logging.WARNING, logger="aioshare.share.ack_tracker"):
        h.tracker.fail_renewals(NODE, unsupported)  # what the fetcher does on a v1 leader
        # Later keep-alives: no RENEW is tried any more.
        late_delay, late_job = h.acquire(2, 2)
        late_delay.keep_alive(until=100.0, then=AckType.REJECT)
        late_job.keep_alive()
        h.run_until(40.0)
    assert delayed.acknowledged is AckType.RELEASE  # at 20 s, before the lock ran out
    assert late_delay.acknowledged is AckType.REJECT
    assert h.take() is None
    assert h.errors == [(1, unsupported), (3, unsupported)]
    assert long_job.acknowledged is None and late_job.acknowledged is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "keep-alive is off" in warnings[0].getMessage()


async def test_an_explicit_renew_moves_the_keep_alive_schedule() -> None:
    h = Harness()
    (msg,) = h.msgs
    msg.keep_alive()
    h.run_until(5.0)
    renewal = asyncio.ensure_future(msg.renew())
    await asyncio.sleep(0)  # the renew is recorded
    h.serve()
    assert await renewal == 35.0
    # Not at 20 s any more: 70% of what was left of the new lock at 20 s, on the grid.
    assert renewal_times(h, 40.0) == [30.0]
    # Both in one tick: one RENEW of the offset answers both.
    h.run_until(50.0)
    renewal = asyncio.ensure_future(msg.renew())
    await asyncio.sleep(0)
    assert h.tracker.has_renewals(NODE)
    h.run_until(51.0)
    (request,) = [h.take()]
    assert request is not None and h.renewed_offsets(request) == [0] and len(request.renewals) == 2
    h.answer(request)
    assert await renewal == 81.0 and msg.lock_expires_at == 81.0


def test_many_records_kept_alive_one_after_the_other_renew_in_one_request() -> None:
    h = Harness(200)
    for i, msg in enumerate(h.msgs):
        h.clock.now = i * 0.001
        msg.keep_alive()
    for round_ in range(4):
        due = h.leases.next_deadline()
        assert due is not None
        h.run_until(due)
        request = h.take()
        assert request is not None and len(request.renewals) == 200, round_
        assert h.take() is None
        h.answer(request)
    assert h.renewed_offsets(h.requests[0]) == list(range(200))
    assert len(request.batches[TP]) == 1  # one RENEW batch for the run of offsets


def test_records_kept_alive_and_acked_soon_never_reach_the_heap_and_the_rest_renew_on_time() -> None:
    # The usual pattern: keep alive, then accept within moments.  Their timers are cancelled
    # before the table is swept near their due, so they never enter the heap; the records
    # still held then are renewed exactly as if every timer had been in the heap all along.
    h = Harness(100)
    for i, msg in enumerate(h.msgs):
        h.clock.now = i * 0.01
        msg.keep_alive()
        if i % 10:
            msg.accept()
    assert h.tracker.kept_alive == 10 and h.leases.timer_count == 10
    assert len(h.leases._heap) == 1  # the records' one lock deadline, no timer
    assert h.leases.next_deadline() == 20.0
    h.run_until(19.99)
    assert h.take() is None
    assert renewal_times(h, 20.0) == [20.0]
    assert h.renewed_offsets(h.requests[0]) == list(range(0, 100, 10))
    assert renewal_times(h, 60.0) == [40.0, 60.0]
    assert h.expired == [] and h.errors == []
    assert h.pending_acks() == {i: AckType.ACCEPT for i in range(100) if i % 10}


def test_lost_partitions_end_their_keep_alives() -> None:
    h = Harness(2)
    for msg in h.msgs:
        msg.keep_alive()
    cause = KafkaConnectionError("the share session with node 1 was lost")
    h.tracker.abandon([TP], cause)
    assert [o for o, _ in h.errors] == [0, 1]
    assert all(isinstance(e, InvalidRecordStateError) and e.__cause__ is cause for _, e in h.errors)
    assert h.leases.timer_count == 0


def test_on_end_is_told_per_record_instead_of_the_consumer_callback() -> None:
    h = Harness(3)
    delayed, lost, stopped = h.msgs
    ended: list[tuple[int, AckType | None, type[BaseException] | None]] = []

    def on_end(msg: Message, exc: BaseException | None) -> None:
        ended.append((msg.offset, msg.acknowledged, None if exc is None else type(exc)))

    delayed.keep_alive(until=50.0, then=AckType.RELEASE, on_end=on_end)
    lost.keep_alive(on_end=on_end)
    stopped.keep_alive(on_end=on_end)
    stopped.stop_keep_alive()  # ended by the application: not reported
    h.run_until(20.0)
    h.serve(refuse=[1])  # both in one request: halved, then offset 1 is refused
    assert renewal_times(h, 50.0) == [40.0]
    assert ended == [(1, None, InvalidRecordStateError), (0, AckType.RELEASE, None)]
    assert h.errors == []  # told to on_end, not to the consumer's on_keep_alive_error


def test_a_kept_record_delivered_again_is_reported_lost_at_once() -> None:
    h = Harness(2)
    for msg in h.msgs:
        msg.keep_alive()
    h.run_until(20.0)
    h.take()  # the RENEW is out ...
    h.clock.now = 25.0
    # ... and the broker, whose lock ran out first, hands offset 1 out again.
    news, superseded = h.tracker.take_acquired(TP, 1, 1, 2, 55.0, h.clock.now)
    assert news == [(1, 1)] and superseded == [ExpiredRange(TP, 1, 1)]
    assert [o for o, _ in h.errors] == [1] and not h.msgs[1].kept_alive and h.msgs[0].kept_alive


def test_closing_ends_every_keep_alive() -> None:
    h = Harness(3)
    for msg in h.msgs:
        msg.keep_alive(until=10.0, then=AckType.ACCEPT)
    h.tracker.closed = True
    assert h.leases.timer_count == 0 and not any(m.kept_alive for m in h.msgs)
    h.run_until(60.0)
    assert all(m.acknowledged is None for m in h.msgs)  # the session close releases them
    with pytest.raises(IllegalStateError):
        h.msgs[0].keep_alive()


def test_keep_alive_arguments_and_states() -> None:
    h = Harness(2)
    a, b = h.msgs
    with pytest.raises(ValueError, match="needs until"):
        a.keep_alive(then=AckType.RELEASE)
    with pytest.raises(ValueError, match="ACCEPT, RELEASE or REJECT"):
        a.keep_alive(until=5.0, then=AckType.GAP)
    a.keep_alive(until=5.0, then=AckType.ACCEPT)
    a.keep_alive(until=8.0, then=AckType.REJECT)  # replaces until and then
    assert h.leases.timer_count == 1
    h.run_until(8.0)
    assert a.acknowledged is AckType.REJECT
    with pytest.raises(IllegalStateError):
        a.keep_alive()
    h.run_until(30.0)  # b's lock ran out
    with pytest.raises(InvalidRecordStateError):
        b.keep_alive()


# -- the one timer task ------------------------------------------------------------------


async def test_the_lease_timer_wakes_for_a_timer_scheduled_before_every_deadline() -> None:
    leases = LeaseTable()
    loop = asyncio.get_running_loop()
    leases.add_acquired(TP, 0, 0, 1, loop.time() + 60.0)
    fired: asyncio.Future[tuple[list[Timer], float]] = loop.create_future()
    timer = LeaseTimer(leases, lambda expired: None, on_due=lambda ts, now: fired.set_result((ts, now)))
    task = asyncio.create_task(timer.run())
    try:
        await asyncio.sleep(0)  # it sleeps until the lock's deadline, a minute away
        entry = Timer()
        due = loop.time() + 0.05
        leases.schedule(entry, due)
        timers, now = await asyncio.wait_for(fired, 5)
        assert timers == [entry] and now >= due
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# -- memory ------------------------------------------------------------------------------


def _held_bytes(n: int, keep_alive: bool) -> tuple[float, float]:
    """Bytes per held record of a 500-record-per-fetch consumer: (held, extra if kept alive)."""
    h = Harness(0 if n == 0 else 1)
    ctx = DeliveryContext("jobs", TP, h.tracker, None, None)
    records = [DecodedRecord(o, 0, None, None, []) for o in range(1, n + 1)]  # the payload: not counted
    msgs: list[Message] = []
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for first in range(1, n + 1, 500):
            h.leases.add_acquired(TP, first, first + 499, 1, LOCK)
            hint = h.leases.lease_at(TP, first)
            msgs.extend(Message(ctx, rec, 1, LOCK, hint) for rec in records[first - 1 : first + 499])
        held = tracemalloc.get_traced_memory()[0]
        if keep_alive:
            for i, msg in enumerate(msgs):
                h.clock.now = i * 1e-5
                msg.keep_alive(until=25.0, then=AckType.RELEASE)
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (held - base) / n, (kept - held) / n


def test_memory_per_held_record() -> None:
    held, _ = _held_bytes(20_000, keep_alive=False)
    assert held <= 300, f"{held:.0f} B per held record"
    _, kept = _held_bytes(20_000, keep_alive=True)
    assert kept <= 350, f"keep-alive costs {kept:.0f} B per record"
    print(f"\nheld record: {held:.0f} B; kept alive: +{kept:.0f} B")


# -- end to end: embedded broker and real Kafka -------------------------------------------

Cluster = EmbeddedCluster | RealKafkaCluster


async def test_keep_alive_on_a_broker(cluster: Cluster) -> None:
    """2 s locks.  One member holds 203 records: 200 kept alive for 3 locks then accepted,
    one kept alive until 3 locks then released, one kept alive briefly then let go, one
    never kept alive.  A second member counts what comes back to it: only the released one
    (after ``until``) and the two whose locks ran out (after their deadline), each with
    delivery count 2; the 200 are renewed in a handful of requests, never 200."""
    topic = "keep-alive"
    await cluster.create_topic(topic, 1)
    lock_ms, n = 2000, 200
    lock = lock_ms / 1000
    await cluster.produce(topic, [str(i).encode() for i in range(n + 3)], batch_records=n + 3)
    group = await group_with_lock(cluster, lock_ms)
    loop = asyncio.get_running_loop()
    expiries: list[LockExpiry] = []
    errors: list[tuple[Message, BaseException]] = []
    holder = member(
        cluster,
        topic,
        group,
        max_poll_records=500,
        fetch_ahead=False,  # it must not take back what its locks let go
        on_lock_expired=expiries.extend,
        on_keep_alive_error=lambda msg, exc: errors.append((msg, exc)),
    )
    other = member(cluster, topic, group)
    back: dict[int, tuple[int, float]] = {}  # offset -> (delivery count, when), on `other`
    deliveries: collections.Counter[int] = collections.Counter()

    async def watch(stop: asyncio.Event) -> None:
        while not stop.is_set():
            for msg in await other.getmany(timeout=0.2):
                deliveries[msg.offset] += 1
                back[msg.offset] = (msg.delivery_count, loop.time())
                msg.accept()

    async with holder, other:
        await wait_until(lambda: bool(other.assignment()), timeout=10)  # there to take them back
        held = await take(holder, n + 3)
        assert sorted(m.offset for m in held) == list(range(n + 3))
        msgs = {m.offset: m for m in held}
        kept, delayed, let_go, plain = [msgs[o] for o in range(n)], msgs[n], msgs[n + 1], msgs[n + 2]
        start = loop.time()
        until = start + 3 * lock
        for msg in kept:
            msg.keep_alive()
        delayed.keep_alive(until=until, then=AckType.RELEASE)
        let_go.keep_alive()
        let_go_deadline = let_go.lock_expires_at
        plain_deadline = plain.lock_expires_at
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(stop))
        try:
            await asyncio.sleep(0.3)  # the timeline of the test itself
            let_go.stop_keep_alive()
            # Everything kept alive stays ours for three locks; the others come back.
            await wait_until(lambda: loop.time() >= until and n in back, timeout=3 * lock + 10)
            assert all(m.kept_alive for m in kept)
            assert all(m.lock_expires_at > loop.time() for m in kept)
            for msg in kept:
                msg.accept()
            assert all(r is None for r in (await holder.commit()).values())
            accepted_at = loop.time()
            # Nothing of the 200 comes back, not even a lock later.
            await asyncio.sleep(lock)  # watching for redeliveries that must not come
        finally:
            stop.set()
            await watcher
        renew_requests = holder.renew_requests
    assert not [o for o in range(n) if o in deliveries], "records kept alive were delivered to another member"
    assert set(back) == {n, n + 1, n + 2}, back
    assert all(deliveries[o] == 1 for o in back)
    count, when = back[n]
    assert count == 2 and until <= when < accepted_at + lock, (when - start, until - start)
    for offset, deadline in ((n + 1, let_go_deadline), (n + 2, plain_deadline)):
        count, when = back[offset]
        assert count == 2 and deadline <= when < until, (offset, when - start)
    expired = {o for e in expiries for o in range(e.first_offset, e.last_offset + 1)}
    assert expired == {n + 1, n + 2}
    assert errors == []
    assert delayed.acknowledged is AckType.RELEASE
    # Renewed about every 1.4 s for 6 s: ~4 rounds, each one request (two if the 200 were
    # planned across a grid line) - not 200 a round.
    assert 3 <= renew_requests <= 8, renew_requests


async def test_keep_alive_without_renew_support_releases_at_the_renewal_time() -> None:
    """Against a ShareAcknowledge v1 leader (Kafka < 4.2), a delayed release happens at the
    renewal time instead, before the lock runs out; a plain keep-alive is reported."""
    versions = all_versions()
    versions[79] = (1, 1)  # ShareAcknowledge v1: no RENEW
    async with FakeCluster(api_versions=versions) as cluster:
        fake = ShareFake(cluster, lock_ms=1000)
        fake.add_batch([b"delayed", b"long"])
        errors: list[tuple[int, BaseException]] = []
        loop = asyncio.get_running_loop()
        async with ShareConsumer(
            TOPIC,
            group_id="g",
            bootstrap_servers=cluster.bootstrap,
            ack_mode="explicit",
            fetch_max_wait=0.05,
            max_in_flight=2,
            on_keep_alive_error=lambda msg, exc: errors.append((msg.offset, exc)),
        ) as c:
            got: list[Message] = []
            async with asyncio.timeout(10):
                while len(got) < 2:
                    got += await c.getmany(timeout=1.0)
            delayed, long_job = sorted(got, key=lambda m: m.offset)
            deadline = delayed.lock_expires_at
            delayed.keep_alive(until=loop.time() + 10, then=AckType.RELEASE)
            long_job.keep_alive()
            await wait_until(lambda: delayed.acknowledged is not None and errors, timeout=5)
            released_at = loop.time()
            assert delayed.acknowledged is AckType.RELEASE and released_at < deadline
            assert [(o, type(e)) for o, e in errors] == [(1, RenewUnsupportedError)]
            long_job.accept()
            assert await c.commit() == {TopicPartition(TOPIC, 0): None}
        assert c.renew_requests == 0
        assert not [a for a in fake.acknowledges if a.is_renew_ack]
        assert fake.acked() == {0: AckType.RELEASE, 1: AckType.ACCEPT}


async def test_implicit_mode_leaves_a_kept_alive_message_to_the_application() -> None:
    """Asking for more accepts the rest of the previous delivery, not the message the
    application keeps alive: it is still working on it, and accepts it itself."""
    async with FakeCluster() as cluster:
        fake = ShareFake(cluster)
        fake.add_batch([b"a", b"b", b"c", b"d"])
        async with ShareConsumer(
            TOPIC, group_id="g", bootstrap_servers=cluster.bootstrap, ack_mode="implicit", fetch_max_wait=0.05
        ) as c:
            first = await c.getmany(max_records=2, timeout=5)
            assert len(first) == 2
            slow, done = first
            slow.keep_alive()
            await c.getmany(max_records=2, timeout=5)
            assert done.acknowledged is AckType.ACCEPT
            assert slow.acknowledged is None and slow.kept_alive
            slow.accept()
            assert not slow.kept_alive
            await c.commit()
        assert fake.acked() == {0: AckType.ACCEPT, 1: AckType.ACCEPT, 2: AckType.ACCEPT, 3: AckType.ACCEPT}
