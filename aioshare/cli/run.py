"""`aioshare run MODULE:APP [--embedded]`: run an aioshare App in the foreground.

    aioshare run myservice.workers:app                   # the cluster the app names
    aioshare run myservice.workers:app -b kafka:9092     # another cluster
    aioshare run myservice.workers:app --embedded        # an in-process broker for development
    aioshare run myservice.workers:app --log-format json # one JSON object per log line (stderr)
    aioshare run myservice.workers:app --health-port 8081  # /livez, /readyz, /metrics
    aioshare run myservice.workers:app --health-port 8081 --health-heartbeat-timeout 30
    aioshare run myservice.workers:app --processes auto  # one worker process per CPU, supervised

The app runs on uvloop (when installed) until SIGTERM or SIGINT, then stops gracefully
(a second signal stops at once, still releasing every held record).  With ``--embedded``
and no ``--bootstrap-servers``, an EmbeddedBroker is started first and every topic of the
app's routes (dead-letter topics included) is created on it.

``APP`` is an attribute path in the module (default ``app``); if it is a callable that is
not an App, it is called with no arguments to build one.

``aioshare run: serving ...`` is printed once every member of every route has joined its
group; when that takes longer than ``--join-timeout`` a WARNING names the bootstrap servers
and the app keeps trying.  ``--processes N`` hands over to ``aioshare.cli.supervisor``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aioshare.protocol.errors import ConfigError, KafkaError
from aioshare.runtime.app import App
from aioshare.runtime.health import DEFAULT_HEARTBEAT_TIMEOUT, HealthBindError, all_members_joined
from aioshare.runtime.shutdown import SIGNALS, run_loop, signal_handlers

__all__ = [
    "DEFAULT_JOIN_TIMEOUT",
    "add_parser",
    "load_app",
    "parse_processes",
    "run",
    "serve",
    "setup_logging",
]

log = logging.getLogger(__name__)


def add_parser(commands: Any) -> None:
    from aioshare.cli.main import config_pair

    parser = commands.add_parser("run", help="run an aioshare App (MODULE:APP) until SIGTERM/SIGINT")
    parser.add_argument("app", metavar="MODULE:APP", help="the App to run, e.g. myservice.workers:app")
    parser.add_argument(
        "-b",
        "--bootstrap-server",
        "--bootstrap-servers",
        dest="bootstrap_servers",
        default=None,
        metavar="HOST:PORT[,...]",
        help="the cluster to use instead of the app's own",
    )
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="start an embedded broker (unless --bootstrap-server is given) and create the routes' topics",
    )
    parser.add_argument(
        "--partitions", type=int, default=1, help="partitions of topics created with --embedded"
    )
    parser.add_argument(
        "--broker-config",
        action="append",
        default=[],
        type=config_pair,
        metavar="KEY=VALUE",
        help="a config for the embedded broker (repeatable)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=None,
        help="seconds to wait for running handlers (default: the app's)",
    )
    parser.add_argument(
        "--web-port",
        type=int,
        default=None,
        metavar="N",
        help="also serve the web console (aioshare web) on 127.0.0.1:N beside the app; 0 picks a free port",
    )
    parser.add_argument(
        "--health-port",
        type=int,
        default=None,
        metavar="N",
        help="serve /livez, /readyz and /metrics on --health-host:N; 0 picks a free port",
    )
    parser.add_argument(
        "--health-host",
        default="127.0.0.1",
        help="the address of the health endpoints (0.0.0.0 for Kubernetes probes)",
    )
    parser.add_argument(
        "--health-heartbeat-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help=(
            "how long a member may go without an answered heartbeat and still be ready on /readyz; "
            f"3 of the group's heartbeat intervals when longer (default: {DEFAULT_HEARTBEAT_TIMEOUT:g})"
        ),
    )
    parser.add_argument(
        "--join-timeout",
        type=float,
        default=DEFAULT_JOIN_TIMEOUT,
        metavar="SECONDS",
        help="warn when the members have not joined their groups after this long (the app keeps trying)",
    )
    parser.add_argument(
        "--processes",
        type=parse_processes,
        default=None,
        metavar="N|auto",
        help="run N supervised worker processes (auto: one per CPU), restarted when they crash",
    )
    parser.add_argument("--supervised-by", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--app-dir", default=".", help="directory put first on sys.path")
    parser.add_argument("--no-uvloop", action="store_true", help="use asyncio's own event loop")
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=LOG_LEVELS,
        help="the lowest level logged (record failures are WARNING)",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=("text", "json"),
        help="log lines on stderr as text, or as one JSON object per line",
    )


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_JOIN_TIMEOUT = 15.0
_JOIN_POLL = 0.05  # seconds between looks at the members' epochs while waiting for the join
_PARENT_POLL = 1.0  # seconds between looks at a supervised worker's parent
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Log to stderr at ``level``: text lines, or (``fmt="json"``) one JSON object per line
    whose keys include each log call's ``extra=`` fields (a record's topic, offset ...)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        from aioshare.runtime.logs import JsonFormatter

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.captureWarnings(True)  # warnings.warn() output in the same format


def parse_processes(text: str) -> int:
    """argparse type of ``--processes``: N >= 1 or ``auto`` (os.cpu_count())."""
    if text.strip().lower() == "auto":
        return os.cpu_count() or 1
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 1 or 'auto', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1 or 'auto', got {text!r}")
    return value


def load_app(spec: str, app_dir: str = ".") -> App:
    """Import ``module:attr`` (attr defaults to ``app``) and return the App it names."""
    module_name, sep, attr = spec.partition(":")
    if not module_name:
        raise ConfigError(f"expected MODULE:APP, got {spec!r}")
    path = os.path.abspath(app_dir)
    if path not in sys.path:
        sys.path.insert(0, path)
    module = importlib.import_module(module_name)
    target: Any = module
    for part in (attr if sep and attr else "app").split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f"{module_name} has no attribute {attr or 'app'!r}") from None
    if not isinstance(target, App) and callable(target):
        target = target()
    if not isinstance(target, App):
        raise ConfigError(f"{spec} is {type(target).__name__}, not an aioshare App")
    return target


async def serve(
    app: App,
    *,
    embedded: bool = False,
    partitions: int = 1,
    broker_config: Mapping[str, str] | None = None,
    handle_signals: bool = True,
    on_ready: Callable[[str], object] | None = None,
    web_port: int | None = None,
    health_port: int | None = None,
    health_host: str = "127.0.0.1",
    health_heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
    join_timeout: float = DEFAULT_JOIN_TIMEOUT,
    supervised_by: int | None = None,
) -> None:
    """Run ``app`` until stopped, on an embedded broker when ``embedded``; with ``web_port``
    the web console is served on 127.0.0.1 beside it (started after the app's cluster is
    known, closed after the app stopped), with ``health_port`` the health endpoints
    (``aioshare.runtime.health``; opened before the app starts, closed after it stopped;
    ``health_heartbeat_timeout`` is its ``heartbeat_timeout``).

    ``on_ready`` (and the ``serving`` line) come once every member has joined its group.
    ``supervised_by``: the supervisor's pid - only SIGTERM stops the app (the supervisor
    forwards SIGINT), and the app stops when that process is gone.
    """
    options = _ServeOptions(
        handle_signals,
        web_port,
        health_port,
        health_host,
        health_heartbeat_timeout,
        on_ready,
        join_timeout,
        supervised_by,
    )
    if not embedded:
        await _serve_app(app, options)
        return
    from aioshare.broker.embedded import EmbeddedBroker

    async with EmbeddedBroker(config=dict(broker_config or {})) as broker:
        if broker.registry.version_range(76) is None:
            log.warning("this embedded broker does not serve share groups (ShareGroupHeartbeat) yet")
        for topic in sorted(app.topics()):
            await broker.create_topic(topic, partitions)
        app.bootstrap_servers = broker.bootstrap_servers
        print(f"aioshare run: embedded broker listening on {broker.bootstrap_servers}", flush=True)
        await _serve_app(app, options)


def _servers(app: App) -> str:
    return (
        app.bootstrap_servers if isinstance(app.bootstrap_servers, str) else ",".join(app.bootstrap_servers)
    )


@dataclass(frozen=True, slots=True)
class _ServeOptions:
    handle_signals: bool
    web_port: int | None
    health_port: int | None
    health_host: str
    health_heartbeat_timeout: float
    on_ready: Callable[[str], object] | None
    join_timeout: float
    supervised_by: int | None


async def _serve_app(app: App, options: _ServeOptions) -> None:
    web_port, health_port = options.web_port, options.health_port
    async with contextlib.AsyncExitStack() as stack:
        if health_port is not None:
            from aioshare.runtime.health import HealthServer

            health = await stack.enter_async_context(
                HealthServer(
                    app,
                    options.health_host,
                    health_port,
                    heartbeat_timeout=options.health_heartbeat_timeout,
                )
            )
            print(f"aioshare health listening on {health.url}", flush=True)
        if web_port is not None:
            from aioshare.web.server import WebServer

            web = await stack.enter_async_context(WebServer(_servers(app), port=web_port))
            print(f"aioshare web listening on {web.url}", flush=True)
        await _run_app(
            app, options.handle_signals, options.on_ready, options.join_timeout, options.supervised_by
        )


async def _run_app(
    app: App,
    handle_signals: bool,
    on_ready: Callable[[str], object] | None,
    join_timeout: float,
    supervised_by: int | None,
) -> None:
    """``app.serve()``, plus: the serving line once joined, a signal during the start gives
    the start up (a broker that is not there yet is waited for up to the consumer's
    ``start_timeout``), and a supervised worker stops when its supervisor is gone."""
    current = asyncio.current_task()
    assert current is not None
    gave_up_start = False

    def on_signal(_signum: int) -> None:
        nonlocal gave_up_start
        if app.phase in ("new", "starting"):
            if not gave_up_start:
                log.info("aioshare run: stop requested while starting; giving up the start")
                gave_up_start = True
                current.cancel()
        else:
            app.request_stop()

    signals = (signal.SIGTERM,) if supervised_by is not None else SIGNALS
    with signal_handlers(on_signal, signals) if handle_signals else contextlib.nullcontext():
        try:
            async with app:
                helpers: list[asyncio.Task[None]] = []
                if all_members_joined(app):  # test doubles without a member epoch: at once
                    _announce(app, on_ready)
                else:
                    helpers.append(
                        asyncio.create_task(
                            _announce_when_joined(app, on_ready, join_timeout), name="aioshare-run-announce"
                        )
                    )
                if supervised_by is not None:
                    helpers.append(
                        asyncio.create_task(_watch_parent(app, supervised_by), name="aioshare-run-parent")
                    )
                try:
                    await app.wait()
                finally:
                    for task in helpers:
                        task.cancel()
                    await asyncio.gather(*helpers, return_exceptions=True)
        except asyncio.CancelledError:
            if not gave_up_start or current.cancelling() > 1:
                raise
            current.uncancel()


async def _announce_when_joined(
    app: App, on_ready: Callable[[str], object] | None, join_timeout: float
) -> None:
    loop = asyncio.get_running_loop()
    warn_at = loop.time() + join_timeout
    warned = False
    while not all_members_joined(app):  # polled: the consumers offer no join event
        if not warned and loop.time() >= warn_at:
            warned = True
            log.warning(
                "aioshare run: the app's members have not joined their share groups after %gs; "
                "still trying (bootstrap servers: %s)",
                join_timeout,
                _servers(app),
            )
        await asyncio.sleep(_JOIN_POLL)
    _announce(app, on_ready)


async def _watch_parent(app: App, parent: int) -> None:
    """A supervised worker whose supervisor died (SIGKILL, OOM) stops, as gunicorn's do."""
    while os.getppid() == parent:  # noqa: ASYNC110 -- no event tells a process its parent died
        await asyncio.sleep(_PARENT_POLL)
    log.warning("aioshare run: the supervisor (pid %d) is gone; stopping", parent)
    app.request_stop()


def _announce(app: App, on_ready: Callable[[str], object] | None) -> None:
    servers = _servers(app)
    routes = ", ".join(f"{r.name} ({','.join(r.topics)})" for r in app.routes)
    line = f"aioshare run: serving {routes} on {servers}"
    # Scripts wait for this exact line before they produce: it comes once every member joined.
    print(line, flush=True)
    if on_ready is not None:
        on_ready(servers)


def run(args: argparse.Namespace) -> int:
    json_logs = getattr(args, "log_format", "text") == "json"
    setup_logging(str(args.log_level), "json" if json_logs else "text")

    def error(text: str) -> None:
        if json_logs:  # stderr stays one JSON object per line
            log.error("aioshare run: %s", text)
        else:
            print(f"aioshare run: {text}", file=sys.stderr)

    try:
        app = load_app(args.app, args.app_dir)
        if args.bootstrap_servers:
            app.bootstrap_servers = args.bootstrap_servers
        if args.shutdown_timeout is not None:
            app.shutdown_timeout = args.shutdown_timeout
        if args.partitions < 1:
            raise ConfigError("--partitions must be >= 1")
        web_port = getattr(args, "web_port", None)
        if web_port is not None:
            if not 0 <= web_port <= 65535:
                raise ConfigError(f"--web-port must be 0..65535, got {web_port}")
            import aioshare.web.server  # noqa: F401 -- aiohttp missing: a usage error, before anything starts
        health_port = getattr(args, "health_port", None)
        if health_port is not None and not 0 <= health_port <= 65535:
            raise ConfigError(f"--health-port must be 0..65535, got {health_port}")
        heartbeat_timeout = getattr(args, "health_heartbeat_timeout", None)
        if heartbeat_timeout is not None:
            if not (math.isfinite(heartbeat_timeout) and heartbeat_timeout > 0):
                raise ConfigError(
                    f"--health-heartbeat-timeout must be a finite number of seconds > 0, got {heartbeat_timeout}"
                )
            if health_port is None:
                raise ConfigError("--health-heartbeat-timeout needs --health-port")
        join_timeout = float(getattr(args, "join_timeout", DEFAULT_JOIN_TIMEOUT))
        if not join_timeout > 0:
            raise ConfigError(f"--join-timeout must be > 0, got {join_timeout}")
        from aioshare.cli.main import parse_config_pairs

        broker_config = parse_config_pairs(args.broker_config)
        embedded = bool(args.embedded and not args.bootstrap_servers)
    except (ConfigError, ImportError) as exc:
        error(f"error: {exc}")
        return 2
    processes = getattr(args, "processes", None)
    if processes is not None:
        from aioshare.cli.supervisor import run_supervised

        return run_supervised(args, app, embedded=embedded, broker_config=broker_config, error=error)
    supervised_by = getattr(args, "supervised_by", None)
    if supervised_by is not None:
        # Ctrl-C in a terminal reaches the whole process group: the supervisor forwards it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        run_loop(
            serve(
                app,
                embedded=embedded,
                partitions=args.partitions,
                broker_config=broker_config,
                web_port=web_port,
                health_port=health_port,
                health_host=getattr(args, "health_host", "127.0.0.1"),
                health_heartbeat_timeout=(
                    DEFAULT_HEARTBEAT_TIMEOUT if heartbeat_timeout is None else heartbeat_timeout
                ),
                join_timeout=join_timeout,
                supervised_by=supervised_by,
            ),
            use_uvloop=not args.no_uvloop,
        )
    except HealthBindError as exc:
        error(f"error: health endpoints: {exc.strerror}")
        return 1
    except ConfigError as exc:
        error(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        return 130
    except KafkaError as exc:
        # No broker at the address, TLS refused, ...: one line naming what failed and where.
        error(f"error: {exc}")
        return 1
    except Exception as exc:
        error(f"the app stopped on an error: {exc!r}")
        return 1
    return 0
