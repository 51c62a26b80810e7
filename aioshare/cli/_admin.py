"""What the admin subcommands (`groups`, `topics`, `produce`) share: one ShareAdmin per command, one
error line on stderr, and aligned tables."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from aioshare.protocol.errors import KafkaConnectionError, KafkaTimeoutError

if TYPE_CHECKING:
    from aioshare.admin import ShareAdmin

Command = Callable[["ShareAdmin", argparse.Namespace], Coroutine[Any, Any, int]]


async def with_admin(handler: Command, args: argparse.Namespace) -> int:
    """Run ``handler`` with a ShareAdmin on ``args.bootstrap_server`` bounded by ``args.timeout``."""
    from aioshare.admin import ShareAdmin

    async with ShareAdmin(args.bootstrap_server, request_timeout=args.timeout) as admin:
        return await handler(admin, args)


def fail(command: str, message: str, status: int = 1) -> int:
    """Print ``aioshare COMMAND: error: MESSAGE`` on stderr; returns ``status`` (1: runtime, 2: usage)."""
    print(f"aioshare {command}: error: {message}", file=sys.stderr)
    return status


def describe_error(exc: BaseException, bootstrap: str) -> str:
    """One line for a failure; a connection failure names the cluster that could not be reached."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, KafkaConnectionError | KafkaTimeoutError | OSError | TimeoutError):
        return f"cannot reach Kafka at {bootstrap}: {text}"
    return text


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO | None = None) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    stream = out if out is not None else sys.stdout
    for line in [headers, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip(), file=stream)
