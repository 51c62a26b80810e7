"""What the runtime writes to the log about records that go wrong, and how often.

Every line about one record goes to the ``aioshare.runtime.records`` logger at WARNING:

* a handler that raised (the exception's ``type: message``; the traceback only on the final
  attempt, when the record is dead-lettered or rejected rather than retried);
* a record dead-lettered, rejected, or given up because it does not decode;
* a record whose lock was lost while the runtime held it (once per record);
* a dead-letter copy that could not be produced (the record is released instead).

Each line carries the record's coordinates as ``extra=`` fields (``route``, ``group_id``,
``topic``, ``partition``, ``offset``, ``delivery_count``, and ``error_type``/``error``,
``reason``, ``dead_letter_topic`` where they apply), so a structured formatter
(``JsonFormatter``, ``aioshare run --log-format json``) outputs them as keys.

A poison-message flood must not drown the log: ``LogRateLimiter`` lets at most ``limit``
lines of one kind per route through every ``interval`` seconds, and the lines it held back
are summed up in one "suppressed K similar ..." line when the window ends.
"""

from __future__ import annotations

import datetime
import json
import logging
import traceback
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aioshare.share.ack_tracker import AckResult, AckStatus

if TYPE_CHECKING:
    from aioshare.runtime.message import Message

__all__ = ["RECORDS_LOGGER", "JsonFormatter", "LogRateLimiter", "RecordLog", "Verdict"]

RECORDS_LOGGER = "aioshare.runtime.records"

DEFAULT_LIMIT = 10  # lines of one kind per route ...
DEFAULT_INTERVAL = 10.0  # ... per this many seconds


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one would-be log line.

    ``emit``: write it.  ``summary``: before it, report this many lines held back in the
    previous window of the same key (0: nothing to report).  ``flush_at``: this was the first
    line held back in its window; call ``flush`` at that time so the count gets reported even
    if no further line of the key comes.
    """

    emit: bool
    summary: int = 0
    flush_at: float | None = None


_EMIT = Verdict(True)


@dataclass(slots=True)
class _Window:
    start: float
    count: int = 0
    suppressed: int = 0


class LogRateLimiter:
    """At most ``limit`` lines per key in each ``interval``-second window (a pure class: the
    caller passes the time, so it is tested with a fake clock)."""

    def __init__(self, limit: int = DEFAULT_LIMIT, interval: float = DEFAULT_INTERVAL) -> None:
        if limit < 1 or interval <= 0:
            raise ValueError("limit must be >= 1 and interval > 0")
        self.limit = limit
        self.interval = interval
        self._windows: dict[Hashable, _Window] = {}

    def check(self, key: Hashable, now: float) -> Verdict:
        window = self._windows.get(key)
        if window is None or now >= window.start + self.interval:
            summary = window.suppressed if window is not None else 0
            self._windows[key] = _Window(now, 1)
            return Verdict(True, summary) if summary else _EMIT
        if window.count < self.limit:
            window.count += 1
            return _EMIT
        window.suppressed += 1
        if window.suppressed == 1:
            return Verdict(False, flush_at=window.start + self.interval)
        return Verdict(False)

    def flush(self, now: float, *, all_windows: bool = False) -> list[tuple[Hashable, int]]:
        """The (key, held-back count) of every window that has ended (every window with
        ``all_windows``) and held lines back; those counts are reset."""
        out: list[tuple[Hashable, int]] = []
        for key, window in list(self._windows.items()):
            ended = now >= window.start + self.interval
            if window.suppressed and (ended or all_windows):
                out.append((key, window.suppressed))
                window.suppressed = 0
            if ended:
                del self._windows[key]
        return out


class RecordLog:
    """One route's record lines, rate-limited per kind (``handler_failure``, ``dead_lettered`` ...)."""

    def __init__(
        self,
        route: str,
        group_id: str,
        time: Callable[[], float],
        schedule: Callable[[float, Callable[[], None]], object],
        limiter: LogRateLimiter | None = None,
    ) -> None:
        self.route = route
        self.group_id = group_id
        self.logger = logging.getLogger(RECORDS_LOGGER)
        self._time = time
        self._schedule = schedule
        self.limiter = limiter or LogRateLimiter()

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.WARNING)

    # -- the lines -----------------------------------------------------------------------

    def handler_failed(self, msg: Message[Any], exc: BaseException, *, final: bool) -> None:
        """A handler raised for ``msg``; the traceback only on its final attempt."""
        self._record(
            "handler_failure",
            "route %r: handler failed on %s[%d]@%d (group %r, delivery %d%s): %s",
            msg,
            error=exc,
            final=final,
            exc_info=exc if final else None,
        )

    def dead_lettered(
        self,
        msg: Message[Any],
        reason: str | None,
        error: BaseException | None,
        dead_letter_topic: str | None,
    ) -> None:
        what = _what(reason)
        self._record(
            "dead_lettered",
            f"route %r: {what} %s[%d]@%d dead-lettered to %r (group %r, delivery %d, reason %s): %s",
            msg,
            reason=reason,
            error=error,
            dead_letter_topic=dead_letter_topic,
        )

    def rejected(self, msg: Message[Any], reason: str | None, error: BaseException | None) -> None:
        self._record(
            "rejected",
            f"route %r: {_what(reason)} %s[%d]@%d rejected (group %r, delivery %d, reason %s): %s",
            msg,
            reason=reason,
            error=error,
        )

    def lock_lost(
        self, msg: Message[Any], state: str, reason: str | None, error: BaseException | None
    ) -> None:
        """``state``: where the record was ("running", "queued", "delayed", "dead_lettering")."""
        where = "while its handler ran" if state == "running" else f"while {state}"
        self._record(
            "lock_expired",
            f"route %r: lock of %s[%d]@%d lost {where} (group %r, delivery %d, reason %s): %s",
            msg,
            reason=reason,
            error=error,
            state=state,
        )

    def dead_letter_failed(
        self, msg: Message[Any], reason: str, error: BaseException, dead_letter_topic: str
    ) -> None:
        self._record(
            "dead_letter_failed",
            "route %r: could not dead-letter %s[%d]@%d to %r (group %r, delivery %d), releasing it: %s",
            msg,
            reason=reason,
            error=error,
            dead_letter_topic=dead_letter_topic,
        )

    def ack_problem(self, r: AckResult) -> None:
        """An acknowledgement the broker refused, or whose fate is unknown."""
        if not self.enabled():
            return
        span = str(r.first_offset) if r.first_offset == r.last_offset else f"{r.first_offset}-{r.last_offset}"
        what = "refused by the broker" if r.status is AckStatus.REFUSED else "in doubt (sent, not answered)"
        kind = f"ack_{r.status.value}"
        extra: dict[str, Any] = {
            "route": self.route,
            "group_id": self.group_id,
            "topic": r.topic,
            "partition": r.partition,
            "offset": r.first_offset,
            "last_offset": r.last_offset,
            "ack_type": r.ack_type.name.lower(),
            "event": kind,
        }
        if r.error is not None:
            extra["error_type"] = type(r.error).__name__
            extra["error"] = str(r.error)
        self.warning(
            kind,
            "route %r: %s of %s[%d]@%s (group %r) %s: %s",
            (
                self.route,
                r.ack_type.name,
                r.topic,
                r.partition,
                span,
                self.group_id,
                what,
                _error_text(r.error),
            ),
            extra,
        )

    def _record(
        self,
        kind: str,
        text: str,
        msg: Message[Any],
        *,
        reason: str | None = None,
        error: BaseException | None = None,
        dead_letter_topic: str | None = None,
        final: bool | None = None,
        state: str | None = None,
        exc_info: BaseException | None = None,
    ) -> None:
        """One rate-limited WARNING about ``msg``, its coordinates also as ``extra`` fields."""
        if not self.enabled():
            return
        inner = msg.share_message
        extra: dict[str, Any] = {
            "route": self.route,
            "group_id": self.group_id,
            "topic": inner.topic,
            "partition": inner.partition,
            "offset": inner.offset,
            "delivery_count": inner.delivery_count,
            "event": kind,
        }
        args: list[Any] = [self.route, inner.topic, inner.partition, inner.offset]
        if kind in ("dead_lettered", "dead_letter_failed"):
            args.append(dead_letter_topic)
            extra["dead_letter_topic"] = dead_letter_topic
        args += [self.group_id, inner.delivery_count]
        if final is not None:
            args.append(", final attempt" if final else "")
            extra["final_attempt"] = final
        if kind not in ("handler_failure", "dead_letter_failed"):
            args.append(reason or "-")
        if reason is not None:
            extra["reason"] = reason
        if state is not None:
            extra["state"] = state
        if error is not None:
            extra["error_type"] = type(error).__name__
            extra["error"] = str(error)
        args.append(_error_text(error))
        self.warning(kind, text, tuple(args), extra, exc_info=exc_info)

    # -- rate limiting -------------------------------------------------------------------

    def warning(
        self, kind: str, msg: str, args: tuple[Any, ...], extra: dict[str, Any], exc_info: Any = None
    ) -> None:
        logger = self.logger
        if not logger.isEnabledFor(logging.WARNING):
            return
        verdict = self.limiter.check(kind, self._time())
        if verdict.summary:
            self._summary(kind, verdict.summary)
        if verdict.flush_at is not None:
            self._schedule(verdict.flush_at, self.flush)
        if verdict.emit:
            logger.warning(msg, *args, extra=extra, exc_info=exc_info)

    def flush(self, *, all_windows: bool = False) -> None:
        for kind, count in self.limiter.flush(self._time(), all_windows=all_windows):
            self._summary(str(kind), count)

    def _summary(self, kind: str, count: int) -> None:
        interval = self.limiter.interval
        self.logger.warning(
            "route %r: suppressed %d similar %s lines in the last %g s",
            self.route,
            count,
            kind.replace("_", " "),
            interval,
            extra={"route": self.route, "suppressed": count, "kind": kind, "interval": interval},
        )


def _what(reason: str | None) -> str:
    return "undecodable record" if reason == "undecodable" else "record"


def _error_text(error: BaseException | None) -> str:
    return f"{type(error).__name__}: {error}" if error is not None else "-"


# LogRecord's own attributes: everything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``timestamp`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, every ``extra=`` field as a key, and ``exception`` (the traceback) if any."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "timestamp": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, default=str, ensure_ascii=False)
