"""ShareConsumer client cost: aioshare against librdkafka, and the lease table at 100k records.

Part 1, consumers (one run, one broker):
  The embedded broker runs in its own process (`python -m aioshare.cli.main broker --port 0`),
  so its CPU is not the client's.  N records of 100 bytes and N of 1 KiB are produced first
  (confluent Producer, not measured), on PARTITIONS partitions each.  Then each client consumes
  all N of one topic in its own share group (share.auto.offset.reset=earliest, set with
  ShareAdmin.alter_group_config), in explicit mode, acknowledging every record:

  * aioshare ShareConsumer: `getmany()` batches, `msg.value` read, `msg.accept()` per record;
  * aioshare ShareConsumer: `async for msg in consumer`, same per-record work;
  * confluent_kafka.ShareConsumer (librdkafka): `poll()` batches, `msg.value()` read,
    `acknowledge(msg)` per record;

  then commits and checks every partition's ack result.  Each client runs in a fresh child
  process (`python -m benchmarks.bench_consumer --child ...`) so neither shares an interpreter,
  threads or caches with the other.  Figures:

  * records/s: N / wall time from the first record delivered to the commit answered (so group
    join latency, which is heartbeat-paced and not throughput, stays out);
  * CPU µs/record, loop: time.process_time() in the child around start/subscribe .. commit
    (whole-process CPU: every librdkafka thread and aioshare's event loop count);
  * CPU µs/record, process: the child's whole CPU from resource.getrusage(RUSAGE_CHILDREN),
    interpreter start, imports and close included.

  The aioshare child runs on asyncio's stock loop; BENCH_CONSUMER_LOOP=uvloop runs it on uvloop
  (as `aioshare broker` and the runtime's App.run() do).  Records/s is also bounded by the Python
  broker, so the CPU columns are the client comparison; the wall column shows whether a
  client keeps up.

Part 2, lease tracking (in process): LeaseTable (aioshare/share/leases.py) holding 100k
records: add, lookup, renew, settle and expire costs in µs per operation, memory by
tracemalloc, and the consumer's LeaseTimer sweeping 100k held records.

Run: `python -m benchmarks consumer`.  BENCH_CONSUMER_RECORDS (default 200000; fewer lets start-up weigh on the per-record CPU) sets N,
BENCH_CONSUMER_PARTITIONS (default 4) the partitions, BENCH_CONSUMER_REPEAT (default 3) the runs
per client and size (medians are printed), BENCH_LEASES (default 100000) part 2's size.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._broker import BrokerProcess

RECORDS = int(os.environ.get("BENCH_CONSUMER_RECORDS", "200000"))
PARTITIONS = int(os.environ.get("BENCH_CONSUMER_PARTITIONS", "4"))
LEASES = int(os.environ.get("BENCH_LEASES", "100000"))
LOOP = os.environ.get("BENCH_CONSUMER_LOOP", "asyncio")
REPEAT = int(os.environ.get("BENCH_CONSUMER_REPEAT", "3"))
SIZES = (100, 1024)
TIMEOUT = 300.0
ROOT = Path(__file__).resolve().parent.parent
_FIGURES = ("wall", "total", "cpu", "process_cpu")

CLIENTS = {
    "aioshare-getmany": "aioshare getmany()",
    "aioshare-iter": "aioshare async for",
    "confluent": "confluent_kafka (librdkafka)",
}


# ------------------------------------------------------------------------------- broker


async def _configure(bootstrap: str, topics: list[str], groups: list[str]) -> None:
    from aioshare.admin import ShareAdmin

    async with ShareAdmin(bootstrap) as admin:
        for topic in topics:
            await admin.create_topic(topic, PARTITIONS)
        for group in groups:
            # Kafka's default is latest, evaluated at first fetch: the records are older.
            await admin.alter_group_config(group, {"share.auto.offset.reset": "earliest"})


def _produce(
    bootstrap: str, topic: str, size: int, records: int = RECORDS, partitions: int = PARTITIONS
) -> None:
    import confluent_kafka

    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 500}
    )
    value = b"x" * size
    for n in range(records):
        while True:
            try:
                producer.produce(topic, value, partition=n % partitions)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(TIMEOUT):
        raise RuntimeError(f"producing to {topic} did not finish")


# ------------------------------------------------------------------------------- clients (child)


async def _aioshare(bootstrap: str, topic: str, group: str, style: str) -> dict[str, Any]:
    from aioshare.share import ShareConsumer

    consumer = ShareConsumer(topic, group_id=group, bootstrap_servers=bootstrap, ack_mode="explicit")
    got = 0
    nbytes = 0
    first: float | None = None
    cpu0 = time.process_time()
    began = time.perf_counter()
    async with asyncio.timeout(TIMEOUT):
        await consumer.start()
        if style == "getmany":
            while got < RECORDS:
                batch = await consumer.getmany(timeout=1.0)
                if batch and first is None:
                    first = time.perf_counter()
                for msg in batch:
                    nbytes += len(msg.value)
                    msg.accept()
                got += len(batch)
        else:
            async for msg in consumer:
                if first is None:
                    first = time.perf_counter()
                nbytes += len(msg.value)
                msg.accept()
                got += 1
                if got == RECORDS:
                    break
        results = await consumer.commit()
    end = time.perf_counter()
    cpu = time.process_time() - cpu0
    await consumer.close()
    failed = {str(tp): repr(exc) for tp, exc in results.items() if exc is not None}
    assert first is not None
    return {
        "records": got,
        "bytes": nbytes,
        "wall": end - first,
        "total": end - began,
        "cpu": cpu,
        "failed": failed,
    }


def _confluent(bootstrap: str, topic: str, group: str) -> dict[str, Any]:
    import confluent_kafka

    consumer: Any = confluent_kafka.ShareConsumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "share.acknowledgement.mode": "explicit"}
    )
    got = 0
    nbytes = 0
    first: float | None = None
    cpu0 = time.process_time()
    began = time.perf_counter()
    deadline = time.monotonic() + TIMEOUT
    consumer.subscribe([topic])
    while got < RECORDS:
        if time.monotonic() > deadline:
            raise TimeoutError(f"librdkafka consumer stalled at {got}")
        for msg in consumer.poll(1.0):
            if msg.error() is not None:
                raise RuntimeError(f"consume error: {msg.error()}")
            if first is None:
                first = time.perf_counter()
            nbytes += len(msg.value())
            consumer.acknowledge(msg)
            got += 1
    results = consumer.commit_sync(60)
    end = time.perf_counter()
    cpu = time.process_time() - cpu0
    consumer.close()
    failed = {str(tp): repr(exc) for tp, exc in results.items() if exc is not None}
    assert first is not None
    return {
        "records": got,
        "bytes": nbytes,
        "wall": end - first,
        "total": end - began,
        "cpu": cpu,
        "failed": failed,
    }


def _child(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=sorted(CLIENTS), required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    args = parser.parse_args(argv)
    if args.child == "confluent":
        result = _confluent(args.bootstrap, args.topic, args.group)
    else:
        style = "getmany" if args.child == "aioshare-getmany" else "iter"
        coro = _aioshare(args.bootstrap, args.topic, args.group, style)
        if LOOP == "uvloop":
            import uvloop

            result = uvloop.run(coro)
        else:
            result = asyncio.run(coro)
    print(json.dumps(result), flush=True)


# ------------------------------------------------------------------------------- clients (parent)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_client(
    client: str, bootstrap: str, topic: str, group: str, records: int = RECORDS, loop: str = LOOP
) -> dict[str, Any]:
    # The broker is a child too, but RUSAGE_CHILDREN only counts children that were waited
    # for: the broker is reaped after the last client, so each delta is one client's.
    before = _children_cpu()
    command = [sys.executable, "-m", "benchmarks.bench_consumer", "--child", client]
    command += ["--bootstrap", bootstrap, "--topic", topic, "--group", group]
    # The child reads N and its loop from the environment, as a standalone run does.
    env = {**os.environ, "BENCH_CONSUMER_RECORDS": str(records), "BENCH_CONSUMER_LOOP": loop}
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT + 60,
        check=False,
    )
    process_cpu = _children_cpu() - before
    if done.returncode != 0:
        raise RuntimeError(f"{client} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_cpu"] = process_cpu
    if result["records"] != records or result["failed"]:
        raise RuntimeError(f"{client} on {topic}: {result}")
    return result


def bench_consumers() -> None:
    broker = BrokerProcess({})
    try:
        topics = {size: f"bench-consumer-{size}-{uuid.uuid4().hex[:6]}" for size in SIZES}
        # One fresh group per run: each reads all N records from the start.
        groups = {
            (client, size, rep): f"bench-{client}-{size}-{rep}-{uuid.uuid4().hex[:6]}"
            for client in CLIENTS
            for size in SIZES
            for rep in range(REPEAT)
        }
        asyncio.run(_configure(broker.bootstrap, list(topics.values()), list(groups.values())))
        for size, topic in topics.items():
            _produce(broker.bootstrap, topic, size)
        print(
            f"{RECORDS} records per value size on {PARTITIONS} partitions (log batches of <= 500), "
            f"explicit acks, one child process per client run; aioshare loop: {LOOP}; "
            f"broker pid {broker.process.pid}; median of {REPEAT} runs (runs alternate clients)"
        )
        print(
            "records/s: from the first record delivered / from start() or subscribe(), both to the "
            "commit answered; CPU: µs per record"
        )
        header = (
            f"{'value':>6}  {'client':<29} {'rec/s 1st':>10} {'rec/s all':>10} {'1st rec s':>9} "
            f"{'CPU loop':>9} {'CPU proc':>9}"
        )
        print(header)
        print("-" * len(header))
        runs: dict[tuple[str, int], list[dict[str, Any]]] = {
            key: [] for key in itertools.product(CLIENTS, SIZES)
        }
        for size, topic in topics.items():
            # Interleaved, so a burst of other load on the machine hits every client alike.
            for rep in range(REPEAT):
                for client in CLIENTS:
                    run = _run_client(client, broker.bootstrap, topic, groups[client, size, rep])
                    runs[client, size].append(run)
        rows = {
            key: {k: statistics.median(r[k] for r in found) for k in _FIGURES} for key, found in runs.items()
        }
        for size in SIZES:
            for client, label in CLIENTS.items():
                r = rows[client, size]
                print(
                    f"{size:>5}B  {label:<29} {RECORDS / r['wall']:>10,.0f} {RECORDS / r['total']:>10,.0f} "
                    f"{r['total'] - r['wall']:>9.2f} {r['cpu'] * 1e6 / RECORDS:>9.2f} "
                    f"{r['process_cpu'] * 1e6 / RECORDS:>9.2f}",
                    flush=True,
                )
        print()
        print("ratios aioshare / confluent (records/s: > 1 is faster; CPU: < 1 is cheaper)")
        for size in SIZES:
            c = rows["confluent", size]
            for client in ("aioshare-getmany", "aioshare-iter"):
                r = rows[client, size]
                print(
                    f"{size:>5}B  {CLIENTS[client]:<20} rec/s 1st x{c['wall'] / r['wall']:.2f}  "
                    f"rec/s all x{c['total'] / r['total']:.2f}  CPU loop x{r['cpu'] / c['cpu']:.2f}  "
                    f"CPU proc x{r['process_cpu'] / c['process_cpu']:.2f}"
                )
    finally:
        broker.close()


# ------------------------------------------------------------------------------- leases


def _timed(setup: Callable[[], Any], op: Callable[[Any], int]) -> float:
    """µs per operation of ``op(setup())`` (setup not timed; ``op`` returns its op count)."""
    state = setup()
    gc.collect()
    start = time.perf_counter()
    ops = op(state)
    return (time.perf_counter() - start) * 1e6 / max(ops, 1)


def _memory(build: Callable[[], object], records: int) -> float:
    """Bytes per record that ``build()``'s result keeps alive (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return (after - before) / records


def bench_leases() -> None:
    from aioshare.protocol.types import TopicIdPartition
    from aioshare.share.leases import LeaseTable

    tps = [TopicIdPartition(uuid.UUID(int=1), p) for p in range(PARTITIONS)]
    per_tp = LEASES // len(tps)
    n = per_tp * len(tps)
    offsets = [(tp, o) for tp in tps for o in range(per_tp)]
    shuffled = offsets[:]
    random.Random(7).shuffle(shuffled)

    def spans(size: int) -> list[tuple[TopicIdPartition, int, int]]:
        return [(tp, lo, min(lo + size, per_tp) - 1) for tp in tps for lo in range(0, per_tp, size)]

    def filled(size: int = 500, deadline: float = 1e9, *, step: float = 0.0) -> LeaseTable:
        # step > 0: every span gets its own deadline, so adjacent spans cannot coalesce (one
        # span per fetch response, or per-record renewals: the worst case).
        table = LeaseTable()
        for k, (tp, lo, hi) in enumerate(spans(size)):
            table.add_acquired(tp, lo, hi, 1, deadline + k * step)
        return table

    def add(size: int, distinct: bool) -> Callable[[LeaseTable], int]:
        todo = spans(size)

        def op(table: LeaseTable) -> int:
            for k, (tp, lo, hi) in enumerate(todo):
                table.add_acquired(tp, lo, hi, 1, 1e9 + k if distinct else 1e9)
            return len(todo)

        return op

    def each(
        order: list[tuple[TopicIdPartition, int]], call: str, *extra: float
    ) -> Callable[[LeaseTable], int]:
        def op(table: LeaseTable) -> int:
            fn = getattr(table, call)
            for tp, o in order:
                fn(tp, o, *extra)
            return len(order)

        return op

    def renew_each(order: list[tuple[TopicIdPartition, int]]) -> Callable[[LeaseTable], int]:
        def op(table: LeaseTable) -> int:
            renew = table.renew
            for k, (tp, o) in enumerate(order):
                renew(tp, o, 2e9 + k)  # its own deadline: renewals finish at different times
            return len(order)

        return op

    def expire_all(table: LeaseTable) -> int:
        table.expire(1e12)
        return n

    tenth = shuffled[: n // 10]
    rows = [
        ("add_acquired, 500-record spans (per call)", _timed(LeaseTable, add(500, False))),
        ("add_acquired, 1-record spans, distinct deadlines", _timed(LeaseTable, add(1, True))),
        ("get, random offset (500-record spans)", _timed(filled, each(shuffled, "get"))),
        ("settle, in order (500-record spans)", _timed(filled, each(offsets, "settle"))),
        ("settle, random order (500-record spans)", _timed(filled, each(shuffled, "settle"))),
        ("renew, in order, one new deadline", _timed(filled, each(offsets, "renew", 2e9))),
        ("renew, random 10%, own deadline each", _timed(filled, renew_each(tenth))),
        ("expire all, 500-record spans (per record)", _timed(lambda: filled(500, 1.0), expire_all)),
        (
            "expire all, 1-record spans (per record)",
            _timed(lambda: filled(1, 1.0, step=1.0), expire_all),
        ),
    ]
    print(f"LeaseTable holding {n:,} records on {len(tps)} partitions")
    print(f"{'operation':<50} {'µs/op':>8} {'total ms':>9}")
    totals = {"add_acquired, 500-record spans (per call)": len(spans(500))}
    for label, us in rows:
        count = totals.get(label, len(tenth) if "10%" in label else n)
        print(f"{label:<50} {us:>8.3f} {us * count / 1e3:>9.1f}")

    def half_settled() -> LeaseTable:
        table = filled()
        for tp, o in shuffled[: n // 2]:
            table.settle(tp, o)
        return table

    print("memory (tracemalloc), bytes per held record:")
    print(f"  500-record spans                           {_memory(filled, n):>7.1f}")
    print(f"  500-record spans, half settled at random   {_memory(half_settled, n // 2):>7.1f}")
    print(f"  1-record spans, distinct deadlines         {_memory(lambda: filled(1, step=1.0), n):>7.1f}")
    asyncio.run(_bench_timer(filled, n))


async def _bench_timer(filled: Callable[..., Any], n: int) -> None:
    """The consumer's one timer task with ``n`` records held: wake-up cost and expiry latency."""
    from aioshare.share.lease_timer import LeaseTimer

    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    sweeps: list[tuple[float, int]] = []  # (when, ranges reported)

    def on_expired(expired: list[Any]) -> None:
        sweeps.append((loop.time(), len(expired)))
        if table.held_count == 0:
            done.set()

    # One 500-record span per "fetch response", each with its own deadline 1 µs apart, as
    # consecutive ShareFetch responses would have (so nothing coalesces).
    first_deadline = loop.time() + 0.5
    table = filled(500, first_deadline, step=1e-6)
    spans = len(table.ranges())
    last_deadline = max(r.deadline for r in table.ranges())
    timer = LeaseTimer(table, on_expired)
    task = loop.create_task(timer.run())
    try:
        # What leases_added() costs per ShareFetch response: the timer re-reads the earliest
        # deadline (heap top) and sleeps again; 100k held records must not make that dearer.
        wakes = 2000
        cpu0 = time.process_time()
        for _ in range(wakes):
            timer.reschedule()
            await asyncio.sleep(0)
        wake_us = (time.process_time() - cpu0) * 1e6 / wakes
        async with asyncio.timeout(10):
            await done.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    late_ms = (sweeps[-1][0] - last_deadline) * 1e3
    print(
        f"LeaseTimer, {n:,} held in {spans} spans of 500 with distinct deadlines: reschedule+wake "
        f"{wake_us:.2f} µs; expired in {len(sweeps)} sweep(s), {sum(k for _, k in sweeps)} ranges "
        f"reported, the last {late_ms:.1f} ms after the last deadline"
    )


def main() -> None:
    bench_consumers()
    print()
    bench_leases()


if __name__ == "__main__":
    if "--child" in sys.argv:
        _child(sys.argv[1:])
    else:
        main()
