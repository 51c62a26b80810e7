"""The console's JSON API against the embedded broker, with a running App: the numbers equal
ShareAdmin's, read-only, the token, bad input, a "replay all" that stops at its cap, the
cluster going away and coming back, and nothing left running after close.  The admin actions,
Kafka's refusals and dead letters run on the embedded broker and real Kafka alike, in
test_api_real_kafka.py."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from aioshare.admin import ShareAdmin
from aioshare.broker.embedded import EmbeddedBroker
from aioshare.testing.broker import ThreadedBroker
from aioshare.web import dlq as dlq_module
from aioshare.web import server as server_module
from aioshare.web.cluster import GroupSummary, LagHistory
from aioshare.web.server import WebServer
from tests.kit import wait_for

from ._web import Client, crashed_process_report, publish_report, running_app, unique


@contextlib.asynccontextmanager
async def console(broker: ThreadedBroker, report_topic: str, **options: object) -> AsyncIterator[WebServer]:
    server = WebServer(broker.bootstrap_servers, port=0, report_topic=report_topic, **options)  # type: ignore[arg-type]
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def test_groups_and_offsets_equal_share_admin(
    broker: ThreadedBroker, http: aiohttp.ClientSession
) -> None:
    topic, group, reports = unique("jobs"), unique("workers"), unique("reports")
    await broker.create_topic(topic, 2)
    await broker.produce(topic, [b"a0", b"a1", b"a2", b"hold-0"], partition=0)
    await broker.produce(topic, [b"b0", b"hold-1", b"b2"], partition=1)
    gate = asyncio.Event()
    async with (
        running_app(broker.bootstrap_servers, topic, group, reports, gate) as (_app, recorder),
        console(broker, reports) as server,
        ShareAdmin(broker.bootstrap_servers) as admin,
    ):
        client = Client(http, server.url)
        await recorder.wait_for(5, timeout=20)  # the 5 accepted; 2 held in their handlers

        # The reports of the app arrive every 0.3 s: its held records show per partition.
        async def held() -> Any:
            status, body = await client.get(f"/api/groups/{group}")
            assert status == 200, body
            return body if body["held"] == 2 else None

        body = await wait_for(
            held, bool, timeout=20, interval=0.1, what="the app's report of its 2 held records"
        )
        detail = body["group"]

        described = (await admin.describe_share_groups([group]))[group]
        assert not isinstance(described, Exception)
        assert detail["state"] == described.state.upper() == "STABLE"
        assert [(m["member_id"], m["client_id"], m["host"]) for m in detail["members"]] == [
            (m.member_id, m.client_id, m.host) for m in described.members
        ]
        assert [m["assignment"] for m in detail["members"]] == [
            {t: list(ps) for t, ps in m.assignment.items()} for m in described.members
        ]
        offsets = await admin.describe_share_group_offsets(group)
        ends = await admin.list_offsets(topic, "latest")
        starts = await admin.list_offsets(topic, "earliest")
        rows = {(p["topic"], p["partition"]): p for p in detail["partitions"]}
        assert set(rows) == {(tp.topic, tp.partition) for tp in offsets}
        for tp, info in offsets.items():
            row = rows[(tp.topic, tp.partition)]
            assert row["start_offset"] == info.start_offset
            assert row["log_end"] == ends[tp.partition] and row["log_start"] == starts[tp.partition]
            assert row["lag"] == ends[tp.partition] - info.start_offset
            assert row["held"] == 1  # one "hold" record per partition
        # Kafka reports a start offset one state write late (docs/embedded-broker.md): whatever it
        # is, the page's lag is the sum of ShareAdmin's, and a held record keeps it above 0.
        assert detail["lag"] == sum(ends[tp.partition] - info.start_offset for tp, info in offsets.items())
        assert all(row["lag"] >= 1 for row in rows.values())

        status, groups = await client.get("/api/groups")
        assert status == 200
        mine = next(g for g in groups if g["group_id"] == group)
        assert mine == {
            "group_id": group,
            "state": "STABLE",
            "members": len(described.members),
            "topics": [topic],
            "lag": detail["lag"],
            "error": None,
        }
        status, topics = await client.get("/api/topics")
        listed = {t.name: t.partitions for t in await admin.list_topics()}
        assert {t["name"]: len(t["partitions"]) for t in topics} == listed
        assert next(t for t in topics if t["name"] == topic)["records"] == 7

        # The app's own process: live, its route in the group.
        status, procs = await client.get("/api/processes")
        [proc] = procs["processes"]
        assert not proc["stale"] and not proc["stopped"]
        assert [r["group_id"] for r in proc["report"]["routes"]] == [group]
        assert body["processes"][0]["process_id"] == proc["process_id"]
        assert body["delivery_counts"] == {"1": 7}


async def test_read_only_refuses_every_admin_action(
    broker: ThreadedBroker, http: aiohttp.ClientSession
) -> None:
    topic, group = unique("jobs"), unique("workers")
    await broker.create_topic(topic, 1)
    async with ShareAdmin(broker.bootstrap_servers) as admin:
        await admin.reset_share_group_offsets(group, topic, to="earliest")
    async with console(broker, unique("reports"), read_only=True) as server:
        client = Client(http, server.url)
        assert (await client.get("/api/meta"))[1]["read_only"] is True
        assert (await client.get(f"/api/groups/{group}"))[0] == 200
        for path, body in [
            (f"/api/groups/{group}/reset", {"topic": topic, "to": "latest"}),
            (f"/api/groups/{group}/delete-offsets", {"topics": [topic]}),
            (f"/api/groups/{group}/delete", {}),
            (f"/api/groups/{group}/config", {"set": {"share.record.lock.duration.ms": "15000"}}),
            (f"/api/dlq/{topic}/replay", {"all": True}),
        ]:
            status, answer = await client.post(path, body)
            assert (status, answer["code"]) == (403, "READ_ONLY"), path
    async with ShareAdmin(broker.bootstrap_servers) as admin:
        assert group in {g.group_id for g in await admin.list_share_groups()}


async def test_the_token_is_required_when_set(broker: ThreadedBroker, http: aiohttp.ClientSession) -> None:
    async with console(broker, unique("reports"), token="s3cret") as server:
        client = Client(http, server.url)
        async with http.get(server.url + "/api/meta") as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].startswith("Basic")
            assert (await r.json())["code"] == "UNAUTHORIZED"
        async with http.get(server.url + "/groups") as r:
            assert r.status == 401  # the pages too: the browser asks for the password
        assert (await client.get("/api/meta", headers={"Authorization": "Bearer s3cret"}))[0] == 200
        assert (await client.get("/api/meta", headers={"Authorization": "Bearer wrong"}))[0] == 401
        basic = base64.b64encode(b"anyone:s3cret").decode()
        assert (await client.get("/api/meta", headers={"Authorization": f"Basic {basic}"}))[0] == 200
        wrong = base64.b64encode(b"anyone:nope").decode()
        assert (await client.get("/api/meta", headers={"Authorization": f"Basic {wrong}"}))[0] == 401
    with pytest.raises(ValueError, match="without a token"):
        WebServer(broker.bootstrap_servers, host="0.0.0.0")


async def test_bad_input_is_a_clear_4xx(broker: ThreadedBroker, http: aiohttp.ClientSession) -> None:
    topic, group = unique("jobs"), unique("workers")
    await broker.create_topic(topic, 1)
    async with ShareAdmin(broker.bootstrap_servers) as admin:
        await admin.reset_share_group_offsets(group, topic, to="earliest")
    async with console(broker, unique("reports")) as server:
        client = Client(http, server.url)
        cases = [
            ("reset", {"topic": "bad topic!", "to": "latest"}, 400, "INVALID_TOPIC"),
            ("reset", {"topic": topic, "to": "soon"}, 400, "INVALID_RESET_TARGET"),
            ("reset", {"to": "latest"}, 400, "MISSING_FIELD"),
            ("reset", {"topic": topic, "to": "latest", "partitions": [-1]}, 400, "INVALID_FIELD"),
            ("reset", [1, 2], 400, "INVALID_JSON"),
            ("delete-offsets", {"topics": []}, 400, "MISSING_FIELD"),
            ("config", {}, 400, "MISSING_FIELD"),
            ("config", {"set": {"share.record.lock.duration.ms": 5}}, 400, "INVALID_FIELD"),
        ]
        for action, body, status, code in cases:
            got, answer = await client.post(f"/api/groups/{group}/{action}", body)
            assert (got, answer["code"]) == (status, code), (action, body, answer)
            assert answer["error"]
        got, answer = await client.post(f"/api/groups/{group}/reset", data=b"topic=x")
        assert (got, answer["code"]) == (415, "JSON_REQUIRED")
        got, answer = await client.post(
            f"/api/groups/{group}/reset", data=b"{", headers={"Content-Type": "application/json"}
        )
        assert (got, answer["code"]) == (400, "INVALID_JSON")
        got, answer = await client.post(
            f"/api/groups/{unique('nobody')}/reset", {"topic": topic, "to": "latest"}
        )
        assert (got, answer["code"]) == (404, "GROUP_ID_NOT_FOUND"), answer
        got, answer = await client.post(
            f"/api/groups/{group}/reset", {"topic": unique("missing"), "to": "latest"}
        )
        assert (got, answer["code"]) == (404, "UNKNOWN_TOPIC_OR_PARTITION"), answer
        got, answer = await client.get(f"/api/dlq/{topic}?limit=zero")
        assert (got, answer["code"]) == (400, "INVALID_PARAMETER")
        got, answer = await client.get(f"/api/dlq/{unique('missing')}")
        assert (got, answer["code"]) == (404, "UNKNOWN_TOPIC_OR_PARTITION"), answer
        got, answer = await client.get("/api/nothing-here")
        assert (got, answer["code"]) == (404, "NOT_FOUND")
        got, answer = await client.post(
            f"/api/groups/{group}/delete", {}, headers={"Origin": "http://evil.example"}
        )
        assert (got, answer["code"]) == (403, "CROSS_ORIGIN")
        got, answer = await client.get("/api/meta", headers={"Host": "evil.example"})
        assert (got, answer["code"]) == (421, "BAD_HOST")
    async with ShareAdmin(broker.bootstrap_servers) as admin:
        assert group in {g.group_id for g in await admin.list_share_groups()}  # nothing was deleted


async def test_processes_and_errors_from_the_reports(
    broker: ThreadedBroker, http: aiohttp.ClientSession
) -> None:
    reports, topic = unique("reports"), unique("jobs")
    await broker.create_topic(reports, 1)
    ghost = crashed_process_report("ghosts", topic, interval_s=0.2)
    await publish_report(broker.bootstrap_servers, reports, ghost)
    async with console(broker, reports) as server:
        client = Client(http, server.url)

        async def stale() -> Any:
            _, body = await client.get("/api/processes")
            return [p for p in body["processes"] if p["process_id"] == ghost.process_id and p["stale"]]

        [proc] = await wait_for(
            stale, bool, timeout=20, interval=0.1, what="the crashed process marked stale"
        )
        assert proc["report"]["host"] == "crashed-host" and not proc["stopped"]
        _, body = await client.get("/api/errors")
        [error] = body["errors"]
        assert (error["topic"], error["partition"], error["offset"]) == (topic, 0, 3)
        assert error["exception_type"] == "builtins.ValueError" and error["process_id"] == ghost.process_id
        assert error["traceback_head"].startswith("Traceback")
        _, body = await client.get("/api/groups/ghosts")  # no such group in Kafka
        assert body["code"] == "GROUP_ID_NOT_FOUND"


async def test_replay_all_stops_at_its_cap_and_says_where(
    broker: ThreadedBroker, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dlq_module, "MAX_REPLAY", 5)
    monkeypatch.setattr(dlq_module, "REPLAY_CHUNK", 2)  # several chunks per replay
    topic, dlq = unique("jobs"), unique("jobs-dlq")
    await broker.create_topic(topic, 1)
    await broker.create_topic(dlq, 2)
    dead = [("aioshare.dlq.original.topic", topic.encode()), ("aioshare.dlq.reason", b"exhausted")]
    await broker.produce(dlq, [f"p0-{i}".encode() for i in range(4)], partition=0, headers=dead)
    await broker.produce(dlq, [b"not-dead"], partition=1)  # no original topic: skipped
    await broker.produce(dlq, [f"p1-{i}".encode() for i in range(1, 4)], partition=1, headers=dead)
    async with console(broker, unique("reports")) as server:
        client = Client(http, server.url)
        status, body = await client.post(f"/api/dlq/{dlq}/replay", {"all": True})
        assert status == 200, body
        assert (body["read"], body["limit"], body["capped"]) == (5, 5, True), body
        assert (body["replayed"], body["skipped"], body["skipped_count"]) == (4, ["1@0"], 1), body
        assert body["next_offset"] == {"1": 1}, body
        status, body = await client.post(f"/api/dlq/{dlq}/replay", {"all": True, "from": body["next_offset"]})
        assert status == 200, body
        assert (body["read"], body["replayed"], body["capped"], body["next_offset"]) == (3, 3, False, {}), (
            body
        )
        status, body = await client.get(f"/api/dlq/{topic}")
        assert [r["value"]["text"] for r in body["page"]["records"]] == [
            "p0-0",
            "p0-1",
            "p0-2",
            "p0-3",
            "p1-1",
            "p1-2",
            "p1-3",
        ]
        for bad in [
            {"all": True, "from": {"x": 1}},
            {"all": True, "from": {"0": -1}},
            {"all": True, "from": [1]},
        ]:
            status, body = await client.post(f"/api/dlq/{dlq}/replay", bad)
            assert (status, body["code"]) == (400, "INVALID_FIELD"), (bad, body)
        status, body = await client.post(
            f"/api/dlq/{dlq}/replay", {"partition": 0, "offset": 0, "from": {"0": 1}}
        )
        assert (status, body["code"]) == (400, "INVALID_REQUEST"), body
        status, body = await client.post(f"/api/dlq/{dlq}/replay", {"all": True, "from": {"7": 0}})
        assert (status, body["code"]) == (404, "UNKNOWN_TOPIC_OR_PARTITION"), body


async def test_kafka_going_away_is_a_503_and_the_console_recovers(http: aiohttp.ClientSession) -> None:
    with ThreadedBroker() as own:
        topic, group, reports = unique("jobs"), unique("workers"), unique("reports")
        await own.create_topic(topic, 1)
        await own.produce(topic, [b"x"] * 3)
        async with ShareAdmin(own.bootstrap_servers) as admin:
            await admin.reset_share_group_offsets(group, topic, to="earliest")
        paths = ["/api/groups", f"/api/groups/{group}", "/api/overview", "/api/topics", f"/api/dlq/{topic}"]
        async with console(own, reports, request_timeout=1.0) as server:
            client = Client(http, server.url)
            for path in paths:
                assert (await client.get(path))[0] == 200, path
            await own.acall(lambda b: b.stop_node(1))
            try:
                for path in paths:
                    status, body = await client.get(path)
                    assert (status, body["code"]) == (503, "KAFKA_UNAVAILABLE"), (path, body)
                    assert body["error"].startswith("cannot reach Kafka"), body
                status, body = await client.post(
                    f"/api/groups/{group}/reset", {"topic": topic, "to": "latest"}
                )
                assert (status, body["code"]) == (503, "KAFKA_UNAVAILABLE"), body
                status, body = await client.get("/api/processes")  # the console's own data
                assert status == 200, body
            finally:
                await own.acall(lambda b: b.start_node(1))

            async def back() -> object:
                status, body = await client.get("/api/groups")
                return status == 200 and group in {g["group_id"] for g in body}

            await wait_for(
                back, bool, timeout=20, interval=0.1, what="the console answering again once Kafka is back"
            )
            for path in paths:
                status, body = await client.get(path)
                assert status == 200, (path, body)
            status, body = await client.post(f"/api/groups/{group}/reset", {"topic": topic, "to": "latest"})
            assert (status, body["offsets"]) == (200, {"0": 3}), body
            assert server.running


def test_lag_history_is_bounded_however_often_it_is_fed() -> None:
    history = LagHistory(keep=60.0, min_interval=2.0, max_points=50)
    summary = GroupSummary(group_id="g", state="STABLE", members=1, topics=["t"], lag=7)
    for i in range(10_000):  # a page polling 100 times a second, for 100 s
        history.add([summary], now=1000.0 + i / 100)
    assert len(history) <= 62  # about two points per min_interval over `keep`, at most
    times = [t for t, _ in history.series("g")]
    assert times[-1] == 1000.0 + 9_999 / 100 and times[0] >= times[-1] - 60.0
    assert all(b - a >= 0 for a, b in itertools.pairwise(times))
    flood = LagHistory(keep=1e9, min_interval=0.0, max_points=50)
    for i in range(1000):
        flood.add([summary], now=float(i))
    assert len(flood) == 50


async def test_close_does_not_wait_for_a_request_stuck_on_kafka(
    broker: ThreadedBroker, http: aiohttp.ClientSession
) -> None:
    server = WebServer(broker.bootstrap_servers, port=0, report_topic=unique("reports"))
    await server.start()
    client = Client(http, server.url)

    async def slow(b: EmbeddedBroker) -> None:
        b.delay_responses(20.0)

    async def fast(b: EmbeddedBroker) -> None:
        b.delay_responses(0.0)

    try:
        await broker.acall(slow)
        stuck = asyncio.create_task(client.get("/api/groups"))
        assert server._runner is not None

        async def in_flight() -> bool:
            return bool(server._runner and server._runner.server and server._runner.server.connections)

        await wait_for(in_flight, bool, timeout=20, interval=0.1, what="the request being handled")
        async with asyncio.timeout(server_module.SHUTDOWN_TIMEOUT + 3.0):
            await server.close()
        with contextlib.suppress(aiohttp.ClientError):
            await stuck  # answered or cut off, but over
        assert stuck.done()
    finally:
        await broker.acall(fast)
        await server.close()


async def test_close_leaves_nothing_running(broker: ThreadedBroker) -> None:
    before = set(asyncio.all_tasks())
    server = WebServer(broker.bootstrap_servers, port=0, report_topic=unique("reports"), sample_interval=0.05)
    await server.start()
    started = set(asyncio.all_tasks()) - before
    assert any("aioshare-web" in t.get_name() for t in started)
    await server.close()
    await server.close()  # idempotent
    assert not [t for t in set(asyncio.all_tasks()) - before if not t.done()]
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url
