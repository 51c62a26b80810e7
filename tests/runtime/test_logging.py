"""Record failures reach the log: handler exceptions, dead letters, rejects, lock expiries."""

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from aioshare.cli.main import build_parser
from aioshare.runtime import EventKind, Message, Reject
from aioshare.runtime.logs import RECORDS_LOGGER, JsonFormatter, LogRateLimiter, Verdict
from aioshare.testing import ThreadedBroker
from tests.kit import wait_until

from .kit import AppFactory, Ready, Recorder, settled_at_broker, without_renew_support


def record_lines(caplog: pytest.LogCaptureFixture, event: str | None = None) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == RECORDS_LOGGER and (event is None or getattr(r, "event", None) == event)
    ]


def coords(r: logging.LogRecord) -> tuple[Any, ...]:
    return tuple(
        getattr(r, k) for k in ("route", "group_id", "topic", "partition", "offset", "delivery_count")
    )


async def test_handler_exception_is_logged_with_traceback_on_the_last_attempt_only(
    kafka: ThreadedBroker,
    kafka_app: AppFactory,
    ready: Ready,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aioshare")
    app = kafka_app()

    @app.handler("jobs", group_id="g", retry=None, max_attempts=3, dead_letter_topic="jobs.dlq")
    async def handle(msg: Message[bytes]) -> None:
        if msg.value != b"fine":  # offset 0 succeeds: the failing record is offset 1
            raise ValueError(f"downstream said no to {msg.value!r}")

    await ready(app)
    await kafka.produce("jobs", [b"fine", b"x"], partition=0)
    async with app:
        await wait_until(lambda: recorder.kinds(EventKind.DEAD_LETTERED), timeout=10)
        await settled_at_broker(kafka, "g", "jobs", 2)
    assert recorder.outcome_counts() == {"accepted": 1, "released": 2, "dead_lettered": 1}
    failures = record_lines(caplog, "handler_failure")
    assert [coords(r) for r in failures] == [("handle", "g", "jobs", 0, 1, n) for n in (1, 2, 3)]
    for r in failures:
        assert r.levelno == logging.WARNING
        assert r.error_type == "ValueError" and r.error == "downstream said no to b'x'"  # type: ignore[attr-defined]
        assert "ValueError: downstream said no to b'x'" in r.getMessage()
        assert "route 'handle'" in r.getMessage() and "jobs[0]@1" in r.getMessage()
        assert "group 'g'" in r.getMessage() and f"delivery {r.delivery_count}" in r.getMessage()  # type: ignore[attr-defined]
    # The traceback only when the record is given up, not on the attempts that are retried.
    assert [r.exc_info is not None for r in failures] == [False, False, True]
    assert [r.final_attempt for r in failures] == [False, False, True]  # type: ignore[attr-defined]
    assert failures[2].exc_info is not None and failures[2].exc_info[0] is ValueError
    (dead,) = record_lines(caplog, "dead_lettered")
    assert dead.levelno == logging.WARNING
    assert coords(dead) == ("handle", "g", "jobs", 0, 1, 3)
    assert dead.dead_letter_topic == "jobs.dlq" and dead.reason == "exhausted"  # type: ignore[attr-defined]
    assert "dead-lettered to 'jobs.dlq'" in dead.getMessage()


async def test_rejected_records_are_logged(
    kafka: ThreadedBroker,
    kafka_app: AppFactory,
    ready: Ready,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aioshare")
    app = kafka_app()

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        raise Reject("bad order")

    @app.handler("other", group_id="g2", on_error="reject")
    async def failing(msg: Message[bytes]) -> None:
        raise KeyError("missing")

    await ready(app)
    await kafka.produce("jobs", [b"x"], partition=0)
    await kafka.produce("other", [b"y"], partition=0)
    async with app:
        await settled_at_broker(kafka, "g", "jobs", 1)
        await settled_at_broker(kafka, "g2", "other", 1)
    assert recorder.outcome_counts() == {"rejected": 2}
    rejected = {r.route: r for r in record_lines(caplog, "rejected")}  # type: ignore[attr-defined]
    assert coords(rejected["handle"]) == ("handle", "g", "jobs", 0, 0, 1)
    assert rejected["handle"].reason == "bad order"  # type: ignore[attr-defined]
    assert "rejected" in rejected["handle"].getMessage() and "bad order" in rejected["handle"].getMessage()
    assert coords(rejected["failing"]) == ("failing", "g2", "other", 0, 0, 1)
    assert rejected["failing"].error_type == "KeyError"  # type: ignore[attr-defined]
    # on_error="reject": the one failure is the final attempt, so it has the traceback.
    (failure,) = record_lines(caplog, "handler_failure")
    assert failure.route == "failing" and failure.exc_info is not None  # type: ignore[attr-defined]


class Order(msgspec.Struct):
    id: int


async def test_undecodable_record_is_logged(
    kafka: ThreadedBroker,
    kafka_app: AppFactory,
    ready: Ready,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aioshare")
    app = kafka_app()

    @app.handler("jobs", group_id="g", value_type=Order, dead_letter_topic="jobs.dlq")
    async def handle(msg: Message[Order]) -> None:
        msg.value  # noqa: B018 -- decoding fails

    await ready(app)
    await kafka.produce("jobs", [b'{"id": 7}', b"not json"], partition=0)
    async with app:
        await settled_at_broker(kafka, "g", "jobs", 2)
    assert recorder.outcome_counts() == {"accepted": 1, "dead_lettered": 1}
    (dead,) = record_lines(caplog, "dead_lettered")
    assert coords(dead) == ("handle", "g", "jobs", 0, 1, 1)
    assert dead.reason == "undecodable" and dead.dead_letter_topic == "jobs.dlq"  # type: ignore[attr-defined]
    assert dead.getMessage().startswith("route 'handle': undecodable record jobs[0]@1 dead-lettered")
    assert dead.error_type == "DeserializationError"  # type: ignore[attr-defined]


async def test_lock_lost_while_the_handler_runs_is_logged_once(
    kafka: ThreadedBroker,
    kafka_app: AppFactory,
    ready: Ready,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aioshare")
    app = kafka_app()
    go_on = asyncio.Event()

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        if msg.delivery_count == 1:
            await go_on.wait()

    await ready(app, lock_ms=1000)
    await without_renew_support(kafka)  # nothing can keep the 1 s lock: it runs out under the handler
    await kafka.produce("jobs", [b"slow"], partition=0)
    async with app:
        await wait_until(lambda: record_lines(caplog, "lock_expired"), timeout=5)
        go_on.set()
        # The record comes back and is handled: its first delivery's loss was logged once.
        await settled_at_broker(kafka, "g", "jobs", 1)
    assert recorder.terminal() == {
        ("jobs", 0, 0, 1): EventKind.LOCK_EXPIRED,
        ("jobs", 0, 0, 2): EventKind.ACCEPTED,
    }
    (lost,) = record_lines(caplog, "lock_expired")
    assert lost.levelno == logging.WARNING
    assert coords(lost) == ("handle", "g", "jobs", 0, 0, 1)
    assert lost.state == "running"  # type: ignore[attr-defined]
    assert "lost while its handler ran" in lost.getMessage()


async def test_a_poison_flood_is_rate_limited_per_route(
    kafka: ThreadedBroker,
    kafka_app: AppFactory,
    ready: Ready,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aioshare")
    app = kafka_app()

    @app.handler("jobs", group_id="g", max_attempts=1)
    async def handle(msg: Message[bytes]) -> None:
        raise ValueError("poison")

    await ready(app)
    await kafka.produce("jobs", [b"p"] * 25, partition=0)
    async with app:
        await settled_at_broker(kafka, "g", "jobs", 25)
        await wait_until(lambda: recorder.outcome_counts() == {"rejected": 25})
        # Within the 10 s window: no summary yet; the stop sums up what was held back.
        assert [r for r in record_lines(caplog) if getattr(r, "suppressed", 0)] == []
    assert len(record_lines(caplog, "handler_failure")) == 10
    assert len(record_lines(caplog, "rejected")) == 10
    summaries = {r.getMessage() for r in record_lines(caplog) if getattr(r, "suppressed", 0)}
    assert summaries == {
        "route 'handle': suppressed 15 similar handler failure lines in the last 10 s",
        "route 'handle': suppressed 15 similar rejected lines in the last 10 s",
    }


async def test_nothing_is_logged_for_records_that_succeed(
    kafka: ThreadedBroker,
    kafka_app: AppFactory,
    ready: Ready,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="aioshare")
    app = kafka_app()

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        pass

    await ready(app)
    await kafka.produce("jobs", [b"a", b"b"], partition=0)
    async with app:
        await settled_at_broker(kafka, "g", "jobs", 2)
    assert recorder.outcome_counts() == {"accepted": 2}
    assert record_lines(caplog) == []


# ---------------------------------------------------------------- the rate limiter


def test_rate_limiter_lets_n_lines_through_per_window_then_sums_up_the_rest() -> None:
    limiter = LogRateLimiter(limit=3, interval=10.0)
    now = 100.0
    assert [limiter.check("a", now + i) for i in range(3)] == [Verdict(True)] * 3
    assert limiter.check("a", 103.0) == Verdict(False, flush_at=110.0)  # first held back: flush then
    assert limiter.check("a", 104.0) == Verdict(False)
    assert limiter.check("b", 104.0) == Verdict(True)  # keys are independent
    assert limiter.flush(109.9) == []  # the window is still open
    # The next line after the window reports what was held back, then passes.
    assert limiter.check("a", 110.0) == Verdict(True, summary=2)
    assert limiter.check("a", 111.0) == Verdict(True)


def test_rate_limiter_flush_reports_ended_windows_once() -> None:
    limiter = LogRateLimiter(limit=1, interval=5.0)
    assert limiter.check("a", 0.0).emit
    assert limiter.check("a", 1.0) == Verdict(False, flush_at=5.0)
    assert limiter.check("a", 2.0) == Verdict(False)
    assert limiter.flush(5.0) == [("a", 2)]
    assert limiter.flush(6.0) == []
    assert limiter.check("a", 6.0) == Verdict(True)  # a fresh window, nothing left to report
    limiter.check("a", 7.0)
    assert limiter.flush(8.0) == []
    assert limiter.flush(8.0, all_windows=True) == [("a", 1)]  # at shutdown, open windows too
    with pytest.raises(ValueError):
        LogRateLimiter(limit=0)


def test_json_formatter_has_the_extra_fields_as_keys() -> None:
    logger = logging.getLogger("aioshare.test-json")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logger.makeRecord(
            logger.name,
            logging.WARNING,
            __file__,
            1,
            "failed on %s@%d",
            ("jobs", 7),
            sys.exc_info(),
            extra={"topic": "jobs", "offset": 7, "error": ValueError("x")},
        )
    out = json.loads(JsonFormatter().format(record))
    assert out["level"] == "WARNING" and out["logger"] == "aioshare.test-json"
    assert out["message"] == "failed on jobs@7" and (out["topic"], out["offset"]) == ("jobs", 7)
    assert out["error"] == "x" and "ValueError: boom" in out["exception"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", out["timestamp"])


def test_run_log_options() -> None:
    args = build_parser().parse_args(["run", "svc:app", "--log-level", "debug", "--log-format", "json"])
    assert (args.log_level, args.log_format) == ("DEBUG", "json")
    args = build_parser().parse_args(["run", "svc:app"])
    assert (args.log_level, args.log_format) == ("INFO", "text")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "svc:app", "--log-level", "LOUD"])


# ---------------------------------------------------------------- aioshare run --log-format json

FAILING_APP = """
import aioshare.runtime as rt
from aioshare.admin.share_admin import ShareAdmin

app = rt.App()

async def start_at_earliest() -> None:
    async with ShareAdmin(app.bootstrap_servers) as admin:
        await admin.alter_group_config("log-g", {"share.auto.offset.reset": "earliest"})

@app.handler("log-jobs", group_id="log-g", on_start=start_at_earliest, max_attempts=1,
             dead_letter_topic="log-jobs.dlq")
async def handle(msg: rt.Message[bytes]) -> None:
    if msg.value == b"bad":
        raise ValueError("bad payload")
"""


async def test_aioshare_run_json_logs(tmp_path: Path) -> None:
    from aiokafka import AIOKafkaProducer

    name = f"logapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(FAILING_APP))
    argv = [sys.executable, "-m", "aioshare.cli.main", "run", f"{name}:app", "--embedded"]
    argv += ["--app-dir", str(tmp_path), "--log-format", "json", "--log-level", "INFO"]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**os.environ}
    )
    lines: list[str] = []
    logs: list[dict[str, Any]] = []

    async def read_until(found: Callable[[], object]) -> Any:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            while not (result := found()):
                raw = await proc.stdout.readline()
                if not raw:
                    raise AssertionError(f"aioshare run exited early: {''.join(lines)}")
                line = raw.decode()
                lines.append(line)
                if not line.startswith("aioshare run: "):  # the announcements scripts wait for
                    logs.append(json.loads(line))  # every other line is one JSON object
            return result

    def announced(pattern: str) -> re.Match[str] | None:
        return next((m for line in lines if (m := re.search(pattern, line))), None)

    def logged(event: str) -> dict[str, Any] | None:
        return next((entry for entry in logs if entry.get("event") == event), None)

    try:
        address = (await read_until(lambda: announced(r"embedded broker listening on (\S+)"))).group(1)
        await read_until(lambda: announced(r"aioshare run: serving handle"))
        producer = AIOKafkaProducer(bootstrap_servers=address)
        await producer.start()
        try:
            await producer.send_and_wait("log-jobs", b"good")
            await producer.send_and_wait("log-jobs", b"bad")
        finally:
            await producer.stop()
        failure = await read_until(lambda: logged("handler_failure"))
        dead = await read_until(lambda: logged("dead_lettered"))
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0, "".join(lines)
        assert proc.stdout is not None
        for raw in (await proc.stdout.read()).decode().splitlines(keepends=True):
            lines.append(raw)
            if not raw.startswith("aioshare run: "):
                logs.append(json.loads(raw))
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert failure["level"] == "WARNING" and failure["logger"] == RECORDS_LOGGER
    assert (failure["topic"], failure["partition"], failure["offset"]) == ("log-jobs", 0, 1)
    assert (failure["route"], failure["group_id"], failure["delivery_count"]) == ("handle", "log-g", 1)
    assert failure["error_type"] == "ValueError" and failure["error"] == "bad payload"
    assert "ValueError: bad payload" in failure["exception"]  # the final attempt: with traceback
    assert {"timestamp", "message"} <= failure.keys()
    assert (dead["offset"], dead["dead_letter_topic"]) == (1, "log-jobs.dlq")
    assert all({"timestamp", "level", "logger", "message"} <= entry.keys() for entry in logs)
