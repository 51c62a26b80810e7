"""State-machine tests for SharePartition (semantics doc, section 4), driven by a fake clock."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from aioshare.broker import _codes
from aioshare.broker.config import AutoOffsetReset
from aioshare.broker.share_partition import (
    AckBatch,
    AcquiredRange,
    InvalidPersistedStateError,
    PersistedBatch,
    PersistedState,
    SharePartition,
    validate_ack_batches,
)
from aioshare.protocol.errors import OffsetNotAvailableError
from aioshare.protocol.types import AckType, AcquireMode, RecordState

LOCK_MS = 30_000
A, B = "member-a", "member-b"
AVAILABLE, ACQUIRED = RecordState.AVAILABLE, RecordState.ACQUIRED
ACKNOWLEDGED, ARCHIVED = RecordState.ACKNOWLEDGED, RecordState.ARCHIVED


def batches(first: int, last: int, size: int) -> list[tuple[int, int]]:
    """Log batches of `size` records covering [first, last]."""
    return [(base, min(base + size - 1, last)) for base in range(first, last + 1, size)]


def make(start: int = 0, *, max_in_flight: int = 2000, limit: int = 5) -> SharePartition:
    return SharePartition(start_offset=start, max_in_flight_records=max_in_flight, max_delivery_count=limit)


def fetch(
    sp: SharePartition,
    member: str,
    log: list[tuple[int, int]],
    *,
    max_records: int = 500,
    batch_size: int = 500,
    now: int = 0,
    mode: AcquireMode = AcquireMode.BATCH_OPTIMIZED,
) -> list[AcquiredRange]:
    """Read the log from next_fetch_offset() like the broker shell does, then acquire."""
    offset = sp.next_fetch_offset()
    readable = [batch for batch in log if batch[1] >= offset]
    result = sp.acquire(
        member,
        readable,
        max_records=max_records,
        batch_size=batch_size,
        now_ms=now,
        lock_duration_ms=LOCK_MS,
        mode=mode,
    )
    return result.acquired


def ack(
    sp: SharePartition, member: str, *batches_: tuple[int, int, Sequence[int]], now: int = 0
) -> tuple[int, str | None]:
    result = sp.acknowledge(
        member,
        [AckBatch(f, last, types) for f, last, types in batches_],
        now_ms=now,
        lock_duration_ms=LOCK_MS,
    )
    return result.error_code, result.error_message


def states(sp: SharePartition) -> list[tuple[int, int, RecordState, int, str | None]]:
    return [(r.first_offset, r.last_offset, r.state, r.delivery_count, r.member_id) for r in sp.in_flight()]


# ------------------------------------------------------------------------------------- acquisition


class TestAcquireNewRecords:
    def test_first_delivery_is_one_acquired_range_with_delivery_count_one(self) -> None:
        sp = make()
        result = sp.acquire(
            A, [(0, 499)], max_records=500, batch_size=500, now_ms=100, lock_duration_ms=LOCK_MS
        )
        assert result.acquired == [AcquiredRange(0, 499, 1)]
        assert result.count == 500
        assert result.read_range == (0, 499)
        assert states(sp) == [(0, 499, ACQUIRED, 1, A)]
        assert sp.in_flight()[0].lock_deadline_ms == 100 + LOCK_MS
        assert (sp.start_offset, sp.end_offset, sp.in_flight_count) == (0, 499, 500)

    def test_batch_optimized_chunks_at_log_batch_boundaries_near_batch_size(self) -> None:
        sp = make()
        acquired = fetch(sp, A, batches(0, 39, 10), max_records=100, batch_size=15)
        assert acquired == [AcquiredRange(0, 19, 1), AcquiredRange(20, 39, 1)]

    def test_max_records_is_soft_in_batch_optimized_mode(self) -> None:
        sp = make()
        acquired = fetch(sp, A, batches(0, 99, 10), max_records=15)
        assert acquired == [AcquiredRange(0, 19, 1)]

    def test_record_limit_cuts_exactly_and_leaves_the_batch_tail_available(self) -> None:
        sp = make()
        log = batches(0, 19, 10)
        assert fetch(sp, A, log, max_records=15, mode=AcquireMode.RECORD_LIMIT) == [AcquiredRange(0, 14, 1)]
        assert states(sp) == [(0, 14, ACQUIRED, 1, A), (15, 19, AVAILABLE, 0, None)]
        assert sp.next_fetch_offset() == 15
        assert fetch(sp, B, log, max_records=15, mode=AcquireMode.RECORD_LIMIT) == [AcquiredRange(15, 19, 1)]

    def test_record_limit_on_cached_batch_takes_only_max_records(self) -> None:
        sp = make()
        log = [(0, 9)]
        fetch(sp, A, log)
        sp.expire_locks(LOCK_MS)
        assert fetch(sp, B, log, max_records=3, mode=AcquireMode.RECORD_LIMIT, now=LOCK_MS) == [
            AcquiredRange(0, 2, 2)
        ]

    def test_records_held_by_another_member_are_skipped(self) -> None:
        sp = make()
        log = batches(0, 29, 10)
        fetch(sp, A, log, batch_size=10)
        assert ack(sp, A, (10, 19, [AckType.RELEASE])) == (_codes.NONE, None)
        log += [(30, 39)]
        assert fetch(sp, B, log, batch_size=10) == [AcquiredRange(10, 19, 2), AcquiredRange(30, 39, 1)]
        assert [r.member_id for r in sp.in_flight()] == [A, B, A, B]

    def test_member_id_must_not_be_empty(self) -> None:
        with pytest.raises(ValueError):
            make().acquire("", [(0, 0)], max_records=1, batch_size=1, now_ms=0, lock_duration_ms=LOCK_MS)

    def test_zero_max_records_or_no_batches_acquire_nothing(self) -> None:
        sp = make()
        assert (
            sp.acquire(A, [(0, 9)], max_records=0, batch_size=1, now_ms=0, lock_duration_ms=1).acquired == []
        )
        assert sp.acquire(A, [], max_records=5, batch_size=1, now_ms=0, lock_duration_ms=1).acquired == []
        assert sp.in_flight() == []

    def test_first_fetch_after_latest_reset_starts_inside_a_batch(self) -> None:
        sp = make(start=5)
        assert fetch(sp, A, [(0, 9), (10, 19)]) == [AcquiredRange(5, 19, 1)]
        assert sp.start_offset == 5


class TestInFlightLimit:
    def test_window_full_without_available_records_acquires_nothing(self) -> None:
        sp = make(max_in_flight=100)
        log = batches(0, 299, 50)
        assert fetch(sp, A, log, max_records=100) == [AcquiredRange(0, 99, 1)]
        assert sp.in_flight_count == 100
        assert not sp.can_acquire_records()
        assert not sp.has_acquirable(300)
        assert fetch(sp, B, log) == []

    def test_window_may_overshoot_by_the_tail_of_a_batch(self) -> None:
        sp = make(max_in_flight=100)
        log = batches(0, 299, 30)
        fetch(sp, A, log, max_records=1000)
        assert sp.in_flight_count == 120
        assert fetch(sp, B, log) == []

    def test_released_records_inside_a_full_window_are_redelivered_but_nothing_beyond(self) -> None:
        sp = make(max_in_flight=100)
        log = batches(0, 299, 50)
        fetch(sp, A, log, max_records=100)
        assert ack(sp, A, (50, 99, [AckType.RELEASE])) == (_codes.NONE, None)
        assert sp.has_acquirable(300)
        assert fetch(sp, B, log) == [AcquiredRange(50, 99, 2)]
        assert sp.end_offset == 99

    def test_window_shrinks_as_spso_advances(self) -> None:
        sp = make(max_in_flight=100)
        log = batches(0, 299, 50)
        fetch(sp, A, log, max_records=100)
        ack(sp, A, (0, 49, [AckType.ACCEPT]))
        assert sp.in_flight_count == 50
        assert fetch(sp, B, log) == [AcquiredRange(100, 149, 1)]


class TestThrottledRedelivery:
    """limit 5: throttling from delivery count 3 (= max(2, ceil(5/2))), final delivery alone."""

    def deliver_and_expire(self, sp: SharePartition, log: list[tuple[int, int]], times: int, now: int) -> int:
        for _ in range(times):
            fetch(sp, A, log, now=now)
            now += LOCK_MS
            sp.expire_locks(now)
        return now

    def test_throttled_batch_is_halved(self) -> None:
        sp = make()
        log = [(0, 7)]
        now = self.deliver_and_expire(sp, log, 3, 0)
        assert fetch(sp, A, log, now=now) == [AcquiredRange(0, 3, 4)]
        assert fetch(sp, B, log, now=now) == [AcquiredRange(4, 7, 4)]

    def test_final_delivery_goes_out_alone_then_archives(self) -> None:
        sp = make()
        log = [(0, 7)]
        now = self.deliver_and_expire(sp, log, 3, 0)
        fetch(sp, A, log, now=now)
        fetch(sp, B, log, now=now)
        now += LOCK_MS
        sp.expire_locks(now)
        assert fetch(sp, A, log, now=now) == [AcquiredRange(0, 0, 5)]
        assert fetch(sp, B, log, now=now) == [AcquiredRange(1, 1, 5)]
        assert ack(sp, A, (0, 0, [AckType.RELEASE]), now=now) == (_codes.NONE, None)
        assert sp.state_of(0) is None  # archived at the limit, then SPSO moved past it
        assert sp.start_offset == 1

    def test_throttled_batch_waits_for_a_fetch_of_its_own(self) -> None:
        sp = make()
        log = [(0, 9), (10, 19)]
        fetch(sp, A, log, batch_size=10)
        for _ in range(2):
            ack(sp, A, (10, 19, [AckType.RELEASE]))
            fetch(sp, A, log, batch_size=10)
        ack(sp, A, (0, 9, [AckType.RELEASE]), (10, 19, [AckType.RELEASE]))
        # 0-9 was delivered once, 10-19 three times: 10-19 is throttled and waits.
        assert fetch(sp, B, log, batch_size=10) == [AcquiredRange(0, 9, 2)]
        assert fetch(sp, B, log, batch_size=10) == [AcquiredRange(10, 14, 4)]


class TestReadCommittedAndStaleBatches:
    def test_aborted_transaction_batches_are_archived_not_delivered(self) -> None:
        sp = make()
        result = sp.acquire(
            A,
            [(0, 4), (5, 9), (10, 14)],
            max_records=100,
            batch_size=100,
            now_ms=0,
            lock_duration_ms=LOCK_MS,
            aborted=[(5, 9)],
        )
        assert result.acquired == [AcquiredRange(0, 4, 1), AcquiredRange(10, 14, 1)]
        assert result.count == 10
        assert result.state_changed
        assert sp.state_of(7) is ARCHIVED

    def test_batches_at_or_past_the_isolation_bound_are_not_read(self) -> None:
        sp = make()
        result = sp.acquire(
            A,
            [(0, 4), (5, 9)],
            max_records=100,
            batch_size=100,
            now_ms=0,
            lock_duration_ms=1,
            isolation_bound=5,
        )
        assert result.acquired == [AcquiredRange(0, 4, 1)]

    def test_available_records_missing_from_the_log_are_archived(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 9)])
        ack(sp, A, (0, 9, [AckType.RELEASE]))
        # Compaction removed 0-9: a read from offset 0 returns the next batch.
        result = sp.acquire(B, [(10, 19)], max_records=100, batch_size=100, now_ms=0, lock_duration_ms=1)
        assert result.acquired == [AcquiredRange(10, 19, 1)]
        assert result.state_changed
        assert sp.start_offset == 10


# ------------------------------------------------------------------------------- acknowledgements


class TestAcknowledge:
    def test_accepting_everything_empties_the_window(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 499)])
        result = sp.acknowledge(A, [AckBatch(0, 499, [AckType.ACCEPT])], now_ms=0, lock_duration_ms=LOCK_MS)
        assert (result.error_code, result.state_changed) == (_codes.NONE, True)
        assert sp.in_flight() == []
        assert (sp.start_offset, sp.end_offset, sp.next_fetch_offset()) == (500, 500, 500)
        assert sp.next_deadline() is None

    @pytest.mark.parametrize("ack_type", [AckType.REJECT, AckType.GAP])
    def test_reject_and_gap_archive(self, ack_type: AckType) -> None:
        sp = make()
        fetch(sp, A, [(0, 9)])
        assert ack(sp, A, (5, 9, [ack_type])) == (_codes.NONE, None)
        assert states(sp) == [(0, 4, ACQUIRED, 1, A), (5, 9, ARCHIVED, 1, None)]

    def test_release_makes_records_available_with_the_count_kept(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 9)])
        result = sp.acknowledge(A, [AckBatch(0, 9, [AckType.RELEASE])], now_ms=0, lock_duration_ms=LOCK_MS)
        assert result.records_released
        assert states(sp) == [(0, 9, AVAILABLE, 1, None)]
        assert sp.next_fetch_offset() == 0

    def test_release_at_the_delivery_limit_archives(self) -> None:
        sp = make(limit=2)
        log = [(0, 0)]
        fetch(sp, A, log)
        ack(sp, A, (0, 0, [AckType.RELEASE]))
        assert fetch(sp, A, log) == [AcquiredRange(0, 0, 2)]
        result = sp.acknowledge(A, [AckBatch(0, 0, [AckType.RELEASE])], now_ms=0, lock_duration_ms=LOCK_MS)
        assert not result.records_released
        assert sp.in_flight() == [] and sp.start_offset == 1

    def test_per_offset_types_split_ranges_only_where_they_differ(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 5)])
        types = [AckType.GAP, AckType.ACCEPT, AckType.ACCEPT, AckType.RELEASE, AckType.REJECT, AckType.ACCEPT]
        assert ack(sp, A, (0, 5, types)) == (_codes.NONE, None)
        assert states(sp) == [
            (3, 3, AVAILABLE, 1, None),
            (4, 4, ARCHIVED, 1, None),
            (5, 5, ACKNOWLEDGED, 1, None),
        ]
        assert sp.start_offset == 3

    def test_a_whole_batch_stays_one_range(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 499)])
        ack(sp, A, (0, 99, [AckType.RENEW]))
        assert len(sp.in_flight()) == 2
        ack(sp, A, (0, 99, [AckType.RENEW]), (100, 499, [AckType.RENEW]))
        assert len(sp.in_flight()) == 1
        ack(sp, A, (0, 499, [AckType.ACCEPT]))
        assert sp.in_flight() == [] and sp.start_offset == 500

    def test_acks_from_a_member_that_does_not_hold_the_records_fail(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 9)])
        assert ack(sp, B, (0, 9, [AckType.ACCEPT])) == (
            _codes.INVALID_RECORD_STATE,
            "Member is not the owner of batch record",
        )
        assert ack(sp, B, (3, 4, [AckType.ACCEPT])) == (
            _codes.INVALID_RECORD_STATE,
            "Member is not the owner of offset",
        )
        assert states(sp) == [(0, 9, ACQUIRED, 1, A)]

    def test_ack_after_lock_expiry_fails(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 9)])
        sp.expire_locks(LOCK_MS)
        assert ack(sp, A, (0, 9, [AckType.ACCEPT])) == (
            _codes.INVALID_RECORD_STATE,
            "The batch cannot be acknowledged. The batch is not in the acquired state.",
        )
        assert ack(sp, A, (0, 4, [AckType.ACCEPT]))[0] == _codes.INVALID_RECORD_STATE

    def test_acknowledging_twice_fails(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 9)])
        ack(sp, A, (5, 9, [AckType.ACCEPT]))
        assert ack(sp, A, (5, 9, [AckType.ACCEPT]))[0] == _codes.INVALID_RECORD_STATE

    def test_ranges_past_the_window_are_invalid_requests(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 9)])
        assert ack(sp, A, (5, 12, [AckType.ACCEPT])) == (
            _codes.INVALID_REQUEST,
            "Batch record not found. The last offset in request is past acquired records.",
        )
        assert ack(sp, A, (11, 12, [AckType.ACCEPT])) == (
            _codes.INVALID_REQUEST,
            "Batch record not found. The first offset in request is past acquired records.",
        )

    def test_acks_with_an_empty_window_fail_with_invalid_record_state(self) -> None:
        sp = make()
        assert ack(sp, A, (0, 0, [AckType.ACCEPT]))[0] == _codes.INVALID_RECORD_STATE

    def test_a_failing_batch_rolls_back_the_whole_partition(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 9)])
        before = states(sp)
        result = ack(sp, A, (0, 4, [AckType.ACCEPT]), (5, 20, [AckType.ACCEPT]))
        assert result[0] == _codes.INVALID_REQUEST
        assert states(sp) == before
        assert sp.start_offset == 0

    def test_offsets_below_spso_are_skipped(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 9)])
        ack(sp, A, (0, 4, [AckType.ACCEPT]))
        assert ack(sp, A, (0, 4, [AckType.ACCEPT])) == (_codes.NONE, None)
        assert ack(sp, A, (3, 6, [AckType.ACCEPT])) == (_codes.NONE, None)
        assert sp.start_offset == 7

    def test_overlapping_batches_fail(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 9)])
        assert ack(sp, A, (0, 4, [1]), (4, 6, [1]))[0] == _codes.INVALID_RECORD_STATE
        assert states(sp) == [(0, 9, ACQUIRED, 1, A)]

    @pytest.mark.parametrize("types", [[], [5], [1, 1]])
    def test_malformed_ack_types_are_invalid_requests(self, types: list[int]) -> None:
        sp = make()
        fetch(sp, A, [(0, 9)])
        assert ack(sp, A, (0, 2, types))[0] == _codes.INVALID_REQUEST

    def test_check_acks_reports_without_applying(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 9)])
        assert sp.check_acks(A, [AckBatch(0, 9, [AckType.ACCEPT])]) is None
        error = sp.check_acks(B, [AckBatch(0, 9, [AckType.ACCEPT])])
        assert error is not None and error.error_code == _codes.INVALID_RECORD_STATE
        assert states(sp) == [(0, 9, ACQUIRED, 1, A)]


class TestRenew:
    def test_renew_restarts_the_lock_without_changing_state(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 9)], now=0)
        result = sp.acknowledge(A, [AckBatch(0, 4, [AckType.RENEW])], now_ms=20_000, lock_duration_ms=LOCK_MS)
        assert (result.error_code, result.state_changed) == (_codes.NONE, False)
        sp.expire_locks(LOCK_MS)
        assert states(sp) == [(0, 4, ACQUIRED, 1, A), (5, 9, AVAILABLE, 1, None)]
        assert sp.next_deadline() == 20_000 + LOCK_MS
        sp.expire_locks(20_000 + LOCK_MS)
        assert states(sp) == [(0, 9, AVAILABLE, 1, None)]

    def test_renew_needs_the_records_held(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 9)])
        assert ack(sp, B, (0, 9, [AckType.RENEW]))[0] == _codes.INVALID_RECORD_STATE


# -------------------------------------------------------------------------------- timers, releases


class TestLockExpiry:
    def test_nothing_expires_before_the_deadline(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 9)], now=1000)
        assert sp.next_deadline() == 1000 + LOCK_MS
        assert sp.expire_locks(1000 + LOCK_MS - 1).offsets_changed == 0
        assert states(sp) == [(0, 9, ACQUIRED, 1, A)]

    def test_expiry_makes_records_available_with_the_count_kept(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 9)])
        result = sp.expire_locks(LOCK_MS)
        assert (result.offsets_changed, result.records_released, result.state_changed) == (10, True, True)
        assert states(sp) == [(0, 9, AVAILABLE, 1, None)]
        assert sp.next_deadline() is None

    def test_expiry_at_the_limit_archives_and_moves_spso(self) -> None:
        sp = make(limit=2)
        log = [(0, 9)]
        fetch(sp, A, log)
        sp.expire_locks(LOCK_MS)
        fetch(sp, A, log, now=LOCK_MS)
        result = sp.expire_locks(2 * LOCK_MS)
        assert not result.records_released
        assert sp.in_flight() == [] and sp.start_offset == 10

    def test_acknowledged_locks_are_invalidated_lazily(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 9)], now=0)
        fetch(sp, B, [(0, 9), (10, 19)], now=5)
        ack(sp, A, (0, 9, [AckType.ACCEPT]))
        assert sp.next_deadline() == 5 + LOCK_MS


class TestReleaseMember:
    """Share session end (final epoch or disconnect), Kafka 4.2+ (KAFKA-19972): the delivery
    count is kept, and records on their last permitted delivery are ARCHIVED."""

    def test_session_close_releases_with_the_delivery_count_kept(self) -> None:
        sp = make()
        log = [(0, 9), (10, 19)]
        fetch(sp, A, [(0, 9)])
        fetch(sp, B, log)
        result = sp.release_member(A)
        assert (result.offsets_changed, result.records_released, result.state_changed) == (10, True, True)
        assert states(sp) == [(0, 9, AVAILABLE, 1, None), (10, 19, ACQUIRED, 1, B)]
        assert sp.next_fetch_offset() == 0
        # The next member gets them on their second delivery.
        assert fetch(sp, B, log) == [AcquiredRange(0, 9, 2)]
        nothing = sp.release_member("nobody")
        assert (nothing.offsets_changed, nothing.records_released, nothing.state_changed) == (0, False, False)

    def test_session_close_at_the_delivery_limit_archives(self) -> None:
        sp = make(limit=2)
        log = [(0, 0)]
        assert fetch(sp, A, log) == [AcquiredRange(0, 0, 1)]
        sp.expire_locks(LOCK_MS)
        assert fetch(sp, A, log, now=LOCK_MS) == [AcquiredRange(0, 0, 2)]
        result = sp.release_member(A)
        assert (result.offsets_changed, result.records_released, result.state_changed) == (1, False, True)
        # Archived and finished: SPSO moves past it, and no lock is left to expire.
        assert (sp.start_offset, sp.in_flight(), sp.next_deadline()) == (1, [], None)
        assert fetch(sp, B, log, now=LOCK_MS) == []
        assert sp.expire_locks(3 * LOCK_MS).offsets_changed == 0

    def test_session_close_archives_only_what_reached_the_limit(self) -> None:
        sp = make(limit=2)
        log = [(0, 4)]
        fetch(sp, A, log)
        assert ack(sp, A, (0, 1, [AckType.RELEASE])) == (_codes.NONE, None)
        assert fetch(sp, A, log, now=10) == [AcquiredRange(0, 1, 2)]
        result = sp.release_member(A)
        assert (result.offsets_changed, result.records_released) == (5, True)
        assert sp.start_offset == 2
        assert states(sp) == [(2, 4, AVAILABLE, 1, None)]
        assert sp.delivery_complete_count == 0
        assert fetch(sp, B, log, now=20) == [AcquiredRange(2, 4, 2)]

    def test_session_close_archives_behind_another_members_records(self) -> None:
        sp = make(limit=1)
        log = [(0, 4), (5, 9)]
        fetch(sp, B, [(0, 4)])
        fetch(sp, A, log)
        sp.release_member(A)
        # Archived after B's records: SPSO waits for them, then moves past both.
        assert states(sp) == [(0, 4, ACQUIRED, 1, B), (5, 9, ARCHIVED, 1, None)]
        assert (sp.start_offset, sp.delivery_complete_count) == (0, 5)
        assert sp.snapshot().batches == [
            PersistedBatch(0, 4, int(AVAILABLE), 0),
            PersistedBatch(5, 9, int(ARCHIVED), 1),
        ]
        assert ack(sp, B, (0, 4, [AckType.ACCEPT])) == (_codes.NONE, None)
        assert (sp.start_offset, sp.in_flight()) == (10, [])


class TestLogStartOffset:
    def test_records_below_a_new_log_start_are_archived(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 9), (10, 19)], batch_size=10)
        ack(sp, A, (0, 4, [AckType.RELEASE]))
        result = sp.update_log_start_offset(7)
        assert result.state_changed and result.offsets_changed == 7
        assert sp.start_offset == 7
        assert states(sp)[0] == (7, 9, ACQUIRED, 1, A)
        # Acks for records that were deleted succeed silently.
        assert ack(sp, A, (0, 9, [AckType.ACCEPT])) == (_codes.NONE, None)
        assert sp.start_offset == 10

    def test_a_log_start_past_the_window_empties_it(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 9)])
        sp.update_log_start_offset(50)
        assert (sp.start_offset, sp.end_offset, sp.in_flight()) == (50, 50, [])
        assert sp.next_fetch_offset() == 50
        assert sp.next_deadline() is None

    def test_an_older_log_start_changes_nothing(self) -> None:
        sp = make(start=10)
        assert not sp.update_log_start_offset(5).state_changed
        assert sp.start_offset == 10


# ------------------------------------------------------------------ initialisation and persistence


class TestInitialize:
    def init(self, reset: str, **kwargs: object) -> SharePartition:
        params: dict[str, object] = {
            "reset": AutoOffsetReset.parse(reset),
            "log_start_offset": 3,
            "high_watermark": 42,
            "now_ms": 10_000_000,
            "max_in_flight_records": 2000,
            "max_delivery_count": 5,
        }
        params.update(kwargs)
        persisted = params.pop("persisted", None)
        return SharePartition.initialize(persisted, **params)  # type: ignore[arg-type]

    def test_latest_starts_at_the_high_watermark(self) -> None:
        assert self.init("latest").start_offset == 42

    def test_earliest_starts_at_the_log_start(self) -> None:
        assert self.init("earliest").start_offset == 3

    def test_by_duration_looks_up_now_minus_the_duration(self) -> None:
        asked: list[int] = []

        def lookup(timestamp: int) -> int | None:
            asked.append(timestamp)
            return 17

        assert self.init("by_duration:PT1H", offset_for_timestamp=lookup).start_offset == 17
        assert asked == [10_000_000 - 3_600_000]

    def test_by_duration_without_a_matching_offset_fails_the_load(self) -> None:
        with pytest.raises(OffsetNotAvailableError):
            self.init("by_duration:PT1H", offset_for_timestamp=lambda _ts: None)

    def test_uninitialised_persisted_state_applies_the_reset(self) -> None:
        sp = self.init("earliest", persisted=PersistedState(state_epoch=4, start_offset=-1))
        assert (sp.start_offset, sp.state_epoch) == (3, 4)

    def test_persisted_state_wins_over_the_reset_and_gaps_are_refetchable(self) -> None:
        persisted = PersistedState(
            state_epoch=2,
            start_offset=10,
            batches=[PersistedBatch(15, 19, 2, 1), PersistedBatch(20, 24, 0, 3)],
        )
        sp = self.init("latest", persisted=persisted)
        assert sp.start_offset == 10
        assert states(sp) == [
            (10, 14, AVAILABLE, 0, None),
            (15, 19, ACKNOWLEDGED, 1, None),
            (20, 24, AVAILABLE, 3, None),
        ]
        assert sp.next_fetch_offset() == 10 and sp.end_offset == 24

    def test_persisted_start_below_the_log_start_moves_up(self) -> None:
        sp = self.init("latest", persisted=PersistedState(state_epoch=0, start_offset=0))
        assert sp.start_offset == 3

    def test_terminal_prefix_in_persisted_state_moves_spso(self) -> None:
        persisted = PersistedState(0, 10, [PersistedBatch(10, 14, 4, 1), PersistedBatch(15, 19, 0, 1)])
        sp = SharePartition.restore(persisted, max_in_flight_records=100, max_delivery_count=5)
        assert sp.start_offset == 15

    def test_batches_below_the_start_offset_are_rejected(self) -> None:
        persisted = PersistedState(0, 10, [PersistedBatch(5, 14, 0, 1)])
        with pytest.raises(InvalidPersistedStateError):
            SharePartition.restore(persisted, max_in_flight_records=100, max_delivery_count=5)


class TestSnapshot:
    def test_acquired_is_persisted_as_available_without_the_current_delivery(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 9), (10, 19)], batch_size=10)
        ack(sp, A, (10, 14, [AckType.ACCEPT]), (15, 19, [AckType.RELEASE]))
        snapshot = sp.snapshot()
        assert snapshot.start_offset == 0
        assert snapshot.batches == [
            PersistedBatch(0, 9, int(AVAILABLE), 0),
            PersistedBatch(10, 14, int(ACKNOWLEDGED), 1),
            PersistedBatch(15, 19, int(AVAILABLE), 1),
        ]
        assert snapshot.delivery_complete_count == 5

    def test_restore_of_a_snapshot_keeps_every_persistable_state(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 9), (10, 19)], batch_size=10)
        ack(sp, A, (0, 4, [AckType.RELEASE]), (10, 14, [AckType.REJECT]))
        restored = SharePartition.restore(sp.snapshot(), max_in_flight_records=2000, max_delivery_count=5)
        assert restored.start_offset == 0
        assert states(restored) == [
            (0, 4, AVAILABLE, 1, None),
            (5, 9, AVAILABLE, 0, None),
            (10, 14, ARCHIVED, 1, None),
            (15, 19, AVAILABLE, 0, None),
        ]

    def test_snapshot_encodes_with_msgspec(self) -> None:
        import msgspec

        sp = make()
        fetch(sp, A, [(0, 9)])
        data = msgspec.json.encode(sp.snapshot())
        assert msgspec.json.decode(data, type=PersistedState) == sp.snapshot()


class TestOffsetsViews:
    def test_lag_and_delivery_complete_count(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 9)])
        ack(sp, A, (5, 9, [AckType.ACCEPT]))
        assert sp.delivery_complete_count == 5
        assert sp.lag(20) == 20 - 0 - 5

    def test_reset_start_offset_drops_all_state(self) -> None:
        sp = make()
        fetch(sp, A, [(0, 9)])
        sp.reset_start_offset(100, state_epoch=7)
        assert (sp.start_offset, sp.end_offset, sp.in_flight(), sp.state_epoch) == (100, 100, [], 7)
        assert sp.next_deadline() is None
        assert sp.has_acquirable(101) and not sp.has_acquirable(100)


# ------------------------------------------------------------------------ request-level validation


class TestValidateAckBatches:
    @pytest.mark.parametrize(
        ("batches_", "version", "renew", "ok"),
        [
            ([AckBatch(0, 9, [1])], 1, False, True),
            ([AckBatch(5, 4, [1])], 1, False, False),
            ([AckBatch(0, 4, [1]), AckBatch(3, 6, [1])], 1, False, False),
            # Sharing an offset passes (Kafka: firstOffset < prevEndOffset); the share-partition
            # then answers INVALID_RECORD_STATE (tests/differential).
            ([AckBatch(0, 4, [1]), AckBatch(4, 6, [1])], 1, False, True),
            ([AckBatch(0, 4, [])], 1, False, False),
            ([AckBatch(0, 4, [1, 2])], 1, False, False),
            ([AckBatch(0, 1, [1, 2])], 1, False, True),
            ([AckBatch(0, 1, [4])], 1, True, False),
            ([AckBatch(0, 1, [4])], 2, False, False),
            ([AckBatch(0, 1, [4])], 2, True, True),
            ([AckBatch(0, 1, [5])], 2, True, False),
            ([AckBatch(0, 1, [-1])], 2, True, False),
        ],
    )
    def test_rules(self, batches_: list[AckBatch], version: int, renew: bool, ok: bool) -> None:
        assert (validate_ack_batches(batches_, version=version, is_renew_ack=renew) is None) is ok
