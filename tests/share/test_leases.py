import math
import random
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from aioshare.protocol.types import TopicIdPartition
from aioshare.share.leases import ExpiredRange, Lease, LeaseInfo, LeaseTable, Timer

T1 = TopicIdPartition(uuid.UUID(int=11), 0)
T2 = TopicIdPartition(uuid.UUID(int=22), 3)


def check_invariants(table: LeaseTable) -> None:
    table.apply_pending()
    total = 0
    live = 0
    for tp, part in table._parts.items():
        assert part.leases, "empty partitions are removed"
        assert part.starts == [lease.first for lease in part.leases]
        prev_last = None
        count = 0
        for lease in part.leases:
            assert lease.alive and lease.tp == tp
            assert lease.first <= lease.last
            if prev_last is not None:
                assert lease.first > prev_last
            prev_last = lease.last
            assert lease.holds(lease.first) and lease.holds(lease.last)
            if lease.held is None:
                assert lease.count == lease.last - lease.first + 1
            else:
                assert len(lease.held) == lease.last - lease.first + 1
                assert lease.held.count(1) == lease.count
                assert lease.count < len(lease.held)
            count += lease.count
        assert count == part.count
        total += count
        live += len(part.leases)
    assert total == table.held_count
    assert live == table._live
    in_heap = [e for e in table._heap if e[2].alive and e[2].seq == e[1]]
    assert sum(1 for e in in_heap if isinstance(e[2], Lease)) == live
    listed = table._unplanned
    assert len({id(t) for t in listed}) == len(listed), "a timer is listed once"
    assert all(t.seq == -1 for t in listed)
    assert sum(1 for t in listed if not t.alive) == table._unplanned_dead
    assert all(t.due >= table._unplanned_due for t in listed if t.alive)
    if not table._inexact:
        assert table._unplanned_due == min((t.due for t in listed if t.alive), default=math.inf)
    planned = sum(1 for e in in_heap if isinstance(e[2], Timer))
    assert planned + sum(1 for t in listed if t.alive) == table.timer_count
    assert len(table._heap) - len(in_heap) == table._stale


def expand(table: LeaseTable) -> dict[tuple[TopicIdPartition, int], tuple[float, int]]:
    out = {}
    for r in table.ranges():
        for o in range(r.first, r.last + 1):
            key = (r.tp, o)
            assert key not in out
            out[key] = (r.deadline, r.delivery_count)
    return out


def test_add_and_query() -> None:
    t = LeaseTable()
    assert t.add_acquired(T1, 10, 19, 1, 30.0) == 0
    assert t.held_count == 10
    assert t.is_held(T1, 10, now=0.0)
    assert t.is_held(T1, 19, now=29.9)
    assert not t.is_held(T1, 20, now=0.0)
    assert not t.is_held(T2, 10, now=0.0)
    assert t.deadline_of(T1, 15) == 30.0
    assert t.delivery_count_of(T1, 15) == 1
    assert t.get(T1, 15) == LeaseInfo(30.0, 1)
    assert t.get(T1, 9) is None
    assert t.next_deadline() == 30.0
    check_invariants(t)


def test_not_held_once_the_deadline_passes_even_before_the_sweep() -> None:
    t = LeaseTable()
    t.add_acquired(T1, 0, 4, 1, 30.0)
    assert not t.is_held(T1, 0, now=30.0)
    assert t.held_count == 5  # still tracked until expire() runs


def test_expire_returns_expired_ranges_and_removes_them() -> None:
    t = LeaseTable()
    t.add_acquired(T1, 0, 9, 1, 30.0)
    t.add_acquired(T2, 100, 104, 2, 40.0)
    assert t.expire(29.999) == []
    assert t.expire(30.0) == [ExpiredRange(T1, 0, 9)]
    assert t.held_count == 5
    assert t.next_deadline() == 40.0
    assert t.expire(100.0) == [ExpiredRange(T2, 100, 104)]
    assert t.held_count == 0
    assert t.next_deadline() is None
    check_invariants(t)


def test_expire_reports_only_unsettled_runs() -> None:
    t = LeaseTable()
    t.add_acquired(T1, 0, 9, 1, 30.0)
    for o in (0, 4, 5, 9):
        assert t.settle(T1, o)
    assert sorted(t.expire(30.0)) == [ExpiredRange(T1, 1, 3), ExpiredRange(T1, 6, 8)]


def test_settling_in_order_keeps_one_range_and_no_bitmap() -> None:
    t = LeaseTable()
    t.add_acquired(T1, 0, 499, 1, 30.0)
    for o in range(250):
        assert t.settle(T1, o)
    (lease,) = t._parts[T1].leases
    assert (lease.first, lease.last, lease.held) == (250, 499, None)
    assert t.held_count == 250
    check_invariants(t)


def test_settle_twice_and_settle_unknown_return_false() -> None:
    t = LeaseTable()
    t.add_acquired(T1, 0, 9, 1, 30.0)
    assert t.settle(T1, 5)
    assert not t.settle(T1, 5)
    assert not t.settle(T1, 50)
    assert not t.settle(T2, 5)
    assert t.held_count == 9
    check_invariants(t)


def test_settling_edges_of_a_holed_range_trims_it() -> None:
    t = LeaseTable()
    t.add_acquired(T1, 0, 9, 1, 30.0)
    for o in (5, 9, 0):
        t.settle(T1, o)
        check_invariants(t)
    assert [(r.first, r.last) for r in t.ranges(T1)] == [(1, 4), (6, 8)]
    (lease,) = t._parts[T1].leases
    assert (lease.first, lease.last) == (1, 8)


def test_release_is_settle() -> None:
    t = LeaseTable()
    t.add_acquired(T1, 0, 0, 1, 30.0)
    assert t.release(T1, 0)
    assert t.held_count == 0
    assert t.next_deadline() is None


def test_timers_share_the_heap_with_the_locks() -> None:
    t = LeaseTable()
    woken: list[float] = []
    t.wake = lambda: woken.append(t.next_deadline() or -1.0)
    t.add_acquired(T1, 0, 9, 1, 30.0)
    early, late = Timer(), Timer()
    t.schedule(late, 40.0)
    assert woken == []  # not earlier than the earliest deadline: the timer task sleeps on
    t.schedule(early, 20.0)
    assert woken == [20.0] and t.next_deadline() == 20.0
    assert t.expire(25.0) == [] and t.take_fired() == [early]
    assert not early.alive and t.timer_count == 1
    assert t.expire(30.0) == [ExpiredRange(T1, 0, 9)] and t.take_fired() == []
    t.schedule(late, 35.0)  # moved: the old entry is dead
    assert t.next_deadline() == 35.0
    assert t.expire(100.0) == [] and t.take_fired() == [late]
    assert t.next_deadline() is None
    check_invariants(t)


def test_cancelled_and_moved_timers_do_not_grow_the_heap() -> None:
    t = LeaseTable()
    timers = [Timer() for _ in range(10)]
    for i in range(5000):
        t.schedule(timers[i % 10], 100.0 + i)
        if i % 3 == 0:
            t.cancel(timers[i % 10])
    assert len(t._heap) <= 10 + LeaseTable._COMPACT_MIN + 1  # live + stale before compaction
    check_invariants(t)


def test_timers_cancelled_before_the_sweep_never_enter_the_heap() -> None:
    t = LeaseTable()
    woken: list[float] = []
    t.wake = lambda: woken.append(t.next_deadline() or -1.0)
    t.add_acquired(T1, 0, 9, 1, 30.0)
    timers = [Timer() for _ in range(1000)]
    for i, timer in enumerate(timers):
        t.schedule(timer, 20.0 + i / 1000)
        if i % 100:
            t.cancel(timer)  # most are cancelled at once (a record kept alive, then acked)
    assert woken == [20.0]  # once, for the first: the others are not earlier
    assert t._heap == [(30.0, 0, t.lease_at(T1, 0))] and t.timer_count == 10
    assert len(t._unplanned) <= 10 + 3 * LeaseTable._COMPACT_MIN  # cancelled ones are dropped
    check_invariants(t)
    assert t.expire(20.5) == [] and [round(x.due, 3) for x in t.take_fired()] == [
        20.0,
        20.1,
        20.2,
        20.3,
        20.4,
        20.5,
    ]
    assert len(t._heap) == 5 and t.timer_count == 4  # the rest, in the heap now
    check_invariants(t)
    t.schedule(timers[0], 25.0)  # fired, scheduled again: listed again
    assert t.next_deadline() == 20.6
    assert t.expire(26.0) == [] and [round(x.due, 3) for x in t.take_fired()] == [
        20.6,
        20.7,
        20.8,
        20.9,
        25.0,
    ]
    check_invariants(t)


def test_drop_all_forgets_timers() -> None:
    t = LeaseTable()
    timer = Timer()
    t.schedule(timer, 5.0)
    t.drop_all()
    assert not timer.alive and t.timer_count == 0 and t.next_deadline() is None
    check_invariants(t)


def test_settling_the_last_offset_removes_the_deadline() -> None:
    t = LeaseTable()
    t.add_acquired(T1, 0, 2, 1, 30.0)
    t.add_acquired(T1, 10, 12, 1, 50.0)
    for o in (1, 0, 2):
        t.settle(T1, o)
    assert t.next_deadline() == 50.0
    check_invariants(t)


def test_random_order_settles_do_not_fragment_the_table() -> None:
    t = LeaseTable()
    for i in range(200):
        t.add_acquired(T1, i * 1000, i * 1000 + 499, 1, 30.0 + i)
    assert t.held_count == 100_000
    offsets = [i * 1000 + k for i in range(200) for k in range(500)]
    random.Random(5).shuffle(offsets)
    for n, o in enumerate(offsets):
        assert t.settle(T1, o)
        if n % 20_000 == 0:
            assert len(t._parts[T1].leases) <= 200
    assert t.held_count == 0
    check_invariants(t)


def test_settle_run_trims_edges_punches_holes_and_spans_leases() -> None:
    t = LeaseTable()
    t.add_acquired(T1, 0, 9, 1, 30.0)
    t.add_acquired(T1, 10, 19, 1, 40.0)  # another deadline: a second lease
    first = t.lease_at(T1, 0)
    assert t.settle_run(T1, 0, 2) == 3  # in order: the edge moves, no bitmap
    assert first is not None and (first.first, first.held) == (3, None)
    assert t.settle_run(T1, 5, 6) == 2  # inside: a hole, the lease is not split
    assert t.lease_at(T1, 7) is first and len(t._parts[T1].leases) == 2
    assert t.settle_run(T1, 4, 6) == 1  # only what is still held counts
    assert t.settle_run(T1, 8, 12) == 5  # over both leases
    assert [(r.first, r.last) for r in t.ranges(T1)] == [(3, 3), (7, 7), (13, 19)]
    check_invariants(t)
    assert t.settle_run(T1, 0, 30) == 9
    assert t.held_count == 0 and t.partitions() == []
    assert t.settle_run(T1, 0, 30) == 0
    check_invariants(t)


def test_pending_settlements_apply_once_before_the_table_is_read() -> None:
    t = LeaseTable()
    t.add_acquired(T1, 0, 9, 1, 30.0)
    calls = []

    def pending() -> None:
        calls.append(t.pending)  # cleared before it runs: settle_run does not call it again
        t.settle_run(T1, 0, 4)

    t.pending = pending
    assert t.held_before_pending == 10
    timer = Timer()
    t.schedule(timer, 5.0)  # timers do not depend on held records: nothing applied
    t.cancel(timer)
    assert calls == []
    assert [(r.first, r.last) for r in t.expire(31.0)] == [(5, 9)]  # the sweep applies it first
    assert calls == [None]
    assert t.held_count == 0


def test_settle_range() -> None:
    t = LeaseTable()
    t.add_acquired(T1, 0, 9, 1, 30.0)
    t.add_acquired(T1, 20, 29, 1, 30.0)
    assert t.settle_range(T1, 5, 24) == 10
    assert [(r.first, r.last) for r in t.ranges(T1)] == [(0, 4), (25, 29)]
    check_invariants(t)


def test_renew_moves_the_deadline_of_one_offset() -> None:
    t = LeaseTable()
    t.add_acquired(T1, 0, 9, 3, 30.0)
    assert t.renew(T1, 5, 60.0)
    assert t.deadline_of(T1, 5) == 60.0
    assert t.delivery_count_of(T1, 5) == 3
    assert t.deadline_of(T1, 4) == 30.0
    expired = t.expire(30.0)
    assert sorted(expired) == [ExpiredRange(T1, 0, 4), ExpiredRange(T1, 6, 9)]
    assert t.is_held(T1, 5, now=59.0)
    assert t.next_deadline() == 60.0
    check_invariants(t)


def test_renewing_consecutive_offsets_coalesces() -> None:
    t = LeaseTable()
    t.add_acquired(T1, 0, 499, 1, 30.0)
    for o in range(500):
        assert t.renew(T1, o, 60.0)
    assert len(t._parts[T1].leases) == 1
    assert t.ranges(T1)[0][1:] == (0, 499, 1, 60.0)
    check_invariants(t)


def test_renew_of_unheld_offset_is_false() -> None:
    t = LeaseTable()
    t.add_acquired(T1, 0, 9, 1, 30.0)
    t.settle(T1, 3)
    assert not t.renew(T1, 3, 60.0)
    assert not t.renew(T1, 99, 60.0)
    assert t.renew_range(T1, 0, 9, 60.0) == 9
    check_invariants(t)


def test_reacquiring_held_offsets_replaces_the_old_lease() -> None:
    t = LeaseTable()
    t.add_acquired(T1, 0, 9, 1, 30.0)
    assert t.add_acquired(T1, 5, 14, 2, 50.0) == 5
    assert t.held_count == 15
    assert t.get(T1, 4) == LeaseInfo(30.0, 1)
    assert t.get(T1, 5) == LeaseInfo(50.0, 2)
    assert t.get(T1, 14) == LeaseInfo(50.0, 2)
    check_invariants(t)


def test_adjacent_ranges_with_same_deadline_and_count_merge() -> None:
    t = LeaseTable()
    t.add_acquired(T1, 0, 9, 1, 30.0)
    t.add_acquired(T1, 10, 19, 1, 30.0)
    t.add_acquired(T1, 20, 29, 2, 30.0)
    assert len(t._parts[T1].leases) == 2
    check_invariants(t)


def test_drop_partition_and_drop_all() -> None:
    t = LeaseTable()
    t.add_acquired(T1, 0, 9, 1, 30.0)
    t.add_acquired(T2, 0, 4, 1, 20.0)
    assert t.drop_partition(T2) == 5
    assert t.drop_partition(T2) == 0
    assert t.held_count == 10
    assert t.next_deadline() == 30.0
    assert t.expire(100.0) == [ExpiredRange(T1, 0, 9)]
    t.add_acquired(T1, 0, 9, 1, 30.0)
    assert t.drop_all() == 10
    assert t.held_count == 0
    assert t.next_deadline() is None
    assert t.partitions() == []
    check_invariants(t)


def test_heap_stays_bounded_when_ranges_settle_before_their_deadline() -> None:
    t = LeaseTable()
    for i in range(10_000):
        t.add_acquired(T1, i, i, 1, 1000.0 + i)
        t.settle(T1, i)
    assert len(t._heap) < 200
    check_invariants(t)


def test_acquire_keeps_a_held_record_reported_again() -> None:
    # librdkafka's mock re-reports held records with the same delivery count on every fetch.
    t = LeaseTable()
    assert t.acquire(T1, 0, 9, 1, 30.0, now=0.0) == ([(0, 9)], [])
    lease = t.lease_at(T1, 5)
    assert t.acquire(T1, 0, 9, 1, 31.0, now=1.0) == ([], [])
    assert t.lease_at(T1, 5) is lease and t.get(T1, 5) == LeaseInfo(30.0, 1)
    check_invariants(t)


def test_acquire_replaces_a_lease_with_a_lower_delivery_count() -> None:
    t = LeaseTable()
    t.acquire(T1, 0, 9, 1, 30.0, now=0.0)
    news, superseded = t.acquire(T1, 4, 5, 2, 31.0, now=1.0)
    assert news == [(4, 5)]
    assert superseded == [ExpiredRange(T1, 4, 5)]
    assert t.get(T1, 4) == LeaseInfo(31.0, 2) and t.get(T1, 3) == LeaseInfo(30.0, 1)
    assert t.held_count == 10
    check_invariants(t)


def test_acquire_replaces_an_expired_lease_not_yet_swept() -> None:
    t = LeaseTable()
    t.acquire(T1, 0, 3, 1, 10.0, now=0.0)
    news, superseded = t.acquire(T1, 0, 3, 1, 22.0, now=10.0)  # deadline == now: ran out
    assert news == [(0, 3)] and superseded == [ExpiredRange(T1, 0, 3)]
    assert t.get(T1, 2) == LeaseInfo(22.0, 1)
    assert t.expire(10.0) == []  # nothing left for the sweep to report twice
    check_invariants(t)


def test_acquire_fills_holes_of_a_kept_lease() -> None:
    t = LeaseTable()
    t.acquire(T1, 0, 9, 1, 30.0, now=0.0)
    t.settle(T1, 5)  # a hole: the broker may acquire it again (released, then re-acquired)
    news, superseded = t.acquire(T1, 3, 7, 1, 40.0, now=1.0)
    assert news == [(5, 5)] and superseded == []
    assert t.get(T1, 5) == LeaseInfo(40.0, 1) and t.get(T1, 6) == LeaseInfo(30.0, 1)
    check_invariants(t)


def test_settle_delivery_checks_the_delivery_and_uses_the_hint() -> None:
    t = LeaseTable()
    t.acquire(T1, 0, 9, 2, 30.0, now=0.0)
    hint = t.lease_at(T1, 0)
    assert not t.settle_delivery(T1, 0, 1, 0.0, hint)  # another delivery of the offset
    assert not t.settle_delivery(T1, 0, 2, 30.0, hint)  # its lock ran out (not yet swept)
    assert t.settle_delivery(T1, 0, 2, 0.0, hint)
    assert not t.settle_delivery(T1, 0, 2, 0.0, hint)  # settled already
    t.renew(T1, 5, 50.0)  # splits the hint's lease: offsets past 5 now live in another lease
    assert t.settle_delivery(T1, 7, 2, 25.0, hint)
    assert t.settle_delivery(T1, 5, 2, 40.0, hint)  # renewed: its deadline is the new one
    assert t.held_count == 7
    check_invariants(t)


def test_empty_range_is_rejected() -> None:
    t = LeaseTable()
    try:
        t.add_acquired(T1, 5, 4, 1, 1.0)
    except ValueError:
        return
    raise AssertionError("expected ValueError")


# -- property test against a naive per-record model ---------------------------------

TPS = [T1, T2]
DEADLINES = [10.0, 20.0, 30.0, 40.0]
KINDS = [
    "add",
    "acquire",
    "settle",
    "settle_delivery",
    "settle_range",
    "settle_run",
    "defer_run",
    "renew",
    "renew_range",
    "expire",
    "drop",
    "is_held",
    "schedule",
    "cancel",
]
WEIGHTED_KINDS = st.sampled_from(
    ["add"] * 3
    + ["acquire"] * 2
    + ["settle"] * 4
    + ["defer_run"] * 3
    + ["renew"] * 3
    + ["schedule"] * 2
    + KINDS
)


Model = dict[tuple[TopicIdPartition, int], tuple[float, int]]


def draw_point(data: st.DataObject, model: Model) -> tuple[TopicIdPartition, int]:
    # Mostly aim at held offsets and their neighbours, where splits and merges happen.
    aim = data.draw(st.booleans())
    if model and aim:
        tp, o = data.draw(st.sampled_from(sorted(model, key=lambda k: (k[0].topic_id.int, k[1]))))
        return tp, max(0, o + data.draw(st.integers(-1, 1)))
    return data.draw(st.sampled_from(TPS)), data.draw(st.integers(0, 24))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_matches_a_naive_model(data: st.DataObject) -> None:
    table = LeaseTable()
    model: Model = {}
    hints: dict[tuple[TopicIdPartition, int], Lease | None] = {}  # as a consumer's messages keep them
    timers = [Timer() for _ in range(4)]
    scheduled: dict[int, float] = {}  # timer index -> due, for timers in the heap
    # Runs settled later, as the AckTracker does: the model drops them at once, so every
    # operation of the table must apply them before it reads or changes anything.
    deferred: list[tuple[TopicIdPartition, int, int]] = []

    def apply_deferred() -> None:
        runs = list(deferred)
        deferred.clear()
        for tp, lo, hi in runs:
            table.settle_run(tp, lo, hi)

    for _ in range(data.draw(st.integers(5, 60))):
        kind = data.draw(WEIGHTED_KINDS)
        if kind in ("settle_run", "defer_run"):
            tp, first = draw_point(data, model)
            n = data.draw(st.integers(1, 8))
            keys = [(tp, o) for o in range(first, first + n) if (tp, o) in model]
            if kind == "settle_run":
                assert table.settle_run(tp, first, first + n - 1) == len(keys)
            else:
                deferred.append((tp, first, first + n - 1))
                table.pending = apply_deferred
            for k in keys:
                del model[k]
        elif kind == "schedule":
            i, due = data.draw(st.integers(0, 3)), data.draw(st.sampled_from([*DEADLINES, 12.5]))
            table.schedule(timers[i], due)  # moves it when it is already scheduled
            scheduled[i] = due
        elif kind == "cancel":
            i = data.draw(st.integers(0, 3))
            table.cancel(timers[i])
            scheduled.pop(i, None)
        elif kind == "acquire":
            tp, first = data.draw(st.sampled_from(TPS)), data.draw(st.integers(0, 24))
            n, dc, dl = (
                data.draw(st.integers(1, 10)),
                data.draw(st.integers(1, 3)),
                data.draw(st.sampled_from(DEADLINES)),
            )
            now = data.draw(st.sampled_from([0.0, 10.0, 25.0]))
            news, superseded = table.acquire(tp, first, first + n - 1, dc, dl, now)
            kept = {
                (tp, o)
                for o in range(first, first + n)
                if (tp, o) in model and model[(tp, o)][0] > now and model[(tp, o)][1] >= dc
            }
            replaced = {(tp, o) for o in range(first, first + n) if (tp, o) in model} - kept
            assert {(r.tp, o) for r in superseded for o in range(r.first, r.last + 1)} == replaced
            fresh = {(tp, o) for lo, hi in news for o in range(lo, hi + 1)}
            assert fresh == {(tp, o) for o in range(first, first + n)} - kept
            for key in fresh:
                model[key] = (dl, dc)
                hints[key] = table.lease_at(*key)
        elif kind == "settle_delivery":
            tp, o = draw_point(data, model)
            dc = data.draw(st.integers(1, 3))
            now = data.draw(st.sampled_from([0.0, 10.0, 25.0]))
            v = model.get((tp, o))
            ok = v is not None and v[1] == dc and v[0] > now
            assert table.settle_delivery(tp, o, dc, now, hints.get((tp, o))) == ok
            if ok:
                del model[(tp, o)]
        elif kind == "add":
            tp, first = data.draw(st.sampled_from(TPS)), data.draw(st.integers(0, 24))
            n, dc, dl = (
                data.draw(st.integers(1, 10)),
                data.draw(st.integers(1, 3)),
                data.draw(st.sampled_from(DEADLINES)),
            )
            keys = [(tp, o) for o in range(first, first + n)]
            expected = sum(1 for k in keys if k in model)
            assert table.add_acquired(tp, first, first + n - 1, dc, dl) == expected
            model.update(dict.fromkeys(keys, (dl, dc)))
        elif kind == "settle":
            tp, o = draw_point(data, model)
            assert table.settle(tp, o) == ((tp, o) in model)
            model.pop((tp, o), None)
        elif kind == "settle_range":
            tp, first = draw_point(data, model)
            n = data.draw(st.integers(1, 6))
            keys = [(tp, o) for o in range(first, first + n) if (tp, o) in model]
            assert table.settle_range(tp, first, first + n - 1) == len(keys)
            for k in keys:
                del model[k]
        elif kind == "renew":
            tp, o = draw_point(data, model)
            dl = data.draw(st.sampled_from(DEADLINES))
            assert table.renew(tp, o, dl) == ((tp, o) in model)
            if (tp, o) in model:
                model[(tp, o)] = (dl, model[(tp, o)][1])
        elif kind == "renew_range":
            tp, first = draw_point(data, model)
            n, dl = data.draw(st.integers(1, 6)), data.draw(st.sampled_from(DEADLINES))
            keys = [(tp, o) for o in range(first, first + n) if (tp, o) in model]
            assert table.renew_range(tp, first, first + n - 1, dl) == len(keys)
            for k in keys:
                model[k] = (dl, model[k][1])
        elif kind == "expire":
            now = data.draw(st.sampled_from([5.0, 10.0, 15.0, 20.0, 30.0]))
            gone = {k for k, (dl, _) in model.items() if dl <= now}
            got = set()
            for r in table.expire(now):
                for o in range(r.first, r.last + 1):
                    assert (r.tp, o) not in got
                    got.add((r.tp, o))
            assert got == gone
            for k in gone:
                del model[k]
            fired = table.take_fired()
            assert sorted(timers.index(t) for t in fired) == sorted(
                i for i, d in scheduled.items() if d <= now
            )
            assert [t.due for t in fired] == sorted(t.due for t in fired)
            scheduled = {i: d for i, d in scheduled.items() if d > now}
        elif kind == "drop":
            tp = data.draw(st.sampled_from(TPS))
            keys = [k for k in model if k[0] == tp]
            assert table.drop_partition(tp) == len(keys)
            for k in keys:
                del model[k]
        else:
            tp, o = draw_point(data, model)
            now = data.draw(st.sampled_from([0.0, 10.0, 25.0]))
            v = model.get((tp, o))
            assert table.is_held(tp, o, now) == (v is not None and v[0] > now)
            assert table.deadline_of(tp, o) == (None if v is None else v[0])
            assert table.delivery_count_of(tp, o) == (None if v is None else v[1])
        if table.pending is not None and data.draw(st.booleans()):
            assert table.held_before_pending >= len(model)
            continue  # left pending: the next operation has to apply it first
        check_invariants(table)
        assert expand(table) == model
        assert table.held_count == len(model)
        deadlines = [v[0] for v in model.values()] + list(scheduled.values())
        assert table.next_deadline() == (min(deadlines) if deadlines else None)
        assert table.timer_count == len(scheduled)
        assert all(timers[i].alive == (i in scheduled) for i in range(4))
