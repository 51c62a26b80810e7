"""aioshare against librdkafka and Kafka's own Java client, on a real Apache Kafka broker.

One single-node Kafka (KRaft, from Maven's jars: aioshare.testing.kafka.KafkaCluster) serves
every run, with the heap and JVM options Kafka's own start scripts use (-Xmx1G -Xms1G, G1,
default JIT).  For each partition count in PARTITION_COUNTS one topic gets RECORDS records of
100 B (confluent Producer, not measured); then, in a fresh share group each
(share.auto.offset.reset=earliest as a group config), every client consumes all of them in its
own child process:

  * aioshare ShareConsumer: `getmany()` batches, `msg.value` read, `msg.accept()` per record,
    explicit mode (benchmarks.bench_consumer's child), once on the stock asyncio loop and once
    on uvloop; and `async for msg in consumer` with the same per-record work, on asyncio;
  * confluent_kafka.ShareConsumer (librdkafka): `poll()` batches, `acknowledge(msg)` per
    record, explicit mode (bench_consumer's child too);
  * Kafka's org.apache.kafka.tools.ShareConsumerPerformance (KafkaShareConsumer), as
    kafka-share-consumer-perf-test.sh runs it (-Xmx512M, G1, default JIT).  It never calls
    acknowledge(): the consumer runs in Kafka's default *implicit* mode, where the next poll()
    (and the final commitSync()) accepts everything the previous one delivered.  On the wire
    that is the same ACCEPT ranges the explicit clients send; what it skips is a per-record
    acknowledge call in the application.

Before the first measured run, librdkafka consumes every topic once unmeasured, so that the
broker's share-fetch paths are JIT-compiled (the first client would otherwise pay for that
alone).  Runs are interleaved (every client once, then again), medians of REPEAT are printed.

Figures per client run:

  * rec/s 1st: N / wall time from the first records delivered to the application to the final
    commit answered (group join, heartbeat-paced, stays out); rec/s all: from start()/subscribe
    (Java: the tool's header, printed before it builds its consumer) to the commit answered.
    For the Java tool both are taken from the moments its output lines reach this process
    (--show-detailed-stats --reporting-interval 1 prints a line after the first non-empty poll;
    the final stats line follows its commitSync).  The tool's own figure (its clock runs from
    before subscribe to the last poll, commit excluded) is printed alongside, and the JVM's
    CPU from its first records to the commit (class loading and join excluded).
  * CPU run: the client process's CPU (all threads) over the same start..commit span, µs per
    record: time.process_time() in the Python children, /proc/<pid>/stat samples for the JVM.
  * CPU proc: the child's whole CPU from resource.getrusage(RUSAGE_CHILDREN): interpreter or
    JVM start-up, imports, class loading, JIT compilation and close included.
  * broker: the Kafka JVM's CPU over the whole client run, µs per record.

Every client must consume exactly N records, and afterwards the group's lag (Kafka's
DescribeShareGroupOffsets) must be 0 on every partition: all records acknowledged.  Anything
else fails the run.

Part 2 runs benchmarks.bench_runtime's App measurements on the same broker: a handler awaiting
asyncio.sleep(0.01) at concurrency 10/50/200 (jobs/s against the ideal C x 100/s), and the
empty-handler framework cost against a bare ShareConsumer loop.

Run: `python -m benchmarks realkafka [--version 4.2.2]` (Kafka 4.4.0 by default).
BENCH_REALKAFKA_RECORDS (default 200000) sets N, BENCH_REALKAFKA_REPEAT (default 3) the runs
per client and topic (interleaved; medians printed).  Needs a JDK and Maven (or a filled
AIOSHARE_KAFKA_CACHE); without them the benchmark says so and is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

from benchmarks import bench_consumer, bench_runtime
from benchmarks._broker import process_cpu_seconds

RECORDS = int(os.environ.get("BENCH_REALKAFKA_RECORDS", "200000"))
REPEAT = int(os.environ.get("BENCH_REALKAFKA_REPEAT", "3"))
PARTITION_COUNTS = (1, 4)
VALUE_SIZE = 100
TIMEOUT = 300.0  # per client run (bench_consumer's children: its own 300 s, killed at 360 s)
ADMIN_TIMEOUT = 60.0
JAVA_TOOL = "org.apache.kafka.tools.ShareConsumerPerformance"

# kafka-run-class.sh's KAFKA_JVM_PERFORMANCE_OPTS; KafkaCluster and java_command default to
# SerialGC (and java_command to C1 only) for quick tests, which the later flags here override.
KAFKA_JVM_OPTIONS = (
    "-XX:-UseSerialGC",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)
BROKER_HEAP = "1g"  # kafka-server-start.sh: -Xmx1G -Xms1G
TOOL_HEAP = "512m"  # kafka-share-consumer-perf-test.sh: -Xmx512M
TOOL_JVM_OPTIONS = (*KAFKA_JVM_OPTIONS, "-XX:TieredStopAtLevel=4", "-Duser.language=en", "-Duser.country=US")

# id: (label, acknowledgement mode)
CLIENTS = {
    "aioshare": ("aioshare ShareConsumer, asyncio", "explicit"),
    "aioshare-uvloop": ("aioshare ShareConsumer, uvloop", "explicit"),
    "aioshare-iter": ("aioshare async for, asyncio", "explicit"),
    "confluent": ("librdkafka ShareConsumer", "explicit"),
    "java": ("Java ShareConsumerPerformance", "implicit"),
}
_LOOPS = {"aioshare": "asyncio", "aioshare-uvloop": "uvloop", "aioshare-iter": "asyncio"}
_FIGURES = ("wall", "total", "cpu", "process_cpu", "broker_cpu")

_FINAL = re.compile(
    r"^(?P<start>[^,]+), (?P<end>[^,]+), (?P<mb>[\d.]+), (?P<mbs>[\d.]+), (?P<rate>[\d.]+), "
    r"(?P<records>\d+), (?P<ms>\d+)$"
)
_PROGRESS = " for share consumer "


class _KafkaBroker:
    """What bench_runtime's measurements use of a broker: its bootstrap and process (for CPU)."""

    def __init__(self, bootstrap: str, process: subprocess.Popen[bytes]) -> None:
        self.bootstrap = bootstrap
        self.process = process


def _load() -> str:
    return "load avg " + " ".join(f"{x:.2f}" for x in os.getloadavg())


# ------------------------------------------------------------------------------- admin


async def _configure(bootstrap: str, topics: dict[str, int], groups: list[str]) -> None:
    from aioshare.admin import ShareAdmin

    async with asyncio.timeout(ADMIN_TIMEOUT), ShareAdmin(bootstrap) as admin:
        for topic, partitions in topics.items():
            await admin.create_topic(topic, partitions)
        for group in groups:
            # Kafka's default is latest, evaluated at first fetch: the records are older.
            await admin.alter_group_config(group, {"share.auto.offset.reset": "earliest"})


async def _check_acknowledged(bootstrap: str, topic: str, group: str) -> bool | None:
    """The group's lag is 0 on every partition of ``topic``: every record was acknowledged.

    (The persisted share-partition start offset may stay one fetch batch behind the log end even
    then, for every client alike, so it is not the test.)  None when the broker does not report
    lag (DescribeShareGroupOffsets v0).
    """
    from aioshare.admin import ShareAdmin

    async with asyncio.timeout(ADMIN_TIMEOUT), ShareAdmin(bootstrap) as admin:
        deadline = time.monotonic() + 15.0
        while True:
            offsets = await admin.describe_share_group_offsets(group, [topic])
            lags = {tp.partition: info.lag for tp, info in offsets.items()}
            if any(info.error is not None for info in offsets.values()):
                raise RuntimeError(f"group {group} on {topic}: {offsets}")
            if lags and all(lag == -1 for lag in lags.values()):
                return None
            if lags and all(lag == 0 for lag in lags.values()):
                return True
            if time.monotonic() > deadline:
                raise RuntimeError(f"group {group} on {topic}: lags {lags} after the client finished")
            await asyncio.sleep(0.5)


# ------------------------------------------------------------------------------- clients


def _children_cpu() -> float:
    return bench_consumer._children_cpu()


def _run_java(version: str, bootstrap: str, topic: str, group: str) -> dict[str, Any]:
    from aioshare.testing.kafka.java import java_command

    command = java_command(
        version,
        JAVA_TOOL,
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--group",
        group,
        "--num-records",
        str(RECORDS),
        "--timeout=60000",
        # A progress line after every non-empty poll at least 1 ms after the last: the first
        # marks the first records delivered (a few hundred lines per run, negligible CPU).
        "--show-detailed-stats",
        "--reporting-interval",
        "1",
        heap=TOOL_HEAP,
        jvm_options=TOOL_JVM_OPTIONS,
    )
    lines: list[tuple[float, float | None, str]] = []
    before = _children_cpu()
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True
        )
        assert process.stdout is not None
        stdout = process.stdout

        def read() -> None:
            for line in stdout:
                now = time.perf_counter()
                try:
                    cpu: float | None = process_cpu_seconds(process.pid)
                except (OSError, IndexError, ValueError):
                    cpu = None  # already gone (only possible after the last line)
                lines.append((now, cpu, line.rstrip("\n")))

        reader = threading.Thread(target=read, name="java-tool-stdout", daemon=True)
        reader.start()
        try:
            process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{JAVA_TOOL} did not finish within {TIMEOUT:.0f} s") from None
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(30)
            reader.join(10)
            stdout.close()
        process_cpu = _children_cpu() - before
        stderr.seek(0)
        errors = stderr.read().decode(errors="replace")
    text = "\n".join(line for _, _, line in lines)
    if process.returncode != 0:
        raise RuntimeError(f"{JAVA_TOOL} failed ({process.returncode}):\n{text[-2000:]}\n{errors[-3000:]}")
    header = next((i for i, (_, _, line) in enumerate(lines) if line.startswith("start.time")), None)
    progress = next((i for i, (_, _, line) in enumerate(lines) if _PROGRESS in line), None)
    final = [(i, m) for i, (_, _, line) in enumerate(lines) if (m := _FINAL.match(line))]
    if header is None or progress is None or len(final) != 1 or "WARNING" in text:
        raise RuntimeError(f"{JAVA_TOOL}: unexpected output:\n{text[-3000:]}\n{errors[-2000:]}")
    index, match = final[0]
    t_header, cpu_header, _ = lines[header]
    t_first, cpu_first, _ = lines[progress]
    t_end, cpu_end, _ = lines[index]
    if cpu_header is None or cpu_first is None or cpu_end is None:
        raise RuntimeError(f"{JAVA_TOOL}: its CPU could not be sampled")
    return {
        "records": int(match["records"]),
        "wall": t_end - t_first,
        "total": t_end - t_header,
        "cpu": cpu_end - cpu_header,
        "cpu_from_first": cpu_end - cpu_first,
        "process_cpu": process_cpu,
        "tool_rate": float(match["rate"]),
        "tool_mbs": float(match["mbs"]),
    }


def _run(client: str, version: str, broker: _KafkaBroker, topic: str, group: str) -> dict[str, Any]:
    broker0 = process_cpu_seconds(broker.process.pid)
    if client == "java":
        result = _run_java(version, broker.bootstrap, topic, group)
    elif client == "confluent":
        result = bench_consumer._run_client(client, broker.bootstrap, topic, group, records=RECORDS)
    else:
        child = "aioshare-iter" if client == "aioshare-iter" else "aioshare-getmany"
        result = bench_consumer._run_client(
            child, broker.bootstrap, topic, group, records=RECORDS, loop=_LOOPS[client]
        )
    result["broker_cpu"] = process_cpu_seconds(broker.process.pid) - broker0
    if result["records"] != RECORDS:
        raise RuntimeError(f"{client} consumed {result['records']} of {RECORDS} records from {topic}")
    result["lag_checked"] = asyncio.run(_check_acknowledged(broker.bootstrap, topic, group))
    return result


# ------------------------------------------------------------------------------- tables


def _us(seconds: float) -> float:
    return seconds * 1e6 / RECORDS


def _print_table(partitions: int, rows: dict[str, dict[str, float]], runs: dict[str, list[Any]]) -> None:
    print(
        f"{partitions} partition{'s' if partitions > 1 else ''}: {RECORDS:,} records of {VALUE_SIZE} B "
        f"({'median of ' + str(REPEAT) + ' runs' if REPEAT > 1 else 'one run'} per client; {_load()})"
    )
    header = (
        f"{'client':<31} {'acks':<8} {'rec/s 1st':>10} {'rec/s all':>10} {'1st rec s':>9} "
        f"{'CPU run':>8} {'CPU proc':>9} {'broker':>7}"
    )
    print(header)
    print("-" * len(header))
    for client, (label, acks) in CLIENTS.items():
        r = rows[client]
        print(
            f"{label:<31} {acks:<8} {RECORDS / r['wall']:>10,.0f} {RECORDS / r['total']:>10,.0f} "
            f"{r['total'] - r['wall']:>9.2f} {_us(r['cpu']):>8.2f} {_us(r['process_cpu']):>9.2f} "
            f"{_us(r['broker_cpu']):>7.2f}"
        )
    java = runs["java"]
    print(
        "  CPU columns: µs per record.  The Java tool's own report: "
        f"{statistics.median(r['tool_rate'] for r in java):,.0f} rec/s, "
        f"{statistics.median(r['tool_mbs'] for r in java):.2f} MB/s (its clock: before subscribe to the "
        "last poll).  Its JVM's CPU from the first records to the commit: "
        f"{_us(statistics.median(r['cpu_from_first'] for r in java)):.2f} µs/record (JIT and GC "
        "threads included, start-up and join not)"
    )
    if REPEAT > 1:
        spread = "; ".join(
            f"{CLIENTS[c][0].replace('ShareConsumer, ', '')}: "
            + " ".join(f"{RECORDS / r['wall'] / 1e3:.1f}k" for r in found)
            for c, found in runs.items()
        )
        print(f"  every run, rec/s 1st in run order: {spread}")
    checked = [r["lag_checked"] for found in runs.values() for r in found]
    print(
        f"  checks: every run consumed exactly {RECORDS:,} records; "
        + (
            "group lag 0 on every partition afterwards"
            if all(checked)
            else "group lag not reported by this broker (acknowledgements not checked)"
        )
    )
    for mine in _LOOPS:
        a = rows[mine]
        for other in ("confluent", "java"):
            o = rows[other]
            print(
                f"  {CLIENTS[mine][0].replace(' ShareConsumer', '')} / {CLIENTS[other][0]:<29} "
                f"rec/s 1st x{o['wall'] / a['wall']:.2f}  rec/s all x{o['total'] / a['total']:.2f}  "
                f"CPU run x{a['cpu'] / o['cpu']:.2f}  CPU proc x{a['process_cpu'] / o['process_cpu']:.2f}"
            )


def _warm_up(broker: _KafkaBroker, topics: dict[int, str]) -> float:
    """One unmeasured librdkafka pass over every topic, so the broker's share-fetch paths are
    JIT-compiled before the first measured client (which would otherwise pay for it alone)."""
    began = time.monotonic()
    groups = {topic: f"bench-rk-warm-up-{uuid.uuid4().hex[:6]}" for topic in topics.values()}
    asyncio.run(_configure(broker.bootstrap, {}, list(groups.values())))
    for topic, group in groups.items():
        _run("confluent", "", broker, topic, group)
    return time.monotonic() - began


def bench_clients(version: str, broker: _KafkaBroker, topics: dict[int, str], groups: dict[Any, str]) -> None:
    warm_up = _warm_up(broker, topics)
    print(
        f"warm-up: librdkafka consumed every topic once, unmeasured ({warm_up:.1f} s).  records/s: from "
        "the first records delivered (1st) / from start()/subscribe (all), both to the commit "
        "answered; ratios: rec/s > 1 = aioshare faster, CPU < 1 = aioshare cheaper"
    )
    for partitions, topic in topics.items():
        runs: dict[str, list[dict[str, Any]]] = {client: [] for client in CLIENTS}
        for rep in range(REPEAT):
            for client in CLIENTS:  # interleaved, so a burst of other load hits every client alike
                runs[client].append(_run(client, version, broker, topic, groups[client, partitions, rep]))
        rows = {
            client: {k: statistics.median(r[k] for r in found) for k in _FIGURES}
            for client, found in runs.items()
        }
        print()
        _print_table(partitions, rows, runs)


def bench_runtime_on_kafka(broker: _KafkaBroker, topic: str, partitions: int) -> None:
    rt = bench_runtime
    concurrencies = (10, 50, 200)
    quotas = {c: rt._quota(c) for c in concurrencies}
    if max(*quotas.values(), rt.EMPTY_QUOTA) > RECORDS:
        raise RuntimeError(f"the runtime quotas {quotas} need more than the {RECORDS} records produced")
    members = {c: max(1, c // 100) for c in concurrencies}
    groups = {
        name: f"bench-rk-rt-{name}-{uuid.uuid4().hex[:6]}"
        for name in (*map(str, concurrencies), "empty", "bare")
    }
    asyncio.run(_configure(broker.bootstrap, {}, list(groups.values())))
    b: Any = broker  # bench_runtime reads .bootstrap and .process.pid only
    print(
        f"runtime (aioshare.App on uvloop) on the {partitions}-partition topic; jobs/s from the first "
        f"record received to the quota handled; broker CPU = the Kafka JVM's CPU share meanwhile ({_load()})"
    )
    print(f"I/O-bound jobs: {rt.SLEEP * 1000:.0f} ms of waiting per record")
    rt.print_io_bound_header()
    for c in concurrencies:
        run = rt._on_uvloop(
            _bounded(rt._runtime(b, topic, groups[str(c)], quotas[c], c, members[c], rt.SLEEP))
        )
        plural = "s" if members[c] > 1 else ""
        print(
            rt._row(f"aioshare App, concurrency {c} ({members[c]} consumer{plural})", run, c / rt.SLEEP),
            flush=True,
        )
    print()
    print(f"framework cost: empty handler (runtime) vs getmany + accept (bare ShareConsumer) ({_load()})")
    empty = rt._on_uvloop(_bounded(rt._runtime(b, topic, groups["empty"], rt.EMPTY_QUOTA, 200, 2, None)))
    bare = rt._on_uvloop(_bounded(rt._bare_consumer(b, topic, groups["bare"], rt.EMPTY_QUOTA)))
    rt.print_framework_cost(empty, bare)


# ------------------------------------------------------------------------------- main


async def _bounded(coro: Any) -> Any:
    async with asyncio.timeout(bench_runtime.TIMEOUT + 60):
        return await coro


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: the broker is stopped


def main(argv: list[str] | None = None) -> None:
    from aioshare.testing.kafka import DEFAULT_KAFKA_VERSION, KafkaUnavailable
    from aioshare.testing.kafka.cluster import KafkaCluster

    parser = argparse.ArgumentParser(prog="python -m benchmarks realkafka")
    parser.add_argument("--version", default=DEFAULT_KAFKA_VERSION, help="Apache Kafka version (Maven)")
    args = parser.parse_args(argv or [])

    began = time.monotonic()
    previous = signal.signal(signal.SIGTERM, _terminate)
    cluster = KafkaCluster(
        args.version, heap=BROKER_HEAP, jvm_options=(f"-Xms{BROKER_HEAP}", *KAFKA_JVM_OPTIONS)
    )
    try:
        try:
            cluster.start()
        except KafkaUnavailable as exc:
            print(f"skipped: Kafka {args.version} cannot run here: {exc}")
            return
        process = cluster.brokers[0].process
        assert process is not None
        broker = _KafkaBroker(cluster.bootstrap_servers, process)
        tag = uuid.uuid4().hex[:6]
        topics = {p: f"bench-rk-{p}p-{tag}" for p in PARTITION_COUNTS}
        groups = {
            (client, p, rep): f"bench-rk-{client}-{p}p-{rep}-{tag}"
            for client in CLIENTS
            for p in PARTITION_COUNTS
            for rep in range(REPEAT)
        }
        asyncio.run(_configure(broker.bootstrap, {t: p for p, t in topics.items()}, list(groups.values())))
        produce0 = time.monotonic()
        for p, topic in topics.items():
            bench_consumer._produce(broker.bootstrap, topic, VALUE_SIZE, records=RECORDS, partitions=p)
        print(
            f"Apache Kafka {args.version}, one KRaft node (broker pid {process.pid}, heap {BROKER_HEAP}, "
            f"G1, default JIT; started in {cluster.startup_seconds:.1f} s); {len(topics)} topics of "
            f"{RECORDS:,} x {VALUE_SIZE} B produced in {time.monotonic() - produce0:.1f} s; "
            f"{os.cpu_count()} CPUs, {_load()}"
        )
        print(
            "clients, each in its own process, a fresh share group per run: aioshare getmany() (and "
            "async for) + msg.accept() per record; librdkafka poll() + acknowledge(msg) per record; Java "
            "ShareConsumerPerformance (KafkaShareConsumer as the tool ships: implicit mode, no "
            "acknowledge call, each poll()/commitSync() accepts what the previous poll delivered)"
        )
        bench_clients(args.version, broker, topics, groups)
        print()
        bench_runtime_on_kafka(broker, topics[max(PARTITION_COUNTS)], max(PARTITION_COUNTS))
    finally:
        cluster.stop()
        cluster.cleanup()
        signal.signal(signal.SIGTERM, previous)
        left = [n.node_id for n in cluster.nodes if n.process is not None and n.process.poll() is None]
        if left:
            raise RuntimeError(f"Kafka nodes {left} still running after stop()")
    print(f"total {time.monotonic() - began:.0f} s ({_load()})")


if __name__ == "__main__":
    main(sys.argv[1:])
