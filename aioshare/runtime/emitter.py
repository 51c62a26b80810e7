"""One route's events: what the runtime tells the event bus (and through it the metrics).

``RouteEvents`` turns each step of a record into an ``Event`` on the app's bus.  It is on
the per-record path, so it builds nothing nobody listens to: with no subscriber for a kind
the call returns at once, and when the app's own metrics are the only listener it counts
straight into them without building an ``Event``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aioshare.runtime.clock import Clock, time_source
from aioshare.runtime.events import TERMINAL_KINDS, Event, EventBus, EventKind, Subscription, make_event
from aioshare.runtime.metrics import HistogramData, Metrics

if TYPE_CHECKING:
    from aioshare.runtime.message import Message
    from aioshare.share.ack_tracker import AckResult
    from aioshare.share.message import Message as ShareMessage

__all__ = ["RouteEvents"]

_RECEIVED = EventKind.RECEIVED
_RENEWED = EventKind.RENEWED


class RouteEvents:
    __slots__ = (
        "_bounds",
        "_bus",
        "_clock",
        "_counts",
        "_handler_time",
        "_latency",
        "_listeners",
        "_metrics",
        "now",
        "route",
    )

    def __init__(self, route: str, bus: EventBus, metrics: Metrics | None, clock: Clock) -> None:
        self.route = route
        self._bus = bus
        self._listeners = bus.by_kind
        self._metrics = metrics
        self._clock = clock
        self.now = time_source(clock)  # the runtime's clock
        # What the metrics count per record, looked up once: the outcome counters, and the
        # route's series of the histograms.
        self._bounds: tuple[float, ...] = ()
        self._handler_time: HistogramData | None = None
        self._latency: dict[EventKind, HistogramData] = {}
        self._counts: dict[EventKind, dict[tuple[str, ...], float]] = {}
        if metrics is not None:
            self._handler_time = metrics.handler_series(route)
            self._bounds = metrics.bounds
            self._latency = {kind: metrics.latency_series(route, kind) for kind in TERMINAL_KINDS}
            self._counts = {kind: metrics.counter_of(kind).values for kind in TERMINAL_KINDS}

    def _metrics_only(self, subs: tuple[Subscription, ...]) -> bool:
        metrics = self._metrics
        return len(subs) == 1 and metrics is not None and subs[0] is metrics.subscription

    # -- per record ----------------------------------------------------------------------

    def received(self, batch: Sequence[ShareMessage], messages: Sequence[Message[Any]], now: float) -> None:
        """``received`` for each record of a fetched batch (one moment for all); ``batch`` is
        the consumer's messages, ``messages`` the runtime's."""
        subs = self._listeners[_RECEIVED]
        if not subs:
            return
        metrics = self._metrics
        if len(subs) == 1 and metrics is not None and subs[0] is metrics.subscription:
            metrics.count_received(self.route, batch)
            return
        for msg in messages:
            self._emit(_RECEIVED, msg, None, None, None, None, None, now)

    def settled(
        self,
        kind: EventKind,
        msg: Message[Any],
        reason: str | None,
        error: BaseException | None,
        dead_letter_topic: str | None,
        now: float,
    ) -> None:
        """A terminal event (accepted, released, rejected, dead_lettered, lock_expired)."""
        subs = self._listeners[kind]
        if not subs:
            return
        latency = now - msg.received_at
        metrics = self._metrics
        if len(subs) == 1 and metrics is not None and subs[0] is metrics.subscription:
            # Only the app's own metrics listen: count straight into them.
            values = self._counts[kind]
            key = (self.route, msg.share_message.topic)
            values[key] = values.get(key, 0.0) + 1.0
            data = self._latency[kind]
            data.buckets[bisect_left(self._bounds, latency)] += 1
            data.sum += latency
            data.count += 1
            return
        self._emit(kind, msg, reason, error, None, dead_letter_topic, latency, now)

    def renewed(self, msg: Message[Any]) -> None:
        if self._listeners[_RENEWED]:
            self._emit(_RENEWED, msg, None, None, None, None, None, self.now())

    def retried(self, msg: Message[Any], delay: float, error: BaseException | None) -> None:
        if self._listeners[EventKind.RETRIED]:
            self._emit(EventKind.RETRIED, msg, "retry", error, delay, None, None, self.now())

    def error(self, msg: Message[Any] | None, reason: str, error: BaseException | None) -> None:
        """An ``error`` event: about a record, or (``msg`` None) about the runtime itself."""
        if self._listeners[EventKind.ERROR]:
            self._emit(EventKind.ERROR, msg, reason, error, None, None, None, self.now())

    def handler_time(self, seconds: float) -> None:
        """How long one handler call took (``handler-duration-seconds``)."""
        data = self._handler_time
        if data is not None:
            data.buckets[bisect_left(self._bounds, seconds)] += 1
            data.sum += seconds
            data.count += 1

    # -- acknowledgements ----------------------------------------------------------------

    def acks(self, results: list[AckResult]) -> None:
        """An ``ack_committed`` event per run of acknowledgements the consumer reported."""
        bus = self._bus
        if not bus.wants(EventKind.ACK_COMMITTED):
            return
        now = self.now()
        for r in results:
            bus.emit(
                Event(
                    EventKind.ACK_COMMITTED,
                    self.route,
                    now,
                    topic=r.topic,
                    partition=r.partition,
                    offset=r.first_offset,
                    error=r.error,
                    reason=r.status.value,
                    count=r.last_offset - r.first_offset + 1,
                    ack_type=r.ack_type.name.lower(),
                )
            )

    # -- building ------------------------------------------------------------------------

    def _emit(
        self,
        kind: EventKind,
        msg: Message[Any] | None,
        reason: str | None,
        error: BaseException | None,
        delay: float | None,
        dead_letter_topic: str | None,
        latency: float | None,
        now: float,
    ) -> None:
        if msg is None:
            topic = partition = offset = delivery_count = None
        else:
            inner = msg.share_message
            topic = inner.topic
            partition = inner.partition
            offset = inner.offset
            delivery_count = inner.delivery_count
        bus = self._bus
        metrics = self._metrics
        if self._metrics_only(bus.by_kind[kind]) and metrics is not None:
            # Only the app's own metrics listen: count without building the event.
            metrics.record_fields(kind, self.route, topic, error, reason, delay, latency)
            return
        bus.emit(
            make_event(
                kind,
                self.route,
                now,
                topic,
                partition,
                offset,
                delivery_count,
                error,
                reason,
                delay,
                latency,
                dead_letter_topic,
            )
        )
