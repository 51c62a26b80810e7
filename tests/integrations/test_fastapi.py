"""examples/fastapi_app.py under uvicorn (in this process, on a free port) against an
EmbeddedBroker: POST a job, see it handled, read the stats; and the lifespan helper itself."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import aioshare
from aioshare.broker.embedded import EmbeddedBroker
from aioshare.integrations.fastapi import lifespan
from aioshare.protocol.errors import ConfigError
from aioshare.testing import prepare
from tests.kit import wait_for, wait_until

from .conftest import load_example

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")


@contextlib.asynccontextmanager
async def uvicorn_serving(api: Any) -> AsyncIterator[str]:
    """Serve ``api`` with uvicorn on a free port (lifespan on); yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api, lifespan="on", log_level="warning"))
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        await wait_until(lambda: server.started or task.done(), timeout=20)
        if task.done():
            task.result()  # startup failed: raise why
            raise AssertionError("uvicorn exited during startup")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


async def test_a_posted_job_is_handled_by_the_app_in_the_same_process(broker: EmbeddedBroker) -> None:
    example = load_example("fastapi_app")
    api = example.create_app(broker.bootstrap_servers)
    worker: aioshare.App = api.state.worker
    await prepare(worker)  # topics, and the group starting at the earliest offset
    async with uvicorn_serving(api) as url, httpx.AsyncClient(base_url=url) as client:
        assert worker.running  # started by the lifespan before the first request
        response = await client.post("/jobs", json={"task": "resize", "size": 2})
        assert response.status_code == 202, response.text
        job = response.json()
        assert job["offset"] == 0

        done = await wait_for(
            lambda: client.get(f"/jobs/{job['id']}"),
            lambda r: r.status_code != 404,
            timeout=20,
            interval=0.05,
        )
        assert done.status_code == 200
        assert done.json()["task"] == "resize"
        assert done.json()["delivery_count"] == 1

        bad = await client.post("/jobs", json={"task": "crop", "size": -1})
        assert bad.status_code == 202
        await wait_until(lambda: worker.metrics.value("records-dead-lettered-total") == 1, timeout=20)
        stats = (await client.get("/stats")).json()
        assert stats["consuming"] is True and stats["failure"] is None
        assert stats["handled"] == 1 and stats["accepted"] == 1 and stats["dead_lettered"] == 1
        # counters are JSON integers ("accepted": 1), not floats ("accepted": 1.0)
        counters = ("handled", "accepted", "dead_lettered", "retried", "running")
        assert {key: type(stats[key]) for key in counters} == dict.fromkeys(counters, int)

        invalid = await client.post("/jobs", json={"size": 1})
        assert invalid.status_code == 422
    assert not worker.running  # the server's shutdown stopped the App


async def test_the_lifespan_nests_the_inner_one_and_merges_state(broker: EmbeddedBroker) -> None:
    worker = aioshare.App(broker.bootstrap_servers, shutdown_timeout=1)

    @worker.handler("t", group_id="g")
    async def handle(msg: aioshare.Message[bytes]) -> None:
        pass

    await prepare(worker)
    order: list[str] = []

    @contextlib.asynccontextmanager
    async def inner(app: Any) -> AsyncIterator[dict[str, Any]]:
        order.append(f"inner start, worker running={worker.running}")
        yield {"db": "connection"}
        order.append(f"inner stop, worker running={worker.running}")

    api = fastapi.FastAPI(lifespan=lifespan(worker, inner=inner))

    @api.get("/state")
    async def state(request: fastapi.Request) -> dict[str, Any]:
        return {"db": request.state.db, "consuming": request.state.aioshare.running}

    async with uvicorn_serving(api) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/state")).json() == {"db": "connection", "consuming": True}
    assert order == ["inner start, worker running=True", "inner stop, worker running=True"]
    assert not worker.running


async def test_an_app_that_cannot_start_fails_the_lifespan_startup() -> None:
    # (Under uvicorn this is "Application startup failed. Exiting." - a sys.exit, so the
    # lifespan is entered directly here.)
    worker = aioshare.App("127.0.0.1:9")  # no routes: App.start() refuses
    api = fastapi.FastAPI(lifespan=lifespan(worker))
    with pytest.raises(ConfigError, match="no routes"):
        async with api.router.lifespan_context(api):
            pass
