"""Process reports (aioshare.runtime.report): the schema, its codec, and an App publishing them."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from aioshare.protocol.errors import ConfigError
from aioshare.runtime import App, Backoff, Message, Reject
from aioshare.runtime.events import Event, EventBus, EventKind
from aioshare.runtime.metrics import Metrics
from aioshare.runtime.report import (
    DELIVERY_COUNT_CAP,
    ConsumerReporter,
    ErrorReport,
    HeldPartition,
    ProcessReport,
    ReportCollector,
    ReportDecodeError,
    ReportPublisher,
    ReportVersionError,
    RouteReport,
    decode_report,
    encode_report,
    quantiles,
    reports_enabled,
)
from aioshare.testing import ThreadedBroker
from aioshare.testing.apps import prepare
from tests.kit import wait_until

REPORT_LOGGER = "aioshare.runtime.report"


# ------------------------------------------------------------------------------ helpers


def realistic_report(
    routes: int = 4, errors: int = 20, partitions: int = 12, distinct_errors: bool = True
) -> ProcessReport:
    def tb(i: int) -> str:
        i = i if distinct_errors else 0
        frames = "".join(
            f'  File "/srv/app/handlers/module_{i}_{n}.py", line {100 + n}, in handle_{n}\n'
            f"    await client.post(url, json=payload_{n})\n"
            for n in range(12)
        )
        return f"Traceback (most recent call last):\n{frames}httpx.ConnectTimeout: timed out {i}"

    collector = ReportCollector()
    for i in range(errors):
        try:
            raise TimeoutError(f"POST https://hooks.example.com/endpoint/{i}: timed out after 30 s")
        except TimeoutError as exc:
            exc.add_note(tb(i))
            collector.on_event(
                Event(
                    EventKind.ERROR,
                    route=f"route-{i % routes}",
                    time=0.0,
                    topic=f"orders.events.v{i % routes}",
                    partition=i % 12,
                    offset=1_000_000 + i,
                    delivery_count=1 + i % 5,
                    error=exc,
                    reason="handler",
                )
            )
    return ProcessReport(
        process_id="0123456789abcdef0123456789abcdef",
        seq=1234,
        host="worker-7.prod.example.com",
        pid=4242,
        aioshare_version="0.1.0",
        started_at=1_700_000_000.0,
        sent_at=1_700_003_600.0,
        uptime_s=3600.0,
        rss_bytes=123_456_789,
        routes=[
            RouteReport(
                name=f"route-{r}",
                group_id=f"group-{r}",
                topics=[f"orders.events.v{r}", f"orders.retry.v{r}"],
                concurrency=50,
                busy=37,
                held=[
                    HeldPartition(topic=f"orders.events.v{r}", partition=p, records=10 + p)
                    for p in range(partitions)
                ],
                held_records=186,
                delivery_counts={1: 1_234_567, 2: 3456, 3: 345, 4: 34, 5: 12},
                received=1_238_414,
                accepted=1_230_000,
                released=4000,
                rejected=12,
                dead_lettered=34,
                expired=2,
                retried=3900,
                renewals=120_000,
                errors=4100,
                latency_p50=0.0123,
                latency_p90=0.25,
                latency_p99=2.5,
                latency_count=2500,
            )
            for r in range(routes)
        ],
        errors=collector.errors(),
    )


async def read_reports(bootstrap: str, topic: str) -> list[ProcessReport]:
    """Every report in ``topic`` (one partition) right now, in log order."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from aioshare.admin import ShareAdmin

    async with ShareAdmin(bootstrap) as admin:
        if topic not in {t.name for t in await admin.list_topics()}:
            return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, 0)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[ProcessReport] = []
        async with asyncio.timeout(10):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    out.extend(decode_report(r.value) for r in records)
        return out
    finally:
        await consumer.stop()


async def wait_for_report(
    bootstrap: str,
    topic: str,
    predicate: Callable[[ProcessReport], bool],
    timeout: float = 10.0,  # noqa: ASYNC109 -- a test's bound
) -> ProcessReport:
    async with asyncio.timeout(timeout):
        while True:
            for report in reversed(await read_reports(bootstrap, topic)):
                if predicate(report):
                    return report
            await asyncio.sleep(0.05)


# ------------------------------------------------------------------------------ codec


def test_round_trip() -> None:
    report = realistic_report()
    assert decode_report(encode_report(report)) == report


def test_realistic_report_is_a_few_kb() -> None:
    # Typical: 2 routes on 6 partitions each, during a poison-record flood (20 errors, 1 traceback).
    # Measured: 5768 bytes (1496 of them the routes).
    typical = len(encode_report(realistic_report(routes=2, partitions=6, distinct_errors=False)))
    assert 2_000 < typical <= 6_000, typical
    # Heavy: 4 routes holding records of 12 partitions each, 20 errors (10 sent) with distinct
    # tracebacks (~2 KB of them sent) and long messages.  Measured: 8080 bytes.
    heavy = len(encode_report(realistic_report()))
    assert heavy <= 9_000, heavy
    # A quiet process.
    assert len(encode_report(realistic_report(routes=2, partitions=6, errors=0))) <= 2_000


def test_unknown_fields_from_a_newer_writer_are_ignored() -> None:
    report = realistic_report(routes=1, errors=1)
    raw = msgspec.to_builtins(report)
    raw["gpu_memory"] = 12
    raw["routes"][0]["shiny_new_counter"] = 7
    raw["errors"][0]["span_id"] = "abc"
    decoded = decode_report(msgspec.msgpack.encode(raw))
    assert decoded == report


def test_a_newer_major_version_is_refused_with_a_typed_error() -> None:
    raw = msgspec.to_builtins(realistic_report(routes=1, errors=0))
    raw["version"] = 2
    raw["routes"] = "something else entirely"
    with pytest.raises(ReportVersionError) as info:
        decode_report(msgspec.msgpack.encode(raw))
    assert info.value.version == 2
    assert isinstance(info.value, ReportDecodeError)


@pytest.mark.parametrize("data", [b"", b"\xc1garbage", msgspec.msgpack.encode([1, 2, 3])])
def test_garbage_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(ReportDecodeError):
        decode_report(data)


def test_a_report_without_required_fields_is_a_decode_error() -> None:
    with pytest.raises(ReportDecodeError):
        decode_report(msgspec.msgpack.encode({"version": 1}))


# ------------------------------------------------------------------------------ sources


def received(route: str, dc: int) -> Event:
    return Event(
        EventKind.RECEIVED, route=route, time=0.0, topic="t", partition=0, offset=dc, delivery_count=dc
    )


def test_metrics_bucket_delivery_counts_of_five_and_more() -> None:
    metrics = Metrics()
    bus = EventBus()
    metrics.attach(bus)
    for dc in (1, 1, 2, 4, 5, 6, 9):
        bus.emit(received("r", dc))  # the event path (other subscribers listen)
    metrics.count_received("other", [_Rec("t", 1)])  # the batch path (only the metrics listen)
    metrics.count_received("r", [_Rec("t", 7)])
    assert DELIVERY_COUNT_CAP == 5
    assert metrics.delivery_counts("r") == {1: 2, 2: 1, 4: 1, 5: 4}
    assert metrics.delivery_counts("other") == {1: 1}
    assert metrics.delivery_counts("nobody") == {}
    assert metrics.value("records-consumed-total", route="r") == 8


@dataclasses.dataclass
class _Rec:
    topic: str
    delivery_count: int


def test_collector_keeps_the_last_errors_newest_last_with_bounded_tracebacks() -> None:
    collector = ReportCollector(max_errors=3, wall_clock=lambda: 123.0)
    assert collector.errors() == []
    for i in range(5):
        try:
            raise ValueError(f"boom {i}" + "x" * (2000 if i == 4 else 0))
        except ValueError as exc:
            collector.on_event(
                Event(EventKind.ERROR, "r", 0.0, "t", 1, 10 + i, 2, error=exc, reason="handler")
            )
    collector.on_event(
        Event(EventKind.ERROR, "r", 0.0, error=RuntimeError("dlq down"), reason="dead-letter-failed")
    )
    errors = collector.errors()
    assert [(e.offset, e.reason) for e in errors] == [
        (13, "handler"),
        (14, "handler"),
        (None, "dead-letter-failed"),
    ]
    last_handler = errors[1]
    assert last_handler.at == 123.0
    assert (last_handler.topic, last_handler.partition, last_handler.delivery_count) == ("t", 1, 2)
    assert last_handler.exception_type == "builtins.ValueError"
    assert len(last_handler.message) <= 300 and last_handler.message.startswith("boom 4")
    assert "Traceback" in last_handler.traceback_head and len(last_handler.traceback_head) <= 1024
    assert errors[2].topic is None and errors[2].exception_type == "builtins.RuntimeError"
    # The next report repeats the errors (a lost report loses none), without the tracebacks.
    again = collector.errors()
    assert [e.offset for e in again] == [13, 14, None]
    assert all(e.traceback_head == "" for e in again)
    assert [msgspec.structs.replace(e, traceback_head="") for e in errors] == again


def test_tracebacks_of_an_error_flood_stay_within_a_budget() -> None:
    collector = ReportCollector(max_errors=10)
    for i in range(10):
        try:
            raise ValueError("x" * 5000)
        except ValueError as exc:
            exc.add_note("\n".join(f"note line {n} of error {i}" + "y" * 200 for n in range(20)))
            collector.on_event(Event(EventKind.ERROR, "r", 0.0, "t", 0, i, 1, error=exc, reason="handler"))
    errors = collector.errors()
    with_tb = [e.offset for e in errors if e.traceback_head]
    assert with_tb == [8, 9]  # the newest two fit in the 2 KB budget
    assert sum(len(e.traceback_head) for e in errors) <= 2048


def test_quantiles_interpolate_within_buckets() -> None:
    bounds = (0.1, 1.0, 10.0)
    assert quantiles(bounds, [0, 0, 0, 0], (0.5,)) == [None]
    # 10 calls in (0.1, 1.0]: the median is halfway through that bucket.
    assert quantiles(bounds, [0, 10, 0, 0], (0.5,)) == [pytest.approx(0.55)]
    p50, p99 = quantiles(bounds, [90, 0, 9, 1], (0.5, 0.99))
    assert p50 == pytest.approx(0.1 * 50 / 90)
    assert p99 == pytest.approx(10.0)


def test_reports_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIOSHARE_REPORTS", raising=False)
    assert reports_enabled()
    for off in ("0", "false", "OFF", "no"):
        monkeypatch.setenv("AIOSHARE_REPORTS", off)
        assert not reports_enabled()
    monkeypatch.setenv("AIOSHARE_REPORTS", "1")
    assert reports_enabled()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"report_interval": 0}, "report_interval"),
        ({"report_interval": "5"}, "report_interval"),
        ({"report_topic": ""}, "report_topic"),
        ({"reports": "yes"}, "reports"),
    ],
)
def test_app_validates_report_options(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        App("127.0.0.1:9092", **kwargs)


# ------------------------------------------------------------------------------ the publisher


class FlakyProducer:
    """A stand-in for AIOKafkaProducer whose sends fail while ``down``."""

    def __init__(self) -> None:
        self.down = True
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.stopped = False

    async def start(self) -> None:
        pass

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        if self.down:
            raise ConnectionError("broker unreachable")
        self.sent.append((topic, key, value))

    async def stop(self) -> None:
        self.stopped = True


async def test_publish_failures_warn_once_then_debug_then_info_on_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    producer = FlakyProducer()
    publisher = ReportPublisher(
        "127.0.0.1:1",
        list,
        topic="reports",
        create_topic=False,
        producer_factory=lambda options: producer,
    )
    caplog.set_level(logging.DEBUG, logger=REPORT_LOGGER)
    for _ in range(3):
        assert not await publisher.publish()
    producer.down = False
    assert await publisher.publish()
    assert await publisher.publish()
    records = [r for r in caplog.records if r.name == REPORT_LOGGER]
    levels = [r.levelname for r in records]
    assert levels == ["WARNING", "DEBUG", "DEBUG", "INFO"]
    assert "'reports'" in records[0].getMessage() and "broker unreachable" in records[0].getMessage()
    assert (publisher.published, publisher.failures) == (2, 3)
    [key] = {k for _, k, _ in producer.sent}
    assert key == publisher.process_id.encode()
    assert [decode_report(v).seq for _, _, v in producer.sent] == sorted(
        decode_report(v).seq for _, _, v in producer.sent
    )
    await publisher.close()
    assert decode_report(producer.sent[-1][2]).state == "stopped"
    assert producer.stopped


async def test_no_stop_report_unless_one_was_published() -> None:
    producer = FlakyProducer()
    producer.down = False
    publisher = ReportPublisher(
        "127.0.0.1:1", list, create_topic=False, producer_factory=lambda options: producer
    )
    await publisher.start()
    await publisher.close()
    assert producer.sent == []
    assert not publisher.running


async def test_no_stop_report_after_a_failed_publish() -> None:
    producer = FlakyProducer()
    publisher = ReportPublisher(
        "127.0.0.1:1", list, create_topic=False, producer_factory=lambda options: producer
    )
    producer.down = False
    assert await publisher.publish()
    producer.down = True
    assert not await publisher.publish()  # the broker is gone: do not wait on it at shutdown
    producer.down = False
    await publisher.close()
    assert [decode_report(v).state for _, _, v in producer.sent] == ["running"]


class HangingProducer(FlakyProducer):
    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        if self.sent:
            await asyncio.Event().wait()  # never answers
        self.sent.append((topic, key, value))


async def test_the_stop_report_is_bounded_by_its_timeout() -> None:
    producer = HangingProducer()
    publisher = ReportPublisher(
        "127.0.0.1:1",
        list,
        create_topic=False,
        stop_timeout=0.05,
        producer_factory=lambda options: producer,
    )
    assert await publisher.publish()
    async with asyncio.timeout(5):
        await publisher.close()
    assert publisher.failures == 1 and producer.stopped


# ------------------------------------------------------------------------------ an App on the embedded broker


async def test_app_reports_what_its_route_did(
    aioshare_broker: ThreadedBroker, aioshare_app: Callable[..., App]
) -> None:
    topic = await aioshare_broker.create_topic(partitions=2)
    app = aioshare_app(reports=True, report_topic="reports-e2e", report_interval=0.1)

    @app.handler(
        topic,
        group_id="reporting",
        retry=Backoff(initial=0.01, max=0.01, jitter=False),
        max_attempts=2,
        dead_letter_topic=f"{topic}.dlq",
    )
    async def handle(msg: Message[bytes]) -> None:
        value = msg.value.decode()
        if value.startswith("bad"):
            raise ValueError(f"cannot handle {value}")
        if value.startswith("no"):
            raise Reject("not wanted")

    await prepare(app)
    values = ["ok-1", "ok-2", "bad-1", "ok-3", "no-1", "ok-4", "ok-5", "no-2"]
    offsets = {}
    for i, value in enumerate(values):
        [offsets[value]] = await aioshare_broker.produce(topic, [value], partition=i % 2)
    settled: set[tuple[int, int]] = set()
    app.events.subscribe(
        lambda e: settled.add((e.partition or 0, e.offset or 0)),
        kinds=[EventKind.ACCEPTED, EventKind.REJECTED, EventKind.DEAD_LETTERED],
    )
    async with app:
        await wait_until(lambda: len(settled) == len(values), timeout=20)
        assert app.reporter is not None
        published = app.reporter.published
        await wait_until(lambda: app.reporter is not None and app.reporter.published > published + 1)
        assert app.running
    bootstrap = aioshare_broker.bootstrap_servers
    reports = await read_reports(bootstrap, "reports-e2e")
    assert len(reports) >= 3
    assert len({r.process_id for r in reports}) == 1
    assert [r.seq for r in reports] == sorted(r.seq for r in reports)
    final = reports[-1]
    assert final.state == "stopped"
    assert [r.state for r in reports[:-1]] == ["running"] * (len(reports) - 2) + [reports[-2].state]
    assert final.interval_s == 0.1 and final.uptime_s > 0 and final.pid > 0 and final.host
    [route] = final.routes
    assert (route.name, route.group_id, route.topics) == ("handle", "reporting", [topic])
    # 5 ok + 2 rejected + bad-1 twice (retried after delivery 1, dead-lettered after 2).
    assert route.received == 9
    assert route.accepted == 5
    assert route.rejected == 2
    assert route.dead_lettered == 1
    assert route.retried == 1
    assert route.released == 1
    assert route.expired == 0
    assert route.errors == 2  # two handler exceptions (Reject is an outcome, not an error)
    assert route.delivery_counts == {1: 8, 2: 1}
    assert route.held == [] and route.held_records == 0 and route.busy == 0
    assert route.concurrency == 10
    bad_partition = values.index("bad-1") % 2
    handler_errors = [e for e in final.errors if e.reason == "handler"]
    assert [(e.topic, e.partition, e.offset, e.delivery_count) for e in handler_errors] == [
        (topic, bad_partition, offsets["bad-1"], 1),
        (topic, bad_partition, offsets["bad-1"], 2),
    ]
    assert handler_errors[-1].exception_type == "builtins.ValueError"
    assert handler_errors[-1].message == "cannot handle bad-1"
    # Each traceback goes out once: in the first report that carried its error.
    tracebacks = {
        (e.offset, e.delivery_count): e.traceback_head for r in reports for e in r.errors if e.traceback_head
    }
    assert "cannot handle bad-1" in tracebacks[(offsets["bad-1"], 2)]
    # Latency percentiles cover the handler calls of each interval: 9 calls in all.
    assert sum(r.routes[0].latency_count for r in reports) == 9
    seen = [r.routes[0] for r in reports if r.routes[0].latency_count]
    assert all(x.latency_p50 is not None and x.latency_p99 is not None for x in seen)


async def test_held_records_and_busy_slots_are_reported(
    aioshare_broker: ThreadedBroker, aioshare_app: Callable[..., App]
) -> None:
    topic = await aioshare_broker.create_topic(partitions=2)
    app = aioshare_app(reports=True, report_topic="reports-held", report_interval=0.1)
    gate = asyncio.Event()

    @app.handler(topic, group_id="holders", concurrency=3)
    async def hold(msg: Message[bytes]) -> None:
        await gate.wait()

    await prepare(app)
    await aioshare_broker.produce(topic, ["a", "b"], partition=0)
    await aioshare_broker.produce(topic, ["c"], partition=1)
    bootstrap = aioshare_broker.bootstrap_servers
    async with app:
        busy = await wait_for_report(
            bootstrap, "reports-held", lambda r: r.routes[0].received == 3 and r.routes[0].busy == 3
        )
        gate.set()
    [route] = busy.routes
    assert route.concurrency == 3
    assert route.held_records == 3
    assert {(h.topic, h.partition): h.records for h in route.held} == {(topic, 0): 2, (topic, 1): 1}
    final = (await read_reports(bootstrap, "reports-held"))[-1]
    assert final.state == "stopped"
    assert final.routes[0].held == [] and final.routes[0].busy == 0 and final.routes[0].accepted == 3


async def test_no_report_and_no_topic_before_the_first_interval(
    aioshare_broker: ThreadedBroker, aioshare_app: Callable[..., App]
) -> None:
    topic = await aioshare_broker.create_topic()
    app = aioshare_app(reports=True, report_topic="reports-never")  # the default interval: 5 s

    @app.handler(topic, group_id="quick")
    async def handle(msg: Message[bytes]) -> None:
        pass

    await prepare(app)
    async with app:
        assert app.reporter is not None and app.reporter.running
    assert app.reporter.published == 0 and app.reporter.failures == 0
    assert not app.reporter.running
    from aioshare.admin import ShareAdmin

    async with ShareAdmin(aioshare_broker.bootstrap_servers) as admin:
        assert "reports-never" not in {t.name for t in await admin.list_topics()}


async def test_reports_off_by_option_or_environment(
    aioshare_broker: ThreadedBroker, aioshare_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = await aioshare_broker.create_topic()
    monkeypatch.setenv("AIOSHARE_REPORTS", "0")
    by_env = aioshare_app(reports=True, report_interval=0.01)
    by_option = aioshare_app(reports=False, report_interval=0.01)
    for app in (by_env, by_option):
        app.handler(topic, group_id="off")(_noop)
        async with app:
            assert app.reporter is None
    monkeypatch.delenv("AIOSHARE_REPORTS")


async def _noop(msg: Message[bytes]) -> None:
    pass


async def test_a_refused_report_topic_never_disturbs_the_app(
    aioshare_broker: ThreadedBroker, aioshare_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    topic = await aioshare_broker.create_topic()
    # The broker refuses to create a topic of that name (INVALID_TOPIC_EXCEPTION).
    app = aioshare_app(reports=True, report_topic="not a valid topic!", report_interval=0.05)
    handled: list[bytes] = []

    @app.handler(topic, group_id="unbothered")
    async def handle(msg: Message[bytes]) -> None:
        handled.append(msg.value)

    await prepare(app)
    caplog.set_level(logging.DEBUG, logger=REPORT_LOGGER)
    async with app:
        assert app.reporter is not None
        await wait_until(lambda: app.reporter is not None and app.reporter.failures >= 3, timeout=15)
        await aioshare_broker.produce(topic, ["after"])
        await wait_until(lambda: handled == [b"after"], timeout=10)
        assert app.running and app.failure is None
    warnings = [r for r in caplog.records if r.name == REPORT_LOGGER and r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "'not a valid topic!'" in warnings[0].getMessage()
    assert app.reporter.published == 0


async def test_consumer_reporter_publishes_for_a_bare_share_consumer(aioshare_broker: ThreadedBroker) -> None:
    from aioshare.share import ShareConsumer

    topic = await aioshare_broker.create_topic()
    bootstrap = aioshare_broker.bootstrap_servers
    await aioshare_broker.set_group_config("bare", {"share.auto.offset.reset": "earliest"})
    await aioshare_broker.produce(topic, ["x", "y"])
    async with ShareConsumer(
        topic, group_id="bare", bootstrap_servers=bootstrap, ack_mode="explicit", max_in_flight=7
    ) as consumer:
        async with ConsumerReporter(
            consumer, bootstrap, group_id="bare", topic="reports-consumer", interval=0.1
        ) as reporter:
            got = []
            async with asyncio.timeout(10):
                while len(got) < 2:
                    got.extend(await consumer.getmany(timeout=0.2))
            report = await wait_for_report(
                bootstrap, "reports-consumer", lambda r: r.routes[0].held_records == 2
            )
            for msg in got:
                msg.accept()
            assert reporter.publisher.published >= 1
    assert report.kind == "consumer"
    [route] = report.routes
    assert (route.name, route.group_id, route.topics, route.concurrency) == ("consumer", "bare", [topic], 7)
    assert (await read_reports(bootstrap, "reports-consumer"))[-1].state == "stopped"


def test_error_report_is_frozen() -> None:
    err = ErrorReport(at=1.0, route="r", reason="handler")
    with pytest.raises(AttributeError):
        err.route = "x"  # type: ignore[misc]
