"""Health endpoints for an App: ``/livez``, ``/readyz`` and ``/metrics`` over plain HTTP.

    async with HealthServer(app, port=8081) as health:   # 0 picks a free port
        print(health.url)
        await app.serve()

``aioshare run --health-port N`` does exactly that (docs/runtime.md#health-endpoints):

* ``/livez`` - 200 while the event loop runs and the app has not failed; 503 with a JSON
  ``reason`` once a fatal error stopped it (a consumer that cannot go on, a runtime bug).
* ``/readyz`` - 200 once the app runs and every member of every route has joined its share
  group (member epoch > 0) and heard from its coordinator lately (a heartbeat answered within
  ``heartbeat_timeout``, 15 s by default, or three of the group's heartbeat intervals when
  that is longer); 503 while starting, while a member is (re)joining,
  while a member's heartbeats go unanswered, after its consumer failed, once a stop was
  requested, and after a failure.
* ``/metrics`` - the app's ``Metrics`` in the Prometheus text format: through
  ``prometheus_client`` (``aioshare.runtime.prometheus``) when it is installed, otherwise
  rendered here (``render_text``) with the same names.

The server is asyncio's own ``start_server`` with a minimal HTTP/1.1 ``GET``/``HEAD`` handler
(one request per connection, ``Connection: close``): no dependency, nothing to configure, and
every connection handler is owned - ``close()`` cancels and awaits them.  ``ProbeServer`` is
that server for any set of paths (the ``--processes`` supervisor serves its own), ``http_get``
the matching minimal client.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aioshare._validate import check_seconds
from aioshare.runtime.app import App
from aioshare.runtime.member import Member
from aioshare.runtime.metrics import Counter, Gauge, Histogram, Metrics

__all__ = [
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "HEARTBEAT_INTERVALS",
    "TEXT_CONTENT_TYPE",
    "AppHealth",
    "HealthBindError",
    "HealthServer",
    "HttpResponse",
    "ProbeServer",
    "all_members_joined",
    "app_health",
    "http_get",
    "render_text",
    "silence_allowed",
]

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"

# Readiness gives a member this long without an answered heartbeat: three of Kafka's default
# 5 s heartbeat intervals (one or two lost heartbeats are a blip, not an outage), a third of
# its default 45 s session timeout - so Kubernetes' default probe (3 failures, 10 s apart)
# marks the pod not ready about when the coordinator gives the member up.
DEFAULT_HEARTBEAT_TIMEOUT = 15.0
# ... and never less than this many of the intervals the coordinator actually gave: a group
# with share.heartbeat.interval.ms raised (up to 15 s) must not look silent between beats.
HEARTBEAT_INTERVALS = 3

_REQUEST_TIMEOUT = 5.0  # a client has this long to send its request line and headers
_MAX_REQUEST = 8192  # bytes of request line + headers


class HealthBindError(OSError):
    """The health server could not listen on its address (port in use, no such address...)."""


# ------------------------------------------------------------------------------ state


@dataclass(frozen=True, slots=True)
class AppHealth:
    """What the probes answer: ``live``/``ready`` and, when not, why (one line)."""

    live: bool
    ready: bool
    reason: str
    phase: str
    routes: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self, probe: str) -> dict[str, Any]:
        ok = self.live if probe == "livez" else self.ready
        body: dict[str, Any] = {"status": "ok" if ok else ("failed" if not self.live else "unavailable")}
        if not ok:
            body["reason"] = self.reason
        body["phase"] = self.phase
        body["routes"] = self.routes
        return body


def all_members_joined(app: App) -> bool:
    """The app runs and every member of every route has joined its group (epoch > 0).

    Joined is what the coordinator said last: a member fenced and rejoining is back at 0.
    A member's first assignment may be empty (docs/operations.md#heartbeats-and-joining),
    so the assignment is not part of it.
    """
    if not app.running:
        return False
    for runner in app.runners:
        for member in runner.members:
            epoch = member.member_epoch
            if epoch is not None and epoch <= 0:
                return False
    return True


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def silence_allowed(member: Member, heartbeat_timeout: float) -> float:
    """How long ``member`` may go without an answered heartbeat and still count as ready:
    ``heartbeat_timeout``, or ``HEARTBEAT_INTERVALS`` of the heartbeat interval its
    coordinator gave when that is longer."""
    interval = member.heartbeat_interval
    if interval is None:
        return heartbeat_timeout
    return max(heartbeat_timeout, HEARTBEAT_INTERVALS * interval)


def _member_trouble(
    route: str, group_id: str, member: Member, now: float, heartbeat_timeout: float
) -> str | None:
    """Why this member cannot count as ready, one line naming its route and group (None when
    it can)."""
    failure = member.failure
    if failure is not None:
        return (
            f"route {route!r} group {group_id!r} member {member.index}: "
            f"the consumer failed: {type(failure).__name__}: {failure}"
        )
    epoch = member.member_epoch
    if epoch is None:
        return None  # a consumer that reports no membership (a test double)
    if epoch <= 0:
        return f"route {route!r} member {member.index} has not joined group {group_id!r}"
    last = member.last_heartbeat_at
    if last is None or now - last <= silence_allowed(member, heartbeat_timeout):
        return None
    failures = member.heartbeat_failures or 0
    detail = _plural(failures, "failure") if failures else "the last one still unanswered"
    return (
        f"route {route!r} group {group_id!r} member {member.index}: "
        f"no heartbeat answered for {now - last:.1f} s ({detail})"
    )


def app_health(
    app: App, *, heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT, now: float | None = None
) -> AppHealth:
    """The app's liveness and readiness, read from its public state (never blocks).

    A member that joined is not ready once its coordinator has answered no heartbeat for more
    than ``heartbeat_timeout`` seconds - or three of the heartbeat intervals its coordinator
    gave, when that is longer (``silence_allowed``) - (its epoch outlives its heartbeats until
    the session timeout fences it), nor once its consumer has failed.  ``now`` is the consumers' event-loop
    clock (``loop.time()``); by default the running loop's, else ``time.monotonic()`` (the
    clock of asyncio's loop and of uvloop's).
    """
    if now is None:
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:
            now = time.monotonic()
    routes: list[dict[str, Any]] = []
    troubles: list[str] = []
    for runner in app.runners:
        group_id = runner.route.group_id
        members = []
        for member in runner.members:
            consumer = member.consumer
            entry: dict[str, Any] = {"index": member.index, "member_epoch": member.member_epoch}
            assignment = getattr(consumer, "assignment", None)
            if callable(assignment):
                with contextlib.suppress(Exception):
                    entry["partitions"] = sorted(f"{tp.topic}[{tp.partition}]" for tp in assignment())
            held = getattr(consumer, "held", None)
            if isinstance(held, int):
                entry["held"] = held
            last = member.last_heartbeat_at
            if last is not None:
                entry["heartbeat_age"] = round(now - last, 3)
            interval = member.heartbeat_interval
            if interval is not None:
                entry["heartbeat_interval"] = interval
            failures = member.heartbeat_failures
            if failures is not None:
                entry["heartbeat_failures"] = failures
            members.append(entry)
            trouble = _member_trouble(runner.name, group_id, member, now, heartbeat_timeout)
            if trouble is not None:
                troubles.append(trouble)
        routes.append({"route": runner.name, "group_id": group_id, "members": members})
    failure = app.failure
    phase = app.phase
    if failure is not None:
        reason = f"the app failed: {type(failure).__name__}: {failure}"
        return AppHealth(False, False, reason, phase, routes)
    if phase in ("new", "starting"):
        return AppHealth(True, False, f"the app is {phase}", phase, routes)
    if phase != "running" or app.stop_requested:
        return AppHealth(
            True, False, "the app is stopping" if phase != "stopped" else "the app stopped", phase, routes
        )
    if troubles:
        return AppHealth(True, False, "; ".join(troubles), phase, routes)
    return AppHealth(True, True, "", phase, routes)


# ------------------------------------------------------------------------------ metrics


def _metric_name(namespace: str, metric: str) -> str:
    return f"{namespace}_{metric.replace('-', '_')}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def render_text(metrics: Metrics, namespace: str = "aioshare") -> str:
    """``metrics`` in the Prometheus text exposition format (0.0.4), without prometheus_client.

    The same families, names and samples as ``aioshare.runtime.prometheus``.
    """
    lines: list[str] = []
    for metric in metrics:
        name = _metric_name(namespace, metric.name)
        lines.append(f"# HELP {name} {_escape_help(metric.help)}")
        if isinstance(metric, Counter | Gauge):
            lines.append(f"# TYPE {name} {metric.kind}")
            for key, value in sorted(metric.values.items()):
                lines.append(f"{name}{_labels(metric.labelnames, key)} {_number(value)}")
            continue
        assert isinstance(metric, Histogram)
        lines.append(f"# TYPE {name} histogram")
        bounds = [*metric.bounds, math.inf]
        for key, data in sorted(metric.values.items()):
            for bound, count in zip(bounds, data.cumulative(), strict=True):
                le = f'le="{_number(bound)}"'
                lines.append(f"{name}_bucket{_labels(metric.labelnames, key, le)} {_number(count)}")
            lines.append(f"{name}_count{_labels(metric.labelnames, key)} {_number(data.count)}")
            lines.append(f"{name}_sum{_labels(metric.labelnames, key)} {_number(data.sum)}")
    return "\n".join(lines) + "\n"


class _MetricsRenderer:
    """prometheus_client's exposition when installed (``use_client=None``), else ``render_text``."""

    def __init__(self, metrics: Metrics, use_client: bool | None = None) -> None:
        self._metrics = metrics
        self._client: Any = None
        self._registry: Any = None
        if use_client is not False:
            try:
                client = importlib.import_module("prometheus_client")
            except ImportError:
                if use_client:
                    raise
            else:
                from aioshare.runtime.prometheus import register_metrics

                self._client = client
                self._registry = client.CollectorRegistry(auto_describe=False)
                register_metrics(metrics, self._registry)

    def render(self) -> tuple[bytes, str]:
        if self._client is not None:
            return bytes(self._client.generate_latest(self._registry)), str(self._client.CONTENT_TYPE_LATEST)
        return render_text(self._metrics).encode(), TEXT_CONTENT_TYPE


# ------------------------------------------------------------------------------ HTTP


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = JSON_CONTENT_TYPE

    @classmethod
    def json(cls, status: int, body: object) -> HttpResponse:
        return cls(status, (json.dumps(body, sort_keys=True) + "\n").encode())

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


Handler = Callable[[], Awaitable[HttpResponse]]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class ProbeServer:
    """A minimal HTTP/1.1 server: ``GET``/``HEAD`` of a fixed set of paths, one request per
    connection.  Every connection handler is owned: ``close()`` cancels and awaits them."""

    def __init__(self, handlers: Mapping[str, Handler], host: str = "127.0.0.1", port: int = 0) -> None:
        self._handlers = dict(handlers)
        self.host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def port(self) -> int:
        """The bound port (the one picked when 0 was asked for)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def __aenter__(self) -> ProbeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._server is not None or self._closed:
            raise RuntimeError("a ProbeServer starts once")
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self._port, limit=_MAX_REQUEST)
        except OSError as exc:
            raise HealthBindError(
                exc.errno, f"cannot listen on {self.host}:{self._port}: {exc.strerror or exc}"
            ) from exc

    async def close(self) -> None:
        """Stop listening, cancel the connections being served and wait for them."""
        self._closed = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await asyncio.sleep(0)  # connections accepted just before: let them see _closed
        while self._connections:
            tasks = list(self._connections)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._closed:
            writer.close()
            return
        self._connections.add(task)
        try:
            await self._answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method = "GET"
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            return
        except asyncio.LimitOverrunError:
            response = HttpResponse.json(431, {"status": "error", "reason": "request too large"})
        else:
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                response = HttpResponse.json(400, {"status": "error", "reason": "malformed request"})
            else:
                method, target = parts[0], parts[1]
                path = target.split("?", 1)[0]
                handler = self._handlers.get(path)
                if handler is None:
                    response = HttpResponse.json(
                        404, {"status": "error", "reason": f"no such path; try {', '.join(self._handlers)}"}
                    )
                elif method not in ("GET", "HEAD"):
                    response = HttpResponse.json(405, {"status": "error", "reason": "only GET and HEAD"})
                else:
                    try:
                        response = await handler()
                    except Exception as exc:
                        response = HttpResponse.json(500, {"status": "error", "reason": repr(exc)})
        header = (
            f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}\r\n"
            f"Content-Type: {response.content_type}\r\n"
            f"Content-Length: {len(response.body)}\r\n"
            "Cache-Control: no-store\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        writer.write(header if method == "HEAD" else header + response.body)
        await writer.drain()


async def http_get(host: str, port: int, path: str, timeout: float = 5.0) -> HttpResponse:  # noqa: ASYNC109
    """GET ``path`` from a ``ProbeServer`` (or any HTTP/1.x server that closes after answering).

    Raises OSError (ConnectionError...) when nothing answers, TimeoutError after ``timeout``.
    """
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise ConnectionError(f"not an HTTP answer from {host}:{port}: {lines[0]!r}")
    content_type = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-type":
            content_type = value.strip()
    return HttpResponse(int(status_line[1]), body, content_type)


class HealthServer(ProbeServer):
    """``/livez``, ``/readyz`` and ``/metrics`` of one App (see the module docstring).

    ``use_prometheus_client``: None uses it when installed, False never, True requires it.
    ``heartbeat_timeout``: how long a joined member may go without an answered heartbeat and
    still count as ready (``app_health``); three of the group's heartbeat intervals are
    allowed when that is longer.
    Serves whatever state the app is in - before ``start()``, while running, after a
    failure - so open it before the app starts and close it after the app stopped.
    """

    def __init__(
        self,
        app: App,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        use_prometheus_client: bool | None = None,
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
    ) -> None:
        check_seconds("heartbeat_timeout", heartbeat_timeout, positive=True)
        self.app = app
        self.heartbeat_timeout = heartbeat_timeout
        self._renderer = _MetricsRenderer(app.metrics, use_prometheus_client)
        super().__init__(
            {"/livez": self._livez, "/readyz": self._readyz, "/metrics": self._metrics}, host, port
        )

    async def _livez(self) -> HttpResponse:
        health = app_health(self.app, heartbeat_timeout=self.heartbeat_timeout)
        return HttpResponse.json(200 if health.live else 503, health.as_json("livez"))

    async def _readyz(self) -> HttpResponse:
        health = app_health(self.app, heartbeat_timeout=self.heartbeat_timeout)
        return HttpResponse.json(200 if health.ready else 503, health.as_json("readyz"))

    async def _metrics(self) -> HttpResponse:
        body, content_type = self._renderer.render()
        return HttpResponse(200, body, content_type)
