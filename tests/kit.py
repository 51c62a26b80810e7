"""The one shared test kit: waiting on conditions (never a bare ``sleep``) and task-leak checks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["live_tasks", "wait_for", "wait_until"]

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
) -> T:
    """Await ``check()`` until ``until(result)`` holds and return that result (an async poll:
    a broker's state read over the wire or on its thread); fail after ``timeout`` with the last."""
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
        raise AssertionError(f"condition not met within {timeout}s; last seen: {last!r}") from None


def live_tasks(prefix: str = "aioshare-") -> list[asyncio.Task[Any]]:
    """Unfinished tasks named ``prefix``* other than the caller (aioshare names all of its own)."""
    return [
        t
        for t in asyncio.all_tasks()
        if t.get_name().startswith(prefix) and not t.done() and t is not asyncio.current_task()
    ]
