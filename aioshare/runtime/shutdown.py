"""Signals and the event loop for ``App.run()`` / ``aioshare run``.

The first SIGTERM or SIGINT asks the app to stop gracefully (stop fetching, let running
handlers finish within the shutdown timeout, release the rest, commit, leave the groups);
a second one cuts the wait short and cancels running handlers at once - their records are
still RELEASEd and the groups still left, so even an impatient stop loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

__all__ = ["SIGNALS", "run_loop", "signal_handlers"]

T = TypeVar("T")

SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signal_handlers(
    on_signal: Callable[[int], None], signals: tuple[signal.Signals, ...] = SIGNALS
) -> Iterator[None]:
    """Route ``signals`` to ``on_signal(signum)`` on the running loop while inside."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    previous: dict[signal.Signals, Any] = {}
    for signum in signals:
        try:
            loop.add_signal_handler(signum, on_signal, int(signum))
            installed.append(signum)
        except NotImplementedError:
            # Windows event loops have no add_signal_handler: fall back to signal.signal.
            previous[signum] = signal.signal(
                signum, lambda s, _frame: loop.call_soon_threadsafe(on_signal, s)
            )
        except (RuntimeError, ValueError):
            pass  # not the main thread: whoever runs us handles signals
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_loop(main: Coroutine[Any, Any, T], *, use_uvloop: bool = True) -> T:
    """Run ``main`` to completion on uvloop where available, else asyncio's loop."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:  # uvloop is not built for Windows
            pass
        else:
            result: T = uvloop.run(main)
            return result
    return asyncio.run(main)
