"""Event bus, built-in metrics, and the optional Prometheus / OpenTelemetry adapters."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from aioshare.protocol.types import RecordState
from aioshare.runtime import App, Event, EventBus, EventKind, Message, Metrics, Reject, Retry
from aioshare.testing import ThreadedBroker
from tests.kit import wait_for, wait_until

from .conftest import Ready
from .kit import Recorder

AppFactory = Callable[..., App]


def test_bus_subscribe_filter_unsubscribe_and_isolate_failures(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    everything: list[Event] = []
    accepted: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    sub_all = bus.subscribe(everything.append)
    bus.subscribe(accepted.append, kinds=["accepted"])
    bus.subscribe(broken)
    assert bus.wants(EventKind.ACCEPTED) and bus.wants(EventKind.RENEWED)
    with caplog.at_level(logging.ERROR):
        bus.emit(Event(EventKind.ACCEPTED, "r", 0.0))
        bus.emit(Event(EventKind.RENEWED, "r", 0.0))
    assert [e.kind for e in everything] == ["accepted", "renewed"]
    assert [e.kind for e in accepted] == ["accepted"]
    assert "subscriber bug" in caplog.text
    sub_all.unsubscribe()
    assert bus.unsubscribe(accepted.append)
    assert not bus.unsubscribe(accepted.append)
    assert bus.unsubscribe(broken)
    assert not bus.wants(EventKind.ACCEPTED)
    with bus.subscribe(everything.append, kinds=[EventKind.ERROR]):
        bus.emit(Event(EventKind.ERROR, "r", 0.0))
    bus.emit(Event(EventKind.ERROR, "r", 0.0))
    assert [e.kind for e in everything] == ["accepted", "renewed", "error"]
    with pytest.raises(ValueError):
        bus.subscribe(everything.append, kinds=["no-such-kind"])


def applied_acks(recorder: Recorder) -> dict[int, str]:
    """offset -> ack type of every acknowledgement the broker confirmed (``ack_committed``)."""
    out: dict[int, str] = {}
    for e in recorder.kinds(EventKind.ACK_COMMITTED):
        if e.reason == "applied":
            assert e.offset is not None and e.ack_type is not None
            for offset in range(e.offset, e.offset + e.count):
                assert offset not in out, f"offset {offset} acknowledged twice"
                out[offset] = e.ack_type
    return out


async def test_metrics_count_every_outcome(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()
    gate = asyncio.Event()

    @app.handler("jobs", group_id="g", max_attempts=1, concurrency=5)
    async def handle(msg: Message[bytes]) -> None:
        if msg.value == b"reject":
            raise Reject()
        if msg.value == b"fail":
            raise ValueError("x")
        if msg.value == b"wait":
            await gate.wait()

    await ready(app)
    await kafka.produce("jobs", [b"ok", b"ok", b"reject", b"fail", b"wait"], partition=0)
    async with app:
        # The four settled records are done at the broker; the fifth is still acquired.
        await wait_until(lambda: app.runners[0].running_count == 1 and len(applied_acks(recorder)) == 4)
        held = await wait_for(
            lambda: kafka.share_records("g", "jobs"), lambda r: r is not None and r.start_offset == 4
        )
        assert held is not None and held.state_of(4) == (RecordState.ACQUIRED, 1)
        assert applied_acks(recorder) == {0: "accept", 1: "accept", 2: "reject", 3: "reject"}
        m = app.metrics
        assert m.value("records-held", route="handle") == 1
        assert m.value("handlers-running", route="handle") == 1
        gate.set()
        await wait_until(lambda: m.value("acknowledgements-send-total") == 5)
        await wait_for(
            lambda: kafka.share_records("g", "jobs"), lambda r: r is not None and r.start_offset == 5
        )
    assert applied_acks(recorder) == {0: "accept", 1: "accept", 2: "reject", 3: "reject", 4: "accept"}
    assert recorder.outcome_counts() == {"accepted": 3, "rejected": 2}
    assert m.value("records-consumed-total", route="handle", topic="jobs") == 5
    assert m.value("records-accepted-total") == 3
    assert m.value("records-rejected-total") == 2  # the Reject and the exhausted failure
    assert m.value("errors-total", reason="handler") == 1
    assert m.value("acknowledgements-error-total") == 0
    assert m.histogram("handler-duration-seconds", route="handle").count == 5
    latency = m.histogram("record-latency-seconds", outcome="accepted")
    assert latency.count == 3 and sum(latency.buckets) == 3
    snapshot = m.snapshot()
    assert snapshot["records-accepted-total"] == {("handle", "jobs"): 3.0}
    assert "records-held" in snapshot


def test_metrics_histogram_buckets() -> None:
    metrics = Metrics(buckets=(1.0, 5.0))
    for value in (0.5, 1.0, 3.0, 10.0):
        metrics.observe_handler("r", value)
    data = metrics.histogram("handler-duration-seconds")
    assert data.buckets == [2, 1, 1] and data.cumulative() == [2, 3, 4]
    assert data.count == 4 and data.sum == 14.5
    with pytest.raises(TypeError):
        metrics.value("handler-duration-seconds")
    with pytest.raises(KeyError):
        metrics.value("records-accepted-total", color="blue")


def test_prometheus_exposition() -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    from aioshare.runtime.prometheus import register_metrics

    metrics = Metrics()
    bus = EventBus()
    metrics.attach(bus)
    bus.emit(Event(EventKind.RECEIVED, "send", 0.0, topic="webhooks"))
    bus.emit(Event(EventKind.ACCEPTED, "send", 0.0, topic="webhooks", latency=0.2))
    metrics.observe_handler("send", 0.3)
    metrics.register_route("send", held=lambda: 4, delayed=lambda: 1, running=lambda: 2)
    registry = prometheus_client.CollectorRegistry()
    register_metrics(metrics, registry)
    text = prometheus_client.generate_latest(registry).decode()
    assert 'aioshare_records_consumed_total{route="send",topic="webhooks"} 1.0' in text
    assert 'aioshare_records_accepted_total{route="send",topic="webhooks"} 1.0' in text
    assert 'aioshare_handler_duration_seconds_bucket{le="0.5",route="send"} 1.0' in text
    assert 'aioshare_handler_duration_seconds_count{route="send"} 1.0' in text
    assert 'aioshare_records_held{route="send"} 4.0' in text
    assert (
        registry.get_sample_value(
            "aioshare_record_latency_seconds_sum", {"route": "send", "outcome": "accepted"}
        )
        == 0.2
    )


async def test_opentelemetry_spans(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    pytest.importorskip("opentelemetry.trace")
    sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
    export = pytest.importorskip("opentelemetry.sdk.trace.export")
    in_memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
    from opentelemetry import trace
    from opentelemetry.propagate import inject

    from aioshare.runtime.otel import OpenTelemetryTracing

    exporter = in_memory.InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(export.SimpleSpanProcessor(exporter))
    app = kafka_app(tracing=OpenTelemetryTracing(tracer_provider=provider))

    @app.handler("jobs", group_id="g", max_attempts=None, retry=None)
    async def handle(msg: Message[bytes]) -> None:
        if msg.value == b"boom" and msg.delivery_count == 1:
            raise ValueError("boom")
        if msg.value == b"later" and msg.delivery_count == 1:
            raise Retry(delay=0)

    # A producer's trace context in the headers becomes the parent of the process span.
    carrier: dict[str, Any] = {}
    with provider.get_tracer("producer").start_as_current_span("send") as producer_span:
        inject(carrier)
    headers = [(k, v.encode()) for k, v in carrier.items()]
    await ready(app)
    await kafka.produce("jobs", [b"ok"], headers=headers, partition=0)
    await kafka.produce("jobs", [b"boom", b"later"], partition=0)
    async with app:
        await wait_until(lambda: recorder.outcome_counts() == {"accepted": 3, "released": 2})
        await wait_for(
            lambda: kafka.share_records("g", "jobs"), lambda r: r is not None and r.start_offset == 3
        )
    # Offsets 1 and 2 were released after their first delivery (a failure, a Retry) and
    # accepted on their second: five settlements, five spans.
    assert recorder.terminal() == {
        ("jobs", 0, 0, 1): "accepted",
        ("jobs", 0, 1, 1): "released",
        ("jobs", 0, 1, 2): "accepted",
        ("jobs", 0, 2, 1): "released",
        ("jobs", 0, 2, 2): "accepted",
    }
    spans = [s for s in exporter.get_finished_spans() if s.name != "send"]
    assert {s.name for s in spans} == {"process jobs"} and len(spans) == 5
    ok = next(s for s in spans if s.attributes["messaging.kafka.offset"] == 0)
    assert ok.kind == trace.SpanKind.CONSUMER
    assert ok.parent is not None and ok.parent.span_id == producer_span.get_span_context().span_id
    assert ok.attributes["messaging.system"] == "kafka"
    assert ok.attributes["messaging.consumer.group.name"] == "g"
    assert ok.attributes["aioshare.route"] == "handle"
    failed = [s for s in spans if s.status.status_code == trace.StatusCode.ERROR]
    assert len(failed) == 1 and failed[0].attributes["messaging.kafka.offset"] == 1
    retried = [s for s in spans if any(e.name == "aioshare.retry" for e in s.events)]
    assert len(retried) == 1 and retried[0].status.status_code != trace.StatusCode.ERROR


def test_optional_adapters_explain_a_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from aioshare.runtime import otel, prometheus

    real = importlib.import_module

    def missing(name: str, *args: Any) -> Any:
        if name.startswith(("opentelemetry", "prometheus_client")):
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", missing)
    with pytest.raises(ImportError, match="opentelemetry-api"):
        otel.OpenTelemetryTracing()
    with pytest.raises(ImportError, match="prometheus-client"):
        prometheus.register_metrics(Metrics())
