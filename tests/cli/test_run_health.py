"""`aioshare run --health-port`, and the serving line that waits for the join."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from aioshare.cli.main import build_parser
from aioshare.cli.run import serve
from aioshare.cli.supervisor import worker_argv
from aioshare.runtime import App, ConsumerSpec, Message
from aioshare.runtime.health import HttpResponse, all_members_joined, http_get
from aioshare.testing.broker import ThreadedBroker

from ._cli import aioshare, assert_one_line_error, dead_address

if TYPE_CHECKING:
    from aioshare.broker.embedded import EmbeddedBroker

APP = """
import asyncio
import os
import aioshare.runtime as rt
from aioshare.admin.share_admin import ShareAdmin

TOPIC = {topic!r}
FAIL_AFTER_BLOCK = os.environ.get("HEALTH_TEST_FAIL") == "1"
app = rt.App(shutdown_timeout=5, consumer_options={{"fetch_max_wait": 0.1}}, reports=False)


class FailingConsumer:
    # Delegates to the real consumer; fails (as a consumer that cannot go on) once a
    # handler is blocked, so that the app is seen failed while it still drains.
    def __init__(self, spec):
        self.inner = rt.share_consumer(spec)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    @property
    def member_epoch(self):
        return self.inner.member_epoch

    async def start(self):
        await self.inner.start()

    async def getmany(self, max_records=None, timeout=None):
        if FAIL_AFTER_BLOCK and BLOCKED.is_set():
            raise RuntimeError("injected consumer failure")
        return await self.inner.getmany(max_records=max_records, timeout=timeout)

    async def commit(self, timeout=None):
        return await self.inner.commit(timeout=timeout)

    async def close(self, timeout=30.0):
        return await self.inner.close(timeout=timeout)


app.consumer_factory = FailingConsumer
BLOCKED = asyncio.Event()


async def earliest() -> None:
    async with ShareAdmin(app.bootstrap_servers) as admin:
        await admin.alter_group_config(TOPIC + "-g", {{"share.auto.offset.reset": "earliest"}})


@app.handler(TOPIC, group_id=TOPIC + "-g", on_start=earliest, concurrency=2)
async def handle(msg: rt.Message[bytes]) -> None:
    if msg.value == b"block":
        BLOCKED.set()
        await asyncio.Event().wait()  # until cancelled
    print("handled", msg.value.decode(), flush=True)
"""


class Run:
    """`aioshare run` in a subprocess, its stdout+stderr read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def read_until(self, pattern: str, timeout: float = 30) -> re.Match[str]:  # noqa: ASYNC109
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    found = re.search(pattern, line)
                    if found:
                        return found
                seen = len(self.lines)
                raw = await self.proc.stdout.readline()
                if not raw:
                    raise AssertionError(f"exited before {pattern!r}: {self.output}")
                self.lines.append(raw.decode())

    @property
    def output(self) -> str:
        return "".join(self.lines)

    async def drain(self) -> None:
        assert self.proc.stdout is not None
        self.lines.extend(line.decode() for line in (await self.proc.stdout.read()).splitlines(True))


async def start_run(app_dir: Path, module: str, *args: str, env: dict[str, str] | None = None) -> Run:
    argv = [sys.executable, "-m", "aioshare.cli.main", "run", f"{module}:app", "--app-dir", str(app_dir)]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    return Run(proc)


@pytest.fixture
async def running() -> AsyncIterator[list[Run]]:
    runs: list[Run] = []
    yield runs
    for run in runs:
        if run.proc.returncode is None:
            run.proc.kill()
            await run.proc.wait()


def write_app(tmp_path: Path, topic: str) -> str:
    name = f"healthapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(APP.format(topic=topic)))
    return name


async def eventually(
    get: Callable[[], Any],
    predicate: Callable[[HttpResponse], bool],
    timeout: float = 20,  # noqa: ASYNC109
) -> HttpResponse:
    async with asyncio.timeout(timeout):
        while True:
            try:
                response: HttpResponse = await get()
            except OSError:
                response = HttpResponse(0)
            if predicate(response):
                return response
            await asyncio.sleep(0.05)


async def test_no_broker_not_ready_no_serving_line_and_sigterm_stops_the_start(
    tmp_path: Path, running: list[Run]
) -> None:
    module = write_app(tmp_path, "nowhere")
    run = await start_run(tmp_path, module, "-b", dead_address(), "--health-port", "0", "--no-uvloop")
    running.append(run)
    port = int((await run.read_until(r"aioshare health listening on http://127\.0\.0\.1:(\d+)")).group(1))
    live = await http_get("127.0.0.1", port, "/livez")
    ready = await http_get("127.0.0.1", port, "/readyz")
    assert live.status == 200, live.body
    assert ready.status == 503 and json.loads(ready.body)["reason"] == "the app is starting"
    run.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(run.proc.wait(), 15) == 0
    await run.drain()
    assert "aioshare run: serving" not in run.output, run.output


async def test_ready_after_join_and_metrics_count_the_records(
    tmp_path: Path, running: list[Run], broker: ThreadedBroker
) -> None:
    topic = await broker.create_topic()
    module = write_app(tmp_path, topic)
    run = await start_run(tmp_path, module, "-b", broker.bootstrap_servers, "--health-port", "0")
    running.append(run)
    port = int((await run.read_until(r"aioshare health listening on http://127\.0\.0\.1:(\d+)")).group(1))
    await run.read_until(rf"aioshare run: serving handle \({topic}\) on ")
    ready = await http_get("127.0.0.1", port, "/readyz")
    assert ready.status == 200, ready.body
    assert json.loads(ready.body)["routes"][0]["members"][0]["member_epoch"] > 0
    await broker.produce(topic, [b"v0", b"v1", b"v2"])
    for i in range(3):
        await run.read_until(f"handled v{i}")
    sample = f'aioshare_records_accepted_total{{route="handle",topic="{topic}"}} 3.0'
    metrics = await eventually(lambda: http_get("127.0.0.1", port, "/metrics"), lambda r: sample in r.text())
    assert metrics.status == 200 and "# TYPE aioshare_records_accepted_total counter" in metrics.text()
    run.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(run.proc.wait(), 20) == 0, run.output


async def test_livez_503_after_a_fatal_failure(
    tmp_path: Path, running: list[Run], broker: ThreadedBroker
) -> None:
    topic = await broker.create_topic()
    module = write_app(tmp_path, topic)
    run = await start_run(
        tmp_path, module, "-b", broker.bootstrap_servers, "--health-port", "0", env={"HEALTH_TEST_FAIL": "1"}
    )
    running.append(run)
    port = int((await run.read_until(r"aioshare health listening on http://127\.0\.0\.1:(\d+)")).group(1))
    await run.read_until("aioshare run: serving")
    assert (await http_get("127.0.0.1", port, "/livez")).status == 200
    await broker.produce(topic, [b"block"])
    # The blocked handler keeps the failed app draining for its 5 s shutdown timeout.
    live = await eventually(
        lambda: http_get("127.0.0.1", port, "/livez"), lambda r: r.status == 503, timeout=15
    )
    body = json.loads(live.body)
    assert body["status"] == "failed" and "injected consumer failure" in body["reason"], body
    assert await asyncio.wait_for(run.proc.wait(), 30) == 1
    await run.drain()
    assert "the app stopped on an error: RuntimeError('injected consumer failure')" in run.output


class NeverJoins:
    """A consumer that connects and fetches nothing, and has not joined until told."""

    def __init__(self, spec: ConsumerSpec) -> None:
        self.member_epoch = 0
        self.closed = asyncio.Event()

    async def start(self) -> None:
        pass

    async def getmany(self, max_records: int | None = None, timeout: float | None = None) -> list[Any]:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                await self.closed.wait()
        except TimeoutError:
            pass
        return []

    async def commit(self, timeout: float | None = None) -> dict[Any, Any]:  # noqa: ASYNC109
        return {}

    async def close(self, timeout: float = 30.0) -> dict[Any, Any]:  # noqa: ASYNC109
        self.closed.set()
        return {}


async def test_serving_is_announced_once_joined_with_a_warning_meanwhile(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    consumers: list[NeverJoins] = []

    def factory(spec: ConsumerSpec) -> NeverJoins:
        consumers.append(NeverJoins(spec))
        return consumers[-1]

    app = App("kafka-a:9092,kafka-b:9092", consumer_factory=factory, reports=False)

    @app.handler("jobs", group_id="g", consumers=2)
    async def handle(msg: Message[bytes]) -> None:
        pass

    ready: list[str] = []
    caplog.set_level(logging.WARNING, logger="aioshare.cli.run")
    task = asyncio.create_task(serve(app, handle_signals=False, on_ready=ready.append, join_timeout=0.2))
    try:
        async with asyncio.timeout(10):
            while not any("have not joined" in r.getMessage() for r in caplog.records):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        warning = next(r for r in caplog.records if "have not joined" in r.getMessage())
        assert warning.levelno == logging.WARNING
        assert "kafka-a:9092,kafka-b:9092" in warning.getMessage() and "still trying" in warning.getMessage()
        assert ready == [] and "aioshare run: serving" not in capsys.readouterr().out
        assert app.running and not task.done()  # the warning does not stop anything
        consumers[0].member_epoch = 1
        assert not all_members_joined(app)  # one member of two joined: not announced
        assert ready == []
        consumers[1].member_epoch = 1
        async with asyncio.timeout(10):
            while not ready:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert ready == ["kafka-a:9092,kafka-b:9092"]
        out = capsys.readouterr().out
        assert out.count("aioshare run: serving handle (jobs) on kafka-a:9092,kafka-b:9092") == 1
    finally:
        app.request_stop()
        await asyncio.wait_for(task, 10)
    assert sum("have not joined" in r.getMessage() for r in caplog.records) == 1


# ------------------------------------------------------------------ --health-heartbeat-timeout

SHARE_GROUP_HEARTBEAT = 76  # the API key


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--health-port", "0", "--health-heartbeat-timeout", "0"],
            "a finite number of seconds > 0, got 0.0",
        ),
        (["--health-port", "0", "--health-heartbeat-timeout=-1"], "a finite number of seconds > 0, got -1.0"),
        (
            ["--health-port", "0", "--health-heartbeat-timeout", "nan", "--processes", "2"],
            "a finite number of seconds > 0, got nan",
        ),
        (
            ["--health-port", "0", "--health-heartbeat-timeout", "inf"],
            "a finite number of seconds > 0, got inf",
        ),
        (["--health-heartbeat-timeout", "30"], "--health-heartbeat-timeout needs --health-port"),
    ],
    ids=["zero", "negative", "nan-supervised", "inf", "no-health-port"],
)
def test_a_bad_health_heartbeat_timeout_is_a_usage_error(
    tmp_path: Path, args: list[str], message: str
) -> None:
    module = write_app(tmp_path, "jobs")
    result = aioshare("run", f"{module}:app", "--app-dir", str(tmp_path), "-b", dead_address(), *args)
    assert_one_line_error(result, 2, "aioshare run: error: --health-heartbeat-timeout ", message)
    assert "aioshare health listening" not in result.stdout and "started worker" not in result.stderr


async def test_the_health_heartbeat_timeout_reaches_the_readiness_probe(
    tmp_path: Path, running: list[Run], broker: ThreadedBroker
) -> None:
    """Heartbeats answered 3 s late: not ready with a 0.5 s bound (3 of the test broker's
    0.2 s intervals are 0.6 s), where the default 15 s would stay ready."""
    topic = await broker.create_topic()
    module = write_app(tmp_path, topic)
    run = await start_run(
        tmp_path,
        module,
        "-b",
        broker.bootstrap_servers,
        "--health-port",
        "0",
        "--health-heartbeat-timeout",
        "0.5",
    )
    running.append(run)
    port = int((await run.read_until(r"aioshare health listening on http://127\.0\.0\.1:(\d+)")).group(1))
    await run.read_until("aioshare run: serving")

    async def readyz() -> HttpResponse:
        return await http_get("127.0.0.1", port, "/readyz")

    await eventually(readyz, lambda r: r.status == 200)

    async def delay(seconds: float) -> None:
        async def apply(embedded: EmbeddedBroker) -> None:
            embedded.delay_responses(seconds, api_keys=[SHARE_GROUP_HEARTBEAT])

        await broker.acall(apply)

    await delay(3.0)
    try:
        silent = await eventually(readyz, lambda r: r.status == 503, timeout=10)
    finally:
        await delay(0)
    reason = json.loads(silent.body)["reason"]
    assert re.fullmatch(
        rf"route 'handle' group '{topic}-g' member 0: no heartbeat answered for \d+\.\d s \(.+\)", reason
    ), reason
    await eventually(readyz, lambda r: r.status == 200)
    run.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(run.proc.wait(), 20) == 0, run.output


def test_the_supervisor_passes_the_health_heartbeat_timeout_to_its_workers() -> None:
    args = build_parser().parse_args(
        ["run", "m:app", "--processes", "2", "--health-port", "8081", "--health-heartbeat-timeout", "30"]
    )
    argv = worker_argv(args, None, True, 4242)
    at = argv.index("--health-heartbeat-timeout")
    assert float(argv[at + 1]) == 30.0
    assert argv[argv.index("--health-port") + 1] == "0"  # the workers' own, on free ports
    default = worker_argv(build_parser().parse_args(["run", "m:app", "--processes", "2"]), None, False, 4242)
    assert "--health-heartbeat-timeout" not in default
