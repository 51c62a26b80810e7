"""`aioshare demo`: a job queue on a Kafka share group, end to end, on an embedded broker.

What it runs (about 20 s, everything on this machine, nothing to install):

* an ``EmbeddedBroker`` in this process, with a short acquisition lock (3 s) so that lock
  expiry is seen quickly;
* a one-partition topic of a few thousand jobs (produced with aiokafka), and a share group
  set to start at the earliest offset (``ShareAdmin.alter_group_config``);
* **more members than partitions**: the runtime's route runs 4 ShareConsumer members on the
  one partition (``consumers=4``), plus one more member in a separate process;
* the jobs: most succeed after a short await; *flaky* ones fail once or twice (retried with
  backoff: the record is held, then RELEASEd and redelivered); *poison* ones always fail and
  are dead-lettered after ``max_attempts`` deliveries; *slow* ones run longer than the lock
  (the runtime renews it while they run);
* the *frozen member*: the separate member takes a handful of jobs and then its process is frozen
  (SIGSTOP) mid-job - no heartbeat, no acknowledgement, no close, its TCP connections left
  open, as when a host hangs or dies without resetting its connections.  The broker hands
  those jobs out again only when their locks expire, and the runtime's members finish them.

A live progress line runs meanwhile (plain periodic lines when stdout is not a terminal).
Then it accounts for every job, from independent sources: the runtime's events (accepted
and dead-lettered records, delivery counts, renewals, lock expiries), the dead-letter
topic read back with a plain Kafka consumer, and the broker's share-partition start offset
(DescribeShareGroupOffsets).  It exits 1 if any job is unaccounted for, ended differently
than its kind says, or is still held by the broker; duplicates (at-least-once) are reported.

``python -m aioshare.cli.demo --crash-worker ...`` is the frozen member's process.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import math
import os
import random
import shutil
import signal
import statistics
import sys
import uuid
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from aioshare.runtime import Event

__all__ = ["DemoConfig", "DemoResult", "Job", "add_arguments", "plan_jobs", "run", "run_demo", "verify"]

TOPIC = "demo.jobs"
DLQ_TOPIC = "demo.jobs.dlq"
GROUP = "demo-workers"
CRASH_READY_TIMEOUT = 30.0  # the frozen member: process start, join, first fetch


class Job(msgspec.Struct, frozen=True):
    """One job as produced (JSON): what the handler is told to do with it."""

    id: int
    kind: str  # "ok" | "flaky" | "poison" | "slow"
    work_ms: int
    fail_times: int = 0  # flaky: deliveries that fail before one succeeds


class TransientError(ConnectionError):
    """What a flaky job raises: the kind of failure a retry fixes."""


class PoisonJobError(ValueError):
    """What a poison job raises on every delivery: no retry fixes it."""


@dataclasses.dataclass
class DemoConfig:
    jobs: int = 3000
    consumers: int = 4
    concurrency: int = 32
    lock_ms: int = 3000
    max_attempts: int = 4
    crash_jobs: int = 20  # 0: no frozen member
    work_ms: tuple[int, int] = (30, 120)  # an ordinary job's await, drawn uniformly
    slow_ms: tuple[int, int] | None = None  # slow jobs, longer than the lock: 1.3-2 locks by default
    seed: int = 7
    timeout: float = 60.0  # the whole run; past it, whatever is unsettled is unaccounted
    live: bool | None = None  # None: a refreshing line when the output is a terminal
    # None: an embedded broker in this process; else a Kafka cluster (>= 4.2) to run on.
    bootstrap: str | None = None
    topic: str = TOPIC
    dlq_topic: str = DLQ_TOPIC
    group: str = GROUP

    @property
    def slow_range(self) -> tuple[int, int]:
        if self.slow_ms is not None:
            return self.slow_ms
        return int(self.lock_ms * 1.3), self.lock_ms * 2


@dataclasses.dataclass
class DemoResult:
    """Everything the summary says, for the tests (and the exit code)."""

    produced: int = 0
    accepted: set[int] = dataclasses.field(default_factory=set)
    dead_lettered: set[int] = dataclasses.field(default_factory=set)
    dlq_copies: dict[int, int] = dataclasses.field(default_factory=dict)  # original offset -> copies
    dlq_delivery_counts: dict[int, int] = dataclasses.field(default_factory=dict)
    duplicates: dict[int, list[str]] = dataclasses.field(default_factory=dict)
    attempts: dict[int, int] = dataclasses.field(default_factory=dict)  # deliveries -> jobs
    renewals: int = 0
    renewed_jobs: int = 0
    retries: int = 0
    runtime_lock_expiries: int = 0
    frozen: list[int] = dataclasses.field(default_factory=list)  # offsets the frozen member held
    came_back: dict[int, float] = dataclasses.field(
        default_factory=dict
    )  # offset -> s after the frozen member took it
    ack_errors: int = 0
    wall: float = 0.0
    steady_rate: float | None = None  # jobs/s up to the 99th percentile job
    broker_start_offset: int | None = None
    # Records still available or locked for the group, as the broker counts them.  The lag, not
    # the start offset, is the test: real Kafka persists the start offset one state write late.
    broker_lag: int | None = None
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def unaccounted(self) -> list[int]:
        return sorted(set(range(self.produced)) - self.accepted - self.dead_lettered)


# ------------------------------------------------------------------------------ the jobs


def plan_jobs(config: DemoConfig) -> list[Job]:
    """The jobs, deterministic for a seed: about 5% flaky, 0.5% poison, 0.3% slow.

    Special jobs are drawn from past the first ``crash_jobs`` offsets, which the frozen
    member takes: so its jobs show pure lock-expiry recovery, and each kind its own path.
    """
    rng = random.Random(config.seed)
    n = config.jobs
    lo, hi = config.work_ms
    kinds = ["ok"] * n
    special = list(range(min(config.crash_jobs, n), n))
    rng.shuffle(special)
    counts = {"poison": max(1, n // 200), "slow": max(1, n // 375), "flaky": max(1, n // 20)}
    for kind, count in counts.items():
        for offset in special[:count]:
            kinds[offset] = kind
        special = special[count:]
    jobs = []
    for i, kind in enumerate(kinds):
        work = rng.randint(*config.slow_range) if kind == "slow" else rng.randint(lo, hi)
        fail_times = (2 if rng.random() < 0.3 else 1) if kind == "flaky" else 0
        jobs.append(Job(id=i, kind=kind, work_ms=work, fail_times=fail_times))
    return jobs


# ------------------------------------------------------------------------------ the ledger


class Ledger:
    """Every runtime event of the demo's route, kept per job (offset = job id: one partition)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, dlq_topic: str = DLQ_TOPIC) -> None:
        from aioshare.runtime import EventKind

        self._dlq_topic = dlq_topic

        self._kinds = EventKind
        self._loop = loop
        self.outcomes: dict[int, list[tuple[str, int]]] = collections.defaultdict(list)  # final fates
        self.received_deliveries: set[tuple[int, int]] = set()  # (offset, delivery) this app got
        self.final_delivery: dict[int, int] = {}
        self.renewals = 0
        self.renewed: set[int] = set()
        self.retries = 0
        self.lock_expiries = 0
        self.ack_errors = 0
        self.came_back: dict[int, float] = {}  # offset -> loop time it was redelivered to us
        self.latencies: list[float] = []
        self.done = 0  # jobs with a final fate (accepted or dead-lettered)
        self.done_times: list[float] = []  # loop time of each job's fate, in order
        self.changed = asyncio.Event()
        self.notes: list[str] = []  # what the display should say, in order
        self._first_retry = self._first_renewal = False
        self._dead_letter_notes = 0

    def __call__(self, event: Event) -> None:
        kind = event.kind
        kinds = self._kinds
        offset, dc = event.offset, event.delivery_count
        if kind is kinds.ACK_COMMITTED:
            if event.error is not None:
                self.ack_errors += event.count
            return
        if offset is None or dc is None:
            if kind is kinds.ERROR and event.reason not in ("handler",):
                self.notes.append(f"runtime error ({event.reason}): {event.error!r}")
            return
        if kind is kinds.RECEIVED:
            # A later delivery of a record whose previous delivery this app never received:
            # another member held it and lost it - here, the frozen member's lock ran out.  (Not
            # "did not end": the broker may redeliver a released record to another of the app's
            # members before the releasing member's RELEASED event, which waits for the broker's
            # answer.)
            if dc > 1 and (offset, dc - 1) not in self.received_deliveries and offset not in self.came_back:
                self.came_back[offset] = self._loop.time()
                self.changed.set()
            self.received_deliveries.add((offset, dc))
        elif kind in (kinds.ACCEPTED, kinds.DEAD_LETTERED, kinds.REJECTED):
            fates = self.outcomes[offset]
            fates.append((kind.value, dc))
            if len(fates) == 1:
                self.done += 1
                self.done_times.append(self._loop.time())
                self.final_delivery[offset] = dc
            if kind is kinds.ACCEPTED and event.latency is not None:
                self.latencies.append(event.latency)
            if kind is kinds.DEAD_LETTERED and self._dead_letter_notes < 2:
                self._dead_letter_notes += 1
                more = " (the others: in the summary)" if self._dead_letter_notes == 2 else ""
                self.notes.append(
                    f"job {offset} failed on all {dc} deliveries: dead-lettered to {self._dlq_topic}{more}"
                )
            self.changed.set()
        elif kind is kinds.LOCK_EXPIRED:
            self.lock_expiries += 1
            self.notes.append(f"job {offset}: the runtime lost its lock (delivery {dc})")
        elif kind is kinds.RENEWED:
            self.renewals += 1
            self.renewed.add(offset)
            if not self._first_renewal:
                self._first_renewal = True
                self.notes.append(
                    f"job {offset} is still running as its lock nears its end: lock renewed "
                    "(slow jobs keep renewing until they finish)"
                )
        elif kind is kinds.RETRIED:
            self.retries += 1
            if not self._first_retry:
                self._first_retry = True
                why = f": {event.error}" if event.error is not None else ""
                self.notes.append(
                    f"job {offset} failed on delivery {dc}{why} -> held {event.delay:.2f} s "
                    "(backoff), then released for redelivery"
                )


# ------------------------------------------------------------------------------ the display


class Display:
    """A refreshing progress line on a terminal; plain timestamped lines otherwise."""

    def __init__(self, out: IO[str], total: int, live: bool, started: float) -> None:
        self.out = out
        self.total = total
        self.live = live
        self.started = started
        self._line = ""
        enc = (getattr(out, "encoding", None) or "").lower()
        self._bar_chars = ("█", "░") if enc.startswith("utf") else ("#", "-")

    def stamp(self, now: float) -> str:
        return f"{now - self.started:6.1f}s"

    def note(self, now: float, text: str) -> None:
        if self.live:
            self.out.write("\r\x1b[K")
        self.out.write(f"{self.stamp(now)}  {text}\n")
        if self.live and self._line:
            self.out.write(self._line)
        self.out.flush()

    def progress(self, now: float, line: str) -> None:
        full, empty = self._bar_chars
        done = int(line.split("/", 1)[0]) if line[:1].isdigit() else 0
        width = 24
        filled = min(width, done * width // max(self.total, 1))
        text = f"{self.stamp(now)}  [{full * filled}{empty * (width - filled)}] {line}"
        if self.live:
            # One terminal row: a line that wraps could not be erased by the next redraw.
            width = shutil.get_terminal_size((100, 24)).columns
            text = text[: max(width - 1, 20)]
            self._line = text
            self.out.write("\r\x1b[K" + text)
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def finish(self) -> None:
        if self.live and self._line:
            self.out.write("\n")
            self.out.flush()
        self._line = ""


# ------------------------------------------------------------------------------ the frozen member


@dataclasses.dataclass
class FrozenMember:
    process: asyncio.subprocess.Process
    offsets: list[int]
    took_at: float  # loop time the jobs were acquired (their locks started)
    lock_ms: int | None


async def start_frozen_member(bootstrap: str, topic: str, group: str, count: int) -> FrozenMember:
    """Start the extra member in its own process; once it holds ``count`` jobs, freeze it.

    SIGSTOP, not a kill: a killed process's sockets are closed by its kernel, and a broker
    releases a disconnected member's records at once.  A frozen one keeps its connections
    open and just stops talking - so only the acquisition locks bring its jobs back.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aioshare.cli.demo",
        "--crash-worker",
        bootstrap,
        topic,
        group,
        str(count),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(CRASH_READY_TIMEOUT):
            line = await process.stdout.readline()
        if not line:
            raise RuntimeError("the frozen member exited before it took any job")
        report = json.loads(line)
        os.kill(process.pid, signal.SIGSTOP)
    except BaseException:
        await stop_member(process)
        raise
    # When it took them: its lock started then, so that is when the clock of their return starts.
    took_at = asyncio.get_running_loop().time() - float(report["held_for"])
    return FrozenMember(process, sorted(report["offsets"]), took_at, report["lock_ms"])


async def stop_member(process: asyncio.subprocess.Process) -> None:
    """Kill the frozen member for good (SIGKILL works on a stopped process)."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    with contextlib.suppress(Exception):
        await process.communicate()


async def _crash_worker(bootstrap: str, topic: str, group: str, count: int) -> None:
    """The frozen member: take ``count`` jobs, say which, then work on them "forever"."""
    from aioshare.share import ShareConsumer

    consumer = ShareConsumer(
        topic,
        group_id=group,
        bootstrap_servers=bootstrap,
        ack_mode="explicit",
        # Exactly ``count``: in batch_optimized mode the broker may acquire whole log batches,
        # which the consumer would hold (and lose with it) without having handed them out.
        acquire_mode="record_limit",
        max_poll_records=count,
        max_in_flight=count,  # it holds at most these: it fetches nothing after them
        fetch_max_wait=0.1,
    )
    await consumer.start()
    held: list[Any] = []
    async with asyncio.timeout(CRASH_READY_TIMEOUT):
        while len(held) < count:
            held += await consumer.getmany(count - len(held), timeout=1.0)
    now = asyncio.get_running_loop().time()
    report = {
        "offsets": [m.offset for m in held],
        "lock_ms": consumer.acquisition_lock_timeout_ms,
        # How long ago the first of them was acquired (its lock started then).
        "held_for": max(
            (consumer.acquisition_lock_timeout_ms or 0) / 1000 - (min(m.lock_expires_at for m in held) - now),
            0.0,
        ),
    }
    print(json.dumps(report), flush=True)
    # "Working" on them: the parent freezes this process now, and kills it at the end.
    await asyncio.Event().wait()


# ------------------------------------------------------------------------------ the run


def _n(count: int, word: str, plural: str | None = None) -> str:
    """``1 job``, ``2 jobs``: a count with its noun in the right number."""
    return f"{count} {word if count == 1 else (plural or word + 's')}"


def _fmt_offsets(offsets: Sequence[int]) -> str:
    if not offsets:
        return "none"
    if list(offsets) == list(range(offsets[0], offsets[0] + len(offsets))):
        return f"{offsets[0]}-{offsets[-1]}" if len(offsets) > 1 else str(offsets[0])
    shown = ", ".join(map(str, offsets[:8]))
    return shown + (", ..." if len(offsets) > 8 else "")


async def _produce(bootstrap: str, topic: str, jobs: list[Job]) -> list[int]:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        encode = msgspec.json.encode
        futures = [
            await producer.send(topic, encode(job), key=str(job.id).encode(), partition=0) for job in jobs
        ]
        return [(await f).offset for f in futures]
    finally:
        await producer.stop()


async def _read_dead_letters(bootstrap: str, topic: str) -> list[Any]:
    """The dead-letter topic from its start to its end, read with a plain Kafka consumer."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        out: list[Any] = []
        async with asyncio.timeout(20):
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=500)
                out.extend(batch.get(tp, []))
        return out
    finally:
        await consumer.stop()


def _progress_line(ledger: Ledger, app: Any, total: int, now: float, started: float) -> str:
    metrics = app.metrics
    accepted = sum(1 for fates in ledger.outcomes.values() if fates[0][0] == "accepted")
    dead = ledger.done - accepted
    rate = ledger.done / max(now - started, 1e-9)
    return (
        f"{ledger.done}/{total} done  accepted {accepted}  dead-lettered {dead}  "
        f"retrying {int(metrics.value('records-delayed'))}  running {int(metrics.value('handlers-running'))}  "
        f"renewals {ledger.renewals}  {rate:,.0f} jobs/s"
    )


async def run(config: DemoConfig | None = None, out: IO[str] | None = None) -> DemoResult:
    """Run the demo; returns what it found (``result.ok`` is the verdict)."""
    import aioshare
    from aioshare.admin import ShareAdmin
    from aioshare.broker.embedded import EmbeddedBroker

    config = config or DemoConfig()
    out = out if out is not None else sys.stdout
    live = config.live if config.live is not None else out.isatty()
    loop = asyncio.get_running_loop()
    result = DemoResult()
    jobs = plan_jobs(config)
    by_kind = collections.Counter(job.kind for job in jobs)
    freeze = config.crash_jobs if hasattr(signal, "SIGSTOP") else 0

    broker_config = {
        "group.share.min.record.lock.duration.ms": 1000,
        "group.share.record.lock.duration.ms": config.lock_ms,
        # Members join within a heartbeat: short ones, so the demo does not wait for them.
        "group.share.min.heartbeat.interval.ms": 250,
        "group.share.heartbeat.interval.ms": 250,
        # Kafka caps a share-partition's in-flight window (start offset .. last acquired) at
        # 2000 records by default: a slow or retried job near the start offset then stalls
        # all fetching past the window.  Real, but not what this demo is about.
        "group.share.partition.max.record.locks": 10000,
        # ... and since Kafka 4.3 the broker's bound on that setting must allow it.
        "group.share.max.partition.max.record.locks": 10000,
    }
    out.write(
        f"aioshare demo: {_n(config.jobs, 'job')} on a 1-partition topic, share group {config.group!r} with "
        f"{config.consumers + (1 if freeze else 0)} members "
        f"({_n(config.consumers, 'runtime consumer')}{' + 1 that freezes mid-job' if freeze else ''})\n"
        f"  jobs: {by_kind['ok']} ordinary, {by_kind['flaky']} flaky (fail 1-2 times), "
        f"{by_kind['poison']} poison (always fail), {by_kind['slow']} slow "
        f"({config.slow_range[0] / 1000:g}-{config.slow_range[1] / 1000:g} s on a {config.lock_ms / 1000:g} s lock)\n"
    )
    out.flush()
    started = loop.time()
    display = Display(out, config.jobs, live, started)
    frozen: FrozenMember | None = None

    async with contextlib.AsyncExitStack() as stack:
        if config.bootstrap is None:
            broker = await stack.enter_async_context(EmbeddedBroker(config=broker_config))
            bootstrap = broker.bootstrap_servers
            where = f"embedded broker on {bootstrap}"
        else:
            # A real cluster keeps its own configs: the lock is the group's (set below), the
            # heartbeat and the in-flight window are the brokers' (see docs/operations.md).
            bootstrap = config.bootstrap
            where = f"Kafka at {bootstrap}"
        async with ShareAdmin(bootstrap) as admin:
            await admin.create_topic(config.topic, 1)
            await admin.create_topic(config.dlq_topic, 1)
            # Kafka's default (latest) would skip the jobs produced before the group's first fetch.
            await admin.alter_group_config(
                config.group,
                {"share.auto.offset.reset": "earliest", "share.record.lock.duration.ms": str(config.lock_ms)},
            )
        offsets = await _produce(bootstrap, config.topic, jobs)
        if offsets != list(range(len(jobs))):
            result.problems.append("the produced offsets are not 0..N-1: the job ids would not match")
        result.produced = len(jobs)
        display.note(loop.time(), f"{where}; produced {_n(len(jobs), 'job')} to {config.topic}")

        # acquire_mode "auto": record_limit where the broker serves it (Kafka 4.2+), so a
        # member acquires exactly the jobs its free handler slots asked for.  In batch_optimized
        # mode the broker hands out whole log batches; the surplus waits in the consumer, and
        # when the slots stay busy past a quarter of the lock it is released unseen - a job
        # that would "come back" like the frozen member's.
        app = aioshare.App(
            bootstrap,
            shutdown_timeout=10.0,
            consumer_options={"fetch_max_wait": 0.1, "acquire_mode": "auto"},
        )
        ledger = Ledger(loop, config.dlq_topic)
        app.events.subscribe(ledger)

        @app.handler(
            config.topic,
            group_id=config.group,
            name="jobs",
            consumers=config.consumers,
            concurrency=config.concurrency,
            retry=aioshare.Backoff(initial=0.25, max=2.0, multiplier=2.0, jitter=True),
            max_attempts=config.max_attempts,
            dead_letter_topic=config.dlq_topic,
            value_type=Job,
            poll_interval=0.2,
        )
        async def work(msg: aioshare.Message[Job]) -> None:
            job = msg.value
            if job.kind == "poison":
                raise PoisonJobError(f"job {job.id}: the invoice total does not parse")
            if job.kind == "flaky" and msg.delivery_count <= job.fail_times:
                raise TransientError(f"upstream answered 503 for job {job.id}")
            await asyncio.sleep(job.work_ms / 1000)

        try:
            if freeze:
                # It joins first, so it surely gets jobs however fast the others are: then the
                # 4 runtime members join and work while its jobs sit locked by a dead process.
                frozen = await start_frozen_member(bootstrap, config.topic, config.group, freeze)
                result.frozen = frozen.offsets
                display.note(
                    loop.time(),
                    f"member 5 (pid {frozen.process.pid}) took {_n(len(frozen.offsets), 'job')} "
                    f"({'offset' if len(frozen.offsets) == 1 else 'offsets'} {_fmt_offsets(frozen.offsets)}) and froze mid-job: SIGSTOP, no "
                    "heartbeat, no ack, its connections left open",
                )
            work_started = loop.time()
            async with app:
                display.note(
                    loop.time(),
                    f"the runtime started {_n(config.consumers, 'consumer')} of route 'jobs' "
                    f"(concurrency {config.concurrency}) on the same partition",
                )
                members = config.consumers + (1 if frozen is not None else 0)
                announce = loop.create_task(
                    _announce_group(bootstrap, config, members, ledger), name="demo-group"
                )
                try:
                    finished = await _watch(app, ledger, display, config, frozen, started)
                finally:
                    announce.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await announce
                work_ended = loop.time()
                if not finished:
                    # Out of time: do not wait for slow handlers; what is held is released.
                    await app.stop(timeout=1.0)
            result.wall = work_ended - work_started
            if not finished:
                result.problems.append(f"the jobs did not all settle within {config.timeout:g} s")
        finally:
            if frozen is not None:
                await stop_member(frozen.process)
        display.finish()

        copies = await _read_dead_letters(bootstrap, config.dlq_topic)
        async with ShareAdmin(bootstrap) as admin:
            described = await admin.describe_share_group_offsets(config.group, [config.topic])
        for info in described.values():
            result.broker_start_offset = info.start_offset
            result.broker_lag = info.lag

    _fill(result, ledger, copies, frozen)
    verify(result, jobs, config)
    _summary(out, result, jobs, ledger, config, frozen)
    return result


async def _announce_group(bootstrap: str, config: DemoConfig, members: int, ledger: Ledger) -> None:
    """Say (once) when the coordinator shows every member sharing the one partition."""
    from aioshare.admin import ShareAdmin

    async with ShareAdmin(bootstrap) as admin:
        while True:
            described = (await admin.describe_share_groups([config.group]))[config.group]
            if not isinstance(described, BaseException):
                sharing = [m for m in described.members if 0 in m.assignment.get(config.topic, ())]
                if len(sharing) >= members:
                    ledger.notes.append(
                        f"group {config.group!r} ({described.state}): {len(described.members)} members, "
                        f"every one assigned {config.topic}-0 - more members than partitions"
                    )
                    return
            await asyncio.sleep(0.25)  # polls the coordinator: nothing to wait on locally


async def _watch(
    app: Any,
    ledger: Ledger,
    display: Display,
    config: DemoConfig,
    frozen: FrozenMember | None,
    started: float,
) -> bool:
    """Show progress until every job has a fate (True) or the time is up (False)."""
    loop = asyncio.get_running_loop()
    deadline = started + config.timeout
    interval = 0.1 if display.live else 2.0
    next_draw = 0.0
    announced_back = False
    while True:
        now = loop.time()
        for text in ledger.notes:
            display.note(now, text)
        ledger.notes.clear()
        if frozen is not None and not announced_back and all(o in ledger.came_back for o in frozen.offsets):
            announced_back = True
            back = [ledger.came_back[o] - frozen.took_at for o in frozen.offsets]
            lock = (frozen.lock_ms or config.lock_ms) / 1000
            display.note(
                now,
                f"the frozen member's {_n(len(frozen.offsets), 'job')} came back {min(back):.1f}-{max(back):.1f} s "
                + (
                    f"after it took it: its {lock:g} s lock expired and the broker handed it to the "
                    if len(frozen.offsets) == 1
                    else f"after it took them: their {lock:g} s locks expired and the broker handed them to the "
                )
                + "others (delivery 2)",
            )
        if ledger.done >= config.jobs:
            display.progress(now, _progress_line(ledger, app, config.jobs, now, started))
            return True
        if now >= deadline or app.failure is not None:
            display.progress(now, _progress_line(ledger, app, config.jobs, now, started))
            return False
        if now >= next_draw:
            display.progress(now, _progress_line(ledger, app, config.jobs, now, started))
            next_draw = now + interval
        ledger.changed.clear()
        # Woken by a job's fate or every 0.1 s, so the line refreshes while nothing settles.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(0.1, max(0.0, deadline - now))):
                await ledger.changed.wait()


def _fill(result: DemoResult, ledger: Ledger, copies: list[Any], frozen: FrozenMember | None) -> None:
    for offset, fates in ledger.outcomes.items():
        kinds = {kind for kind, _ in fates}
        if "accepted" in kinds:
            result.accepted.add(offset)
        if "dead_lettered" in kinds:
            result.dead_lettered.add(offset)
        if len(fates) > 1:
            result.duplicates[offset] = [f"{kind}@{dc}" for kind, dc in fates]
    for record in copies:
        headers = {k: (v or b"").decode() for k, v in record.headers}
        original = int(headers.get("aioshare.dlq.original.offset", "-1"))
        result.dlq_copies[original] = result.dlq_copies.get(original, 0) + 1
        result.dlq_delivery_counts[original] = int(headers.get("aioshare.dlq.delivery.count", "0"))
    result.attempts = dict(sorted(collections.Counter(ledger.final_delivery.values()).items()))
    result.renewals = ledger.renewals
    result.renewed_jobs = len(ledger.renewed)
    result.retries = ledger.retries
    result.runtime_lock_expiries = ledger.lock_expiries
    result.ack_errors = ledger.ack_errors
    if len(ledger.done_times) >= 100:
        # The steady rate: to the 99th percentile job, before the tail of slow jobs and backoffs.
        k = int(len(ledger.done_times) * 0.99)
        result.steady_rate = k / max(ledger.done_times[k - 1] - ledger.done_times[0], 1e-9)
    if frozen is not None:
        result.came_back = {o: t - frozen.took_at for o, t in ledger.came_back.items()}


def verify(result: DemoResult, jobs: Sequence[Job], config: DemoConfig) -> None:
    """Append to ``result.problems`` every way the run fails to account for its jobs."""
    problems = result.problems
    unaccounted = result.unaccounted
    if unaccounted:
        problems.append(f"{_n(len(unaccounted), 'job')} unaccounted for: {_fmt_offsets(unaccounted)}")
    poison = {job.id for job in jobs if job.kind == "poison"}
    wrong_dlq = sorted(result.dead_lettered - poison)
    if wrong_dlq:
        problems.append(f"jobs dead-lettered that should have succeeded: {_fmt_offsets(wrong_dlq)}")
    poison_accepted = sorted(poison & result.accepted)
    if poison_accepted:
        problems.append(f"poison jobs accepted: {_fmt_offsets(poison_accepted)}")
    missing_copies = sorted(o for o in result.dead_lettered if o not in result.dlq_copies)
    if missing_copies:
        problems.append(f"dead-lettered without a copy in {config.dlq_topic}: {_fmt_offsets(missing_copies)}")
    stray_copies = sorted(set(result.dlq_copies) - result.dead_lettered)
    if stray_copies:
        problems.append(
            f"copies in {config.dlq_topic} of jobs not dead-lettered: {_fmt_offsets(stray_copies)}"
        )
    early = sorted(o for o, dc in result.dlq_delivery_counts.items() if dc < config.max_attempts)
    if early:
        problems.append(f"dead-lettered before max_attempts={config.max_attempts}: {_fmt_offsets(early)}")
    if result.frozen:
        not_back = sorted(set(result.frozen) - set(result.came_back))
        if not_back:
            problems.append(f"jobs of the frozen member never redelivered: {_fmt_offsets(not_back)}")
        lock = config.lock_ms / 1000
        too_soon = sorted(o for o in result.frozen if result.came_back.get(o, lock) < lock * 0.9)
        if too_soon:
            problems.append(f"the frozen member's jobs came back before its lock ran out: {too_soon[:5]}")
    if result.broker_lag is None:
        problems.append("the broker reported no share-partition state (or no lag) for the group")
    elif result.broker_lag > 0:
        problems.append(f"the broker still holds jobs: the group's lag is {result.broker_lag}, not 0")


def _summary(
    out: IO[str],
    result: DemoResult,
    jobs: Sequence[Job],
    ledger: Ledger,
    config: DemoConfig,
    frozen: FrozenMember | None,
) -> None:
    w = out.write
    slow = [job.id for job in jobs if job.kind == "slow"]
    n_dlq_copies = sum(result.dlq_copies.values())
    w("\nSummary\n")
    w(
        f"  produced          {result.produced:>6}   {'job' if result.produced == 1 else 'jobs'} on {config.topic} (1 partition)\n"
    )
    w(f"  accepted          {len(result.accepted):>6}\n")
    w(
        f"  dead-lettered     {len(result.dead_lettered):>6}   read back from {config.dlq_topic}: "
        f"{_n(n_dlq_copies, 'copy', 'copies')}, each after {config.max_attempts} deliveries (max_attempts)\n"
    )
    w(f"  unaccounted       {len(result.unaccounted):>6}\n")
    dup = f"   {_fmt_offsets(sorted(result.duplicates))}" if result.duplicates else "   (at-least-once: none)"
    w(f"  duplicates        {len(result.duplicates):>6}{dup}\n")
    biggest = max(result.attempts.values(), default=1)
    w(
        "  attempts          deliveries per job (broker delivery count of its final delivery); "
        f"bar length ~ log(1 + jobs), 40 # = {_n(biggest, 'job')}\n"
    )
    for deliveries, count in result.attempts.items():
        bar = "#" * max(1, round(40 * math.log1p(count) / math.log1p(biggest)))
        w(f"      {deliveries} {'delivery' if deliveries == 1 else 'deliveries':<10} {count:>6}  {bar}\n")
    w(f"  retries           {result.retries:>6}   held on backoff, then released for redelivery\n")
    w(
        f"  lock renewals     {result.renewals:>6}   for {_n(result.renewed_jobs, 'job')} "
        f"({_n(len(slow), 'slow one')} ran {config.slow_range[0] / 1000:g}-{config.slow_range[1] / 1000:g} s on a {config.lock_ms / 1000:g} s lock)\n"
    )
    frozen_back = len([o for o in result.frozen if o in result.came_back])
    after = [result.came_back[o] for o in result.frozen if o in result.came_back]
    if not result.frozen:
        frozen_text = "no frozen member"
    elif frozen_back == len(result.frozen):
        frozen_text = (
            f"the frozen member's {_n(frozen_back, 'job')}, back {min(after):.1f}-{max(after):.1f} s "
            "after it took them"
        )
    else:
        frozen_text = (
            f"only {frozen_back} of the frozen member's {_n(len(result.frozen), 'job')} came back"
            + (f" ({min(after):.1f}-{max(after):.1f} s after it took them)" if after else "")
        )
    w(
        f"  lock expiries     {frozen_back + result.runtime_lock_expiries:>6}   {frozen_text}; "
        f"{result.runtime_lock_expiries} in the runtime\n"
    )
    if ledger.latencies:
        lat = sorted(ledger.latencies)
        p50, p99 = statistics.median(lat), lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        lat_text = f"receive -> accept p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
    else:
        lat_text = ""
    steady = (
        f"; {result.steady_rate:,.0f} jobs/s until the last 1% (slow jobs and backoffs)"
        if result.steady_rate is not None
        else ""
    )
    done = len(result.accepted | result.dead_lettered)
    w(
        f"  throughput        {done / max(result.wall, 1e-9):>6,.0f}   jobs/s overall ({done} in "
        f"{result.wall:.1f} s, {config.consumers} consumers x concurrency {config.concurrency}){steady}\n"
    )
    if lat_text:
        w(f"  latency           {'':>6}   {lat_text}\n")
    if result.broker_lag is not None:
        w(
            f"  broker            lag {result.broker_lag} (share-partition start offset {result.broker_start_offset}): "
            f"{'no job left available or locked' if result.broker_lag == 0 else 'jobs left!'}\n"
        )
    if result.ack_errors:
        w(f"  ack errors        {result.ack_errors:>6}\n")
    w("\n")
    if result.ok:
        w(
            f"OK: all {_n(result.produced, 'job')} accounted for: {len(result.accepted)} accepted + "
            f"{len(result.dead_lettered)} dead-lettered = {len(result.accepted) + len(result.dead_lettered)}\n"
        )
    else:
        w("FAILED:\n")
        for problem in result.problems:
            w(f"  - {problem}\n")
    out.flush()


# ------------------------------------------------------------------------------ the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = DemoConfig()
    parser.add_argument("--jobs", type=int, default=defaults.jobs, help="jobs to produce")
    parser.add_argument("--consumers", type=int, default=defaults.consumers, help="runtime consumer members")
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency, help="handler slots")
    parser.add_argument("--lock-ms", type=int, default=defaults.lock_ms, help="acquisition lock duration, ms")
    parser.add_argument(
        "--crash-jobs",
        type=int,
        default=defaults.crash_jobs,
        help="jobs the fifth member takes before it is frozen with SIGSTOP (0: no frozen member)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the job mix")
    parser.add_argument(
        "--timeout", type=float, default=defaults.timeout, help="give up after this many seconds"
    )
    parser.add_argument("--plain", action="store_true", help="no refreshing line, even on a terminal")
    parser.add_argument(
        "-b",
        "--bootstrap-server",
        "--bootstrap-servers",
        dest="bootstrap_server",
        default=None,
        metavar="HOST:PORT[,...]",
        help="run on this Kafka cluster (>= 4.2) instead of an embedded broker; the topics and group "
        "get a unique suffix (default: embedded broker)",
    )


def run_demo(args: argparse.Namespace | None = None) -> int:
    import logging

    from aioshare.cli._loop import run as run_loop
    from aioshare.runtime.logs import RECORDS_LOGGER

    # The demo narrates every job's fate itself (progress line, notes, summary); the runtime's
    # per-record WARNING lines, meant for an operator's log, would bury that story on the terminal.
    logging.getLogger(RECORDS_LOGGER).setLevel(logging.ERROR)
    config = DemoConfig()
    if args is not None:
        if args.jobs < 1 or args.consumers < 1 or args.concurrency < 1:
            print("aioshare demo: --jobs, --consumers and --concurrency must be >= 1", file=sys.stderr)
            return 2
        if args.lock_ms < 1000:
            print("aioshare demo: --lock-ms must be >= 1000 (Kafka's lower bound)", file=sys.stderr)
            return 2
        config = DemoConfig(
            jobs=args.jobs,
            consumers=args.consumers,
            concurrency=args.concurrency,
            lock_ms=args.lock_ms,
            crash_jobs=min(args.crash_jobs, args.jobs),
            seed=args.seed,
            timeout=args.timeout,
            live=False if args.plain else None,
        )
        if args.bootstrap_server:
            suffix = uuid.uuid4().hex[:8]
            config = dataclasses.replace(
                config,
                bootstrap=args.bootstrap_server,
                topic=f"{TOPIC}-{suffix}",
                dlq_topic=f"{DLQ_TOPIC}-{suffix}",
                group=f"{GROUP}-{suffix}",
            )
    try:
        result = run_loop(run(config))
    except KeyboardInterrupt:
        return 130
    return 0 if result.ok else 1


def _crash_worker_main(argv: Sequence[str]) -> int:
    bootstrap, topic, group, count = argv
    from aioshare.cli._loop import run as run_loop

    run_loop(_crash_worker(bootstrap, topic, group, int(count)))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--crash-worker"]:
        sys.exit(_crash_worker_main(sys.argv[2:]))
    sys.exit(run_demo())
