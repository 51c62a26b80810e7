"""Helpers of the web console's tests: unique names, waiting on a condition, the App the tests
watch, hand-made process reports (a crashed process), and a small JSON client."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

import aioshare
from aioshare.runtime.report import (
    ErrorReport,
    HeldPartition,
    ProcessReport,
    RouteReport,
    encode_report,
)
from aioshare.testing import prepare
from aioshare.testing.recorder import AckRecorder


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def crashed_process_report(
    group_id: str, topic: str, *, interval_s: float = 0.2, host: str = "crashed-host"
) -> ProcessReport:
    """A report of a process that then died without saying so: stale 3 intervals later."""
    now = time.time()
    route = RouteReport(
        name="ghost",
        group_id=group_id,
        topics=[topic],
        concurrency=4,
        busy=1,
        held=[HeldPartition(topic=topic, partition=0, records=2)],
        held_records=2,
        received=7,
        accepted=5,
        errors=1,
    )
    error = ErrorReport(
        at=now - 1,
        route="ghost",
        reason="handler",
        topic=topic,
        partition=0,
        offset=3,
        delivery_count=2,
        exception_type="builtins.ValueError",
        message="bad job 3",
        traceback_head='Traceback (most recent call last):\n  File "jobs.py", line 9\nValueError: bad job 3',
    )
    return ProcessReport(
        process_id=uuid.uuid4().hex,
        seq=1,
        host=host,
        pid=4242,
        aioshare_version="0.1.0",
        started_at=now - 30,
        sent_at=now,
        interval_s=interval_s,
        uptime_s=30,
        routes=[route],
        errors=[error],
    )


async def publish_report(bootstrap: str, topic: str, report: ProcessReport) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, encode_report(report), key=report.process_id.encode())
    finally:
        await producer.stop()


class Client:
    """aiohttp against one console: ``await client.get(path)`` -> (status, json)."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.session.get(self.base + path, **kwargs) as r:
            return r.status, await r.json(content_type=None)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        if body is not None:
            kwargs["json"] = body
        async with self.session.post(self.base + path, **kwargs) as r:
            return r.status, await r.json(content_type=None)


@contextlib.asynccontextmanager
async def running_app(
    bootstrap: str,
    topic: str,
    group: str,
    report_topic: str,
    gate: asyncio.Event,
    dlq: str | None = None,
    *,
    open_gate_at_stop: bool = True,
) -> AsyncIterator[tuple[aioshare.App, AckRecorder]]:
    """An App on `topic` accepting every record but those whose value starts with "hold" (held
    until `gate` is set) and "fail" (dead-lettered to `dlq`); reports every 0.3 s.  At the stop
    the gate opens (the held records are accepted) unless ``open_gate_at_stop`` is False: then
    the stop gives up on them after 0.5 s and releases them."""
    app = aioshare.App(
        bootstrap,
        shutdown_timeout=5.0,
        close_timeout=5.0,
        consumer_options={"fetch_max_wait": 0.1},
        report_topic=report_topic,
        report_interval=0.3,
    )

    @app.handler(
        topic,
        group_id=group,
        concurrency=8,
        max_attempts=1,
        dead_letter_topic=dlq,
        retry=None,
        shutdown_timeout=0.5,
    )
    async def handle(msg: aioshare.Message[bytes]) -> None:
        if msg.value.startswith(b"fail"):
            raise ValueError(f"cannot do {msg.value.decode()}")
        if msg.value.startswith(b"hold"):
            await gate.wait()

    await prepare(app, create_topics=False)  # share.auto.offset.reset=earliest
    recorder = AckRecorder(app)
    await app.start()
    try:
        yield app, recorder
    finally:
        if open_gate_at_stop:
            gate.set()
        await app.stop(5.0)
        recorder.detach()
