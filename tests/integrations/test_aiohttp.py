"""examples/aiohttp_app.py in aiohttp's test server against an EmbeddedBroker: POST a job,
see it handled, read the stats; the cleanup context stops the App with the server."""

from __future__ import annotations

import asyncio

import pytest

import aioshare
from aioshare.broker.embedded import EmbeddedBroker
from aioshare.testing import prepare
from tests.kit import wait_for, wait_until

from .conftest import load_example

pytest.importorskip("aiohttp")

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from aioshare.integrations.aiohttp import AIOSHARE_APP, cleanup_ctx


async def test_a_posted_job_is_handled_by_the_app_in_the_same_process(broker: EmbeddedBroker) -> None:
    example = load_example("aiohttp_app")
    web_app = example.create_app(broker.bootstrap_servers)
    worker: aioshare.App = web_app[example.WORKER]
    await prepare(worker)
    async with TestClient(TestServer(web_app)) as client:
        assert worker.running and web_app[AIOSHARE_APP] is worker
        response = await client.post("/jobs", json={"task": "resize", "size": 2})
        assert response.status == 202, await response.text()
        job = await response.json()

        polled = await wait_for(
            lambda: client.get(f"/jobs/{job['id']}"), lambda r: r.status != 404, timeout=20, interval=0.05
        )
        assert polled.status == 200
        result = await polled.json()
        assert result["task"] == "resize" and result["delivery_count"] == 1

        await client.post("/jobs", json={"task": "crop", "size": -1})
        await wait_until(lambda: worker.metrics.value("records-dead-lettered-total") == 1, timeout=20)
        stats = await (await client.get("/stats")).json()
        assert stats["consuming"] is True and stats["handled"] == 1 and stats["dead_lettered"] == 1
        # counters are JSON integers ("accepted": 1), not floats ("accepted": 1.0)
        counters = ("handled", "accepted", "dead_lettered", "retried", "running")
        assert {key: type(stats[key]) for key in counters} == dict.fromkeys(counters, int)

        bad = await client.post("/jobs", data=b"{not json")
        assert bad.status == 400
    assert not worker.running


async def test_cleanup_ctx_stops_the_app_with_the_server(broker: EmbeddedBroker) -> None:
    worker = aioshare.App(broker.bootstrap_servers, shutdown_timeout=1)
    started = asyncio.Event()

    @worker.handler("t", group_id="g")
    async def handle(msg: aioshare.Message[bytes]) -> None:
        pass

    await prepare(worker)
    web_app = web.Application()
    web_app.cleanup_ctx.append(cleanup_ctx(worker, stop_timeout=2))

    async def ping(request: web.Request) -> web.Response:
        started.set()
        return web.json_response({"consuming": request.app[AIOSHARE_APP].running})

    web_app.router.add_get("/ping", ping)
    async with TestClient(TestServer(web_app)) as client:
        assert await (await client.get("/ping")).json() == {"consuming": True}
    assert started.is_set() and not worker.running
