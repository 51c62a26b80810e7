"""The runtime tests' own kit: an event recorder and a dead-letter sink that can be made to fail.

Neither models a share group - the embedded broker is the one fake; the sink stands in for the
dead-letter producer where a test needs it to fail or block on cue.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass

from aioshare.runtime import Event, EventKind
from aioshare.runtime.events import TERMINAL_KINDS

__all__ = ["FakeDeadLetterSink", "Recorder", "SentDeadLetter"]


@dataclass
class SentDeadLetter:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return None if v is None else v.decode()
        return None


class FakeDeadLetterSink:
    def __init__(self) -> None:
        self.sent: list[SentDeadLetter] = []
        self.fail_with: BaseException | None = None
        self.gate: asyncio.Event | None = None
        self.started = False
        self.closed = False
        self.attempts = 0

    async def start(self) -> None:
        self.started = True

    async def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes | None]],
        timeout: float,  # noqa: ASYNC109
    ) -> None:
        self.attempts += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(SentDeadLetter(topic, key, value, headers))

    async def close(self) -> None:
        self.closed = True


class Recorder:
    """Collects the app's events; answers 'what became of each record'."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self, kind: EventKind | str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    def terminal(self) -> dict[tuple[str, int, int, int], EventKind]:
        """(topic, partition, offset, delivery_count) -> its terminal event; fails on doubles."""
        out: dict[tuple[str, int, int, int], EventKind] = {}
        for e in self.events:
            if e.kind in TERMINAL_KINDS:
                assert e.topic is not None and e.partition is not None
                assert e.offset is not None and e.delivery_count is not None
                key = (e.topic, e.partition, e.offset, e.delivery_count)
                assert key not in out, f"{key} settled twice: {out[key]} and {e.kind}"
                out[key] = e.kind
        return out

    def received(self) -> set[tuple[str, int, int, int]]:
        out = set()
        for e in self.kinds(EventKind.RECEIVED):
            assert e.topic is not None and e.partition is not None
            assert e.offset is not None and e.delivery_count is not None
            out.add((e.topic, e.partition, e.offset, e.delivery_count))
        return out

    def outcome_counts(self) -> collections.Counter[str]:
        return collections.Counter(k.value for k in self.terminal().values())
