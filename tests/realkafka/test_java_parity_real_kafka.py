"""Where ShareConsumer and Kafka's Java KafkaShareConsumer differ, on real Apache Kafka (every tested
version, see conftest.py): docs/consumer.md, "Differences from the Java client", row by row.

Each row is pinned twice where that is cheap: aioshare's side with a ShareConsumer against the
broker, and Java's side with ``tests/java/ShareDriver.java`` (kafka-clients of the cluster's version)
against the same broker, so the table's Java column is demonstrated rather than asserted.  The
driver runs its scenarios in one JVM per Kafka version, started in the background by the first test
of that version (``java_side``), while the aioshare scenarios run; the ``test_java_*`` tests at the
end read its output.

Tests describing a difference aioshare keeps on purpose carry ``# parity: see docs/consumer.md``.
Where aioshare is wrong, the test states the right behaviour and is a strict xfail, so it turns
into a failure (to be un-marked) once aioshare is fixed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from aioshare.admin import ShareAdmin
from aioshare.protocol import records as records_module
from aioshare.protocol.errors import IllegalStateError, UnsupportedCompressionTypeError
from aioshare.protocol.records import Compression
from aioshare.share import AckResult, AckStatus, AckType, LockExpiry, Message, ShareConsumer, TopicPartition
from aioshare.testing.kafka.cluster import KafkaCluster
from aioshare.testing.kafka.java import compile_java, java_command
from aioshare.testing.kafka.requirement import require
from tests.kit import produce_one_batch, wait_until

from .conftest import KafkaTarget, confluent_kafka

DRIVER = Path(__file__).resolve().parents[1] / "java" / "ShareDriver.java"
JOIN_TIMEOUT = 30.0
# Long enough for a loaded 2-core machine to act within it, short enough to watch it run out.
LOCK_MS = 2_000
LOCK = LOCK_MS / 1000
# The JVM runs six consumers one after another, each with its own 30 s deadline inside the driver.
JAVA_TIMEOUT = 120.0


# ------------------------------------------------------------------------------ helpers


def consumer(kafka: KafkaTarget, topic: str, group: str, **kwargs: Any) -> ShareConsumer:
    kwargs.setdefault("ack_mode", "explicit")
    return ShareConsumer(topic, group_id=group, bootstrap_servers=kafka.bootstrap, **kwargs)


async def take(c: ShareConsumer, n: int, timeout: float = JOIN_TIMEOUT) -> list[Message]:  # noqa: ASYNC109
    """Exactly ``n`` messages, asking for no more (fails the test if they do not arrive within ``timeout``)."""
    out: list[Message] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            out.extend(await c.getmany(max_records=n - len(out), timeout=1.0))
    return out


async def lag(kafka: KafkaTarget, group: str, topic: str) -> int | None:
    """The group's lag on partition 0 of ``topic`` (records neither accepted, rejected nor archived)."""
    offsets = await kafka.admin.describe_share_group_offsets(group, [topic])
    return offsets[TopicPartition(topic, 0)].lag


async def nothing_left(kafka: KafkaTarget, group: str, topic: str) -> None:
    """Wait until the group's lag is 0 (accepted, rejected or archived); fails after 20 seconds."""
    got: int | None = None
    try:
        async with asyncio.timeout(20):
            while (got := await lag(kafka, group, topic)) != 0:  # noqa: ASYNC110 -- broker state: no event to await
                await asyncio.sleep(0.2)
    except TimeoutError:
        pytest.fail(f"the group's lag stayed {got}")


async def scenario(kafka: KafkaTarget, values: Sequence[bytes], **group_configs: str) -> tuple[str, str]:
    """A one-partition topic holding ``values`` in one log batch, and a fresh group reading it."""
    topic = await kafka.new_topic()
    await produce_one_batch(kafka.bootstrap, topic, values)
    return topic, await kafka.new_group(**group_configs)


def offsets(messages: Sequence[Message]) -> list[int]:
    return sorted(m.offset for m in messages)


# ------------------------------------------------------------------------------ the Java side


@dataclasses.dataclass
class JavaSide:
    """The driver's JVM for one Kafka version and what each of its steps printed, by label."""

    version: str
    labels: list[str]
    topics: dict[str, str]
    process: subprocess.Popen[str] | None = None
    steps: dict[str, list[dict[str, Any]]] | None = None
    stderr: str = ""

    def results(self) -> dict[str, list[dict[str, Any]]]:
        if self.steps is None:
            assert self.process is not None
            try:
                stdout, self.stderr = self.process.communicate(timeout=JAVA_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                stdout, self.stderr = self.process.communicate()
                pytest.fail(f"ShareDriver ({self.version}) ran over {JAVA_TIMEOUT:.0f} s:\n{stdout}")
            steps: dict[str, list[dict[str, Any]]] = {label: [] for label in self.labels}
            for line in stdout.splitlines():
                if line.startswith("{"):
                    event = json.loads(line)
                    steps[self.labels[event["step"] - 1]].append(event)
            self.steps = steps
        return self.steps

    def step(self, label: str) -> list[dict[str, Any]]:
        events = self.results()[label]
        failed = [e for e in events if e["event"] in ("error", "timeout")]
        assert events and not failed, f"driver step {label} failed: {events}\n{self.stderr[-3000:]}"
        return events


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == kind]


def one(events: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of(events, kind)
    assert len(found) == 1, f"expected one {kind!r} event, got {events}"
    return found[0]


def error_class(event: dict[str, Any]) -> str | None:
    return None if event["error"] is None else event["error"]["class"].rsplit(".", 1)[-1]


async def _prepare_java(
    cluster: KafkaCluster,
) -> tuple[list[str], dict[str, str], list[list[str]], KafkaTarget]:
    admin = ShareAdmin(cluster.bootstrap_servers)
    await admin.start()
    made = KafkaTarget(f"kafka-{cluster.version}", cluster.bootstrap_servers, admin)
    made.version = cluster.version
    topics = {
        "close": await made.new_topic(),
        "implicit": await made.new_topic(),
        "explicit": await made.new_topic(),
        "decode": await made.new_topic(),
        "renew": await made.new_topic(),
    }
    await made.produce(topics["close"], [b"a", b"b", b"c"])
    await made.produce(topics["implicit"], [b"a", b"b", b"c"])
    await produce_one_batch(made.bootstrap, topics["explicit"], [b"0", b"1", b"2", b"3", b"4"])
    # Java's IntegerDeserializer takes exactly four bytes: offset 1 does not deserialize.
    await made.produce(topics["decode"], [(7).to_bytes(4, "big"), b"bad", (8).to_bytes(4, "big")])
    await made.produce(topics["renew"], [b"long job"])
    groups = {name: await made.new_group() for name in ("close", "implicit", "explicit", "decode")}
    groups["renew"] = await made.new_group(**{"share.record.lock.duration.ms": str(LOCK_MS)})
    steps: list[tuple[str, str, dict[str, object]]] = [
        ("close", "poll-close", {"topic": topics["close"], "group": groups["close"], "mode": "implicit"}),
        (
            "close-after",
            "consume",
            {"topic": topics["close"], "group": groups["close"], "policy": "accept", "records": 3},
        ),
        (
            "implicit",
            "mode-rules",
            {"topic": topics["implicit"], "group": groups["implicit"], "mode": "implicit"},
        ),
        (
            "explicit",
            "mode-rules",
            {
                "topic": topics["explicit"],
                "group": groups["explicit"],
                "mode": "explicit",
                "c.max.poll.records": 2,
            },
        ),
        (
            "decode",
            "poll-errors",
            {
                "topic": topics["decode"],
                "group": groups["decode"],
                "errors": 2,
                "c.value.deserializer": "org.apache.kafka.common.serialization.IntegerDeserializer",
            },
        ),
        (
            "renew",
            "consume",
            {
                "topic": topics["renew"],
                "group": groups["renew"],
                "policy": "renew",
                "hold_ms": 1200,
                "renew_every_ms": 300,
            },
        ),
    ]
    args: list[list[str]] = [[step, *(f"{k}={v}" for k, v in params.items())] for _, step, params in steps]
    await admin.close()
    return [label for label, _, _ in steps], topics, args, made


@pytest.fixture(scope="module", autouse=True)
def java_side(kafka_cluster: KafkaCluster) -> Iterator[JavaSide]:
    """Starts the driver for this Kafka version before the version's first test, in the background."""
    version = kafka_cluster.version
    classes = require(lambda: compile_java([DRIVER], version))
    labels, topics, step_args, made = asyncio.run(_prepare_java(kafka_cluster))
    argv: list[str] = []
    for args in step_args:
        argv += (["--"] if argv else []) + args
    command = java_command(version, "ShareDriver", kafka_cluster.bootstrap_servers, *argv, classes=classes)
    side = JavaSide(version, labels, topics)
    side.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield side
    finally:
        if side.process.poll() is None:
            side.process.kill()
            side.process.communicate()

        async def cleanup() -> None:
            made.admin = ShareAdmin(kafka_cluster.bootstrap_servers)
            await made.admin.start()
            try:
                await made.cleanup()
            finally:
                await made.admin.close()

        with contextlib.suppress(Exception):
            asyncio.run(cleanup())


# ------------------------------------------------------------------------------ 1. implicit close


async def test_implicit_close_releases_the_last_delivery(kafka: KafkaTarget) -> None:
    topic, group = await scenario(kafka, [b"a", b"b", b"c"])
    c = consumer(kafka, topic, group, ack_mode="implicit")
    await c.start()
    try:
        delivered = await take(c, 3)
        assert [m.delivery_count for m in delivered] == [1, 1, 1]
        # The application was interrupted while working on them (an exception leaving
        # `async with`): they must not count as processed.
    finally:
        await c.close()
    # close() waited for the answers, and Kafka persists an acknowledgement before answering it:
    # accepted records would already be gone from the lag.
    assert await lag(kafka, group, topic) == 3, "the last delivery was accepted on close()"
    async with consumer(kafka, topic, group) as again:
        back = await take(again, 3)
        assert [m.delivery_count for m in back] == [2, 2, 2]
        for msg in back:
            msg.accept()


# ------------------------------------------------------------------------------ 2. mode rules


async def test_implicit_mode_lets_the_application_release_a_record(kafka: KafkaTarget) -> None:
    # parity: see docs/consumer.md (Java throws IllegalStateException from acknowledge() here)
    topic, group = await scenario(kafka, [b"a", b"b", b"c"])
    async with consumer(kafka, topic, group, ack_mode="implicit") as c:
        first = await take(c, 3)
        retry = next(m for m in first if m.value == b"b")
        retry.release()  # the others are accepted implicitly by the next getmany
        (back,) = await take(c, 1)
        assert (back.offset, back.delivery_count) == (retry.offset, 2)
        assert await c.commit() == {TopicPartition(topic, 0): None}
    assert await lag(kafka, group, topic) == 0


async def test_explicit_mode_getmany_with_records_unacknowledged(kafka: KafkaTarget) -> None:
    # parity: see docs/consumer.md (Java's poll() throws IllegalStateException while records of
    # the previous poll are unacknowledged, and returns whole log batches beyond max.poll.records)
    topic, group = await scenario(kafka, [b"0", b"1", b"2", b"3", b"4"])
    async with consumer(kafka, topic, group, max_poll_records=5) as c:
        first = await take(c, 2)  # getmany(max_records=2)
        assert len(first) == 2  # max_records is a hard cap: the rest of the batch waits here
        assert c.held == 5
        rest = await take(c, 3)  # nothing acknowledged yet: allowed
        assert offsets(first + rest) == [0, 1, 2, 3, 4]
        assert {m.delivery_count for m in first + rest} == {1}
        for msg in first + rest:  # the first getmany's messages stay acknowledgeable
            msg.accept()
        first[0].accept()  # the same outcome again is one outcome
        with pytest.raises(IllegalStateError):
            first[0].reject()
        assert await c.commit() == {TopicPartition(topic, 0): None}
        assert c.held == 0


# ------------------------------------------------------------------------------ 3. lock ran out unseen


async def test_record_whose_lock_ran_out_in_the_buffer_is_not_handed_out(kafka: KafkaTarget) -> None:
    # parity: see docs/consumer.md (Java hands such records out; their acks then fail)
    topic, group = await scenario(
        kafka, [b"0", b"1", b"2", b"3", b"4"], **{"share.record.lock.duration.ms": str(LOCK_MS)}
    )
    expired: list[LockExpiry] = []
    async with consumer(kafka, topic, group, on_lock_expired=expired.extend) as c:
        (first,) = await take(c, 1)
        assert c.held == 5, f"the fetch should have acquired the whole log batch ({expired=})"
        first.accept()
        assert await c.commit() == {TopicPartition(topic, 0): None}
        # CPU-bound work blocking the event loop for longer than the lock: the four records
        # fetched with the first one lose their locks (here and on the broker) while buffered.
        time.sleep(LOCK + 1.0)  # noqa: ASYNC251 -- the point: the loop is blocked
        back = await take(c, 4)
        assert offsets(back) == [1, 2, 3, 4]
        # Never the first delivery, whose lock ran out: the broker's redelivery (count 2).
        assert [m.delivery_count for m in back] == [2, 2, 2, 2]
        # ...and reported through on_lock_expired.
        assert {o for e in expired for o in range(e.first_offset, e.last_offset + 1)} == {1, 2, 3, 4}
        for msg in back:
            msg.accept()
        assert await c.commit() == {TopicPartition(topic, 0): None}


# ------------------------------------------------------------------------------ 4. renew


async def test_renewed_message_is_not_handed_out_again(kafka: KafkaTarget) -> None:
    # parity: see docs/consumer.md (Java's next poll returns a renewed record again)
    topic, group = await scenario(kafka, [b"long job"], **{"share.record.lock.duration.ms": str(LOCK_MS)})
    async with consumer(kafka, topic, group) as c:
        (msg,) = await take(c, 1)
        before = msg.lock_expires_at
        assert await msg.renew() > before
        assert await c.getmany(timeout=1.0) == []
        assert c.held == 1
        msg.accept()
        assert await c.commit() == {TopicPartition(topic, 0): None}
    assert await lag(kafka, group, topic) == 0


# ------------------------------------------------------------------------------ 5. commit callback


async def test_ack_commit_callback_runs_on_the_loop_unasked(kafka: KafkaTarget) -> None:
    # parity: see docs/consumer.md (Java calls its AcknowledgementCommitCallback only inside
    # poll/commitSync/commitAsync/close, keyed by TopicIdPartition)
    topic, group = await scenario(kafka, [b"a", b"b", b"c"])
    reported: dict[TopicPartition, set[int]] = collections.defaultdict(set)
    failures: list[BaseException] = []
    everything = asyncio.Event()

    def on_ack_commit(acked: dict[TopicPartition, set[int]], exc: BaseException | None) -> None:
        if exc is not None:
            failures.append(exc)
        for tp, offs in acked.items():
            reported[tp] |= offs
        if reported.get(TopicPartition(topic, 0)) == {0, 1, 2}:
            everything.set()

    async with consumer(kafka, topic, group, on_ack_commit=on_ack_commit) as c:
        for msg in await take(c, 3):
            msg.accept()
        # No getmany, no commit: the acks go out on their own and their answers are reported
        # on the event loop as they arrive.
        async with asyncio.timeout(10):
            await everything.wait()
        assert failures == []
        assert dict(reported) == {TopicPartition(topic, 0): {0, 1, 2}}


# ------------------------------------------------------------------------------ 6. decoding


def _fussy(raw: bytes | None) -> bytes:
    if raw == b"bad":
        raise ValueError("not a job")
    assert raw is not None
    return raw


async def test_undecodable_value_is_handed_out_and_released_in_implicit_mode(kafka: KafkaTarget) -> None:
    # parity: see docs/consumer.md (Java releases it too, but throws from poll() instead of
    # handing it out)
    topic, group = await scenario(kafka, [b"ok", b"bad", b"fine"])
    async with consumer(kafka, topic, group, ack_mode="implicit", value_deserializer=_fussy) as c:
        first = await take(c, 3)  # getmany does not raise
        assert [m.error is not None for m in sorted(first, key=lambda m: m.offset)] == [False, True, False]
        (back,) = await take(c, 1)  # the good ones accepted, the bad one released
        assert (back.offset, back.delivery_count, back.raw_value) == (1, 2, b"bad")
        back.reject()  # the application may still decide (Java: acknowledge(topic, partition, offset, type))
        assert await c.commit() == {TopicPartition(topic, 0): None}
    assert await lag(kafka, group, topic) == 0


async def test_a_batch_without_a_codec_here_is_given_back_once_and_fails_the_consumer(
    kafka: KafkaTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    # parity: see docs/consumer.md (a missing codec is this process's problem, not the data's:
    # the records go back once, with one delivery spent, and the consumer fails; a member that
    # can read them gets them with delivery count 2 - nothing is archived unseen)
    topic = await kafka.new_topic()
    group = await kafka.new_group()
    values = [bytes([65 + i]) * 1000 for i in range(3)]  # compressible: librdkafka keeps small batches raw
    await produce_compressed(kafka, topic, values, "zstd")
    with monkeypatch.context() as patched:
        # zstd without its codec (the 'cramjam' package missing).
        patched.setitem(records_module._CODEC_CHECKS, Compression.ZSTD, lambda: False)
        results: list[AckResult] = []
        blind = consumer(kafka, topic, group, on_ack_result=results.extend)
        async with blind:
            with pytest.raises(UnsupportedCompressionTypeError, match=f"{topic}-0"):
                async with asyncio.timeout(JOIN_TIMEOUT):
                    while True:
                        assert await blind.getmany(timeout=1.0) == []
    released = {o for r in results for o in range(r.first_offset, r.last_offset + 1)}
    assert released == {0, 1, 2}
    assert {(r.ack_type, r.status) for r in results} == {(AckType.RELEASE, AckStatus.APPLIED)}
    async with consumer(kafka, topic, group) as reader:
        back = await take(reader, 3)
        assert sorted(m.value for m in back) == values
        assert {m.delivery_count for m in back} == {2}
        for msg in back:
            msg.accept()
        assert await reader.commit() == {TopicPartition(topic, 0): None}


async def produce_compressed(kafka: KafkaTarget, topic: str, values: Sequence[bytes], codec: str) -> None:
    producer: Any = confluent_kafka.Producer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "linger.ms": 5,
            "compression.type": codec,
            "enable.idempotence": False,
        }
    )

    def run() -> int:
        for value in values:
            producer.produce(topic, value)
        left: int = producer.flush(60)
        return left

    assert await asyncio.to_thread(run) == 0


# ------------------------------------------------------------------------------ 7. fetching ahead


async def test_fetches_the_next_batch_while_the_application_works(kafka: KafkaTarget) -> None:
    # parity: see docs/consumer.md (Java fetches only when poll() finds its buffer empty)
    topic = await kafka.new_topic()
    await produce_one_batch(kafka.bootstrap, topic, [str(i).encode() for i in range(5)])
    await produce_one_batch(kafka.bootstrap, topic, [str(i).encode() for i in range(5, 10)])
    group = await kafka.new_group()
    async with consumer(kafka, topic, group, max_poll_records=5) as c:
        first = await take(c, 5)
        assert c.held == 5
        # The application works on `first` and asks for nothing: the next batch comes anyway.
        await wait_until(lambda: c.held == 10, timeout=10)
        for msg in first:
            msg.accept()
        second = await c.getmany(timeout=0)  # already here: no wait
        assert offsets(second) == [5, 6, 7, 8, 9]
        for msg in second:
            msg.accept()
        assert await c.commit() == {TopicPartition(topic, 0): None}


# ------------------------------------------------------------------------------ the Java column


def test_java_implicit_close_releases_the_last_poll(java_side: JavaSide) -> None:
    closed = java_side.step("close")
    assert sorted(r["offset"] for r in of(closed, "record")) == [0, 1, 2]
    assert {r["deliveryCount"] for r in of(closed, "record")} == {1}
    one(closed, "closed")
    # The next member gets them again: released on close, not accepted.
    after = [r for r in java_side.step("close-after") if r["event"] == "record"]
    assert sorted(r["offset"] for r in after) == [0, 1, 2]
    assert {r["deliveryCount"] for r in after} == {2}


def test_java_mode_rules(java_side: JavaSide) -> None:
    implicit = java_side.step("implicit")
    ack = one(implicit, "acknowledge")
    assert error_class(ack) == "IllegalStateException", ack
    assert "Implicit acknowledgement" in ack["error"]["message"]

    explicit = java_side.step("explicit")
    # max.poll.records=2, yet the whole five-record log batch comes in one poll (batch_optimized).
    assert one(explicit, "poll")["count"] == 5
    unacked = one(explicit, "poll_unacknowledged")
    assert error_class(unacked) == "IllegalStateException", unacked
    assert "must be acknowledged" in unacked["error"]["message"]
    assert one(explicit, "acknowledged")["error"] is None  # still acknowledgeable after the refusal
    assert one(explicit, "poll_acknowledged")["error"] is None
    stale = one(explicit, "acknowledge_stale")  # a record of an earlier poll
    assert error_class(stale) == "IllegalStateException", stale
    commits = of(explicit, "commit")
    assert commits and all(e is None for c in commits for e in c["results"].values()), commits


def test_java_deserialization_error_is_thrown_and_released(java_side: JavaSide) -> None:
    decode = java_side.step("decode")
    errors = of(decode, "poll_error")
    assert [e["class"].rsplit(".", 1)[-1] for e in errors] == ["RecordDeserializationException"] * 2, errors
    # Thrown for offset 1 twice: released with the first exception, redelivered, thrown again.
    assert [(e["offset"], e["origin"]) for e in errors] == [(1, "VALUE"), (1, "VALUE")]
    assert "has been released" in errors[0]["message"]
    # The records around it are delivered normally.
    assert {r["offset"] for r in of(decode, "record")} >= {0}


def test_java_renewed_record_is_returned_again_by_poll(java_side: JavaSide) -> None:
    renew = java_side.step("renew")
    deliveries = [r for r in of(renew, "record") if r["offset"] == 0]
    assert len(deliveries) >= 2, deliveries
    assert {r["deliveryCount"] for r in deliveries} == {1}  # the same delivery, handed back
    assert deliveries[0]["ack"] == "RENEW"
    assert deliveries[-1]["ack"] == "ACCEPT"
