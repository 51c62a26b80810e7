import itertools
import random
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioshare.protocol.errors import IllegalStateError, InvalidRecordStateError
from aioshare.protocol.records import DecodedRecord
from aioshare.protocol.types import AckType, TopicIdPartition, TopicPartition
from aioshare.share.ack_tracker import AckResult, AckStatus, AckTracker
from aioshare.share.acks import (
    SINGLE_TYPE_RUN,
    AckBatch,
    AckBook,
    AckConflictError,
    AckSnapshot,
    encode_runs,
    expand_batches,
    gap_ranges,
)
from aioshare.share.capacity import Capacity
from aioshare.share.leases import LeaseTable
from aioshare.share.message import DeliveryContext, Message

T1 = TopicIdPartition(uuid.UUID(int=11), 0)
T2 = TopicIdPartition(uuid.UUID(int=22), 1)
A, R, J, G, N = AckType.ACCEPT, AckType.RELEASE, AckType.REJECT, AckType.GAP, AckType.RENEW


def check_batches(batches: list[AckBatch]) -> None:
    prev = None
    for b in batches:
        assert b.first_offset <= b.last_offset
        assert len(b.acknowledge_types) in (1, b.last_offset - b.first_offset + 1)
        if prev is not None:
            assert b.first_offset > prev.last_offset
        prev = b


def test_500_in_order_accepts_make_one_batch() -> None:
    book: AckBook[None] = AckBook()
    for o in range(500):
        assert book.record(T1, o, A)
    assert book.pending_count == 500
    snap = book.take()
    assert snap is not None
    assert snap.batches == {T1: [AckBatch(0, 499, [1])]}
    (run,) = snap._parts[T1].runs.runs  # one run all along, not 500 entries
    assert (run.first, run.last) == (0, 499)
    assert book.pending_count == 0
    assert book.in_flight_count == 500


def test_short_mixed_runs_share_a_per_offset_batch() -> None:
    book: AckBook[None] = AckBook()
    for o, t in enumerate([A, A, R, J, A]):
        book.record(T1, o, t)
    snap = book.take()
    assert snap is not None
    assert snap.batches[T1] == [AckBatch(0, 4, [1, 1, 2, 3, 1])]


def test_long_runs_get_their_own_single_type_batch() -> None:
    types = [R] + [A] * SINGLE_TYPE_RUN + [J, J] + [A] * (SINGLE_TYPE_RUN - 1) + [R]
    book: AckBook[None] = AckBook()
    for o, t in enumerate(types):
        book.record(T1, 100 + o, t)
    snap = book.take()
    assert snap is not None
    assert snap.batches[T1] == [
        AckBatch(100, 100, [2]),
        AckBatch(101, 110, [1]),
        AckBatch(111, 112 + SINGLE_TYPE_RUN - 1 + 1, [3, 3] + [1] * (SINGLE_TYPE_RUN - 1) + [2]),
    ]


def test_gaps_in_offsets_split_batches() -> None:
    book: AckBook[None] = AckBook()
    book.record_range(T1, 0, 4, A)
    book.record_range(T1, 10, 12, G)
    book.record(T1, 13, A)
    snap = book.take()
    assert snap is not None
    assert snap.batches[T1] == [AckBatch(0, 4, [1]), AckBatch(10, 13, [0, 0, 0, 1])]


def test_out_of_order_records_coalesce() -> None:
    book: AckBook[None] = AckBook()
    for o in (5, 3, 4, 1, 2, 0):
        book.record(T1, o, A)
    snap = book.take()
    assert snap is not None
    assert snap.batches[T1] == [AckBatch(0, 5, [1])]
    assert len(snap._parts[T1].runs.runs) == 1


def test_duplicate_same_type_is_a_no_op() -> None:
    book: AckBook[None] = AckBook()
    assert book.record(T1, 7, A)
    assert not book.record(T1, 7, A)
    assert book.record_range(T1, 5, 9, A) == 4
    assert book.pending_count == 5


def test_conflicting_type_raises_and_records_nothing() -> None:
    book: AckBook[None] = AckBook()
    book.record(T1, 7, A)
    with pytest.raises(AckConflictError) as info:
        book.record(T1, 7, J)
    assert (info.value.tp, info.value.offset, info.value.existing, info.value.requested) == (T1, 7, A, J)
    with pytest.raises(AckConflictError):
        book.record_range(T1, 0, 10, R)
    assert book.pending_count == 1


def test_conflict_with_an_in_flight_ack_raises() -> None:
    book: AckBook[str] = AckBook()
    book.record(T1, 7, A, "first")
    snap = book.take()
    assert snap is not None
    with pytest.raises(AckConflictError):
        book.record(T1, 7, R)
    # Same type while in flight: nothing new to send; the token rides with the snapshot.
    assert not book.record(T1, 7, A, "second")
    assert book.pending_count == 0
    (outcome,) = book.complete(snap, {T1: 0})
    assert outcome.tokens == ("first", "second")
    # Once completed, the offset may be acknowledged again (a redelivery).
    assert book.record(T1, 7, R)


def test_range_overlapping_in_flight_records_only_the_rest() -> None:
    book: AckBook[None] = AckBook()
    book.record_range(T1, 0, 9, A)
    snap = book.take()
    assert snap is not None
    assert book.record_range(T1, 5, 14, A) == 5
    nxt = book.take()
    assert nxt is not None
    assert nxt.batches[T1] == [AckBatch(10, 14, [1])]


def test_invalid_type_and_range_are_rejected() -> None:
    book: AckBook[None] = AckBook()
    with pytest.raises(ValueError):
        book.record(T1, 0, 9)
    with pytest.raises(ValueError):
        book.record_range(T1, 5, 4, A)
    with pytest.raises(ValueError):
        book.record(T1, -1, A)


def test_renew_is_not_a_final_ack() -> None:
    book: AckBook[None] = AckBook()
    with pytest.raises(ValueError, match=r"AckTracker\.renew"):
        book.record_range(T1, 0, 4, N)
    assert book.pending_count == 0 and book.take() is None


def test_take_selects_partitions() -> None:
    book: AckBook[None] = AckBook()
    book.record(T1, 0, A)
    book.record(T2, 0, A)
    snap = book.take([T2])
    assert snap is not None and snap.partitions == [T2]
    assert book.pending_partitions() == [T1]
    assert book.has_pending(T1) and not book.has_pending(T2)
    assert book.take([T2]) is None


def test_complete_reports_offsets_tokens_and_errors_per_partition() -> None:
    book: AckBook[int] = AckBook()
    book.record(T1, 3, A, 1)
    book.record(T1, 4, J, 2)
    book.record(T2, 9, R, 3)
    snap = book.take()
    assert snap is not None
    outcomes = {o.tp: o for o in book.complete(snap, {T1: 0, T2: 121}, {T2: "lock expired"})}
    assert outcomes[T1].ok and outcomes[T1].offsets() == {3, 4} and outcomes[T1].tokens == (1, 2)
    assert outcomes[T2].error_code == 121 and outcomes[T2].error_message == "lock expired"
    assert outcomes[T2].offsets() == {9}
    assert book.in_flight_count == 0
    with pytest.raises(ValueError):
        book.complete(snap, {})


def test_partition_missing_from_results_is_not_success() -> None:
    book: AckBook[None] = AckBook()
    book.record(T1, 0, A)
    snap = book.take()
    assert snap is not None
    (outcome,) = book.complete(snap, {})
    assert not outcome.ok


def test_fail_reports_every_partition() -> None:
    book: AckBook[None] = AckBook()
    book.record(T1, 0, A)
    book.record(T2, 0, A)
    snap = book.take()
    assert snap is not None
    outcomes = book.fail(snap, 13, "session lost")
    assert {(o.tp, o.error_code) for o in outcomes} == {(T1, 13), (T2, 13)}
    assert book.in_flight() == []


def test_requeue_returns_acks_and_merges_with_new_ones() -> None:
    book: AckBook[str] = AckBook()
    book.record_range(T1, 0, 4, A, "a")
    book.record(T2, 0, A, "b")
    snap = book.take()
    assert snap is not None
    book.record_range(T1, 5, 9, A, "c")
    book.requeue(snap, [T1])
    assert snap.partitions == [T2] and list(snap.batches) == [T2]
    again = book.take([T1])
    assert again is not None
    assert again.batches[T1] == [AckBatch(0, 9, [1])]
    assert again.tokens(T1) == ["a", "c"]
    (o2,) = book.complete(snap, {T2: 0})
    assert o2.tp == T2
    book.requeue(again)
    assert book.pending_count == 10 and book.in_flight() == []


def test_gap_ranges() -> None:
    assert gap_ranges(10, 20, [10, 11, 14, 20]) == [(12, 13), (15, 19)]
    assert gap_ranges(10, 12, []) == [(10, 12)]
    assert gap_ranges(10, 12, [5, 10, 11, 12, 30]) == []


def test_encode_runs_lone_short_run_between_long_ones_is_single_type() -> None:
    runs = [(0, 19, 1), (20, 22, 3), (23, 40, 1)]
    assert encode_runs(runs) == [AckBatch(0, 19, [1]), AckBatch(20, 22, [3]), AckBatch(23, 40, [1])]


# -- properties -----------------------------------------------------------------------

ack_types = st.sampled_from([G, A, R, J])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.integers(0, 200), ack_types, min_size=1), st.randoms(use_true_random=False))
def test_encoding_round_trips(recorded: dict[int, AckType], rnd) -> None:  # type: ignore[no-untyped-def]
    order = list(recorded)
    rnd.shuffle(order)
    book: AckBook[None] = AckBook()
    for o in order:
        book.record(T1, o, recorded[o])
    snap = book.take()
    assert snap is not None
    batches = snap.batches[T1]
    check_batches(batches)
    assert expand_batches(batches) == {o: int(t) for o, t in recorded.items()}
    for b in batches:
        types = b.acknowledge_types
        if len(types) > 1:
            # Per-offset arrays are only for genuinely mixed spans with no long run inside.
            assert len(set(types)) > 1
            run = 1
            for x, y in itertools.pairwise(types):
                run = run + 1 if x == y else 1
                assert run < SINGLE_TYPE_RUN
    for a, b in itertools.pairwise(batches):
        if b.first_offset == a.last_offset + 1 and len(a.acknowledge_types) == len(b.acknowledge_types) == 1:
            assert a.acknowledge_types != b.acknowledge_types, "adjacent same-type batches must merge"


record_ops = st.one_of(
    st.tuples(st.just("record"), st.sampled_from([T1, T2]), st.integers(0, 40), st.integers(1, 6), ack_types),
    st.tuples(st.just("take"), st.booleans()),
    st.tuples(st.just("finish"), st.sampled_from(["complete", "fail", "requeue"])),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(record_ops, max_size=40))
def test_book_matches_a_model_across_takes(program: list[tuple]) -> None:  # type: ignore[type-arg]
    book: AckBook[None] = AckBook()
    pending: dict[tuple[TopicIdPartition, int], int] = {}
    flying: list[tuple[AckSnapshot[None], dict[tuple[TopicIdPartition, int], int]]] = []
    for op in program:
        if op[0] == "record":
            _, tp, first, n, t = op
            keys = [(tp, o) for o in range(first, first + n)]
            known: dict[tuple[TopicIdPartition, int], int] = dict(pending)
            for _, sent in flying:
                known.update(sent)
            if any(k in known and known[k] != t for k in keys):
                with pytest.raises(AckConflictError):
                    book.record_range(tp, first, first + n - 1, t)
                continue
            new = [k for k in keys if k not in known]
            assert book.record_range(tp, first, first + n - 1, t) == len(new)
            pending.update(dict.fromkeys(new, int(t)))
        elif op[0] == "take":
            tps = [T1] if op[1] else None
            snap = book.take(tps)
            taken = {k: v for k, v in pending.items() if tps is None or k[0] in tps}
            if not taken:
                assert snap is None
                continue
            assert snap is not None
            got = {}
            for tp, batches in snap.batches.items():
                check_batches(batches)
                got.update({(tp, o): t for o, t in expand_batches(batches).items()})
            assert got == taken
            for k in taken:
                del pending[k]
            flying.append((snap, taken))
        elif flying:
            snap, sent = flying.pop(0)
            if op[1] == "complete":
                outs = book.complete(snap, {})
            elif op[1] == "fail":
                outs = book.fail(snap, 13)
            else:
                book.requeue(snap)
                pending.update(sent)
                outs = []
            reported = {(o.tp, x) for o in outs for x in o.offsets()}
            assert reported == (set() if op[1] == "requeue" else set(sent))
        assert book.pending_count == len(pending)
        assert book.in_flight_count == sum(len(s) for _, s in flying)


# -- AckTracker: acks settle their leases per run, when flushed -------------------------
# Recording an ack only checks the delivery still holds the record and extends a run; the
# runs settle the lease table in one operation each, before anything next reads the table.

NODE = 1


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Core:
    """A lease table and an ack tracker on a fake clock, with ``n`` records leased at 0.."""

    def __init__(self, n: int, *, lock: float = 30.0, capacity: Capacity | None = None) -> None:
        self.clock = _Clock()
        self.leases = LeaseTable()
        self.changes = 0
        self.results: list[AckResult] = []
        self.tracker = AckTracker(
            self.leases,
            lambda tp: TopicPartition("jobs", tp.partition),
            linger=0.0,
            capacity=capacity,
            on_ack_result=self.results.extend,
            on_change=self._changed,
            clock=self.clock,
        )
        self.tracker.routes[T1] = NODE
        self.ctx = DeliveryContext("jobs", T1, self.tracker, None, None)
        self.msgs = self.acquire(0, n, lock)

    def _changed(self) -> None:
        self.changes += 1

    def acquire(self, first: int, n: int, lock: float, delivery_count: int = 1) -> list[Message]:
        deadline = self.clock.now + lock
        self.leases.add_acquired(T1, first, first + n - 1, delivery_count, deadline)
        records = [DecodedRecord(o, 0, None, b"v", []) for o in range(first, first + n)]
        hint = self.leases.lease_at(T1, first)
        return [Message(self.ctx, rec, delivery_count, deadline, hint) for rec in records]

    def sent(self) -> dict[int, int]:
        """offset -> ack type of the acks the tracker would send now."""
        snap = self.tracker.take(NODE)
        if snap is None:
            return {}
        return expand_batches(snap.batches.get(T1, []))


def test_in_order_acks_settle_as_one_run_when_the_table_is_read() -> None:
    core = Core(500)
    for msg in core.msgs:
        msg.accept()
    # Nothing settled record by record: the table has a pending settlement to apply.
    assert core.leases.pending is not None
    assert core.leases.held_before_pending == 500
    assert core.leases.held_count == 0  # reading it applies the run
    assert core.leases.pending is None
    assert core.leases.partitions() == []
    assert core.sent() == dict.fromkeys(range(500), A)


def test_the_trackers_held_count_counts_staged_acks_without_settling_them() -> None:
    # Capacity reads it after every record an application takes (async for): reading the
    # lease table's count instead would flush the staged acks record by record.
    core = Core(10)
    for msg in core.msgs[:4]:
        msg.accept()
        assert core.leases.pending is not None  # still staged: nothing flushed
    assert core.tracker.held_count == 6
    assert core.leases.pending is not None and core.leases.held_before_pending == 10
    assert core.leases.held_count == 6  # the table's own count settles them: the same answer
    assert core.tracker.held_count == 6 and core.leases.pending is None


def test_acked_then_swept_before_the_flush_is_not_reported_lost() -> None:
    core = Core(10, lock=30.0)
    core.clock.now = 10.0
    for msg in core.msgs[:6]:
        msg.accept()
    core.clock.now = 40.0  # every lock ran out; the sweep comes before anything flushed the acks
    expired = core.leases.expire(core.clock.now)
    assert [(r.first, r.last) for r in expired] == [(6, 9)]  # only the records never acked
    assert core.leases.held_count == 0
    assert core.sent() == dict.fromkeys(range(6), A)  # the acks still go out
    assert core.results == []  # none failed locally


def test_ack_after_the_deadline_fails_locally_and_settles_nothing() -> None:
    core = Core(4, lock=30.0)
    core.msgs[0].accept()
    core.clock.now = 30.0  # the lock runs out now, not swept yet
    core.msgs[1].accept()
    assert [(r.first_offset, r.last_offset, r.status) for r in core.results] == [(1, 1, AckStatus.NOT_SENT)]
    assert isinstance(core.results[0].error, InvalidRecordStateError)
    assert core.sent() == {0: A}
    assert [(r.first, r.last) for r in core.leases.expire(core.clock.now)] == [(1, 3)]


def test_ack_of_a_replaced_delivery_fails_even_with_its_old_hint() -> None:
    core = Core(4, lock=30.0)
    core.clock.now = 31.0  # the first delivery's locks ran out
    again = core.acquire(0, 4, 30.0, delivery_count=2)
    core.msgs[2].accept()  # the first delivery's message: its lease hint is dead
    assert [(r.first_offset, r.status) for r in core.results] == [(2, AckStatus.NOT_SENT)]
    again[2].accept()
    assert core.sent() == {2: A}
    assert core.leases.held_count == 3


def test_out_of_order_acks_punch_holes_without_splitting_leases() -> None:
    core = Core(500)
    order = list(range(500))
    random.Random(3).shuffle(order)
    for n, i in enumerate(order):
        core.msgs[i].accept()
        if n % 37 == 0:  # the table is read now and then (a fetch, the sweep)
            assert core.leases.held_count == 500 - n - 1
            part = core.leases._parts.get(T1)
            assert part is None or len(part.leases) == 1
    assert core.results == []
    assert core.leases.held_count == 0
    assert core.sent() == dict.fromkeys(range(500), A)


def test_mixed_types_and_runs_over_several_leases() -> None:
    core = Core(10)
    more = core.acquire(10, 10, 20.0)  # another deadline: its own lease
    msgs = core.msgs + more
    for i, msg in enumerate(msgs):
        if i % 7 == 3:
            msg.release()
        elif i != 15:
            msg.accept()
    expected = {i: (R if i % 7 == 3 else A) for i in range(20) if i != 15}
    assert core.sent() == expected
    assert [(r.first, r.last) for r in core.leases.ranges(T1)] == [(15, 15)]


def test_acks_that_free_capacity_wake_a_waiting_fetcher() -> None:
    capacity = Capacity(10, lambda: core.leases.held_count)
    core = Core(10, capacity=capacity)
    assert capacity.free() == 0
    capacity.wait_for(fetcher=1, free=4)  # it fetches once held is down to 6
    assert capacity.wake_below == 6
    core.msgs[0].accept()
    assert core.changes == 1  # the first ack of a partition always tells the fetchers
    woken_at = []
    for i in range(1, 10):
        before = core.changes
        core.msgs[i].accept()
        if core.changes > before:
            woken_at.append(i)
    # Woken when the 4th ack brings held down to 6, and for each ack below that; never before.
    assert woken_at == [3, 4, 5, 6, 7, 8, 9]
    assert core.leases.pending is not None  # the wake itself settled nothing
    assert capacity.free() == 10


def test_a_second_message_of_the_same_delivery_acks_once_or_conflicts() -> None:
    # Only a caller building its own Messages can do this: the book takes the same outcome
    # once, and reports a different one as a conflict, not sent.
    core = Core(3)
    ctx_records = [DecodedRecord(o, 0, None, b"v", []) for o in range(3)]
    hint = core.leases.lease_at(T1, 0)
    twins = [Message(core.ctx, rec, 1, 30.0, hint) for rec in ctx_records]
    core.msgs[0].accept()
    twins[0].accept()
    core.msgs[1].accept()
    twins[1].reject()
    assert core.sent() == {0: A, 1: A}
    assert [(r.first_offset, r.ack_type, r.status) for r in core.results] == [(1, J, AckStatus.NOT_SENT)]
    assert core.leases.held_count == 1


def test_keep_alive_of_an_acknowledged_record_is_refused_by_the_tracker() -> None:
    core = Core(2)
    core.msgs[0].accept()
    with pytest.raises(IllegalStateError):
        core.tracker.keep_alive(core.msgs[0], None, None)
    core.msgs[1].keep_alive()
    assert core.leases.pending is not None  # keeping an unacked record alive applies nothing
    assert core.tracker.kept_alive == 1
