"""The web process's side of the process reports: a bounded in-memory store and its reader.

    store = ReportStore()
    async with ReportReader("kafka:9092", "aioshare-reports", store):
        ...
        store.processes()                 # latest report of every process, stale/stopped marked
        store.group_processes("mailers")  # those with a route in that share group
        store.group_held("mailers")       # {(topic, partition): records held} over live processes
        store.series("mailers")           # 10 s buckets of rates, held, busy, errors - for charts
        store.errors(limit=100)           # newest first, de-duplicated across reports

``ReportStore`` keeps, per process, the latest full report and one small sample per report
(its counters and gauges) for ``retention_s`` (1 hour): with 5 s reports that is 720 samples
of a few hundred bytes per process.  A process not heard of for ``retention_s`` is dropped.
A process is *stale* when its last report is older than ``stale_factor`` (3) times its
``interval_s`` and it did not say it stopped.

``ReportReader`` reads the report topic with aiokafka (no group: every partition assigned),
starting at the offsets of ``now - rebuild_seconds`` so the store - and its time series - is
rebuilt from the reports already in the topic.  Reports read during that rebuild are placed at
their record timestamp (the report topic uses LogAppendTime, the broker's clock), later ones
at the reader's clock when read.  Undecodable records are logged once per source (a WARNING
naming the record key) and skipped; a missing topic is waited for quietly.

Every result is plain data (msgspec Structs, dicts, lists): ``msgspec.json.encode`` takes them.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from aioshare._validate import check_bootstrap, check_int, check_name, check_seconds
from aioshare.runtime.report import (
    DEFAULT_REPORT_TOPIC,
    ErrorReport,
    ProcessReport,
    ReportDecodeError,
    ReportVersionError,
    RouteReport,
    decode_report,
)

__all__ = [
    "OUTCOMES",
    "ProcessView",
    "ReportReader",
    "ReportStore",
    "Series",
]

log = logging.getLogger(__name__)

# The cumulative counters of a RouteReport that become rates, in this order.
OUTCOMES: tuple[str, ...] = (
    "received",
    "accepted",
    "released",
    "rejected",
    "dead_lettered",
    "expired",
    "retried",
    "renewals",
)
_COUNTERS = (*OUTCOMES, "errors")
_ERRORS_AT = len(OUTCOMES)


class ProcessView(msgspec.Struct, frozen=True, kw_only=True):
    """The latest report of one process, as seen at ``now``."""

    process_id: str
    report: ProcessReport
    received_at: float  # when its latest report arrived (unix seconds)
    last_seen_s: float  # now - received_at
    stale: bool  # no report for stale_factor x its interval, and it did not say it stopped
    stopped: bool  # its latest report says "stopped"


class Series(msgspec.Struct, frozen=True, kw_only=True):
    """Time buckets (oldest first) of one group's routes, or of all routes (``group_id`` None).

    Column ``i`` of every list is the bucket ``[t[i], t[i] + bucket_s)``.  ``rates[outcome]``
    is records per second in the bucket (from the counters' deltas, spread evenly between two
    reports); ``held``, ``busy`` and ``concurrency`` are sums over the processes whose latest
    report by the bucket's end was live (``processes`` counts them); ``errors`` counts error
    events in the bucket.  The current, unfinished bucket is not included.
    """

    group_id: str | None
    bucket_s: float
    t: list[float]
    rates: dict[str, list[float]]
    held: list[int]
    busy: list[int]
    concurrency: list[int]
    errors: list[int]
    processes: list[int]


# ------------------------------------------------------------------------------------ store


@dataclass(slots=True)
class _RouteSample:
    group_id: str
    counters: tuple[int, ...]  # _COUNTERS order
    held: int
    busy: int
    concurrency: int


@dataclass(slots=True)
class _Sample:
    t: float
    live_until: float  # t + stale_factor x interval (a stopped report: t)
    uptime_s: float
    routes: dict[str, _RouteSample]


@dataclass(slots=True)
class _Process:
    report: ProcessReport
    received_at: float
    samples: collections.deque[_Sample] = field(default_factory=collections.deque)


def _route_sample(route: RouteReport) -> _RouteSample:
    counters = tuple(int(getattr(route, name)) for name in _COUNTERS)
    return _RouteSample(route.group_id, counters, route.held_records, route.busy, route.concurrency)


class ReportStore:
    """The reports of every process, bounded in time (``retention_s``) and in size.

    ``clock`` (unix seconds) is what ``now`` defaults to; tests pass a fake one.
    """

    def __init__(
        self,
        *,
        retention_s: float = 3600.0,
        bucket_s: float = 10.0,
        stale_factor: float = 3.0,
        max_errors: int = 500,
        max_samples: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_seconds("retention_s", retention_s, positive=True)
        check_seconds("bucket_s", bucket_s, positive=True)
        check_seconds("stale_factor", stale_factor, positive=True)
        check_int("max_errors", max_errors, 1)
        check_int("max_samples", max_samples, 1)
        self.retention_s = float(retention_s)
        self.bucket_s = float(bucket_s)
        self.stale_factor = float(stale_factor)
        self.max_errors = max_errors
        self.max_samples = max_samples
        self.clock = clock
        self._procs: dict[str, _Process] = {}
        # (process_id, error identity) -> error; insertion order = arrival order, oldest evicted.
        self._errors: collections.OrderedDict[tuple[Any, ...], tuple[str, ErrorReport]] = (
            collections.OrderedDict()
        )
        self.revision = 0  # +1 for every report added: a cheap "anything new?" for pollers

    def __len__(self) -> int:
        return len(self._procs)

    def sample_count(self) -> int:
        """Samples kept over every process (what the store's memory grows with)."""
        return sum(len(p.samples) for p in self._procs.values())

    # -- writing ------------------------------------------------------------------------

    def add(self, report: ProcessReport, received_at: float | None = None) -> bool:
        """Take ``report`` (received at ``received_at``, default now); False if it was not newer
        than the latest report of its process (a duplicate or a late one) and so ignored."""
        now = self.clock()
        at = now if received_at is None else received_at
        if at < now - self.retention_s:
            return False  # older than anything kept
        proc = self._procs.get(report.process_id)
        if proc is not None:
            if report.seq <= proc.report.seq:
                return False
            at = max(at, proc.received_at)  # samples stay in time order
            proc.report = report
            proc.received_at = at
        else:
            proc = self._procs[report.process_id] = _Process(report, at)
        stopped = report.state == "stopped"
        live_until = at if stopped else at + self.stale_factor * report.interval_s
        proc.samples.append(
            _Sample(at, live_until, report.uptime_s, {r.name: _route_sample(r) for r in report.routes})
        )
        while len(proc.samples) > self.max_samples:
            proc.samples.popleft()
        for err in report.errors:
            key = (
                report.process_id,
                err.at,
                err.route,
                err.reason,
                err.topic,
                err.partition,
                err.offset,
                err.exception_type,
            )
            if key not in self._errors:
                self._errors[key] = (report.process_id, err)
                while len(self._errors) > self.max_errors:
                    self._errors.popitem(last=False)
        self.revision += 1
        self.prune(now)
        return True

    def prune(self, now: float | None = None) -> None:
        """Forget samples older than ``retention_s`` and processes not heard of for as long."""
        now = self.clock() if now is None else now
        horizon = now - self.retention_s
        for pid in [pid for pid, p in self._procs.items() if p.received_at < horizon]:
            del self._procs[pid]
        for proc in self._procs.values():
            samples = proc.samples
            # Keep one sample before the horizon: the base of the first delta inside it.
            while len(samples) > 1 and samples[1].t < horizon:
                samples.popleft()

    # -- reading ------------------------------------------------------------------------

    def _view(self, proc: _Process, now: float) -> ProcessView:
        report = proc.report
        stopped = report.state == "stopped"
        last_seen = max(0.0, now - proc.received_at)
        return ProcessView(
            process_id=report.process_id,
            report=report,
            received_at=proc.received_at,
            last_seen_s=last_seen,
            stale=not stopped and last_seen > self.stale_factor * report.interval_s,
            stopped=stopped,
        )

    def _live(self, proc: _Process, now: float) -> bool:
        view = self._view(proc, now)
        return not view.stale and not view.stopped

    def processes(self, now: float | None = None) -> list[ProcessView]:
        """Every process known, by host then pid then id."""
        now = self.clock() if now is None else now
        self.prune(now)
        views = [self._view(p, now) for p in self._procs.values()]
        views.sort(key=lambda v: (v.report.host, v.report.pid, v.process_id))
        return views

    def process(self, process_id: str, now: float | None = None) -> ProcessView | None:
        proc = self._procs.get(process_id)
        if proc is None:
            return None
        return self._view(proc, self.clock() if now is None else now)

    def groups(self) -> list[str]:
        """The share groups any known process has a route in, sorted."""
        return sorted({r.group_id for p in self._procs.values() for r in p.report.routes})

    def group_processes(self, group_id: str, now: float | None = None) -> list[ProcessView]:
        """The processes with a route in ``group_id`` (stale and stopped ones included, marked)."""
        return [v for v in self.processes(now) if any(r.group_id == group_id for r in v.report.routes)]

    def group_held(self, group_id: str, now: float | None = None) -> dict[tuple[str, int], int]:
        """Records held per (topic, partition) by the live processes' routes of ``group_id``."""
        now = self.clock() if now is None else now
        out: dict[tuple[str, int], int] = {}
        for proc in self._procs.values():
            if not self._live(proc, now):
                continue
            for route in proc.report.routes:
                if route.group_id == group_id:
                    for hp in route.held:
                        key = (hp.topic, hp.partition)
                        out[key] = out.get(key, 0) + hp.records
        return out

    def group_delivery_counts(self, group_id: str) -> dict[int, int]:
        """Delivery counts of the records received by ``group_id``'s routes, summed over every
        process in the store (live, stale and stopped: the counts are history); key 5 = 5+."""
        out: dict[int, int] = {}
        for proc in self._procs.values():
            for route in proc.report.routes:
                if route.group_id == group_id:
                    for count, n in route.delivery_counts.items():
                        out[count] = out.get(count, 0) + n
        return dict(sorted(out.items()))

    def errors(self, limit: int = 100, *, group_id: str | None = None) -> list[tuple[str, ErrorReport]]:
        """The latest errors as (process_id, error), newest first, each once however many
        reports carried it; ``group_id`` keeps those of that group's routes."""
        items: Iterable[tuple[str, ErrorReport]] = self._errors.values()
        if group_id is not None:
            routes = {
                (pid, r.name)
                for pid, p in self._procs.items()
                for r in p.report.routes
                if r.group_id == group_id
            }
            items = [(pid, e) for pid, e in items if (pid, e.route) in routes]
        return sorted(items, key=lambda item: item[1].at, reverse=True)[: max(0, limit)]

    def series(
        self, group_id: str | None = None, *, now: float | None = None, window_s: float | None = None
    ) -> Series:
        """``bucket_s`` buckets over the last ``window_s`` (default ``retention_s``) before the
        current bucket; see ``Series``.  A counter that goes down means its process restarted
        its counting: the new value is the delta."""
        now = self.clock() if now is None else now
        width = self.bucket_s
        window = self.retention_s if window_s is None else window_s
        end = math.floor(now / width) * width  # the current bucket starts here: left out
        n = max(0, round(window / width))
        start = end - n * width
        t = [start + i * width for i in range(n)]
        amounts = [[0.0] * n for _ in _COUNTERS]
        held = [0] * n
        busy = [0] * n
        concurrency = [0] * n
        processes = [0] * n
        zeros = (0,) * len(_COUNTERS)

        def spread(values: list[float], t0: float, t1: float, amount: float) -> None:
            if amount == 0 or t1 <= start or n == 0:
                return
            if t1 <= t0:
                i = math.floor((t1 - start) / width)
                if 0 <= i < n:
                    values[i] += amount
                return
            rate = amount / (t1 - t0)
            i = max(0, math.floor((t0 - start) / width))
            while i < n:
                b0 = start + i * width
                b1 = b0 + width
                if b0 >= t1:
                    break
                overlap = min(b1, t1) - max(b0, t0)
                if overlap > 0:
                    values[i] += rate * overlap
                i += 1

        for proc in self._procs.values():
            samples = proc.samples
            previous: dict[str, tuple[float, tuple[int, ...]]] = {}
            for sample in samples:
                for name, rs in sample.routes.items():
                    if group_id is not None and rs.group_id != group_id:
                        continue
                    before = previous.get(name)
                    if before is None:
                        # The counters count since the process started: spread over its uptime.
                        t0, base = sample.t - max(0.0, sample.uptime_s), zeros
                    else:
                        t0, base = before
                    for k, (now_v, was) in enumerate(zip(rs.counters, base, strict=True)):
                        delta = now_v - was if now_v >= was else now_v  # went down: restarted
                        spread(amounts[k], t0, sample.t, float(delta))
                    previous[name] = (sample.t, rs.counters)
            # Gauges: per bucket, the latest sample by its end, while it is live.
            times = [s.t for s in samples]
            for i in range(n):
                b_end = t[i] + width
                j = bisect.bisect_left(times, b_end) - 1
                if j < 0:
                    continue
                sample = samples[j]
                if sample.live_until < b_end - width:  # not live in this bucket
                    continue
                matched = False
                for rs in sample.routes.values():
                    if group_id is None or rs.group_id == group_id:
                        matched = True
                        held[i] += rs.held
                        busy[i] += rs.busy
                        concurrency[i] += rs.concurrency
                if matched:
                    processes[i] += 1
        rates = {name: [round(v / width, 6) for v in amounts[k]] for k, name in enumerate(OUTCOMES)}
        errors = [round(v) for v in amounts[_ERRORS_AT]]
        return Series(
            group_id=group_id,
            bucket_s=width,
            t=t,
            rates=rates,
            held=held,
            busy=busy,
            concurrency=concurrency,
            errors=errors,
            processes=processes,
        )


# ------------------------------------------------------------------------------------ reader


class ReportReader:
    """Feeds ``store`` from the report ``topic``: an owned background task.

    ``start()`` / ``close()``, or ``async with``.  ``rebuilt`` is set once the reports that
    were in the topic at start (from ``now - rebuild_seconds``) are in the store.
    ``consumer_options`` go to the ``AIOKafkaConsumer``, ``admin_options`` to the ``ShareAdmin``
    that looks the topic up.
    """

    def __init__(
        self,
        bootstrap_servers: str | Iterable[str],
        topic: str = DEFAULT_REPORT_TOPIC,
        store: ReportStore | None = None,
        *,
        rebuild_seconds: float = 3600.0,
        retry_interval: float = 3.0,
        poll_timeout: float = 1.0,
        consumer_options: dict[str, Any] | None = None,
        admin_options: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        servers = bootstrap_servers if isinstance(bootstrap_servers, str) else list(bootstrap_servers)
        check_bootstrap(servers)
        check_name("topic", topic)
        check_seconds("rebuild_seconds", rebuild_seconds)
        check_seconds("retry_interval", retry_interval, positive=True)
        check_seconds("poll_timeout", poll_timeout, positive=True)
        self.bootstrap_servers = servers
        self.topic = topic
        self.store = store if store is not None else ReportStore(clock=clock)
        self.rebuild_seconds = rebuild_seconds
        self.retry_interval = retry_interval
        self.poll_timeout = poll_timeout
        self.consumer_options = dict(consumer_options or {})
        self.admin_options = dict(admin_options or {})  # ssl=, sasl=... for the ShareAdmin
        self.clock = clock
        self.rebuilt = asyncio.Event()
        self.records_read = 0
        self.records_skipped = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._warned_sources: set[str] = set()
        self._down = False  # the broker or topic was unreachable (logged once)

    async def __aenter__(self) -> ReportReader:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start reading in the background (returns at once; a missing topic is waited for)."""
        if self._closed:
            raise RuntimeError("the report reader is closed")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"aioshare-web-report-reader-{self.topic}"
            )

    async def close(self) -> None:
        """Stop reading; nothing runs after this returns."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_rebuilt(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until the reports already in the topic at start are in the store."""
        async with asyncio.timeout(timeout):
            await self.rebuilt.wait()

    # -- the task -----------------------------------------------------------------------

    async def _run(self) -> None:
        from aiokafka import AIOKafkaConsumer

        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "group_id": None,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "client_id": "aioshare-web-reports",
        }
        options.update(self.consumer_options)
        while True:
            consumer = AIOKafkaConsumer(**options)
            try:
                await consumer.start()
                await self._consume(consumer)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._note_down(f"cannot read the report topic {self.topic!r}: {type(exc).__name__}: {exc}")
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()
            await asyncio.sleep(self.retry_interval)

    async def _wait_for_topic(self) -> int:
        """The topic's partition count, once it exists (checked every ``retry_interval``)."""
        from aioshare.admin import ShareAdmin

        while True:
            async with ShareAdmin(
                self.bootstrap_servers, client_id="aioshare-web-reports", **self.admin_options
            ) as admin:
                for listing in await admin.list_topics():
                    if listing.name == self.topic and listing.partitions > 0:
                        return listing.partitions
            log.debug(
                "report topic %r does not exist (yet); checking again in %g s",
                self.topic,
                self.retry_interval,
            )
            await asyncio.sleep(self.retry_interval)

    def _note_down(self, what: str) -> None:
        if not self._down:
            self._down = True
            log.warning("%s; retrying every %.0f s", what, self.retry_interval)
        else:
            log.debug("%s", what)

    async def _consume(self, consumer: Any) -> None:
        from aiokafka import TopicPartition

        partitions = await self._wait_for_topic()
        tps = [TopicPartition(self.topic, p) for p in range(partitions)]
        consumer.assign(tps)
        since_ms = int((self.clock() - self.rebuild_seconds) * 1000)
        found = await consumer.offsets_for_times(dict.fromkeys(tps, max(0, since_ms)))
        ends: dict[Any, int] = await consumer.end_offsets(tps)
        for tp in tps:
            hit = found.get(tp)
            if hit is None:
                consumer.seek(tp, ends[tp])  # nothing that recent: only what comes next
            else:
                consumer.seek(tp, hit.offset)
        if self._down:
            self._down = False
            log.info("reading the report topic %r", self.topic)
        pending = {tp: end for tp, end in ends.items() if (await consumer.position(tp)) < end}
        if not pending:
            self.rebuilt.set()
        while True:
            batches = await consumer.getmany(timeout_ms=int(self.poll_timeout * 1000))
            now = self.clock()
            for tp, records in batches.items():
                end = ends.get(tp, 0)
                for record in records:
                    # Reports read while rebuilding go where the log says they were written.
                    at = min(now, record.timestamp / 1000) if record.offset < end else now
                    self._take(record.key, record.value, at, tp.partition, record.offset)
            if pending:
                for tp in list(pending):
                    if await consumer.position(tp) >= pending[tp]:
                        del pending[tp]
                if not pending:
                    self.rebuilt.set()

    def _take(self, key: bytes | None, value: bytes | None, at: float, partition: int, offset: int) -> None:
        source = key.decode(errors="replace") if key else f"partition {partition}"
        self.records_read += 1
        try:
            if value is None:
                raise ReportDecodeError("an empty record")
            report = decode_report(value)
        except ReportVersionError as exc:
            self._skip(source, f"{exc} (offset {offset})")
            return
        except ReportDecodeError as exc:
            self._skip(source, f"undecodable report at offset {offset}: {exc}")
            return
        self.store.add(report, at)

    def _skip(self, source: str, why: str) -> None:
        self.records_skipped += 1
        if source not in self._warned_sources:
            if len(self._warned_sources) < 10_000:
                self._warned_sources.add(source)
            log.warning("report topic %r: skipping records from %s: %s", self.topic, source, why)
        else:
            log.debug("report topic %r: skipping a record from %s: %s", self.topic, source, why)
