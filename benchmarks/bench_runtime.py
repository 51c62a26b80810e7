"""The runtime (aioshare.App) on I/O-bound work, against threads of librdkafka consumers.

The embedded broker runs in its own process (`python -m aioshare.cli.main broker --port 0`),
so its CPU is not the client's.  One topic of RECORDS small records on PARTITIONS partitions
is produced first (not measured); every run reads it from the start in a fresh share group
(share.auto.offset.reset=earliest) and stops once it has handled its quota.

Part 1, I/O-bound jobs: a handler that awaits asyncio.sleep(0.01) per record - a 10 ms call to
something else.  With `concurrency` C the ideal is C x 100 jobs/s; the table shows how close
the runtime (one App, `consumers` members, uvloop) gets for C = 8, 10, 50, 200, 500, 1000.

Part 2, the usual alternative: confluent_kafka.ShareConsumer (librdkafka), one consumer per
thread, THREADS threads, each doing time.sleep(0.01) per record and acknowledging it
explicitly (ideal THREADS x 100 jobs/s).  max.poll.records is set to 10 so that a thread
does not hoard records the others could work on (librdkafka's default, 500, is 5 s of work).

Part 3, the framework's own cost: an empty handler, concurrency 200.  CPU µs per job of this
process (the broker is another one) for the runtime, and for a bare ShareConsumer loop
(getmany + accept) on the same records; the difference is what routing, slots, events and
metrics add per job.

Figures: jobs/s from the first record received to the quota handled (group joins excluded),
both read from the app's metrics every 2 ms (an event subscription would add its own cost).
Run: `python -m benchmarks runtime`.  BENCH_RUNTIME_SECONDS (default 4) sizes each I/O run
(quota = ideal rate x seconds), BENCH_RUNTIME_EMPTY (default 30000) the empty-handler quota,
BENCH_RUNTIME_CONCURRENCIES (default 8,10,50,200,500,1000) the I/O runs and
BENCH_RUNTIME_PARTS (default io,threads,cost) which parts run.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from benchmarks._broker import BrokerProcess, process_cpu_seconds

PARTITIONS = int(os.environ.get("BENCH_RUNTIME_PARTITIONS", "4"))
SECONDS = float(os.environ.get("BENCH_RUNTIME_SECONDS", "4"))
EMPTY_QUOTA = int(os.environ.get("BENCH_RUNTIME_EMPTY", "30000"))
THREADS = 8
SLEEP = 0.01
CONCURRENCIES = tuple(
    int(c) for c in os.environ.get("BENCH_RUNTIME_CONCURRENCIES", "8,10,50,200,500,1000").split(",")
)
PARTS = set(os.environ.get("BENCH_RUNTIME_PARTS", "io,threads,cost").split(","))
POLL = 0.002  # seconds between two reads of the app's metrics
TIMEOUT = 120.0

BROKER_CONFIG = {
    # Members join within ~0.2 s instead of Kafka's 5 s heartbeat.
    "group.share.min.heartbeat.interval.ms": "100",
    "group.share.heartbeat.interval.ms": "200",
    # The in-flight window per share-partition (Kafka default 2000) would cap concurrency-200
    # runs on few partitions only through head-of-line effects that are not the point here.
    "group.share.partition.max.record.locks": "10000",
    "group.share.max.partition.max.record.locks": "10000",  # (its ceiling, 4000 by default)
    # From Kafka 4.3 a group's assignment is recomputed at most once a second: the second member
    # of a 4-second run would sit idle for a quarter of it.  Runs measure the steady state.
    "group.share.assignment.interval.ms": "0",
}


@dataclass
class Run:
    label: str
    jobs: int
    seconds: float
    cpu: float | None = None  # this process's CPU seconds over the run
    broker_cpu: float | None = None  # the broker's CPU seconds from first record to quota
    client_cpu: float | None = None  # this process's CPU seconds from first record to quota

    @property
    def client_share(self) -> str:
        """This process's CPU share while it ran: near 100% means the client was the limit."""
        return "n/a" if self.client_cpu is None else f"{self.client_cpu / self.seconds:.0%}"

    @property
    def broker_share(self) -> str:
        """The broker's CPU share while it served the run: near 100% means it was the limit."""
        return "n/a" if self.broker_cpu is None else f"{self.broker_cpu / self.seconds:.0%}"

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds


class Marks:
    """The first record and the quota's last: wall time, and the broker's CPU in between."""

    def __init__(self, broker_pid: int) -> None:
        self.pid = broker_pid
        self.t0: float | None = None
        self.t1 = 0.0
        self.cpu0: float | None = None
        self.cpu1: float | None = None
        self.own0 = 0.0
        self.own1 = 0.0

    def first(self) -> None:
        if self.t0 is None:
            self.t0 = time.perf_counter()
            self.cpu0 = process_cpu_seconds(self.pid)
            self.own0 = time.process_time()

    def last(self) -> None:
        self.t1 = time.perf_counter()
        self.cpu1 = process_cpu_seconds(self.pid)
        self.own1 = time.process_time()

    def run(self, jobs: int, cpu: float | None) -> Run:
        assert self.t0 is not None
        broker = None if self.cpu0 is None or self.cpu1 is None else self.cpu1 - self.cpu0
        return Run("", jobs, self.t1 - self.t0, cpu=cpu, broker_cpu=broker, client_cpu=self.own1 - self.own0)


def _quota(concurrency: int) -> int:
    return max(1000, int(concurrency * (1 / SLEEP) * SECONDS))


async def _setup(bootstrap: str, topic: str, records: int, groups: list[str]) -> None:
    from aiokafka import AIOKafkaProducer

    from aioshare.admin import ShareAdmin

    async with ShareAdmin(bootstrap) as admin:
        await admin.create_topic(topic, PARTITIONS)
        for group in groups:
            await admin.alter_group_config(group, {"share.auto.offset.reset": "earliest"})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=64 * 1024)
    await producer.start()
    try:
        value = b"x" * 100
        futures = [await producer.send(topic, value, partition=i % PARTITIONS) for i in range(records)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


# ------------------------------------------------------------------------------ the runtime


async def _runtime(
    broker: BrokerProcess,
    topic: str,
    group: str,
    quota: int,
    concurrency: int,
    consumers: int,
    sleep: float | None,
) -> Run:
    import aioshare

    app = aioshare.App(broker.bootstrap, shutdown_timeout=10, consumer_options={"fetch_max_wait": 0.05})
    marks = Marks(broker.process.pid)

    if sleep is None:

        @app.handler(topic, group_id=group, concurrency=concurrency, consumers=consumers, poll_interval=0.1)
        async def empty(msg: aioshare.Message[bytes]) -> None:
            pass

    else:

        @app.handler(topic, group_id=group, concurrency=concurrency, consumers=consumers, poll_interval=0.1)
        async def io_bound(msg: aioshare.Message[bytes]) -> None:
            await asyncio.sleep(sleep)

    # Progress is read from the app's own metrics every few ms: an event subscription would
    # add its own per-record cost to what is measured.
    metrics = app.metrics
    async with app:
        cpu0 = time.process_time()
        async with asyncio.timeout(TIMEOUT):
            while not metrics.value("records-consumed-total"):  # noqa: ASYNC110 -- polling is the point
                await asyncio.sleep(POLL)
            marks.first()
            while metrics.value("records-accepted-total") < quota:  # noqa: ASYNC110
                await asyncio.sleep(POLL)
            marks.last()
        cpu = time.process_time() - cpu0
    return marks.run(quota, cpu)


async def _bare_consumer(broker: BrokerProcess, topic: str, group: str, quota: int) -> Run:
    from aioshare.share import ShareConsumer

    consumer = ShareConsumer(
        topic, group_id=group, bootstrap_servers=broker.bootstrap, ack_mode="explicit", fetch_max_wait=0.05
    )
    got = 0
    marks = Marks(broker.process.pid)
    async with consumer:
        cpu0 = time.process_time()
        async with asyncio.timeout(TIMEOUT):
            while got < quota:
                batch = await consumer.getmany(timeout=1.0)
                if batch:
                    marks.first()
                for msg in batch:
                    msg.accept()
                got += len(batch)
            await consumer.commit()
        marks.last()
        cpu = time.process_time() - cpu0
    return marks.run(got, cpu)


def _on_uvloop(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# ------------------------------------------------------------------------------ librdkafka threads


def _confluent_threads(broker: BrokerProcess, topic: str, group: str, quota: int) -> Run:
    import confluent_kafka

    lock = threading.Lock()
    marks = Marks(broker.process.pid)
    state = {"count": 0}
    finished = threading.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        consumer: Any = confluent_kafka.ShareConsumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "log_level": 3,  # not the "preview" warning of every consumer
                "group.id": group,
                "share.acknowledgement.mode": "explicit",
                "max.poll.records": 10,
            }
        )
        try:
            consumer.subscribe([topic])
            deadline = time.monotonic() + TIMEOUT
            while not finished.is_set() and time.monotonic() < deadline:
                for msg in consumer.poll(0.2):
                    if msg.error() is not None:
                        raise RuntimeError(f"consume error: {msg.error()}")
                    with lock:
                        marks.first()
                    time.sleep(SLEEP)  # the 10 ms call, blocking its thread
                    consumer.acknowledge(msg)
                    with lock:
                        state["count"] += 1
                        if state["count"] == quota:
                            marks.last()
                            finished.set()
            consumer.commit_sync(30)
        except BaseException as exc:
            errors.append(exc)
            finished.set()
        finally:
            consumer.close()

    threads = [threading.Thread(target=worker, name=f"bench-share-{i}") for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT + 30)
    if errors:
        raise errors[0]
    if state["count"] < quota:
        raise RuntimeError(f"librdkafka threads handled {state['count']} of {quota}")
    return marks.run(quota, None)


# ------------------------------------------------------------------------------ main


def print_io_bound_header() -> None:
    """The column heads of the I/O-bound table (jobs/s against the ideal concurrency / sleep)."""
    header = (
        f"{'client':<44} {'jobs':>7} {'seconds':>8} {'jobs/s':>9} {'ideal/s':>8} {'of ideal':>9} "
        f"{'client CPU':>11} {'broker CPU':>11}"
    )
    print(header)
    print("-" * len(header))


def print_framework_cost(empty: Run, bare: Run) -> None:
    """The empty-handler runtime beside the bare consumer loop, and the CPU the runtime adds per job."""
    header = f"{'client':<44} {'jobs':>7} {'seconds':>8} {'jobs/s':>9} {'CPU µs/job':>11} {'broker CPU':>11}"
    print(header)
    print("-" * len(header))
    for label, run in (
        ("aioshare App, empty handler, concurrency 200", empty),
        ("bare ShareConsumer loop", bare),
    ):
        assert run.cpu is not None
        print(
            f"{label:<44} {run.jobs:>7} {run.seconds:>8.2f} {run.rate:>9,.0f} "
            f"{run.cpu * 1e6 / run.jobs:>11.1f} {run.broker_share:>11}",
            flush=True,
        )
    assert empty.cpu is not None and bare.cpu is not None
    overhead = (empty.cpu / empty.jobs - bare.cpu / bare.jobs) * 1e6
    print(f"runtime overhead over the bare consumer: {overhead:.1f} µs of CPU per job")


def _row(label: str, run: Run, ideal: float) -> str:
    return (
        f"{label:<44} {run.jobs:>7} {run.seconds:>8.2f} {run.rate:>9,.0f} {ideal:>8,.0f} "
        f"{run.rate / ideal:>8.0%} {run.client_share:>11} {run.broker_share:>11}"
    )


def main() -> None:
    quotas = {c: _quota(c) for c in CONCURRENCIES}
    confluent_quota = _quota(THREADS)
    needed = [EMPTY_QUOTA] if "cost" in PARTS else []
    if "io" in PARTS:
        needed += quotas.values()
    if "threads" in PARTS:
        needed.append(confluent_quota)
    records = max(needed)
    # One consumer feeds up to ~100 concurrent 10 ms jobs; more members spread the fetching.
    members = {c: max(1, c // 100) for c in CONCURRENCIES}
    names = [*map(str, CONCURRENCIES), "rdk", "empty", "bare"]
    groups = {name: f"bench-rt-{name}-{uuid.uuid4().hex[:6]}" for name in names}
    topic = f"bench-runtime-{uuid.uuid4().hex[:6]}"
    broker = BrokerProcess(BROKER_CONFIG)
    try:
        asyncio.run(_setup(broker.bootstrap, topic, records, list(groups.values())))
        print(
            f"{records} records of 100 B on {PARTITIONS} partitions; broker in its own process "
            f"(pid {broker.process.pid}); aioshare on uvloop; jobs/s from the first record received "
            "to the quota handled; broker CPU = its CPU share meanwhile (~100%: the broker is the limit)"
        )
        if "io" in PARTS or "threads" in PARTS:
            print()
            print(f"I/O-bound jobs: {SLEEP * 1000:.0f} ms of waiting per record")
            print_io_bound_header()
        if "io" in PARTS:
            for c in CONCURRENCIES:
                run = _on_uvloop(_runtime(broker, topic, groups[str(c)], quotas[c], c, members[c], SLEEP))
                plural = "s" if members[c] > 1 else ""
                print(
                    _row(f"aioshare App, concurrency {c} ({members[c]} consumer{plural})", run, c / SLEEP),
                    flush=True,
                )
        if "threads" in PARTS:
            run = _confluent_threads(broker, topic, groups["rdk"], confluent_quota)
            print(_row(f"librdkafka ShareConsumer x {THREADS} threads", run, THREADS / SLEEP), flush=True)
        if "cost" in PARTS:
            print()
            print("framework cost: empty handler (runtime) vs getmany + accept (bare ShareConsumer)")
            rt = _on_uvloop(_runtime(broker, topic, groups["empty"], EMPTY_QUOTA, 200, 2, None))
            bare = _on_uvloop(_bare_consumer(broker, topic, groups["bare"], EMPTY_QUOTA))
            print_framework_cost(rt, bare)
    finally:
        broker.close()


if __name__ == "__main__":
    main()
