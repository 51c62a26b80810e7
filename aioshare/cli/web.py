"""`aioshare web`: the web console for share groups, until SIGINT/SIGTERM.

    aioshare web -b kafka:9092                      # http://127.0.0.1:8080
    aioshare web -b kafka:9092 --port 0             # a free port; the line printed names it
    aioshare web -b kafka:9092 --read-only          # no admin actions
    AIOSHARE_WEB_TOKEN=... aioshare web -b kafka:9092 --host 0.0.0.0

Prints ``aioshare web listening on http://HOST:PORT`` once it serves.  Exit status 0 after a
signal, 1 when the cluster cannot be reached or the port cannot be bound, 2 for usage errors
(a non-loopback --host without a token, aiohttp not installed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from aioshare.cli._admin import describe_error, fail
from aioshare.protocol.errors import KafkaError

__all__ = ["TOKEN_ENV", "add_parser", "run"]

TOKEN_ENV = "AIOSHARE_WEB_TOKEN"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from aioshare.cli.main import DEFAULT_BOOTSTRAP, add_bootstrap_argument

    parser = commands.add_parser(
        "web", help="serve the web console: share groups, processes, errors, dead letters, topics"
    )
    add_bootstrap_argument(parser, DEFAULT_BOOTSTRAP)
    parser.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (not loopback: a token is required)"
    )
    parser.add_argument("--port", type=int, default=8080, help="the port to listen on; 0 picks a free one")
    parser.add_argument(
        "--read-only", action="store_true", help="hide the admin actions (the API refuses them too)"
    )
    parser.add_argument(
        "--token",
        default=None,
        help=f"require this token (bearer, or the basic-auth password); default: ${TOKEN_ENV}",
    )
    parser.add_argument(
        "--report-topic", default="aioshare-reports", help="the topic the apps publish their reports to"
    )
    parser.add_argument(
        "--timeout", type=float, default=15.0, help="seconds per Kafka request, retries included"
    )


def run(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not 0 <= args.port <= 65535:
        return fail("web", f"--port must be 0..65535, got {args.port}", 2)
    try:
        from aioshare.web.server import WebServer, is_loopback
    except ImportError as exc:
        return fail("web", f"the web console needs aiohttp ({exc}): pip install 'aioshare[web]'", 2)
    if not is_loopback(args.host) and not token:
        return fail(
            "web",
            f"refusing to listen on {args.host} without a token: give --token or set {TOKEN_ENV} "
            "(or listen on 127.0.0.1)",
            2,
        )
    server = WebServer(
        args.bootstrap_server,
        host=args.host,
        port=args.port,
        read_only=args.read_only,
        token=token,
        report_topic=args.report_topic,
        request_timeout=args.timeout,
    )
    try:
        asyncio.run(_serve(server))
    except KeyboardInterrupt:
        return 0
    except KafkaError as exc:
        return fail("web", describe_error(exc, args.bootstrap_server))
    except OSError as exc:
        return fail("web", f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    return 0


async def _serve(server: Any) -> None:
    from aioshare.runtime.shutdown import signal_handlers

    stop = asyncio.Event()
    with signal_handlers(lambda _signum: stop.set()):
        async with server:
            print(f"aioshare web listening on {server.url}", flush=True)
            await stop.wait()
    print("aioshare web: stopped", file=sys.stderr, flush=True)
