"""Acknowledgements between the application and the per-leader fetchers.

The application records outcomes through ``Message.accept()`` and friends; they land here
(``AckSink``).  An outcome for a record whose lock already expired (or whose share
session was lost) is not sent: the broker would refuse it, or worse, apply it to a later
delivery of the same offset.  It is reported failed at once instead.  Everything else goes
into the ``AckBook`` and waits for the fetcher of the leader that delivered it, which sends
it on its next ShareFetch or, after ``linger`` seconds, in a ShareAcknowledge.

Recording one acknowledgement is the consumer's hottest path, so it touches no dict and
settles nothing: the message carries its partition's ``DeliveryContext`` and the lease it
was delivered under, that hint tells whether the delivery still holds the record (a few
attribute reads), and the ack extends a run on the context.  Those runs settle their leases
(one ``LeaseTable.settle_run`` per run, not one settle per record) and move into the
``AckBook`` in bulk (``_flush``) before anything reads the book or the lease table: the
table calls ``_flush`` itself before it is next read (``LeaseTable.pending``).

RENEWs (``await msg.renew()``) are kept apart, one ``Renewal`` per call: each is checked
against the lease when its request is sent and again when it is answered, because a RENEW
for an offset whose lock already ran out would apply to whatever delivery the broker made
of it since.  A partition's RENEWs succeed or fail together (the broker applies a
partition's acknowledgements atomically), so when the broker refuses several with
INVALID_RECORD_STATE they are asked again in halves until the record it refused is found;
that one has lost its lock, here too.

Keep-alive (``msg.keep_alive(until, then)``): the tracker owns a ``KeepAlive`` timer per
kept record, in the lease table's one heap, due when the record must be renewed (at
``keep_alive_fraction`` of the lock left) or when ``until`` comes.  The ``LeaseTimer`` hands
due timers to ``timers_due``, which records their RENEWs like ``renew()`` does - renewals
due in one sweep go out in one request per leader - or applies ``then``.  Timers are put
on a coarse grid so records kept alive one after the other fall due together.  A record
kept alive and soon acknowledged costs a few attribute writes: its timer reaches the heap
only if it is still there when the table is swept near its due (see leases.py).

Every outcome, success or failure, is reported to ``on_ack_commit`` and collected for the
next ``commit()``: an acknowledgement is never dropped without a report.  ``on_ack_result``
gets the same reports in full - partition, offsets, ack type and ``AckStatus``: applied (the
broker confirmed), refused (the broker answered with an error: Kafka's), in doubt (sent, no
answer: the broker may have applied it) or not sent (failed here: lock expired, no session,
consumer closed).
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from aioshare.protocol.errors import (
    BrokerError,
    ErrorCode,
    IllegalStateError,
    InvalidRecordStateError,
    KafkaConnectionError,
    KafkaError,
    UnsupportedVersionError,
    error_for_code,
)
from aioshare.protocol.types import AckType, TopicIdPartition, TopicPartition
from aioshare.share.acks import AckBatch, AckBook, AckConflictError, AckOutcome, AckSnapshot, encode_runs
from aioshare.share.capacity import Capacity
from aioshare.share.leases import ExpiredRange, LeaseTable, Timer
from aioshare.share.message import DeliveryContext, Message

__all__ = [
    "AckCommitCallback",
    "AckInDoubtError",
    "AckResult",
    "AckResultCallback",
    "AckStatus",
    "AckTracker",
    "KeepAlive",
    "KeepAliveEndCallback",
    "KeepAliveErrorCallback",
    "RenewRequest",
    "Renewal",
    "keep_alive_step",
]

log = logging.getLogger(__name__)

AckCommitCallback = Callable[[Mapping[TopicPartition, set[int]], BaseException | None], object]


class AckInDoubtError(KafkaConnectionError):
    """Acknowledgements were sent but no answer came (connection lost, request timed out):
    the broker may or may not have applied them.

    A KafkaConnectionError, so handlers written for that still catch it.  Acks refused by the
    broker fail with its error instead, and acks never sent with a plain KafkaConnectionError
    (or KafkaTimeoutError at close).  A record whose accept is in doubt may come back (at most
    once more per such ack): make its processing idempotent.
    """


class AckStatus(enum.StrEnum):
    """What became of an acknowledgement."""

    APPLIED = "applied"  # the broker confirmed it
    REFUSED = "refused"  # the broker answered with an error (``AckResult.error``, Kafka's)
    IN_DOUBT = "in_doubt"  # sent, never answered: the broker may or may not have applied it
    NOT_SENT = "not_sent"  # failed here: the lock expired, no share session, the consumer closed


@dataclass(frozen=True, slots=True)
class AckResult:
    """One run of acknowledgements of one type, and its outcome."""

    topic_partition: TopicPartition
    first_offset: int
    last_offset: int
    ack_type: AckType
    status: AckStatus
    error: BaseException | None = None

    @property
    def topic(self) -> str:
        return self.topic_partition.topic

    @property
    def partition(self) -> int:
        return self.topic_partition.partition


AckResultCallback = Callable[[list[AckResult]], object]
KeepAliveErrorCallback = Callable[[Message, BaseException], object]
KeepAliveEndCallback = Callable[[Message, BaseException | None], object]

_FINAL_TYPES = frozenset({AckType.ACCEPT, AckType.RELEASE, AckType.REJECT})
_INF, _floor, _frexp, _ldexp = math.inf, math.floor, math.frexp, math.ldexp  # keep_alive_step's
# A RENEW that failed for a passing reason (timeout, connection) is tried again after this
# long at most (half the lock left, if less); with less than _RETRY_FLOOR left it is not.
_RETRY_INTERVAL = 1.0
_RETRY_FLOOR = 0.01


class _Failure:
    """Why a request's acknowledgements failed: Kafka's error code, the exception, the status."""

    # A plain class, not a NamedTuple: compiled (setup.py), mypyc builds a NamedTuple's
    # annotations from the module's globals, where builtins such as BaseException are not.
    __slots__ = ("code", "exc", "status")

    def __init__(self, code: int, exc: BaseException, status: AckStatus) -> None:
        self.code = code
        self.exc = exc
        self.status = status


class KeepAlive(Timer):
    """A record kept alive (``msg.keep_alive()``): a timer in the lease table's heap.

    Due at its next step: a RENEW at ``keep_alive_fraction`` of the lock ``lock`` it was
    planned from, or ``until`` (then ``then`` is applied), or - while a RENEW is out
    (``renewing``) - the lock deadline, to notice a lock lost without an answer.  ``on_end``
    is told when the consumer ends it by itself.
    """

    __slots__ = ("lock", "msg", "on_end", "renewing", "then", "until")

    def __init__(self, msg: Message) -> None:
        # Timer's fields set here, not through super().__init__(): one per kept record.
        self.alive = False
        self.due = math.inf
        self.seq = 0
        self.msg = msg
        self.until: float | None = None
        self.then: AckType | None = None
        self.on_end: KeepAliveEndCallback | None = None
        self.lock = math.inf
        self.renewing = False


def keep_alive_step(now: float, deadline: float, until: float | None, fraction: float) -> tuple[float, bool]:
    """When a kept-alive record's next step is due: (when, True) for a RENEW, (until, False)
    when ``until`` comes first and no RENEW is needed.

    The RENEW is due at ``fraction`` of the lock left (``deadline - now``), rounded down to
    a power-of-two grid no coarser than a quarter of the margin that leaves, so renewals
    planned close together (records kept alive one after the other) fall due at the same
    instant and go out in one request.
    """
    renew_at = now + fraction * (deadline - now)
    if until is not None and until <= renew_at:
        return until, False
    margin = deadline - renew_at
    if 0 < margin < _INF:
        grid = _ldexp(0.5, _frexp(margin / 4)[1])  # the power of two <= margin / 4
        on_grid = _floor(renew_at / grid) * grid
        renew_at = on_grid if on_grid > now else now
    return renew_at, True


class Renewal:
    """One RENEW of one delivery: for ``await msg.renew()`` (answered through ``future``) or
    for a keep-alive (answered through ``done``)."""

    __slots__ = ("delivery_count", "done", "future", "group", "keep", "msg", "offset", "tp")

    def __init__(
        self,
        msg: Message,
        future: asyncio.Future[float] | None,
        keep: KeepAlive | None = None,
        done: Callable[[Renewal, float | BaseException], None] | None = None,
    ) -> None:
        self.msg = msg
        self.tp = msg.tp
        self.offset = msg.offset
        self.delivery_count = msg.delivery_count
        self.future = future
        self.keep = keep
        self.done = done
        self.group = 0  # renewals of one partition go out together only within one group

    def finish(self, result: float | BaseException) -> None:
        future = self.future
        if future is not None:
            if future.done():
                return
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
            return
        done, self.done = self.done, None
        if done is not None:
            done(self, result)


class RenewRequest:
    """The renewals one renew-only request carries."""

    __slots__ = ("batches", "id", "offsets", "renewals")

    def __init__(self, request_id: int, renewals: list[Renewal]) -> None:
        self.id = request_id
        self.renewals = renewals
        offsets: dict[TopicIdPartition, set[int]] = {}
        for r in renewals:
            offsets.setdefault(r.tp, set()).add(r.offset)
        self.offsets = {tp: len(found) for tp, found in offsets.items()}
        self.batches: dict[TopicIdPartition, list[AckBatch]] = {
            tp: encode_runs((lo, hi, AckType.RENEW) for lo, hi in _runs(sorted(found)))
            for tp, found in offsets.items()
        }


class AckTracker:
    def __init__(
        self,
        leases: LeaseTable,
        topic_of: Callable[[TopicIdPartition], TopicPartition],
        *,
        linger: float,
        capacity: Capacity | None = None,
        on_ack_commit: AckCommitCallback | None = None,
        on_ack_result: AckResultCallback | None = None,
        on_change: Callable[[], None] = lambda: None,
        on_expired: Callable[[list[ExpiredRange]], None] | None = None,
        keep_alive_fraction: float = 0.7,
        on_keep_alive_error: KeepAliveErrorCallback | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.book: AckBook[None] = AckBook()
        self.leases = leases
        self.routes: dict[TopicIdPartition, int] = {}  # partition -> node whose session holds its records
        self.linger = linger
        self._closed = False
        self._topic_of = topic_of
        self._capacity = capacity
        self._on_ack_commit = on_ack_commit
        self._on_ack_result = on_ack_result
        self._on_change = on_change
        self._on_expired = on_expired  # a lock lost before its deadline (a RENEW refused)
        if clock is None:
            loop = asyncio.get_running_loop()
            # asyncio's own loop.time() is time.monotonic() behind one more Python call, and
            # acknowledge() reads the clock for every record; any other loop (or a loop.time
            # patched by a test) keeps its clock.
            clock = loop.time
            if getattr(clock, "__func__", None) is asyncio.BaseEventLoop.time:
                clock = time.monotonic
        self._time = clock
        self._pending_since: dict[int, float] = {}
        self._flushing = 0
        self._results: dict[TopicPartition, BaseException | None] = {}
        self._progress = asyncio.Event()
        self._staged: list[DeliveryContext] = []  # contexts with acks not yet in the book
        self._unsettled = 0  # acks staged since the last _flush: their records still count as held
        self._flush_hook = self._flush  # one bound method, not one per first ack of a context
        self._renewals: list[Renewal] = []  # recorded, not yet sent
        self._renewing: dict[int, RenewRequest] = {}  # sent, not yet answered
        self._renew_ids = itertools.count(1)
        self._groups = itertools.count(1)
        self._fraction = keep_alive_fraction
        self._on_keep_alive_error = on_keep_alive_error
        self._kept: dict[Message, KeepAlive] = {}
        # None until a RENEW was answered; False once a leader said it cannot RENEW.
        self.renew_supported: bool | None = None
        self._unsupported: BaseException = UnsupportedVersionError(
            "RENEW needs ShareAcknowledge v2 (Kafka 4.2+)"
        )
        self.renew_requests = 0  # renew-only requests handed to the fetchers

    @property
    def closed(self) -> bool:
        return self._closed

    @closed.setter
    def closed(self, value: bool) -> None:
        """Closing ends every keep-alive: the session close releases what is still held."""
        self._closed = value
        if value:
            kept, self._kept = self._kept, {}
            for keep in kept.values():
                self.leases.cancel(keep)

    @property
    def held_count(self) -> int:
        """Records held, the acknowledgements staged since the last flush counted as settled,
        without settling them (``LeaseTable.held_count`` would): what capacity counts.  Only an
        offset acknowledged twice - a second Message of one delivery - makes it low by one
        until the flush."""
        return self.leases.held_before_pending - self._unsettled

    # -- application side (AckSink) ----------------------------------------------------

    def acknowledge(self, msg: Message, type_: AckType) -> None:
        if self._closed:
            raise IllegalStateError("the consumer is closed; acknowledgements can no longer be sent")
        kept = self._kept
        if kept:
            keep = kept.pop(msg, None)
            if keep is not None:
                self.leases.cancel(keep)  # any acknowledgement ends a keep-alive
        ctx = msg._ctx
        offset = msg.offset
        # Is the delivery still held?  The lease it came with answers while it is alive and
        # spans the offset.  Its acked records are not settled yet (``_flush`` settles whole
        # runs), so an offset acked twice still reads as held here; only a second Message of
        # the same delivery could do that, and the book then takes the same outcome once or
        # reports a different one as a conflict.
        lease = msg._lease
        if (
            lease is None
            or not lease.alive
            or offset < lease.first
            or offset > lease.last
            or (lease.held is not None and not lease.held[offset - lease.first])
            or lease.delivery_count != msg.delivery_count
            or lease.deadline <= self._time()
        ):
            # Look it up (this applies the settlements pending, the table is exact then).
            if self.leases.holding(ctx.tp, offset, msg.delivery_count, self._time(), lease) is None:
                self._report_local(ctx.tp, offset, type_, _expired(msg))
                return
        self._unsettled += 1
        acks = ctx.acks
        if acks:
            if acks[-2] == offset - 1 and acks[-1] == type_:
                acks[-2] = offset  # in order: the run grows, nothing else happens
            else:
                acks += (offset, offset, type_)
        else:
            acks += (offset, offset, type_)
            self._staged.append(ctx)
            self.leases.pending = self._flush_hook
            node = self.routes.get(ctx.tp)
            if node is not None:
                self._mark_pending(node)
            self._on_change()
            return
        capacity = self._capacity
        if (
            capacity is not None
            and capacity.wake_below >= 0
            # The held count once the staged acks are settled, without settling them now:
            # never above the truth (each staged ack is of a held record, counted once or -
            # an offset acked twice - more), so a fetcher is never left waiting; at worst
            # woken early, and it reads the exact count.
            and self.held_count <= capacity.wake_below
        ):
            self._on_change()  # a fetcher waits for this much free capacity

    async def renew(self, msg: Message) -> float:
        if self._closed:
            raise IllegalStateError("the consumer is closed")
        if self._holder(msg) is None:
            raise _expired(msg)
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._renewals.append(Renewal(msg, future))
        self._on_change()
        return await future

    def keep_alive(
        self,
        msg: Message,
        until: float | None,
        then: AckType | None,
        on_end: KeepAliveEndCallback | None = None,
    ) -> None:
        """Keep ``msg``'s lock until it is acknowledged, or until ``until`` (then apply ``then``)."""
        if self._closed:
            raise IllegalStateError("the consumer is closed")
        if then is not None:
            if then not in _FINAL_TYPES:
                raise ValueError(f"then must be ACCEPT, RELEASE or REJECT, not {then!r}")
            if until is None:
                raise ValueError("then needs until: the time to apply it")
        if msg._ack is not None:
            raise IllegalStateError(f"{msg!r} is already acknowledged; nothing to keep alive")
        now = self._time()
        leases = self.leases
        # Not acknowledged, so no pending settlement is its: leave them pending.
        lease = leases.holding_unacked(msg._ctx.tp, msg.offset, msg.delivery_count, now, msg._lease)
        if lease is None:
            raise _expired(msg)
        kept = self._kept
        keep = kept.get(msg)
        if keep is None:
            keep = kept[msg] = KeepAlive(msg)
        keep.until, keep.then, keep.on_end = until, then, on_end
        keep.lock = deadline = lease.deadline
        leases.schedule(keep, keep_alive_step(now, deadline, until, self._fraction)[0])  # _plan, inline

    def stop_keep_alive(self, msg: Message) -> None:
        keep = self._kept.pop(msg, None)
        if keep is not None:
            self.leases.cancel(keep)

    def is_kept_alive(self, msg: Message) -> bool:
        return msg in self._kept

    @property
    def kept_alive(self) -> int:
        """Records being kept alive."""
        return len(self._kept)

    def timers_due(self, timers: list[Timer], now: float) -> None:
        """The LeaseTimer found ``timers`` due at ``now``: renew, apply ``then``, or report."""
        before = len(self._renewals)
        for timer in timers:
            if isinstance(timer, KeepAlive) and self._kept.get(timer.msg) is timer:
                self._keep_due(timer, now)
        if len(self._renewals) > before:
            self._on_change()  # one wake-up: the fetchers take all of them at once

    def _holder(self, msg: Message) -> int | None:
        """The node holding ``msg``'s delivery, or None if that delivery is over here."""
        lease = self.leases.holding(msg.tp, msg.offset, msg.delivery_count, self._time(), msg._lease)
        if lease is None:
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

    def take_acquired(
        self, tp: TopicIdPartition, first: int, last: int, delivery_count: int, deadline: float, now: float
    ) -> tuple[list[tuple[int, int]], list[ExpiredRange]]:
        """Lease a range the broker reports acquired; returns (spans to deliver, superseded).

        Offsets with a final ack recorded and not yet answered are left out: that ack will
        settle whatever delivery the broker holds for us.  For the rest see
        ``LeaseTable.acquire``: a held record whose lock still runs and whose delivery count
        is not lower is a re-report (librdkafka's mock does that) and is not delivered
        twice; a record whose lock ran out here, or that the broker counts as delivered
        again, is a new delivery and replaces the old one (``superseded``).
        """
        self._flush()
        recorded = self.book.recorded_spans(tp, first, last)
        pieces = _subtract(first, last, recorded) if recorded else [(first, last)]
        news: list[tuple[int, int]] = []
        superseded: list[ExpiredRange] = []
        for lo, hi in pieces:
            spans, old = self.leases.acquire(tp, lo, hi, delivery_count, deadline, now)
            news.extend(spans)
            superseded.extend(old)
        if superseded and self._kept:
            # A kept record the broker delivered again lost its lock: say so now, not at its
            # next renewal.  Rare (a lock ran out), so a scan of the kept records will do.
            for keep in [
                k
                for m, k in self._kept.items()
                if m.tp == tp and any(e.first <= m.offset <= e.last for e in superseded)
            ]:
                self._keep_lost(keep, _expired(keep.msg))
        return news, superseded

    def partitions_of(self, node: int) -> list[TopicIdPartition]:
        return [tp for tp, n in self.routes.items() if n == node]

    def has_pending(self, node: int) -> bool:
        """Final acks waiting to be sent to ``node``."""
        self._flush()
        return any(self.book.has_pending(tp) for tp in self.partitions_of(node))

    def has_pending_outside(self, node: int, fetched: Iterable[TopicIdPartition]) -> bool:
        """Final acks for ``node`` of partitions its session no longer fetches."""
        self._flush()
        skip = set(fetched)
        return any(self.book.has_pending(tp) for tp in self.partitions_of(node) if tp not in skip)

    def has_renewals(self, node: int) -> bool:
        routes = self.routes
        return any(routes.get(r.tp) == node for r in self._renewals)

    def due_at(self, node: int) -> float | None:
        """When the node's unsent final acks should go out (None: there are none)."""
        since = self._pending_since.get(node)
        if since is None:
            return None
        return -math.inf if self._flushing else since + self.linger

    def take(
        self, node: int, partitions: Iterable[TopicIdPartition] | None = None
    ) -> AckSnapshot[None] | None:
        """The final acks to send to ``node`` (of ``partitions`` only, when given)."""
        self._flush()
        mine = set(self.partitions_of(node))
        wanted = mine if partitions is None else mine.intersection(partitions)
        snapshot = self.book.take(wanted)
        if any(self.book.has_pending(tp) for tp in mine):
            self._pending_since[node] = self._time()
        else:
            self._pending_since.pop(node, None)
        return snapshot

    def take_renewals(self, node: int) -> RenewRequest | None:
        """The renewals to send to ``node`` now; those whose delivery is over here fail.

        Of each partition, only the renewals of one group go (see ``complete_renewals``);
        the rest stay for the next request.
        """
        routes = self.routes
        mine: list[Renewal] = []
        rest: list[Renewal] = []
        groups: dict[TopicIdPartition, int] = {}
        for r in self._renewals:
            if routes.get(r.tp) == node and groups.setdefault(r.tp, r.group) == r.group:
                mine.append(r)
            else:
                rest.append(r)
        if not mine:
            return None
        self._renewals = rest
        valid = [r for r in mine if self._still_held(r)]
        if not valid:
            return None
        request = RenewRequest(next(self._renew_ids), valid)
        self._renewing[request.id] = request
        self.renew_requests += 1
        return request

    def complete(
        self,
        snapshot: AckSnapshot[None],
        codes: Mapping[TopicIdPartition, int],
        messages: Mapping[TopicIdPartition, str | None],
    ) -> None:
        self._report(self.book.complete(snapshot, codes, messages))

    def complete_renewals(
        self,
        request: RenewRequest,
        codes: Mapping[TopicIdPartition, int],
        messages: Mapping[TopicIdPartition, str | None],
        deadline: float | None,
    ) -> None:
        """The broker answered ``request``; ``deadline`` is the new lock deadline (None: not told)."""
        if self._renewing.pop(request.id, None) is None:
            return
        ask_again: dict[TopicIdPartition, list[Renewal]] = {}
        for r in request.renewals:
            code = codes.get(r.tp, ErrorCode.UNKNOWN_SERVER_ERROR)
            if code == ErrorCode.INVALID_RECORD_STATE and request.offsets[r.tp] > 1:
                # The broker refused the partition's RENEWs together for the sake of one or
                # some of them: ask again in halves to find which.
                ask_again.setdefault(r.tp, []).append(r)
            elif code:
                error = error_for_code(code, messages.get(r.tp))
                if code == ErrorCode.INVALID_RECORD_STATE:
                    self._lose(r, error)  # the broker no longer holds it for us
                r.finish(error)
            elif self._still_held(r):
                # Only now: had the lock run out meanwhile, the broker renewed another delivery.
                self.renew_supported = True
                if deadline is not None:
                    self.leases.renew(r.tp, r.offset, deadline)
                    r.msg._lease = None  # its old lease was cut out; the next ack looks it up
                r.finish(math.inf if deadline is None else deadline)
        for renewals in ask_again.values():
            offsets = sorted({r.offset for r in renewals})
            middle = offsets[len(offsets) // 2]
            low, high = next(self._groups), next(self._groups)
            for r in renewals:
                r.group = low if r.offset < middle else high
            self._renewals[:0] = renewals
        if ask_again:
            self._on_change()
        self._progress.set()

    def fail(
        self, sent: AckSnapshot[None] | RenewRequest, exc: BaseException, *, in_doubt: bool = False
    ) -> None:
        """``sent``'s acks failed with ``exc``: refused if it is the broker's error, in doubt
        if they were sent and not answered (``in_doubt``, or an AckInDoubtError), else not sent."""
        if isinstance(sent, RenewRequest):
            if self._renewing.pop(sent.id, None) is not None:
                for r in sent.renewals:
                    r.finish(exc)
            self._progress.set()
            return
        code = exc.code if isinstance(exc, BrokerError) else ErrorCode.NETWORK_EXCEPTION
        if in_doubt or isinstance(exc, AckInDoubtError):
            status = AckStatus.IN_DOUBT
        elif isinstance(exc, BrokerError):
            status = AckStatus.REFUSED
        else:
            status = AckStatus.NOT_SENT
        self._report(self.book.fail(sent, code, str(exc)), failure=_Failure(code, exc, status))

    def fail_renewals(self, node: int, exc: BaseException) -> None:
        """Fail the renewals recorded for ``node`` and not yet sent."""
        routes = self.routes
        mine = [r for r in self._renewals if routes.get(r.tp) == node]
        self._renewals = [r for r in self._renewals if routes.get(r.tp) != node]
        for r in mine:
            r.finish(exc)

    def abandon(self, tps: Iterable[TopicIdPartition], exc: BaseException) -> None:
        """The records of ``tps`` are no longer ours (session lost, leader moved): fail their
        unsent acks and forget their leases, so later acks for them fail locally too."""
        tps = list(tps)
        self._flush()
        snapshot = self.book.take(tps)
        if snapshot is not None:
            self.fail(snapshot, exc)
        lost = set(tps)
        if self._kept:
            for keep in [k for m, k in self._kept.items() if m.tp in lost]:
                self._keep_lost(keep, exc)
        for r in [r for r in self._renewals if r.tp in lost]:
            self._renewals.remove(r)
            r.finish(exc)
        for tp in tps:
            self.leases.drop_partition(tp)
        self._on_change()

    # -- consumer side -----------------------------------------------------------------

    def unfinished(self) -> bool:
        """Final acks recorded and not yet answered (renewals excluded)."""
        return bool(self._staged) or self.book.pending_count > 0 or bool(self.book.in_flight())

    def unfinished_partitions(self) -> set[TopicIdPartition]:
        """Partitions with final acks recorded and not yet answered."""
        self._flush()
        tps = set(self.book.pending_partitions())
        for snapshot in self.book.in_flight():
            tps.update(snapshot.partitions)
        return tps

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
        """Fail every ack and renewal still pending (nothing can send them any more)."""
        self._flush()
        snapshot = self.book.take(None)
        if snapshot is not None:
            self.fail(snapshot, exc)
        renewals, self._renewals = self._renewals, []
        for r in renewals:
            r.finish(exc)
        self._pending_since.clear()

    def fail_in_flight(self, exc: BaseException) -> None:
        """Give up on the answers still awaited: those acks are in doubt."""
        for snapshot in self.book.in_flight():
            self.fail(snapshot, exc, in_doubt=True)
        for request in list(self._renewing.values()):
            self.fail(request, exc)

    # -- internals ---------------------------------------------------------------------

    def _flush(self) -> None:
        """Settle the leases of the acks recorded on delivery contexts, and move the acks
        into the book."""
        if not self._staged:
            return
        staged, self._staged = self._staged, []
        self._unsettled = 0
        leases = self.leases
        leases.pending = None  # before settle_run, which would call this again
        runs: list[tuple[TopicIdPartition, list[int]]] = []
        for ctx in staged:
            acks, ctx.acks = ctx.acks, []
            tp = ctx.tp
            for k in range(0, len(acks), 3):
                leases.settle_run(tp, acks[k], acks[k + 1])
            runs.append((tp, acks))
        # The leases first: a conflict below runs callbacks, which must find the table exact.
        book = self.book
        for tp, acks in runs:
            for k in range(0, len(acks), 3):
                first, last, type_ = acks[k], acks[k + 1], acks[k + 2]
                try:
                    book.record_range(tp, first, last, type_)
                except AckConflictError as exc:
                    # Cannot happen through Message (one outcome per delivery, and a stale
                    # delivery fails its lease check), but never lose an ack silently.
                    self._report_local(tp, first, type_, exc, last)

    def _still_held(self, r: Renewal) -> bool:
        """Whether the delivery ``r`` renews still holds its lock; fails ``r`` if not."""
        if self.leases.holding(r.tp, r.offset, r.delivery_count, self._time()) is not None:
            return True
        r.finish(_expired(r.msg))
        return False

    def _lose(self, r: Renewal, error: BaseException) -> None:
        """The broker refused to RENEW ``r``'s record (``error``): its lock is gone, here too."""
        if self.leases.settle_delivery(r.tp, r.offset, r.delivery_count, self._time()):
            if self._on_expired is not None:
                self._on_expired([ExpiredRange(r.tp, r.offset, r.offset, error)])

    # -- internals: keep-alive ---------------------------------------------------------

    def _plan(self, keep: KeepAlive, now: float, deadline: float) -> None:
        keep.lock = deadline
        when, _ = keep_alive_step(now, deadline, keep.until, self._fraction)
        self.leases.schedule(keep, when)

    def _keep_due(self, keep: KeepAlive, now: float) -> None:
        msg = keep.msg
        lease = self.leases.holding(msg.tp, msg.offset, msg.delivery_count, now, msg._lease)
        if lease is None:
            self._keep_lost(keep, _expired(msg))
            return
        if keep.until is not None and now >= keep.until:
            self._keep_done(keep)
            return
        if keep.renewing:
            self.leases.schedule(keep, lease.deadline)  # still unanswered: look again then
            return
        if lease.deadline > keep.lock:
            # Renewed since it was planned (an explicit msg.renew()): plan from the new lock.
            keep.lock = lease.deadline
            when, _ = keep_alive_step(now, lease.deadline, keep.until, self._fraction)
            if when > now:
                self.leases.schedule(keep, when)
                return
        if self.renew_supported is False:
            self._keep_unsupported(keep, None)
            return
        keep.renewing = True
        self._renewals.append(Renewal(msg, None, keep, self._keep_answered))
        self.leases.schedule(keep, lease.deadline)  # the answer plans the next step

    def _keep_answered(self, r: Renewal, result: float | BaseException) -> None:
        keep = r.keep
        if keep is None or self._closed:
            return
        keep.renewing = False
        msg = r.msg
        if self._kept.get(msg) is not keep:
            return  # acknowledged or stopped meanwhile
        now = self._time()
        if isinstance(result, UnsupportedVersionError):
            self._keep_unsupported(keep, result)
            return
        if isinstance(result, IllegalStateError):
            self._keep_end(keep)  # the consumer is closing
            return
        lease = self.leases.holding(msg.tp, msg.offset, msg.delivery_count, now, msg._lease)
        if lease is None or isinstance(result, InvalidRecordStateError):
            self._keep_lost(keep, result if isinstance(result, BaseException) else _expired(msg))
            return
        if isinstance(result, BaseException):
            # Timeout, connection, leader moving: try again while the lock lasts.
            left = lease.deadline - now
            log.debug("keep-alive RENEW of %r failed (%r); retrying", msg, result)
            if left < _RETRY_FLOOR:
                self.leases.schedule(keep, lease.deadline)  # too late: it will be lost
            else:
                self.leases.schedule(keep, now + min(_RETRY_INTERVAL, left / 2))
            return
        msg.lock_expires_at = lease.deadline
        self._plan(keep, now, lease.deadline)

    def _keep_end(self, keep: KeepAlive) -> None:
        self._kept.pop(keep.msg, None)
        self.leases.cancel(keep)

    def _keep_done(self, keep: KeepAlive) -> None:
        """``until`` came (or the lock cannot be renewed): apply ``then``, if any."""
        self._keep_end(keep)
        msg = keep.msg
        if keep.then is not None and msg.acknowledged is None:
            msg._acknowledge(keep.then)
        self._keep_report(keep, None)

    def _keep_lost(self, keep: KeepAlive, exc: BaseException) -> None:
        self._keep_end(keep)
        if not isinstance(exc, InvalidRecordStateError):
            cause, exc = exc, _expired(keep.msg)
            exc.__cause__ = cause
        self._keep_report(keep, exc)

    def _keep_unsupported(self, keep: KeepAlive, exc: BaseException | None) -> None:
        """No RENEW on this consumer's brokers: ``then`` now, before the lock runs out."""
        if self.renew_supported is not False:
            self.renew_supported = False
            log.warning(
                "the broker cannot RENEW acquisition locks (ShareAcknowledge v2 needs Kafka 4.2+): "
                "keep-alive is off for this consumer; records kept alive with a then= get it at "
                "their renewal time, the others keep only the lock they have (%s)",
                exc,
            )
        if exc is not None:
            self._unsupported = exc
        if keep.then is not None:
            self._keep_done(keep)
        else:
            self._keep_end(keep)
            self._keep_report(keep, self._unsupported)

    def _keep_report(self, keep: KeepAlive, exc: BaseException | None) -> None:
        """The consumer ended ``keep``: tell its ``on_end``, or errors to on_keep_alive_error."""
        try:
            if keep.on_end is not None:
                keep.on_end(keep.msg, exc)
            elif exc is not None and self._on_keep_alive_error is not None:
                self._on_keep_alive_error(keep.msg, exc)
        except Exception:
            log.exception("keep-alive callback raised")

    def _mark_pending(self, node: int) -> None:
        if node not in self._pending_since:
            self._pending_since[node] = self._time()

    def _report_local(
        self, tp: TopicIdPartition, first: int, type_: int, exc: BaseException, last: int | None = None
    ) -> None:
        end = first if last is None else last
        topic = self._topic_of(tp)
        self._emit(topic, set(range(first, end + 1)), exc)
        if self._on_ack_result is not None:
            self._deliver([AckResult(topic, first, end, AckType(type_), AckStatus.NOT_SENT, exc)])
        self._progress.set()

    def _report(self, outcomes: list[AckOutcome[None]], *, failure: _Failure | None = None) -> None:
        detailed: list[AckResult] | None = [] if self._on_ack_result is not None else None
        for outcome in outcomes:
            exc: BaseException | None = None
            status = AckStatus.APPLIED
            if not outcome.ok:
                if failure is not None:
                    exc, status = failure.exc, failure.status
                else:
                    exc = error_for_code(outcome.error_code, outcome.error_message)
                    status = AckStatus.REFUSED
            topic = self._topic_of(outcome.tp)
            self._emit(topic, outcome, exc)
            if detailed is not None:
                detailed.extend(
                    AckResult(topic, lo, hi, AckType(type_), status, exc) for lo, hi, type_ in outcome.runs
                )
        if detailed:
            self._deliver(detailed)
        self._progress.set()

    def _deliver(self, results: list[AckResult]) -> None:
        callback = self._on_ack_result
        if callback is None:
            return
        try:
            callback(results)
        except Exception:
            log.exception("on_ack_result callback raised")

    def _emit(
        self, tp: TopicPartition, offsets: set[int] | AckOutcome[None], exc: BaseException | None
    ) -> None:
        if tp not in self._results or (exc is not None and self._results[tp] is None):
            self._results[tp] = exc  # the first failure of a partition sticks until commit()
        callback = self._on_ack_commit
        if callback is None:
            return
        found = offsets.offsets() if isinstance(offsets, AckOutcome) else offsets
        try:
            callback({tp: found}, exc)
        except Exception:
            log.exception("on_ack_commit callback raised")


def _expired(msg: Message) -> KafkaError:
    return InvalidRecordStateError(
        f"{msg.topic}[{msg.partition}]@{msg.offset}: the acquisition lock expired or the share session "
        "was lost; the record is no longer held by this consumer"
    )


def _runs(offsets: list[int]) -> list[tuple[int, int]]:
    """Ascending distinct offsets as maximal consecutive runs."""
    out: list[tuple[int, int]] = []
    for offset in offsets:
        if out and out[-1][1] == offset - 1:
            out[-1] = (out[-1][0], offset)
        else:
            out.append((offset, offset))
    return out


def _subtract(first: int, last: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """[first, last] minus ``covered`` spans (clipped to it, in any order)."""
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
