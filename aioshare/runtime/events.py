"""The runtime's event bus: every step of every record, for metrics, tracing and tests.

A record's life is ``received`` → (``renewed``, ``retried``, ``error``)* → exactly one
terminal event: ``accepted``, ``released``, ``rejected``, ``dead_lettered``, ``lock_expired``,
``ack_refused`` or ``ack_in_doubt``.  The four outcomes that are acknowledgements come when the
broker has applied them: ``accepted`` means the broker confirmed the ACCEPT.  An acknowledgement
the broker refused ends as ``ack_refused`` (``error`` is Kafka's, ``reason`` the outcome it was
for: "accepted", ...); one sent and never answered (connection lost) as ``ack_in_doubt`` - the
broker may or may not have applied it; one the consumer could not send (the lock ran out first,
the session ended) as ``released`` with reason "ack-not-sent": the broker gets the record back.
``retried`` is followed by ``released`` when its delay has passed and the RELEASE is applied;
``dead_lettered`` means the copy reached the dead-letter topic and the REJECT was applied.
``ack_committed`` reports what became of a run of acknowledgements: ``count`` records of one
partition from ``offset`` on, of one ``ack_type`` ("accept", "release", "reject"), with
``reason`` its status - "applied" (the broker confirmed; ``error`` None), "refused" (the
broker's error), "in_doubt" (sent, never answered) or "not_sent" (failed here).  ``error``
events without a record (``offset`` None) report failures of the runtime itself.

Subscribers are plain callables run synchronously on the event loop; one that raises is
logged and skipped, never allowed to disturb record processing.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["TERMINAL_KINDS", "Event", "EventBus", "EventKind", "Subscription"]

log = logging.getLogger(__name__)


class EventKind(enum.StrEnum):
    RECEIVED = "received"
    ACCEPTED = "accepted"
    RELEASED = "released"
    REJECTED = "rejected"
    RENEWED = "renewed"
    LOCK_EXPIRED = "lock_expired"
    RETRIED = "retried"
    DEAD_LETTERED = "dead_lettered"
    ERROR = "error"
    ACK_COMMITTED = "ack_committed"
    ACK_REFUSED = "ack_refused"
    ACK_IN_DOUBT = "ack_in_doubt"


TERMINAL_KINDS = frozenset(
    {
        EventKind.ACCEPTED,
        EventKind.RELEASED,
        EventKind.REJECTED,
        EventKind.DEAD_LETTERED,
        EventKind.LOCK_EXPIRED,
        EventKind.ACK_REFUSED,
        EventKind.ACK_IN_DOUBT,
    }
)


@dataclass(frozen=True, slots=True)
class Event:
    """One step of one record (or, with ``offset`` None, of the runtime)."""

    kind: EventKind
    route: str
    time: float
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    delivery_count: int | None = None
    error: BaseException | None = None
    reason: str | None = None  # why: "handler", "retry", "exhausted", "shutdown", ...
    delay: float | None = None  # retried: seconds until the release
    latency: float | None = None  # terminal events: seconds from received to settled
    dead_letter_topic: str | None = None
    count: int = 1  # ack_committed: records in the run
    ack_type: str | None = None  # ack_committed: "accept", "release", "reject"


Subscriber = Callable[[Event], object]

_new = object.__new__
# The slot setters in field order; make_event unpacks exactly these 14 (a new field fails here).
_SETTERS = tuple(Event.__dict__[f.name].__set__ for f in dataclasses.fields(Event))


def make_event(
    kind: EventKind,
    route: str,
    time: float,
    topic: str | None,
    partition: int | None,
    offset: int | None,
    delivery_count: int | None,
    error: BaseException | None,
    reason: str | None,
    delay: float | None,
    latency: float | None,
    dead_letter_topic: str | None,
) -> Event:
    """``Event(...)`` for the runtime's hot path: the same object, built without the frozen
    dataclass ``__init__`` (which sets each field through ``object.__setattr__``)."""
    event: Event = _new(Event)
    (
        s_kind,
        s_route,
        s_time,
        s_topic,
        s_partition,
        s_offset,
        s_dc,
        s_error,
        s_reason,
        s_delay,
        s_lat,
        s_dlt,
        s_count,
        s_ack_type,
    ) = _SETTERS
    s_kind(event, kind)
    s_route(event, route)
    s_time(event, time)
    s_topic(event, topic)
    s_partition(event, partition)
    s_offset(event, offset)
    s_dc(event, delivery_count)
    s_error(event, error)
    s_reason(event, reason)
    s_delay(event, delay)
    s_lat(event, latency)
    s_dlt(event, dead_letter_topic)
    s_count(event, 1)
    s_ack_type(event, None)
    return event


class Subscription:
    """What ``subscribe`` returns: ``unsubscribe()`` it, or use it as a context manager."""

    __slots__ = ("_bus", "callback", "kinds")

    def __init__(self, bus: EventBus, callback: Subscriber, kinds: frozenset[EventKind] | None) -> None:
        self._bus = bus
        self.callback = callback
        self.kinds = kinds

    def unsubscribe(self) -> None:
        self._bus.remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.unsubscribe()


class EventBus:
    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        # kind -> subscribers; rebuilt on (un)subscribe so emit() is one dict lookup.  Read
        # it, never change it (the runtime's per-record path looks kinds up here).
        self.by_kind: dict[EventKind, tuple[Subscription, ...]] = {kind: () for kind in EventKind}

    def subscribe(self, callback: Subscriber, kinds: Iterable[EventKind | str] | None = None) -> Subscription:
        """Call ``callback(event)`` for every event (or only those of ``kinds``)."""
        wanted = None if kinds is None else frozenset(EventKind(k) for k in kinds)
        sub = Subscription(self, callback, wanted)
        self._subs.append(sub)
        self._rebuild()
        return sub

    def unsubscribe(self, callback: Subscriber) -> bool:
        """Remove every subscription of ``callback``; False when there was none."""
        before = len(self._subs)
        self._subs = [s for s in self._subs if s.callback != callback]
        self._rebuild()
        return len(self._subs) != before

    def remove(self, sub: Subscription) -> None:
        """End one subscription (``sub.unsubscribe()``)."""
        if sub in self._subs:
            self._subs.remove(sub)
            self._rebuild()

    def _rebuild(self) -> None:
        # In place: the runtime keeps a reference to this table.
        for kind in EventKind:
            self.by_kind[kind] = tuple(s for s in self._subs if s.kinds is None or kind in s.kinds)

    def wants(self, kind: EventKind) -> bool:
        """Whether anyone listens for ``kind`` (so the caller may skip building the event)."""
        return bool(self.by_kind.get(kind))

    def emit(self, event: Event) -> None:
        for sub in self.by_kind.get(event.kind, ()):
            try:
                sub.callback(event)
            except Exception:
                log.exception("event subscriber %r failed on %s", sub.callback, event.kind)
