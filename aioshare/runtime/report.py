"""Process reports: what an App (or a bare ShareConsumer) is doing, published to a Kafka topic.

Every App publishes a compact ``ProcessReport`` every ``report_interval`` seconds (default 5)
to ``report_topic`` (default ``aioshare-reports``), keyed by its ``process_id``, so a
dashboard (``aioshare web``, see ``aioshare.web.reports``) sees every process working a share
group, across processes and machines.  The first report goes out one interval after the app
started; a last one with ``state="stopped"`` when it stops (only if one was published before,
bounded by a short timeout).  Publishing never disturbs the app: a failure is one WARNING,
then DEBUG until it works again (one INFO then).

The reports are msgspec Structs encoded with msgpack: ~1.5 KB for a quiet process with two
routes, ~4-5 KB during an error flood, ~7 KB for four routes on 12 partitions each.  Counters are cumulative since the app started, so a reader computes rates from
deltas and survives lost reports.  ``version`` is the schema's *major* version: a writer adds
fields with defaults without changing it (readers ignore fields they do not know); a change a
reader cannot follow bumps it, and ``decode_report`` refuses a major version it does not know
with ``ReportVersionError``.

Where the data comes from:

* outcome counters, renewals, errors: ``app.metrics`` (``records-*-total``,
  ``lock-renewals-total``, ``errors-total``);
* ``busy``: the ``handlers-running`` gauge; ``held`` per partition: the route's held records
  (``runner.records``, counted once per report, nothing per record);
* ``delivery_counts``: ``app.metrics.delivery_counts(route)``, tallied per fetched batch
  (delivery counts ≥ 5 are counted in bucket 5, "5 or more");
* ``errors``: a subscription to ``error`` events, the last 10 kept (each traceback sent once);
* handler latency p50/p90/p99: the ``handler-duration-seconds`` histogram's observations of
  the last interval, interpolated linearly within its buckets (as Prometheus'
  ``histogram_quantile``): as precise as the buckets (0.001 s ... 900 s), None when no handler
  call ended in the interval.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from aioshare._validate import check_bootstrap, check_name, check_seconds
from aioshare.runtime.events import Event, EventBus, EventKind, Subscription
from aioshare.runtime.metrics import DELIVERY_COUNT_CAP

if TYPE_CHECKING:
    from aioshare.runtime.app import App
    from aioshare.runtime.metrics import Metrics
    from aioshare.share.consumer import ShareConsumer

__all__ = [
    "DEFAULT_REPORT_INTERVAL",
    "DEFAULT_REPORT_TOPIC",
    "DELIVERY_COUNT_CAP",
    "MAX_ERRORS",
    "REPORT_VERSION",
    "AppSource",
    "ConsumerReporter",
    "ErrorReport",
    "HeldPartition",
    "ProcessReport",
    "ReportCollector",
    "ReportDecodeError",
    "ReportPublisher",
    "ReportVersionError",
    "RouteReport",
    "app_publisher",
    "decode_report",
    "encode_report",
    "quantiles",
    "reports_enabled",
    "rss_bytes",
]

log = logging.getLogger(__name__)

REPORT_VERSION = 1  # the schema's major version
DEFAULT_REPORT_TOPIC = "aioshare-reports"
DEFAULT_REPORT_INTERVAL = 5.0
MAX_ERRORS = 10  # errors per report; the reader accumulates them across reports
# The report topic: one partition (a few KB per process every 5 s is nothing; one partition
# keeps every process's reports in one ordered log that a reader reads from one offset),
# short retention (a reader rebuilds at most the last hour).
TOPIC_CONFIG: Mapping[str, str] = {
    "retention.ms": str(3_600_000),
    "cleanup.policy": "delete",
    # Record timestamps from the broker's clock: a reader rebuilding its time series places
    # the reports of every process on one clock.
    "message.timestamp.type": "LogAppendTime",
}
TOPIC_PARTITIONS = 1

_MAX_MESSAGE = 300
_MAX_TRACEBACK = 1024
_TRACEBACK_BUDGET = 2048  # per report, for tracebacks not sent before
_STOP_REPORT_TIMEOUT = 2.0

State = Literal["running", "stopping", "stopped"]


# ------------------------------------------------------------------------------------ schema


class HeldPartition(msgspec.Struct, frozen=True, kw_only=True):
    topic: str
    partition: int
    records: int


class ErrorReport(msgspec.Struct, frozen=True, kw_only=True):
    """One error of the runtime; the record coordinates are None for errors without a record."""

    at: float  # unix seconds
    route: str
    reason: str  # the error event's reason: "handler", "dead-letter-failed", "renew-unsupported", ...
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    delivery_count: int | None = None
    exception_type: str = ""  # module.QualName
    message: str = ""  # truncated to 512 characters
    traceback_head: str = ""  # the first and last lines of the traceback, <= ~1 KB


class RouteReport(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    group_id: str
    topics: list[str]
    concurrency: int = 0  # handler slots
    busy: int = 0  # handler calls running
    consumers: int = 1
    held: list[HeldPartition] = []  # records held per partition (running, queued, delayed)
    held_records: int = 0
    delayed: int = 0  # of those, waiting out a retry delay
    # Delivery count of the records received, cumulative; key 5 counts 5 and more.
    delivery_counts: dict[int, int] = {}
    # Cumulative since the app started.
    received: int = 0
    accepted: int = 0
    released: int = 0
    rejected: int = 0
    dead_lettered: int = 0
    expired: int = 0
    retried: int = 0
    renewals: int = 0
    errors: int = 0
    # Handler call duration over the last interval (seconds); None: no call ended in it.
    latency_p50: float | None = None
    latency_p90: float | None = None
    latency_p99: float | None = None
    latency_count: int = 0  # handler calls that ended in the last interval


class ProcessReport(msgspec.Struct, frozen=True, kw_only=True):
    version: int = REPORT_VERSION
    process_id: str  # uuid4 hex, stable for the reporter's life
    seq: int = 0  # 1, 2, ... per process: tells duplicates and order apart
    kind: str = "app"  # "app" | "consumer"
    host: str = ""
    pid: int = 0
    aioshare_version: str = ""
    started_at: float = 0.0  # unix seconds
    sent_at: float = 0.0  # unix seconds
    interval_s: float = DEFAULT_REPORT_INTERVAL
    uptime_s: float = 0.0
    rss_bytes: int | None = None
    state: State = "running"
    routes: list[RouteReport] = []
    errors: list[ErrorReport] = []  # the last 10, newest last


class ReportDecodeError(ValueError):
    """Bytes that are not a process report."""


class ReportVersionError(ReportDecodeError):
    """A report of a schema major version this reader cannot read (written by a newer aioshare)."""

    def __init__(self, version: int) -> None:
        super().__init__(
            f"process report version {version} is not readable (this reader knows 1..{REPORT_VERSION})"
        )
        self.version = version


class _Header(msgspec.Struct):
    version: int = REPORT_VERSION


_encoder = msgspec.msgpack.Encoder()
_header_decoder = msgspec.msgpack.Decoder(_Header)
_decoder = msgspec.msgpack.Decoder(ProcessReport)


def encode_report(report: ProcessReport) -> bytes:
    return _encoder.encode(report)


def decode_report(data: bytes) -> ProcessReport:
    """The report in ``data``; ``ReportVersionError`` for an unknown major version,
    ``ReportDecodeError`` for anything else that is not a report.  Unknown fields are ignored."""
    try:
        header = _header_decoder.decode(data)
    except (msgspec.DecodeError, TypeError) as exc:
        raise ReportDecodeError(f"not a process report: {exc}") from None
    if not 1 <= header.version <= REPORT_VERSION:
        raise ReportVersionError(header.version)
    try:
        return _decoder.decode(data)
    except (msgspec.DecodeError, TypeError) as exc:
        raise ReportDecodeError(f"not a process report: {exc}") from None


# ------------------------------------------------------------------------------------ sources


def reports_enabled(default: bool = True) -> bool:
    """``default`` unless the environment says ``AIOSHARE_REPORTS=0`` (or false/no/off)."""
    value = os.environ.get("AIOSHARE_REPORTS")
    if value is None or not value.strip():
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


def rss_bytes() -> int | None:
    """This process's resident set size: /proc/self/statm (Linux); None where unavailable."""
    try:
        with open("/proc/self/statm", "rb") as f:
            resident = int(f.read().split()[1])
        return resident * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def exception_type(exc: BaseException) -> str:
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def traceback_head(exc: BaseException, limit: int = _MAX_TRACEBACK) -> str:
    """The traceback's first and last lines, at most ``limit`` characters."""
    lines = "".join(traceback.format_exception(exc)).rstrip("\n").splitlines()
    if len(lines) > 12:
        lines = [*lines[:4], "  ...", *lines[-7:]]
    text = "\n".join(lines)
    if len(text) <= limit:
        return text
    half = (limit - 5) // 2
    return text[:half] + "\n...\n" + text[-half:]


class ReportCollector:
    """What only the events tell: the last errors.

    Subscribes to ``error`` events only (every per-record count stays on the metrics' fast
    path).  Errors are formatted when a report is built, at most ``max_errors`` per report, so
    a flood of failing records costs a deque append each.
    """

    def __init__(self, *, max_errors: int = MAX_ERRORS, wall_clock: Callable[[], float] = time.time) -> None:
        self.max_errors = max_errors
        self._wall = wall_clock
        self._raw: collections.deque[tuple[float, Event]] = collections.deque(maxlen=max_errors)
        self._done: collections.deque[ErrorReport] = collections.deque(maxlen=max_errors)
        self._tb_sent: set[int] = set()  # id() of the errors in _done whose traceback went out
        self._subscription: Subscription | None = None

    def attach(self, bus: EventBus) -> None:
        if self._subscription is None:
            self._subscription = bus.subscribe(self.on_event, (EventKind.ERROR,))

    def detach(self) -> None:
        if self._subscription is not None:
            self._subscription.unsubscribe()
            self._subscription = None

    def on_event(self, event: Event) -> None:
        if event.kind is EventKind.ERROR:
            self._raw.append((self._wall(), event))

    def errors(self) -> list[ErrorReport]:
        """The last ``max_errors`` errors, oldest first.

        Each error's traceback goes out once, in the first report that carries the error
        (newest errors first, until ~2 KB are spent); the reports repeating it - so that a lost
        report loses no error - send it without.  A report stays a few KB in an error flood.
        """
        while self._raw:
            at, event = self._raw.popleft()
            self._done.append(_error_report(at, event))
        out: list[ErrorReport] = []
        budget = _TRACEBACK_BUDGET
        sent = self._tb_sent
        for err in reversed(self._done):
            tb = err.traceback_head
            if tb and (id(err) in sent or len(tb) > budget):
                err = msgspec.structs.replace(err, traceback_head="")
            elif tb:
                budget -= len(tb)
                sent.add(id(err))
            out.append(err)
        self._tb_sent = {id(e) for e in self._done} & sent
        out.reverse()
        return out


def _error_report(at: float, event: Event) -> ErrorReport:
    exc = event.error
    return ErrorReport(
        at=at,
        route=event.route,
        reason=event.reason or "error",
        topic=event.topic,
        partition=event.partition,
        offset=event.offset,
        delivery_count=event.delivery_count,
        exception_type=exception_type(exc) if exc is not None else "",
        message=_clip(str(exc), _MAX_MESSAGE) if exc is not None else "",
        traceback_head=traceback_head(exc) if exc is not None else "",
    )


_COUNTER_METRICS = (
    ("received", "records-consumed-total"),
    ("accepted", "records-accepted-total"),
    ("released", "records-released-total"),
    ("rejected", "records-rejected-total"),
    ("dead_lettered", "records-dead-lettered-total"),
    ("expired", "records-lock-expired-total"),
    ("retried", "records-retried-total"),
    ("renewals", "lock-renewals-total"),
    ("errors", "errors-total"),
)


def quantiles(bounds: Sequence[float], buckets: Sequence[int], qs: Sequence[float]) -> list[float | None]:
    """Quantiles of histogram ``buckets`` (non-cumulative counts, the last one +Inf) with upper
    ``bounds``, interpolated linearly within a bucket (Prometheus' histogram_quantile)."""
    total = sum(buckets)
    if total <= 0:
        return [None for _ in qs]
    out: list[float | None] = []
    for q in qs:
        rank = q * total
        seen = 0
        for i, n in enumerate(buckets):
            if n and seen + n >= rank:
                if i >= len(bounds):  # the +Inf bucket: the highest finite bound is all we know
                    out.append(bounds[-1] if bounds else None)
                else:
                    lower = bounds[i - 1] if i > 0 else 0.0
                    out.append(lower + (bounds[i] - lower) * max(0.0, rank - seen) / n)
                break
            seen += n
        else:
            out.append(bounds[-1] if bounds else None)
    return out


class AppSource:
    """Builds an App's ``RouteReport``s from its metrics, its runners and a ``ReportCollector``."""

    def __init__(self, app: App, collector: ReportCollector) -> None:
        self._app = app
        self._collector = collector
        self._last_hist: dict[str, list[int]] = {}

    def routes(self) -> list[RouteReport]:
        app = self._app
        metrics: Metrics = app.metrics
        hist_metric = metrics.metric("handler-duration-seconds")
        bounds: Sequence[float] = getattr(hist_metric, "bounds", ())
        runners = {r.name: r for r in app.runners}
        out: list[RouteReport] = []
        for route in app.routes:
            name = route.name
            counters = {field: int(metrics.value(metric, route=name)) for field, metric in _COUNTER_METRICS}
            held: dict[tuple[str, int], int] = {}
            runner = runners.get(name)
            delayed = 0
            if runner is not None:
                delayed = runner.delayed_count
                held = runner.records.count_by_partition()
            data = metrics.histogram("handler-duration-seconds", route=name)
            previous = self._last_hist.get(name) or [0] * len(data.buckets)
            delta = [max(0, a - b) for a, b in zip(data.buckets, previous, strict=True)]
            self._last_hist[name] = list(data.buckets)
            p50, p90, p99 = quantiles(bounds, delta, (0.5, 0.9, 0.99))
            out.append(
                RouteReport(
                    name=name,
                    group_id=route.group_id,
                    topics=list(route.topics),
                    concurrency=route.concurrency,
                    busy=int(metrics.value("handlers-running", route=name)),
                    consumers=route.consumers,
                    held=[
                        HeldPartition(topic=t, partition=p, records=n)
                        for (t, p), n in sorted(held.items())
                        if n
                    ],
                    held_records=sum(held.values()),
                    delayed=delayed,
                    delivery_counts=metrics.delivery_counts(name),
                    latency_p50=p50,
                    latency_p90=p90,
                    latency_p99=p99,
                    latency_count=sum(delta),
                    **counters,
                )
            )
        return out


# ------------------------------------------------------------------------------------ publisher


class _QuietConnectErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Unable connect to")


class ReportPublisher:
    """Publishes a ``ProcessReport`` every ``interval`` seconds to ``topic``: an owned task.

    ``routes()`` and ``errors()`` give a report's content.  ``start()`` starts the periodic
    task (the first report goes out one interval later; nothing touches the network before);
    ``close()`` cancels it and, if a report was published and the last attempt worked,
    publishes a final one with state "stopped" (within ``stop_timeout``), then stops the
    producer.  Failures never propagate: one WARNING, DEBUG while it keeps failing, one INFO
    when it works again.  The topic is created on first use (1 partition, 1 hour retention,
    delete policy, LogAppendTime, the broker's default replication); TOPIC_ALREADY_EXISTS is
    fine.  ``producer_factory(options)`` replaces the ``AIOKafkaProducer`` (tests).
    """

    def __init__(
        self,
        bootstrap_servers: str | Iterable[str],
        routes: Callable[[], list[RouteReport]],
        *,
        errors: Callable[[], list[ErrorReport]] = list,
        topic: str = DEFAULT_REPORT_TOPIC,
        interval: float = DEFAULT_REPORT_INTERVAL,
        kind: str = "app",
        producer_options: Mapping[str, Any] | None = None,
        admin_options: Mapping[str, Any] | None = None,
        create_topic: bool = True,
        send_timeout: float = 5.0,
        stop_timeout: float = _STOP_REPORT_TIMEOUT,
        wall_clock: Callable[[], float] = time.time,
        producer_factory: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        servers = bootstrap_servers if isinstance(bootstrap_servers, str) else tuple(bootstrap_servers)
        check_bootstrap(servers)
        check_name("report_topic", topic)
        check_seconds("report_interval", interval, positive=True)
        check_seconds("send_timeout", send_timeout, positive=True)
        check_seconds("stop_timeout", stop_timeout, positive=True)
        self.bootstrap_servers = servers
        self.topic = topic
        self.interval = float(interval)
        self.kind = kind
        self.process_id = uuid.uuid4().hex
        self.send_timeout = send_timeout
        self.stop_timeout = stop_timeout
        self._routes = routes
        self._errors = errors
        self._wall = wall_clock
        self._producer_options = dict(producer_options or {})
        self._admin_options = dict(admin_options or {})
        self._create_topic = create_topic
        self._topic_ready = not create_topic
        self._producer_factory = producer_factory
        self._producer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._seq = itertools.count(1)
        self._host = socket.gethostname()
        self._pid = os.getpid()
        # Created when its App starts (before the routes): uptime matches the counters' "since".
        self._started_wall = wall_clock()
        self._started_mono = time.monotonic()
        self._failing = False
        self._last_ok = False
        self._closed = False
        self.state: State = "running"
        self.published = 0  # reports the broker confirmed
        self.failures = 0  # attempts that failed

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self._closed:
            raise RuntimeError("the report publisher is closed")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name=f"aioshare-reports-{self.topic}"
            )

    def report(self, state: State | None = None) -> ProcessReport:
        """The report as of now (``state`` default: the publisher's)."""
        from aioshare import __version__

        return ProcessReport(
            process_id=self.process_id,
            seq=next(self._seq),
            kind=self.kind,
            host=self._host,
            pid=self._pid,
            aioshare_version=__version__,
            started_at=self._started_wall,
            sent_at=self._wall(),
            interval_s=self.interval,
            uptime_s=round(time.monotonic() - self._started_mono, 3),
            rss_bytes=rss_bytes(),
            state=state or self.state,
            routes=self._routes(),
            errors=self._errors(),
        )

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.interval
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            await self.publish()
            next_at = max(next_at + self.interval, loop.time())  # no burst after a slow publish

    async def publish(self, state: State | None = None, *, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Publish one report now; True when the broker confirmed it.  Never raises (but
        cancellation)."""
        async with self._lock:
            try:
                async with asyncio.timeout(self.send_timeout if timeout is None else timeout):
                    await self._ensure_topic()
                    producer = await self._ensure_producer()
                    data = encode_report(self.report(state))
                    await producer.send_and_wait(self.topic, value=data, key=self.process_id.encode())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(exc)
                return False
            self.published += 1
            self._last_ok = True
            if self._failing:
                self._failing = False
                log.info("publishing process reports to %r works again", self.topic)
            return True

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self._last_ok = False
        what = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        if not self._failing:
            self._failing = True
            log.warning(
                "cannot publish process reports to topic %r (%s); the app runs on, retrying every %g s",
                self.topic,
                what,
                self.interval,
            )
        else:
            log.debug("publishing a process report to %r failed again: %s", self.topic, what)

    async def _ensure_topic(self) -> None:
        if self._topic_ready:
            return
        from aioshare.admin import ShareAdmin
        from aioshare.protocol.errors import TopicAlreadyExistsError

        options = {
            "client_id": "aioshare-reports",
            "request_timeout": self.send_timeout,
            **self._admin_options,
        }
        async with ShareAdmin(self.bootstrap_servers, **options) as admin:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topic(
                    self.topic, TOPIC_PARTITIONS, replication_factor=-1, config=TOPIC_CONFIG
                )
        self._topic_ready = True

    async def _ensure_producer(self) -> Any:
        if self._producer is not None:
            return self._producer
        servers = self.bootstrap_servers
        options: dict[str, Any] = {
            "bootstrap_servers": servers if isinstance(servers, str) else list(servers),
            "client_id": "aioshare-reports",
            "request_timeout_ms": int(self.send_timeout * 1000),
            **self._producer_options,
            "acks": 1,
            "enable_idempotence": False,
            "linger_ms": 0,
        }
        if self._producer_factory is not None:
            producer = self._producer_factory(options)
        else:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(**options)
        quiet = _QuietConnectErrors()
        aiokafka_log = logging.getLogger("aiokafka")
        aiokafka_log.addFilter(quiet)  # the warning this leads to says it once
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        finally:
            aiokafka_log.removeFilter(quiet)
        self._producer = producer
        return producer

    async def close(self, *, final: bool = True) -> None:
        """Stop publishing; the final "stopped" report (see the class) unless ``final`` is False.

        Nothing of the publisher runs after this returns."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.state = "stopped"
        try:
            if final and self.published and self._last_ok:
                await self.publish("stopped", timeout=self.stop_timeout)
        finally:
            producer, self._producer = self._producer, None
            if producer is not None:
                with contextlib.suppress(Exception):
                    await producer.stop()


def app_publisher(app: App, *, topic: str, interval: float) -> tuple[ReportPublisher, ReportCollector]:
    """The publisher of ``app``'s reports and its collector (attach it before the routes start)."""
    collector = ReportCollector()
    source = AppSource(app, collector)
    admin_options = {k: v for k, v in app.consumer_options.items() if k in ("ssl", "sasl")}
    publisher = ReportPublisher(
        app.bootstrap_servers,
        source.routes,
        errors=collector.errors,
        topic=topic,
        interval=interval,
        producer_options=app.producer_options,
        admin_options=admin_options,
    )
    return publisher, collector


class ConsumerReporter:
    """Opt-in reports for a bare ``ShareConsumer``: ``async with ConsumerReporter(consumer,
    "kafka:9092", group_id="workers"): ...``.

    The report has one route entry (``name``) with what the consumer's public API tells:
    its group, its subscription, ``held`` records (as ``held_records``) and ``max_in_flight``
    (as ``concurrency``).  Per-partition holdings, outcome counters, delivery counts,
    latencies and errors are the runtime's knowledge and stay empty/0.
    """

    def __init__(
        self,
        consumer: ShareConsumer,
        bootstrap_servers: str | Iterable[str],
        *,
        group_id: str,
        name: str = "consumer",
        topic: str = DEFAULT_REPORT_TOPIC,
        interval: float = DEFAULT_REPORT_INTERVAL,
        producer_options: Mapping[str, Any] | None = None,
        admin_options: Mapping[str, Any] | None = None,
    ) -> None:
        check_name("group_id", group_id)
        self._consumer = consumer
        self._group_id = group_id
        self._name = name
        self.publisher = ReportPublisher(
            bootstrap_servers,
            self._routes,
            topic=topic,
            interval=interval,
            kind="consumer",
            producer_options=producer_options,
            admin_options=admin_options,
        )

    def _routes(self) -> list[RouteReport]:
        consumer = self._consumer
        return [
            RouteReport(
                name=self._name,
                group_id=self._group_id,
                topics=sorted(consumer.subscription()),
                concurrency=consumer.max_in_flight,
                held_records=consumer.held,
            )
        ]

    async def __aenter__(self) -> ConsumerReporter:
        await self.publisher.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.publisher.close()
