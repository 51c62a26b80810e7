"""``App``: routes records of share groups to async handlers.

    app = aioshare.App(bootstrap_servers="127.0.0.1:9092")

    @app.handler("webhooks", group_id="webhook-senders", concurrency=50,
                 retry=aioshare.Backoff(initial=1.0, max=20.0), max_attempts=5,
                 dead_letter_topic="webhooks.dlq", value_type=Webhook)
    async def send(msg: aioshare.Message[Webhook]) -> None:
        ...

    app.run()                       # or: async with app: await app.wait()

The app owns the services every route shares - one timer task (the record log's windows;
locks and retry delays are kept by each consumer's keep-alive), the dead-letter producer,
the process-wide handler limit, the event bus and metrics - and one ``RouteRunner`` per
route.  ``start()`` joins every group;
``stop()`` shuts down gracefully (see ``RouteRunner.stop``) and leaves no task behind.
A fatal error in any route (a consumer that cannot go on, a bug in the runtime) stops the
whole app the same graceful way and is raised from ``run()`` / ``serve()`` /
``async with``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import random
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from aioshare._validate import check_bootstrap, check_int, check_name, check_seconds
from aioshare.protocol.errors import ConfigError, IllegalStateError, KafkaError
from aioshare.runtime.clock import Clock, LoopClock
from aioshare.runtime.consumer import ConsumerFactory, share_consumer
from aioshare.runtime.delays import DelayBudget, Scheduler
from aioshare.runtime.delivery_limit import read_delivery_count_limit
from aioshare.runtime.dlq import DeadLetterSink, KafkaDeadLetterSink
from aioshare.runtime.events import EventBus
from aioshare.runtime.jobs import make_jobs_builder
from aioshare.runtime.limits import Limiter
from aioshare.runtime.metrics import Metrics
from aioshare.runtime.report import (
    DEFAULT_REPORT_INTERVAL,
    DEFAULT_REPORT_TOPIC,
    ReportCollector,
    ReportPublisher,
    app_publisher,
    reports_enabled,
)
from aioshare.runtime.retry import Backoff
from aioshare.runtime.route import AckMode, OnError, Route
from aioshare.runtime.shutdown import run_loop, signal_handlers
from aioshare.runtime.worker import RouteRunner, Runtime, Tracing
from aioshare.share.deserialize import Deserializer

__all__ = ["App"]

log = logging.getLogger(__name__)

H = TypeVar("H")

DEFAULT_MAX_RETRY_DELAY = 900.0  # 15 minutes


class _Default(enum.Enum):
    TOKEN = 0


_DEFAULT = _Default.TOKEN


class _Phase(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class App:
    """A set of routes (topic → handler) run together in this process.

    ``max_concurrency`` caps running handler calls across all routes (routes with a higher
    ``priority`` get freed slots first); ``max_retry_delay`` bounds every retry delay (a
    delayed record stays held, its lock renewed, for the whole delay); ``max_delayed``
    bounds how many records the app holds on retry delays at once; ``shutdown_timeout``
    is how long a graceful stop waits for running handlers.  ``consumer_options`` and
    ``producer_options`` go to every ShareConsumer and to the dead-letter producer.
    ``reports`` publishes a process report every ``report_interval`` seconds to
    ``report_topic`` for ``aioshare web`` (off with ``AIOSHARE_REPORTS=0``; docs/runtime.md).
    """

    def __init__(
        self,
        bootstrap_servers: str | Iterable[str] = "127.0.0.1:9092",
        *,
        max_concurrency: int | None = None,
        max_retry_delay: float = DEFAULT_MAX_RETRY_DELAY,
        max_delayed: int = 10_000,
        shutdown_timeout: float = 30.0,
        close_timeout: float = 10.0,
        dead_letter_timeout: float = 30.0,
        consumer_options: Mapping[str, Any] | None = None,
        producer_options: Mapping[str, Any] | None = None,
        consumer_factory: ConsumerFactory | None = None,
        dead_letter_sink: DeadLetterSink | None = None,
        tracing: Tracing | None = None,
        clock: Clock | None = None,
        rand: Callable[[], float] = random.random,
        reports: bool = True,
        report_topic: str = DEFAULT_REPORT_TOPIC,
        report_interval: float = DEFAULT_REPORT_INTERVAL,
    ) -> None:
        check_int("max_concurrency", max_concurrency, 1, optional=True)
        check_seconds("max_retry_delay", max_retry_delay)
        check_int("max_delayed", max_delayed, 0)
        check_seconds("shutdown_timeout", shutdown_timeout)
        check_seconds("close_timeout", close_timeout, positive=True)
        check_seconds("dead_letter_timeout", dead_letter_timeout, positive=True)
        if not isinstance(reports, bool):
            raise ConfigError(f"reports must be a bool, got {reports!r}")
        check_name("report_topic", report_topic)
        check_seconds("report_interval", report_interval, positive=True)
        self.reports = reports
        self.report_topic = report_topic
        self.report_interval = report_interval
        self._reporter: ReportPublisher | None = None
        self._report_collector: ReportCollector | None = None
        self.bootstrap_servers: str | tuple[str, ...] = (
            bootstrap_servers if isinstance(bootstrap_servers, str) else tuple(bootstrap_servers)
        )
        check_bootstrap(self.bootstrap_servers)
        self.max_concurrency = max_concurrency
        self.max_retry_delay = max_retry_delay
        self.max_delayed = max_delayed
        self.shutdown_timeout = shutdown_timeout
        self.close_timeout = close_timeout
        self.dead_letter_timeout = dead_letter_timeout
        self.consumer_options: dict[str, Any] = dict(consumer_options or {})
        self.producer_options: dict[str, Any] = dict(producer_options or {})
        self.consumer_factory: ConsumerFactory = consumer_factory or share_consumer
        self.tracing = tracing
        self.events = EventBus()
        self.metrics = Metrics()
        self.metrics.attach(self.events)
        self.routes: list[Route] = []
        self._dead_letter_sink = dead_letter_sink
        self._clock = clock
        self._rand = rand
        self._phase = _Phase.NEW
        self._runners: list[RouteRunner] = []
        self._scheduler: Scheduler | None = None
        self._sink: DeadLetterSink | None = None
        self._failure: BaseException | None = None
        self._ran = False  # reached RUNNING once
        self._stop_requested: asyncio.Event | None = None
        self._stopped: asyncio.Event | None = None
        self._stop_calls = 0

    # ---------------------------------------------------------------- configuration

    def handler(
        self,
        *topics: str,
        group_id: str,
        name: str | None = None,
        concurrency: int = 10,
        consumers: int = 1,
        jobs: Any = None,
        max_messages_per_job: int | None = None,
        ack_mode: AckMode = "explicit",
        on_error: OnError = "retry",
        retry: Backoff | _Default | None = _DEFAULT,
        max_attempts: int | None = 5,
        dead_letter_topic: str | None = None,
        dead_letter_on_reject: bool = False,
        value_type: Any = None,
        value_deserializer: Deserializer | None = None,
        key_deserializer: Deserializer | None = None,
        priority: int = 0,
        poll_interval: float = 1.0,
        renew_fraction: float = 0.7,
        prefetch: int | None = None,
        shutdown_timeout: float | None = None,
        on_start: Callable[..., Any] | None = None,
        on_shutdown: Callable[..., Any] | None = None,
        on_lock_expired: Callable[..., Any] | None = None,
        consumer_options: Mapping[str, Any] | None = None,
    ) -> Callable[[H], H]:
        """Register the decorated coroutine function, handler object or class as a route.

        The decorated object is returned unchanged (so it can still be called in tests).
        Everything is validated here: a bad combination fails at import time, not when the
        first record fails.  See docs/runtime.md for every option.
        """

        def register(handler: H) -> H:
            route = Route(
                name=name or _default_name(handler),
                topics=tuple(topics),
                group_id=group_id,
                handler=handler,
                concurrency=concurrency,
                consumers=consumers,
                jobs=make_jobs_builder(jobs, max_messages_per_job),
                ack_mode=ack_mode,
                on_error=on_error,
                retry=Backoff() if retry is _DEFAULT else retry,
                max_attempts=max_attempts,
                dead_letter_topic=dead_letter_topic,
                dead_letter_on_reject=dead_letter_on_reject,
                value_type=value_type,
                value_deserializer=value_deserializer,
                key_deserializer=key_deserializer,
                priority=priority,
                poll_interval=poll_interval,
                renew_fraction=renew_fraction,
                prefetch=prefetch,
                shutdown_timeout=shutdown_timeout,
                on_start=on_start,
                on_shutdown=on_shutdown,
                on_lock_expired=on_lock_expired,
                consumer_options=dict(consumer_options or {}),
            )
            self.add_route(route)
            return handler

        return register

    def add_route(self, route: Route) -> Route:
        if self._phase is not _Phase.NEW:
            raise IllegalStateError("routes must be added before the app starts")
        route.validate(max_retry_delay=self.max_retry_delay)
        if any(r.name == route.name for r in self.routes):
            raise ConfigError(
                f"a route named {route.name!r} already exists; pass name=... to tell them apart"
            )
        self.routes.append(route)
        return route

    def topics(self) -> set[str]:
        """Every topic the routes read, and their dead-letter topics."""
        out: set[str] = set()
        for route in self.routes:
            out.update(route.topics)
            if route.dead_letter_topic is not None:
                out.add(route.dead_letter_topic)
        return out

    # ---------------------------------------------------------------- state

    @property
    def running(self) -> bool:
        return self._phase is _Phase.RUNNING

    @property
    def failure(self) -> BaseException | None:
        """The fatal error that stopped (or is stopping) the app, if any."""
        return self._failure

    @property
    def runners(self) -> list[RouteRunner]:
        return list(self._runners)

    @property
    def phase(self) -> str:
        """The lifecycle phase: "new", "starting", "running", "stopping" or "stopped"."""
        return self._phase.value

    @property
    def stop_requested(self) -> bool:
        """Whether a stop was asked for (signal, ``request_stop()``, a fatal error) since start."""
        return self._stop_requested is not None and self._stop_requested.is_set()

    @property
    def reporter(self) -> ReportPublisher | None:
        """The publisher of this app's process reports (None before start or when reports are off)."""
        return self._reporter

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        await self.stop()
        if exc is None and self._failure is not None:
            raise self._failure

    async def start(self) -> None:
        """Start the shared services, then every route (hooks, consumers, fetch loops)."""
        if self._phase is not _Phase.NEW:
            raise IllegalStateError(f"the app is {self._phase.value}; an App runs once")
        if not self.routes:
            raise ConfigError("the app has no routes: register handlers with @app.handler(...)")
        self._phase = _Phase.STARTING
        self._stop_requested = asyncio.Event()
        self._stopped = asyncio.Event()
        clock = self._clock or LoopClock()
        self._scheduler = Scheduler(clock)
        try:
            self._scheduler.start()
            if any(r.dead_letter_topic is not None for r in self.routes):
                self._sink = self._dead_letter_sink or KafkaDeadLetterSink(
                    self.bootstrap_servers, **self.producer_options
                )
                await self._sink.start()
            runtime = Runtime(
                clock=clock,
                scheduler=self._scheduler,
                events=self.events,
                metrics=self.metrics,
                consumer_factory=self.consumer_factory,
                bootstrap_servers=self.bootstrap_servers,
                consumer_options=self.consumer_options,
                dead_letters=self._sink,
                dead_letter_timeout=self.dead_letter_timeout,
                global_limit=Limiter(self.max_concurrency) if self.max_concurrency is not None else None,
                max_retry_delay=self.max_retry_delay,
                delay_budget=DelayBudget(self.max_delayed),
                tracing=self.tracing,
                rand=self._rand,
                close_timeout=self.close_timeout,
                fail=self._fail,
                # Only where the app makes its own consumers: a custom factory's (a test double's)
                # may not be at bootstrap_servers at all.
                delivery_limit_reader=read_delivery_count_limit
                if self.consumer_factory is share_consumer
                else None,
            )
            # Process reports: collect from the first record on; publish once the routes run.
            if self.reports and reports_enabled():
                self._reporter, self._report_collector = app_publisher(
                    self, topic=self.report_topic, interval=self.report_interval
                )
                self._report_collector.attach(self.events)
            # Higher priority first: its consumers join (and start fetching) first too.
            for route in sorted(self.routes, key=lambda r: -r.priority):
                runner = RouteRunner(route, runtime)
                self._runners.append(runner)
                await runner.start()
            if self._reporter is not None:
                await self._reporter.start()  # the first report goes out one interval later
        except BaseException:
            await self._shutdown(timeout=0)
            raise
        self._phase = _Phase.RUNNING
        self._ran = True

    def request_stop(self, *, force: bool = False) -> None:
        """Ask a running app to stop (non-blocking; safe from handlers and signal handlers).

        A second request, or ``force=True``, cancels running handlers instead of waiting.
        """
        if self._stop_requested is None:
            return  # not started: nothing to stop (and nothing to count as a first request)
        self._stop_calls += 1
        self._stop_requested.set()
        if force or self._stop_calls > 1:
            for runner in self._runners:
                runner.force()

    async def wait(self) -> None:
        """Wait until a stop is requested (signal, ``request_stop``, or a fatal error)."""
        if self._stop_requested is None:
            raise IllegalStateError("the app is not started")
        await self._stop_requested.wait()

    async def stop(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 -- the graceful-stop budget
        """Stop gracefully; ``timeout`` (default ``shutdown_timeout``) bounds the wait for handlers.

        Idempotent: a second call waits for the first to finish.  Never call it from a
        handler (it waits for that handler): use ``request_stop()``.
        """
        if self._phase in (_Phase.NEW, _Phase.STOPPED):
            self._phase = _Phase.STOPPED
            return
        if self._phase is _Phase.STOPPING:
            assert self._stopped is not None
            await self._stopped.wait()
            return
        await self._shutdown(self.shutdown_timeout if timeout is None else timeout)

    async def _shutdown(self, timeout: float) -> None:  # noqa: ASYNC109
        self._phase = _Phase.STOPPING
        if self._stop_requested is not None:
            self._stop_requested.set()
        if self._reporter is not None:
            self._reporter.state = "stopping"
        loop = asyncio.get_running_loop()
        now = loop.time()
        try:

            async def stop_runner(runner: RouteRunner) -> None:
                budget = (
                    runner.route.shutdown_timeout if runner.route.shutdown_timeout is not None else timeout
                )
                await runner.stop(now + budget)

            results = await asyncio.gather(*(stop_runner(r) for r in self._runners), return_exceptions=True)
            for runner, result in zip(self._runners, results, strict=True):
                if isinstance(result, BaseException):
                    log.error("route %r did not stop cleanly", runner.name, exc_info=result)
        finally:
            # Process reports: a last one saying "stopped" (bounded; only if one went out before).
            if self._reporter is not None:
                await self._reporter.close()
            if self._report_collector is not None:
                self._report_collector.detach()
            if self._sink is not None:
                with contextlib.suppress(Exception):
                    await self._sink.close()
            if self._scheduler is not None:
                await self._scheduler.close()
            self._phase = _Phase.STOPPED
            if self._stopped is not None:
                self._stopped.set()

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def serve(self, *, handle_signals: bool = True) -> None:
        """Start, run until SIGTERM/SIGINT (or ``request_stop()``), stop gracefully.

        Raises the fatal error that stopped the app, if one did.
        """
        async with self:
            if handle_signals:
                with signal_handlers(lambda _signum: self.request_stop()):
                    await self.wait()
            else:
                await self.wait()

    def run(self, *, use_uvloop: bool = True, handle_signals: bool = True) -> None:
        """Blocking: run the app on a new event loop (uvloop when installed) until stopped.

        When the app cannot start (no broker at its address, TLS refused, ...) that is said in
        one line on stderr and the process exits with status 1 (SystemExit), no traceback.
        """
        try:
            run_loop(self.serve(handle_signals=handle_signals), use_uvloop=use_uvloop)
        except KafkaError as exc:
            if self._ran:
                raise
            print(f"aioshare: the app could not start: {exc}", file=sys.stderr)
            raise SystemExit(1) from None


def _default_name(handler: object) -> str:
    qualname = None
    if inspect.isclass(handler) or inspect.isroutine(handler):
        qualname = getattr(handler, "__qualname__", None)
    if not isinstance(qualname, str):
        qualname = type(handler).__qualname__  # a handler object: name it after its class
    # "make_app.<locals>.send" -> "send": the enclosing function says nothing about the route.
    return qualname.rsplit("<locals>.", 1)[-1]
