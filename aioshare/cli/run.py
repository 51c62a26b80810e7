"""`aioshare run MODULE:APP [--embedded]`: run an aioshare App in the foreground.

    aioshare run myservice.workers:app                   # the cluster the app names
    aioshare run myservice.workers:app -b kafka:9092     # another cluster
    aioshare run myservice.workers:app --embedded        # an in-process broker for development
    aioshare run myservice.workers:app --log-format json # one JSON object per log line (stderr)

The app runs on uvloop (when installed) until SIGTERM or SIGINT, then stops gracefully
(a second signal stops at once, still releasing every held record).  With ``--embedded``
and no ``--bootstrap-servers``, an EmbeddedBroker is started first and every topic of the
app's routes (dead-letter topics included) is created on it.

``APP`` is an attribute path in the module (default ``app``); if it is a callable that is
not an App, it is called with no arguments to build one.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from aioshare.protocol.errors import ConfigError, KafkaError
from aioshare.runtime.app import App
from aioshare.runtime.shutdown import run_loop

__all__ = ["add_parser", "load_app", "run", "serve", "setup_logging"]

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
) -> None:
    """Run ``app`` until stopped, on an embedded broker when ``embedded``; with ``web_port``
    the web console is served on 127.0.0.1 beside it (started after the app's cluster is
    known, closed after the app stopped)."""
    if not embedded:
        _announce(app, on_ready)
        await _serve_app(app, handle_signals, web_port)
        return
    from aioshare.broker.embedded import EmbeddedBroker

    async with EmbeddedBroker(config=dict(broker_config or {})) as broker:
        if broker.registry.version_range(76) is None:
            log.warning("this embedded broker does not serve share groups (ShareGroupHeartbeat) yet")
        for topic in sorted(app.topics()):
            await broker.create_topic(topic, partitions)
        app.bootstrap_servers = broker.bootstrap_servers
        print(f"aioshare run: embedded broker listening on {broker.bootstrap_servers}", flush=True)
        _announce(app, on_ready)
        await _serve_app(app, handle_signals, web_port)


async def _serve_app(app: App, handle_signals: bool, web_port: int | None) -> None:
    if web_port is None:
        await app.serve(handle_signals=handle_signals)
        return
    from aioshare.web.server import WebServer

    servers = (
        app.bootstrap_servers if isinstance(app.bootstrap_servers, str) else ",".join(app.bootstrap_servers)
    )
    async with WebServer(servers, port=web_port) as web:
        print(f"aioshare web listening on {web.url}", flush=True)
        await app.serve(handle_signals=handle_signals)


def _announce(app: App, on_ready: Callable[[str], object] | None) -> None:
    servers = (
        app.bootstrap_servers if isinstance(app.bootstrap_servers, str) else ",".join(app.bootstrap_servers)
    )
    routes = ", ".join(f"{r.name} ({','.join(r.topics)})" for r in app.routes)
    line = f"aioshare run: serving {routes} on {servers}"
    # Scripts wait for this exact line before they produce.
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
        from aioshare.cli.main import parse_config_pairs

        broker_config = parse_config_pairs(args.broker_config)
        embedded = bool(args.embedded and not args.bootstrap_servers)
    except (ConfigError, ImportError) as exc:
        error(f"error: {exc}")
        return 2
    try:
        run_loop(
            serve(
                app,
                embedded=embedded,
                partitions=args.partitions,
                broker_config=broker_config,
                web_port=web_port,
            ),
            use_uvloop=not args.no_uvloop,
        )
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
