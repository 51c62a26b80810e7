"""LeaderSession (sans-IO): the next request, what answers and failures do, the events out.

No event loop, no sockets: the tests pass the time in, build requests, hand the core
answers as a broker would, and read the events it emits.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from aioshare.client.connection import RequestNotSentError
from aioshare.protocol.errors import (
    ErrorCode,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
    UnsupportedVersionError,
)
from aioshare.protocol.messages import (
    ShareAcknowledgeRequest,
    ShareAcknowledgeResponse,
    ShareFetchRequest,
    ShareFetchResponse,
)
from aioshare.protocol.record_reader import RecordFields
from aioshare.protocol.records import RecordToWrite, encode_batch
from aioshare.protocol.types import AckType, AcquireMode, TopicIdPartition, TopicPartition
from aioshare.share.ack_tracker import AckInDoubtError, AckResult, AckStatus, AckTracker
from aioshare.share.buffer import ReadyBuffer
from aioshare.share.capacity import Capacity
from aioshare.share.delivery import Acquired
from aioshare.share.demand import Demand
from aioshare.share.leader_session import (
    Delivered,
    FetchConfig,
    FetchEvent,
    Kind,
    LeaderSession,
    LockDuration,
    Misplaced,
    Outgoing,
    RecordsLost,
    RefreshMetadata,
    RenewUnsupportedError,
    SessionFailed,
    Turn,
)
from aioshare.share.leases import LeaseTable
from aioshare.share.message import DeliveryContext, Message

NODE = 1
TOPIC_ID = uuid.UUID(int=7)
TP = TopicIdPartition(TOPIC_ID, 0)
TP1 = TopicIdPartition(TOPIC_ID, 1)
LOCK_MS = 30_000


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """A LeaderSession with a real AckTracker, LeaseTable and Capacity on a fake clock."""

    def __init__(
        self,
        *,
        max_in_flight: int = 100,
        acquire_mode: AcquireMode = AcquireMode.BATCH_OPTIMIZED,
        record_limit_if_served: bool = False,
    ):
        self.clock = Clock()
        self.results: list[AckResult] = []
        self.leases = LeaseTable()
        self.capacity = Capacity(max_in_flight, lambda: self.leases.held_count)
        self.tracker = AckTracker(
            self.leases,
            lambda tp: TopicPartition("jobs", tp.partition),
            linger=0.005,
            capacity=self.capacity,
            on_ack_result=self.results.extend,
            clock=self.clock,
        )
        self.config = FetchConfig(
            group_id="g",
            member_id="m" * 22,
            max_poll_records=10,
            max_wait_ms=500,
            min_bytes=1,
            max_bytes=1 << 20,
            acquire_mode=acquire_mode,
            request_timeout=30.0,
            record_limit_if_served=record_limit_if_served,
        )
        self.core = LeaderSession(
            NODE,
            config=self.config,
            tracker=self.tracker,
            capacity=self.capacity,
            make_messages=self.make_messages,
            topic_name=lambda topic_id: "jobs" if topic_id == TOPIC_ID else None,
        )
        self.log: list[bytes] = []  # encoded batches, offset order
        self.end = 0

    def make_messages(
        self,
        tp: TopicIdPartition,
        runs: list[tuple[Acquired, list[RecordFields]]],
        deadline: float,
        out: ReadyBuffer,
    ) -> None:
        ctx = DeliveryContext("jobs", tp, self.tracker, None, None)
        for acquired, records in runs:
            out.add(ctx, records, acquired.delivery_count, deadline, None)

    def produce(self, n: int) -> None:
        self.log.append(
            encode_batch([RecordToWrite(None, b"v%d" % i) for i in range(n)], base_offset=self.end)
        )
        self.end += n

    def events(self) -> list[FetchEvent]:
        return self.core.take_events()

    def fetch_answer(
        self,
        first: int,
        last: int,
        *,
        tp: TopicIdPartition = TP,
        delivery_count: int = 1,
        error_code: int = 0,
        partition_error: int = 0,
        ack_error: int = 0,
    ) -> ShareFetchResponse:
        part = ShareFetchResponse.PartitionData(
            partition_index=tp.partition, error_code=partition_error, acknowledge_error_code=ack_error
        )
        if last >= first:
            part.acquired_records = [
                ShareFetchResponse.AcquiredRecords(
                    first_offset=first, last_offset=last, delivery_count=delivery_count
                )
            ]
            part.records = b"".join(self.log)
        return ShareFetchResponse(
            error_code=error_code,
            acquisition_lock_timeout_ms=LOCK_MS,
            responses=[ShareFetchResponse.ShareFetchableTopicResponse(topic_id=TOPIC_ID, partitions=[part])],
        )

    def next_out(self) -> Outgoing:
        """The request the core chooses now, built for a v2 connection."""
        turn = self.core.next_request(self.clock())
        assert isinstance(turn, Turn), turn
        out = self.core.build(turn, versions(), self.clock())
        assert out is not None
        return out

    def fetch(self, first: int, last: int, **kwargs: Any) -> list[FetchEvent]:
        """One whole turn: choose a fetch, build it, and answer it."""
        turn = self.core.next_request(self.clock())
        assert isinstance(turn, Turn) and turn.kind is Kind.FETCH, turn
        out = self.core.build(turn, versions(), self.clock())
        assert out is not None
        self.clock.now += 0.001
        self.core.answered(out, self.fetch_answer(first, last, **kwargs), self.clock())
        return self.events()


def versions(share_fetch: int = 2, share_acknowledge: int = 2) -> Any:
    return {
        ShareFetchRequest.API_KEY: share_fetch,
        ShareAcknowledgeRequest.API_KEY: share_acknowledge,
    }.__getitem__


def acknowledged(tp: TopicIdPartition) -> ShareAcknowledgeResponse:
    """A ShareAcknowledge answer applying every ack it carried for ``tp``."""
    return ShareAcknowledgeResponse(
        responses=[
            ShareAcknowledgeResponse.ShareAcknowledgeTopicResponse(
                topic_id=tp.topic_id,
                partitions=[ShareAcknowledgeResponse.PartitionData(partition_index=tp.partition)],
            )
        ]
    )


def delivered(h: Harness, events: list[FetchEvent]) -> list[Message]:
    """The records the events deliver, handed out as the consumer does (still held)."""
    out: list[Message] = []
    for e in events:
        if isinstance(e, Delivered):
            e.records.take_held(out, len(out) + len(e.records), h.leases, h.clock())
    return out


def test_a_fetch_asks_for_all_it_may_and_its_delivery_says_how_many_it_asked_for() -> None:
    # The demand (not max_poll_records) sizes a fetch: more than a batch while the application
    # outpaces round trips (demand.py); here, with no demand attached, the ceiling alone.
    h = Harness(max_in_flight=40)
    h.core.set_partitions({TP})
    h.produce(40)
    events = h.fetch(0, 29)
    [delivery] = [e for e in events if isinstance(e, Delivered)]
    assert (delivery.asked, len(delivery.records)) == (40, 30)
    assert h.config.max_poll_records == 10


def test_a_fetch_to_a_leader_whose_last_fetch_brought_nothing_is_speculative() -> None:
    h = Harness(max_in_flight=40)
    h.core.set_partitions({TP})
    assert h.core.next_request(h.clock()) == Turn(Kind.FETCH, reserved=40, speculative=False)
    h.capacity.unreserve(40)
    h.fetch(0, -1)  # answered with nothing
    turn = h.core.next_request(h.clock())
    assert turn == Turn(Kind.FETCH, reserved=40, speculative=True)
    assert (h.capacity.reserved, h.capacity.speculative) == (40, 40)
    h.core.release(turn)
    assert (h.capacity.reserved, h.capacity.speculative) == (0, 0)
    h.produce(5)
    h.fetch(0, 4)
    turn = h.core.next_request(h.clock())
    assert isinstance(turn, Turn) and not turn.speculative and turn.reserved == 35


def demand_harness() -> tuple[Harness, Demand]:
    h = Harness(max_in_flight=40)
    d = Demand()
    h.capacity.demand = d
    h.core.set_partitions({TP})
    return h, d


def test_a_fetch_for_a_waiting_caller_long_polls_and_a_fetch_ahead_does_not() -> None:
    h, d = demand_harness()
    assert h.core.next_request(h.clock()) is None  # nobody asked
    d.begin(h.clock())
    d.wait(10)
    out = h.next_out()
    assert isinstance(out.request, ShareFetchRequest)
    assert (out.request.max_wait_ms, out.request.max_records) == (500, 10)
    h.produce(10)
    h.core.answered(out, h.fetch_answer(0, 9), h.clock())
    h.events()
    d.end(waited=10, took=10, batch=10, now=h.clock())  # it keeps up: fetch the next batch ahead
    out = h.next_out()
    assert isinstance(out.request, ShareFetchRequest)
    assert (out.request.max_wait_ms, out.request.max_records) == (0, 10)
    # Nothing there: no more fetching ahead (no spinning) until a caller waits again.
    h.core.answered(out, h.fetch_answer(0, -1), h.clock())
    assert h.core.next_request(h.clock()) is None
    d.begin(h.clock())
    d.wait(10)
    out = h.next_out()
    assert isinstance(out.request, ShareFetchRequest) and out.request.max_wait_ms == 500


def test_acks_go_before_a_long_poll_to_a_leader_that_had_nothing_not_on_it() -> None:
    # Riding a long poll that waits out MaxWaitMs, they (and a commit() awaiting them) would
    # wait as long: found by a commit held 10 s behind an idle leader's long poll.
    h, d = demand_harness()
    d.begin(h.clock())
    d.wait(10)
    h.produce(10)
    h.core.answered(h.next_out(), h.fetch_answer(0, 9), h.clock())
    msgs = delivered(h, h.events())
    d.end(waited=10, took=10, batch=10, now=h.clock())
    fetch_ahead = h.next_out()
    h.core.answered(fetch_ahead, h.fetch_answer(0, -1), h.clock())  # the leader has no more
    for m in msgs:
        m.accept()
    d.begin(h.clock())
    d.wait(10)
    acks = h.next_out()
    assert acks.turn.kind is Kind.ACKNOWLEDGE and isinstance(acks.request, ShareAcknowledgeRequest)
    assert h.capacity.reserved == 0
    h.core.answered(acks, acknowledged(TP), h.clock())
    assert [(r.first_offset, r.last_offset, r.status) for r in h.results] == [(0, 9, AckStatus.APPLIED)]
    long_poll = h.next_out()  # the acks are settled: nothing more to send first
    assert isinstance(long_poll.request, ShareFetchRequest) and long_poll.request.max_wait_ms == 500
    assert long_poll.acks is None
    assert not any(p.acknowledgement_batches for t in long_poll.request.topics for p in t.partitions)


def test_nothing_to_send_without_partitions_then_a_fetch_sized_by_the_free_capacity() -> None:
    h = Harness(max_in_flight=7)
    assert h.core.next_request(h.clock()) is None
    h.core.set_partitions({TP})
    turn = h.core.next_request(h.clock())
    assert turn == Turn(Kind.FETCH, reserved=7)  # capacity, under max_poll_records
    out = h.core.build(turn, versions(), h.clock())
    assert out is not None and isinstance(out.request, ShareFetchRequest)
    assert out.request.max_records == 7 and out.request.share_session_epoch == 0
    assert h.capacity.reserved == 7
    h.core.release(turn)
    h.core.release(turn)  # idempotent: the shell releases again in its finally
    assert h.capacity.reserved == 0


def test_a_fetch_answer_delivers_messages_and_reports_the_lock() -> None:
    h = Harness()
    h.produce(3)
    h.core.set_partitions({TP})
    events = h.fetch(0, 2)
    assert events[0] == LockDuration(LOCK_MS)
    msgs = delivered(h, events)
    assert [(m.offset, m.value, m.delivery_count) for m in msgs] == [
        (0, b"v0", 1),
        (1, b"v1", 1),
        (2, b"v2", 1),
    ]
    assert h.leases.held_count == 3 and h.capacity.reserved == 0
    # The lock is timed from when the request was sent, a little early (broker clock slack).
    assert msgs[0].lock_expires_at is not None and 100.0 + 29.99 < msgs[0].lock_expires_at < 100.0 + 30.0


def test_acks_ride_the_next_fetch_and_their_answer_settles_them() -> None:
    h = Harness()
    h.produce(3)
    h.core.set_partitions({TP})
    msgs = delivered(h, h.fetch(0, 2))
    msgs[0].accept()
    msgs[1].release()
    msgs[2].reject()
    turn = h.core.next_request(h.clock())
    assert isinstance(turn, Turn) and turn.kind is Kind.FETCH
    out = h.core.build(turn, versions(), h.clock())
    assert out is not None and isinstance(out.request, ShareFetchRequest)
    (part,) = out.request.topics[0].partitions
    sent = {
        o: b.acknowledge_types[o - b.first_offset] if len(b.acknowledge_types) > 1 else b.acknowledge_types[0]
        for b in part.acknowledgement_batches
        for o in range(b.first_offset, b.last_offset + 1)
    }
    assert sent == {0: AckType.ACCEPT, 1: AckType.RELEASE, 2: AckType.REJECT}
    h.core.answered(out, h.fetch_answer(0, -1), h.clock())
    assert {(r.first_offset, r.ack_type, r.status) for r in h.results} == {
        (0, AckType.ACCEPT, AckStatus.APPLIED),
        (1, AckType.RELEASE, AckStatus.APPLIED),
        (2, AckType.REJECT, AckStatus.APPLIED),
    }


def test_a_refused_ack_is_reported_with_kafkas_error() -> None:
    h = Harness()
    h.produce(1)
    h.core.set_partitions({TP})
    (msg,) = delivered(h, h.fetch(0, 0))
    msg.accept()
    out = h.next_out()
    h.core.answered(out, h.fetch_answer(0, -1, ack_error=ErrorCode.INVALID_RECORD_STATE), h.clock())
    (result,) = h.results
    assert result.status is AckStatus.REFUSED and result.first_offset == 0


def test_session_errors_drop_what_the_session_held_and_reopen_at_epoch_0() -> None:
    h = Harness()
    h.produce(2)
    h.core.set_partitions({TP})
    h.fetch(0, 1)
    events = h.fetch(0, -1, error_code=ErrorCode.SHARE_SESSION_NOT_FOUND)
    assert events == [RecordsLost([TP])]
    assert h.leases.held_count == 0
    turn = h.core.next_request(h.clock())
    assert isinstance(turn, Turn)
    out = h.core.build(turn, versions(), h.clock())
    assert out is not None and isinstance(out.request, ShareFetchRequest)
    assert out.request.share_session_epoch == 0


def test_a_retriable_error_waits_the_backoff_a_fatal_one_stops_the_session() -> None:
    h = Harness()
    h.core.set_partitions({TP})
    assert h.fetch(0, -1, error_code=ErrorCode.NOT_COORDINATOR) == []  # retriable: no event
    delay = h.core.next_request(h.clock())
    assert isinstance(delay, float) and delay > 0
    h.clock.now += delay
    events = h.fetch(0, -1, error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    (failed,) = events
    assert isinstance(failed, SessionFailed) and isinstance(failed.error, GroupAuthorizationFailedError)
    assert h.core.next_request(h.clock()) is None  # dead: nothing more, ever
    h.clock.now += 3600
    assert h.core.next_request(h.clock()) is None


def test_partition_errors_misplace_the_partition_or_fail_naming_the_topic() -> None:
    h = Harness()
    h.core.set_partitions({TP})
    assert h.fetch(0, -1, partition_error=ErrorCode.NOT_LEADER_OR_FOLLOWER) == [Misplaced(TP)]
    (failed,) = h.fetch(0, -1, partition_error=ErrorCode.TOPIC_AUTHORIZATION_FAILED)
    assert isinstance(failed, SessionFailed) and isinstance(failed.error, TopicAuthorizationFailedError)
    assert "jobs" in str(failed.error)


def test_records_of_a_partition_revoked_while_the_fetch_was_out_go_straight_back() -> None:
    h = Harness()
    h.produce(2)
    h.core.set_partitions({TP})
    out = h.next_out()
    h.core.set_partitions(set())  # revoked meanwhile
    h.core.answered(out, h.fetch_answer(0, 1), h.clock())
    assert delivered(h, h.events()) == []
    assert h.leases.held_count == 0
    assert h.tracker.due_at(NODE) is not None  # the RELEASE is queued for the leader


def test_no_answer_after_sending_puts_the_acks_in_doubt_and_retries_later() -> None:
    h = Harness()
    h.produce(1)
    h.core.set_partitions({TP})
    (msg,) = delivered(h, h.fetch(0, 0))
    msg.accept()
    turn = h.core.next_request(h.clock())
    assert isinstance(turn, Turn)
    out = h.core.build(turn, versions(), h.clock())
    assert out is not None and h.capacity.reserved > 0
    assert h.core.unanswered(out, KafkaConnectionError("reset by peer"), h.clock()) is True
    assert h.capacity.reserved == 0
    (result,) = h.results
    assert result.status is AckStatus.IN_DOUBT and isinstance(result.error, AckInDoubtError)
    assert h.events() == [RecordsLost([TP]), RefreshMetadata()]
    delay = h.core.next_request(h.clock())
    assert isinstance(delay, float) and delay > 0


def test_a_request_never_written_fails_its_acks_plainly() -> None:
    h = Harness()
    h.produce(1)
    h.core.set_partitions({TP})
    (msg,) = delivered(h, h.fetch(0, 0))
    msg.accept()
    out = h.next_out()
    not_sent = RequestNotSentError("connection closed")
    assert h.core.unanswered(out, not_sent, h.clock()) is True
    (result,) = h.results
    assert result.status is not AckStatus.IN_DOUBT and result.error is not_sent


def test_an_unreachable_leader_loses_the_session_and_misplaces_its_partitions() -> None:
    h = Harness()
    h.produce(1)
    h.core.set_partitions({TP, TP1})
    h.fetch(0, 0)
    h.core.connection_failed(KafkaConnectionError("refused"), h.clock())
    events = h.events()
    assert events[0] == RecordsLost([TP])
    assert RefreshMetadata() in events
    assert {e.tp for e in events if isinstance(e, Misplaced)} == {TP, TP1}
    assert h.leases.held_count == 0


def test_a_replaced_connection_restarts_the_session() -> None:
    h = Harness()
    h.produce(1)
    h.core.set_partitions({TP})
    h.fetch(0, 0)
    h.core.connection_replaced()
    assert h.events() == [RecordsLost([TP])]
    h.core.connection_replaced()  # nothing open any more: nothing to lose
    assert h.events() == []


def test_record_limit_needs_share_fetch_v2() -> None:
    h = Harness(acquire_mode=AcquireMode.RECORD_LIMIT)
    h.core.set_partitions({TP})
    turn = h.core.next_request(h.clock())
    assert isinstance(turn, Turn)
    assert h.core.build(turn, versions(share_fetch=1), h.clock()) is None
    (failed,) = h.events()
    assert isinstance(failed, SessionFailed) and isinstance(failed.error, UnsupportedVersionError)
    assert "record_limit" in str(failed.error)


@pytest.mark.parametrize(
    ("share_fetch", "sent_mode"), [(2, AcquireMode.RECORD_LIMIT), (1, AcquireMode.BATCH_OPTIMIZED)]
)
def test_auto_acquire_mode_cuts_batches_where_the_leader_can(
    share_fetch: int, sent_mode: AcquireMode
) -> None:
    """acquire_mode="auto": record_limit on ShareFetch v2 (Kafka 4.2+), whole batches before."""
    h = Harness(acquire_mode=AcquireMode.RECORD_LIMIT, record_limit_if_served=True)
    h.core.set_partitions({TP})
    turn = h.core.next_request(h.clock())
    assert isinstance(turn, Turn)
    out = h.core.build(turn, versions(share_fetch=share_fetch), h.clock())
    assert out is not None and h.events() == []
    assert out.request.share_acquire_mode == sent_mode  # type: ignore[attr-defined]


def test_a_renew_goes_first_and_needs_share_acknowledge_v2() -> None:
    h = Harness()
    h.produce(1)
    h.core.set_partitions({TP})
    (msg,) = delivered(h, h.fetch(0, 0))
    h.tracker.keep_alive(msg, None, None)
    h.clock.now += LOCK_MS / 1000 * 0.8  # past the keep-alive point (70% of the lock)
    assert h.leases.expire(h.clock()) == []  # the lock itself still runs
    h.tracker.timers_due(h.leases.take_fired(), h.clock())
    turn = h.core.next_request(h.clock())
    assert turn == Turn(Kind.RENEW)
    assert h.core.build(turn, versions(share_acknowledge=1), h.clock()) is None
    assert h.tracker.renew_supported is False


def test_closing_sends_the_final_epoch_only_when_a_session_is_open() -> None:
    h = Harness()
    h.core.set_partitions({TP})
    assert h.core.closing() is None  # never fetched: no session
    h2 = Harness()
    h2.produce(1)
    h2.core.set_partitions({TP})
    (msg,) = delivered(h2, h2.fetch(0, 0))
    msg.accept()
    turn = h2.core.closing()
    assert turn == Turn(Kind.CLOSE)
    out = h2.core.build(turn, versions(), h2.clock())
    assert out is not None and isinstance(out.request, ShareAcknowledgeRequest)
    assert out.request.share_session_epoch == -1
    h2.core.answered(out, acknowledged(TP), h2.clock())
    assert [(r.first_offset, r.status) for r in h2.results] == [(0, AckStatus.APPLIED)]


def test_closing_without_a_connection_fails_the_last_acks() -> None:
    h = Harness()
    h.produce(1)
    h.core.set_partitions({TP})
    (msg,) = delivered(h, h.fetch(0, 0))
    msg.accept()
    turn = h.core.closing()
    assert turn is not None
    assert h.core.build(turn, None, h.clock()) is None
    (result,) = h.results
    assert result.status is AckStatus.NOT_SENT and isinstance(result.error, KafkaConnectionError)


def test_an_exception_that_is_not_a_network_failure_is_for_the_shell_to_raise() -> None:
    h = Harness()
    h.core.set_partitions({TP})
    out = h.next_out()
    assert h.core.unanswered(out, ValueError("a bug"), h.clock()) is False
    assert h.capacity.reserved == 0


@pytest.mark.parametrize("kind", [Kind.ACKNOWLEDGE, Kind.FETCH])
def test_without_a_connection_nothing_is_built(kind: Kind) -> None:
    h = Harness()
    h.core.set_partitions({TP})
    assert h.core.build(Turn(kind), None, h.clock()) is None


def test_renew_unsupported_is_an_unsupported_version_error() -> None:
    assert issubclass(RenewUnsupportedError, UnsupportedVersionError)
