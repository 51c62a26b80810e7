"""Acknowledgements between the application and the per-leader fetchers.

The application records outcomes through ``Message.accept()`` and friends; they land here
(``AckSink``).  An outcome for a record whose lock already expired (or whose share
session was lost) is not sent: the broker would refuse it, or worse, apply it to a later
delivery of the same offset.  It is reported failed at once instead.  Everything else goes
into the ``AckBook`` and waits for the fetcher of the leader that delivered it, which sends
it on its next ShareFetch or, after ``linger`` seconds, in a ShareAcknowledge.

Every outcome, success or failure, is reported to ``on_ack_commit`` and collected for the
next ``commit()``: an acknowledgement is never dropped without a report.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

from aioshare.protocol.errors import (
    BrokerError,
    ErrorCode,
    IllegalStateError,
    InvalidRecordStateError,
    KafkaError,
    error_for_code,
)
from aioshare.protocol.types import AckType, TopicIdPartition, TopicPartition
from aioshare.share.acks import AckBook, AckOutcome, AckSnapshot
from aioshare.share.leases import LeaseTable
from aioshare.share.message import Message

__all__ = ["AckCommitCallback", "AckTracker", "RenewFuture"]

log = logging.getLogger(__name__)

RenewFuture = asyncio.Future[float]
AckCommitCallback = Callable[[Mapping[TopicPartition, set[int]], BaseException | None], object]


class _Failure(NamedTuple):
    code: int
    exc: BaseException


class AckTracker:
    def __init__(
        self,
        leases: LeaseTable,
        topic_of: Callable[[TopicIdPartition], TopicPartition],
        *,
        linger: float,
        on_ack_commit: AckCommitCallback | None = None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.book: AckBook[RenewFuture] = AckBook()
        self.leases = leases
        self.routes: dict[TopicIdPartition, int] = {}  # partition -> node whose session holds its records
        self.linger = linger
        self.closed = False
        self._topic_of = topic_of
        self._on_ack_commit = on_ack_commit
        self._on_change = on_change
        self._pending_since: dict[int, float] = {}
        self._flushing = 0
        self._results: dict[TopicPartition, BaseException | None] = {}
        self._progress = asyncio.Event()

    # -- application side (AckSink) ----------------------------------------------------

    def acknowledge(self, msg: Message, type_: AckType) -> None:
        if self.closed:
            raise IllegalStateError("the consumer is closed; acknowledgements can no longer be sent")
        tp, offset = msg.tp, msg.offset
        node = self._held_route(msg)
        if node is None:
            self._report_local(tp, {offset: int(type_)}, _expired(msg))
            return
        self.leases.settle(tp, offset)
        self.book.record(tp, offset, type_)
        self._mark_pending(node)
        self._on_change()

    async def renew(self, msg: Message) -> float:
        if self.closed:
            raise IllegalStateError("the consumer is closed")
        node = self._held_route(msg)
        if node is None:
            raise _expired(msg)
        future: RenewFuture = asyncio.get_running_loop().create_future()
        self.book.record(msg.tp, msg.offset, AckType.RENEW, future)
        self._on_change()
        return await future

    def _held_route(self, msg: Message) -> int | None:
        info = self.leases.get(msg.tp, msg.offset)
        now = asyncio.get_running_loop().time()
        if info is None or info.deadline <= now or info.delivery_count != msg.delivery_count:
            return None
        return self.routes.get(msg.tp)

    # -- fetcher side ------------------------------------------------------------------

    def settle_range(self, tp: TopicIdPartition, first: int, last: int, type_: AckType) -> None:
        """GAP/RELEASE acquired offsets the application never sees (see delivery.py)."""
        self.leases.settle_range(tp, first, last)
        self.book.record_range(tp, first, last, type_)
        node = self.routes.get(tp)
        if node is not None:
            self._mark_pending(node)

    def unknown_spans(self, tp: TopicIdPartition, first: int, last: int) -> list[tuple[int, int]]:
        """The parts of an acquired range that are news to us.

        Kafka never reports an offset this member already holds, but librdkafka's mock
        re-reports them on every fetch, and a robust client must not deliver a record twice:
        offsets we hold, or have settled with an ack not yet answered, are left out.
        """
        covered = [(r.first, r.last) for r in self.leases.ranges(tp) if r.first <= last and r.last >= first]
        covered.extend(self.book.recorded_spans(tp, first, last))
        if not covered:
            return [(first, last)]
        out: list[tuple[int, int]] = []
        pos = first
        for lo, hi in sorted(covered):
            if lo > pos:
                out.append((pos, min(lo - 1, last)))
            pos = max(pos, hi + 1)
            if pos > last:
                break
        if pos <= last:
            out.append((pos, last))
        return out

    def partitions_of(self, node: int) -> list[TopicIdPartition]:
        return [tp for tp, n in self.routes.items() if n == node]

    def has_pending(self, node: int, *, renew: bool = False) -> bool:
        return any(self.book.has_pending(tp, renew=renew) for tp in self.partitions_of(node))

    def due_at(self, node: int) -> float | None:
        """When the node's unsent final acks should go out (None: there are none)."""
        since = self._pending_since.get(node)
        if since is None:
            return None
        return -math.inf if self._flushing else since + self.linger

    def take(
        self, node: int, partitions: Iterable[TopicIdPartition] | None = None, *, renew: bool = False
    ) -> AckSnapshot[RenewFuture] | None:
        mine = set(self.partitions_of(node))
        wanted = mine if partitions is None else mine.intersection(partitions)
        snapshot = self.book.take(wanted, renew=renew)
        if not renew:
            if any(self.book.has_pending(tp) for tp in mine):
                self._pending_since[node] = asyncio.get_running_loop().time()
            else:
                self._pending_since.pop(node, None)
        return snapshot

    def complete(
        self,
        snapshot: AckSnapshot[RenewFuture],
        codes: Mapping[TopicIdPartition, int],
        messages: Mapping[TopicIdPartition, str | None],
        *,
        renew_deadline: float | None = None,
    ) -> None:
        self._report(self.book.complete(snapshot, codes, messages), renew_deadline=renew_deadline)

    def fail(self, snapshot: AckSnapshot[RenewFuture], exc: BaseException) -> None:
        code = exc.code if isinstance(exc, BrokerError) else ErrorCode.NETWORK_EXCEPTION
        self._report(self.book.fail(snapshot, code, str(exc)), failure=_Failure(code, exc))

    def abandon(self, tps: Iterable[TopicIdPartition], exc: BaseException) -> None:
        """The records of ``tps`` are no longer ours (session lost, leader moved): fail their
        unsent acks and forget their leases, so later acks for them fail locally too."""
        tps = list(tps)
        for renew in (False, True):
            snapshot = self.book.take(tps, renew=renew)
            if snapshot is not None:
                self.fail(snapshot, exc)
        for tp in tps:
            self.leases.drop_partition(tp)
        self._on_change()

    # -- consumer side -----------------------------------------------------------------

    def unfinished(self) -> bool:
        """Final acks recorded and not yet answered (renewals excluded)."""
        return self.book.pending_count > 0 or any(not s.renew for s in self.book.in_flight())

    async def wait_progress(self) -> None:
        self._progress.clear()
        await self._progress.wait()

    def begin_flush(self) -> None:
        self._flushing += 1
        self._on_change()

    def end_flush(self) -> None:
        self._flushing -= 1

    @property
    def flushing(self) -> bool:
        """A commit() waits: acks go out at once, alone, not on a long-polling fetch."""
        return self._flushing > 0

    def take_results(self) -> dict[TopicPartition, BaseException | None]:
        results, self._results = self._results, {}
        return results

    def fail_unsent(self, exc: BaseException) -> None:
        """Fail every ack still pending (nothing can send it any more)."""
        for renew in (False, True):
            snapshot = self.book.take(None, renew=renew)
            if snapshot is not None:
                self.fail(snapshot, exc)
        self._pending_since.clear()

    def fail_in_flight(self, exc: BaseException) -> None:
        for snapshot in self.book.in_flight():
            self.fail(snapshot, exc)

    # -- reporting ---------------------------------------------------------------------

    def _mark_pending(self, node: int) -> None:
        self._pending_since.setdefault(node, asyncio.get_running_loop().time())

    def _report_local(self, tp: TopicIdPartition, offsets: Mapping[int, int], exc: BaseException) -> None:
        self._emit(self._topic_of(tp), lambda: set(offsets), exc)

    def _report(
        self,
        outcomes: list[AckOutcome[RenewFuture]],
        *,
        failure: _Failure | None = None,
        renew_deadline: float | None = None,
    ) -> None:
        for outcome in outcomes:
            exc: BaseException | None = None
            if not outcome.ok:
                exc = (
                    failure.exc
                    if failure is not None
                    else error_for_code(outcome.error_code, outcome.error_message)
                )
            if outcome.renew:
                self._finish_renew(outcome, exc, renew_deadline)
                continue
            self._emit(self._topic_of(outcome.tp), outcome.offsets, exc)
        self._progress.set()

    def _finish_renew(
        self, outcome: AckOutcome[RenewFuture], exc: BaseException | None, deadline: float | None
    ) -> None:
        if exc is None and deadline is not None:
            for first, last, _ in outcome.runs:
                self.leases.renew_range(outcome.tp, first, last, deadline)
        for future in outcome.tokens:
            if future.done():
                continue
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(math.inf if deadline is None else deadline)

    def _emit(self, tp: TopicPartition, offsets: Callable[[], set[int]], exc: BaseException | None) -> None:
        if tp not in self._results or (exc is not None and self._results[tp] is None):
            self._results[tp] = exc  # the first failure of a partition sticks until commit()
        callback = self._on_ack_commit
        if callback is None:
            return
        try:
            callback({tp: offsets()}, exc)
        except Exception:
            log.exception("on_ack_commit callback raised")


def _expired(msg: Message) -> KafkaError:
    return InvalidRecordStateError(
        f"{msg.topic}[{msg.partition}]@{msg.offset}: the acquisition lock expired or the share session "
        "was lost; the record is no longer held by this consumer"
    )
