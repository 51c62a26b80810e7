"""Built-in, in-process metrics fed by the event bus.

Names follow the Java share consumer where it has one (group
``consumer-share-fetch-manager-metrics``: ``records-consumed-total``,
``acknowledgements-send-total``, ``acknowledgements-error-total``); the rest describe what
only a runtime sees (outcomes, retries, renewals, handler time).  Every series carries the
``route`` label; per-record counters also ``topic``.

| name | kind | labels | meaning |
|---|---|---|---|
| records-consumed-total | counter | route, topic | records handed to the runtime |
| acknowledgements-send-total | counter | route, topic | acknowledgements the broker confirmed |
| acknowledgements-error-total | counter | route, topic | acknowledgements that failed (lock lost, session gone...) |
| acknowledgements-total | counter | route, topic, type, status | acknowledgements by type (accept, release, reject) and status (applied, refused, in_doubt, not_sent) |
| records-accepted-total | counter | route, topic | ACCEPTed, the broker confirmed |
| records-released-total | counter | route, topic | RELEASEd (after a retry delay, on shutdown, ...): confirmed, or never sent |
| records-rejected-total | counter | route, topic | REJECTed without a dead-letter copy, the broker confirmed |
| records-dead-lettered-total | counter | route, topic | copied to the dead-letter topic, then REJECTed (confirmed) |
| records-lock-expired-total | counter | route, topic | lost their acquisition lock while held |
| records-ack-refused-total | counter | route, topic | their acknowledgement refused by the broker (Kafka's error) |
| records-ack-in-doubt-total | counter | route, topic | their acknowledgement sent, never answered (maybe applied) |
| records-retried-total | counter | route, topic | put on a retry delay |
| lock-renewals-total | counter | route, topic | records whose lock the keep-alive renewed (counted when settled), and extend_lock() calls |
| errors-total | counter | route, reason | error events (handler exceptions, DLQ failures, ...) |
| handler-duration-seconds | histogram | route | time of one handler call (one job) |
| record-latency-seconds | histogram | route, outcome | received → terminal event (the broker's answer), per record |
| retry-delay-seconds | histogram | route | delays chosen for retries |
| records-held | gauge | route | received and not yet settled |
| records-delayed | gauge | route | waiting out a retry delay |
| handlers-running | gauge | route | handler calls in progress |

``Metrics.snapshot()`` returns everything as plain data; ``aioshare.runtime.prometheus``
exposes the same series to a Prometheus registry.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aioshare.runtime.events import Event, EventBus, EventKind, Subscription

__all__ = [
    "DEFAULT_BUCKETS",
    "DELIVERY_COUNT_CAP",
    "Counter",
    "Gauge",
    "Histogram",
    "HistogramData",
    "Metrics",
]

Labels = tuple[str, ...]


# Delivery counts of received records are tallied per route for process reports, with
# counts of this or more under this one ("5 or more").
DELIVERY_COUNT_CAP = 5


class _Received(Protocol):
    @property
    def topic(self) -> str: ...

    @property
    def delivery_count(self) -> int: ...


# Seconds: from a fast in-memory handler up to a long job or a long retry delay.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
)


class Counter:
    kind = "counter"

    def __init__(self, name: str, help: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount


@dataclass(slots=True)
class HistogramData:
    buckets: list[int]  # non-cumulative counts per bucket; the last is +Inf
    sum: float = 0.0
    count: int = 0

    def cumulative(self) -> list[int]:
        out, total = [], 0
        for n in self.buckets:
            total += n
            out.append(total)
        return out


class Histogram:
    kind = "histogram"

    def __init__(
        self, name: str, help: str, labelnames: Sequence[str], buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self.bounds = tuple(sorted(buckets))
        self.values: dict[Labels, HistogramData] = {}

    def observe(self, labels: Labels, value: float) -> None:
        data = self.values.get(labels)
        if data is None:
            data = self.values[labels] = HistogramData([0] * (len(self.bounds) + 1))
        data.buckets[bisect.bisect_left(self.bounds, value)] += 1
        data.sum += value
        data.count += 1

    def series(self, labels: Labels) -> HistogramData:
        """The observations of one label set (created empty), for a hot path to keep."""
        data = self.values.get(labels)
        if data is None:
            data = self.values[labels] = HistogramData([0] * (len(self.bounds) + 1))
        return data


class Gauge:
    """Read when asked: ``source()`` returns the current value per label set."""

    kind = "gauge"

    def __init__(
        self, name: str, help: str, labelnames: Sequence[str], source: Callable[[], Mapping[Labels, float]]
    ) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self.source = source

    @property
    def values(self) -> Mapping[Labels, float]:
        return self.source()


Metric = Counter | Histogram | Gauge

_OUTCOME_COUNTERS = {
    EventKind.RECEIVED: "records-consumed-total",
    EventKind.ACCEPTED: "records-accepted-total",
    EventKind.RELEASED: "records-released-total",
    EventKind.REJECTED: "records-rejected-total",
    EventKind.DEAD_LETTERED: "records-dead-lettered-total",
    EventKind.LOCK_EXPIRED: "records-lock-expired-total",
    EventKind.ACK_REFUSED: "records-ack-refused-total",
    EventKind.ACK_IN_DOUBT: "records-ack-in-doubt-total",
    EventKind.RETRIED: "records-retried-total",
    EventKind.RENEWED: "lock-renewals-total",
}


@dataclass
class _GaugeSources:
    held: dict[str, Callable[[], int]] = field(default_factory=dict)
    delayed: dict[str, Callable[[], int]] = field(default_factory=dict)
    running: dict[str, Callable[[], int]] = field(default_factory=dict)


class Metrics:
    def __init__(self, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        rt = ("route", "topic")
        self.bounds = tuple(sorted(buckets))  # of every histogram
        self._metrics: dict[str, Metric] = {}
        for name, doc in (
            ("records-consumed-total", "Records handed to the runtime."),
            ("acknowledgements-send-total", "Record acknowledgements the broker confirmed."),
            ("acknowledgements-error-total", "Record acknowledgements that failed."),
            ("records-accepted-total", "Records whose ACCEPT the broker confirmed."),
            ("records-released-total", "Records RELEASEd for redelivery (confirmed, or never sent)."),
            ("records-rejected-total", "Records whose REJECT (no dead-letter copy) the broker confirmed."),
            (
                "records-dead-lettered-total",
                "Records copied to the dead-letter topic, their REJECT confirmed.",
            ),
            ("records-lock-expired-total", "Records whose acquisition lock was lost while held."),
            ("records-ack-refused-total", "Records whose acknowledgement the broker refused."),
            (
                "records-ack-in-doubt-total",
                "Records whose acknowledgement was sent and never answered (it may have been applied).",
            ),
            ("records-retried-total", "Records put on a retry delay."),
            ("lock-renewals-total", "Records whose acquisition lock was renewed (RENEW)."),
        ):
            self._add(Counter(name, doc, rt))
        self._add(
            Counter(
                "acknowledgements-total",
                "Record acknowledgements by type and status (applied, refused, in_doubt, not_sent).",
                ("route", "topic", "type", "status"),
            )
        )
        self._add(Counter("errors-total", "Errors reported by the runtime.", ("route", "reason")))
        self._add(Histogram("handler-duration-seconds", "Time of one handler call.", ("route",), buckets))
        self._add(
            Histogram(
                "record-latency-seconds", "Received to settled, per record.", ("route", "outcome"), buckets
            )
        )
        self._add(Histogram("retry-delay-seconds", "Delays chosen for retries.", ("route",), buckets))
        self._gauges = _GaugeSources()
        self._add(
            Gauge(
                "records-held", "Records received and not settled.", ("route",), self._read(self._gauges.held)
            )
        )
        self._add(
            Gauge(
                "records-delayed",
                "Records waiting out a retry delay.",
                ("route",),
                self._read(self._gauges.delayed),
            )
        )
        self._add(
            Gauge(
                "handlers-running", "Handler calls in progress.", ("route",), self._read(self._gauges.running)
            )
        )
        self.subscription: Subscription | None = None  # how these metrics listen to the bus
        # Resolved once: record() runs for every event of every record.
        self._by_kind: dict[EventKind, Counter] = {
            kind: self._counter(name) for kind, name in _OUTCOME_COUNTERS.items()
        }
        self._acks_sent = self._counter("acknowledgements-send-total")
        self._acks_failed = self._counter("acknowledgements-error-total")
        self._acks = self._counter("acknowledgements-total")
        self._errors = self._counter("errors-total")
        self._handler_seconds = self._histogram("handler-duration-seconds")
        self._latency = self._histogram("record-latency-seconds")
        self._retry_delay = self._histogram("retry-delay-seconds")
        self._delivery_counts: dict[str, dict[int, int]] = {}  # route -> delivery count -> records

    def _add(self, metric: Metric) -> None:
        self._metrics[metric.name] = metric

    @staticmethod
    def _read(sources: dict[str, Callable[[], int]]) -> Callable[[], Mapping[Labels, float]]:
        return lambda: {(route,): float(fn()) for route, fn in sources.items()}

    # -- wiring ------------------------------------------------------------------------

    def attach(self, bus: EventBus) -> None:
        if self.subscription is None:
            self.subscription = bus.subscribe(self.record)

    def detach(self) -> None:
        if self.subscription is not None:
            self.subscription.unsubscribe()
            self.subscription = None

    def register_route(
        self, route: str, *, held: Callable[[], int], delayed: Callable[[], int], running: Callable[[], int]
    ) -> None:
        self._gauges.held[route] = held
        self._gauges.delayed[route] = delayed
        self._gauges.running[route] = running

    def unregister_route(self, route: str) -> None:
        for sources in (self._gauges.held, self._gauges.delayed, self._gauges.running):
            sources.pop(route, None)

    # -- recording ---------------------------------------------------------------------

    def record(self, event: Event) -> None:
        kind = event.kind
        counter = self._by_kind.get(kind)
        if counter is not None and kind is not EventKind.RETRIED:  # the per-record path, inline
            labels = (event.route, event.topic or "")
            values = counter.values
            values[labels] = values.get(labels, 0.0) + 1.0
            if event.latency is not None:
                self._latency.observe((event.route, kind.value), event.latency)
            elif kind is EventKind.RECEIVED:
                tally = self._tally(event.route)
                dc = min(event.delivery_count or 1, DELIVERY_COUNT_CAP)
                tally[dc] = tally.get(dc, 0) + 1
            return
        if kind is EventKind.ACK_COMMITTED:
            route, topic, count = event.route, event.topic or "", event.count
            (self._acks_sent if event.error is None else self._acks_failed).inc((route, topic), count)
            self._acks.inc((route, topic, event.ack_type or "", event.reason or ""), count)
            return
        self.record_fields(
            kind,
            event.route,
            event.topic,
            event.error,
            event.reason,
            event.delay,
            event.latency,
            event.count,
        )

    def record_fields(
        self,
        kind: EventKind,
        route: str,
        topic: str | None,
        error: BaseException | None,
        reason: str | None,
        delay: float | None,
        latency: float | None,
        count: int = 1,
    ) -> None:
        """``record()`` of an event given by its fields (no ``Event`` object needed)."""
        counter = self._by_kind.get(kind)
        if counter is not None:
            labels = (route, topic or "")
            values = counter.values
            values[labels] = values.get(labels, 0.0) + 1.0
        elif kind is EventKind.ERROR:
            self._errors.inc((route, reason or "error"))
        if kind is EventKind.RETRIED and delay is not None:
            self._retry_delay.observe((route,), delay)
        if latency is not None:
            self._latency.observe((route, kind.value), latency)

    def counter_of(self, kind: EventKind) -> Counter:
        """The counter events of ``kind`` count in (``records-*-total``, ``lock-renewals-total``)."""
        return self._by_kind[kind]

    def latency_series(self, route: str, kind: EventKind) -> HistogramData:
        """``record-latency-seconds`` of one route and outcome (kept by the runtime's hot path)."""
        return self._latency.series((route, kind.value))

    def handler_series(self, route: str) -> HistogramData:
        """``handler-duration-seconds`` of one route (kept by the runtime's hot path)."""
        return self._handler_seconds.series((route,))

    def count_received(self, route: str, records: Iterable[_Received]) -> None:
        """``records-consumed-total`` and the delivery-count tally for a fetched batch (the
        runtime's path when only these metrics listen: no ``received`` event is built)."""
        values = self._by_kind[EventKind.RECEIVED].values
        tally = self._tally(route)
        cap = DELIVERY_COUNT_CAP
        topic: str | None = None
        run = 0
        for record in records:
            t = record.topic
            if t != topic:
                if run:
                    key = (route, topic or "")
                    values[key] = values.get(key, 0.0) + run
                topic, run = t, 0
            run += 1
            dc = record.delivery_count
            dc = dc if dc < cap else cap
            tally[dc] = tally.get(dc, 0) + 1
        if run:
            key = (route, topic or "")
            values[key] = values.get(key, 0.0) + run

    def delivery_counts(self, route: str) -> dict[int, int]:
        """Received records of ``route`` by delivery count (``DELIVERY_COUNT_CAP`` = that or more)."""
        return dict(sorted(self._delivery_counts.get(route, {}).items()))

    def _tally(self, route: str) -> dict[int, int]:
        tally = self._delivery_counts.get(route)
        if tally is None:
            tally = self._delivery_counts[route] = {}
        return tally

    def observe_handler(self, route: str, seconds: float) -> None:
        self._handler_seconds.observe((route,), seconds)

    # -- reading -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._metrics.values())

    def metric(self, name: str) -> Metric:
        return self._metrics[name]

    def value(self, name: str, **labels: str) -> float:
        """The sum of a counter or gauge over the series matching ``labels`` (0 if none)."""
        metric = self._metrics[name]
        if isinstance(metric, Histogram):
            raise TypeError(f"{name} is a histogram; use histogram()")
        _check_labels(metric.labelnames, labels)
        return sum(v for key, v in metric.values.items() if _matches(metric.labelnames, key, labels))

    def histogram(self, name: str, **labels: str) -> HistogramData:
        """Observations of a histogram, merged over the series matching ``labels``."""
        metric = self._histogram(name)
        _check_labels(metric.labelnames, labels)
        merged = HistogramData([0] * (len(metric.bounds) + 1))
        for key, data in metric.values.items():
            if _matches(metric.labelnames, key, labels):
                merged.buckets = [a + b for a, b in zip(merged.buckets, data.buckets, strict=True)]
                merged.sum += data.sum
                merged.count += data.count
        return merged

    def snapshot(self) -> dict[str, dict[Labels, float | HistogramData]]:
        out: dict[str, dict[Labels, float | HistogramData]] = {}
        for metric in self._metrics.values():
            out[metric.name] = dict(metric.values)
        return out

    def _counter(self, name: str) -> Counter:
        metric = self._metrics[name]
        assert isinstance(metric, Counter)
        return metric

    def _histogram(self, name: str) -> Histogram:
        metric = self._metrics[name]
        if not isinstance(metric, Histogram):
            raise TypeError(f"{name} is not a histogram")
        return metric


def _check_labels(names: tuple[str, ...], wanted: Mapping[str, str]) -> None:
    for label in wanted:
        if label not in names:
            raise KeyError(f"no label {label!r}; labels are {names}")


def _matches(names: tuple[str, ...], key: Labels, wanted: Mapping[str, str]) -> bool:
    for label, value in wanted.items():
        if key[names.index(label)] != value:
            return False
    return True
