"""Java's KafkaShareConsumer and Admin (kafka-clients 4.4.0, and 4.2.2 for the core scenarios)
against EmbeddedBroker: a client nobody here wrote, driving ShareGroupHeartbeat, ShareFetch,
ShareAcknowledge and the share-group admin APIs the way Kafka's own tools do.

``tests/java/ShareDriver.java`` is compiled against each version's ``kafka-clients`` and runs a
list of steps in one JVM (start-ups are slow on small machines), printing one JSON object per
fact; each test asserts on the facts of its steps.  One three-node broker serves the module, so
partitions have leaders on different nodes and groups their coordinator on any of them.

Expectations are Kafka's (4.2 semantics, which 4.4 keeps for everything asserted here); where
our broker differs, the test fails and says so.  Without a JDK the module is skipped (failed
under CI), see ``aioshare.testing.kafka.requirement``.

Differences from Kafka 4.2.2 / 4.4.0 found here, both fixed in the broker since (see
docs/embedded-broker.md): records held when a share session closed came back with their delivery
count decremented (test_records_held_at_close_go_to_another_member), and listing the offsets of
an unknown group failed instead of returning nothing (test_admin_lists_no_offsets_for_an_unknown_group).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import queue
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from aioshare.testing.broker import ThreadedBroker
from aioshare.testing.kafka import TESTED_KAFKA_VERSIONS
from aioshare.testing.kafka.java import compile_java, java_command
from aioshare.testing.kafka.requirement import require

pytestmark = pytest.mark.interop

DRIVER = Path(__file__).resolve().parents[1] / "java" / "ShareDriver.java"
# One JVM run of many steps; every consume step has its own 30 s deadline inside the driver.
RUN_TIMEOUT = 150.0
NODES = 3
DELIVERY_LIMIT = 3
BROKER_CONFIG = {"group.share.delivery.count.limit": DELIVERY_LIMIT}
RENEW_LOCK_MS = 2000
# Held for more than two lock durations, renewed every RENEW_EVERY_MS (well inside a lock, so
# a busy machine does not let one run out).
RENEW_HOLD_MS = 4500
RENEW_EVERY_MS = 500
# Kafka's AclEntry.supportedOperations(GROUP): what a broker without an authorizer reports.
GROUP_OPERATIONS = {"READ", "DELETE", "DESCRIBE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"}
# GroupConfig's names in Kafka 4.2.2, which the embedded broker serves (4.4.0 has sixteen more).
KAFKA_42_GROUP_CONFIGS = {
    "consumer.session.timeout.ms",
    "consumer.heartbeat.interval.ms",
    "share.session.timeout.ms",
    "share.heartbeat.interval.ms",
    "share.record.lock.duration.ms",
    "share.auto.offset.reset",
    "share.isolation.level",
    "streams.session.timeout.ms",
    "streams.heartbeat.interval.ms",
    "streams.num.standby.replicas",
    "streams.initial.rebalance.delay.ms",
}
# What Kafka 4.4.0 describes for a group (the embedded broker emulates 4.4 by default): 4.3 added
# per-group delivery limits, record locks, RENEW and assignment intervals, 4.4 the streams
# assignor settings and the dead-letter queue (KIP-1191).
KAFKA_44_GROUP_CONFIGS = KAFKA_42_GROUP_CONFIGS | {
    "consumer.assignment.interval.ms",
    "share.delivery.count.limit",
    "share.partition.max.record.locks",
    "share.renew.acknowledge.enable",
    "share.assignment.interval.ms",
    "streams.assignment.interval.ms",
    "streams.rack.aware.assignment.tags",
    "streams.assignor.name",
    "errors.deadletterqueue.topic.name",
    "errors.deadletterqueue.copy.record.enable",
}


# ------------------------------------------------------------------------------ the driver


def text_of(output: str | bytes | None) -> str:
    """TimeoutExpired carries what was read so far as bytes, even with text=True."""
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


@dataclasses.dataclass
class Step:
    """The JSON events one driver step printed."""

    label: str
    name: str
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]

    def one(self, event: str) -> dict[str, Any]:
        found = self.of(event)
        assert len(found) == 1, f"step {self.label}: expected one {event!r} event, got {self.events}"
        return found[0]

    @property
    def error(self) -> dict[str, Any] | None:
        errors = self.of("error")
        return errors[0] if errors else None

    def check(self) -> Step:
        """This step, asserted to have finished without an error or a timeout."""
        done = self.of("done")
        assert done and done[0]["ok"] and self.error is None and not self.of("timeout"), (
            f"step {self.label} ({self.name}) failed: {self.events}"
        )
        return self

    def records(self, consumer: str = "main") -> list[dict[str, Any]]:
        return [e for e in self.of("record") if e["consumer"] == consumer]


@dataclasses.dataclass
class DriverRun:
    """A list of ShareDriver steps run in one JVM; ``run`` returns each step's events by label."""

    version: str
    steps: list[tuple[str, str, dict[str, str]]] = dataclasses.field(default_factory=list)
    stderr: str = ""

    def add(self, label: str, step: str, params: Mapping[str, object] | None = None, **more: object) -> None:
        merged = {**(params or {}), **more}
        self.steps.append((label, step, {k: str(v) for k, v in merged.items()}))

    def command(self, bootstrap: str) -> list[str]:
        args: list[str] = []
        for _label, step, params in self.steps:
            if args:
                args.append("--")
            args += [step, *(f"{k}={v}" for k, v in params.items())]
        return require(
            lambda: java_command(
                self.version, "ShareDriver", bootstrap, *args, classes=compile_java([DRIVER], self.version)
            )
        )

    def run(self, bootstrap: str) -> dict[str, Step]:
        try:
            done = subprocess.run(
                self.command(bootstrap), capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(
                f"ShareDriver ({self.version}) ran over {RUN_TIMEOUT:.0f} s; output so far:\n"
                f"{text_of(exc.stdout)}"
            )
        self.stderr = done.stderr
        return self.parse(done.stdout.splitlines())

    def parse(self, lines: list[str]) -> dict[str, Step]:
        results = {label: Step(label, step) for label, step, _params in self.steps}
        labels = [label for label, _step, _params in self.steps]
        for line in lines:
            if line.startswith("{"):
                event = json.loads(line)
                results[labels[event["step"] - 1]].events.append(event)
        return results

    def client_problems(self) -> list[str]:
        """WARN/ERROR lines the Java client logged (log4j2-tools.properties sends only those)."""
        return [line for line in self.stderr.splitlines() if re.match(r"\[[^]]+\] (WARN|ERROR) ", line)]


class BackgroundRun:
    """A DriverRun in a JVM of its own while the test does other things (moves leaders, runs
    Kafka's tools); `wait_for` follows its output, `finish` lets it end and returns its steps."""

    def __init__(self, run: DriverRun, bootstrap: str) -> None:
        self.run = run
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.process = subprocess.Popen(
            run.command(bootstrap),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._stderr: list[str | None] = []
        self._pumps = [
            threading.Thread(target=self._pump, args=(self.process.stdout, self.lines.put), daemon=True),
            threading.Thread(target=self._pump, args=(self.process.stderr, self._stderr.append), daemon=True),
        ]
        for pump in self._pumps:
            pump.start()

    @staticmethod
    def _pump(stream: Any, put: Callable[[Any], None]) -> None:
        for line in stream:
            put(line.rstrip("\n"))
        put(None)

    def wait_for(self, event: str, count: int = 1, timeout: float = RUN_TIMEOUT) -> None:
        """Until the driver has printed `count` more `event` events (failing on an error or exit)."""
        deadline = time.monotonic() + timeout
        while count > 0:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {event!r} from the driver within {timeout:.0f} s: {self.seen}")
            if line is None:
                pytest.fail(f"the driver exited before {event!r}: {self.seen}")
            self.seen.append(line)
            if f'"event":"{event}"' in line:
                count -= 1
            elif any(f'"event":"{bad}"' in line for bad in ("error", "timeout", "member_error")):
                pytest.fail(f"the driver failed: {self.seen}")

    def finish(self, timeout: float = RUN_TIMEOUT) -> dict[str, Step]:
        """Release an `await-stdin` step (if any), wait for the exit, return every step's events."""
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.write("go on\n")
            self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            pytest.fail(f"the driver did not finish within {timeout:.0f} s: {self.seen}")
        for pump in self._pumps:
            pump.join(10)
        while (line := self.lines.get(timeout=10)) is not None:
            self.seen.append(line)
        self.run.stderr = "\n".join(line for line in self._stderr if line is not None)
        return self.run.parse(self.seen)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def delivery_keys(records: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(r["partition"], r["offset"]) for r in records]


def assert_callbacks_cover(step: Step, records: list[dict[str, Any]]) -> None:
    """Every acknowledged delivery is reported once by the commit callback, without an exception."""
    callbacks = step.of("callback")
    assert all(c["exception"] is None for c in callbacks), callbacks
    reported = Counter(
        (int(tp.rsplit("-", 1)[1]), offset)
        for c in callbacks
        for tp, offsets in c["offsets"].items()
        for offset in offsets
    )
    acked = Counter((r["partition"], r["offset"]) for r in records if r["ack"] != "HELD")
    assert reported == acked


def assert_commits_succeeded(step: Step) -> None:
    commits = step.of("commit")
    assert commits, f"step {step.label} committed nothing"
    failures = {tp: error for c in commits for tp, error in c["results"].items() if error is not None}
    assert failures == {}


def assert_caught_up(offsets: dict[str, tuple[int, int | None]], ends: dict[str, int]) -> None:
    """Every partition has lag 0 and a start offset of a state write (0..end), as on Kafka."""
    assert {tp: lag for tp, (_start, lag) in offsets.items()} == dict.fromkeys(ends, 0)
    assert all(0 <= offsets[tp][0] <= end for tp, end in ends.items()), offsets


def offsets_of(step: Step) -> dict[str, tuple[int, int | None]]:
    """admin-offsets: partition -> (start offset, lag)."""
    return {
        tp: (info["startOffset"], info["lag"]) for tp, info in step.check().one("offsets")["offsets"].items()
    }


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def broker() -> Iterator[ThreadedBroker]:
    for version in TESTED_KAFKA_VERSIONS:
        require(lambda v=version: java_command(v, "ShareDriver", classes=compile_java([DRIVER], v)))  # type: ignore[misc]
    with ThreadedBroker(BROKER_CONFIG, nodes=NODES) as running:
        yield running


def make_topic(broker: ThreadedBroker, name: str, partitions: int, per_partition: int) -> str:
    async def setup() -> None:
        await broker.create_topic(name, partitions)
        for partition in range(partitions):
            await broker.produce(
                name, [f"{name}/{partition}/{i}" for i in range(per_partition)], partition=partition
            )

    asyncio.run(setup())
    return name


def leaders(broker: ThreadedBroker, topic: str, partitions: int) -> list[int]:
    async def read(embedded: Any) -> list[int]:
        return [embedded.partition(topic, p).leader for p in range(partitions)]

    return broker.call(read)


def earliest(run: DriverRun, group: str, **configs: object) -> None:
    """Through Java's Admin: incrementalAlterConfigs on the GROUP resource."""
    settings = {"set.share.auto.offset.reset": "earliest", **{f"set.{k}": v for k, v in configs.items()}}
    run.add(f"{group}-config", "admin-alter-config", settings, group=group)


@pytest.fixture(scope="module")
def consumer_runs(broker: ThreadedBroker) -> Callable[[str], tuple[DriverRun, dict[str, Step]]]:
    """The consumer scenarios per client version, each version's in one JVM run (made once)."""
    done: dict[str, tuple[DriverRun, dict[str, Step]]] = {}

    def get(version: str) -> tuple[DriverRun, dict[str, Step]]:
        if version not in done:
            done[version] = _consumer_scenarios(broker, version)
        return done[version]

    return get


def _consumer_scenarios(broker: ThreadedBroker, version: str) -> tuple[DriverRun, dict[str, Step]]:
    tag = version.replace(".", "")
    run = DriverRun(version)

    # ACCEPT / RELEASE / REJECT by offset % 3 on first delivery; redeliveries ACCEPTed.
    acks = make_topic(broker, f"acks-{tag}", 3, 30)
    earliest(run, f"acks-{tag}")
    run.add("acks", "consume", topic=acks, group=f"acks-{tag}", policy="cycle", records=90, quiet_ms=1500)
    run.add("acks-offsets", "admin-offsets", group=f"acks-{tag}")

    # RENEW (KIP-1222, clients >= 4.2) held past two lock durations, a rival member waiting.
    renew = make_topic(broker, f"renew-{tag}", 1, 12)
    earliest(run, f"renew-{tag}", **{"share.record.lock.duration.ms": RENEW_LOCK_MS})
    run.add(
        "renew",
        "consume",
        topic=renew,
        group=f"renew-{tag}",
        policy="renew",
        records=12,
        hold_ms=RENEW_HOLD_MS,
        renew_every_ms=RENEW_EVERY_MS,
        rival="true",
        quiet_ms=1000,
    )
    run.add("renew-offsets", "admin-offsets", group=f"renew-{tag}")

    if version == TESTED_KAFKA_VERSIONS[-1]:
        implicit = make_topic(broker, f"implicit-{tag}", 2, 25)
        earliest(run, f"implicit-{tag}")
        run.add("implicit", "consume", topic=implicit, group=f"implicit-{tag}", mode="implicit", records=50)
        run.add("implicit-offsets", "admin-offsets", group=f"implicit-{tag}")

        limit = make_topic(broker, f"limit-{tag}", 1, 10)
        earliest(run, f"limit-{tag}")
        run.add(
            "limit",
            "consume",
            topic=limit,
            group=f"limit-{tag}",
            policy="release",
            limit=DELIVERY_LIMIT,
            records=10,
            quiet_ms=2000,
        )
        run.add("limit-offsets", "admin-offsets", group=f"limit-{tag}")

        held = make_topic(broker, f"close-{tag}", 2, 10)
        # One leader for both partitions, as on a single-node Kafka, so one ShareFetch answer
        # brings all 20 records to the first poll: records the Java client acquired but poll()
        # never returned would come back at delivery count 2 as well (Kafka keeps the count on
        # session end), and the test could not tell them from the held ones.
        lead = leaders(broker, held, 2)[0]
        broker.call(lambda b: b.move_leader(held, 1, lead))
        earliest(run, f"close-{tag}")
        run.add(
            "close-first", "consume", topic=held, group=f"close-{tag}", policy="hold-half", client="first"
        )
        run.add(
            "close-second",
            "consume",
            topic=held,
            group=f"close-{tag}",
            policy="accept",
            records=10,
            quiet_ms=1500,
            client="second",
        )
        run.add("close-offsets", "admin-offsets", group=f"close-{tag}")

        async_topic = make_topic(broker, f"async-{tag}", 1, 20)
        earliest(run, f"async-{tag}")
        run.add(
            "async",
            "consume",
            topic=async_topic,
            group=f"async-{tag}",
            policy="accept",
            records=20,
            commit="async",
        )
        run.add("async-offsets", "admin-offsets", group=f"async-{tag}")

        limited = make_topic(broker, f"record-limit-{tag}", 1, 12)
        earliest(run, f"record-limit-{tag}")
        run.add(
            "record-limit",
            "consume",
            {"c.share.acquire.mode": "record_limit", "c.max.poll.records": 5},
            topic=limited,
            group=f"record-limit-{tag}",
            policy="accept",
            records=12,
        )

    steps = run.run(broker.bootstrap_servers)
    for label, step in steps.items():
        if label.endswith("-config"):
            assert step.check().one("altered_config")["error"] is None
    return run, steps


# ------------------------------------------------------------------------------ consumer tests


@pytest.mark.parametrize("version", TESTED_KAFKA_VERSIONS)
def test_accept_release_reject(
    broker: ThreadedBroker, consumer_runs: Callable[[str], tuple[DriverRun, dict[str, Step]]], version: str
) -> None:
    """90 records on three partitions (led by three nodes): ACCEPTed ones never come back,
    RELEASEd ones come back once with delivery count 2, REJECTed ones never come back."""
    _run, steps = consumer_runs(version)
    step = steps["acks"].check()
    tag = version.replace(".", "")
    assert len(set(leaders(broker, f"acks-{tag}", 3))) == NODES

    records = step.records()
    assert [r for r in records if r["extra"]] == [], "deliveries after everything was settled"
    first = [r for r in records if r["deliveryCount"] == 1]
    again = [r for r in records if r["deliveryCount"] == 2]
    assert len(records) == len(first) + len(again)
    # Every record exactly once on its first delivery, with the value produced at that offset.
    assert sorted(delivery_keys(first)) == [(p, o) for p in range(3) for o in range(30)]
    assert all(r["value"] == f"acks-{tag}/{r['partition']}/{r['offset']}" for r in records)
    # Redelivered: exactly the released ones (offset % 3 == 1), once each.
    assert sorted(delivery_keys(again)) == [(p, o) for p in range(3) for o in range(30) if o % 3 == 1]
    assert {r["ack"] for r in first if r["offset"] % 3 == 1} == {"RELEASE"}
    assert {r["ack"] for r in again} == {"ACCEPT"}

    assert_commits_succeeded(step)
    assert_callbacks_cover(step, records)
    # Everything accepted or rejected: each share-partition's start offset is past its last record.
    # Like Kafka, the start offset is the one of the previous state write (docs/embedded-broker.md),
    # which depends on how the client batched its acknowledgements; the lag is exact.
    assert_caught_up(offsets_of(steps["acks-offsets"]), {f"acks-{tag}-{p}": 30 for p in range(3)})


@pytest.mark.parametrize("version", TESTED_KAFKA_VERSIONS)
def test_renew_keeps_records_past_their_lock(
    consumer_runs: Callable[[str], tuple[DriverRun, dict[str, Step]]], version: str
) -> None:
    """AcknowledgeType.RENEW (explicit mode): the client hands renewed records back on the next
    poll with the same delivery count; held past two lock durations they are never redelivered,
    a second member of the group gets none of them, and the final ACCEPT commits cleanly."""
    _run, steps = consumer_runs(version)
    step = steps["renew"].check()
    assert step.one("lock_timeout")["ms"] == RENEW_LOCK_MS  # ShareFetch v2 AcquisitionLockTimeoutMs
    records = step.records()
    assert {r["deliveryCount"] for r in records} == {1}
    assert [r for r in records if r["extra"]] == []
    by_offset: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        by_offset.setdefault(r["offset"], []).append(r)
    assert sorted(by_offset) == list(range(12))
    for offset, seen in by_offset.items():
        acks = [r["ack"] for r in seen]
        assert acks[-1] == "ACCEPT" and set(acks[:-1]) == {"RENEW"}, (offset, acks)
        assert seen[-1]["t_ms"] - seen[0]["t_ms"] >= RENEW_HOLD_MS > 2 * RENEW_LOCK_MS
    assert step.records("rival") == []
    assert step.of("member_error") == []
    assert_commits_succeeded(step)
    assert_callbacks_cover(step, records)
    assert_caught_up(offsets_of(steps["renew-offsets"]), {f"renew-{version.replace('.', '')}-0": 12})


def test_implicit_mode_acknowledges_everything_polled(
    consumer_runs: Callable[[str], tuple[DriverRun, dict[str, Step]]],
) -> None:
    version = TESTED_KAFKA_VERSIONS[-1]
    _run, steps = consumer_runs(version)
    step = steps["implicit"].check()
    records = step.records()
    assert sorted(delivery_keys(records)) == [(p, o) for p in range(2) for o in range(25)]
    assert {r["deliveryCount"] for r in records} == {1}
    assert_commits_succeeded(step)
    # The acknowledgements of each poll are sent by the next poll or commitSync; all are reported.
    assert_callbacks_cover(step, [{**r, "ack": "ACCEPT"} for r in records])
    tag = version.replace(".", "")
    assert_caught_up(offsets_of(steps["implicit-offsets"]), {f"implicit-{tag}-{p}": 25 for p in range(2)})


def test_delivery_count_limit_archives_released_records(
    consumer_runs: Callable[[str], tuple[DriverRun, dict[str, Step]]],
) -> None:
    """group.share.delivery.count.limit=3: a record RELEASEd on every delivery is delivered with
    counts 1, 2, 3 and then archived; the share-partition's start offset moves past it."""
    version = TESTED_KAFKA_VERSIONS[-1]
    _run, steps = consumer_runs(version)
    step = steps["limit"].check()
    records = step.records()
    assert [r for r in records if r["extra"]] == []
    counts: dict[int, list[int]] = {}
    for r in records:
        counts.setdefault(r["offset"], []).append(r["deliveryCount"])
    assert counts == {offset: [1, 2, 3] for offset in range(10)}
    assert {r["ack"] for r in records} == {"RELEASE"}
    assert_commits_succeeded(step)
    assert_callbacks_cover(step, records)
    assert_caught_up(offsets_of(steps["limit-offsets"]), {f"limit-{version.replace('.', '')}-0": 10})


def test_records_held_at_close_go_to_another_member(
    consumer_runs: Callable[[str], tuple[DriverRun, dict[str, Step]]],
) -> None:
    """A member accepts half of what it got and closes holding the rest: another member gets
    exactly the held records, nothing accepted comes back, nothing is lost.

    Kafka >= 4.2 keeps the delivery count when a closing share session gives records back
    (SharePartition.releaseAcquiredRecords uses DeliveryCountOps.NO_OP in 4.2.2 and 4.4.0;
    KAFKA-19972 removed 4.1's decrement), so the second member sees delivery count 2.
    """
    version = TESTED_KAFKA_VERSIONS[-1]
    _run, steps = consumer_runs(version)
    first = steps["close-first"].check()
    second = steps["close-second"].check()
    accepted = {(r["partition"], r["offset"]) for r in first.records() if r["ack"] == "ACCEPT"}
    held = {(r["partition"], r["offset"]) for r in first.records() if r["ack"] == "HELD"}
    assert accepted and held
    assert_commits_succeeded(first)
    again = second.records()
    assert [r for r in again if r["extra"]] == []
    everything = {(p, o) for p in range(2) for o in range(10)}
    assert sorted(delivery_keys(again)) == sorted(everything - accepted), (
        "held records lost, or accepted ones redelivered"
    )
    counts = {(r["partition"], r["offset"]): r["deliveryCount"] for r in again}
    # Records the first member never fetched reach the second on their first delivery.
    never_fetched = everything - accepted - held
    assert {key: counts[key] for key in never_fetched} == dict.fromkeys(never_fetched, 1)
    assert {key: counts[key] for key in held} == dict.fromkeys(held, 2), "delivery count of held records"
    tag = version.replace(".", "")
    assert_caught_up(offsets_of(steps["close-offsets"]), {f"close-{tag}-{p}": 10 for p in range(2)})


def test_commit_async_reports_through_the_callback(
    consumer_runs: Callable[[str], tuple[DriverRun, dict[str, Step]]],
) -> None:
    version = TESTED_KAFKA_VERSIONS[-1]
    _run, steps = consumer_runs(version)
    step = steps["async"].check()
    records = step.records()
    assert sorted(delivery_keys(records)) == [(0, o) for o in range(20)]
    assert_callbacks_cover(step, records)
    assert_caught_up(offsets_of(steps["async-offsets"]), {f"async-{version.replace('.', '')}-0": 20})


def test_record_limit_acquire_mode_caps_each_fetch(
    consumer_runs: Callable[[str], tuple[DriverRun, dict[str, Step]]],
) -> None:
    """share.acquire.mode=record_limit (KIP-1206, 4.4 client): no poll holds more than
    max.poll.records, although the twelve records were produced as one batch."""
    version = TESTED_KAFKA_VERSIONS[-1]
    _run, steps = consumer_runs(version)
    step = steps["record-limit"].check()
    assert sorted(delivery_keys(step.records())) == [(0, o) for o in range(12)]
    polls = [p["count"] for p in step.of("poll")]
    assert sum(polls) == 12 and max(polls) <= 5, polls


@pytest.mark.parametrize("version", TESTED_KAFKA_VERSIONS)
def test_the_java_client_logs_no_warnings(
    consumer_runs: Callable[[str], tuple[DriverRun, dict[str, Step]]], version: str
) -> None:
    """Kafka's client warns about responses it did not expect (unknown errors, versions...)."""
    run, _steps = consumer_runs(version)
    assert run.client_problems() == []


def test_leader_moves_under_the_java_consumer(broker: ThreadedBroker) -> None:
    """The partition's leader moves twice while a consumer works through it ten records at a time
    (share.acquire.mode=record_limit).  Acknowledgements that reach the old leader fail with
    NotLeaderOrFollowerException, reported by commitSync and the callback; exactly those records
    come back from the new leader.  Nothing is lost, and nothing is delivered twice otherwise."""
    topic = group = make_topic(broker, "failover", 1, 200)
    run = DriverRun(TESTED_KAFKA_VERSIONS[-1])
    earliest(run, group)
    run.add(
        "consume",
        "consume",
        {"c.share.acquire.mode": "record_limit", "c.max.poll.records": 10},
        topic=topic,
        group=group,
        records=200,
        pause_ms=100,
        quiet_ms=3000,
        timeout_ms=60000,
    )
    run.add("offsets", "admin-offsets", group=group)
    background = BackgroundRun(run, broker.bootstrap_servers)
    try:
        [first] = leaders(broker, topic, 1)
        for node in [n for n in range(1, NODES + 1) if n != first]:
            background.wait_for("poll", count=4)
            broker.call(lambda b, node=node: b.move_leader(topic, 0, node))  # type: ignore[misc]
        steps = background.finish()
    finally:
        background.kill()
    step = steps["consume"].check()
    records = step.records()
    assert [r for r in records if r["extra"]] == []
    failed = Counter(
        offset
        for c in step.of("callback")
        if c["exception"] is not None
        for offsets in c["offsets"].values()
        for offset in offsets
    )
    assert {c["exception"]["class"] for c in step.of("callback") if c["exception"]} == {
        "org.apache.kafka.common.errors.NotLeaderOrFollowerException"
    }, "the leader moved twice: some acknowledgement must have gone to an old leader"
    commit_errors = {e["class"] for c in step.of("commit") for e in c["results"].values() if e is not None}
    assert commit_errors == {"org.apache.kafka.common.errors.NotLeaderOrFollowerException"}
    deliveries = Counter(r["offset"] for r in records)
    assert sorted(deliveries) == list(range(200)), "records lost"
    # One delivery per record, plus one per acknowledgement that failed.
    assert {o: n for o, n in deliveries.items() if n > 1} == {o: 1 + failed[o] for o in failed}
    assert_caught_up(offsets_of(steps["offsets"]), {f"{topic}-0": 200})
    assert run.client_problems() == []


# ------------------------------------------------------------------------------ admin tests


@pytest.fixture(scope="module")
def admin_steps(broker: ThreadedBroker) -> dict[str, Step]:
    """Java's Admin through a share group's life, in one JVM run (4.4.0 client)."""
    topic = make_topic(broker, "admin-t", 2, 10)
    group = "admin-g"
    run = DriverRun(TESTED_KAFKA_VERSIONS[-1])
    earliest(run, group)
    run.add("consume-all", "consume", topic=topic, group=group, policy="accept", records=20)
    run.add("m1", "member", topic=topic, group=group, client="m1")
    run.add("m2", "member", topic=topic, group=group, client="m2")
    run.add("described-live", "admin-describe", group=group, members=2)
    run.add("listed-live", "admin-list")
    run.add("alter-live", "admin-alter-offsets", group=group, topic=topic, offsets="0:0")
    run.add("delete-offsets-live", "admin-delete-offsets", group=group, topics=topic)
    run.add("delete-live", "admin-delete-groups", groups=group)
    run.add("stop", "stop-members")
    run.add("described-empty", "admin-describe", group=group)
    run.add("offsets-consumed", "admin-offsets", group=group)
    run.add("offsets-named", "admin-offsets", group=group, topic=topic, partitions="0,1")
    run.add("altered", "admin-alter-offsets", group=group, topic=topic, offsets="0:3,1:5")
    run.add("offsets-altered", "admin-offsets", group=group)
    run.add("reconsume", "consume", topic=topic, group=group, policy="accept", records=12, quiet_ms=1000)
    run.add("offsets-reconsumed", "admin-offsets", group=group)
    run.add("deleted-offsets", "admin-delete-offsets", group=group, topics=topic)
    run.add("offsets-deleted", "admin-offsets", group=group)
    run.add("deleted", "admin-delete-groups", groups=group)
    run.add("listed-after", "admin-list")
    run.add("described-deleted", "admin-describe", group=group)
    run.add("delete-deleted", "admin-delete-groups", groups=group)
    # GROUP resource configs; the group need not exist.
    run.add(
        "config-set",
        "admin-alter-config",
        {
            "set.share.record.lock.duration.ms": 1500,
            "set.share.auto.offset.reset": "earliest",
            "set.share.isolation.level": "read_committed",
        },
        group="config-g",
    )
    run.add("config-described", "admin-describe-config", group="config-g")
    run.add("config-deleted", "admin-alter-config", group="config-g", delete="share.record.lock.duration.ms")
    run.add(
        "config-after-delete",
        "admin-describe-config",
        group="config-g",
        names="share.record.lock.duration.ms",
    )
    run.add(
        "config-too-short", "admin-alter-config", {"set.share.record.lock.duration.ms": 500}, group="config-g"
    )
    run.add("config-unknown", "admin-alter-config", {"set.share.no.such.config": 1}, group="config-g")
    run.add(
        "config-not-a-number",
        "admin-alter-config",
        {"set.share.session.timeout.ms": "soon"},
        group="config-g",
    )
    steps = run.run(broker.bootstrap_servers)
    steps["run"] = Step("run", "run", [{"event": "stderr", "problems": run.client_problems()}])
    return steps


def _error_class(result: dict[str, Any] | None) -> str | None:
    return None if result is None else str(result["class"]).rsplit(".", 1)[1]


def test_admin_describes_a_live_share_group(admin_steps: dict[str, Step]) -> None:
    described = admin_steps["described-live"].check().one("description")["description"]
    assert described["state"] == "Stable"
    assert described["coordinator"] in range(1, NODES + 1)
    assert described["authorizedOperations"] is not None
    assert set(described["authorizedOperations"]) == GROUP_OPERATIONS
    members = described["members"]
    assert sorted(m["clientId"] for m in members) == ["m1", "m2"]
    assert all(m["host"] == "/127.0.0.1" and m["rackId"] is None for m in members)
    assert all(m["memberEpoch"] == described["targetAssignmentEpoch"] for m in members)
    assert described["groupEpoch"] >= described["targetAssignmentEpoch"] >= 1
    # Two partitions, two members: the share assignor gives each member a different one.
    assert sorted(p for m in members for p in m["assignment"]) == ["admin-t-0", "admin-t-1"]

    listed = admin_steps["listed-live"].check().one("groups")
    ours = [g for g in listed["share"] if g["group"] == "admin-g"]
    assert ours == [{"group": "admin-g", "type": "Share", "protocol": "share", "state": "Stable"}]
    assert [g for g in listed["all"] if g["group"] == "admin-g"] == ours


def test_admin_refuses_to_change_a_group_with_members(admin_steps: dict[str, Step]) -> None:
    altered = admin_steps["alter-live"].check().one("altered")
    assert _error_class(altered["results"]["admin-t-0"]) == "GroupNotEmptyException"
    deleted_offsets = admin_steps["delete-offsets-live"].check().one("deleted_offsets")
    assert _error_class(deleted_offsets["results"]["admin-t"]) == "GroupNotEmptyException"
    deleted = admin_steps["delete-live"].check().one("deleted_groups")
    assert _error_class(deleted["results"]["admin-g"]) == "GroupNotEmptyException"


def test_admin_lists_alters_and_deletes_share_group_offsets(admin_steps: dict[str, Step]) -> None:
    empty = admin_steps["described-empty"].check().one("description")["description"]
    assert (empty["state"], empty["members"]) == ("Empty", [])
    consumed = {"admin-t-0": 10, "admin-t-1": 10}
    assert_caught_up(offsets_of(admin_steps["offsets-consumed"]), consumed)
    assert offsets_of(admin_steps["offsets-named"]) == offsets_of(admin_steps["offsets-consumed"])

    altered = admin_steps["altered"].check().one("altered")
    assert altered["results"] == {"admin-t-0": None, "admin-t-1": None} and altered["all"] is None
    assert offsets_of(admin_steps["offsets-altered"]) == {"admin-t-0": (3, 7), "admin-t-1": (5, 5)}
    # Consumption starts again at the new start offsets, as first deliveries.
    reconsumed = admin_steps["reconsume"].check().records()
    assert sorted(delivery_keys(reconsumed)) == [(0, o) for o in range(3, 10)] + [
        (1, o) for o in range(5, 10)
    ]
    assert {r["deliveryCount"] for r in reconsumed} == {1}
    assert_caught_up(offsets_of(admin_steps["offsets-reconsumed"]), consumed)

    deleted = admin_steps["deleted-offsets"].check().one("deleted_offsets")
    assert deleted["results"] == {"admin-t": None} and deleted["all"] is None
    assert offsets_of(admin_steps["offsets-deleted"]) == {}


def test_admin_deletes_a_share_group(admin_steps: dict[str, Step]) -> None:
    assert admin_steps["deleted"].check().one("deleted_groups")["results"] == {"admin-g": None}
    listed = admin_steps["listed-after"].check().one("groups")
    assert "admin-g" not in {g["group"] for g in listed["share"] + listed["all"]}
    # ShareGroupDescribe of an unknown group: GROUP_ID_NOT_FOUND "Group admin-g not found.".
    error = admin_steps["described-deleted"].error
    assert _error_class(error) == "GroupIdNotFoundException"
    assert error is not None and error["message"] == "Group admin-g not found."
    again = admin_steps["delete-deleted"].check().one("deleted_groups")["results"]
    assert _error_class(again["admin-g"]) == "GroupIdNotFoundException"


def test_admin_lists_no_offsets_for_an_unknown_group(broker: ThreadedBroker) -> None:
    """DescribeShareGroupOffsets with every topic (Topics = null) for a group that does not exist:
    Kafka 4.2.2 and 4.4.0 answer with no topics and no error (GroupCoordinatorService.
    describeShareGroupAllOffsets reads initializedShareGroupPartitions, an empty map, and
    KafkaApis does not look the group up), so Admin.listShareGroupOffsets returns an empty map."""
    run = DriverRun(TESTED_KAFKA_VERSIONS[-1])
    run.add("offsets-unknown", "admin-offsets", group="admin-never")
    step = run.run(broker.bootstrap_servers)["offsets-unknown"]
    assert step.error is None, f"Kafka lists no offsets without an error; our broker said {step.error}"
    assert offsets_of(step) == {}
    assert run.client_problems() == []


def test_admin_alters_and_describes_group_configs(admin_steps: dict[str, Step]) -> None:
    assert admin_steps["config-set"].check().one("altered_config")["error"] is None
    entries = admin_steps["config-described"].check().one("config")["entries"]
    assert set(entries) == KAFKA_44_GROUP_CONFIGS
    overridden = {
        "share.record.lock.duration.ms": "1500",
        "share.auto.offset.reset": "earliest",
        "share.isolation.level": "read_committed",
    }
    for name, value in overridden.items():
        assert entries[name] == {
            "value": value,
            "source": "DYNAMIC_GROUP_CONFIG",
            "isDefault": False,
            "readOnly": False,
            "sensitive": False,
            "type": "INT" if name.endswith(".ms") else "STRING",
        }
    # Not overridden: the value the broker runs groups with.  Kafka 4.2 reports DEFAULT_CONFIG
    # whatever the broker's setting (4.4 reports STATIC_BROKER_CONFIG for a broker synonym set
    # in server.properties, e.g. group.share.heartbeat.interval.ms here).
    assert entries["share.heartbeat.interval.ms"]["value"] == "200"
    assert entries["share.session.timeout.ms"]["value"] == "45000"
    sources = {n: entries[n]["source"] for n in KAFKA_42_GROUP_CONFIGS - set(overridden)}
    assert sources.pop("share.heartbeat.interval.ms") == "STATIC_BROKER_CONFIG"
    assert set(sources.values()) == {"DEFAULT_CONFIG"}

    assert admin_steps["config-deleted"].check().one("altered_config")["error"] is None
    after = admin_steps["config-after-delete"].check().one("config")["entries"]
    assert after == {
        "share.record.lock.duration.ms": {
            "value": "30000",
            "source": "DEFAULT_CONFIG",
            "isDefault": True,
            "readOnly": False,
            "sensitive": False,
            "type": "INT",
        }
    }
    for label in ("config-too-short", "config-unknown", "config-not-a-number"):
        error = admin_steps[label].check().one("altered_config")["error"]
        assert _error_class(error) == "InvalidConfigurationException", (label, error)


def test_the_java_admin_logs_no_warnings(admin_steps: dict[str, Step]) -> None:
    assert admin_steps["run"].events[0]["problems"] == []
