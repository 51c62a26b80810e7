"""Running a coroutine in a context of its own without a task of its own.

``await isolated(coro, context, on_block, on_unblock)`` is like ``await coro``, but each step of ``coro`` runs
inside ``context`` (``context.run(coro.send, ...)``), exactly as a ``Task`` steps its
coroutine: a ``ContextVar`` the coroutine sets stays in ``context``, and so does everything
it starts (tasks it creates copy ``context``).  Futures it waits on are handed to the
awaiting task unchanged, and a cancellation (or any exception thrown in) is passed on to
``coro``, so ``asyncio.timeout()``, cancel scopes and ``current_task()`` behave as they do
for a coroutine awaited directly - the current task is the awaiting one.

This is what lets the dispatcher's long-lived workers run each job in a fresh context
without creating a task per job (a task costs its creation, a loop callback to start it
and its registration in asyncio's task set, about half the runtime's CPU per job).

``on_block`` is called the first time ``coro`` suspends (yields to the event loop): the
awaiting worker is then tied up in this job, and the dispatcher wakes another one if jobs
are waiting; ``on_unblock`` when a ``coro`` that suspended has ended (returned or raised).
"""

from __future__ import annotations

import contextvars
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

__all__ = ["FINISHED", "isolated", "resume", "start"]


def start(coro: Coroutine[Any, Any, None], context: contextvars.Context) -> Any:
    """Run ``coro``'s first step inside ``context``: ``FINISHED`` if it ended there (its
    result dropped; an exception it raised propagates), else what it yielded - pass that on
    to ``resume``."""
    try:
        return context.run(coro.send, None)
    except StopIteration:
        return FINISHED


FINISHED: Any = object()


@types.coroutine
def resume(
    coro: Coroutine[Any, Any, None],
    context: contextvars.Context,
    yielded: Any,
    on_block: Callable[[], None],
    on_unblock: Callable[[], None],
) -> Generator[Any, Any, None]:
    """Run a ``coro`` that suspended in its first step (yielding ``yielded``) to its end,
    each step inside ``context``."""
    run = context.run
    on_block()
    try:
        while True:
            try:
                value = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation, or anything thrown into the awaiter
                try:
                    yielded = run(coro.throw, exc)
                except StopIteration:
                    return
            else:
                try:
                    yielded = run(coro.send, value)
                except StopIteration:
                    return
    finally:
        on_unblock()


async def isolated(
    coro: Coroutine[Any, Any, None],
    context: contextvars.Context,
    on_block: Callable[[], None],
    on_unblock: Callable[[], None],
) -> None:
    """``await coro`` with each step inside ``context`` (``start``, then ``resume`` if needed)."""
    yielded = start(coro, context)
    if yielded is not FINISHED:
        await resume(coro, context, yielded, on_block, on_unblock)
