"""ShareConsumer: the asyncio shell over the share-group cores.

    async with ShareConsumer("jobs", group_id="workers", bootstrap_servers="127.0.0.1:9092",
                             ack_mode="explicit") as consumer:
        async for msg in consumer:
            process(msg.value)
            msg.accept()

The consumer coordinates small parts, each owning one job:

* ``HeartbeatLoop`` (task) keeps the membership alive and yields assignments;
* ``Placement`` (task) maps assigned partitions to leaders, one ``LeaderFetcher`` each;
* each ``LeaderFetcher`` (task) owns the share session with its leader and sends every
  ShareFetch / ShareAcknowledge on it, acks riding fetches or going alone after a linger;
* ``LeaseTimer`` (task) is the one timer for every acquisition lock;
* ``AckTracker`` takes the application's acknowledgements and reports every outcome.

Fetching is driven by demand (demand.py): a fetch asks for what a ``getmany()`` /
``async for`` caller waits for, plus - while the application keeps up - the next batch (up
to four while it outpaces the round trips), so the round trip overlaps its work.  When the
application stops asking, fetching stops, and records fetched but never handed out are
released once a quarter of their lock has passed unasked (one delivery attempt per stall),
so they neither expire here nor come back as duplicates.  ``max_in_flight`` is a ceiling on records held (handed out or buffered, not yet
acknowledged), not a target; ``set_max_in_flight()`` changes it at run time;
``stop_fetching()`` sets it to zero for good (graceful shutdown: acks, renewals and commits
keep flowing).

Acknowledgement modes: ``explicit`` - the application calls accept/release/reject (a record
it forgets comes back after its lock expires); ``implicit`` - every record of the previous
delivery (``__anext__`` or ``getmany``) that the application did not acknowledge itself is
accepted when it asks for more and on ``commit()`` - not on ``close()``, which releases it
(as Kafka's Java client does: a close may come from an exception mid-processing).  Records
whose key or value did not decode are *released*, never silently accepted, in implicit mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl as _ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Literal, NamedTuple

from aioshare._tasks import Child, TaskOwner
from aioshare._validate import check_bootstrap, check_int, check_name, check_seconds
from aioshare.client.cluster import Cluster
from aioshare.client.sasl import SaslConfig
from aioshare.protocol.errors import ConfigError, IllegalStateError, KafkaTimeoutError
from aioshare.protocol.record_reader import RecordFields
from aioshare.protocol.types import AcquireMode, TopicIdPartition, TopicPartition
from aioshare.share.ack_tracker import (
    AckCommitCallback,
    AckInDoubtError,
    AckResultCallback,
    AckTracker,
    KeepAliveErrorCallback,
)
from aioshare.share.buffer import ReadyBuffer
from aioshare.share.capacity import Capacity, default_max_in_flight
from aioshare.share.delivery import Acquired
from aioshare.share.demand import STALL_SHARE, Demand
from aioshare.share.deserialize import Deserializer, make_key_decoder, make_value_decoder
from aioshare.share.fetcher import LeaderFetcher
from aioshare.share.heartbeat import HeartbeatLoop
from aioshare.share.iterator import ConsumerIterator
from aioshare.share.leader_session import (
    Delivered,
    FetchConfig,
    FetchEvent,
    LockDuration,
    LocksEnded,
    Misplaced,
    RecordsLost,
    SessionFailed,
)
from aioshare.share.lease_timer import LeaseTimer
from aioshare.share.leases import ExpiredRange, LeaseTable
from aioshare.share.membership import Membership
from aioshare.share.message import DeliveryContext, Message
from aioshare.share.placement import Placement
from aioshare.share.topic_watch import TopicWatch

__all__ = ["AckResults", "LockExpiry", "ShareConsumer"]

log = logging.getLogger(__name__)

AckResults = dict[TopicPartition, BaseException | None]
AckMode = Literal["explicit", "implicit"]


class LockExpiry(NamedTuple):
    """Offsets [first_offset, last_offset] of a partition whose acquisition lock ran out;
    ``error`` is the broker's when it said so (a refused RENEW), None when the time ran out."""

    topic_partition: TopicPartition
    first_offset: int
    last_offset: int
    error: BaseException | None = None


LockExpiredCallback = Callable[[list[LockExpiry]], object]

# The most records the iterator serves between two passes of its bookkeeping.  A fetch that
# ends without records, or records that expire or are lost while buffered, make the next
# fetch ahead due sooner without waking anyone; it is then noticed within this many records.
QUICK_RUN = 64

_ACQUIRE_MODES = {
    "batch_optimized": AcquireMode.BATCH_OPTIMIZED,
    "record_limit": AcquireMode.RECORD_LIMIT,
    "auto": AcquireMode.RECORD_LIMIT,  # where the leader serves it (ShareFetch v2), else batches
}


class ShareConsumer:
    """A member of a Kafka share group (KIP-932).

    ``max_poll_records`` is the batch ``async for`` asks for and the default for
    ``getmany()``; ``max_in_flight`` bounds how many records are held at once - fetching
    stops at that many unacknowledged records.  Its default follows the assignment: twice
    ``max_poll_records`` (room for the batch the application works on and the fetch ahead of
    it, and half of a partition's default in-flight window on the broker) per assigned
    partition, for at most two (``default_max_in_flight`` in capacity.py).  Records are fetched only for callers that
    ask (see the module docstring).  ``value_type`` decodes values as JSON into that msgspec type;
    ``value_deserializer``/``key_deserializer`` take raw bytes (or None) instead.
    ``on_ack_commit(offsets, exc)`` is Java's acknowledgement-commit callback;
    ``on_ack_result(results)`` gets the same reports as ``AckResult`` runs (partition,
    offsets, ack type and ``AckStatus``: applied, refused with Kafka's error, in doubt, not
    sent).  ``ack_linger`` is how long recorded acks wait for a fetch to ride before they are sent
    alone.  ``fetch_ahead`` (default True) fetches the next batch while the application
    works on the current one (further ahead while it outpaces the round trips:
    ``fetching_ahead``), as long as it comes back for more within a quarter of the
    lock; off, a fetch goes out only for a caller waiting in ``getmany()``/``async for``.  Times are in seconds.
    """

    def __init__(
        self,
        *topics: str,
        group_id: str,
        bootstrap_servers: str | Iterable[str] = "127.0.0.1:9092",
        ack_mode: AckMode = "implicit",
        acquire_mode: Literal["batch_optimized", "record_limit", "auto"] = "batch_optimized",
        max_poll_records: int = 500,
        max_in_flight: int | None = None,
        fetch_max_wait: float = 0.5,
        fetch_min_bytes: int = 1,
        fetch_max_bytes: int = 52_428_800,
        value_type: Any = None,
        value_deserializer: Deserializer | None = None,
        key_deserializer: Deserializer | None = None,
        on_ack_commit: AckCommitCallback | None = None,
        on_ack_result: AckResultCallback | None = None,
        on_lock_expired: LockExpiredCallback | None = None,
        ack_linger: float = 0.005,
        fetch_ahead: bool = True,
        member_id: str | None = None,
        rack_id: str | None = None,
        client_id: str = "aioshare",
        request_timeout: float = 30.0,
        ssl: _ssl.SSLContext | None = None,
        sasl: SaslConfig | None = None,
        metadata_max_age: float = 300.0,
        start_timeout: float = 30.0,
        keep_alive_fraction: float = 0.7,
        on_keep_alive_error: KeepAliveErrorCallback | None = None,
    ) -> None:
        if ack_mode not in ("explicit", "implicit"):
            raise ConfigError(f"ack_mode must be 'explicit' or 'implicit', not {ack_mode!r}")
        if acquire_mode not in _ACQUIRE_MODES:
            raise ConfigError(
                f"acquire_mode must be 'batch_optimized', 'record_limit' or 'auto', not {acquire_mode!r}"
            )
        if not all(isinstance(t, str) and t for t in topics):
            raise ConfigError(f"topics must be topic names, got {topics!r}")
        check_name("group_id", group_id)
        check_bootstrap(bootstrap_servers)
        check_int("max_poll_records", max_poll_records, 1)
        check_int("max_in_flight", max_in_flight, 1, optional=True)
        check_seconds("fetch_max_wait", fetch_max_wait)
        check_int("fetch_min_bytes", fetch_min_bytes, 0)
        check_int("fetch_max_bytes", fetch_max_bytes, 1)
        check_seconds("ack_linger", ack_linger)
        check_name("member_id", member_id, optional=True)
        check_name("rack_id", rack_id, optional=True)
        check_seconds("request_timeout", request_timeout, positive=True)
        check_seconds("metadata_max_age", metadata_max_age, positive=True)
        check_seconds("start_timeout", start_timeout, positive=True)
        if (
            not isinstance(keep_alive_fraction, int | float)
            or isinstance(keep_alive_fraction, bool)
            or not 0 < keep_alive_fraction < 1
        ):
            raise ConfigError(
                f"keep_alive_fraction must be a number strictly between 0 and 1, got {keep_alive_fraction!r}"
            )
        self._keep_alive_fraction = float(keep_alive_fraction)
        self._on_keep_alive_error = on_keep_alive_error
        self._start_timeout = start_timeout
        self._topics = frozenset(topics)
        self._ack_mode: AckMode = ack_mode
        self._on_lock_expired = on_lock_expired
        self._key_decoder = make_key_decoder(key_deserializer)
        self._value_decoder = make_value_decoder(value_type, value_deserializer)
        self._cluster = Cluster(
            bootstrap_servers,
            client_id=client_id,
            ssl=ssl,
            sasl=sasl,
            request_timeout=request_timeout,
            metadata_max_age=metadata_max_age,
        )
        self._membership = Membership(group_id, member_id=member_id, rack_id=rack_id)
        self._config = FetchConfig(
            group_id=group_id,
            member_id=self._membership.member_id,
            max_poll_records=max_poll_records,
            max_wait_ms=int(fetch_max_wait * 1000),
            min_bytes=fetch_min_bytes,
            max_bytes=fetch_max_bytes,
            acquire_mode=_ACQUIRE_MODES[acquire_mode],
            request_timeout=request_timeout,
            record_limit_if_served=acquire_mode == "auto",
        )
        # Left to us, the limit follows the assignment (_on_assignment).
        self._max_in_flight_by_assignment = max_in_flight is None
        self._max_in_flight = (
            max_in_flight if max_in_flight is not None else default_max_in_flight(max_poll_records, 1)
        )
        self._ack_linger = ack_linger
        self._on_ack_commit = on_ack_commit
        self._on_ack_result = on_ack_result
        self._names: dict[Any, str] = {}  # topic id -> name, as metadata told us
        self._contexts: dict[TopicIdPartition, DeliveryContext] = {}
        self._ready = ReadyBuffer()  # fetched, not handed out yet
        self._ready_event: asyncio.Event | None = None
        self._buffer_event: asyncio.Event | None = None  # records arrived: watch for a stall
        # A fetch ahead is due: the next call lets the fetchers run before it serves (see
        # _after_serving).
        self._yield_to_fetchers = False
        self._last_delivery: list[Message] = []
        self._fatal: BaseException | None = None
        self._fatal_waiter: asyncio.Future[BaseException] | None = None  # wait_failed()'s
        self._tasks = TaskOwner("share-consumer", self._task_failed)  # every background task
        self._placement_task: Child | None = None
        self._commit_lock: asyncio.Lock | None = None
        self._clock: Callable[[], float] = time.monotonic  # replaced by the loop's clock in start()
        self._started = False
        self._closed = False
        self.acquisition_lock_timeout_ms: int | None = None
        # Built in start(): they need the running loop.
        self._leases = LeaseTable()
        self._demand = Demand(fetch_ahead=fetch_ahead)
        self._capacity = Capacity(
            self._max_in_flight,
            self._held_count,
            self._wake_fetchers,
            demand=self._demand,
            buffered=lambda: len(self._ready),
        )
        # What async for iterates: it serves runs of buffered records itself (see __anext__);
        # _wake_consumers ends a run.
        self._iterator = ConsumerIterator(self._ready, self._leases, self._demand, self.__anext__)
        self._tracker: AckTracker | None = None
        self._timer: LeaseTimer | None = None
        self._heartbeat: HeartbeatLoop | None = None
        self._placement: Placement | None = None
        self._topic_watch: TopicWatch | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> ShareConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._closed:  # closed, or its start failed
            raise IllegalStateError("a closed ShareConsumer cannot be restarted")
        if self._started:
            return
        self._started = True
        self._ready_event = asyncio.Event()
        self._buffer_event = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        # The clock every lock deadline is on.  The stock loop's time() is time.monotonic()
        # behind a Python call: the iterator reads it once per record.
        loop = asyncio.get_running_loop()
        self._clock = time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time
        self._iterator.clock = self._clock
        self._tracker = AckTracker(
            self._leases,
            self._topic_partition,
            linger=self._ack_linger,
            capacity=self._capacity,
            on_ack_commit=self._on_ack_commit,
            on_ack_result=self._on_ack_result,
            on_change=self._wake_fetchers,
            # keep-alive: RENEW schedule, failures, and locks lost to a refused RENEW
            keep_alive_fraction=self._keep_alive_fraction,
            on_keep_alive_error=self._on_keep_alive_error,
            on_expired=self._expired,
        )
        self._timer = LeaseTimer(self._leases, self._expired, on_due=self._tracker.timers_due)
        self._placement = Placement(
            self._cluster, self._tracker, start_fetcher=self._start_fetcher, records_lost=self._records_lost
        )
        self._heartbeat = HeartbeatLoop(
            self._membership,
            self._cluster,
            on_assignment=self._on_assignment,
            on_fatal=self._fail,
            request_timeout=self._cluster.request_timeout,
        )
        self._topic_watch = TopicWatch(
            self._cluster, self.subscription, recheck_every=self._cluster.metadata_max_age
        )
        try:
            # Unreachable bootstrap servers are tried again until start_timeout, then
            # KafkaTimeoutError names the addresses tried.
            await self._cluster.start(timeout=self._start_timeout)
        except BaseException:
            self._closed = True
            raise
        tasks = self._tasks
        await tasks.start()
        tasks.spawn(self._timer.run, "lease-timer")
        tasks.spawn(self._watch_buffer, "buffer-watch")
        self._placement_task = tasks.spawn(self._placement.run, "placement")
        tasks.spawn(self._heartbeat.run, "heartbeat")
        tasks.spawn(self._topic_watch.run, "topic-watch")
        if self._topics:
            self._heartbeat.subscribe(self._topics)

    async def close(self, timeout: float = 30.0) -> AckResults:  # noqa: ASYNC109 -- one budget for the whole shutdown
        """Leave the group, bounded by ``timeout`` seconds; returns the last ack results.

        Stops fetching; sends every pending ack with the final session epoch (-1) to each
        leader, which makes the broker release the records still held - in implicit mode that
        includes the last delivery (as Kafka's Java client does; ``commit()`` first accepts
        it); leaves the group (epoch -1).
        Acks that could not be sent in time are reported failed.  No task survives.
        """
        if self._closed:
            return {}
        self._closed = True
        if not self._started:
            return {}
        tracker, heartbeat, placement = self._tracker, self._heartbeat, self._placement
        assert tracker is not None and heartbeat is not None and placement is not None
        self._wake_consumers()
        try:
            async with asyncio.timeout(timeout):
                if self._placement_task is not None:
                    self._placement_task.cancel()  # no new fetchers, no partition moves from here on
                # Implicit mode: the last delivery was never confirmed by asking for more (the
                # close may come from an exception mid-processing): the final epoch releases it.
                self._last_delivery = []
                self._ready.clear()  # never delivered: the final epoch releases them
                tracker.closed = True
                for fetcher in placement.fetchers.values():
                    fetcher.stop()  # each closes its share session (final epoch), then returns
                for child in self._tasks.running("fetch-"):
                    await child.wait()
                await heartbeat.leave()
        except TimeoutError:
            log.warning("ShareConsumer.close() ran out of its %ss; abandoning what is left", timeout)
        tracker.closed = True
        await self._tasks.close()
        tracker.fail_in_flight(
            AckInDoubtError("the consumer closed before this acknowledgement was answered")
        )
        tracker.fail_unsent(KafkaTimeoutError("the consumer closed before this acknowledgement was sent"))
        await self._cluster.close()
        return tracker.take_results()

    def _task_failed(self, name: str, exc: Exception) -> None:
        log.error("aioshare-%s failed", name, exc_info=exc)
        self._fail(exc)

    # -- subscription ------------------------------------------------------------------

    def subscribe(self, topics: Iterable[str]) -> None:
        """Replace the subscription (sent to the coordinator at once)."""
        topics = frozenset([topics] if isinstance(topics, str) else topics)
        self._topics = topics
        if self._heartbeat is not None and not self._closed:
            self._heartbeat.subscribe(topics)
        if self._topic_watch is not None:
            self._topic_watch.subscription_changed()

    def unsubscribe(self) -> None:
        """Leave the group; acks for records already delivered are still sent."""
        self._topics = frozenset()
        if self._heartbeat is not None and not self._closed:
            self._heartbeat.unsubscribe()
        if self._topic_watch is not None:
            self._topic_watch.subscription_changed()

    def subscription(self) -> frozenset[str]:
        return self._topics

    def assignment(self) -> set[TopicPartition]:
        if self._placement is None:
            return set()
        return {self._topic_partition(tp) for tp in self._placement.assignment}

    @property
    def member_id(self) -> str:
        return self._membership.member_id

    @property
    def member_epoch(self) -> int:
        """The member epoch the coordinator last gave (0 until joined)."""
        return self._membership.epoch

    @property
    def last_heartbeat_at(self) -> float | None:
        """When (event-loop clock, ``loop.time()``) the group coordinator last answered a
        heartbeat without an error; None before the first.  A readiness check compares it
        with the heartbeat interval: a member whose heartbeats keep failing keeps its epoch
        and assignment until the coordinator's session timeout ends it."""
        return self._membership.last_answered_at

    @property
    def heartbeat_interval(self) -> float | None:
        """The heartbeat interval (seconds) the coordinator gave in its last successful
        answer - the group's ``share.heartbeat.interval.ms``, within the broker's bounds -;
        None before the first.  A readiness check allows a few of them between answers."""
        return self._membership.coordinator_interval

    @property
    def heartbeat_failures(self) -> int:
        """Heartbeats lost or answered with an error since the last one answered cleanly."""
        return self._membership.failures

    @property
    def failure(self) -> BaseException | None:
        """The error that stopped this consumer (the next ``getmany()`` raises it), or None."""
        return self._fatal

    async def wait_failed(self) -> BaseException:
        """Wait until the consumer fails, and return the error (``failure``; it is not
        raised here): at once if it already failed.  Never returns while the consumer works,
        nor after a close without failure - cancel it then.  For code that must stop as soon
        as the consumer cannot go on without calling ``getmany()``, which raises the error."""
        if self._fatal is not None:
            return self._fatal
        if self._fatal_waiter is None:
            self._fatal_waiter = asyncio.get_running_loop().create_future()
        # Shielded: a cancelled caller must not cancel what the other callers wait on.
        return await asyncio.shield(self._fatal_waiter)

    @property
    def held(self) -> int:
        """Records acquired for this consumer and not yet settled (delivered or waiting)."""
        return self._leases.held_count

    @property
    def renew_requests(self) -> int:
        """Renew-only requests sent so far (``msg.renew()`` and keep-alive; each carries every
        renewal due for one leader)."""
        return 0 if self._tracker is None else self._tracker.renew_requests

    @property
    def fetching_ahead(self) -> int:
        """Records fetched ahead of the application now: a batch while it keeps up, up to four
        while it outpaces the round trips, 0 when only waiting callers are fetched for
        (demand.py).  The ``max_in_flight`` ceiling still caps what is held."""
        return self._demand.ahead

    @property
    def max_in_flight(self) -> int:
        """The most records held at once; 0 once ``stop_fetching()`` was called."""
        return self._capacity.limit

    def set_max_in_flight(self, n: int) -> None:
        """Change ``max_in_flight`` at run time.

        Growing it lets the fetchers ask for more at once; shrinking it below ``held``
        stops fetching until enough records are settled (nothing held is given back).
        After ``stop_fetching()`` the new value is kept but fetching stays stopped.  From
        then on the limit no longer follows the assignment.
        """
        check_int("max_in_flight", n, 1)
        self._max_in_flight_by_assignment = False
        self._max_in_flight = n
        self._capacity.set_limit(n)

    def _on_assignment(self, tps: frozenset[TopicIdPartition]) -> None:
        assert self._placement is not None  # the heartbeat runs from start() on
        self._placement.set_assignment(tps)
        if self._max_in_flight_by_assignment:
            n = default_max_in_flight(self._config.max_poll_records, len(tps))
            if n != self._max_in_flight:
                self._max_in_flight = n
                self._capacity.set_limit(n)

    def stop_fetching(self) -> None:
        """Acquire no more records, for good; everything else keeps working.

        Acknowledgements, renewals and ``commit()`` still reach the brokers (as
        ShareAcknowledge, since no ShareFetch goes out any more), records already fetched
        are still handed out, and ``close()`` still releases what is held.  For a graceful
        shutdown: records acquired after this point could only wait until the close
        released them, and each acquisition counts a delivery.  A ShareFetch already
        long-polling may still bring records (within ``fetch_max_wait``).
        """
        self._capacity.stop()

    # -- consuming ---------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterator

    async def __anext__(self) -> Message:
        if self._yield_to_fetchers:
            self._yield_to_fetchers = False
            await asyncio.sleep(0)
        implicit = self._ack_mode == "implicit"
        if implicit:
            self._accept_implicitly()
        ready_queue = self._ready
        if ready_queue and self._fatal is None and not self._closed:
            # The common case, once per record: served from the buffer, no wait.
            now = self._clock()
            ready = ready_queue.pop_held(self._leases, now)
            if ready is not None:
                demand = self._demand
                was_ahead = demand.ahead
                if now > demand.fresh_until:
                    demand.took_one(self._config.max_poll_records, now)
                # _after_serving acts only when the distance changed or the next fetch ahead
                # is due (Demand.ahead_due of Capacity.on_the_way), so that is tested here,
                # inline: calling it for every record cost 0.1 µs of the iterator's 1.5 µs.
                ahead = demand.ahead
                if ahead:
                    over = (
                        len(ready_queue)
                        + self._capacity.reserved
                        - self._capacity.speculative
                        - demand.due_at
                    )
                    if ahead != was_ahead or over <= 0:
                        self._after_serving(was_ahead)
                    elif not implicit:  # implicit mode accepts the last record on each call
                        # A run: no fetch ahead can be due before `over` more records are
                        # served, nor took_one before Demand.fresh_until; the iterator serves
                        # them until something wakes the consumers.
                        self._iterator.run = min(over - 1, QUICK_RUN)
                if implicit:
                    self._last_delivery = [ready]
                return ready
        demand = self._demand
        batch = self._config.max_poll_records
        now = self._clock()
        demand.begin(now)
        waited = 0
        msg: Message | None = None
        try:
            while True:
                if self._fatal is not None:
                    raise self._fatal
                if self._closed:
                    raise StopAsyncIteration
                msg = self._pop(self._clock())
                if msg is not None:
                    if implicit:
                        self._last_delivery = [msg]
                    return msg
                if not waited:
                    waited = batch  # the iterator works in batches of max_poll_records
                    demand.wait(batch)
                    self._wake_fetchers()
                await self._wait_ready(None)
        finally:
            self._served(waited, 0 if msg is None else 1, batch)

    async def getmany(self, max_records: int | None = None, timeout: float | None = None) -> list[Message]:  # noqa: ASYNC109
        """Up to ``max_records`` messages; waits at most ``timeout`` seconds for the first one."""
        if self._yield_to_fetchers:
            self._yield_to_fetchers = False
            await asyncio.sleep(0)
        self._accept_implicitly()
        limit = max_records if max_records is not None else self._config.max_poll_records
        if limit < 1:
            raise ConfigError(f"max_records must be >= 1, not {limit!r}")
        out: list[Message] = []
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = None if timeout is None else now + timeout
        demand = self._demand
        demand.begin(now)
        waited = 0
        try:
            while True:
                self._raise_if_failed()
                if self._closed:
                    return out
                if self._ready:
                    self._pop_into(out, limit)
                if out:
                    break
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    break
                if not waited:
                    waited = limit
                    demand.wait(limit)
                    self._wake_fetchers()
                await self._wait_ready(remaining)
        finally:
            self._served(waited, len(out), limit)
        self._last_delivery = out
        return out

    async def commit(self, timeout: float | None = None) -> AckResults:  # noqa: ASYNC109
        """Send every recorded ack now and wait for the answers.

        Returns the outcome per partition of every ack reported since the previous
        commit (including acks that failed locally, e.g. after lock expiry): None for
        success, else the exception.  Partitions still unanswered after ``timeout``
        (default: the request timeout) map to KafkaTimeoutError.
        """
        self._raise_if_failed()
        if not self._started or self._closed:
            raise IllegalStateError("the consumer is not running")
        tracker, lock = self._tracker, self._commit_lock
        assert tracker is not None and lock is not None
        self._accept_implicitly()
        limit = self._cluster.request_timeout if timeout is None else timeout
        async with lock:
            tracker.begin_flush()
            try:
                async with asyncio.timeout(limit):
                    while tracker.unfinished():
                        self._raise_if_failed()
                        await tracker.wait_progress()
            except TimeoutError:
                results = tracker.take_results()
                error = KafkaTimeoutError(f"acknowledgements not answered within {limit}s")
                for tp in self._unfinished_partitions():
                    results[tp] = error
                return results
            finally:
                tracker.end_flush()
            return tracker.take_results()

    # -- internals: delivery -----------------------------------------------------------

    def _held_count(self) -> int:
        # The tracker's count: the lease table's would first settle the acks staged since the
        # last flush - a flush per record for an application that acks one at a time.
        tracker = self._tracker
        return self._leases.held_count if tracker is None else tracker.held_count

    def _pop(self, now: float) -> Message | None:
        return self._ready.pop_held(self._leases, now)

    def _pop_into(self, out: list[Message], limit: int) -> None:
        """Move up to ``limit - len(out)`` ready messages to ``out`` (``take_held``)."""
        self._ready.take_held(out, limit, self._leases, self._clock())

    def _served(self, waited: int, took: int, batch: int) -> None:
        demand = self._demand
        was_ahead = demand.ahead
        demand.end(waited, took, batch, self._clock())
        self._after_serving(was_ahead)

    def _after_serving(self, was_ahead: int) -> None:
        demand = self._demand
        ahead = demand.ahead
        if not ahead:
            return
        if not was_ahead and self._buffer_event is not None:
            self._buffer_event.set()  # the watcher ends the fetching ahead if no ask follows
        # Once per record for the iterator, so the cheap tests go first: nothing to do while
        # a fetch on its way keeps the demand met, or while a fetcher waits for acks to free
        # capacity (the acks wake it: Capacity.wait_for) - unless the distance just changed.
        capacity = self._capacity
        if (
            demand.ahead_due(len(self._ready) + capacity.on_the_way)
            and (capacity.wake_below < 0 or ahead != was_ahead)
            and capacity.free() > 0
        ):
            self._wake_fetchers()
            # A call served from the buffer never suspends, so a loop that does not await
            # anything else would not let the fetchers run - and send the fetch ahead - until
            # the buffer ran dry.  The next call yields once first (before it takes a record:
            # a cancellation there loses nothing).
            self._yield_to_fetchers = True

    async def _watch_buffer(self) -> None:
        """End a stall (demand.py): nobody asked for the stall time, yet records wait here or
        are being fetched ahead.  Buffered records go back; fetching waits for the next ask."""
        event = self._buffer_event
        assert event is not None
        demand = self._demand
        while True:
            event.clear()
            if not self._ready and not demand.ahead:
                await event.wait()
                continue
            wait = demand.stall_deadline() - self._clock()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(None if math.isinf(wait) else wait):
                        await event.wait()
                continue
            if self._ready:
                self._release_buffer()
            else:
                demand.stalled()

    def _release_buffer(self) -> None:
        # Every buffered record still held, the buffer emptied in place (the iterator serves
        # from it too); records whose lock ran out while they waited are dropped on the way.
        released: list[Message] = []
        self._ready.take_held(released, len(self._ready), self._leases, self._clock())
        for msg in released:
            msg.release()
        self._demand.stalled()
        if released:
            first = released[0]
            log.info(
                "group %s: released %d fetched records nobody asked for within %.1fs "
                "(first: %s-%d offset %d); fetching resumes when the application asks",
                self._config.group_id,
                len(released),
                self._demand.lock * STALL_SHARE,
                first.topic,
                first.partition,
                first.offset,
            )

    async def _wait_ready(self, timeout: float | None) -> None:  # noqa: ASYNC109
        event = self._ready_event
        assert event is not None
        event.clear()
        if self._ready or self._closed or self._fatal is not None:
            return
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            pass

    def _wake_consumers(self) -> None:
        # Whatever a waiting caller must see (records, a failure, close) ends a run too.
        self._iterator.run = 0
        if self._ready_event is not None:
            self._ready_event.set()

    def _accept_implicitly(self) -> None:
        if self._ack_mode != "implicit" or not self._last_delivery:
            return
        delivered, self._last_delivery = self._last_delivery, []
        if self._tracker is None or self._tracker.closed:
            return
        for msg in delivered:
            if msg.acknowledged is None:
                if msg.error is not None:
                    msg.release()  # never accept what the application could not read
                elif not msg.kept_alive:  # kept alive: the application is still working on it
                    msg.accept()

    def _raise_if_failed(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    def _unfinished_partitions(self) -> set[TopicPartition]:
        tracker = self._tracker
        assert tracker is not None
        return {self._topic_partition(tp) for tp in tracker.unfinished_partitions()}

    # -- internals: what the parts report --------------------------------------------------

    def _topic_partition(self, tp: TopicIdPartition) -> TopicPartition:
        name = self._names.get(tp.topic_id)
        if name is None:
            topic = self._cluster.topic(tp.topic_id)
            name = topic.name if topic is not None else str(tp.topic_id)
            if topic is not None:
                self._names[tp.topic_id] = name
        return TopicPartition(name, tp.partition)

    def _start_fetcher(self, node_id: int) -> LeaderFetcher:
        assert self._tracker is not None
        fetcher = LeaderFetcher(
            node_id,
            cluster=self._cluster,
            config=self._config,
            tracker=self._tracker,
            capacity=self._capacity,
            make_messages=self._make_messages,
            on_events=self._on_fetch_events,
        )
        self._tasks.spawn(fetcher.run, f"fetch-{node_id}")
        return fetcher

    def _wake_fetchers(self) -> None:
        if self._placement is not None:
            for fetcher in self._placement.fetchers.values():
                fetcher.wake()

    def _on_fetch_events(self, events: list[FetchEvent]) -> None:
        """What a leader's session reported (leader_session.py), in the order it happened."""
        for event in events:
            if isinstance(event, Delivered):
                self._demand.arrived(
                    len(event.records),
                    event.asked,
                    len(self._ready),
                    self._capacity.limit,
                    self._clock(),
                    event.round_trip,
                )
                self._ready.move_from(event.records)
                self._wake_consumers()
                if self._buffer_event is not None:
                    self._buffer_event.set()
            elif isinstance(event, LockDuration):
                self.acquisition_lock_timeout_ms = event.lock_ms
                self._demand.set_lock(event.lock_ms / 1000)
                if self._timer is not None:
                    self._timer.reschedule()
            elif isinstance(event, Misplaced):
                if self._placement is not None and not self._closed:
                    self._placement.misplaced(event.tp)
            elif isinstance(event, RecordsLost):
                self._records_lost(event.tps)
            elif isinstance(event, LocksEnded):
                self._expired(event.ranges)
            elif isinstance(event, SessionFailed):
                self._fail(event.error)

    def _make_messages(
        self,
        tp: TopicIdPartition,
        runs: list[tuple[Acquired, list[RecordFields]]],
        deadline: float,
        out: ReadyBuffer,
    ) -> None:
        ctx = self._context(tp)
        lease_at = self._leases.lease_at
        for acquired, records in runs:
            # One lease hint per range; a record of a range split since (a GAP cut out of
            # its middle) just finds its lease by lookup when acknowledged.
            hint = lease_at(tp, records[0][0])
            out.add(ctx, records, acquired.delivery_count, deadline, hint)

    def _context(self, tp: TopicIdPartition) -> DeliveryContext:
        """The partition's DeliveryContext, shared by all its messages (and its ack runs)."""
        ctx = self._contexts.get(tp)
        if ctx is None:
            topic = self._topic_partition(tp).topic
            ctx = DeliveryContext(topic, tp, self._tracker, self._key_decoder, self._value_decoder)
            if tp.topic_id in self._names:
                self._contexts[tp] = ctx  # kept only once the topic's name is known
        return ctx

    def _records_lost(self, tps: list[TopicIdPartition]) -> None:
        """Records of ``tps`` are no longer ours: drop the ones not yet handed out."""
        lost = set(tps)
        if self._ready and lost:
            self._ready.drop_partitions(lost)
        self._wake_fetchers()

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
            log.error("share consumer failed: %r", exc)
            waiter = self._fatal_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(exc)
        self._wake_consumers()

    def _expired(self, expired: list[ExpiredRange]) -> None:
        self._wake_fetchers()  # capacity came back
        callback = self._on_lock_expired
        if callback is None:
            return
        report = [LockExpiry(self._topic_partition(e.tp), e.first, e.last, e.error) for e in expired]
        try:
            callback(report)
        except Exception:
            log.exception("on_lock_expired callback raised")
