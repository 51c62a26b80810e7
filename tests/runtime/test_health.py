"""aioshare.runtime.health: the probe server, the metrics rendering, an App's health."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from aioshare.runtime import App, ConsumerLike, ConsumerSpec, Message, share_consumer
from aioshare.runtime.events import EventKind
from aioshare.runtime.health import (
    HealthBindError,
    HealthServer,
    HttpResponse,
    ProbeServer,
    http_get,
    render_text,
)
from aioshare.runtime.metrics import Metrics
from aioshare.testing.apps import prepare
from aioshare.testing.broker import ThreadedBroker


def _samples(text: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _families(text: str) -> dict[str, str]:
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: f.type for f in text_string_to_metric_families(text)}


def test_render_text_is_what_prometheus_client_renders() -> None:
    import prometheus_client

    from aioshare.runtime.prometheus import register_metrics

    metrics = Metrics()
    odd = 'we"ird\\topic\nname'
    for kind in (EventKind.RECEIVED, EventKind.ACCEPTED, EventKind.RECEIVED, EventKind.RELEASED):
        metrics.record_fields(kind, "r1", odd, None, None, None, 0.02)
    metrics.record_fields(EventKind.ERROR, "r1", None, None, "handler", None, None)
    metrics.record_fields(EventKind.RETRIED, "r2", "t", None, None, 1.5, None)
    metrics.observe_handler("r1", 0.003)
    metrics.observe_handler("r1", 7.0)
    metrics.register_route("r1", held=lambda: 4, delayed=lambda: 1, running=lambda: 2)

    registry = prometheus_client.CollectorRegistry(auto_describe=False)
    register_metrics(metrics, registry)
    reference = prometheus_client.generate_latest(registry).decode()
    ours = render_text(metrics)

    assert _samples(ours) == _samples(reference)
    assert _families(ours) == _families(reference)
    assert ("aioshare_records_accepted_total", (("route", "r1"), ("topic", odd)), 1.0) in _samples(ours)
    assert ("aioshare_records_held", (("route", "r1"),), 4.0) in _samples(ours)
    assert "# TYPE aioshare_handler_duration_seconds histogram" in ours


async def test_probe_server_speaks_minimal_http() -> None:
    calls = 0

    async def hello() -> HttpResponse:
        nonlocal calls
        calls += 1
        return HttpResponse(200, b"hi\n", "text/plain")

    async def broken() -> HttpResponse:
        raise RuntimeError("boom")

    async with ProbeServer({"/hello": hello, "/broken": broken}) as server:
        port = server.port
        assert port > 0 and server.url == f"http://127.0.0.1:{port}"
        ok = await http_get("127.0.0.1", port, "/hello?verbose")
        assert (ok.status, ok.body, ok.content_type) == (200, b"hi\n", "text/plain")
        missing = await http_get("127.0.0.1", port, "/nope")
        assert missing.status == 404 and "/hello" in json.loads(missing.body)["reason"]
        failed = await http_get("127.0.0.1", port, "/broken")
        assert failed.status == 500 and "boom" in json.loads(failed.body)["reason"]

        async def raw(request: bytes) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            await writer.wait_closed()
            return data

        head = await raw(b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 3\r\n" in head
        assert head.endswith(b"\r\n\r\n")  # no body
        post = await raw(b"POST /hello HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        assert post.startswith(b"HTTP/1.1 405 ")
        garbage = await raw(b"hello\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400 ")
        assert calls == 2  # the GET and the HEAD

        # A client that connects and says nothing: close() does not wait for it.
        _, idle = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.wait_for(server.close(), 5)
        idle.close()
    with pytest.raises(OSError):
        await http_get("127.0.0.1", port, "/hello", timeout=5)


async def test_probe_server_port_in_use_is_a_bind_error() -> None:
    async def hello() -> HttpResponse:
        return HttpResponse(200)

    async with ProbeServer({"/x": hello}) as first:
        with pytest.raises(HealthBindError, match=f"cannot listen on 127.0.0.1:{first.port}"):
            await ProbeServer({"/x": hello}, port=first.port).start()


class Gated:
    """A real ShareConsumer whose join the test decides when to reveal, and that fails on
    demand: the health server sees only what the public API says."""

    def __init__(self, inner: Any, joined: asyncio.Event, fail: asyncio.Event) -> None:
        self.inner = inner
        self.joined = joined
        self.fail = fail

    @property
    def member_epoch(self) -> int:
        return int(self.inner.member_epoch) if self.joined.is_set() else 0

    def assignment(self) -> Any:
        return self.inner.assignment()

    @property
    def held(self) -> int:
        return int(self.inner.held)

    async def start(self) -> None:
        await self.inner.start()

    async def getmany(self, max_records: int | None = None, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        if self.fail.is_set():
            raise RuntimeError("injected consumer failure")
        return await self.inner.getmany(max_records=max_records, timeout=timeout)

    async def commit(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        return await self.inner.commit(timeout=timeout)

    async def close(self, timeout: float = 30.0) -> Any:  # noqa: ASYNC109
        return await self.inner.close(timeout=timeout)


async def _eventually(probe: Callable[[], Any], predicate: Callable[[Any], bool], timeout: float = 15) -> Any:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while True:
            value = await probe()
            if predicate(value):
                return value
            await asyncio.sleep(0.05)


async def test_health_server_follows_the_app(
    aioshare_app: Callable[..., App],
    aioshare_topic: Callable[..., Any],
    aioshare_broker: ThreadedBroker,
) -> None:
    topic = await aioshare_topic()
    joined, fail = asyncio.Event(), asyncio.Event()

    def factory(spec: ConsumerSpec) -> ConsumerLike:
        return Gated(share_consumer(spec), joined, fail)

    app = aioshare_app(consumer_factory=factory, reports=False)
    release = asyncio.Event()

    @app.handler(topic, group_id=f"{topic}-g", concurrency=2)
    async def work(msg: Message[bytes]) -> None:
        if msg.value == b"block":
            await release.wait()

    await prepare(app)
    async with HealthServer(app) as health:

        async def get(path: str) -> HttpResponse:
            return await http_get("127.0.0.1", health.port, path)

        live, ready = await get("/livez"), await get("/readyz")
        assert live.status == 200 and json.loads(live.body)["status"] == "ok"
        assert ready.status == 503 and json.loads(ready.body)["reason"] == "the app is new"

        async def main() -> None:
            async with app:
                await app.wait()

        task = asyncio.create_task(main())
        try:
            not_joined = await _eventually(
                lambda: get("/readyz"), lambda r: json.loads(r.body)["phase"] == "running"
            )
            assert not_joined.status == 503
            assert "has not joined group" in json.loads(not_joined.body)["reason"]
            joined.set()
            ready = await _eventually(lambda: get("/readyz"), lambda r: r.status == 200)
            body = json.loads(ready.body)
            assert body["status"] == "ok" and body["routes"][0]["members"][0]["member_epoch"] > 0

            await aioshare_broker.produce(topic, [b"a", b"b", b"c"])
            await _eventually(
                lambda: get("/metrics"),
                lambda r: (
                    ("aioshare_records_accepted_total", (("route", "work"), ("topic", topic)), 3.0)
                    in _samples(r.text())
                ),
            )

            # A fatal failure: not live any more, with the reason; the app stops on it.
            await aioshare_broker.produce(topic, [b"block"])
            await _eventually(
                lambda: asyncio.sleep(0, app.metrics.value("handlers-running")), lambda n: n == 1
            )
            fail.set()
            live = await _eventually(lambda: get("/livez"), lambda r: r.status == 503)
            assert json.loads(live.body)["status"] == "failed"
            assert "injected consumer failure" in json.loads(live.body)["reason"]
            assert app.phase == "stopping"  # the blocked handler holds the stop: still serving probes
            assert (await get("/readyz")).status == 503
            release.set()
            with pytest.raises(RuntimeError, match="injected consumer failure"):
                await asyncio.wait_for(task, 15)
            assert (await get("/livez")).status == 503  # still says why, until the server closes
        finally:
            release.set()
            if not task.done():
                app.request_stop(force=True)
                await asyncio.gather(task, return_exceptions=True)


async def test_readyz_says_stopping_while_draining(
    aioshare_app: Callable[..., App], aioshare_topic: Callable[..., Any], aioshare_broker: ThreadedBroker
) -> None:
    topic = await aioshare_topic()
    app = aioshare_app(reports=False)
    started, release = asyncio.Event(), asyncio.Event()

    @app.handler(topic, group_id=f"{topic}-g")
    async def work(msg: Message[bytes]) -> None:
        started.set()
        await release.wait()

    await prepare(app)
    async with HealthServer(app, use_prometheus_client=False) as health:
        async with app:
            await aioshare_broker.produce(topic, [b"x"])
            await asyncio.wait_for(started.wait(), 15)
            app.request_stop()
            stopper = asyncio.create_task(app.stop())
            try:
                ready = await _eventually(
                    lambda: http_get("127.0.0.1", health.port, "/readyz"),
                    lambda r: json.loads(r.body)["phase"] == "stopping",
                )
                assert ready.status == 503 and json.loads(ready.body)["reason"] == "the app is stopping"
                live = await http_get("127.0.0.1", health.port, "/livez")
                assert live.status == 200  # draining is not dead
                metrics = await http_get("127.0.0.1", health.port, "/metrics")
                assert metrics.content_type.startswith("text/plain; version=0.0.4")
                assert ("aioshare_handlers_running", (("route", "work"),), 1.0) in _samples(metrics.text())
            finally:
                release.set()
                await asyncio.wait_for(stopper, 15)
