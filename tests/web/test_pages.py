"""The console's pages in headless Chromium, against the embedded broker with a running App:
every page renders without a console error, the numbers shown equal ShareAdmin's, a stale
process is marked, and an admin action goes round trip (refused with Kafka's reason while the
group has members, done once it is empty).  Screenshots are kept under $AIOSHARE_TEST_ARTIFACTS
(default: the tests' tmp dir), in web/.

Chromium is Debian's (/usr/bin/chromium, or $AIOSHARE_CHROMIUM), driven with playwright's
Python package; `make test` installs it under CI.  Missing, these tests skip - and fail under CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio

import aioshare
from aioshare.admin import ShareAdmin
from aioshare.runtime.report import ErrorReport, HeldPartition, ProcessReport, RouteReport, encode_report
from aioshare.testing.broker import ThreadedBroker
from aioshare.web import dlq as dlq_module
from aioshare.web.cluster import GroupSummary
from aioshare.web.server import WebServer
from tests.kit import wait_for

from ._web import crashed_process_report, publish_report, running_app, unique

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHROMIUM = os.environ.get("AIOSHARE_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling Google's services.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1366, "height": 900}  # a laptop screen


def require_browser() -> None:
    problem = None
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        problem = "the playwright package is missing (pip install -e '.[test]')"
    if problem is None and not os.access(CHROMIUM, os.X_OK):
        problem = f"no Chromium at {CHROMIUM} (apt-get install -y --no-install-recommends chromium)"
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run: {problem}", pytrace=False)
        pytest.skip(f"browser tests skipped: {problem}")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = os.environ.get("AIOSHARE_TEST_ARTIFACTS")
    path = (Path(base) if base else tmp_path_factory.mktemp("artifacts")) / "web"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        started = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield started
        finally:
            await started.close()


class Console:
    def __init__(self, server: WebServer, reports: str) -> None:
        self.server = server
        self.reports = reports


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console(broker: ThreadedBroker) -> AsyncIterator[Console]:
    reports = unique("reports")
    await broker.create_topic(reports, 1)
    async with WebServer(broker.bootstrap_servers, port=0, report_topic=reports) as server:
        yield Console(server, reports)


class Page:
    """A browser page that records console errors and uncaught exceptions."""

    def __init__(self, page: Any, base: str, artifacts: Path) -> None:
        self.page = page
        self.base = base
        self.artifacts = artifacts
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    async def open(self, path: str, ready: str) -> None:
        await self.page.goto(self.base + path)
        await self.page.wait_for_selector(ready, timeout=15_000)

    async def shot(self, name: str) -> None:
        await self.page.screenshot(path=str(self.artifacts / f"{name}.png"), full_page=True)

    def unexpected_errors(self, *allowed: str) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in allowed)]


@contextlib.asynccontextmanager
async def page_on(browser: Any, console: Console, artifacts: Path) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=VIEWPORT, locale="en-US")
    try:
        yield Page(await context.new_page(), console.server.url, artifacts)
    finally:
        await context.close()


async def cells(page: Any, table: str, column: str) -> list[str]:
    return [t.strip() for t in await page.locator(f"#{table} td[data-col={column}]").all_inner_texts()]


def number(text: str) -> int | None:
    return None if text == "\u2013" else int(text.replace(",", ""))


async def test_every_page_renders_and_shows_share_admins_numbers(
    broker: ThreadedBroker, console: Console, browser: Any, artifacts: Path
) -> None:
    topic, group = unique("orders"), unique("order-workers")
    dlq = f"{topic}.dlq"
    await broker.create_topic(topic, 2)
    await broker.create_topic(dlq, 1)
    await broker.produce(topic, [b"o-1", b"o-2", b"fail-3", b"hold-4"], partition=0)
    await broker.produce(topic, [b"o-5", b"hold-6", b"o-7"], partition=1)
    gate = asyncio.Event()
    async with (
        running_app(
            broker.bootstrap_servers, topic, group, console.reports, gate, dlq, open_gate_at_stop=False
        ),
        page_on(browser, console, artifacts) as p,
        ShareAdmin(broker.bootstrap_servers) as admin,
    ):
        await p.open(f"/groups/{group}", "#partitions")

        async def settled() -> bool:
            # The app's report of its 2 held records, and the dead-lettered record, are in.
            await p.page.reload()
            await p.page.wait_for_selector("#partitions")
            held = [number(t) for t in await cells(p.page, "partitions", "held")]
            return held == [1, 1] and await p.page.locator("#errors").count() == 1

        await wait_for(
            settled,
            bool,
            timeout=20,
            interval=0.1,
            what="the group page showing the app's held records and its error",
        )
        offsets = await admin.describe_share_group_offsets(group)
        ends = await admin.list_offsets(topic, "latest")
        described = (await admin.describe_share_groups([group]))[group]
        assert not isinstance(described, Exception)
        page = p.page
        assert [number(t) for t in await cells(page, "partitions", "start")] == [
            i.start_offset for i in offsets.values()
        ]
        assert [number(t) for t in await cells(page, "partitions", "log-end")] == [ends[0], ends[1]]
        assert [number(t) for t in await cells(page, "partitions", "lag")] == [
            ends[tp.partition] - i.start_offset for tp, i in offsets.items()
        ]
        assert await cells(page, "members", "client") == [m.client_id for m in described.members]
        assert await page.locator("h1 .badge").inner_text() == "STABLE"
        assert await page.locator("#reset-form").count() == 1
        await p.shot("web-group-live")

        await p.open("/", "#groups")
        await page.wait_for_selector(f"#groups a:text-is('{group}')")
        await p.shot("web-dashboard-live")
        await p.open("/groups", f"#groups a:text-is('{group}')")
        row = page.locator("#groups tr", has=page.locator(f"a:text-is('{group}')"))
        assert await row.locator("td[data-col=state]").inner_text() == "STABLE"
        assert number(await row.locator("td[data-col=members]").inner_text()) == len(described.members)
        lag = sum(ends[tp.partition] - i.start_offset for tp, i in offsets.items())
        assert number(await row.locator("td[data-col=lag]").inner_text()) == lag
        await p.shot("web-groups")
        await p.open("/processes", "#processes")
        await p.shot("web-processes")
        await p.open("/errors", "#errors")
        assert "cannot do fail-3" in await page.locator("#errors").inner_text()
        await p.shot("web-errors")
        await p.open("/topics", "#topics")
        row = page.locator("#topics tr", has=page.locator(f"td:text-is('{topic}')"))
        assert number(await row.locator("td[data-col=records]").inner_text()) == 7
        await p.shot("web-topics")
        await p.open("/dlq", "#dlq-topics")
        await p.open(f"/dlq/{dlq}", "#records")
        assert await cells(page, "records", "original") == [f"{topic}-0@2"]
        assert await cells(page, "records", "reason") == ["exhausted"]
        await p.shot("web-dlq")
        assert p.unexpected_errors() == []


async def test_a_stale_process_is_marked(
    broker: ThreadedBroker, console: Console, browser: Any, artifacts: Path
) -> None:
    ghost = crashed_process_report(unique("ghosts"), "jobs", interval_s=0.2, host="crashed-host")
    await publish_report(broker.bootstrap_servers, console.reports, ghost)
    async with page_on(browser, console, artifacts) as p:
        await p.open("/processes", "#processes")
        row = p.page.locator(
            "#processes tr.stale", has=p.page.locator("td:text-is('crashed-host (pid 4242)')")
        )
        await row.wait_for(timeout=15_000)  # the page refreshes every 5 s; stale 0.6 s after the report
        assert await row.locator("td[data-col=state] .badge").inner_text() == "STALE"
        assert await row.locator("td[data-col=last-seen]").inner_text() != ""
        await p.shot("web-processes-stale")
        assert p.unexpected_errors() == []


async def test_reset_offsets_round_trip_in_the_page(
    broker: ThreadedBroker, console: Console, browser: Any, artifacts: Path
) -> None:
    topic, group = unique("emails"), unique("mailers")
    await broker.create_topic(topic, 2)
    await broker.produce(topic, [b"e-1", b"hold-2", b"e-3"], partition=0)
    await broker.produce(topic, [b"hold-4", b"e-5"], partition=1)
    gate = asyncio.Event()
    async with page_on(browser, console, artifacts) as p, ShareAdmin(broker.bootstrap_servers) as admin:
        page = p.page

        async def reset_to_latest() -> None:
            await page.select_option("#reset-form select[name=to]", "latest")
            await page.click("#reset-form button[type=submit]")
            await page.wait_for_selector("dialog#confirm[open]")
            assert (
                "latest" not in (await page.locator("#confirm-text").inner_text()).split()
            )  # says "log end"
            await page.click("#confirm-ok")

        async with running_app(
            broker.bootstrap_servers,
            topic,
            group,
            console.reports,
            gate,
            f"{topic}.dlq",
            open_gate_at_stop=False,
        ) as (app, recorder):
            await p.open(f"/groups/{group}", "h1 .badge[data-state=STABLE]")

            async def holding() -> bool:
                return len(recorder.kinds("accepted")) == 3 and app.runners[0].held_count == 2

            await wait_for(holding, bool, timeout=20, interval=0.1, what="the app holding hold-2 and hold-4")
            await page.wait_for_selector("#reset-form")
            await reset_to_latest()
            refusal = page.locator("#action-result .alert.error")
            await refusal.wait_for()
            text = await refusal.inner_text()
            assert "NON_EMPTY_GROUP" in text, text
            await p.shot("web-reset-refused")
        # The app left: the group is empty, and the same action goes through.
        # The held records were released at the stop: both partitions still have work.
        assert all(i.lag for i in (await admin.describe_share_group_offsets(group)).values())
        await p.open(f"/groups/{group}", "h1 .badge[data-state=EMPTY]")
        await page.wait_for_selector("#reset-form")
        await reset_to_latest()
        done = page.locator("#action-result .alert.ok")
        await done.wait_for()
        assert "partition 0 → 3" in await done.inner_text() and "partition 1 → 2" in await done.inner_text()
        offsets = await admin.describe_share_group_offsets(group)
        assert [i.start_offset for i in offsets.values()] == [3, 2]
        await p.shot("web-reset-done")
        # Only the refusal's own 409 may show in the console.
        assert p.unexpected_errors("status of 409") == []


# A group id with every character a URL treats specially, and markup; Kafka takes any string.
HOSTILE_GROUP = '<img src=x onerror="window.__xss=1">/50% off?#grüße'
HOSTILE = '<img src=x onerror="window.__xss=2"><script>window.__xss=3</script>'


async def test_values_from_kafka_show_as_text_and_odd_group_ids_work(
    broker: ThreadedBroker, browser: Any, artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group ids, record keys, values and headers, exception messages and host names come from
    Kafka and the apps: every view inserts them as text.  A group id with '/', '%', '?', '#',
    spaces and non-ASCII letters has its page and its admin actions.  A "replay all" that stops
    at its cap says so, and goes on from there."""
    monkeypatch.setattr(dlq_module, "MAX_REPLAY", 2)
    topic, dlq, reports = unique("jobs"), unique("jobs-dlq"), unique("reports")
    group = f"{HOSTILE_GROUP}-{unique('g')}"
    await broker.create_topic(topic, 1)
    await broker.create_topic(dlq, 1)
    await broker.create_topic(reports, 1)
    await broker.produce(topic, [b"x"] * 3)
    dead = [
        ("aioshare.dlq.original.topic", topic.encode()),
        ("aioshare.dlq.reason", HOSTILE.encode()),
        ("aioshare.dlq.exception.class", HOSTILE.encode()),
        ("aioshare.dlq.exception.message", HOSTILE.encode()),
        (HOSTILE, HOSTILE.encode()),
    ]
    await broker.produce(dlq, [HOSTILE.encode()] * 3, key=HOSTILE.encode(), headers=dead)
    ghost = crashed_process_report(group, topic, interval_s=60.0, host=HOSTILE)
    ghost = msgspec.structs.replace(
        ghost, errors=[msgspec.structs.replace(e, message=HOSTILE) for e in ghost.errors]
    )
    await publish_report(broker.bootstrap_servers, reports, ghost)
    async with ShareAdmin(broker.bootstrap_servers) as admin:
        await admin.reset_share_group_offsets(group, topic, to="earliest")
        async with (
            WebServer(broker.bootstrap_servers, port=0, report_topic=reports) as server,
            page_on(browser, Console(server, reports), artifacts) as p,
        ):
            page = p.page
            await p.open("/groups", "#groups")
            await page.get_by_role("link", name=group, exact=True).click()
            await page.wait_for_selector("h1 .badge[data-state=EMPTY]")
            assert (await page.locator("h1").inner_text()).split("\n") == [group, "EMPTY"]
            assert [number(t) for t in await cells(page, "partitions", "start")] == [0]
            # The crashed process's error, in the group's page.
            await page.wait_for_selector("#errors")
            assert HOSTILE in await page.locator("#errors").inner_text()
            await page.select_option("#reset-form select[name=to]", "latest")
            await page.click("#reset-form button[type=submit]")
            await page.click("#confirm-ok")
            await page.locator("#action-result .alert.ok").wait_for()
            offsets = await admin.describe_share_group_offsets(group)
            assert [i.start_offset for i in offsets.values()] == [3]
            await p.shot("web-odd-group")

            await p.open("/processes", "#processes")
            assert await cells(page, "processes", "host") == [f"{HOSTILE} (pid 4242)"]
            await p.open("/errors", "#errors")
            assert HOSTILE in await page.locator("#errors").inner_text()
            await p.open("/", "#groups")
            assert group in await page.locator("#groups").inner_text()

            await p.open(f"/dlq/{dlq}", "#records")
            assert await cells(page, "records", "value") == [HOSTILE] * 3
            assert await cells(page, "records", "reason") == [HOSTILE] * 3
            await page.click("#replay-all")
            await page.click("#confirm-ok")
            capped = page.locator("#replay-capped")
            await capped.wait_for()
            text = await capped.inner_text()
            assert (
                "Replayed 2 records" in text and "limit of 2" in text and "partition 0 from offset 2" in text
            ), text
            await page.click("#replay-continue")
            await page.click("#confirm-ok")
            done = page.locator("#action-result .alert.ok")
            await done.wait_for()
            assert "Replayed 1 record " in await done.inner_text()
            status_values = await page.evaluate(
                "() => [window.__xss, document.querySelectorAll('img[src=x], main script').length]"
            )
            assert status_values == [None, 0]
            assert p.unexpected_errors() == []
        ends = await admin.list_offsets(topic, "latest")
        assert ends[0] == 3 + 3  # the three dead letters replayed once each


def synthetic_history(
    group: str, topic: str, now: float, *, minutes: int = 30, step: float = 10.0
) -> list[Any]:
    """Reports of two processes working `group` for the last `minutes`, one every `step`
    seconds (the last one just now): a steady load with a wave, a burst, and a spell of
    failures - the dashboard's charts as a long-running deployment fills them."""
    out: list[Any] = []
    span = minutes * 60.0
    for n, host in enumerate(["worker-1", "worker-2"]):
        pid = uuid.uuid4().hex
        c = dict.fromkeys(("received", "accepted", "released", "rejected", "dead_lettered", "errors"), 0)
        errors: list[ErrorReport] = []
        t, seq = now - span, 0
        while t <= now:
            k = 1.0 - (now - t) / span  # 0 -> 1 over the window
            rate = 45 + 20 * math.sin(k * 4 * math.pi + n) + (40 if 0.55 < k < 0.65 else 0)
            failing = 0.3 < k < 0.36
            accepted = int(rate * step)
            released = int(rate * step * 0.03)
            rejected = int(step * (2 if failing else 0.1))
            c["accepted"] += accepted
            c["released"] += released
            c["rejected"] += rejected
            c["dead_lettered"] += rejected
            c["errors"] += rejected
            c["received"] += accepted + released + rejected
            if failing and len(errors) < 10:
                errors.append(
                    ErrorReport(
                        at=t,
                        route="charge",
                        reason="handler",
                        topic=topic,
                        partition=n,
                        offset=1000 + seq,
                        delivery_count=3,
                        exception_type="payments.GatewayTimeout",
                        message="the payment gateway did not answer within 10 s",
                    )
                )
            seq += 1
            held = int(12 + 8 * math.sin(k * 6 * math.pi + n))
            route = RouteReport(
                name="charge",
                group_id=group,
                topics=[topic],
                concurrency=16,
                busy=min(16, held),
                held=[HeldPartition(topic=topic, partition=n, records=held)],
                held_records=held,
                delivery_counts={1: c["received"] - c["released"], 2: c["released"], 3: c["rejected"]},
                latency_p50=0.04,
                latency_p90=0.12,
                latency_p99=0.4,
                **c,
            )
            out.append(
                (
                    t,
                    ProcessReport(
                        process_id=pid,
                        seq=seq,
                        host=host,
                        pid=3100 + n,
                        aioshare_version=aioshare.__version__,
                        started_at=now - span - step,
                        sent_at=t,
                        interval_s=step,
                        uptime_s=t - (now - span - step),
                        routes=[route],
                        errors=list(errors),
                    ),
                )
            )
            t += step
    return out


async def test_docs_screenshots_with_history(broker: ThreadedBroker, browser: Any, artifacts: Path) -> None:
    """The docs' dashboard and group screenshots: a running App on a group whose last half hour
    of reports (two synthetic processes, written with their own timestamps) and lag are in the
    topic and the lag history, so the charts show what a long-running console shows."""
    from aiokafka import AIOKafkaProducer

    topic, group, reports = unique("payments"), unique("payment-workers"), unique("reports")
    await broker.create_topic(topic, 2)
    await broker.create_topic(f"{topic}.dlq", 1)
    await broker.create_topic(reports, 1)  # CreateTime: the synthetic reports keep their times
    await broker.produce(topic, [b"p-1", b"p-2", b"hold-3", b"hold-4"], partition=0)
    await broker.produce(topic, [b"p-5", b"hold-6"], partition=1)
    now = time.time()
    history = synthetic_history(group, topic, now)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all", linger_ms=5)
    await producer.start()
    try:
        for at, report in history:
            await producer.send(
                reports, encode_report(report), key=report.process_id.encode(), timestamp_ms=int(at * 1000)
            )
        await producer.flush()
    finally:
        await producer.stop()
    server = WebServer(broker.bootstrap_servers, port=0, report_topic=reports)
    for i in range(360):  # the lag sampler's last half hour
        at = now - 1800 + i * 5
        lag = int(300 + 250 * math.sin(i / 360 * 3 * math.pi) ** 2 + (400 if 200 < i < 235 else 0))
        server.lag.add(
            [GroupSummary(group_id=group, state="STABLE", members=3, topics=[topic], lag=lag)], now=at
        )
    gate = asyncio.Event()
    async with (
        server,
        running_app(
            broker.bootstrap_servers, topic, group, reports, gate, f"{topic}.dlq", open_gate_at_stop=False
        ),
        page_on(browser, Console(server, reports), artifacts) as p,
    ):

        async def filled() -> bool:
            await p.page.goto(server.url + f"/groups/{urllib.parse.quote(group, safe='')}")
            await p.page.wait_for_selector("#partitions")
            members = len(await cells(p.page, "members", "client"))
            held = [number(t) for t in await cells(p.page, "partitions", "held")]
            return members == 1 and held is not None and sum(h or 0 for h in held) >= 2 + 24

        await wait_for(
            filled,
            bool,
            timeout=20,
            interval=0.1,
            what="the group page with the App and the synthetic history",
        )
        await p.shot("web-group")
        await p.open("/", "#groups")
        await p.page.wait_for_selector(f"#groups a:text-is('{group}')")
        rates = await p.page.locator("[data-card=accepted] .value").inner_text()
        assert float(rates.replace(",", "")) > 0, rates
        await p.shot("web-dashboard")
        assert p.unexpected_errors() == []
