"""`aioshare run MODULE:APP --processes N`: the supervisor and its workers."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import re
import signal
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aioshare.cli.main import build_parser
from aioshare.cli.run import parse_processes
from aioshare.cli.supervisor import RestartPolicy, Supervisor, merge_metrics, worker_argv
from aioshare.runtime.health import http_get
from aioshare.testing.broker import ThreadedBroker
from tests.kit import wait_for

from ._cli import aioshare

FAST = RestartPolicy(initial=0.01, max=0.04, reset_after=60, max_crashes=3, window=60)


# ------------------------------------------------------------------------------ options


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5"])
def test_processes_must_be_a_positive_number_or_auto(value: str) -> None:
    result = aioshare("run", "nosuchmodule:app", "--processes", value, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]  # argparse's usage, then its one error line
    assert (
        last == f"aioshare run: error: argument --processes: expected a number >= 1 or 'auto', got '{value}'"
    )


def test_processes_auto_is_the_cpu_count() -> None:
    assert parse_processes("auto") == (os.cpu_count() or 1)
    assert parse_processes("3") == 3


def test_workers_get_every_option_but_the_supervisors() -> None:
    args = build_parser().parse_args(
        [
            "run",
            "svc:app",
            "--processes",
            "4",
            "--embedded",
            "--partitions",
            "3",
            "--broker-config",
            "a=b",
            "--health-port",
            "8081",
            "--health-host",
            "0.0.0.0",
            "--shutdown-timeout",
            "7.5",
            "--log-format",
            "json",
            "--log-level",
            "debug",
            "--no-uvloop",
            "--join-timeout",
            "3",
            "--app-dir",
            "somewhere",
        ]
    )
    argv = worker_argv(args, "127.0.0.1:1234", health=True, parent=4321)
    assert argv[:5] == [sys.executable, "-m", "aioshare.cli.main", "run", "svc:app"]
    rest = argv[5:]
    for supervisors in ("--processes", "--embedded", "--partitions", "--broker-config", "--web-port"):
        assert supervisors not in rest
    # The worker's own parser reads it back: what the supervisor set, and every other option.
    again = build_parser().parse_args(argv[3:])
    assert (again.app, again.app_dir, again.supervised_by) == ("svc:app", os.path.abspath("somewhere"), 4321)
    assert (again.bootstrap_servers, again.health_port, again.health_host) == (
        "127.0.0.1:1234",
        0,
        "127.0.0.1",
    )
    assert (again.shutdown_timeout, again.log_format, again.log_level) == (7.5, "json", "DEBUG")
    assert (again.join_timeout, again.no_uvloop, again.processes, again.embedded) == (3.0, True, None, False)


def test_merge_metrics_labels_every_worker() -> None:
    one = '# HELP a_total A.\n# TYPE a_total counter\na_total{route="r"} 1.0\n# HELP g G.\n# TYPE g gauge\ng 2.0\n'
    two = '# HELP a_total A.\n# TYPE a_total counter\na_total{route="r"} 5.0\n'
    merged = merge_metrics({"0": one, "1": two}, "worker")
    assert merged.splitlines() == [
        "# HELP a_total A.",
        "# TYPE a_total counter",
        'a_total{worker="0",route="r"} 1.0',
        'a_total{worker="1",route="r"} 5.0',
        "# HELP g G.",
        "# TYPE g gauge",
        'g{worker="0"} 2.0',
    ]


# ------------------------------------------------------------------------------ the supervisor in-process


def script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / f"worker_{uuid.uuid4().hex[:8]}.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


async def test_a_crash_loop_gives_up_with_status_1(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aioshare.cli.supervisor")
    argv = script(tmp_path, "import sys; sys.exit(3)")
    supervisor = Supervisor(lambda _i: argv, 1, policy=FAST)
    assert await asyncio.wait_for(supervisor.run(handle_signals=False), 30) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("started worker 0 (pid ") for m in messages) == 3
    assert sum("exited with status 3" in m for m in messages) == 3
    assert "worker 0 exited 3 times within 60s (last: status 3); giving up" in messages
    assert supervisor.workers[0].restarts == 2


async def test_a_worker_usage_error_gives_up_with_status_2(tmp_path: Path) -> None:
    argv = script(tmp_path, "import sys; sys.exit(2)")
    supervisor = Supervisor(lambda _i: argv, 2, policy=FAST)
    assert await asyncio.wait_for(supervisor.run(handle_signals=False), 30) == 2


async def test_a_crashed_worker_is_restarted_and_the_drain_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "crashed-once"
    argv = script(
        tmp_path,
        f"""
        import os, signal, sys
        if not os.path.exists({str(marker)!r}):
            open({str(marker)!r}, "w").close()
            sys.exit(3)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        print("aioshare run: serving x", flush=True)
        signal.pause()
        """,
    )
    supervisor = Supervisor(lambda _i: argv, 1, policy=FAST, serving_line="all serving")
    task = asyncio.create_task(supervisor.run(handle_signals=False))
    try:
        async with asyncio.timeout(20):
            while not supervisor.workers[0].serving:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        worker = supervisor.workers[0]
        assert worker.restarts == 1 and worker.alive
        pid = worker.pid
        supervisor.request_stop()
        assert await asyncio.wait_for(task, 20) == 0
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    out = capsys.readouterr().out
    assert f"[worker 0 pid {pid}] aioshare run: serving x\n" in out
    assert out.count("all serving\n") == 1
    with pytest.raises(ProcessLookupError):
        os.kill(pid or 0, 0)


async def test_a_worker_that_ignores_sigterm_is_killed_after_the_drain_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    argv = script(
        tmp_path,
        """
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("aioshare run: serving x", flush=True)
        while True:
            signal.pause()
        """,
    )
    supervisor = Supervisor(lambda _i: argv, 1, policy=FAST, drain_timeout=0.5)
    task = asyncio.create_task(supervisor.run(handle_signals=False))
    async with asyncio.timeout(20):
        while not supervisor.workers[0].serving:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    supervisor.request_stop()
    assert await asyncio.wait_for(task, 20) == 1
    assert supervisor.workers[0].last_status == -signal.SIGKILL
    assert any("did not stop in time: SIGKILL" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------ end to end

APP = """
import asyncio, os
import aioshare.runtime as rt
from aioshare.admin.share_admin import ShareAdmin

TOPIC = {topic!r}
app = rt.App(consumer_options={{"fetch_max_wait": 0.1}}, reports=False)

async def configure() -> None:
    async with ShareAdmin(app.bootstrap_servers) as admin:
        await admin.alter_group_config(
            TOPIC + "-g",
            {{"share.auto.offset.reset": "earliest", "share.record.lock.duration.ms": "2000"}},
        )

@app.handler(TOPIC, group_id=TOPIC + "-g", on_start=configure, concurrency=1)
async def handle(msg: rt.Message[bytes]) -> None:
    await asyncio.sleep(0.03)
    print("handled", msg.value.decode(), os.getpid(), flush=True)
"""

HANDLED = re.compile(r"^\[worker (\d+) pid (\d+)\] handled (v\d+) (\d+)$")


class Output:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def read_until(self, pattern: str, timeout: float = 60, start: int = 0) -> re.Match[str]:  # noqa: ASYNC109
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            seen = start
            while True:
                for line in self.lines[seen:]:
                    found = re.search(pattern, line)
                    if found:
                        return found
                seen = max(seen, len(self.lines))
                raw = await self.proc.stdout.readline()
                if not raw:
                    raise AssertionError(f"exited before {pattern!r}:\n{''.join(self.lines)}")
                self.lines.append(raw.decode())

    def handled(self) -> dict[str, set[int]]:
        """value -> the pids that handled it."""
        out: dict[str, set[int]] = collections.defaultdict(set)
        for line in self.lines:
            found = HANDLED.match(line.rstrip("\n"))
            if found:
                out[found.group(3)].add(int(found.group(4)))
        return out

    async def until_handled(self, values: set[str], timeout: float = 60) -> None:  # noqa: ASYNC109
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while not values <= set(self.handled()):
                raw = await self.proc.stdout.readline()
                if not raw:
                    raise AssertionError("".join(self.lines))
                self.lines.append(raw.decode())


@pytest.fixture
async def supervisor_proc(tmp_path: Path, broker: ThreadedBroker) -> AsyncIterator[tuple[Output, str]]:
    topic = await broker.create_topic(partitions=2)
    name = f"procapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(APP.format(topic=topic)))
    argv = [sys.executable, "-m", "aioshare.cli.main", "run", f"{name}:app", "--app-dir", str(tmp_path)]
    argv += [
        "-b",
        broker.bootstrap_servers,
        "--processes",
        "2",
        "--health-port",
        "0",
        "--shutdown-timeout",
        "5",
    ]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        yield Output(proc), topic
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_two_workers_share_the_work_survive_a_sigkill_and_drain_on_sigterm(
    supervisor_proc: tuple[Output, str], broker: ThreadedBroker
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    out, topic = supervisor_proc
    port = int((await out.read_until(r"^aioshare health listening on http://127\.0\.0\.1:(\d+)$")).group(1))
    await out.read_until(rf"^aioshare run: serving handle \({topic}\) on .* with 2 processes$")
    pids = {
        int(m.group(2)) for m in map(re.compile(r"started worker (\d) \(pid (\d+)\)").search, out.lines) if m
    }
    assert len(pids) == 2

    ready = await http_get("127.0.0.1", port, "/readyz")
    assert ready.status == 200, ready.body
    assert {w["pid"] for w in json.loads(ready.body)["workers"]} == pids
    assert (await http_get("127.0.0.1", port, "/livez")).status == 200

    # 1. Both workers consume.
    first = [f"v{i}" for i in range(40)]
    await broker.produce(topic, first[::2], partition=0)
    await broker.produce(topic, first[1::2], partition=1)
    await out.until_handled(set(first))
    by_pid = collections.Counter(pid for pids_ in out.handled().values() for pid in pids_)
    assert set(by_pid) == pids and min(by_pid.values()) > 0, by_pid

    async def accepted_by_worker() -> dict[str, float]:
        metrics = (await http_get("127.0.0.1", port, "/metrics")).text()
        return {
            s.labels["worker"]: s.value
            for f in text_string_to_metric_families(metrics)
            for s in f.samples
            if s.name == "aioshare_records_accepted_total"
        }

    # Handled is not yet accepted: records-accepted-total counts the broker's confirmations.
    accepted = await wait_for(
        accepted_by_worker, lambda a: sum(a.values()) >= 40, timeout=20, what="40 accepted"
    )
    assert set(accepted) == {"0", "1"}, accepted

    # 2. SIGKILL a worker while records flow: it is restarted and no record is lost.
    victim = int((await out.read_until(r"started worker 0 \(pid (\d+)\)")).group(1))
    second = [f"v{i}" for i in range(40, 100)]
    mark = len(out.lines)
    await broker.produce(topic, second[::2], partition=0)
    await broker.produce(topic, second[1::2], partition=1)
    await out.read_until(rf"^\[worker 0 pid {victim}\] handled", start=mark)
    os.kill(victim, signal.SIGKILL)
    restarted = await out.read_until(r"started worker 0 \(pid (\d+)\)", start=mark)
    assert int(restarted.group(1)) != victim
    await out.read_until(r"worker 0 \(pid \d+\) exited with signal SIGKILL", start=mark)
    await out.until_handled(set(first) | set(second))
    await out.read_until(rf"^\[worker 0 pid {restarted.group(1)}\] aioshare run: serving", start=mark)
    ready = await http_get("127.0.0.1", port, "/readyz")
    restarts = (await http_get("127.0.0.1", port, "/metrics")).text()
    assert 'aioshare_supervisor_restarts_total{worker="0"} 1.0' in restarts

    # 3. SIGTERM drains both workers; the supervisor exits 0.
    alive = {int(w["pid"]) for w in json.loads(ready.body)["workers"] if w["pid"]}
    out.proc.send_signal(signal.SIGTERM)
    assert out.proc.stdout is not None
    rest = await asyncio.wait_for(out.proc.stdout.read(), 60)
    out.lines.extend(rest.decode().splitlines(True))
    assert await asyncio.wait_for(out.proc.wait(), 10) == 0, "".join(out.lines)
    assert "all workers drained" in rest.decode()
    for pid in alive:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
