"""``WebServer``: the ``aioshare web`` console - an aiohttp server of static pages and a JSON API.

    server = WebServer("kafka:9092", port=8080)
    host, port = await server.start()
    ...
    await server.close()

It owns everything it starts: its ``ShareAdmin``, the ``ReportReader`` that follows the process
reports topic, the lag sampler task and the HTTP listener; ``close()`` stops all of them and
nothing of it runs afterwards.

Access: bound to 127.0.0.1 by default.  With a ``token`` every request must carry it, as
``Authorization: Bearer TOKEN`` or as the password of HTTP basic auth (any user name: the
browser asks once).  Without a token the server only answers requests whose ``Host`` is the
loopback address it is bound to (a page elsewhere cannot reach it by DNS rebinding); a POST
must be JSON and, when the browser sends an ``Origin``, come from this very origin.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import ipaddress
import logging
from pathlib import Path

from aiohttp import web

from aioshare.admin import ShareAdmin
from aioshare.web import api
from aioshare.web.cluster import ClusterView, LagHistory
from aioshare.web.dlq import DeadLetterExplorer
from aioshare.web.reports import ReportReader, ReportStore

__all__ = ["DEFAULT_PORT", "PAGES", "WebServer", "is_loopback"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 8080
# At close, requests still waiting on Kafka get this long, then are cancelled (aiohttp's
# default, 60 s, would hold `close()` - and Ctrl-C - for as long as a slow cluster takes).
SHUTDOWN_TIMEOUT = 2.0
STATIC = Path(__file__).parent / "static"
# The pages; each is the same shell, whose script draws the view the path names.
PAGES = ("/", "/groups", "/groups/{group}", "/processes", "/errors", "/dlq", "/dlq/{topic}", "/topics")
_LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aioshare")
    except PackageNotFoundError:
        from aioshare import __version__

        return __version__


class WebServer:
    """The console on ``host:port`` (port 0: a free one) for the cluster at ``bootstrap_servers``."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        read_only: bool = False,
        token: str | None = None,
        report_topic: str = "aioshare-reports",
        request_timeout: float = 15.0,
        sample_interval: float = 5.0,
    ) -> None:
        if not is_loopback(host) and not token:
            raise ValueError(
                f"refusing to serve on {host} without a token: anyone who reaches it could reset "
                "offsets and delete groups (give --token or AIOSHARE_WEB_TOKEN, or bind 127.0.0.1)"
            )
        self.bootstrap_servers = bootstrap_servers
        self.host = host
        self.port = port
        self.read_only = read_only
        self.token = token or None
        self.report_topic = report_topic
        self.request_timeout = request_timeout
        self.sample_interval = sample_interval
        self.lag = LagHistory()
        self.store = ReportStore()
        self._admin: ShareAdmin | None = None
        self._reader: ReportReader | None = None
        self._runner: web.AppRunner | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._address: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("the web server is not started")
        return self._address

    @property
    def running(self) -> bool:
        """Started, and its background tasks (the lag sampler, the report reader) alive."""
        return (
            self._runner is not None
            and self._sampler is not None
            and not self._sampler.done()
            and self._reader is not None
            and self._reader.running
        )

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    async def __aenter__(self) -> WebServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> tuple[str, int]:
        """Connects to the cluster, starts following the reports, then listens; returns the
        bound (host, port).  Everything started is stopped again if a later step fails."""
        if self._runner is not None:
            raise RuntimeError("the web server is already started")
        try:
            admin = ShareAdmin(
                self.bootstrap_servers, client_id="aioshare-web", request_timeout=self.request_timeout
            )
            self._admin = admin
            await admin.start()
            self._reader = ReportReader(self.bootstrap_servers, self.report_topic, self.store)
            await self._reader.start()
            self._runner = web.AppRunner(
                self._make_app(admin),
                access_log=None,
                handle_signals=False,
                shutdown_timeout=SHUTDOWN_TIMEOUT,
            )
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
            await site.start()
            bound = self._runner.addresses[0]
            self._address = (str(bound[0]), int(bound[1]))
            self._sampler = asyncio.get_running_loop().create_task(self._sample(), name="aioshare-web-lag")
        except BaseException:
            await self.close()
            raise
        return self._address

    async def close(self) -> None:
        """Stops listening, the sampler, the report reader and the admin client; idempotent."""
        sampler, self._sampler = self._sampler, None
        if sampler is not None:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        runner, self._runner = self._runner, None
        try:
            if runner is not None:
                await runner.cleanup()
        finally:
            reader, self._reader = self._reader, None
            try:
                if reader is not None:
                    await reader.close()
            finally:
                admin, self._admin = self._admin, None
                if admin is not None:
                    await admin.close()
        self._address = None

    async def _sample(self) -> None:
        """Each group's lag every ``sample_interval`` seconds, for the charts."""
        assert self._admin is not None
        cluster = ClusterView(self._admin)
        while True:
            try:
                self.lag.add(await cluster.groups())
            except Exception as exc:  # the cluster may be away for a while: the pages say so
                log.debug("aioshare web: lag sample failed: %s", exc)
            await asyncio.sleep(self.sample_interval)

    # ---------------------------------------------------------------------------- the app

    def _make_app(self, admin: ShareAdmin) -> web.Application:
        app = web.Application(
            middlewares=[self._guard, _api_not_found, api.errors_middleware], client_max_size=1024**2
        )
        app[api.CLUSTER] = ClusterView(admin)
        app[api.LAG] = self.lag
        app[api.DLQ] = DeadLetterExplorer(self.bootstrap_servers, request_timeout=self.request_timeout)
        app[api.STORE] = self.store
        app[api.SETTINGS] = {
            "read_only": self.read_only,
            "bootstrap_servers": self.bootstrap_servers,
            "report_topic": self.report_topic,
            "version": _version(),
        }
        api.add_routes(app)
        for path in PAGES:
            app.router.add_get(path, _page)
        app.router.add_static("/static/", STATIC, append_version=False)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: api.Handler) -> web.StreamResponse:
        if self.token is not None:
            if not self._authorized(request.headers.get("Authorization", "")):
                return web.json_response(
                    {
                        "error": "this console needs its token (bearer, or as the basic-auth password)",
                        "code": "UNAUTHORIZED",
                    },
                    status=401,
                    headers={"WWW-Authenticate": 'Basic realm="aioshare web", charset="UTF-8"'},
                )
        elif not self._host_allowed(request.host):
            return web.json_response(
                {
                    "error": f"unexpected Host {request.host!r}: open the console as {self.url}",
                    "code": "BAD_HOST",
                },
                status=421,
            )
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("Origin")
            if origin is not None and origin.split("://", 1)[-1] != request.host:
                return web.json_response(
                    {"error": f"cross-origin request from {origin} refused", "code": "CROSS_ORIGIN"},
                    status=403,
                )
        response = await handler(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    def _authorized(self, header: str) -> bool:
        assert self.token is not None
        scheme, _, credentials = header.partition(" ")
        given = ""
        if scheme.lower() == "bearer":
            given = credentials.strip()
        elif scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            given = decoded.partition(":")[2]
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    def _host_allowed(self, host_header: str) -> bool:
        if not is_loopback(self.host):
            return True  # a token is required there: checked above
        name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
        return is_loopback(name.strip("[]")) or name == self.host


_SHELL: bytes | None = None


async def _page(request: web.Request) -> web.Response:
    global _SHELL
    if _SHELL is None:
        _SHELL = (STATIC / "index.html").read_bytes()
    return web.Response(
        body=_SHELL,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": (
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
            ),
        },
    )


@web.middleware
async def _api_not_found(request: web.Request, handler: api.Handler) -> web.StreamResponse:
    """Under /api/ every answer is JSON, aiohttp's own 404/405 included."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.status < 400:
            raise
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "TOO_LARGE"}.get(exc.status, "HTTP_ERROR")
        return api.error_response(exc.status, code, f"{exc.reason}: {request.method} {request.path}")
