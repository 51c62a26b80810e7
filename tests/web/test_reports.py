"""The dashboard's side of the process reports: ReportStore (fake clock) and ReportReader (embedded broker)."""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
import pytest

from aioshare.runtime.report import ErrorReport, HeldPartition, ProcessReport, RouteReport, encode_report
from aioshare.testing import ThreadedBroker
from aioshare.web.reports import OUTCOMES, ReportReader, ReportStore
from tests.kit import wait_until

T0 = 1_700_000_000.0  # a multiple of 10: bucket boundaries fall on T0 + 10 k


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def route(name: str = "r", group: str = "g", **counters: Any) -> RouteReport:
    counters.setdefault("topics", ["t"])
    return RouteReport(name=name, group_id=group, **counters)


def report(
    pid: str,
    seq: int,
    routes: list[RouteReport] | None = None,
    *,
    state: str = "running",
    interval: float = 5.0,
    uptime: float = 0.0,
    errors: list[ErrorReport] | None = None,
    host: str = "h",
) -> ProcessReport:
    return ProcessReport(
        process_id=pid,
        seq=seq,
        host=host,
        pid=seq,
        interval_s=interval,
        uptime_s=uptime,
        state=state,  # type: ignore[arg-type]
        routes=routes if routes is not None else [route()],
        errors=errors or [],
    )


def error(at: float, offset: int, route_name: str = "r") -> ErrorReport:
    return ErrorReport(
        at=at,
        route=route_name,
        reason="handler",
        topic="t",
        partition=0,
        offset=offset,
        delivery_count=1,
        exception_type="builtins.ValueError",
        message=f"boom {offset}",
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> ReportStore:
    return ReportStore(clock=clock)


# ------------------------------------------------------------------------------ processes


def test_latest_report_per_process_and_stale_marking(store: ReportStore, clock: FakeClock) -> None:
    store.add(report("a", 1, interval=5.0), T0)
    store.add(report("a", 2, interval=5.0), T0 + 5)
    store.add(report("b", 1, interval=1.0), T0 + 5)
    clock.now = T0 + 7
    views = {v.process_id: v for v in store.processes()}
    assert views["a"].report.seq == 2 and views["a"].last_seen_s == 2.0
    assert not views["a"].stale and not views["b"].stale
    # b reports every second: 3 silent seconds make it stale; a (every 5 s) is still fine.
    clock.now = T0 + 8.5
    views = {v.process_id: v for v in store.processes()}
    assert views["b"].stale and not views["a"].stale
    clock.now = T0 + 20.5
    assert all(v.stale for v in store.processes())
    assert store.process("a") is not None and store.process("a").stale  # type: ignore[union-attr]
    assert store.process("nobody") is None


def test_a_stopped_process_is_stopped_not_stale(store: ReportStore, clock: FakeClock) -> None:
    store.add(report("a", 1), T0)
    store.add(report("a", 2, state="stopped"), T0 + 1)
    clock.now = T0 + 1000
    [view] = store.processes()
    assert view.stopped and not view.stale


def test_duplicates_and_late_reports_are_ignored(store: ReportStore) -> None:
    assert store.add(report("a", 2), T0)
    assert not store.add(report("a", 2), T0 + 1)
    assert not store.add(report("a", 1), T0 + 2)
    assert store.revision == 1
    assert store.sample_count() == 1


def test_processes_gone_for_an_hour_are_dropped(store: ReportStore, clock: FakeClock) -> None:
    store.add(report("old", 1), T0)
    clock.now = T0 + 3000
    store.add(report("new", 1), clock.now)
    assert len(store) == 2
    clock.now = T0 + 3601
    assert [v.process_id for v in store.processes()] == ["new"]
    assert not store.add(report("ancient", 1), T0)  # older than anything kept


def test_memory_is_bounded(clock: FakeClock) -> None:
    store = ReportStore(clock=clock, max_samples=50, max_errors=30)
    for seq in range(1, 201):
        clock.now = T0 + seq
        store.add(report("a", seq, errors=[error(clock.now - k, seq * 10 + k) for k in range(5)]), clock.now)
    assert store.sample_count() == 50
    assert len(store.errors(limit=1000)) == 30
    # Time-bounded as well: an hour's samples at most (plus the base of the first delta).
    store = ReportStore(clock=clock, retention_s=100)
    for seq in range(1, 301):
        clock.now = T0 + seq
        store.add(report("a", seq), clock.now)
    assert store.sample_count() == 102  # 200..300, and 199: the base of the first delta


# ------------------------------------------------------------------------------ groups and errors


def test_group_held_sums_live_processes_only(store: ReportStore, clock: FakeClock) -> None:
    held = [
        HeldPartition(topic="t", partition=0, records=3),
        HeldPartition(topic="t", partition=1, records=1),
    ]
    store.add(report("a", 1, [route(held=held), route("other", "g2", held=held)]), T0)
    store.add(report("b", 1, [route(held=[HeldPartition(topic="t", partition=0, records=2)])]), T0)
    store.add(report("gone", 1, [route(held=held)]), T0 - 100)
    store.add(report("done", 1, [route(held=held)], state="stopped"), T0)
    assert store.group_held("g") == {("t", 0): 5, ("t", 1): 1}
    assert store.group_held("g2") == {("t", 0): 3, ("t", 1): 1}
    assert store.group_held("nope") == {}
    assert [v.process_id for v in store.group_processes("g")] == ["a", "b", "done", "gone"]
    assert [v.process_id for v in store.group_processes("g2")] == ["a"]
    assert store.groups() == ["g", "g2"]


def test_group_delivery_counts(store: ReportStore) -> None:
    store.add(
        report("a", 1, [route(delivery_counts={1: 10, 2: 1}), route("x", "g2", delivery_counts={1: 7})]), T0
    )
    store.add(report("b", 1, [route(delivery_counts={1: 5, 5: 2})]), T0)
    assert store.group_delivery_counts("g") == {1: 15, 2: 1, 5: 2}
    assert store.group_delivery_counts("g2") == {1: 7}


def test_errors_are_deduplicated_across_overlapping_reports(store: ReportStore) -> None:
    e1, e2, e3 = error(T0 - 3, 1), error(T0 - 2, 2), error(T0 - 1, 3, route_name="other")
    store.add(report("a", 1, [route(), route("other", "g2")], errors=[e1, e2]), T0)
    store.add(report("a", 2, [route(), route("other", "g2")], errors=[e1, e2, e3]), T0 + 5)
    store.add(report("b", 1, errors=[e1]), T0 + 5)  # another process: its own error
    # Newest first; equal times keep their arrival order.
    assert store.errors() == [("a", e3), ("a", e2), ("a", e1), ("b", e1)]
    assert len(store.errors()) == 4
    assert store.errors(limit=1) == [("a", e3)]
    assert [(pid, e.offset) for pid, e in store.errors(group_id="g2")] == [("a", 3)]


# ------------------------------------------------------------------------------ series


def test_rates_come_from_counter_deltas(store: ReportStore, clock: FakeClock) -> None:
    store.add(report("a", 1, [route(accepted=0, received=0)]), T0)
    store.add(report("a", 2, [route(accepted=100, received=120, errors=3)]), T0 + 10)
    store.add(
        report("a", 3, [route(accepted=300, received=320, errors=3, held_records=4, busy=2, concurrency=10)]),
        T0 + 20,
    )
    series = store.series("g", now=T0 + 30.5, window_s=30)
    assert series.t == [T0, T0 + 10, T0 + 20]
    assert series.bucket_s == 10
    assert series.rates["accepted"] == [10.0, 20.0, 0.0]
    assert series.rates["received"] == [12.0, 20.0, 0.0]
    assert series.errors == [3, 0, 0]
    assert set(series.rates) == set(OUTCOMES)
    # Gauges: the latest report by each bucket's end.
    assert series.held == [0, 0, 4]
    assert series.busy == [0, 0, 2]
    assert series.concurrency == [0, 0, 10]
    assert series.processes == [1, 1, 1]
    # Plain data for the web process.
    assert msgspec.json.decode(msgspec.json.encode(series))["rates"]["accepted"] == [10.0, 20.0, 0.0]


def test_a_lost_report_spreads_its_delta_over_the_gap(store: ReportStore) -> None:
    store.add(report("a", 1, [route(accepted=0)]), T0)
    store.add(report("a", 3, [route(accepted=200)]), T0 + 20)  # seq 2 never arrived
    assert store.series(now=T0 + 20, window_s=20).rates["accepted"] == [10.0, 10.0]


def test_the_first_report_counts_since_the_process_started(store: ReportStore) -> None:
    store.add(report("a", 1, [route(accepted=100)], uptime=10.0), T0 + 10)
    assert store.series(now=T0 + 20, window_s=20).rates["accepted"] == [10.0, 0.0]


def test_a_counter_going_down_is_a_restart(store: ReportStore) -> None:
    store.add(report("a", 1, [route(accepted=500)]), T0)
    store.add(report("a", 2, [route(accepted=50)]), T0 + 10)  # counted from 0 again
    store.add(report("a", 3, [route(accepted=150)]), T0 + 20)
    assert store.series(now=T0 + 20, window_s=20).rates["accepted"] == [5.0, 10.0]


def test_series_sums_processes_and_filters_by_group(store: ReportStore) -> None:
    for pid in ("a", "b"):
        store.add(report(pid, 1, [route(accepted=0, busy=1), route("x", "g2", accepted=0, busy=5)]), T0)
        store.add(
            report(pid, 2, [route(accepted=50, busy=1), route("x", "g2", accepted=10, busy=5)]), T0 + 10
        )
    assert store.series("g", now=T0 + 10, window_s=10).rates["accepted"] == [10.0]
    assert store.series("g2", now=T0 + 10, window_s=10).rates["accepted"] == [2.0]
    both = store.series(now=T0 + 10, window_s=10)
    assert both.rates["accepted"] == [12.0]
    assert both.busy == [12] and both.processes == [2]
    assert both.group_id is None


def test_stale_and_stopped_processes_leave_the_gauges(store: ReportStore) -> None:
    store.add(report("a", 1, [route(held_records=7)], interval=5), T0)
    store.add(report("b", 1, [route(held_records=1)], interval=5), T0)
    store.add(report("b", 2, [route(held_records=0)], state="stopped"), T0 + 12)
    series = store.series(now=T0 + 40, window_s=40)
    # a's report of T0 is live for 3 x 5 s: buckets T0 and T0+10; b's stopped at T0+12.
    assert series.held == [8, 7, 0, 0]
    assert series.processes == [2, 2, 0, 0]  # b's stop report counts in its own bucket


# ------------------------------------------------------------------------------ the reader


async def produce(
    broker: ThreadedBroker, topic: str, items: list[tuple[bytes | None, bytes]], **kwargs: Any
) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for key, value in items:
            await producer.send_and_wait(topic, value, key=key, **kwargs)
    finally:
        await producer.stop()


def live(pid: str, seq: int, accepted: int) -> tuple[bytes, bytes]:
    return pid.encode(), encode_report(report(pid, seq, [route(accepted=accepted)]))


async def test_reader_rebuilds_the_store_from_the_topic(
    aioshare_broker: ThreadedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    topic = await aioshare_broker.create_topic()
    # Written 10 minutes ago: outside the reader's rebuild window of 60 s.
    await produce(aioshare_broker, topic, [live("old", 1, 1)], timestamp_ms=int((time.time() - 600) * 1000))
    newer_major = msgspec.to_builtins(report("future", 1))
    newer_major["version"] = 2
    await produce(
        aioshare_broker,
        topic,
        [
            live("a", 1, 10),
            (b"junk", b"\xc1 not msgpack"),
            live("b", 1, 5),
            (b"junk", b"\xc1 again"),
            (b"future", msgspec.msgpack.encode(newer_major)),
            live("a", 2, 30),
        ],
    )
    store = ReportStore()
    caplog.set_level(logging.DEBUG, logger="aioshare.web.reports")
    reader = ReportReader(aioshare_broker.bootstrap_servers, topic, store, rebuild_seconds=60)
    async with reader:
        await reader.wait_rebuilt(timeout=15)
        assert sorted(v.process_id for v in store.processes()) == ["a", "b"]
        assert store.process("a").report.seq == 2  # type: ignore[union-attr]
        assert store.sample_count() == 3
        assert reader.records_skipped == 3
        # Read live from now on.
        await produce(aioshare_broker, topic, [live("c", 1, 1)])
        await wait_until(lambda: store.process("c") is not None, timeout=10)
    assert not reader.running
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # one per bad source, not per record
    assert any("junk" in w for w in warnings)
    assert any("future" in w and "version 2" in w for w in warnings)


async def test_reader_waits_quietly_for_a_missing_topic(
    aioshare_broker: ThreadedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    store = ReportStore()
    caplog.set_level(logging.INFO, logger="aioshare.web.reports")
    async with ReportReader(
        aioshare_broker.bootstrap_servers, "reports-later", store, retry_interval=0.05
    ) as reader:
        await wait_until(lambda: reader.running, timeout=1)
        assert not reader.rebuilt.is_set()
        await aioshare_broker.create_topic("reports-later")
        await produce(aioshare_broker, "reports-later", [live("a", 1, 1)])
        await wait_until(lambda: store.process("a") is not None, timeout=10)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_reader_close_is_idempotent_and_final(aioshare_broker: ThreadedBroker) -> None:
    reader = ReportReader(aioshare_broker.bootstrap_servers, "whatever")
    await reader.start()
    await reader.close()
    await reader.close()
    assert not reader.running
    with pytest.raises(RuntimeError):
        await reader.start()
