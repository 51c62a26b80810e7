"""Running one route: its consumers, fetch loops, handler slots, and every record's outcome.

``RouteRunner`` owns, per route:

* ``consumers`` members (``Member``), each a ShareConsumer with one fetch loop task;
* the route's handler slots (``Limiter(concurrency)``) and, through the app, its share of
  the process-wide slots;
* up to ``concurrency`` worker tasks, started on demand and kept: a job that got a slot
  is handed to an idle worker, which also runs the following jobs of the same key or
  partition (per_key / per_partition lanes).  Each handler call still runs as its own task
  in a copy of the worker's context, so a ``ContextVar`` a handler sets never leaks into a
  later job (the cost is one task per call, ~1-2 us);
* the held-record index: every record from ``received`` until its terminal event.

A fetch loop asks its consumer for records only when a handler slot is free, and for at
most ``free slots * records_per_job`` of them.  Records waiting for a slot, for their
key's turn, for a dead-letter confirmation or for a retry delay are all *held*: each is
handed to its consumer's keep-alive when received (``msg.keep_alive()``), which RENEWs its
lock until it is settled; a retry delay is a keep-alive ``until`` the delay ends, ``then``
RELEASE.  The consumer reports what it could not keep (``on_end``: lock lost, no RENEW on
the broker) and the end of a delay; the runtime keeps no timer of its own per record.

Every record ends in exactly one terminal event (accepted, released, rejected,
dead_lettered, lock_expired) - see ``_finish``; nothing else removes a record from the
index, and ``stop()`` sweeps whatever is left, so no record is forgotten.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from aioshare.protocol.errors import IllegalStateError, InvalidRecordStateError, KafkaError
from aioshare.protocol.types import AckType
from aioshare.runtime.clock import Clock
from aioshare.runtime.consumer import ConsumerFactory, ConsumerLike, ConsumerSpec, stop_fetching
from aioshare.runtime.delays import DelayBudget, Scheduler
from aioshare.runtime.dlq import DeadLetterSink, dead_letter_headers
from aioshare.runtime.events import Event, EventBus, EventKind, make_event
from aioshare.runtime.jobs import Job
from aioshare.runtime.limits import Limiter
from aioshare.runtime.logs import RecordLog
from aioshare.runtime.message import Message
from aioshare.runtime.metrics import Metrics
from aioshare.runtime.outcomes import ACCEPT, Action, Decision, State
from aioshare.runtime.retry import Reject, Retry
from aioshare.runtime.route import HandlerBinding, Route
from aioshare.share.ack_tracker import AckResult, AckStatus
from aioshare.share.consumer import LockExpiry
from aioshare.share.deserialize import DeserializationError
from aioshare.share.fetcher import RenewUnsupportedError
from aioshare.share.message import Message as ShareMessage

__all__ = ["Member", "RouteRunner", "Runtime", "Tracing"]

log = logging.getLogger(__name__)

_CANCEL_GRACE = 5.0  # seconds a cancelled handler gets to unwind before we stop waiting for it
# A fetched batch is handed to the consumer's keep-alive this long after it arrived (at most
# this share of its lock): most records are settled before that, and a keep-alive costs the
# consumer a timer entry (~2.5 us a record) that an immediate ACCEPT would only cancel again.
_HAND_OVER_AFTER = 1.0
_HAND_OVER_SHARE = 0.05


class Tracing(Protocol):
    """Wraps each handler call (aioshare.runtime.otel.OpenTelemetryTracing is one)."""

    def job(self, route: Route, messages: Sequence[Message[Any]]) -> AbstractContextManager[object]: ...


@dataclass
class Runtime:
    """The app-wide services a route runner uses."""

    clock: Clock
    scheduler: Scheduler  # the record log's windows (per-record locks and delays: the consumer)
    events: EventBus
    metrics: Metrics | None
    consumer_factory: ConsumerFactory
    bootstrap_servers: str | tuple[str, ...]
    consumer_options: Mapping[str, Any]
    dead_letters: DeadLetterSink | None
    dead_letter_timeout: float
    global_limit: Limiter | None
    max_retry_delay: float
    delay_budget: DelayBudget
    tracing: Tracing | None
    rand: Callable[[], float]
    close_timeout: float
    fail: Callable[[BaseException], None]


@dataclass(slots=True)
class _DeadLetter:
    msg: Message[Any]
    reason: str
    error: BaseException | None


class Member:
    """One ShareConsumer of a route and the records it delivered that the runtime holds."""

    def __init__(self, runner: RouteRunner, index: int, spec: ConsumerSpec, factory: ConsumerFactory) -> None:
        self.runner = runner
        self.index = index
        self.renew_supported = True
        self.started = False
        # The consumer's message -> the runtime's message wrapping it, for every held record.
        # No per-offset index: the consumer reports a kept record's end per message
        # (``on_end``), and ranges (``on_lock_expired``) are rare enough to be matched by a scan.
        self.records: dict[ShareMessage, Message[Any]] = {}
        self.consumer: ConsumerLike = factory(spec)

    def all_held(self) -> list[Message[Any]]:
        return list(self.records.values())

    @property
    def held(self) -> dict[tuple[str, int], dict[int, Message[Any]]]:
        """Held records by (topic, partition), then offset (built on demand, for reports)."""
        out: dict[tuple[str, int], dict[int, Message[Any]]] = {}
        for inner, msg in self.records.items():
            out.setdefault((inner.topic, inner.partition), {})[inner.offset] = msg
        return out

    # -- consumer callbacks --------------------------------------------------------------

    def keep_alive_ended(self, inner: ShareMessage, exc: BaseException | None) -> None:
        """``on_end`` of every keep-alive this member's records have (one bound method)."""
        msg = self.records.get(inner)
        if msg is not None:
            self.runner.keep_alive_ended(msg, exc)

    def on_lock_expired(self, expiries: list[LockExpiry]) -> None:
        if not self.records:
            return  # records the consumer had not handed over yet: not ours
        lost: list[Message[Any]] = []
        for expiry in expiries:
            tp = expiry.topic_partition
            topic, partition = tp.topic, tp.partition
            first, last = expiry.first_offset, expiry.last_offset
            lost += [
                msg
                for inner, msg in self.records.items()
                if first <= inner.offset <= last and inner.partition == partition and inner.topic == topic
            ]
        for msg in lost:
            self.runner.lock_lost(msg, None)

    def on_ack_result(self, results: list[AckResult]) -> None:
        self.runner.ack_results(results)


class RouteRunner:
    def __init__(self, route: Route, rt: Runtime) -> None:
        self.route = route
        self.rt = rt
        self.name = route.name
        self.renew_fraction = route.renew_fraction
        self.binding = HandlerBinding(route)
        self.jobs = route.jobs
        self.slots = Limiter(route.concurrency)
        self.members: list[Member] = []
        self.held_count = 0
        self.delayed_count = 0
        self.running_count = 0
        self._lanes: dict[Hashable, collections.deque[Job]] = {}
        self._fetch_tasks: set[asyncio.Task[None]] = set()
        # Handler calls run on up to ``concurrency`` long-lived worker tasks (not a task per
        # job): ``_ready`` holds jobs that own a slot and wait for a worker, ``_idle`` the
        # futures idle workers wait on, ``_busy`` counts workers inside a job.
        self._workers: set[asyncio.Task[None]] = set()
        self._ready: collections.deque[Job] = collections.deque()
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._busy = 0
        self._closing_workers = False
        self._hook_tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._forced = False
        self._wake = asyncio.Event()
        self._unsupported_reported = False
        self._worker_name = f"aioshare-route-{self.name}-job"
        self._worker_done = self._task_done(self._workers)
        self.record_log = RecordLog(
            self.name, lambda: self.rt.clock.time(), lambda when, cb: self.rt.scheduler.call_at(when, cb)
        )

    # ---------------------------------------------------------------- lifecycle

    def member_max_in_flight(self) -> int:
        total = self.route.concurrency * self.jobs.records_per_job
        return max(1, math.ceil(total / self.route.consumers))

    def _spec(self, index: int) -> tuple[ConsumerSpec, Member]:
        in_flight = self.member_max_in_flight()
        holder: list[Member] = []

        def lock_expired(expiries: list[LockExpiry]) -> None:
            holder[0].on_lock_expired(expiries)

        def ack_result(results: list[AckResult]) -> None:
            holder[0].on_ack_result(results)

        spec = ConsumerSpec(
            topics=self.route.topics,
            group_id=self.route.group_id,
            bootstrap_servers=self.rt.bootstrap_servers,
            max_in_flight=in_flight,
            max_poll_records=in_flight,
            on_lock_expired=lock_expired,
            on_ack_result=ack_result,
            value_type=self.route.value_type,
            value_deserializer=self.route.value_deserializer,
            key_deserializer=self.route.key_deserializer,
            member_index=index,
            keep_alive_fraction=self.route.renew_fraction,
            options={**self.rt.consumer_options, **self.route.consumer_options},
        )
        member = Member(self, index, spec, self.rt.consumer_factory)
        holder.append(member)
        return spec, member

    async def start(self) -> None:
        """Run on_start hooks, join the group with every member, start fetching."""
        await self.binding.start()
        for index in range(self.route.consumers):
            _, member = self._spec(index)
            self.members.append(member)
        try:
            for member in self.members:
                await member.consumer.start()
                member.started = True
        except BaseException:
            await self._close_consumers()
            raise
        if self.rt.metrics is not None:
            self.rt.metrics.register_route(
                self.name,
                held=lambda: self.held_count,
                delayed=lambda: self.delayed_count,
                running=lambda: self.running_count,
            )
        for member in self.members:
            task = asyncio.get_running_loop().create_task(
                self._fetch_loop(member), name=f"aioshare-route-{self.name}-fetch-{member.index}"
            )
            self._fetch_tasks.add(task)
            task.add_done_callback(self._task_done(self._fetch_tasks))

    def force(self) -> None:
        """Stop waiting for running handlers: cancel them now (a second SIGTERM)."""
        self._forced = True
        self._wake.set()

    async def stop(self, deadline: float) -> None:
        """Graceful stop; ``deadline`` (loop time) bounds the wait for running handlers.

        1. stop fetching; records fetched but not started are RELEASEd;
        2. wait for running handlers until ``deadline``: what finishes is settled as usual
           (ACCEPT on return), the rest is cancelled and RELEASEd;
        3. release every record still held (retry delays included);
        4. on_shutdown hooks; 5. commit and close every consumer (leaving the group).
        """
        self._stopping = True
        await _cancel_and_wait(self._fetch_tasks)
        for member in self.members:
            stop_fetching(member.consumer)
        await self._wait_for_jobs(deadline)
        for member in self.members:
            for msg in member.all_held():
                self._release(msg, "shutdown")
        await _cancel_and_wait(self._hook_tasks)
        await self.binding.shutdown()
        await self._close_consumers()
        self.record_log.flush(all_windows=True)
        if self.rt.metrics is not None:
            self.rt.metrics.unregister_route(self.name)

    async def _wait_for_jobs(self, deadline: float) -> None:
        try:
            async with asyncio.timeout_at(deadline):
                while (self._busy or self._ready) and not self._forced:
                    self._wake.clear()
                    await self._wake.wait()
        except TimeoutError:
            pass
        # No worker takes another job; jobs no worker picked up give their slots back (their
        # records are released by the sweep that follows).
        self._closing_workers = True
        while self._ready:
            self._ready.popleft()
            self._release_slot()
        running = self._busy
        pending = set(self._workers)
        if not pending:
            return
        if running:
            log.warning(
                "route %r: cancelling %d handler call(s) still running at shutdown", self.name, running
            )
        for task in pending:
            task.cancel()  # idle workers just end
        _, stuck = await asyncio.wait(pending, timeout=_CANCEL_GRACE)
        if stuck:
            # A handler that swallows CancelledError cannot be stopped from here; its records
            # are released by the sweep below all the same.
            log.error("route %r: %d handler call(s) ignored cancellation", self.name, len(stuck))

    async def _close_consumers(self) -> None:
        timeout = self.rt.close_timeout

        async def close(member: Member) -> None:
            if not member.started:
                return
            member.started = False
            try:
                await member.consumer.commit(timeout=timeout)
            except Exception as exc:
                log.debug("route %r: final commit of member %d failed: %r", self.name, member.index, exc)
            try:
                await member.consumer.close(timeout=timeout)
            except Exception as exc:
                log.warning("route %r: closing member %d failed: %r", self.name, member.index, exc)

        await asyncio.gather(*(close(m) for m in self.members))

    def _task_done(self, owner: set[asyncio.Task[Any]]) -> Callable[[asyncio.Task[Any]], None]:
        def done(task: asyncio.Task[Any]) -> None:
            owner.discard(task)
            self._wake.set()
            if task.cancelled():
                return
            exc = task.exception()
            if exc is not None:
                log.error("route %r: %s failed", self.name, task.get_name(), exc_info=exc)
                self._emit(EventKind.ERROR, None, reason="runtime", error=exc)
                self.rt.fail(exc)

        return done

    # ---------------------------------------------------------------- fetching

    async def _fetch_loop(self, member: Member) -> None:
        consumer = member.consumer
        per_job = self.jobs.records_per_job
        global_limit = self.rt.global_limit
        while True:
            # Fetch only when a handler could start on what arrives.
            await self.slots.wait_free()
            if global_limit is not None:
                await global_limit.wait_free()
            want = max(1, self.slots.free) * per_job
            try:
                batch = await consumer.getmany(max_records=want, timeout=self.route.poll_interval)
            except Exception as exc:
                # The consumer gives up only on errors it cannot retry (authorization, fencing
                # it cannot recover from...): the app stops, releasing what it holds.
                log.error("route %r: member %d failed: %r", self.name, member.index, exc)
                self._emit(EventKind.ERROR, None, reason="consumer-failed", error=exc)
                self.rt.fail(exc)
                return
            if batch:
                now = self.rt.clock.time()  # one moment for the whole batch
                messages = [self._receive(member, m, now) for m in batch]
                if member.renew_supported:
                    lock_left = batch[0].lock_expires_at - now
                    wait = min(_HAND_OVER_AFTER, _HAND_OVER_SHARE * lock_left)
                    self.rt.scheduler.call_at(now + wait, functools.partial(self._hand_over, messages))
                await self._dispatch(messages)

    def _receive(self, member: Member, inner: ShareMessage, now: float) -> Message[Any]:
        msg: Message[Any] = Message(inner, self, member, self.name, now)
        # An earlier delivery of the same offset that we still held was reported lost by the
        # consumer (on_end or on_lock_expired) before it handed this one out.
        member.records[inner] = msg
        self.held_count += 1
        self._emit_fields(EventKind.RECEIVED, msg, None, None, None, None, False, now)
        return msg

    def _hand_over(self, messages: list[Message[Any]]) -> None:
        """A batch's hand-over time: the consumer keeps the locks of its records still held
        (RENEWs them until they are acknowledged; ``on_end`` tells of trouble)."""
        for msg in messages:
            state = msg._state
            if state == State.DONE or state == State.DELAYED:
                continue  # settled, or already kept until its retry delay ends
            member: Member = msg._member
            if not member.renew_supported or not member.started:
                continue
            try:
                msg._inner.keep_alive(on_end=member.keep_alive_ended)
            except InvalidRecordStateError as exc:
                self.lock_lost(msg, exc)  # its lock ran out before anything could keep it
            except IllegalStateError:
                pass  # the consumer is closing: the final-epoch close releases the record

    async def _dispatch(self, messages: list[Message[Any]]) -> None:
        try:
            jobs = self.jobs.build(messages)
        except Exception as exc:
            log.exception("route %r: the jobs builder failed; releasing %d records", self.name, len(messages))
            for msg in messages:
                self._emit(EventKind.ERROR, msg, reason="jobs-builder", error=exc)
                self._release(msg, "jobs-builder", exc)
            return
        pending = collections.deque(jobs)
        loop = asyncio.get_running_loop()
        try:
            while pending:
                job = pending[0]
                if job.key is not None and job.key in self._lanes:
                    self._lanes[job.key].append(pending.popleft())  # its key is busy: queue behind
                    continue
                if not self._try_acquire_slot():
                    await self._acquire_slot()
                pending.popleft()
                if job.key is not None:
                    lane = self._lanes.get(job.key)
                    if lane is not None:  # another fetch loop opened the lane while we waited
                        lane.append(job)
                        self._release_slot()
                        continue
                    self._lanes[job.key] = collections.deque()
                self._start_job(job, loop)
        finally:
            # Stopped while waiting for a slot: these records never reached a handler.
            for job in pending:
                for msg in job.messages:
                    self._release(msg, "shutdown")

    def _start_job(self, job: Job, loop: asyncio.AbstractEventLoop) -> None:
        """Hand a job that owns a slot to a worker: an idle one, or a new one."""
        self._ready.append(job)
        self._kick(loop, self.route.concurrency)

    def _kick(self, loop: asyncio.AbstractEventLoop, max_workers: int) -> None:
        idle = self._idle
        while idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        if len(self._workers) < max_workers:
            task = loop.create_task(self._worker(), name=self._worker_name)
            self._workers.add(task)
            task.add_done_callback(self._worker_done)
        # else every worker is busy or about to look at ``_ready``: each ready job owns a
        # slot, so fewer than ``concurrency`` workers are inside a job and one will take it.

    async def _worker(self) -> None:
        ready = self._ready
        idle = self._idle
        loop = asyncio.get_running_loop()
        try:
            while not self._closing_workers:
                if ready:
                    job = ready.popleft()
                    self._busy += 1
                    try:
                        await self._run_lane(job)
                    finally:
                        self._busy -= 1
                        if self._stopping:
                            self._wake.set()
                    continue
                waiter: asyncio.Future[None] = loop.create_future()
                idle.append(waiter)
                try:
                    await waiter
                except BaseException:
                    if not waiter.done():
                        waiter.cancel()  # _kick skips it
                    raise
        finally:
            if ready and not self._closing_workers:
                # This worker dies (its handler raised past the runtime, or it was
                # cancelled): the jobs it might have taken still need one.
                self._kick(loop, self.route.concurrency + 1)

    def _try_acquire_slot(self) -> bool:
        """Take a slot without waiting (route's and global), or take nothing."""
        if not self.slots.try_acquire():
            return False
        global_limit = self.rt.global_limit
        if global_limit is not None and not global_limit.try_acquire():
            self.slots.release()
            return False
        return True

    async def _acquire_slot(self) -> None:
        await self.slots.acquire()
        global_limit = self.rt.global_limit
        if global_limit is not None:
            try:
                await global_limit.acquire(self.route.priority)
            except BaseException:
                self.slots.release()
                raise

    def _release_slot(self) -> None:
        if self.rt.global_limit is not None:
            self.rt.global_limit.release()
        self.slots.release()

    # ---------------------------------------------------------------- running

    async def _run_lane(self, job: Job) -> None:
        current: Job | None = job
        try:
            while current is not None:
                await self._run_job(current)
                current = self._next_in_lane(current)
        except BaseException:
            if current is not None and current.key is not None:
                lane = self._lanes.pop(current.key, None)
                for queued in lane or ():
                    for msg in queued.messages:
                        self._release(msg, "shutdown")
            raise
        finally:
            self._release_slot()

    def _next_in_lane(self, job: Job) -> Job | None:
        if job.key is None:
            return None
        lane = self._lanes.get(job.key)
        if not lane or self._stopping:
            self._lanes.pop(job.key, None)
            for queued in lane or ():
                for msg in queued.messages:
                    self._release(msg, "shutdown")
            return None
        return lane.popleft()

    async def _run_job(self, job: Job) -> None:
        live = [m for m in job.messages if m._state == State.QUEUED]
        if not live:
            return  # every record lost its lock while it waited
        if len(live) != len(job.messages):
            job = Job(live, job.key)
        for msg in live:
            msg._state = State.RUNNING
        decision = ACCEPT
        self.running_count += 1
        started = time.perf_counter()
        tracing = self.rt.tracing
        try:
            if tracing is None:
                await _isolated(self.binding.call(job, self.jobs.batch))
            else:
                with tracing.job(self.route, live):
                    await _isolated(self.binding.call(job, self.jobs.batch))
        except asyncio.CancelledError:
            self._abandon(live, "shutdown" if self._stopping else "cancelled")
            raise
        except Retry as exc:
            decision = Decision(Action.RETRY, delay=exc.delay, error=exc, reason="retry")
        except Reject as exc:
            decision = Decision(
                Action.REJECT, error=exc, reason=exc.reason or "rejected", dead_letter=exc.dead_letter
            )
        except Exception as exc:
            decision = Decision(Action.FAIL, error=exc, reason="handler")
            for msg in live:
                if msg._state == State.RUNNING and msg.decision is None:
                    self._emit(EventKind.ERROR, msg, reason="handler", error=exc)
                    self._log_failure(msg, exc)
        except BaseException:
            self._abandon(live, "crashed")
            raise
        finally:
            self.running_count -= 1
            if self.rt.metrics is not None:
                self.rt.metrics.observe_handler(self.name, time.perf_counter() - started)
        dead_letters = self._settle(live, decision)
        if dead_letters:
            await self._dead_letter(dead_letters)

    def _settle(self, messages: list[Message[Any]], decision: Decision) -> list[_DeadLetter]:
        """Apply the outcome of a finished call; returns the dead-letter copies it needs."""
        dead_letters: list[_DeadLetter] = []
        for msg in messages:
            if msg._state != State.RUNNING:
                continue  # settled by the handler itself, delayed, or lost its lock
            if msg.decision is None:
                msg.decision = decision  # so a late msg.accept() from the handler is refused
            request = self._apply(msg, msg.decision)
            if request is not None:
                dead_letters.append(request)
        return dead_letters

    def _abandon(self, messages: list[Message[Any]], reason: str) -> None:
        for msg in messages:
            if msg._state in (State.QUEUED, State.RUNNING, State.DEAD_LETTERING):
                self._release(msg, reason)

    # ---------------------------------------------------------------- policy

    def decide(self, msg: Message[Any], decision: Decision) -> None:
        """A handler settles one record (``msg.accept()`` and friends)."""
        if self.route.ack_mode == "implicit":
            raise IllegalStateError(
                f"route {self.name!r} uses ack_mode='implicit': the handler's return or exception "
                "settles its records; per-record outcomes need ack_mode='explicit'"
            )
        if msg.decision is not None:
            if msg.decision == decision:
                return  # the same outcome twice is one outcome
            raise IllegalStateError(f"{msg!r} already has an outcome ({msg.decision.action.value})")
        if msg._state == State.DONE:
            return  # its lock was lost (or the app is stopping): nothing left to settle
        if msg._state != State.RUNNING:
            raise IllegalStateError(f"{msg!r} is not being handled; only a running handler settles it")
        msg.decision = decision
        if self._apply(msg, decision, dry_run=True) is None:
            self._apply(msg, decision)
        # else: it needs a dead-letter copy, produced when the handler call ends.

    def _apply(self, msg: Message[Any], decision: Decision, *, dry_run: bool = False) -> _DeadLetter | None:
        """Turn a decision into an acknowledgement (or a retry delay, or a dead-letter copy).

        Returns a dead-letter request instead of acting when a copy must be produced
        first; with ``dry_run`` only reports whether it would.
        """
        route = self.route
        action = decision.action
        error = decision.error
        if action is Action.ACCEPT:
            if not dry_run:
                self._accept(msg)
            return None
        if action is Action.REJECT:
            wants_copy = (
                decision.dead_letter if decision.dead_letter is not None else route.dead_letter_on_reject
            )
            if wants_copy and route.dead_letter_topic is not None:
                return _DeadLetter(msg, "rejected", error)
            if not dry_run:
                self._reject(msg, decision.reason or "rejected", error)
            return None
        if action is Action.FAIL:
            if isinstance(error, DeserializationError):
                # Retrying cannot make bytes decode: give it up at once.
                return self._give_up(msg, "undecodable", error, dry_run)
            if route.on_error == "reject":
                return self._give_up(msg, "error", error, dry_run)
            action = Action.RELEASE if route.on_error == "release" else Action.RETRY
            decision = Decision(action, error=error, reason="handler")
        if route.max_attempts is not None and msg.delivery_count >= route.max_attempts:
            return self._give_up(msg, "exhausted", error, dry_run)
        if dry_run:
            return None
        if action is Action.RELEASE:
            self._release(msg, decision.reason or "release", error)
        else:
            self._retry(msg, decision.delay, error)
        return None

    def _give_up(
        self, msg: Message[Any], reason: str, error: BaseException | None, dry_run: bool
    ) -> _DeadLetter | None:
        if self.route.dead_letter_topic is not None:
            return _DeadLetter(msg, reason, error)
        if not dry_run:
            self._reject(msg, reason, error)
        return None

    def _retry(self, msg: Message[Any], delay: float | None, error: BaseException | None) -> None:
        route, rt = self.route, self.rt
        if delay is None:
            delay = route.retry.delay(msg.delivery_count, rt.rand) if route.retry is not None else 0.0
        if delay > rt.max_retry_delay:
            log.warning(
                "route %r: retry delay %.1fs capped at max_retry_delay=%.1fs",
                self.name,
                delay,
                rt.max_retry_delay,
            )
            delay = rt.max_retry_delay
        if delay <= 0:
            self._emit(EventKind.RETRIED, msg, error=error, delay=0.0, reason="retry")
            self._release(msg, "retry", error)
            return
        if not rt.delay_budget.take():
            # Holding more delayed records would hold their locks without bound: let go now.
            self._emit(EventKind.ERROR, msg, reason="delay-queue-full", error=error)
            self._release(msg, "delay-queue-full", error)
            return
        # The consumer keeps the lock until the delay is over, then RELEASEs the record and
        # calls on_end(msg, None) (without RENEW on the broker: at its renewal time, before
        # the lock runs out).  The runtime's clock is the consumer's (loop.time()).
        try:
            msg._inner.keep_alive(
                until=rt.clock.time() + delay,
                then=AckType.RELEASE,
                on_end=msg._member.keep_alive_ended,
            )
        except InvalidRecordStateError as exc:
            rt.delay_budget.give_back()
            self.lock_lost(msg, exc)  # nothing left to hold back
            return
        except IllegalStateError:
            rt.delay_budget.give_back()  # the consumer is closing: no delay to wait out
            self._emit(EventKind.RETRIED, msg, error=error, delay=0.0, reason="retry")
            self._release(msg, "retry", error)
            return
        msg._state = State.DELAYED
        self.delayed_count += 1
        self._emit(EventKind.RETRIED, msg, error=error, delay=delay, reason="retry")

    # ---------------------------------------------------------------- dead letters

    async def _dead_letter(self, requests: list[_DeadLetter]) -> None:
        sink, topic = self.rt.dead_letters, self.route.dead_letter_topic
        if sink is None or topic is None:
            raise RuntimeError(f"route {self.name!r} has no dead-letter producer")
        for request in requests:
            request.msg._state = State.DEAD_LETTERING

        async def produce(request: _DeadLetter) -> None:
            msg = request.msg
            headers = dead_letter_headers(
                msg, group_id=self.route.group_id, reason=request.reason, error=request.error
            )
            await sink.send(
                topic,
                key=msg.raw_key,
                value=msg.raw_value,
                headers=headers,
                timeout=self.rt.dead_letter_timeout,
            )

        try:
            results = await asyncio.gather(*(produce(r) for r in requests), return_exceptions=True)
        except asyncio.CancelledError:
            for request in requests:
                if request.msg._state == State.DEAD_LETTERING:
                    self._release(request.msg, "shutdown")
            raise
        for request, result in zip(requests, results, strict=True):
            msg = request.msg
            if msg._state != State.DEAD_LETTERING:
                continue  # its lock was lost while the copy was produced
            if isinstance(result, BaseException):
                # No confirmed copy, no REJECT: releasing keeps the record in the queue.
                self._emit(EventKind.ERROR, msg, reason="dead-letter-failed", error=result)
                self._log_record(
                    "dead_letter_failed",
                    "route %r: could not dead-letter %s[%d]@%d to %r (group %r, delivery %d), "
                    "releasing it: %s",
                    msg,
                    reason=request.reason,
                    error=result,
                    dead_letter_topic=topic,
                )
                self._release(msg, "dead-letter-failed", result)
                continue
            failure = self._ack(msg, "reject")
            if failure is not None:
                self._finish(msg, EventKind.RELEASED, reason="ack-failed", error=failure)
            else:
                self._finish(
                    msg,
                    EventKind.DEAD_LETTERED,
                    reason=request.reason,
                    error=request.error,
                    dead_letter_topic=topic,
                )

    # ---------------------------------------------------------------- settling

    def _ack(self, msg: Message[Any], kind: str) -> BaseException | None:
        inner = msg._inner
        try:
            if kind == "accept":
                inner.accept()
            elif kind == "release":
                inner.release()
            else:
                inner.reject()
        except KafkaError as exc:
            # The consumer is closed or failed: the broker releases what it held when the
            # session ends (or its lock runs out), so the record is not lost.
            log.debug("route %r: %s of %r not recorded: %r", self.name, kind, msg, exc)
            return exc
        return None

    def _accept(self, msg: Message[Any]) -> None:
        failure = self._ack(msg, "accept")
        if failure is not None:
            self._finish(msg, EventKind.RELEASED, reason="ack-failed", error=failure)
        else:
            self._finish(msg, EventKind.ACCEPTED)

    def _release(self, msg: Message[Any], reason: str, error: BaseException | None = None) -> None:
        if msg._state == State.DONE:
            return
        failure = self._ack(msg, "release")
        self._finish(
            msg,
            EventKind.RELEASED,
            reason=reason if failure is None else "ack-failed",
            error=error or failure,
        )

    def _reject(self, msg: Message[Any], reason: str, error: BaseException | None) -> None:
        failure = self._ack(msg, "reject")
        if failure is not None:
            self._finish(msg, EventKind.RELEASED, reason="ack-failed", error=failure)
        else:
            self._finish(msg, EventKind.REJECTED, reason=reason, error=error)

    def _finish(
        self,
        msg: Message[Any],
        kind: EventKind,
        *,
        reason: str | None = None,
        error: BaseException | None = None,
        dead_letter_topic: str | None = None,
    ) -> None:
        """The one place a held record stops being held."""
        if msg._state == State.DONE:
            return
        if msg._state == State.DELAYED:
            self.delayed_count -= 1
            self.rt.delay_budget.give_back()
        state = msg._state
        msg._state = State.DONE
        del msg._member.records[msg._inner]
        self.held_count -= 1
        if msg._inner.lock_expires_at != msg._lock_seen:
            # The consumer's keep-alive renewed its lock (it reports no event per RENEW).
            self._emit_fields(EventKind.RENEWED, msg, None, None, None, None, False, None)
        self._emit_fields(kind, msg, reason, error, None, dead_letter_topic, True, None)
        if kind in _LOGGED_OUTCOMES:
            self._log_outcome(msg, kind, reason, error, dead_letter_topic, state)

    # ---------------------------------------------------------------- logging

    def _log_failure(self, msg: Message[Any], exc: BaseException) -> None:
        """A handler raised for ``msg``: WARNING, with the traceback on its final attempt."""
        final = self._final_attempt(msg, exc)
        self._log_record(
            "handler_failure",
            "route %r: handler failed on %s[%d]@%d (group %r, delivery %d%s): %s",
            msg,
            error=exc,
            final=final,
            exc_info=exc if final else None,
        )

    def _final_attempt(self, msg: Message[Any], exc: BaseException) -> bool:
        """Whether a handler failure gives ``msg`` up (dead-letter/reject) instead of retrying."""
        route = self.route
        if isinstance(exc, DeserializationError) or route.on_error == "reject":
            return True
        return route.max_attempts is not None and msg.delivery_count >= route.max_attempts

    def _log_outcome(
        self,
        msg: Message[Any],
        kind: EventKind,
        reason: str | None,
        error: BaseException | None,
        dead_letter_topic: str | None,
        state: State,
    ) -> None:
        what = "undecodable record" if reason == "undecodable" else "record"
        if kind is EventKind.DEAD_LETTERED:
            self._log_record(
                "dead_lettered",
                f"route %r: {what} %s[%d]@%d dead-lettered to %r (group %r, delivery %d, reason %s): %s",
                msg,
                reason=reason,
                error=error,
                dead_letter_topic=dead_letter_topic,
            )
        elif kind is EventKind.REJECTED:
            self._log_record(
                "rejected",
                f"route %r: {what} %s[%d]@%d rejected (group %r, delivery %d, reason %s): %s",
                msg,
                reason=reason,
                error=error,
            )
        else:
            where = "while its handler ran" if state == State.RUNNING else f"while {state.name.lower()}"
            self._log_record(
                "lock_expired",
                f"route %r: lock of %s[%d]@%d lost {where} (group %r, delivery %d, reason %s): %s",
                msg,
                reason=reason,
                error=error,
                state=state.name.lower(),
            )

    def _log_record(
        self,
        kind: str,
        text: str,
        msg: Message[Any],
        *,
        reason: str | None = None,
        error: BaseException | None = None,
        dead_letter_topic: str | None = None,
        final: bool | None = None,
        state: str | None = None,
        exc_info: BaseException | None = None,
    ) -> None:
        """One rate-limited WARNING about ``msg``, its coordinates also as ``extra`` fields."""
        record_log = self.record_log
        if not record_log.enabled():
            return
        inner = msg._inner
        error_text = f"{type(error).__name__}: {error}" if error is not None else "-"
        extra: dict[str, Any] = {
            "route": self.name,
            "group_id": self.route.group_id,
            "topic": inner.topic,
            "partition": inner.partition,
            "offset": inner.offset,
            "delivery_count": inner.delivery_count,
            "event": kind,
        }
        args: list[Any] = [self.name, inner.topic, inner.partition, inner.offset]
        if kind in ("dead_lettered", "dead_letter_failed"):
            args.append(dead_letter_topic)
            extra["dead_letter_topic"] = dead_letter_topic
        args += [self.route.group_id, inner.delivery_count]
        if final is not None:
            args.append(", final attempt" if final else "")
            extra["final_attempt"] = final
        if kind not in ("handler_failure", "dead_letter_failed"):
            args.append(reason or "-")
        if reason is not None:
            extra["reason"] = reason
        if state is not None:
            extra["state"] = state
        if error is not None:
            extra["error_type"] = type(error).__name__
            extra["error"] = str(error)
        args.append(error_text)
        record_log.warning(kind, text, tuple(args), extra, exc_info=exc_info)

    # ---------------------------------------------------------------- locks (keep-alive)

    def keep_alive_ended(self, msg: Message[Any], exc: BaseException | None) -> None:
        """``on_end`` of ``msg``'s keep-alive: the consumer stopped keeping its lock by itself."""
        if msg._state == State.DONE:
            return
        if exc is None:
            # ``until`` came: the retry delay is over and the consumer applied the RELEASE.
            if msg._state == State.DELAYED:
                self._finish(msg, EventKind.RELEASED, reason="retry")
        elif isinstance(exc, RenewUnsupportedError):
            self.renew_unsupported(msg, exc)  # its lock now runs out unless it is settled first
        else:
            self.lock_lost(msg, exc)  # InvalidRecordStateError: refused, ran out, session lost

    def renew_unsupported(self, msg: Message[Any], exc: BaseException) -> None:
        member: Member = msg._member
        if member.renew_supported:
            member.renew_supported = False
            if not self._unsupported_reported:
                self._unsupported_reported = True
                log.warning(
                    "route %r: the broker does not support RENEW (needs Kafka 4.2+); long handlers "
                    "may lose their locks and retry delays are cut to the lock duration",
                    self.name,
                )
                self._emit(EventKind.ERROR, msg, reason="renew-unsupported", error=exc)
            # Records received from now on are not kept alive; delayed records are released
            # by the consumer at their renewal time, before their locks run out.

    def lock_lost(self, msg: Message[Any], exc: BaseException | None) -> None:
        if msg._state == State.DONE:
            return
        hook = self.binding.lock_lost_hook(msg)
        self._finish(msg, EventKind.LOCK_EXPIRED, reason="lock-expired", error=exc)
        if hook is None:
            return
        try:
            result = hook()
        except Exception:
            log.exception("route %r: on_lock_expired hook failed", self.name)
            return
        if result is not None and asyncio.iscoroutine(result):
            task = asyncio.get_running_loop().create_task(result, name=f"aioshare-route-{self.name}-hook")
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_done)

    def _hook_done(self, task: asyncio.Task[Any]) -> None:
        self._hook_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("route %r: on_lock_expired hook failed", self.name, exc_info=task.exception())

    async def extend_lock(self, msg: Message[Any]) -> float:
        """``msg.extend_lock()``: RENEW now (the keep-alive plans its next RENEW from the answer)."""
        try:
            deadline = await msg._inner.renew()
        except InvalidRecordStateError as exc:
            self.lock_lost(msg, exc)
            raise
        except RenewUnsupportedError as exc:
            self.renew_unsupported(msg, exc)
            raise
        if not _settled(msg):
            msg._lock_seen = deadline
            self._emit(EventKind.RENEWED, msg)
        return deadline

    def ack_results(self, results: list[AckResult]) -> None:
        """What became of acknowledgements: an ``ack_committed`` event per run, and a WARNING
        (rate-limited) for those the broker refused or that are in doubt."""
        for r in results:
            if r.status is AckStatus.REFUSED or r.status is AckStatus.IN_DOUBT:
                self._log_ack_problem(r)
        events = self.rt.events
        if not events.wants(EventKind.ACK_COMMITTED):
            return
        now = self.rt.clock.time()
        for r in results:
            events.emit(
                Event(
                    EventKind.ACK_COMMITTED,
                    self.name,
                    now,
                    topic=r.topic,
                    partition=r.partition,
                    offset=r.first_offset,
                    error=r.error,
                    reason=r.status.value,
                    count=r.last_offset - r.first_offset + 1,
                    ack_type=r.ack_type.name.lower(),
                )
            )

    def _log_ack_problem(self, r: AckResult) -> None:
        if not self.record_log.enabled():
            return
        span = str(r.first_offset) if r.first_offset == r.last_offset else f"{r.first_offset}-{r.last_offset}"
        what = "refused by the broker" if r.status is AckStatus.REFUSED else "in doubt (sent, not answered)"
        kind = f"ack_{r.status.value}"
        error_text = f"{type(r.error).__name__}: {r.error}" if r.error is not None else "-"
        extra: dict[str, Any] = {
            "route": self.name,
            "group_id": self.route.group_id,
            "topic": r.topic,
            "partition": r.partition,
            "offset": r.first_offset,
            "last_offset": r.last_offset,
            "ack_type": r.ack_type.name.lower(),
            "event": kind,
        }
        if r.error is not None:
            extra["error_type"] = type(r.error).__name__
            extra["error"] = str(r.error)
        self.record_log.warning(
            kind,
            "route %r: %s of %s[%d]@%s (group %r) %s: %s",
            (self.name, r.ack_type.name, r.topic, r.partition, span, self.route.group_id, what, error_text),
            extra,
        )

    # ---------------------------------------------------------------- events

    def _emit(
        self,
        kind: EventKind,
        msg: Message[Any] | None,
        *,
        reason: str | None = None,
        error: BaseException | None = None,
        delay: float | None = None,
        dead_letter_topic: str | None = None,
        terminal: bool = False,
    ) -> None:
        self._emit_fields(kind, msg, reason, error, delay, dead_letter_topic, terminal, None)

    def _emit_fields(
        self,
        kind: EventKind,
        msg: Message[Any] | None,
        reason: str | None,
        error: BaseException | None,
        delay: float | None,
        dead_letter_topic: str | None,
        terminal: bool,
        now: float | None,
    ) -> None:
        """``_emit`` with positional arguments (the per-record path); ``now`` None: read the clock."""
        subs = self.rt.events.subscribers(kind)
        if not subs:
            return
        if now is None:
            now = self.rt.clock.time()
        if msg is None:
            topic = partition = offset = delivery_count = latency = None
        else:
            inner = msg._inner
            topic = inner.topic
            partition = inner.partition
            offset = inner.offset
            delivery_count = inner.delivery_count
            latency = now - msg._received_at if terminal else None
        metrics = self.rt.metrics
        if len(subs) == 1 and metrics is not None and metrics.is_subscription(subs[0]):
            # Only the app's own metrics listen: count without building the event.
            metrics.record_fields(kind, self.name, topic, error, reason, delay, latency)
            return
        self.rt.events.emit(
            make_event(
                kind,
                self.name,
                now,
                topic,
                partition,
                offset,
                delivery_count,
                error,
                reason,
                delay,
                latency,
                dead_letter_topic,
            )
        )


_LOGGED_OUTCOMES = frozenset((EventKind.DEAD_LETTERED, EventKind.REJECTED, EventKind.LOCK_EXPIRED))


def _settled(msg: Message[Any]) -> bool:
    # A function, not an inline comparison: the state changes across awaits, which type
    # narrowing of an attribute does not know.
    return msg._state == State.DONE


async def _cancel_and_wait(tasks: set[asyncio.Task[Any]]) -> None:
    pending = list(tasks)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


async def _isolated(call: Awaitable[Any]) -> Any:
    """Awaits a handler call in its own task, and so in its own copy of the context.

    Cancelling the awaiting worker cancels the task too (its waiter is the task itself).
    """
    return await asyncio.ensure_future(call)
