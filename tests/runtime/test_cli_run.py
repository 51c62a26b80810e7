"""`aioshare run MODULE:APP [--embedded]`."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from aioshare.admin.share_admin import ShareAdmin
from aioshare.cli.main import build_parser
from aioshare.cli.run import load_app, serve
from aioshare.protocol.errors import ConfigError
from aioshare.runtime import App, ConsumerLike, ConsumerSpec, Message, share_consumer
from tests.kit import wait_until

APP_MODULE = """
import aioshare.runtime as rt
from aioshare.admin.share_admin import ShareAdmin

app = rt.App()

async def start_at_earliest() -> None:
    # Records produced before the group first fetches must not be skipped ("latest").
    async with ShareAdmin(app.bootstrap_servers) as admin:
        await admin.alter_group_config("cli-g", {{"share.auto.offset.reset": "earliest"}})

@app.handler("cli-jobs", group_id="cli-g", on_start=start_at_earliest, dead_letter_topic="cli-jobs.dlq")
async def handle(msg: rt.Message[bytes]) -> None:
    print("handled", msg.value.decode(), flush=True)

def make() -> rt.App:
    return app

not_an_app = 42
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    name = f"cliapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(APP_MODULE.format()))
    (tmp_path / "module_name").write_text(name)
    return tmp_path


def module_of(app_dir: Path) -> str:
    return (app_dir / "module_name").read_text()


def test_load_app_by_attribute_default_and_factory(app_dir: Path) -> None:
    mod = module_of(app_dir)
    app = load_app(f"{mod}:app", str(app_dir))
    assert isinstance(app, App) and [r.name for r in app.routes] == ["handle"]
    assert load_app(mod, str(app_dir)) is app
    assert load_app(f"{mod}:make", str(app_dir)) is app
    with pytest.raises(ConfigError, match="not an aioshare App"):
        load_app(f"{mod}:not_an_app", str(app_dir))
    with pytest.raises(ConfigError, match="no attribute"):
        load_app(f"{mod}:missing", str(app_dir))
    with pytest.raises(ImportError):
        load_app("no_such_module_here:app", str(app_dir))


def test_run_is_a_subcommand() -> None:
    args = build_parser().parse_args(["run", "svc:app", "--embedded", "--partitions", "3", "--no-uvloop"])
    assert (args.command, args.app, args.embedded, args.partitions, args.no_uvloop) == (
        "run",
        "svc:app",
        True,
        3,
        True,
    )


async def test_embedded_serve_creates_the_routes_topics() -> None:
    specs: list[ConsumerSpec] = []

    def factory(spec: ConsumerSpec) -> ConsumerLike:
        specs.append(spec)
        return share_consumer(spec)

    app = App(consumer_factory=factory, reports=False)
    ready_with: list[str] = []
    handled: list[tuple[str, int, bytes]] = []

    async def start_at_earliest() -> None:
        # The records below may be produced before the group first fetches ("latest" skips them).
        async with ShareAdmin(app.bootstrap_servers) as admin:
            await admin.alter_group_config("g", {"share.auto.offset.reset": "earliest"})

    @app.handler("a", "b", group_id="g", dead_letter_topic="a.dlq", on_start=start_at_earliest)
    async def handle(msg: Message[bytes]) -> None:
        handled.append((msg.topic, msg.partition, msg.value))

    task = asyncio.create_task(
        serve(app, embedded=True, partitions=2, handle_signals=False, on_ready=ready_with.append)
    )
    try:
        await wait_until(lambda: ready_with, timeout=15)
        servers = ready_with[0]
        assert app.bootstrap_servers == servers and [s.bootstrap_servers for s in specs] == [servers]
        member = app.runners[0].members[0]
        assert member.member_epoch is not None and member.member_epoch > 0  # joined on the embedded broker
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        probe = AIOKafkaConsumer(bootstrap_servers=servers)
        await probe.start()
        try:
            assert {"a", "b", "a.dlq"} <= await probe.topics()
        finally:
            await probe.stop()
        producer = AIOKafkaProducer(bootstrap_servers=servers)
        await producer.start()
        try:
            assert await producer.partitions_for("a") == {0, 1} == await producer.partitions_for("b")
            for topic, partition in (("a", 0), ("a", 1), ("b", 1)):
                await producer.send_and_wait(topic, f"{topic}{partition}".encode(), partition=partition)
        finally:
            await producer.stop()
        await wait_until(lambda: len(handled) == 3, timeout=15)
        assert sorted(handled) == [("a", 0, b"a0"), ("a", 1, b"a1"), ("b", 1, b"b1")]
    finally:
        app.request_stop()
        await asyncio.wait_for(task, 15)
    assert not app.running and app.failure is None


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
async def test_aioshare_run_embedded_end_to_end(app_dir: Path, loop: str) -> None:
    """The real command: start, consume what is produced, stop on SIGTERM with status 0."""
    from aiokafka import AIOKafkaProducer

    argv = [sys.executable, "-m", "aioshare.cli.main", "run", f"{module_of(app_dir)}:app", "--embedded"]
    argv += ["--app-dir", str(app_dir), "--log-level", "WARNING"]
    if loop == "asyncio":
        argv.append("--no-uvloop")
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**os.environ}
    )
    lines: list[str] = []

    async def read_until(pattern: str) -> re.Match[str]:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            while True:
                for line in lines:
                    found = re.search(pattern, line)
                    if found:
                        return found
                raw = await proc.stdout.readline()
                if not raw:
                    raise AssertionError(f"aioshare run exited early: {''.join(lines)}")
                lines.append(raw.decode())

    try:
        address = (await read_until(r"embedded broker listening on (\S+)")).group(1)
        await read_until(r"aioshare run: serving handle \(cli-jobs\)")
        producer = AIOKafkaProducer(bootstrap_servers=address)
        await producer.start()
        try:
            for i in range(3):
                await producer.send_and_wait("cli-jobs", f"v{i}".encode())
        finally:
            await producer.stop()
        for i in range(3):
            await read_until(f"handled v{i}")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0, "".join(lines)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
