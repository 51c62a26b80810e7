"""OpenTelemetry spans around handler calls (optional: needs ``opentelemetry-api``).

    from aioshare.runtime.otel import OpenTelemetryTracing
    app = aioshare.App(..., tracing=OpenTelemetryTracing())

One CONSUMER span per handler call, named ``process <topic>``, with the messaging
semantic-convention attributes (``messaging.system=kafka``, ``messaging.operation.type=process``,
``messaging.destination.name``, ``messaging.consumer.group.name``,
``messaging.destination.partition.id``, ``messaging.kafka.offset``,
``messaging.batch.message_count`` for batches) plus ``aioshare.route`` and
``aioshare.delivery_count``.  A producer's trace context found in the record headers
(W3C ``traceparent`` by default, through the global propagator) becomes the parent of a
one-record span, and a link of a batch span.  An unexpected exception marks the span as
an error; ``Retry``/``Reject`` are recorded as span events (they are decisions, not
failures).

The package is imported when ``OpenTelemetryTracing`` is created, never before, so aioshare
does not depend on it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from aioshare.runtime.message import Message
from aioshare.runtime.retry import Reject, Retry
from aioshare.runtime.route import Route

__all__ = ["OpenTelemetryTracing"]


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            "OpenTelemetry tracing needs the opentelemetry-api package (pip install opentelemetry-api)"
        ) from exc


def _carrier(msg: Message[Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in msg.headers:
        if value is not None:
            out[key] = value.decode("utf-8", "replace")
    return out


class OpenTelemetryTracing:
    def __init__(self, tracer_provider: Any = None, *, propagate: bool = True) -> None:
        self._trace = _import("opentelemetry.trace")
        self._propagate = _import("opentelemetry.propagate") if propagate else None
        self._tracer = self._trace.get_tracer("aioshare.runtime", tracer_provider=tracer_provider)

    @contextmanager
    def job(self, route: Route, messages: Sequence[Message[Any]]) -> Iterator[object]:
        trace = self._trace
        first = messages[0]
        attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": first.topic,
            "messaging.consumer.group.name": route.group_id,
            "aioshare.route": route.name,
        }
        context = None
        links = []
        if len(messages) == 1:
            attributes["messaging.destination.partition.id"] = str(first.partition)
            attributes["messaging.kafka.offset"] = first.offset
            attributes["aioshare.delivery_count"] = first.delivery_count
            if self._propagate is not None:
                context = self._propagate.extract(_carrier(first))
        else:
            attributes["messaging.batch.message_count"] = len(messages)
            if self._propagate is not None:
                for msg in messages:
                    span_context = trace.get_current_span(
                        self._propagate.extract(_carrier(msg))
                    ).get_span_context()
                    if span_context.is_valid:
                        links.append(trace.Link(span_context))
        with self._tracer.start_as_current_span(
            f"process {first.topic}",
            context=context,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except Retry as exc:
                span.add_event(
                    "aioshare.retry", {"aioshare.retry.delay": -1.0 if exc.delay is None else exc.delay}
                )
                raise
            except Reject as exc:
                span.add_event("aioshare.reject", {"aioshare.reject.reason": exc.reason})
                raise
            except BaseException as exc:
                span.record_exception(exc)
                span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                raise
