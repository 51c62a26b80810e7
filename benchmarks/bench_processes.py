"""`aioshare run --processes N` on CPU-bound handlers: records/s for N = 1 and 2.

The embedded broker runs in its own process (`aioshare broker --port 0`).  One topic of
RECORDS small records on PARTITIONS partitions is produced first (not measured); each run
starts `aioshare run bench_app:app --processes N --health-port 0` in a fresh share group
(share.auto.offset.reset=earliest) and reads the supervisor's aggregated /metrics every
0.1 s: the clock starts at the first accepted record and stops when RECORDS are accepted.

The handler does WORK_MS (default 0.5) of pure-Python work per record (a loop calibrated in
this process before the runs), so one process cannot beat 1000/WORK_MS records/s and the
GIL keeps it on one core; N processes should scale until the cores run out.  On a 2-core
machine the broker competes with the workers for those cores: its CPU share during each run
is printed, and so are the workers' CPU seconds, so the ratio can be read against the CPU
that was actually left to the workers (`ratio / (cores - broker cores) * 1`).

Run: `python -m benchmarks processes`.  BENCH_PROCESSES_RECORDS (default 15000),
BENCH_PROCESSES_WORK_MS (default 0.5), BENCH_PROCESSES_PARTITIONS (default 4),
BENCH_PROCESSES_COUNTS (default "1,2").
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import tempfile
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from benchmarks._broker import BrokerProcess, process_cpu_seconds

RECORDS = int(os.environ.get("BENCH_PROCESSES_RECORDS", "15000"))
WORK_MS = float(os.environ.get("BENCH_PROCESSES_WORK_MS", "0.5"))
PARTITIONS = int(os.environ.get("BENCH_PROCESSES_PARTITIONS", "4"))
COUNTS = tuple(int(n) for n in os.environ.get("BENCH_PROCESSES_COUNTS", "1,2").split(","))
TIMEOUT = 300.0

BROKER_CONFIG = {
    "group.share.min.heartbeat.interval.ms": "100",
    "group.share.heartbeat.interval.ms": "200",
    "group.share.partition.max.record.locks": "10000",
    "group.share.max.partition.max.record.locks": "10000",  # (its ceiling, 4000 by default)
    # From Kafka 4.3 a group's assignment is recomputed at most once a second: the second member
    # of a 4-second run would sit idle for a quarter of it.  Runs measure the steady state.
    "group.share.assignment.interval.ms": "0",
}

APP = """
import os
import aioshare

N = int(os.environ["BENCH_WORK_N"])
app = aioshare.App(os.environ["BENCH_BOOTSTRAP"], reports=False, consumer_options={"fetch_max_wait": 0.05})


def work(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


@app.handler(os.environ["BENCH_TOPIC"], group_id=os.environ["BENCH_GROUP"], concurrency=8, poll_interval=0.1)
async def cpu_bound(msg: aioshare.Message[bytes]) -> None:
    work(N)
"""


def work(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def calibrate(ms: float) -> int:
    """The loop count of ``work`` that takes ``ms`` milliseconds of CPU here (CPU time, not
    wall time: on a busy machine wall time would count other processes' slices too)."""
    n = 10_000
    while True:
        t0 = time.process_time()
        for _ in range(20):
            work(n)
        took = (time.process_time() - t0) / 20
        if took > 0.002:
            return max(1, int(n * ms / 1000 / took))
        n *= 2


@dataclass
class Run:
    processes: int
    records: int
    seconds: float
    workers_cpu: float
    broker_cpu: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds


async def _setup(bootstrap: str, topic: str) -> None:
    from aiokafka import AIOKafkaProducer

    from aioshare.admin import ShareAdmin

    async with ShareAdmin(bootstrap) as admin:
        await admin.create_topic(topic, PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=64 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, b"x" * 100, partition=i % PARTITIONS) for i in range(RECORDS)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _earliest(bootstrap: str, group: str) -> None:
    from aioshare.admin import ShareAdmin

    async with ShareAdmin(bootstrap) as admin:
        await admin.alter_group_config(group, {"share.auto.offset.reset": "earliest"})


_ACCEPTED = re.compile(r"^aioshare_records_accepted_total\{[^}]*\} (\S+)$", re.M)


async def _run(broker: BrokerProcess, app_dir: Path, topic: str, processes: int, n: int) -> Run:
    from aioshare.runtime.health import http_get

    group = f"bench-processes-{uuid.uuid4().hex[:8]}"
    await _earliest(broker.bootstrap, group)
    env = {
        **os.environ,
        "BENCH_WORK_N": str(n),
        "BENCH_BOOTSTRAP": broker.bootstrap,
        "BENCH_TOPIC": topic,
        "BENCH_GROUP": group,
    }
    argv = [sys.executable, "-m", "aioshare.cli.main", "run", "bench_app:app", "--app-dir", str(app_dir)]
    argv += ["--processes", str(processes), "--health-port", "0", "--log-level", "WARNING"]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, env=env)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(TIMEOUT):
            port = 0
            while not port:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    raise RuntimeError("aioshare run exited before serving")
                found = re.match(r"aioshare health listening on http://127\.0\.0\.1:(\d+)", line)
                port = int(found.group(1)) if found else 0
            drain = asyncio.create_task(proc.stdout.read())  # keep the pipe flowing
            t0 = cpu0 = bcpu0 = None
            pids: list[int] = []
            while True:
                text = (await http_get("127.0.0.1", port, "/metrics")).text()
                accepted = sum(float(v) for v in _ACCEPTED.findall(text))
                now = time.perf_counter()
                if t0 is None and accepted > 0:
                    ready = json.loads((await http_get("127.0.0.1", port, "/readyz")).body)
                    pids = [w["pid"] for w in ready["workers"] if w["pid"]]
                    t0, cpu0, bcpu0 = now, sum(map(process_cpu_seconds, pids)), broker.cpu_seconds()
                if accepted >= RECORDS:
                    assert t0 is not None and cpu0 is not None and bcpu0 is not None
                    cpu = sum(map(process_cpu_seconds, pids)) - cpu0
                    return Run(processes, RECORDS, now - t0, cpu, broker.cpu_seconds() - bcpu0)
                await asyncio.sleep(0.1)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if "drain" in locals():
            await drain


def main(argv: list[str] | None = None) -> None:
    n = calibrate(WORK_MS)
    cores = os.cpu_count() or 1
    print(f"CPU-bound handler: {WORK_MS} ms of pure Python per record (loop of {n}); {cores} cores")
    print(f"{RECORDS} records on {PARTITIONS} partitions; the broker in its own process\n")
    broker = BrokerProcess(BROKER_CONFIG)
    runs: list[Run] = []
    try:
        topic = f"bench-processes-{uuid.uuid4().hex[:8]}"
        asyncio.run(_setup(broker.bootstrap, topic))
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "bench_app.py").write_text(textwrap.dedent(APP))
            for processes in COUNTS:
                runs.append(asyncio.run(_run(broker, Path(tmp), topic, processes, n)))
    finally:
        broker.close()
    ideal = 1000 / WORK_MS
    print(
        f"{'processes':>9} {'records/s':>10} {'vs 1':>6} {'workers CPU':>12} {'broker CPU':>11} {'µs CPU/record':>14}"
    )
    base = runs[0].rate
    for run in runs:
        print(
            f"{run.processes:>9} {run.rate:>10.0f} {run.rate / base:>5.2f}x "
            f"{run.workers_cpu / run.seconds:>11.0%} {run.broker_cpu / run.seconds:>10.0%} "
            f"{run.workers_cpu / run.records * 1e6:>14.0f}"
        )
    print(f"\nideal for one process: {ideal:.0f} records/s (handler work alone)")
    print(
        "workers/broker CPU: cores used during the run (100% = one core); load average now:", os.getloadavg()
    )
    if len(runs) >= 2:
        last = runs[-1]
        left = cores - last.broker_cpu / last.seconds  # cores the broker left to the workers
        print(
            f"{last.processes} processes: {last.rate / base:.2f}x the records/s of {runs[0].processes}; "
            f"the broker used {last.broker_cpu / last.seconds:.2f} cores, leaving {left:.2f} "
            f"({left / runs[0].processes:.2f}x one process's core) to the workers"
        )


if __name__ == "__main__":
    main()
