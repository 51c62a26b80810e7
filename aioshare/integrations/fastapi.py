"""FastAPI (and Starlette) lifespan for an aioshare App.

    worker = aioshare.App("kafka:9092")

    @worker.handler("jobs", group_id="job-workers")
    async def work(msg: aioshare.Message[bytes]) -> None: ...

    api = FastAPI(lifespan=aioshare.integrations.fastapi.lifespan(worker))

    @api.get("/health")
    async def health(request: Request) -> dict[str, object]:
        app = request.state.aioshare               # the lifespan state
        return {"consuming": app.running, "failure": repr(app.failure) if app.failure else None}

The lifespan starts the App with the web server (before it accepts requests) and stops it
gracefully when the server shuts down.  It yields the lifespan *state* ``{"aioshare": app}``
(``request.state.aioshare``); ``inner=`` nests your own lifespan inside it - it runs after
the App started and ends before the App stops, and its state is merged in.  Works with any
framework that takes a Starlette-style lifespan; imports neither FastAPI nor Starlette.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from aioshare.integrations import running
from aioshare.runtime.app import App

__all__ = ["Lifespan", "lifespan"]

Lifespan = Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any] | None]]


def lifespan(
    app: App,
    *,
    inner: Lifespan | None = None,
    stop_timeout: float | None = None,
    state_key: str = "aioshare",
) -> Callable[[Any], AbstractAsyncContextManager[dict[str, Any]]]:
    """A lifespan function for ``FastAPI(lifespan=...)`` that runs ``app`` with the server."""

    @contextlib.asynccontextmanager
    async def _lifespan(web_app: Any) -> AsyncIterator[dict[str, Any]]:
        async with running(app, stop_timeout=stop_timeout):
            state: dict[str, Any] = {state_key: app}
            if inner is None:
                yield state
                return
            async with inner(web_app) as inner_state:
                yield {**state, **(inner_state or {})}

    return _lifespan
