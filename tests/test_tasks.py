"""TaskOwner: background tasks in one anyio task group that close() ends for good."""

from __future__ import annotations

import asyncio

import pytest

from aioshare._tasks import TaskOwner


def owned_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("aioshare-") and not t.done()]


async def test_close_cancels_every_child_and_returns_only_when_they_have_finished() -> None:
    errors: list[tuple[str, Exception]] = []
    owner = TaskOwner("test", lambda name, exc: errors.append((name, exc)))
    await owner.start()
    started = asyncio.Event()
    cleaned: list[str] = []

    async def forever(tag: str) -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            cleaned.append(tag)

    owner.spawn(lambda: forever("a"), "a")
    owner.spawn(lambda: forever("b"), "b")
    await asyncio.wait_for(started.wait(), 5)
    assert {t.get_name() for t in owned_tasks()} >= {"aioshare-a", "aioshare-b", "aioshare-test"}
    await owner.close()
    assert sorted(cleaned) == ["a", "b"]
    assert owned_tasks() == []
    assert errors == []


async def test_a_child_that_raises_is_reported_once_and_its_siblings_keep_running() -> None:
    errors: list[tuple[str, Exception]] = []
    owner = TaskOwner("test", lambda name, exc: errors.append((name, exc)))
    await owner.start()
    boom = ValueError("boom")
    sibling_alive = asyncio.Event()
    release = asyncio.Event()

    async def fails() -> None:
        raise boom

    async def sibling() -> None:
        sibling_alive.set()
        await release.wait()

    failing = owner.spawn(fails, "failing")
    other = owner.spawn(sibling, "sibling")
    await asyncio.wait_for(failing.wait(), 5)
    assert errors == [("failing", boom)]
    await asyncio.wait_for(sibling_alive.wait(), 5)
    assert not other.done
    release.set()
    await asyncio.wait_for(other.wait(), 5)
    assert other.done and errors == [("failing", boom)]
    await owner.close()


async def test_one_child_can_be_cancelled_or_awaited_on_its_own() -> None:
    owner = TaskOwner("test", lambda name, exc: None)
    await owner.start()
    finish = asyncio.Event()

    async def waits() -> None:
        await finish.wait()

    a = owner.spawn(waits, "fetch-1")
    b = owner.spawn(waits, "fetch-2")
    c = owner.spawn(waits, "placement")
    c.cancel()
    await asyncio.wait_for(c.wait(), 5)
    assert c.done and not a.done and not b.done
    assert {x.name for x in owner.running("fetch-")} == {"fetch-1", "fetch-2"}
    finish.set()
    for child in owner.running("fetch-"):
        await asyncio.wait_for(child.wait(), 5)
    assert owner.running() == []
    await owner.close()


async def test_close_from_another_task_than_start() -> None:
    owner = TaskOwner("test", lambda name, exc: None)
    await owner.start()
    owner.spawn(lambda: asyncio.Event().wait(), "idle")
    await asyncio.create_task(owner.close())
    assert owned_tasks() == []


async def test_spawn_outside_start_and_close_is_refused() -> None:
    owner = TaskOwner("test", lambda name, exc: None)
    with pytest.raises(RuntimeError, match="outside start"):
        owner.spawn(lambda: asyncio.sleep(0), "early")
    await owner.start()
    with pytest.raises(RuntimeError, match="twice"):
        await owner.start()
    await owner.close()
    with pytest.raises(RuntimeError, match="outside start"):
        owner.spawn(lambda: asyncio.sleep(0), "late")
    await owner.close()  # closing twice is harmless


async def test_close_without_start_does_nothing() -> None:
    owner = TaskOwner("test", lambda name, exc: None)
    await owner.close()
    assert owned_tasks() == []
