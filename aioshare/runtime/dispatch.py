"""The dispatcher: runs a route's jobs within its handler slots, one lane per key.

* **Queue.** Fetched jobs wait in ``queue`` for a slot.  The fetch loop keeps it at most
  ``prefetch`` jobs longer than the free slots (``wait_room()``): a slot that frees up starts
  the next job at once, while the next fetch is on its way - the round trip overlaps the
  work instead of leaving the slot idle.  A fetch loop also stops waiting once its consumer
  failed (``wait_room(until=...)``), so the app learns of it without waiting for a slot.
* **Slots.** A job runs only while it holds a slot of the route (``concurrency``) and, with
  ``App(max_concurrency=...)``, one of the app's (where a route's ``priority`` orders the
  waiters).
* **Lanes.** Jobs with the same ``key`` (per_key, per_partition builders) run one after
  another: a job whose key is busy waits in its lane and inherits the slot of the job before
  it.
* **Workers.** Up to ``concurrency`` long-lived worker tasks, started on demand, take queued
  jobs while slots are free.  Each job runs in a fresh copy of the route's context (the one
  ``App.start()`` ran in, see aioshare.runtime.isolation), so a ``ContextVar`` a handler sets
  never reaches a later job - without the cost of a task per job.  A worker takes job after
  job while its jobs finish without waiting; when one waits (the handler awaits I/O) the
  worker is tied up, and other workers are woken for the jobs that could start.  A fast
  handler therefore costs no task switch at all, and slow ones run ``concurrency`` at a time.

The dispatcher owns its workers: ``drain()`` waits for the running jobs until a deadline,
then cancels them and waits for the workers to end.  It knows nothing of records:
``run(job)`` and ``drop(job)`` (a job that will never run: its records are to be released)
are the route runner's.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
from collections.abc import Callable, Coroutine, Hashable
from typing import Any

from aioshare.runtime.isolation import FINISHED, resume, start
from aioshare.runtime.jobs import Job
from aioshare.runtime.limits import Limiter

__all__ = ["CANCEL_GRACE", "Dispatcher"]

log = logging.getLogger(__name__)

CANCEL_GRACE = 5.0  # seconds a cancelled handler gets to unwind before we stop waiting for it


class Dispatcher:
    def __init__(
        self,
        name: str,
        concurrency: int,
        *,
        run: Callable[[Job], Coroutine[Any, Any, None]],
        drop: Callable[[Job], None],
        fail: Callable[[BaseException], None],
        prefetch: int = 0,
        global_limit: Limiter | None = None,
        priority: int = 0,
    ) -> None:
        self.name = name
        self.slots = Limiter(concurrency)
        self.prefetch = prefetch
        self._max_workers = concurrency
        self._global = global_limit
        self._priority = priority
        self._run = run
        self._drop = drop
        self._fail = fail
        self._lanes: dict[Hashable, collections.deque[Job]] = {}
        self._queue: collections.deque[Job] = collections.deque()  # jobs waiting for a slot
        self._room = asyncio.Event()  # the queue got shorter, or a slot freed with nothing queued
        self._room_wanted = False  # the fetch loop waits for ``_room``
        self._wake_room: Callable[[asyncio.Future[Any]], None] = lambda _: self._room.set()
        self._idle: list[asyncio.Future[None]] = []  # what idle workers wait on
        self._workers: set[asyncio.Task[None]] = set()
        self._awake = 0  # workers that will look at the queue before they go idle
        self._waiting_for_global = False  # a worker waits for one of the app's slots
        self._busy = 0  # workers inside a job
        self._context = contextvars.copy_context()
        self._worker_name = f"aioshare-route-{name}-job"
        self._closing = False  # draining: no job starts any more
        self._forced = False
        self._changed = asyncio.Event()  # a job ended while draining, or force()

    @property
    def active(self) -> int:
        """Jobs running (their handler, or the dead-letter copies that follow it)."""
        return self._busy

    @property
    def queued(self) -> int:
        """Jobs waiting for a slot."""
        return len(self._queue)

    @property
    def workers(self) -> int:
        return len(self._workers)

    # -- submitting ----------------------------------------------------------------------

    async def wait_room(self, until: asyncio.Future[Any] | None = None) -> int:
        """Wait until the queue is shorter than the free slots plus ``prefetch`` (and the
        app has a free slot); returns how many jobs to fetch.

        ``until`` (a member's ``failed``) ends the wait early once it is done: 1 is returned
        then, so that the caller goes to its consumer at once - whose ``getmany()`` raises
        the failure - rather than when a handler ends.
        """
        while True:
            room = self.slots.free + self.prefetch - len(self._queue)
            if room > 0:
                break
            if until is not None and until.done():
                return 1
            self._room.clear()
            self._room_wanted = True
            if until is not None:
                until.add_done_callback(self._wake_room)  # a callback: no task per wait
            try:
                await self._room.wait()
            finally:
                self._room_wanted = False
                if until is not None:
                    until.remove_done_callback(self._wake_room)
        if self._global is not None and not self._global.free:
            if until is None:
                await self._global.wait_free()
            elif not until.done():
                # Only while every slot of the app is busy: a task per wait is affordable here.
                free = asyncio.ensure_future(self._global.wait_free())
                try:
                    await asyncio.wait((free, until), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    free.cancel()
            if until is not None and until.done():
                return 1
        return room

    def submit(self, jobs: list[Job]) -> None:
        """Queue ``jobs``; they start, in order, as slots are free."""
        self._queue.extend(jobs)
        if not self._awake and self.slots.free:
            self._wake_one()

    # -- workers -------------------------------------------------------------------------

    def _wake_one(self) -> bool:
        """Get one more worker to look at the queue: an idle one, or a new one."""
        idle = self._idle
        while idle:
            waiter = idle.pop()  # the one idle the shortest time
            if not waiter.done():
                waiter.set_result(None)
                self._awake += 1
                return True
        if len(self._workers) < self._max_workers:
            task = asyncio.get_running_loop().create_task(self._worker(), name=self._worker_name)
            self._workers.add(task)
            task.add_done_callback(self._worker_done)
            self._awake += 1
            return True
        # Every worker is inside a job, so every slot is taken: the first to end takes the
        # next queued job.
        return False

    def _on_block(self) -> None:
        """A worker's job waits: that worker is tied up; wake one for each job that could start."""
        self._awake -= 1
        if self._closing:
            return
        missing = min(len(self._queue), self.slots.free) - self._awake
        while missing > 0 and self._wake_one():
            missing -= 1

    def _on_unblock(self) -> None:
        """A job that waited has ended: its worker looks at the queue again."""
        self._awake += 1

    async def _worker(self) -> None:
        queue = self._queue
        loop = asyncio.get_running_loop()
        counted = True  # counted in ``_awake`` (by _wake_one)
        try:
            while True:
                while queue and not self._closing:
                    job = await self._take()
                    if job is None:
                        break
                    await self._run_lane(job)
                counted = False
                self._awake -= 1
                if self._closing:
                    return
                waiter: asyncio.Future[None] = loop.create_future()
                self._idle.append(waiter)
                try:
                    await waiter
                finally:
                    counted = waiter.done() and not waiter.cancelled()  # woken: counted again
        finally:
            if counted:
                self._awake -= 1
            self._workers.discard(asyncio.current_task())
            if queue and not self._closing and self.slots.free:
                self._wake_one()  # this worker ends (cancelled by someone): jobs still need one

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        self._workers.discard(task)
        if self._closing:
            self._changed.set()
        if not task.cancelled() and task.exception() is not None:
            self._fail(task.exception())  # type: ignore[arg-type]

    async def _take(self) -> Job | None:
        """The next queued job that can start, holding its slot(s); None if no slot is free."""
        queue, lanes = self._queue, self._lanes
        while queue:
            if not self.slots.try_acquire():
                return None
            if self._global is not None and not self._global.try_acquire():
                if self._waiting_for_global:
                    self.slots.release()  # one waiter per route keeps the order across routes
                    return None
                self._waiting_for_global = True
                try:
                    await self._global.acquire(self._priority)  # priority order across routes
                except BaseException:
                    self.slots.release()
                    raise
                finally:
                    self._waiting_for_global = False
                if not queue or self._closing:
                    self._release()
                    return None
            job = queue.popleft()
            if self._room_wanted:
                self._room.set()
            key = job.key
            if key is not None:
                lane = lanes.get(key)
                if lane is not None:
                    lane.append(job)  # its key is busy: it runs after the jobs before it
                    self._release()
                    continue
                lanes[key] = collections.deque()
            return job
        return None

    async def _run_lane(self, job: Job) -> None:
        """Run ``job`` (holding its slots), then the jobs queued in its lane, then queued jobs
        for as long as the slots may be kept; each job in a fresh context."""
        current: Job | None = job
        context, run, on_block, on_unblock = self._context, self._run, self._on_block, self._on_unblock
        self._busy += 1
        try:
            while current is not None:
                try:
                    # isolated(), inline: most jobs end in their first step, without a
                    # coroutine around them.
                    job_context = context.copy()
                    coro = run(current)
                    yielded = start(coro, job_context)
                    if yielded is not FINISHED:
                        await resume(coro, job_context, yielded, on_block, on_unblock)
                except Exception as exc:
                    self._fail(exc)  # a bug in the runtime: the app stops, releasing what it holds
                following = None if current.key is None else self._next_in_lane(current)
                current = following if following is not None else self._next_queued()
        except BaseException:
            if current is not None:
                self._drop_lane(current)
                self._release()
            raise
        finally:
            self._busy -= 1
            if self._closing:
                self._changed.set()

    def _next_queued(self) -> Job | None:
        """The next queued job to run on the slots a job just gave up, or None - the slots are
        released then (to a higher-priority route waiting for the app's slot, among others)."""
        queue, lanes = self._queue, self._lanes
        while queue and not self._closing:
            if self._global is not None and not self._global.keep(self._priority):
                self.slots.release()
                return None
            job = queue.popleft()
            if self._room_wanted:
                self._room.set()
            key = job.key
            if key is None:
                return job
            lane = lanes.get(key)
            if lane is None:
                lanes[key] = collections.deque()
                return job
            lane.append(job)  # its key is busy: it runs after the jobs before it
        self._release()
        if self._room_wanted:
            self._room.set()
        return None

    def _next_in_lane(self, job: Job) -> Job | None:
        lane = self._lanes.get(job.key)
        if not lane or self._closing:
            self._drop_lane(job)
            return None
        return lane.popleft()

    def _drop_lane(self, job: Job) -> None:
        if job.key is None:
            return
        for queued in self._lanes.pop(job.key, None) or ():
            self._drop(queued)

    def _release(self) -> None:
        if self._global is not None:
            self._global.release()
        self.slots.release()

    # -- stopping ------------------------------------------------------------------------

    def force(self) -> None:
        """Stop waiting for running jobs: ``drain()`` cancels them now."""
        self._forced = True
        self._changed.set()

    async def drain(self, deadline: float) -> None:
        """Start no more jobs (queued jobs and lanes are dropped); wait for the running ones
        until ``deadline`` (loop time) or ``force()``; then cancel the workers (and the jobs
        still running) and wait for them to end."""
        self._closing = True
        while self._queue:
            self._drop(self._queue.popleft())
        try:
            async with asyncio.timeout_at(deadline):
                while self._busy and not self._forced:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            pass
        running = self._busy
        pending = set(self._workers)
        if not pending:
            return
        if running:
            log.warning("route %r: cancelling %d job(s) still running at shutdown", self.name, running)
        for task in pending:
            task.cancel()  # idle workers just end
        _, stuck = await asyncio.wait(pending, timeout=CANCEL_GRACE)
        if stuck:
            # A handler that swallows CancelledError cannot be stopped from here; the route
            # releases its records all the same.
            log.error("route %r: %d handler call(s) ignored cancellation", self.name, len(stuck))
