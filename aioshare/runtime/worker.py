"""Running one route: its members' fetch loops and its handler calls, wired together.

``RouteRunner`` composes, per route (each part in a module of its own):

* ``Member``s (aioshare.runtime.member): ``consumers`` ShareConsumers, one fetch loop each;
* ``HeldRecords`` (aioshare.runtime.held): the state machine of every record held, from
  ``received`` until its terminal event;
* a ``Dispatcher`` (aioshare.runtime.dispatch): handler slots, per-key lanes, a task per job;
* ``OutcomePolicy`` (aioshare.runtime.policy): a handler's outcome → ACCEPT / RELEASE /
  RETRY / REJECT / DEAD_LETTER, pure;
* a ``Settler`` (aioshare.runtime.settle): carries settlements out (acks, retry delays,
  dead-letter copies) and keeps locks through the consumers' keep-alive;
* ``RouteEvents`` (aioshare.runtime.emitter) and ``RecordLog`` (aioshare.runtime.logs): what
  the route tells the event bus, the metrics and the log.

A fetch loop asks its consumer for records only when a handler slot is free, and for at
most ``free slots * records_per_job`` of them.  The runner's own code is what ties these
together: receive a batch, build its jobs, run each job's handler and hand its outcome to
the settler, and the graceful stop (``stop``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from aioshare.runtime.clock import Clock
from aioshare.runtime.consumer import ConsumerFactory, stop_fetching
from aioshare.runtime.delays import DelayBudget, Scheduler
from aioshare.runtime.delivery_limit import DeliveryLimitReader, learn_delivery_count_limit
from aioshare.runtime.dispatch import Dispatcher
from aioshare.runtime.dlq import DeadLetterSink
from aioshare.runtime.emitter import RouteEvents
from aioshare.runtime.events import EventBus
from aioshare.runtime.handover import HandOver
from aioshare.runtime.held import HeldRecords, State
from aioshare.runtime.jobs import Job
from aioshare.runtime.limits import Limiter
from aioshare.runtime.logs import RecordLog
from aioshare.runtime.member import Member, max_in_flight_per_member
from aioshare.runtime.message import Message
from aioshare.runtime.metrics import Metrics
from aioshare.runtime.outcomes import ACCEPT, Action, Decision
from aioshare.runtime.policy import OutcomePolicy
from aioshare.runtime.retry import Reject, Retry
from aioshare.runtime.route import HandlerBinding, Route
from aioshare.runtime.settle import Settler

__all__ = ["RouteRunner", "Runtime", "Tracing"]

log = logging.getLogger(__name__)

_QUEUED, _RUNNING = State.QUEUED, State.RUNNING
_perf_counter = time.perf_counter


class Tracing(Protocol):
    """Wraps each handler call (aioshare.runtime.otel.OpenTelemetryTracing is one)."""

    def job(self, route: Route, messages: Sequence[Message[Any]]) -> AbstractContextManager[object]: ...


@dataclass
class Runtime:
    """The app-wide services a route runner uses."""

    clock: Clock
    scheduler: Scheduler  # the app's few timers (per-record locks and delays: the consumers)
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
    # Reads each route's share.delivery.count.limit at its start (None: max_attempts alone).
    delivery_limit_reader: DeliveryLimitReader | None = None


class RouteRunner:
    def __init__(self, route: Route, rt: Runtime) -> None:
        self.route = route
        self.rt = rt
        self.name = route.name
        self.binding = HandlerBinding(route)
        self.jobs = route.jobs
        self.members: list[Member] = []
        self.running_count = 0  # handler calls in progress
        self.records: HeldRecords[Message[Any]] = HeldRecords(rt.delay_budget)
        self.policy = OutcomePolicy(
            on_error=route.on_error,
            retry=route.retry,
            max_attempts=route.max_attempts,
            dead_letter_topic=route.dead_letter_topic,
            dead_letter_on_reject=route.dead_letter_on_reject,
            max_retry_delay=rt.max_retry_delay,
        )
        self.events = RouteEvents(self.name, rt.events, rt.metrics, rt.clock)
        self.record_log = RecordLog(
            self.name, route.group_id, rt.clock.time, lambda when, cb: rt.scheduler.call_at(when, cb)
        )
        self.settler = Settler(
            self.name,
            records=self.records,
            policy=self.policy,
            events=self.events,
            record_log=self.record_log,
            binding=self.binding,
            implicit=route.ack_mode == "implicit",
            rand=rt.rand,
            dead_letters=rt.dead_letters,
            dead_letter_timeout=rt.dead_letter_timeout,
            group_id=route.group_id,
        )
        self.dispatcher = Dispatcher(
            self.name,
            route.concurrency,
            run=self.run_job,
            drop=self._drop,
            fail=functools.partial(self._failed, "a job"),
            prefetch=route.prefetch_jobs,
            global_limit=rt.global_limit,
            priority=route.priority,
        )
        self.hand_over = HandOver(
            self.records, self.settler, self.events.now, lambda when, cb: rt.scheduler.call_at(when, cb)
        )
        self._fetch_tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    # ---------------------------------------------------------------- state

    @property
    def slots(self) -> Limiter:
        """The route's handler slots (``concurrency``)."""
        return self.dispatcher.slots

    @property
    def held_count(self) -> int:
        return self.records.held_count

    @property
    def delayed_count(self) -> int:
        return self.records.delayed_count

    @property
    def stopping(self) -> bool:
        """``stop()`` has begun: no more fetching."""
        return self._stopping

    @property
    def fetching(self) -> int:
        """Fetch loops running."""
        return len(self._fetch_tasks)

    def member_max_in_flight(self) -> int:
        return max_in_flight_per_member(self.route)

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Run on_start hooks, join the group with every member, start fetching."""
        await self.binding.start()
        for index in range(self.route.consumers):
            self.members.append(
                Member(
                    self.route,
                    index,
                    factory=self.rt.consumer_factory,
                    bootstrap_servers=self.rt.bootstrap_servers,
                    options=self.rt.consumer_options,
                    on_lock_expired=self.settler.locks_expired,
                    on_ack_result=self.settler.ack_results,
                )
            )
        try:
            for member in self.members:
                await member.start()
            # Known before the first fetch (a redelivered record may be on its last delivery),
            # and read once the members reached the cluster: a cluster out of reach fails the
            # start as before, with nothing said about the limit.
            await self._learn_delivery_limit()
        except BaseException:
            await self._close_members()
            raise
        if self.rt.metrics is not None:
            self.rt.metrics.register_route(
                self.name,
                held=lambda: self.records.held_count,
                delayed=lambda: self.records.delayed_count,
                running=lambda: self.running_count,
            )
        loop = asyncio.get_running_loop()
        for member in self.members:
            task = loop.create_task(
                self._fetch_loop(member), name=f"aioshare-route-{self.name}-fetch-{member.index}"
            )
            self._fetch_tasks.add(task)
            task.add_done_callback(self._fetch_loop_done)

    async def _learn_delivery_limit(self) -> None:
        reader = self.rt.delivery_limit_reader
        if reader is None:
            return
        options = {**self.rt.consumer_options, **self.route.consumer_options}
        servers, group = self.rt.bootstrap_servers, self.route.group_id
        limit = await learn_delivery_count_limit(self.route, lambda: reader(servers, group, options))
        if limit is not None:
            self.policy = dataclasses.replace(self.policy, delivery_count_limit=limit)
            self.settler.policy = self.policy

    @property
    def delivery_count_limit(self) -> int | None:
        """The group's delivery-count limit the route learnt at start (None: not read)."""
        return self.policy.delivery_count_limit

    def force(self) -> None:
        """Stop waiting for running handlers: cancel them now (a second SIGTERM)."""
        self.dispatcher.force()

    async def stop(self, deadline: float) -> None:
        """Graceful stop; ``deadline`` (loop time) bounds the wait for running handlers.

        1. stop fetching; records fetched but not started are RELEASEd;
        2. wait for running handlers until ``deadline``: what finishes is settled as usual
           (ACCEPT on return), the rest is cancelled and RELEASEd;
        3. release every record still held (retry delays included);
        4. on_shutdown hooks; 5. commit and close every consumer (leaving the group): the
           broker's answers to the last acknowledgements arrive; one never answered is in doubt.
        """
        self._stopping = True
        tasks = list(self._fetch_tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for member in self.members:
            stop_fetching(member.consumer)
        await self.dispatcher.drain(deadline)
        for msg in self.records.all():
            self.settler.release(msg, "shutdown")
        await self.settler.close()
        await self.binding.shutdown()
        await self._close_members()
        self.settler.answers_missing()
        self.record_log.flush(all_windows=True)
        if self.rt.metrics is not None:
            self.rt.metrics.unregister_route(self.name)

    async def _close_members(self) -> None:
        timeout = self.rt.close_timeout
        await asyncio.gather(*(m.close(timeout) for m in self.members))

    def _fetch_loop_done(self, task: asyncio.Task[None]) -> None:
        self._fetch_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._failed(task.get_name(), task.exception())  # type: ignore[arg-type]

    def _failed(self, what: str, exc: BaseException) -> None:
        """A bug in the runtime: logged, an ``error`` event, and the app stops."""
        log.error("route %r: %s failed", self.name, what, exc_info=exc)
        self.events.error(None, "runtime", exc)
        self.rt.fail(exc)

    # ---------------------------------------------------------------- fetching

    async def _fetch_loop(self, member: Member) -> None:
        consumer = member.consumer
        per_job = self.jobs.records_per_job
        poll_interval = self.route.poll_interval
        dispatcher, records, events, settler = self.dispatcher, self.records, self.events, self.settler
        name = self.name
        while True:
            # Fetch only what handlers can start on now, or as soon as a running one ends - or
            # at once when the consumer failed: its getmany() raises the failure.
            room = await dispatcher.wait_room(until=member.failed)
            try:
                batch = await consumer.getmany(max_records=room * per_job, timeout=poll_interval)
            except Exception as exc:
                # The consumer gives up only on errors it cannot retry (authorization, fencing
                # it cannot recover from...): the app stops, releasing what it holds.
                log.error("route %r: member %d failed: %r", name, member.index, exc)
                events.error(None, "consumer-failed", exc)
                self.rt.fail(exc)
                return
            if not batch:
                continue
            now = events.now()  # one moment for the whole batch
            messages: list[Message[Any]] = Message.wrap(batch, settler, name)
            records.receive(messages, now)
            events.received(batch, messages, now)
            self.hand_over.received(now, batch[0].lock_expires_at)
            try:
                jobs = self.jobs.build(messages)
            except Exception as exc:
                log.exception("route %r: the jobs builder failed; releasing %d records", name, len(messages))
                for msg in messages:
                    events.error(msg, "jobs-builder", exc)
                    settler.release(msg, "jobs-builder", exc)
                continue
            dispatcher.submit(jobs)

    def _drop(self, job: Job) -> None:
        """A job that will not run (the route is stopping): its records go back."""
        for msg in job.messages:
            self.settler.release(msg, "shutdown")

    # ---------------------------------------------------------------- running

    async def run_job(self, job: Job) -> None:
        """One handler call (run by a dispatcher worker, in the job's own context); its outcome
        goes to the settler."""
        records = self.records
        messages = job.messages
        live: list[Message[Any]]
        if len(messages) == 1:
            if messages[0].state is not _QUEUED:
                return  # its lock was lost while it waited
            live = messages
        else:
            live = [m for m in messages if m.state is _QUEUED]
            if not live:
                return  # every record lost its lock while it waited
            if len(live) != len(messages):
                job = Job(live, job.key)
        for msg in live:
            records.start(msg)
        settler = self.settler
        decision = ACCEPT
        self.running_count += 1
        started = _perf_counter()
        tracing = self.rt.tracing
        try:
            if tracing is None:
                await self.binding.call(job, self.jobs.batch)
            else:
                with tracing.job(self.route, live):
                    await self.binding.call(job, self.jobs.batch)
        except asyncio.CancelledError:
            settler.abandon(live, "shutdown" if self._stopping else "cancelled")
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
                if msg.state is _RUNNING and msg.decision is None:
                    self.events.error(msg, "handler", exc)
                    final = self.policy.gives_up_on_failure(exc, msg.delivery_count)
                    self.record_log.handler_failed(msg, exc, final=final)
        except BaseException:
            settler.abandon(live, "crashed")
            raise
        finally:
            self.running_count -= 1
            self.events.handler_time(_perf_counter() - started)
        if decision is ACCEPT and len(live) == 1:
            msg = live[0]
            if msg.decision is None and msg.state is _RUNNING:  # the usual case, in short
                msg.decision = ACCEPT
                settler.accept(msg)
                return
        dead_letters = settler.settle_call(live, decision)
        if dead_letters:
            await settler.dead_letter(dead_letters, self.route.dead_letter_topic)
