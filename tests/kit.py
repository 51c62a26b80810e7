"""The one shared test kit: waiting on conditions (never a bare ``sleep``), task-leak checks, and
writing one log batch."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer

__all__ = ["aioshare_tasks", "live_tasks", "produce_one_batch", "wait_for", "wait_until"]

T = TypeVar("T")


async def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.005) -> None:  # noqa: ASYNC109
    """Poll ``predicate()`` until it holds; fail the test after ``timeout`` seconds, naming it."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110 -- polls state owned by the code under test
                await asyncio.sleep(interval)
    except TimeoutError:
        raise AssertionError(f"condition not met within {timeout}s: {predicate}") from None


async def wait_for(
    check: Callable[[], Awaitable[T]],
    until: Callable[[T], object],
    timeout: float = 10.0,  # noqa: ASYNC109
    interval: float = 0.02,
    what: str | None = None,
) -> T:
    """Await ``check()`` until ``until(result)`` holds and return that result (an async poll:
    a broker's state read over the wire or on its thread); fail after ``timeout`` with the last
    result seen, naming ``what`` was awaited.  ``until=bool``: until ``check()`` is truthy."""
    last: Any = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = await check()
                last = result
                if until(result):
                    return result
                await asyncio.sleep(interval)
    except TimeoutError:
        raise AssertionError(
            f"{what or 'condition'} not met within {timeout}s; last seen: {last!r}"
        ) from None


def live_tasks(prefix: str = "aioshare-") -> list[asyncio.Task[Any]]:
    """Unfinished tasks named ``prefix``* other than the caller (aioshare names all of its own)."""
    return [
        t
        for t in asyncio.all_tasks()
        if t.get_name().startswith(prefix) and not t.done() and t is not asyncio.current_task()
    ]


def aioshare_tasks() -> list[asyncio.Task[Any]]:
    """Unfinished tasks whose coroutine is aioshare library code, whatever their name (for
    code that may start tasks without naming them; ``live_tasks`` goes by the name)."""
    found = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if code is not None and f"{os.sep}aioshare{os.sep}" in code.co_filename and not task.done():
            found.append(task)
    return found


async def produce_one_batch(bootstrap: str, topic: str, values: Sequence[bytes]) -> None:
    """Append ``values`` to partition 0 of ``topic`` as exactly one log batch (keys are their
    indexes), for a scenario that counts on a fetch acquiring the whole batch.

    aiokafka's explicit batch is one ProduceRequest batch by construction, where a producer's
    linger only makes one likely: librdkafka, descheduled past its linger on a loaded 2-core CI
    machine, split a five-record scenario (twice in full CI runs, even with a 200 ms linger).
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        batch = producer.create_batch()
        for i, value in enumerate(values):
            appended = batch.append(key=str(i).encode(), value=value, timestamp=None)
            assert appended is not None, f"{len(values)} values do not fit in one batch"
        await (await producer.send_batch(batch, topic, partition=0))
    finally:
        await producer.stop()
