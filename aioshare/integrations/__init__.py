"""Running an aioshare App inside a web application's lifecycle.

* ``aioshare.integrations.fastapi.lifespan(app)`` - for FastAPI / Starlette (any ASGI
  framework with Starlette-style lifespans); imports neither.
* ``aioshare.integrations.aiohttp.cleanup_ctx(app)`` / ``setup(web_app, app)`` - for aiohttp
  (imports aiohttp, which only its users have).

Both start the App when the web server starts (a route that cannot start fails the
server's startup) and stop it gracefully when the server stops: fetching stops, running
handlers get ``stop_timeout`` seconds, held records are released, the groups are left.  A
fatal error of the App while the server runs is logged at once; it stays in
``app.failure`` (report it from a health endpoint) and is raised at shutdown.

Nothing here is imported by ``import aioshare``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aioshare.runtime.app import App

__all__ = ["running"]

log = logging.getLogger("aioshare.integrations")


@contextlib.asynccontextmanager
async def running(app: App, *, stop_timeout: float | None = None) -> AsyncIterator[App]:
    """``start()`` ``app``, yield it, then ``stop(stop_timeout)`` it (the app's own
    ``shutdown_timeout`` when None).  The app's fatal error, if one stopped it, is raised on
    exit - unless the body raised first."""
    await app.start()
    watcher = asyncio.get_running_loop().create_task(_report_failure(app), name="aioshare-integration-watch")
    try:
        yield app
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await app.stop(stop_timeout)
    if app.failure is not None:
        raise app.failure


async def _report_failure(app: App) -> None:
    # A web server keeps serving when the worker side dies: say so when it happens, not
    # only at shutdown.
    await app.wait()
    if app.failure is not None:
        log.error(
            "the aioshare app stopped on a fatal error; the web app keeps serving", exc_info=app.failure
        )
