"""When the embedded broker fsyncs: Kafka's flush policy, the fsync helpers and the flush scheduler.

Kafka writes into the page cache and leaves durability to replication unless told otherwise:
`flush.messages` (broker default `log.flush.interval.messages`) fsyncs a log once that many
messages are unflushed, checked after every append (UnifiedLog.append); `flush.ms` (broker
default `log.flush.interval.ms`, itself defaulting to `log.flush.scheduler.interval.ms`) fsyncs a
log whose last flush is older than that, checked by the `kafka-log-flusher` task every
`log.flush.scheduler.interval.ms` (LogManager.flushDirtyLogs). Every default is Long.MAX_VALUE:
no fsync at all, except at a clean shutdown, which flushes every log.

A flush here is `os.fsync` of the file written, plus the directory that holds it the first time
(a new file's directory entry must reach the disk too, as Kafka's LocalLog.flush does for new
segments). Files replaced atomically (topics.json, share-partition state, the log start offset)
are written through `replace_file`, which fsyncs the new file before the rename and the directory
after it when asked to.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from aioshare.broker.config import BrokerConfig

logger = logging.getLogger("aioshare.broker")

# Java's Long.MAX_VALUE: Kafka's "never" for every flush setting.
NEVER = 2**63 - 1


class FlushPolicy(NamedTuple):
    """One log's (or store's) flush settings, Kafka's topic-level `flush.messages` / `flush.ms`."""

    # fsync once this many messages (offsets) are unflushed; 1 = before every append is answered.
    messages: int = NEVER
    # fsync when the last flush is older than this many ms (checked by the flush scheduler).
    ms: int = NEVER

    @property
    def enabled(self) -> bool:
        """Whether anything but a clean shutdown ever fsyncs."""
        return self.messages < NEVER or self.ms < NEVER


NO_FLUSH = FlushPolicy()


def broker_flush_policy(config: BrokerConfig) -> FlushPolicy:
    """The broker-level defaults (log.flush.interval.messages / .ms): what a log without topic
    overrides gets, and what Kafka's internal topics (__share_group_state) use."""
    return FlushPolicy(config.log_flush_interval_messages, config.effective_log_flush_interval_ms)


class FlushTarget(Protocol):
    """Something the flush scheduler checks and a clean shutdown flushes (a log, a state store)."""

    def flush(self) -> None: ...

    def flush_if_due(self) -> None: ...


def monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


def fsync_directory(path: Path) -> None:
    """Make the directory's entries (files created, renamed or removed in it) durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes, *, durable: bool) -> None:
    """Write `data` to `path` atomically: a crash leaves the old content or the new, never half.

    `durable`: also fsync the new content before the rename and the directory after it, so the
    new content survives a machine crash once this returns. Without it the file is only as
    durable as the page cache (it survives a killed process, not a power loss).
    """
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    if durable:
        fsync_directory(path.parent)


class FlushScheduler:
    """Kafka's `kafka-log-flusher`: runs `check` every `interval_ms` on the event loop.

    A timer handle, not a task: `close()` stops it at once, synchronously, so nothing of it is
    left once the broker has closed. A non-positive interval runs the check once, as Kafka's
    KafkaScheduler does for a non-positive period. Kafka waits `log.initial.task.delay.ms`
    (30 s) before the first check; here the first check comes one interval after the start.
    """

    def __init__(self, interval_ms: int, check: Callable[[], None]) -> None:
        self._interval = max(interval_ms, 0) / 1000
        self._repeat = interval_ms > 0
        self._check = check
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(self._interval, self._run)

    @property
    def running(self) -> bool:
        return self._handle is not None

    def _run(self) -> None:
        self._handle = self._loop.call_later(self._interval, self._run) if self._repeat else None
        try:
            self._check()
        except Exception:
            # Kafka logs a failed flush and tries again at the next check.
            logger.exception("flushing logs failed")

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()
