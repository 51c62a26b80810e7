"""SharePartition against a per-offset reference model (hypothesis stateful testing).

The model tracks every offset on its own with the plain section-4 rules. Acquisition decides
*which* offsets to hand out (batching, throttling, limits), so the model checks that choice
is legal instead of predicting it; every other transition the model computes independently,
and after each step the partition's ranges must match the model offset by offset.
"""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from aioshare.broker import _codes
from aioshare.broker.share_partition import AckBatch, SharePartition
from aioshare.protocol.types import AckType, AcquireMode, RecordState

LOCK_MS = 1000
MEMBERS = ("m1", "m2", "m3")
TERMINAL = (RecordState.ACKNOWLEDGED, RecordState.ARCHIVED)


@dataclasses.dataclass
class Offset:
    state: RecordState
    delivery_count: int
    holder: str | None = None
    deadline: int | None = None


class SharePartitionModel(RuleBasedStateMachine):
    @initialize(
        limit=st.sampled_from([2, 3, 5, 10]),
        max_in_flight=st.sampled_from([8, 40, 2000]),
        initial_batches=st.lists(st.integers(1, 12), min_size=1, max_size=5),
    )
    def setup(self, limit: int, max_in_flight: int, initial_batches: list[int]) -> None:
        self.limit = limit
        self.sp = SharePartition(
            start_offset=0, max_in_flight_records=max_in_flight, max_delivery_count=limit
        )
        self.log: list[tuple[int, int]] = []
        self.log_start = 0
        self.now = 0
        self.start = 0
        self.offsets: dict[int, Offset] = {}
        self.highest_fetched = -1
        for size in initial_batches:
            self.produce(size)

    # ------------------------------------------------------------------ model helpers

    def log_end(self) -> int:
        return self.log[-1][1] + 1 if self.log else 0

    def advance_start(self) -> None:
        while self.offsets and self.start in self.offsets and self.offsets[self.start].state in TERMINAL:
            del self.offsets[self.start]
            self.start += 1
        if not self.offsets:
            self.start = max(self.start, self.highest_fetched + 1)

    def held_by(self, member: str) -> list[int]:
        return sorted(
            o for o, rec in self.offsets.items() if rec.state is RecordState.ACQUIRED and rec.holder == member
        )

    def actual(self) -> dict[int, tuple[RecordState, int, str | None]]:
        expanded = {}
        for run in self.sp.in_flight():
            for offset in range(run.first_offset, run.last_offset + 1):
                expanded[offset] = (run.state, run.delivery_count, run.member_id)
        return expanded

    def expected(self) -> dict[int, tuple[RecordState, int, str | None]]:
        return {o: (rec.state, rec.delivery_count, rec.holder) for o, rec in self.offsets.items()}

    # ------------------------------------------------------------------ rules

    @rule(size=st.integers(1, 12))
    def produce(self, size: int) -> None:
        first = self.log_end()
        self.log.append((first, first + size - 1))

    @precondition(lambda self: bool(self.log))
    @rule(
        member=st.sampled_from(MEMBERS),
        max_records=st.integers(1, 30),
        batch_size=st.integers(1, 30),
        budget=st.integers(1, 6),
        record_limit=st.booleans(),
    )
    def fetch(self, member: str, max_records: int, batch_size: int, budget: int, record_limit: bool) -> None:
        fetch_offset = self.sp.next_fetch_offset()
        readable = [b for b in self.log if b[1] >= max(fetch_offset, self.log_start)][:budget]
        before = self.expected()
        result = self.sp.acquire(
            member,
            readable,
            max_records=max_records,
            batch_size=batch_size,
            now_ms=self.now,
            lock_duration_ms=LOCK_MS,
            mode=AcquireMode.RECORD_LIMIT if record_limit else AcquireMode.BATCH_OPTIMIZED,
        )
        if record_limit:
            assert result.count <= max_records
        acquired = 0
        for first, last, delivery_count in result.acquired:
            for offset in range(first, last + 1):
                acquired += 1
                assert self.log_start <= offset < self.log_end()
                previous = self.offsets.get(offset)
                if previous is None:
                    # Never handed out before: must be beyond everything fetched so far.
                    assert offset > self.highest_fetched
                    previous_count = 0
                else:
                    assert previous.state is RecordState.AVAILABLE, (offset, previous)
                    previous_count = previous.delivery_count
                assert delivery_count == previous_count + 1
                self.offsets[offset] = Offset(
                    RecordState.ACQUIRED, delivery_count, member, self.now + LOCK_MS
                )
        assert acquired == result.count
        # Offsets tracked now but not handed out: the untaken tail of a record_limit batch.
        for offset, (state, count, holder) in self.actual().items():
            if offset not in self.offsets:
                assert offset not in before and (state, count, holder) == (RecordState.AVAILABLE, 0, None)
                self.offsets[offset] = Offset(RecordState.AVAILABLE, 0)
        if self.offsets:
            self.highest_fetched = max(self.highest_fetched, max(self.offsets))
        self.advance_start()

    @rule(member=st.sampled_from(MEMBERS), data=st.data())
    def acknowledge(self, member: str, data: st.DataObject) -> None:
        held = self.held_by(member)
        if not held:
            return
        chosen = sorted(data.draw(st.sets(st.sampled_from(held), min_size=1)))
        ack_types = st.sampled_from(
            [AckType.ACCEPT, AckType.RELEASE, AckType.REJECT, AckType.GAP, AckType.RENEW]
        )
        batches: list[AckBatch] = []
        run: list[int] = []
        for offset in [*chosen, -2]:
            if run and offset != run[-1] + 1:
                if data.draw(st.booleans()):
                    types = [data.draw(ack_types)]
                else:
                    types = [data.draw(ack_types) for _ in run]
                batches.append(AckBatch(run[0], run[-1], types))
                run = []
            run.append(offset)
        result = self.sp.acknowledge(member, batches, now_ms=self.now, lock_duration_ms=LOCK_MS)
        assert result.error_code == _codes.NONE, result
        for batch in batches:
            for index, offset in enumerate(range(batch.first_offset, batch.last_offset + 1)):
                ack_type = batch.ack_types[0] if len(batch.ack_types) == 1 else batch.ack_types[index]
                record = self.offsets[offset]
                if ack_type == AckType.RENEW:
                    record.deadline = self.now + LOCK_MS
                elif ack_type == AckType.ACCEPT:
                    self.offsets[offset] = Offset(RecordState.ACKNOWLEDGED, record.delivery_count)
                elif ack_type == AckType.RELEASE and record.delivery_count < self.limit:
                    self.offsets[offset] = Offset(RecordState.AVAILABLE, record.delivery_count)
                else:
                    self.offsets[offset] = Offset(RecordState.ARCHIVED, record.delivery_count)
        self.advance_start()

    @rule(member=st.sampled_from(MEMBERS), data=st.data())
    def acknowledge_what_is_not_held(self, member: str, data: st.DataObject) -> None:
        foreign = sorted(
            o
            for o, rec in self.offsets.items()
            if rec.state is not RecordState.ACQUIRED or rec.holder != member
        )
        if not foreign:
            return
        offset = data.draw(st.sampled_from(foreign))
        before = self.actual()
        result = self.sp.acknowledge(
            member, [AckBatch(offset, offset, [AckType.ACCEPT])], now_ms=self.now, lock_duration_ms=LOCK_MS
        )
        assert result.error_code == _codes.INVALID_RECORD_STATE
        assert self.actual() == before

    @rule(delta=st.integers(0, 2 * LOCK_MS))
    def time_passes(self, delta: int) -> None:
        self.now += delta
        self.sp.expire_locks(self.now)
        for offset, record in list(self.offsets.items()):
            if (
                record.state is RecordState.ACQUIRED
                and record.deadline is not None
                and record.deadline <= self.now
            ):
                state = RecordState.AVAILABLE if record.delivery_count < self.limit else RecordState.ARCHIVED
                self.offsets[offset] = Offset(state, record.delivery_count)
        self.advance_start()

    @rule(member=st.sampled_from(MEMBERS))
    def session_closes(self, member: str) -> None:
        # Kafka 4.2+ (KAFKA-19972): the delivery count is kept, ARCHIVED at the limit.
        self.sp.release_member(member)
        for offset in self.held_by(member):
            count = self.offsets[offset].delivery_count
            state = RecordState.AVAILABLE if count < self.limit else RecordState.ARCHIVED
            self.offsets[offset] = Offset(state, count)
        self.advance_start()

    @precondition(lambda self: bool(self.log))
    @rule(step=st.integers(1, 15))
    def log_start_moves(self, step: int) -> None:
        self.log_start = min(self.log_end(), self.log_start + step)
        self.sp.update_log_start_offset(self.log_start)
        if self.log_start > self.start:
            for offset in [o for o in self.offsets if o < self.log_start]:
                del self.offsets[offset]
            self.start = self.log_start
            self.highest_fetched = max(self.highest_fetched, self.log_start - 1)
            self.advance_start()

    @rule()
    def leader_restarts(self) -> None:
        self.sp = SharePartition.restore(
            self.sp.snapshot(),
            max_in_flight_records=self.sp.max_in_flight_records,
            max_delivery_count=self.limit,
        )
        for offset, record in self.offsets.items():
            if record.state is RecordState.ACQUIRED:
                # Acquisition is never persisted: the record comes back as before this delivery.
                self.offsets[offset] = Offset(RecordState.AVAILABLE, record.delivery_count - 1)
        self.advance_start()

    # ------------------------------------------------------------------ invariants

    @invariant()
    def matches_the_model(self) -> None:
        if not hasattr(self, "sp"):
            return
        assert self.actual() == self.expected()
        assert self.sp.start_offset == self.start

    @invariant()
    def everything_below_spso_is_finished_and_nothing_is_lost(self) -> None:
        if not hasattr(self, "sp"):
            return
        tracked = self.actual()
        assert all(offset >= self.sp.start_offset for offset in tracked)
        for offset in range(self.sp.start_offset, self.log_end()):
            # Below SPSO: terminal. In the window: tracked. Past SPEO: still in the log to fetch.
            assert offset in tracked or offset > self.sp.end_offset or not tracked, offset

    @invariant()
    def delivery_counts_stay_within_the_limit(self) -> None:
        if not hasattr(self, "sp"):
            return
        assert all(0 <= count <= self.limit for _state, count, _holder in self.actual().values())

    @invariant()
    def available_records_have_deliveries_left(self) -> None:
        if not hasattr(self, "sp"):
            return
        assert all(
            count < self.limit
            for state, count, _holder in self.actual().values()
            if state is RecordState.AVAILABLE
        )

    @invariant()
    def timers_and_fetch_position_agree_with_the_state(self) -> None:
        if not hasattr(self, "sp"):
            return
        deadlines = [
            rec.deadline
            for rec in self.offsets.values()
            if rec.state is RecordState.ACQUIRED and rec.deadline
        ]
        assert self.sp.next_deadline() == (min(deadlines) if deadlines else None)
        available = [o for o, rec in self.offsets.items() if rec.state is RecordState.AVAILABLE]
        if available:
            assert self.sp.next_fetch_offset() == min(available)
        elif self.offsets:
            assert self.sp.next_fetch_offset() == self.sp.end_offset + 1


SharePartitionModel.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSharePartitionModel = SharePartitionModel.TestCase
