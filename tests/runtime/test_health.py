"""aioshare.runtime.health: the probe server, the metrics rendering, an App's health."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from aioshare.admin.share_admin import ShareAdmin
from aioshare.admin.types import ShareGroupDescription
from aioshare.protocol.errors import ConfigError, KafkaError
from aioshare.runtime import App, ConsumerLike, ConsumerSpec, Message, share_consumer
from aioshare.runtime.dispatch import Dispatcher
from aioshare.runtime.events import EventKind
from aioshare.runtime.health import (
    HealthBindError,
    HealthServer,
    HttpResponse,
    ProbeServer,
    app_health,
    http_get,
    render_text,
)
from aioshare.runtime.jobs import Job
from aioshare.runtime.limits import Limiter
from aioshare.runtime.metrics import Metrics
from aioshare.share.consumer import ShareConsumer
from aioshare.testing.apps import prepare
from aioshare.testing.broker import ThreadedBroker
from tests.kit import wait_for, wait_until

from .conftest import Ready
from .kit import Recorder

if TYPE_CHECKING:
    from aioshare.broker.embedded import EmbeddedBroker

SHARE_GROUP_HEARTBEAT = 76  # the API key


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


# ------------------------------------------------------------------ readiness from heartbeats

HEARTBEAT_TIMEOUT = 1.0  # five of the test broker's 0.2 s heartbeat intervals
SILENT = re.compile(r"route 'work' group 'g' member 0: no heartbeat answered for (\d+\.\d) s \((.+)\)")


async def _delay_heartbeats(kafka: ThreadedBroker, seconds: float) -> None:
    """Hold the coordinator's heartbeat answers back by ``seconds`` (0: no more)."""

    async def apply(broker: EmbeddedBroker) -> None:
        broker.delay_responses(seconds, api_keys=[SHARE_GROUP_HEARTBEAT])

    await kafka.acall(apply)


def _json(response: HttpResponse) -> dict[str, Any]:
    body = json.loads(response.body)
    assert isinstance(body, dict)
    return body


async def test_readyz_is_false_while_the_coordinator_is_down_and_true_again_after(
    kafka: ThreadedBroker, kafka_app: Callable[..., App], ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()

    @app.handler("jobs", group_id="g")
    async def work(msg: Message[bytes]) -> None:
        pass

    await ready(app)
    async with HealthServer(app, heartbeat_timeout=HEARTBEAT_TIMEOUT) as health:

        async def get(path: str) -> HttpResponse:
            return await http_get("127.0.0.1", health.port, path)

        async with app:
            await kafka.produce("jobs", [b"before"], partition=0)
            await _eventually(lambda: get("/readyz"), lambda r: r.status == 200)
            await wait_until(lambda: recorder.outcome_counts() == {"accepted": 1})

            # The rule at its edge, on the real member's own clock reading.
            member = app.runners[0].members[0]
            last = member.last_heartbeat_at
            assert last is not None and member.heartbeat_failures == 0 and member.failure is None
            assert app_health(app, heartbeat_timeout=HEARTBEAT_TIMEOUT, now=last + HEARTBEAT_TIMEOUT).ready
            # 0.1 s past the edge, not 0.05: (last + 1.05) - last prints as 1.0 or 1.1 depending on
            # the float value of the monotonic clock, and the reason is compared whole.
            late = app_health(app, heartbeat_timeout=HEARTBEAT_TIMEOUT, now=last + HEARTBEAT_TIMEOUT + 0.1)
            assert not late.ready and late.live
            assert (
                late.reason
                == "route 'work' group 'g' member 0: no heartbeat answered for 1.1 s (the last one still unanswered)"
            )

            await kafka.acall(lambda b: b.stop_node(1))
            down = await _eventually(lambda: get("/readyz"), lambda r: r.status == 503)
            body = _json(down)
            found = SILENT.fullmatch(body["reason"])
            assert found is not None, body["reason"]
            assert float(found.group(1)) >= HEARTBEAT_TIMEOUT
            assert re.fullmatch(r"\d+ failures?", found.group(2)), found.group(2)
            assert body["status"] == "unavailable" and body["phase"] == "running"
            entry = body["routes"][0]["members"][0]
            assert entry["heartbeat_failures"] >= 1 and entry["heartbeat_age"] > HEARTBEAT_TIMEOUT
            assert entry["member_epoch"] > 0  # the member cannot know it lost anything
            assert (await get("/livez")).status == 200  # restarting the pod would not bring the broker back

            await kafka.acall(lambda b: b.start_node(1))
            await _eventually(lambda: get("/readyz"), lambda r: r.status == 200)
            assert member.heartbeat_failures == 0
            await kafka.produce("jobs", [b"after"], partition=0)
            await wait_until(lambda: recorder.outcome_counts() == {"accepted": 2})
            await wait_for(
                lambda: kafka.share_records("g", "jobs"), lambda r: r is not None and r.start_offset == 2
            )
    assert set(recorder.terminal()) == {("jobs", 0, 0, 1), ("jobs", 0, 1, 1)}


async def test_readyz_is_false_while_heartbeats_go_unanswered(
    kafka: ThreadedBroker, kafka_app: Callable[..., App], ready: Ready
) -> None:
    app = kafka_app()

    @app.handler("jobs", group_id="g")
    async def work(msg: Message[bytes]) -> None:
        pass

    await ready(app)

    async with HealthServer(app, heartbeat_timeout=HEARTBEAT_TIMEOUT) as health:

        async def readyz() -> HttpResponse:
            return await http_get("127.0.0.1", health.port, "/readyz")

        async with app:
            await _eventually(readyz, lambda r: r.status == 200)
            member = app.runners[0].members[0]
            await _delay_heartbeats(kafka, 2.5)
            try:
                slow = await _eventually(readyz, lambda r: r.status == 503)
            finally:
                await _delay_heartbeats(kafka, 0)
            found = SILENT.fullmatch(_json(slow)["reason"])
            assert found is not None, _json(slow)["reason"]
            # Still in flight, not failed: the request timeout (30 s) has not passed.
            assert found.group(2) == "the last one still unanswered" and member.heartbeat_failures == 0
            await _eventually(readyz, lambda r: r.status == 200)
            assert member.member_epoch is not None and member.member_epoch > 0


@pytest.mark.parametrize(
    "aioshare_broker_config",
    [{"group.share.max.size": 1, "group.share.min.session.timeout.ms": 1000}],
    ids=["one-member-groups"],
)
async def test_a_failed_consumer_stops_the_app_at_once_with_every_slot_busy(
    kafka: ThreadedBroker, kafka_app: Callable[..., App], ready: Ready, recorder: Recorder
) -> None:
    """Heartbeats held back past the session timeout: the coordinator drops the member and
    another consumer takes the group's only place, so the member's rejoin fails for good
    (GROUP_MAX_SIZE_REACHED).  Its only handler slot is busy and nothing is fetched ahead, so
    its fetch loop waits for a slot, not in ``getmany()``: it learns of the failure from the
    consumer itself, and the app fails while the handler still runs."""
    app = kafka_app()
    started, release = asyncio.Event(), asyncio.Event()

    @app.handler("jobs", group_id="g", concurrency=1, prefetch=0)
    async def work(msg: Message[bytes]) -> None:
        started.set()
        await release.wait()

    await ready(app, session_timeout_ms="1500")

    async def members() -> set[str]:
        async with ShareAdmin(kafka.bootstrap_servers) as admin:
            described = (await admin.describe_share_groups(["g"]))["g"]
        assert isinstance(described, ShareGroupDescription), described
        return {m.member_id for m in described.members}

    reasons: list[str] = []
    outsider = ShareConsumer("jobs", group_id="g", bootstrap_servers=kafka.bootstrap_servers)
    async with HealthServer(app, heartbeat_timeout=HEARTBEAT_TIMEOUT) as health:

        async def readyz() -> HttpResponse:
            response = await http_get("127.0.0.1", health.port, "/readyz")
            reason = _json(response).get("reason")
            if reason and (not reasons or reasons[-1] != reason):
                reasons.append(reason)
            return response

        try:
            with pytest.raises(KafkaError, match="maximum capacity") as raised:  # the app stops on it
                async with app:
                    await kafka.produce("jobs", [b"held"], partition=0)
                    await asyncio.wait_for(started.wait(), 10)
                    await _eventually(readyz, lambda r: r.status == 200)
                    runner = app.runners[0]
                    member = runner.members[0]
                    consumer = member.consumer
                    assert isinstance(consumer, ShareConsumer)
                    ours = consumer.member_id
                    await _delay_heartbeats(kafka, 3.0)
                    try:
                        await _eventually(readyz, lambda r: r.status == 503)
                        await wait_for(members, lambda ids: not ids)  # the session timed out
                    finally:
                        await _delay_heartbeats(kafka, 0)
                    assert app.failure is None and runner.running_count == 1
                    # The member's last heartbeat is still held back (answered 3 s after it was sent,
                    # then its next one is refused): the outsider's, answered at once, gets in first.
                    await outsider.start()
                    await wait_until(lambda: outsider.member_epoch > 0)
                    assert await members() == {outsider.member_id}
                    failure = await asyncio.wait_for(consumer.wait_failed(), 10)
                    await wait_until(lambda: app.failure is not None)
                    assert app.failure is failure is member.failure and isinstance(failure, KafkaError)
                    assert app.stop_requested and not release.is_set() and runner.running_count == 1
                    assert member.failed.done() and member.failed.result() is failure
                    assert ours not in await members()

                    failed = await readyz()
                    assert failed.status == 503 and SILENT.fullmatch(reasons[0]), reasons
                    assert reasons[-1].startswith("the app failed: GroupMaxSizeReachedError: "), reasons
                    live = await http_get("127.0.0.1", health.port, "/livez")
                    assert live.status == 503 and "GroupMaxSizeReachedError" in _json(live)["reason"]
                    assert runner.running_count == 1  # all of it while the handler still runs

                    release.set()
                    await asyncio.wait_for(app.wait(), 10)
            assert raised.value is failure
            # The record's share session outlived the membership: its ACCEPT still went through.
            await wait_for(
                lambda: kafka.share_records("g", "jobs"),
                lambda r: r is not None and r.start_offset == 1,
            )
        finally:
            release.set()
            await outsider.close()
    assert recorder.terminal() == {("jobs", 0, 0, 1): "accepted"}
    assert [(e.offset, e.ack_type, e.reason) for e in recorder.kinds(EventKind.ACK_COMMITTED)] == [
        (0, "accept", "applied")
    ]


@pytest.mark.parametrize("app_limit", [False, True], ids=["route-slots", "app-slots"])
async def test_wait_room_ends_when_until_is_done(app_limit: bool) -> None:
    """The fetch loop's wait for a free slot - the route's or, with ``max_concurrency``, the
    app's - also ends when its member's ``failed`` completes: 1, so it goes to ``getmany()``."""
    gate = asyncio.Event()
    ran: list[object] = []
    errors: list[BaseException] = []

    async def run(job: Job) -> None:
        ran.append(job.messages[0])
        await gate.wait()

    shared = Limiter(1) if app_limit else None
    dispatcher = Dispatcher(
        "r", 2 if app_limit else 1, run=run, drop=lambda job: None, fail=errors.append, global_limit=shared
    )
    loop = asyncio.get_running_loop()
    failed: asyncio.Future[BaseException] = loop.create_future()
    dispatcher.submit([Job([0], None)])  # type: ignore[list-item]  # the one slot (the route's, or the app's) is taken
    await wait_until(lambda: ran == [0])
    if app_limit:
        assert dispatcher.slots.free == 1 and shared is not None and not shared.free
    waiting = asyncio.create_task(dispatcher.wait_room(until=failed))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    failed.set_result(RuntimeError("gone"))
    assert await asyncio.wait_for(waiting, 5) == 1
    assert await asyncio.wait_for(dispatcher.wait_room(until=failed), 5) == 1  # done already: at once
    assert ran == [0] and not gate.is_set()

    # Not done: an ordinary wait, which leaves no callback behind.
    pending: asyncio.Future[BaseException] = loop.create_future()
    waiting = asyncio.create_task(dispatcher.wait_room(until=pending))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    gate.set()
    assert await asyncio.wait_for(waiting, 5) == 1  # the room seen before the wait for the app slot
    # A member's ``failed`` lives as long as the app: a callback left behind per wait would pile up.
    assert pending.remove_done_callback(dispatcher._wake_room) == 0
    assert failed.remove_done_callback(dispatcher._wake_room) == 0
    await dispatcher.drain(loop.time())
    assert errors == []


@pytest.mark.parametrize("aioshare_broker_config", [{"group.share.max.size": 1}], ids=["one-member-groups"])
async def test_wait_failed_returns_the_failure_and_a_cancelled_waiter_leaves_the_others_waiting(
    kafka: ThreadedBroker,
) -> None:
    topic = await kafka.create_topic()
    member = ShareConsumer(topic, group_id="g", bootstrap_servers=kafka.bootstrap_servers)
    second = ShareConsumer(topic, group_id="g", bootstrap_servers=kafka.bootstrap_servers)
    first_waiter = asyncio.create_task(second.wait_failed())  # before start(): fine
    other_waiter = asyncio.create_task(second.wait_failed())
    async with member:
        await wait_until(lambda: member.member_epoch > 0)
        first_waiter.cancel()
        await asyncio.gather(first_waiter, return_exceptions=True)
        assert first_waiter.cancelled() and not other_waiter.done()
        async with second:  # the group's only place is taken: its join fails for good
            failure = await asyncio.wait_for(other_waiter, 10)
            assert isinstance(failure, KafkaError) and "maximum capacity" in str(failure)
            assert second.failure is failure
            assert await asyncio.wait_for(second.wait_failed(), 1) is failure  # at once, afterwards
            with pytest.raises(KafkaError, match="maximum capacity"):
                await second.getmany(timeout=0)
        assert member.failure is None and member.member_epoch > 0


# ------------------------------------------------------------- the group's heartbeat interval


async def test_readiness_allows_three_of_the_groups_heartbeat_intervals(
    kafka: ThreadedBroker, kafka_app: Callable[..., App], ready: Ready
) -> None:
    """A group whose heartbeat interval (1 s) is longer than a third of ``heartbeat_timeout``
    (0.5 s): a healthy member goes 1 s between answers, and must not look silent."""
    app = kafka_app()

    @app.handler("jobs", group_id="g")
    async def work(msg: Message[bytes]) -> None:
        pass

    assert ShareConsumer("jobs", group_id="g").heartbeat_interval is None  # no answer yet
    await ready(app, heartbeat_interval_ms="1000")
    async with HealthServer(app, heartbeat_timeout=0.5) as health:

        async def readyz() -> HttpResponse:
            return await http_get("127.0.0.1", health.port, "/readyz")

        async with app:
            body = _json(await _eventually(readyz, lambda r: r.status == 200))
            member = app.runners[0].members[0]
            assert isinstance(member.consumer, ShareConsumer)
            assert member.consumer.heartbeat_interval == member.heartbeat_interval == 1.0
            assert body["routes"][0]["members"][0]["heartbeat_interval"] == 1.0

            # Over two intervals, polled: ready throughout (0.5 s alone would fail between beats).
            loop = asyncio.get_running_loop()
            answered = set()
            until = loop.time() + 2.0
            while loop.time() < until:
                response = await readyz()
                assert response.status == 200, _json(response)
                answered.add(member.last_heartbeat_at)
                await asyncio.sleep(0.05)
            assert len(answered) >= 2  # heartbeats were answered meanwhile, 1 s apart

            # The rule at its edges: three intervals, or heartbeat_timeout when longer.
            last = member.last_heartbeat_at
            assert last is not None
            assert app_health(app, heartbeat_timeout=0.5, now=last + 3.0).ready
            late = app_health(app, heartbeat_timeout=0.5, now=last + 3.05)
            assert not late.ready
            assert late.reason.startswith("route 'work' group 'g' member 0: no heartbeat answered for 3."), (
                late.reason
            )
            assert app_health(app, heartbeat_timeout=5.0, now=last + 4.95).ready
            assert not app_health(app, heartbeat_timeout=5.0, now=last + 5.05).ready


@pytest.mark.parametrize("timeout", [0, -1.0, float("inf"), True])
def test_heartbeat_timeout_is_a_positive_number_of_seconds(timeout: object) -> None:
    with pytest.raises(ConfigError, match="heartbeat_timeout"):
        HealthServer(App(), heartbeat_timeout=timeout)  # type: ignore[arg-type]
