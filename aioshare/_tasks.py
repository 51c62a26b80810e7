"""TaskOwner: the background tasks of an object with ``start()`` and ``close()``, in one anyio task group.

An anyio task group must be entered and left by the same task, but a consumer's ``start()``
and ``close()`` are separate calls, often from different tasks.  So the group lives in one
*supervisor* task that ``start()`` creates and ``close()`` awaits: every background task is a
child of that group, ``close()`` cancels what is left and returns only once all of them have
finished, and none can outlive it.

A child that raises does not bring its siblings down (the owner decides what a failure
means: ``on_error`` hears it, once, with the child's name); a child can be cancelled or
awaited on its own (``Child.cancel`` / ``Child.wait``), e.g. to let a fetcher finish its
final request while the others are cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc

__all__ = ["Child", "TaskOwner"]


class Child:
    """One background task of a TaskOwner."""

    __slots__ = ("_done", "name", "scope")

    def __init__(self, name: str) -> None:
        self.name = name
        self.scope = anyio.CancelScope()
        self._done = anyio.Event()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        self.scope.cancel()

    def finished(self) -> None:
        self._done.set()

    async def wait(self) -> None:
        await self._done.wait()


class TaskOwner:
    def __init__(self, name: str, on_error: Callable[[str, Exception], None]) -> None:
        self._name = name
        self._on_error = on_error
        self._group: anyio.abc.TaskGroup | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._children: list[Child] = []
        self._closed = False

    async def start(self) -> None:
        """Create the supervisor and its task group; ``spawn`` works once this returns."""
        if self._supervisor is not None or self._closed:
            raise RuntimeError(f"{self._name}: TaskOwner.start() called twice")
        ready = anyio.Event()
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(ready), name=f"aioshare-{self._name}"
        )
        await ready.wait()

    async def _supervise(self, ready: anyio.Event) -> None:
        async with anyio.create_task_group() as group:
            self._group = group
            ready.set()
            await anyio.sleep_forever()  # until close() cancels the group

    def spawn(self, run: Callable[[], Awaitable[None]], name: str) -> Child:
        """Run ``run()`` as a child of the group, as task ``aioshare-<name>``."""
        if self._group is None or self._closed:
            raise RuntimeError(f"{self._name}: spawn({name!r}) outside start()..close()")
        child = Child(name)
        self._children.append(child)
        self._group.start_soon(self._run, run, child, name=f"aioshare-{name}")
        return child

    def running(self, prefix: str = "") -> list[Child]:
        """The children still running whose name starts with ``prefix``."""
        self._children = [c for c in self._children if not c.done]
        return [c for c in self._children if c.name.startswith(prefix)]

    async def _run(self, run: Callable[[], Awaitable[None]], child: Child) -> None:
        try:
            with child.scope:
                await run()
        except Exception as exc:
            self._on_error(child.name, exc)
        finally:
            child.finished()

    async def close(self) -> None:
        """Cancel every child still running and wait until all have finished."""
        self._closed = True
        supervisor = self._supervisor
        if supervisor is None:
            return
        if self._group is not None:
            self._group.cancel_scope.cancel()
        else:
            supervisor.cancel()
        # Shielded: a close() cancelled half-way must still not leave a child running.
        await asyncio.shield(supervisor)
