"""``AckRecorder``: what became of every record an App handled, from its event bus.

    recorder = AckRecorder(app)            # subscribes to app.events
    async with app:
        await recorder.wait_for(3)         # 3 records with a final outcome
    recorder.assert_accepted([0, 2])
    recorder.assert_dead_lettered([1])

A record's *final* outcome is ACCEPTED, REJECTED or DEAD_LETTERED: the broker never hands
it out again.  RELEASED (and a lock lost: LOCK_EXPIRED) ends one delivery only - the
record comes back - so ``assert_released`` checks that a record was released at least once,
whatever came after.  Offsets are per topic-partition: pass ``topic=`` / ``partition=``
when the app reads more than one; with neither, an offset matches in any of them.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from aioshare.runtime.events import Event, EventKind, Subscription

if TYPE_CHECKING:
    from aioshare.runtime.app import App

__all__ = ["FINAL_KINDS", "AckRecorder"]

FINAL_KINDS = frozenset({EventKind.ACCEPTED, EventKind.REJECTED, EventKind.DEAD_LETTERED})
_SETTLING = FINAL_KINDS | {
    EventKind.RELEASED,
    EventKind.LOCK_EXPIRED,
    EventKind.ACK_REFUSED,
    EventKind.ACK_IN_DOUBT,
}

RecordKey = tuple[str, int, int]  # topic, partition, offset


class AckRecorder:
    """Records every event of an App (or an EventBus) and answers per-record questions."""

    def __init__(self, app: App | None = None) -> None:
        self.events: list[Event] = []
        self._outcomes: dict[RecordKey, list[EventKind]] = collections.defaultdict(list)
        self._changed: asyncio.Event | None = None
        self._subscription: Subscription | None = None
        if app is not None:
            self.attach(app)

    def attach(self, app: App) -> AckRecorder:
        self._subscription = app.events.subscribe(self)
        return self

    def detach(self) -> None:
        if self._subscription is not None:
            self._subscription.unsubscribe()
            self._subscription = None

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        if event.kind in _SETTLING and event.offset is not None:
            assert event.topic is not None and event.partition is not None
            self._outcomes[(event.topic, event.partition, event.offset)].append(event.kind)
        if self._changed is not None:
            self._changed.set()

    # ------------------------------------------------------------------ queries

    def outcomes(self, topic: str | None = None, partition: int | None = None) -> dict[int, list[str]]:
        """offset -> every settling event of it, in order (e.g. ``["released", "accepted"]``)."""
        out: dict[int, list[str]] = {}
        for (t, p, offset), kinds in self._outcomes.items():
            if _matches(t, p, topic, partition):
                out.setdefault(offset, []).extend(k.value for k in kinds)
        return dict(sorted(out.items()))

    def final(self, topic: str | None = None, partition: int | None = None) -> dict[int, str]:
        """offset -> its final outcome, for records that have one."""
        out: dict[int, str] = {}
        for (t, p, offset), kinds in self._outcomes.items():
            if not _matches(t, p, topic, partition):
                continue
            finals = [k for k in kinds if k in FINAL_KINDS]
            if finals:
                out[offset] = finals[-1].value
        return dict(sorted(out.items()))

    def offsets(
        self, kind: EventKind | str, topic: str | None = None, partition: int | None = None
    ) -> list[int]:
        """Sorted offsets with at least one ``kind`` event."""
        wanted = EventKind(kind)
        return sorted(
            {
                offset
                for (t, p, offset), kinds in self._outcomes.items()
                if _matches(t, p, topic, partition) and wanted in kinds
            }
        )

    def kinds(self, kind: EventKind | str) -> list[Event]:
        """Every event of ``kind`` (any event kind: ``renewed``, ``retried``, ``error``...)."""
        wanted = EventKind(kind)
        return [e for e in self.events if e.kind == wanted]

    def handled(self) -> int:
        """How many distinct records have a final outcome."""
        return sum(1 for kinds in self._outcomes.values() if any(k in FINAL_KINDS for k in kinds))

    def count(self, kinds: Iterable[EventKind | str]) -> int:
        """Distinct records with at least one event of ``kinds``."""
        wanted = {EventKind(k) for k in kinds}
        return sum(1 for ks in self._outcomes.values() if wanted.intersection(ks))

    async def wait_for(
        self,
        handled: int,
        timeout: float = 30.0,  # noqa: ASYNC109 -- a test's bound, not a cancel scope
        kinds: Iterable[EventKind | str] | None = None,
    ) -> None:
        """Wait until ``handled`` distinct records have a final outcome (or an event of ``kinds``).

        Raises AssertionError with what was seen when ``timeout`` passes first.
        """
        wanted = None if kinds is None else {EventKind(k) for k in kinds}

        def reached() -> bool:
            return (self.handled() if wanted is None else self.count(wanted)) >= handled

        if self._changed is None:
            self._changed = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                while not reached():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"{handled} records were not handled within {timeout}s; outcomes so far: {self.outcomes()}"
            ) from None

    # ------------------------------------------------------------------ assertions

    def assert_accepted(
        self,
        offsets: Iterable[int],
        *,
        topic: str | None = None,
        partition: int | None = None,
        exactly: bool = False,
    ) -> None:
        """Each of ``offsets`` ended ACCEPTED (``exactly``: and no other record did)."""
        self._assert_final(EventKind.ACCEPTED, offsets, topic, partition, exactly)

    def assert_rejected(
        self,
        offsets: Iterable[int],
        *,
        topic: str | None = None,
        partition: int | None = None,
        exactly: bool = False,
    ) -> None:
        """Each of ``offsets`` ended REJECTED without a dead-letter copy."""
        self._assert_final(EventKind.REJECTED, offsets, topic, partition, exactly)

    def assert_dead_lettered(
        self,
        offsets: Iterable[int],
        *,
        topic: str | None = None,
        partition: int | None = None,
        exactly: bool = False,
    ) -> None:
        """Each of ``offsets`` was copied to its dead-letter topic, then REJECTED."""
        self._assert_final(EventKind.DEAD_LETTERED, offsets, topic, partition, exactly)

    def assert_released(
        self,
        offsets: Iterable[int],
        *,
        topic: str | None = None,
        partition: int | None = None,
        exactly: bool = False,
    ) -> None:
        """Each of ``offsets`` was RELEASEd at least once (whatever its final outcome)."""
        self._assert_seen(EventKind.RELEASED, offsets, topic, partition, exactly)

    def assert_lock_expired(
        self,
        offsets: Iterable[int],
        *,
        topic: str | None = None,
        partition: int | None = None,
        exactly: bool = False,
    ) -> None:
        """The runtime lost the lock of each of ``offsets`` at least once."""
        self._assert_seen(EventKind.LOCK_EXPIRED, offsets, topic, partition, exactly)

    def assert_outcomes(
        self,
        expected: Mapping[int, EventKind | str],
        *,
        topic: str | None = None,
        partition: int | None = None,
    ) -> None:
        """The final outcomes are exactly ``expected`` (offset -> kind), no more, no less."""
        want = {offset: EventKind(kind).value for offset, kind in expected.items()}
        got = self.final(topic, partition)
        if got != want:
            raise AssertionError(
                f"final outcomes differ:\n  expected {want}\n  got      {got}\n{self._history()}"
            )

    def _assert_final(
        self,
        kind: EventKind,
        offsets: Iterable[int],
        topic: str | None,
        partition: int | None,
        exactly: bool,
    ) -> None:
        wanted = set(offsets)
        final = self.final(topic, partition)
        wrong = {o: final.get(o, "no final outcome") for o in sorted(wanted) if final.get(o) != kind.value}
        extra = sorted(o for o, k in final.items() if k == kind.value and o not in wanted) if exactly else []
        if wrong or extra:
            parts = []
            if wrong:
                parts.append(f"expected {kind.value}, got {wrong}")
            if extra:
                parts.append(f"also {kind.value}, not expected: {extra}")
            raise AssertionError("; ".join(parts) + "\n" + self._history())

    def _assert_seen(
        self,
        kind: EventKind,
        offsets: Iterable[int],
        topic: str | None,
        partition: int | None,
        exactly: bool,
    ) -> None:
        wanted = set(offsets)
        seen = set(self.offsets(kind, topic, partition))
        missing = sorted(wanted - seen)
        extra = sorted(seen - wanted) if exactly else []
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"never {kind.value}: {missing}")
            if extra:
                parts.append(f"also {kind.value}, not expected: {extra}")
            raise AssertionError("; ".join(parts) + "\n" + self._history())

    def _history(self) -> str:
        lines = [
            f"  {t}[{p}]@{o}: {' -> '.join(k.value for k in kinds)}"
            for (t, p, o), kinds in sorted(self._outcomes.items())
        ]
        return "every record's outcomes:\n" + ("\n".join(lines) if lines else "  (none)")


def _matches(t: str, p: int, topic: str | None, partition: int | None) -> bool:
    return (topic is None or t == topic) and (partition is None or p == partition)
