"""aiohttp cleanup context for an aioshare App.

    worker = aioshare.App("kafka:9092")
    web_app = web.Application()
    aioshare.integrations.aiohttp.setup(web_app, worker)      # or:
    web_app.cleanup_ctx.append(aioshare.integrations.aiohttp.cleanup_ctx(worker))

    async def health(request: web.Request) -> web.Response:
        app = request.app[AIOSHARE_APP]
        return web.json_response({"consuming": app.running})

The App starts with the web application (its startup fails if a route cannot start) and
stops gracefully on cleanup; it is stored under the ``AIOSHARE_APP`` key (a ``web.AppKey``).
Cleanup contexts run in order and are undone in reverse: append this before contexts whose
resources the handlers use, and those resources are closed after the App stopped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from aioshare.integrations import running
from aioshare.runtime.app import App

__all__ = ["AIOSHARE_APP", "cleanup_ctx", "setup"]

AIOSHARE_APP: web.AppKey[App] = web.AppKey("aioshare_app", App)


def cleanup_ctx(
    app: App, *, stop_timeout: float | None = None, key: web.AppKey[App] = AIOSHARE_APP
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context (``web_app.cleanup_ctx.append(...)``) that runs ``app`` with the server."""

    async def context(web_app: web.Application) -> AsyncIterator[None]:
        async with running(app, stop_timeout=stop_timeout):
            web_app[key] = app
            yield

    return context


def setup(
    web_app: web.Application,
    app: App,
    *,
    stop_timeout: float | None = None,
    key: web.AppKey[App] = AIOSHARE_APP,
) -> None:
    """Append ``cleanup_ctx(app)`` to ``web_app``."""
    web_app.cleanup_ctx.append(cleanup_ctx(app, stop_timeout=stop_timeout, key=key))
