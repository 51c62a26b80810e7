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
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import aioshare
from aioshare.admin import ShareAdmin
from aioshare.testing import prepare
from aioshare.testing.broker import ThreadedBroker
from aioshare.web.server import WebServer

try:
    from ._web import crashed_process_report, publish_report, unique, wait_for
except ImportError:  # tests/web without an __init__.py: its directory is on sys.path
    from _web import crashed_process_report, publish_report, unique, wait_for  # type: ignore[no-redef]

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


@contextlib.asynccontextmanager
async def running_app(
    broker: ThreadedBroker, topic: str, group: str, reports: str, gate: asyncio.Event, dlq: str
) -> AsyncIterator[aioshare.App]:
    app = aioshare.App(
        broker.bootstrap_servers,
        shutdown_timeout=5.0,
        close_timeout=5.0,
        consumer_options={"fetch_max_wait": 0.1},
        report_topic=reports,
        report_interval=0.3,
    )

    # Held records stay held until the stop, which gives up on them after 0.5 s: released.
    @app.handler(
        topic,
        group_id=group,
        concurrency=8,
        max_attempts=1,
        retry=None,
        dead_letter_topic=dlq,
        shutdown_timeout=0.5,
    )
    async def handle(msg: aioshare.Message[bytes]) -> None:
        if msg.value.startswith(b"fail"):
            raise ValueError(f"cannot do {msg.value.decode()}")
        if msg.value.startswith(b"hold"):
            await gate.wait()

    await prepare(app, create_topics=False)
    await app.start()
    try:
        yield app
    finally:
        await app.stop(5.0)


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
        running_app(broker, topic, group, console.reports, gate, dlq),
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

        await wait_for(settled, what="the group page showing the app's held records and its error")
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
        await p.shot("web-group")

        await p.open("/", "#groups")
        await page.wait_for_selector(f"#groups a:text-is('{group}')")
        await p.shot("web-dashboard")
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

        async with running_app(broker, topic, group, console.reports, gate, f"{topic}.dlq"):
            await p.open(f"/groups/{group}", "h1 .badge[data-state=STABLE]")

            async def holding() -> bool:
                offsets = await admin.describe_share_group_offsets(group)
                return [i.start_offset for i in offsets.values()] == [1, 0]

            await wait_for(holding, what="the app holding hold-2 and hold-4")
            await page.wait_for_selector("#reset-form")
            await reset_to_latest()
            refusal = page.locator("#action-result .alert.error")
            await refusal.wait_for()
            text = await refusal.inner_text()
            assert "NON_EMPTY_GROUP" in text, text
            await p.shot("web-reset-refused")
        # The app left: the group is empty, and the same action goes through.
        # The held records were released at the stop: they pin the start offsets.
        assert [i.start_offset for i in (await admin.describe_share_group_offsets(group)).values()] == [1, 0]
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
