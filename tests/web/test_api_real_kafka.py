"""The console's JSON API against the embedded broker and real Apache Kafka (every tested version):
its numbers equal ShareAdmin's with a running App, the App's reports reach it (on real Kafka,
where topics are not auto-created, the App's publisher creates the report topic), an admin
action goes round trip - refused with Kafka's own reason while the group has members -, configs
and deletions, group ids that need escaping in a URL, and dead letters browsed and replayed.

What real Kafka (4.2.2 and 4.4.0) answers, as these tests pin it:

* While the App holds records, the start offset Kafka reports may trail what it accepted (the
  console shows Kafka's number, as ShareAdmin does); the lag figures follow from it.
* A reset, an offsets deletion or a group deletion while the group has members: NON_EMPTY_GROUP
  (409 here), "The group is not empty." (the group deletion: "The group still has members.").
* A config Kafka does not know, or a value out of its bounds: INVALID_CONFIG (400) with Kafka's
  message ("Unknown group config name: ...", "Invalid value -5 for configuration ...").
* A config change is answered before the broker applies it (from the metadata log): a describe
  right after may show the old value; the console waits for it (``applied`` in the answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import yarl

from aioshare.web.server import WebServer
from tests.kit import wait_for

from ._web import running_app, unique
from .conftest import Cluster

# Enough for a real Kafka's share-group join, with room for a slow CI machine.
WITHIN = 30.0


class Client:
    """aiohttp against one console; paths are sent as written (already percent-encoded)."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    def url(self, path: str) -> yarl.URL:
        return yarl.URL(self.base + path, encoded=True)

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.url(path)) as r:
            return r.status, await r.json(content_type=None)

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.session.post(self.url(path), json=body) as r:
            return r.status, await r.json(content_type=None)


@contextlib.asynccontextmanager
async def console(cluster: Cluster, report_topic: str) -> AsyncIterator[WebServer]:
    async with WebServer(
        cluster.bootstrap_servers, port=0, report_topic=report_topic, request_timeout=10.0
    ) as server:
        yield server


def quoted(group_id: str) -> str:
    """The path segment of a group id, as the pages build it (encodeURIComponent)."""
    return urllib.parse.quote(group_id, safe="-_.!~*'()")


async def kafkas_view(cluster: Cluster, group: str, topic: str) -> dict[str, Any]:
    """What ShareAdmin says of `group` on `topic`, in the API's terms."""
    admin = cluster.admin
    offsets = await admin.describe_share_group_offsets(group)
    starts = await admin.list_offsets(topic, "earliest")
    ends = await admin.list_offsets(topic, "latest")
    return {
        (tp.topic, tp.partition): {
            "start_offset": info.start_offset,
            "log_start": starts[tp.partition],
            "log_end": ends[tp.partition],
            "lag": max(0, ends[tp.partition] - info.start_offset),
            "broker_lag": None if info.lag < 0 else info.lag,
        }
        for tp, info in offsets.items()
    }


def apis_view(detail: dict[str, Any]) -> dict[str, Any]:
    keys = ("start_offset", "log_start", "log_end", "lag", "broker_lag")
    return {(p["topic"], p["partition"]): {k: p[k] for k in keys} for p in detail["partitions"]}


async def test_a_running_app_as_share_admin_sees_it_and_a_reset_round_trip(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    topic, group, reports = unique("jobs"), unique("workers"), unique("reports")
    await cluster.create_topic(topic, 2)
    await cluster.produce(topic, [b"a0", b"a1", b"a2", b"hold-0"], partition=0)
    await cluster.produce(topic, [b"b0", b"hold-1", b"b2"], partition=1)
    assert reports not in {t.name for t in await cluster.admin.list_topics()}
    gate = asyncio.Event()
    cluster.forget_later(reports, groups=[group])
    async with running_app(cluster.bootstrap_servers, topic, group, reports, gate) as (_app, recorder):
        await recorder.wait_for(5, timeout=WITHIN)  # the 5 accepted; 2 held in their handlers

        # No auto-creation on real Kafka: the App's report publisher made the topic.
        async def report_topic() -> bool:
            return reports in {t.name for t in await cluster.admin.list_topics()}

        await wait_for(report_topic, bool, timeout=WITHIN, interval=0.1, what=f"the App creating {reports}")
        async with console(cluster, reports) as server:
            client = Client(http, server.url)
            path = f"/api/groups/{quoted(group)}"

            async def held() -> Any:
                status, body = await client.get(path)
                assert status == 200, body
                return body if body["held"] == 2 else None

            body = await wait_for(
                held, bool, timeout=WITHIN, interval=0.1, what="the App's report of its 2 held records"
            )

            # Kafka's figures settle once the acknowledgements are in: then the API says the same.
            async def same() -> Any:
                status, answer = await client.get(path)
                assert status == 200, answer
                theirs = await kafkas_view(cluster, group, topic)
                return answer if apis_view(answer["group"]) == theirs else None

            body = await wait_for(
                same, bool, timeout=WITHIN, interval=0.1, what="the API's offsets equal to ShareAdmin's"
            )
            detail = body["group"]
            assert len(detail["partitions"]) == 2
            assert all(p["log_end"] == e for p, e in zip(detail["partitions"], [4, 3], strict=True))
            assert all(p["held"] == 1 for p in detail["partitions"])  # one "hold" record each
            assert detail["lag"] == sum(p["lag"] for p in detail["partitions"])
            assert body["delivery_counts"] == {"1": 7}

            described = (await cluster.admin.describe_share_groups([group]))[group]
            assert not isinstance(described, Exception)
            assert detail["state"] == described.state.upper() == "STABLE"
            assert (detail["group_epoch"], detail["assignment_epoch"], detail["assignor"]) == (
                described.group_epoch,
                described.assignment_epoch,
                described.assignor,
            )
            assert [
                (m["member_id"], m["client_id"], m["host"], m["assignment"]) for m in detail["members"]
            ] == [
                (m.member_id, m.client_id, m.host, {t: list(ps) for t, ps in sorted(m.assignment.items())})
                for m in described.members
            ]
            configs = await cluster.admin.describe_group_config(group)
            assert {c["name"]: c["value"] for c in detail["configs"]} == {
                c.name: c.value for c in configs.values() if c.name.startswith("share.")
            }
            shown = {c["name"]: c for c in detail["configs"]}
            assert shown["share.auto.offset.reset"]["value"] == "earliest"
            assert not shown["share.auto.offset.reset"]["is_default"]

            status, groups = await client.get("/api/groups")
            assert status == 200, groups
            mine = next(g for g in groups if g["group_id"] == group)
            assert mine == {
                "group_id": group,
                "state": "STABLE",
                "members": len(described.members),
                "topics": [topic],
                "lag": mine["lag"],
                "error": None,
            }
            assert mine["lag"] == sum(v["lag"] for v in (await kafkas_view(cluster, group, topic)).values())

            status, topics = await client.get("/api/topics")
            assert status == 200, topics
            listed = {t.name: t.partitions for t in await cluster.admin.list_topics()}
            assert {t["name"]: len(t["partitions"]) for t in topics} == listed
            row = next(t for t in topics if t["name"] == topic)
            assert row["records"] == 7
            assert [(p["log_start"], p["log_end"]) for p in row["partitions"]] == [(0, 4), (0, 3)]

            status, procs = await client.get("/api/processes")
            [proc] = procs["processes"]
            assert not proc["stale"] and not proc["stopped"]
            assert [r["group_id"] for r in proc["report"]["routes"]] == [group]
            assert [p["process_id"] for p in body["processes"]] == [proc["process_id"]]

            # Kafka refuses while the group has members, with its own error.
            for action, payload, message in [
                ("reset", {"topic": topic, "to": "latest"}, "The group is not empty."),
                ("delete-offsets", {"topics": [topic]}, "The group is not empty."),
                ("delete", {}, "The group still has members."),
            ]:
                status, answer = await client.post(f"{path}/{action}", payload)
                assert (status, answer["code"]) == (409, "NON_EMPTY_GROUP"), (action, answer)
                assert answer["error"].startswith(
                    f"group {group!r}: NON_EMPTY_GROUP (68): {message} Hint: the share group still has members"
                ), (action, answer)

    # The App left: the group is empty and the reset goes through.
    async with console(cluster, reports) as server:
        client = Client(http, server.url)

        async def empty() -> bool:
            status, answer = await client.get(path)
            return status == 200 and answer["group"]["state"] == "EMPTY"

        await wait_for(
            empty, bool, timeout=WITHIN, interval=0.1, what="the group empty after the App stopped"
        )
        status, answer = await client.post(f"{path}/reset", {"topic": topic, "to": "latest"})
        assert status == 200, answer
        assert (answer["offsets"], answer["errors"]) == ({"0": 4, "1": 3}, {})
        offsets = await cluster.admin.describe_share_group_offsets(group)
        assert [i.start_offset for i in offsets.values()] == [4, 3]
        status, answer = await client.get(path)
        assert [(p["start_offset"], p["lag"]) for p in answer["group"]["partitions"]] == [(4, 0), (3, 0)]
        status, answer = await client.post(f"{path}/reset", {"topic": topic, "to": "2000-01-01T00:00:00Z"})
        assert (status, answer["offsets"]) == (200, {"0": 0, "1": 0}), answer
        assert [
            i.start_offset for i in (await cluster.admin.describe_share_group_offsets(group)).values()
        ] == [
            0,
            0,
        ]
        # The stopped App's last report says so.
        status, procs = await client.get("/api/processes")
        assert [p["stopped"] for p in procs["processes"]] == [True]


async def test_configs_delete_offsets_and_delete_group(cluster: Cluster, http: aiohttp.ClientSession) -> None:
    topic, group = unique("jobs"), unique("workers")
    await cluster.create_topic(topic, 1)
    await cluster.produce(topic, [b"x"] * 4)
    cluster.forget_later(groups=[group])
    admin = cluster.admin
    await admin.reset_share_group_offsets(group, topic, to="earliest")  # an empty share group
    async with console(cluster, unique("reports")) as server:
        client = Client(http, server.url)
        path = f"/api/groups/{group}"
        status, body = await client.post(
            f"{path}/config", {"set": {"share.record.lock.duration.ms": "15000"}}
        )
        assert (status, body["applied"]) == (200, True), body
        assert (await admin.describe_group_config(group))["share.record.lock.duration.ms"].value == "15000"
        status, detail = await client.get(path)
        shown = {c["name"]: c for c in detail["group"]["configs"]}
        assert shown["share.record.lock.duration.ms"]["value"] == "15000"
        assert not shown["share.record.lock.duration.ms"]["is_default"]
        assert detail["group"]["state"] == "EMPTY" and detail["group"]["members"] == []
        assert [(p["start_offset"], p["log_end"], p["lag"]) for p in detail["group"]["partitions"]] == [
            (0, 4, 4)
        ]

        status, body = await client.post(f"{path}/config", {"set": {"share.no.such.config": "1"}})
        assert (status, body["code"]) == (400, "INVALID_CONFIG"), body
        assert body["error"].endswith(
            "INVALID_CONFIG (40): Unknown group config name: share.no.such.config"
        ), body
        status, body = await client.post(f"{path}/config", {"set": {"share.record.lock.duration.ms": "-5"}})
        assert (status, body["code"]) == (400, "INVALID_CONFIG"), body
        assert body["error"].endswith(
            "Invalid value -5 for configuration share.record.lock.duration.ms: Value must be at least 1000"
        ), body
        status, body = await client.post(f"{path}/config", {"delete": ["share.record.lock.duration.ms"]})
        assert (status, body["applied"]) == (200, True), body
        assert (await admin.describe_group_config(group))["share.record.lock.duration.ms"].is_default

        status, body = await client.post(f"{path}/reset", {"topic": unique("missing"), "to": "latest"})
        assert (status, body["code"]) == (404, "UNKNOWN_TOPIC_OR_PARTITION"), body
        status, body = await client.post(
            f"/api/groups/{unique('nobody')}/reset", {"topic": topic, "to": "latest"}
        )
        assert (status, body["code"]) == (404, "GROUP_ID_NOT_FOUND"), body
        status, body = await client.get(f"/api/groups/{unique('nobody')}")
        assert (status, body["code"]) == (404, "GROUP_ID_NOT_FOUND"), body

        status, body = await client.post(f"{path}/delete-offsets", {"topics": [topic]})
        assert (status, body["deleted"], body["errors"]) == (200, [topic], {}), body
        assert await admin.describe_share_group_offsets(group) == {}
        status, detail = await client.get(path)
        assert detail["group"]["partitions"] == [] and detail["group"]["lag"] is None
        status, body = await client.post(f"{path}/delete", {})
        assert status == 200, body
        status, body = await client.get(path)
        assert (status, body["code"]) == (404, "GROUP_ID_NOT_FOUND"), body
        status, groups = await client.get("/api/groups")
        assert group not in {g["group_id"] for g in groups}


GROUP_IDS = ["team/a", "50%off", "what?now", "a#b", "with space", "grüße ✓", "a+b&c=d", "%2F", "x/../y"]


async def test_group_ids_that_need_escaping_in_a_url(cluster: Cluster, http: aiohttp.ClientSession) -> None:
    topic = await cluster.create_topic(unique("jobs"), 1)
    await cluster.produce(topic, [b"x"] * 3)
    suffix = unique("")
    ids = [f"{g}{suffix}" for g in GROUP_IDS]
    cluster.forget_later(groups=ids)
    for group in ids:
        await cluster.admin.reset_share_group_offsets(group, topic, to="earliest")
    async with console(cluster, unique("reports")) as server:
        client = Client(http, server.url)
        status, groups = await client.get("/api/groups")
        assert set(ids) <= {g["group_id"] for g in groups}
        for group in ids:
            path = f"/api/groups/{quoted(group)}"
            status, body = await client.get(path)
            assert status == 200, (group, body)
            assert body["group"]["group_id"] == group
            assert [p["start_offset"] for p in body["group"]["partitions"]] == [0]
            status, body = await client.post(f"{path}/reset", {"topic": topic, "to": "latest"})
            assert (status, body["group_id"], body["offsets"]) == (200, group, {"0": 3}), (group, body)
            async with http.get(client.url(f"/groups/{quoted(group)}")) as r:
                assert r.status == 200 and r.content_type == "text/html", group
        for group in ids:
            offsets = await cluster.admin.describe_share_group_offsets(group)
            assert [i.start_offset for i in offsets.values()] == [3], group


async def test_dead_letters_browse_and_replay(cluster: Cluster, http: aiohttp.ClientSession) -> None:
    topic, group, reports = unique("jobs"), unique("workers"), unique("reports")
    dlq = f"{topic}.dlq"
    await cluster.create_topic(topic, 1)
    await cluster.create_topic(dlq, 1)
    await cluster.produce(topic, [b"ok-0", b"fail-1", b"ok-2", b"fail-3"], headers=[("trace", b"t-1")])
    gate = asyncio.Event()
    cluster.forget_later(reports, groups=[group])
    async with running_app(cluster.bootstrap_servers, topic, group, reports, gate, dlq=dlq) as (
        _app,
        recorder,
    ):
        await recorder.wait_for(4, timeout=WITHIN)

        async def report_topic() -> bool:
            return reports in {t.name for t in await cluster.admin.list_topics()}

        await wait_for(report_topic, bool, timeout=WITHIN, interval=0.1, what=f"the App creating {reports}")
        async with console(cluster, reports) as server:
            client = Client(http, server.url)

            # The App's handler errors reach the console through its reports.
            async def errors() -> Any:
                status, body = await client.get(f"/api/errors?group={urllib.parse.quote(group)}")
                assert status == 200, body
                return sorted((e["topic"], e["offset"]) for e in body["errors"])

            found = await wait_for(
                errors, bool, timeout=WITHIN, interval=0.1, what="the App's errors in the console"
            )
            assert found == [(topic, 1), (topic, 3)]
    async with console(cluster, reports) as server:
        client = Client(http, server.url)
        status, body = await client.get(f"/api/dlq/{dlq}")
        assert status == 200, body
        page = body["page"]
        assert [r["value"]["text"] for r in page["records"]] == ["fail-1", "fail-3"]
        first = page["records"][0]
        assert (first["dlq"]["original.topic"], first["dlq"]["original.offset"]) == (topic, "1")
        assert first["dlq"]["reason"] == "exhausted"
        assert first["dlq"]["exception.class"] == "builtins.ValueError"
        assert first["headers"] == [["trace", "t-1"]]  # the user's headers, not aioshare's
        assert page["partitions"] == [{"partition": 0, "log_start": 0, "log_end": 2}]
        assert page["next_offset"] == {"0": 2}
        status, body = await client.get(f"/api/dlq/{dlq}?partition=0&offset=1&limit=1")
        assert [r["offset"] for r in body["page"]["records"]] == [1]

        status, body = await client.post(f"/api/dlq/{dlq}/replay", {"partition": 0, "offset": 1})
        assert (status, body["replayed"], body["targets"]) == (200, 1, {topic: 1}), body
        status, body = await client.post(f"/api/dlq/{dlq}/replay", {"all": True})
        assert (status, body["replayed"], body["targets"], body["capped"]) == (200, 2, {topic: 2}, False), (
            body
        )
        status, body = await client.get(f"/api/dlq/{topic}?offset=4")
        replayed = body["page"]["records"]
        assert [r["value"]["text"] for r in replayed] == ["fail-3", "fail-1", "fail-3"]
        assert all(r["dlq"] == {} and r["headers"] == [["trace", "t-1"]] for r in replayed)
        status, body = await client.post(f"/api/dlq/{topic}/replay", {"partition": 0, "offset": 0})
        assert (status, body["code"]) == (422, "NOT_A_DEAD_LETTER"), body
        status, body = await client.post(f"/api/dlq/{dlq}/replay", {"partition": 0, "offset": 99})
        assert (status, body["code"]) == (404, "UNKNOWN_TOPIC_OR_PARTITION"), body
        status, body = await client.get(f"/api/dlq/{unique('missing')}")
        assert (status, body["code"]) == (404, "UNKNOWN_TOPIC_OR_PARTITION"), body
