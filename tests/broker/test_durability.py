"""Durability of the embedded broker's data directory (docs/embedded-broker.md, "Durability").

What survives a killed broker process is tested for real: `aioshare broker --data-dir` runs in a
child process, is SIGKILLed in the middle of its work and restarted on the same directory. What
survives a machine crash cannot be tested in-process; the flush policy that decides it is, by
counting fsync calls (Kafka's flush.messages / flush.ms and their broker-level synonyms).
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from aioshare.admin import ShareAdmin
from aioshare.broker.config import BrokerConfig, InvalidBrokerConfig
from aioshare.broker.embedded import EmbeddedBroker
from aioshare.broker.flush import NEVER, FlushPolicy, FlushScheduler
from aioshare.broker.log import SEGMENT_FILE, PartitionLog
from aioshare.broker.share_partition import PersistedBatch, PersistedState
from aioshare.broker.share_state import ShareStateKey, ShareStateStore
from aioshare.broker.topics import TopicRegistry, validate_topic_configs
from aioshare.client.connection import Connection
from aioshare.protocol.errors import ErrorCode, InvalidConfigError, KafkaConnectionError, KafkaStorageError
from aioshare.protocol.messages import (
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    FetchRequest,
    FetchResponse,
    ProduceRequest,
    ProduceResponse,
)
from aioshare.protocol.records import RecordToWrite, encode_batch, iter_batches
from aioshare.protocol.types import ConfigSource
from aioshare.share import Message, ShareConsumer
from tests.cli._cli import BROKER_ANNOUNCE, start_cli_broker
from tests.kit import wait_until

TIMEOUT = 60

TOPIC = "jobs"
GROUP = "workers"
RECORDS = 100
PER_BATCH = 10
TOPIC_CONFIGS = {"retention.ms": "3600000", "max.message.bytes": "200000"}
GROUP_CONFIGS = {"share.auto.offset.reset": "earliest", "share.record.lock.duration.ms": "45000"}


# --------------------------------------------------------------------------- a broker process


class BrokerProcess:
    """`aioshare broker --data-dir D` in a child process."""

    def __init__(self, process: asyncio.subprocess.Process, bootstrap: str) -> None:
        self.process = process
        self.bootstrap = bootstrap
        host, _, port = bootstrap.split(",")[0].rpartition(":")
        self.address = (host, int(port))

    @classmethod
    async def start(cls, data_dir: Path, *config: str) -> BrokerProcess:
        args = ["--data-dir", str(data_dir)]
        for entry in config:
            args += ["--config", entry]
        process, line = await start_cli_broker(*args, timeout=TIMEOUT, stderr=asyncio.subprocess.DEVNULL)
        if not line.startswith(BROKER_ANNOUNCE):
            process.kill()
            await process.wait()
            raise AssertionError(f"the broker did not start: {line!r}")
        return cls(process, line[len(BROKER_ANNOUNCE) :].strip())

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, nothing is flushed."""
        self.process.send_signal(signal.SIGKILL)
        async with asyncio.timeout(TIMEOUT):
            assert await self.process.wait() == -signal.SIGKILL

    async def ensure_stopped(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


@asynccontextmanager
async def broker_process(data_dir: Path, *config: str) -> AsyncIterator[BrokerProcess]:
    broker = await BrokerProcess.start(data_dir, *config)
    try:
        yield broker
    finally:
        await broker.ensure_stopped()


@asynccontextmanager
async def connection_to(broker: BrokerProcess) -> AsyncIterator[Connection]:
    connection = await Connection.open(*broker.address, client_id="durability-test")
    try:
        yield connection
    finally:
        await connection.close()


async def produce(connection: Connection, values: list[bytes], acks: int = -1) -> int:
    """One batch; returns its base offset once the broker acknowledged it."""
    request = ProduceRequest(
        acks=acks,
        timeout_ms=10_000,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name=TOPIC,
                partition_data=[
                    ProduceRequest.PartitionProduceData(
                        index=0, records=encode_batch([RecordToWrite(None, v) for v in values])
                    )
                ],
            )
        ],
    )
    response = await connection.send(request, 12, response_type=ProduceResponse)
    answer = response.responses[0].partition_responses[0]
    assert answer.error_code == ErrorCode.NONE, answer
    return answer.base_offset


async def read_log(connection: Connection) -> list[tuple[int, bytes | None]]:
    """Every record of the partition, with a plain Fetch from offset 0 to the high watermark."""
    got: list[tuple[int, bytes | None]] = []
    offset = 0
    while True:
        request = FetchRequest(
            max_wait_ms=0,
            min_bytes=1,
            topics=[
                FetchRequest.FetchTopic(
                    topic=TOPIC,
                    partitions=[
                        FetchRequest.FetchPartition(
                            partition=0, fetch_offset=offset, partition_max_bytes=1 << 20
                        )
                    ],
                )
            ],
        )
        response = await connection.send(request, 12, response_type=FetchResponse)
        data = response.responses[0].partitions[0]
        assert data.error_code == ErrorCode.NONE, data
        for batch in iter_batches(data.records or b""):
            for record in batch.records():
                got.append((record.offset, record.value))
                offset = record.offset + 1
        if offset >= data.high_watermark:
            return got


async def topic_overrides(connection: Connection) -> dict[str, str | None]:
    request = DescribeConfigsRequest(
        resources=[
            DescribeConfigsRequest.DescribeConfigsResource(
                resource_type=2, resource_name=TOPIC, configuration_keys=None
            )
        ]
    )
    response = await connection.send(request, 4, response_type=DescribeConfigsResponse)
    result = response.results[0]
    assert result.error_code == ErrorCode.NONE, result
    return {c.name: c.value for c in result.configs if c.config_source == ConfigSource.TOPIC_CONFIG}


async def group_overrides(admin: ShareAdmin) -> dict[str, str | None]:
    described = await admin.describe_group_config(GROUP)
    return {name: entry.value for name, entry in described.items() if not entry.is_default}


async def share_offsets(admin: ShareAdmin) -> dict[int, tuple[int, int]]:
    described = await admin.describe_share_group_offsets(GROUP, [TOPIC])
    assert all(info.error is None for info in described.values()), described
    return {tp.partition: (info.start_offset, info.lag) for tp, info in described.items()}


async def take(consumer: ShareConsumer, count: int) -> list[Message]:
    """Exactly `count` messages (fails on timeout, or if more arrive in the last batch)."""
    got: list[Message] = []
    async with asyncio.timeout(TIMEOUT):
        while len(got) < count:
            got += await consumer.getmany(timeout=1)
    assert len(got) == count, [m.offset for m in got]
    return got


# --------------------------------------------------------------------------- SIGKILL


async def test_a_killed_broker_keeps_acknowledged_records_and_share_state(tmp_path: Path) -> None:
    """Records acknowledged by Produce, share-partition state written before an acknowledgement was
    answered, topics and their configs, and group configs all survive SIGKILL. Acquisition locks
    do not: Kafka never persists ACQUIRED (SharePartition.acquire writes no state), so records held
    when the broker died come back AVAILABLE with the delivery count of the last state write."""
    data_dir = tmp_path / "data"
    accepted, released, rejected, held = range(0, 30), range(30, 50), range(50, 70), range(70, 100)
    values = [f"job-{i}".encode() for i in range(RECORDS)]

    async with broker_process(data_dir) as broker:
        async with ShareAdmin(broker.bootstrap) as admin:
            await admin.create_topic(TOPIC, 1, config=TOPIC_CONFIGS)
            await admin.alter_group_config(GROUP, GROUP_CONFIGS)
            async with connection_to(broker) as connection:
                offsets = [
                    await produce(connection, values[i : i + PER_BATCH]) for i in range(0, RECORDS, PER_BATCH)
                ]
                assert offsets == list(range(0, RECORDS, PER_BATCH))
                topic_configs = await topic_overrides(connection)
            assert topic_configs == TOPIC_CONFIGS
            group_configs = await group_overrides(admin)
            assert group_configs == GROUP_CONFIGS

            consumer = ShareConsumer(
                TOPIC, group_id=GROUP, bootstrap_servers=broker.bootstrap, ack_mode="explicit"
            )
            await consumer.start()
            try:
                messages = await take(consumer, RECORDS)
                # No more acquisitions: what is released stays AVAILABLE until the kill.
                consumer.stop_fetching()
                assert sorted(m.offset for m in messages) == list(range(RECORDS))
                assert {m.delivery_count for m in messages} == {1}
                for message in messages:
                    if message.offset in accepted:
                        message.accept()
                    elif message.offset in released:
                        message.release()
                    elif message.offset in rejected:
                        message.reject()
                results = await consumer.commit()
                assert results and all(error is None for error in results.values()), results
                offsets_before = await share_offsets(admin)
                # The lag counts what is not finished: released and held records.
                assert offsets_before[0][1] == len(released) + len(held)
                await broker.kill()
            finally:
                # The broker is gone: nothing the close sends can arrive (no release of the held
                # records); the restarted broker listens on another port.
                await consumer.close(timeout=2)

    async with broker_process(data_dir) as broker:
        async with connection_to(broker) as connection:
            # Every acknowledged record is still in the log, at its offset.
            assert await read_log(connection) == list(enumerate(values))
            assert await topic_overrides(connection) == topic_configs
        async with ShareAdmin(broker.bootstrap) as admin:
            assert await group_overrides(admin) == group_configs
            assert await share_offsets(admin) == offsets_before

            async with ShareConsumer(
                TOPIC, group_id=GROUP, bootstrap_servers=broker.bootstrap, ack_mode="explicit"
            ) as consumer:
                again = await take(consumer, len(released) + len(held))
                counts = {m.offset: m.delivery_count for m in again}
                # Accepted and rejected records never come back; released ones come back on their
                # second delivery, held ones on their first again (never persisted as acquired).
                assert counts == {offset: 2 for offset in released} | {offset: 1 for offset in held}
                for message in again:
                    message.accept()
                results = await consumer.commit()
                assert results and all(error is None for error in results.values()), results
            # Nothing is left to deliver.
            assert (await share_offsets(admin))[0][1] == 0


async def test_a_broker_killed_while_producing_keeps_every_acknowledged_record(tmp_path: Path) -> None:
    """Kill the broker between two produce requests' answers: every record acknowledged before the
    kill is in the log after the restart, at the offset its acknowledgement named, and the log takes
    new records after it (a torn tail, if the kill left one, was cut off)."""
    data_dir = tmp_path / "data"
    acknowledged: dict[int, bytes] = {}
    sent = 0
    async with broker_process(data_dir) as broker:
        async with ShareAdmin(broker.bootstrap) as admin:
            await admin.create_topic(TOPIC, 1)
        async with connection_to(broker) as connection:
            kill: asyncio.Task[None] | None = None
            with pytest.raises(KafkaConnectionError):
                async with asyncio.timeout(TIMEOUT):
                    while True:
                        batch = [f"r{sent + i}".encode() for i in range(PER_BATCH)]
                        sent += len(batch)
                        # acks=1: what Kafka answers once the leader appended (no fsync either way).
                        base = await produce(connection, batch, acks=1)
                        acknowledged.update(zip(range(base, base + len(batch)), batch, strict=True))
                        if kill is None and len(acknowledged) >= 2000:
                            # Killed while the next requests are on their way.
                            kill = asyncio.create_task(broker.kill())
            assert kill is not None
            await kill
    assert len(acknowledged) >= 2000

    async with broker_process(data_dir) as broker:
        async with connection_to(broker) as connection:
            log = dict(await read_log(connection))
            assert len(log) <= sent
            assert {offset: log.get(offset) for offset in acknowledged} == acknowledged
            assert await produce(connection, [b"after"]) == max(log) + 1


# --------------------------------------------------------------------------- fsync counting


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The path of every file or directory fsynced from now on (read from /proc: Linux)."""
    synced: list[str] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    yield synced


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        return self.now


def records(count: int) -> bytes:
    return encode_batch([RecordToWrite(None, b"v") for _ in range(count)])


def segment_syncs(synced: list[str]) -> int:
    return sum(path.endswith(SEGMENT_FILE) for path in synced)


def test_by_default_appends_never_fsync(tmp_path: Path, fsyncs: list[str]) -> None:
    log = PartitionLog(tmp_path / "t-0")
    for _ in range(50):
        log.append(records(3), leader_epoch=0, now_ms=0)
    log.flush_if_due()
    assert fsyncs == []
    assert log.unflushed_messages == 150


def test_flush_messages_fsyncs_once_that_many_messages_are_unflushed(
    tmp_path: Path, fsyncs: list[str]
) -> None:
    directory = tmp_path / "t-0"
    log = PartitionLog(directory, flush_policy=FlushPolicy(messages=5))
    log.append(records(3), leader_epoch=0, now_ms=0)
    assert (fsyncs, log.unflushed_messages) == ([], 3)
    # 6 >= 5: flushed before the append returns (before Produce is answered), as UnifiedLog does.
    log.append(records(3), leader_epoch=0, now_ms=0)
    # The first flush also makes the new segment's and the new directory's entries durable.
    assert fsyncs == [str(directory / SEGMENT_FILE), str(directory), str(tmp_path)]
    assert log.unflushed_messages == 0
    for _ in range(4):
        log.append(records(1), leader_epoch=0, now_ms=0)
    assert segment_syncs(fsyncs) == 1
    log.append(records(1), leader_epoch=0, now_ms=0)
    assert segment_syncs(fsyncs) == 2 and len(fsyncs) == 4


def test_flush_messages_one_fsyncs_every_append(tmp_path: Path, fsyncs: list[str]) -> None:
    log = PartitionLog(tmp_path / "t-0", flush_policy=FlushPolicy(messages=1))
    for _ in range(10):
        log.append(records(2), leader_epoch=0, now_ms=0)
        assert log.unflushed_messages == 0
    assert segment_syncs(fsyncs) == 10


def test_a_failed_fsync_fails_the_append_with_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = PartitionLog(tmp_path / "t-0", flush_policy=FlushPolicy(messages=1))
    woken: list[int] = []
    log.add_listener(lambda: woken.append(log.log_end_offset))

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    # Produce answers KAFKA_STORAGE_ERROR, as Kafka does when a flush fails.
    with pytest.raises(KafkaStorageError, match="Error while flushing log"):
        log.append(records(2), leader_epoch=0, now_ms=0)
    # The batch is in the log (only as durable as the page cache) and waiters were told.
    assert (log.log_end_offset, log.unflushed_messages, woken) == (2, 2, [2])
    monkeypatch.undo()
    log.append(records(1), leader_epoch=0, now_ms=0)
    assert log.unflushed_messages == 0


def test_flush_ms_flushes_a_log_whose_last_flush_is_that_old(tmp_path: Path, fsyncs: list[str]) -> None:
    clock = FakeClock()
    log = PartitionLog(tmp_path / "t-0", flush_policy=FlushPolicy(ms=100), clock=clock)
    log.append(records(1), leader_epoch=0, now_ms=0)
    clock.now += 99
    log.flush_if_due()
    assert fsyncs == []
    clock.now += 1
    log.flush_if_due()
    assert segment_syncs(fsyncs) == 1 and log.unflushed_messages == 0
    # Nothing new: nothing to flush, however old the last flush (Kafka's recovery point check).
    clock.now += 1000
    log.flush_if_due()
    assert segment_syncs(fsyncs) == 1
    # The last flush is old, so new data is flushed at the next check.
    log.append(records(1), leader_epoch=0, now_ms=0)
    log.flush_if_due()
    assert segment_syncs(fsyncs) == 2


def test_a_reopened_log_counts_what_it_found_as_unflushed(tmp_path: Path, fsyncs: list[str]) -> None:
    # After a killed process the data may be in the page cache only: the first flush covers it.
    log = PartitionLog(tmp_path / "t-0")
    log.append(records(4), leader_epoch=0, now_ms=0)
    log.close()
    reopened = PartitionLog(tmp_path / "t-0", flush_policy=FlushPolicy(messages=10))
    assert reopened.unflushed_messages == 4
    reopened.flush()
    assert segment_syncs(fsyncs) == 1 and reopened.unflushed_messages == 0


def test_the_log_start_checkpoint_is_fsynced_when_a_policy_asks(tmp_path: Path, fsyncs: list[str]) -> None:
    plain = PartitionLog(tmp_path / "a-0")
    plain.append(records(4), leader_epoch=0, now_ms=0)
    plain.delete_records(2)
    assert fsyncs == []
    flushed = PartitionLog(tmp_path / "b-0", flush_policy=FlushPolicy(ms=60_000))
    flushed.append(records(4), leader_epoch=0, now_ms=0)
    flushed.delete_records(2)
    assert str(tmp_path / "b-0" / "log-start-offset.tmp") in fsyncs  # before the rename
    assert fsyncs[-1] == str(tmp_path / "b-0")  # the rename itself


# --------------------------------------------------------------------------- topic and broker configs


def registry(data_dir: Path | None, config: dict[str, str]) -> TopicRegistry:
    return TopicRegistry(BrokerConfig.from_mapping(config), [1], data_dir)


def test_topic_flush_configs_override_the_broker_ones(tmp_path: Path) -> None:
    topics = registry(tmp_path, {"log.flush.interval.messages": "100", "log.flush.interval.ms": "5000"})
    plain = topics.create("plain", 1, 1, alive=[1])
    strict = topics.create("strict", 1, 1, {"flush.messages": "1"}, alive=[1])
    assert plain.partitions[0].log.flush_policy == FlushPolicy(100, 5000)
    assert strict.partitions[0].log.flush_policy == FlushPolicy(1, 5000)
    # A topic config altered later applies to the open logs at once.
    topics.set_configs(plain, {"flush.ms": "10"})
    assert plain.partitions[0].log.flush_policy == FlushPolicy(100, 10)
    topics.close()


def test_flush_ms_defaults_to_the_scheduler_interval() -> None:
    # KafkaConfig.logFlushIntervalMs: log.flush.interval.ms when set, else the scheduler interval.
    assert BrokerConfig.from_mapping({}).effective_log_flush_interval_ms == NEVER
    scheduled = BrokerConfig.from_mapping({"log.flush.scheduler.interval.ms": "250"})
    assert scheduled.effective_log_flush_interval_ms == 250
    both = {"log.flush.scheduler.interval.ms": "250", "log.flush.interval.ms": "1000"}
    assert BrokerConfig.from_mapping(both).effective_log_flush_interval_ms == 1000
    # The topic's flush.ms, and DescribeConfigs: Kafka's synonyms of flush.ms are
    # log.flush.interval.ms, then log.flush.scheduler.interval.ms (ServerTopicConfigSynonyms).
    topics = registry(None, {"log.flush.scheduler.interval.ms": "250"})
    topic = topics.create("t", 1, 1, alive=[1])
    assert topic.flush_policy() == FlushPolicy(NEVER, 250)
    [(row, synonyms)] = topic.describe_configs(["flush.ms"])
    assert (row.value, row.source) == ("250", ConfigSource.STATIC_BROKER_CONFIG)
    assert (synonyms[0].name, synonyms[0].value) == ("log.flush.scheduler.interval.ms", "250")
    topics = registry(None, {"log.flush.scheduler.interval.ms": "250", "log.flush.interval.ms": "1000"})
    topic = topics.create("t", 1, 1, alive=[1])
    [(row, synonyms)] = topic.describe_configs(["flush.ms"])
    assert (row.value, synonyms[0].name) == ("1000", "log.flush.interval.ms")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"log.flush.interval.messages": "0"},
            "Invalid value 0 for configuration log.flush.interval.messages: Value must be at least 1",
        ),
        (
            {"log.flush.interval.messages": "-1"},
            "Invalid value -1 for configuration log.flush.interval.messages: Value must be at least 1",
        ),
        (
            {"log.flush.interval.messages": "abc"},
            "Invalid value abc for configuration log.flush.interval.messages: Not a number of type LONG",
        ),
        (
            {"log.flush.interval.messages": "9223372036854775808"},
            "Invalid value 9223372036854775808 for configuration log.flush.interval.messages: "
            "Not a number of type LONG",
        ),
        (
            {"log.flush.interval.ms": "1.5"},
            "Invalid value 1.5 for configuration log.flush.interval.ms: Not a number of type LONG",
        ),
        (
            {"log.flush.interval.ms": True},
            "Invalid value True for configuration log.flush.interval.ms: "
            "Expected value to be a 64-bit integer, but it was a bool",
        ),
        # Neither key has a validator of its own: Kafka fails building the default LogConfig,
        # whose flush.ms they feed (messages checked on Kafka 4.4.0's KafkaConfig + LogConfig).
        (
            {"log.flush.interval.ms": "-5"},
            "Invalid value -5 for configuration flush.ms: Value must be at least 0",
        ),
        (
            {"log.flush.scheduler.interval.ms": "-5"},
            "Invalid value -5 for configuration flush.ms: Value must be at least 0",
        ),
        (
            {"log.flush.scheduler.interval.ms": "abc"},
            "Invalid value abc for configuration log.flush.scheduler.interval.ms: Not a number of type LONG",
        ),
    ],
)
def test_invalid_broker_flush_configs_are_rejected_like_kafka(config: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidBrokerConfig) as raised:
        BrokerConfig.from_mapping(config)
    assert str(raised.value) == message


def test_a_negative_scheduler_interval_is_accepted_when_flush_ms_is_set() -> None:
    # flush.ms then comes from log.flush.interval.ms; Kafka runs the flusher once (non-positive period).
    config = BrokerConfig.from_mapping(
        {"log.flush.scheduler.interval.ms": "-5", "log.flush.interval.ms": "10"}
    )
    assert config.log_flush_scheduler_interval_ms == -5


@pytest.mark.parametrize(
    ("configs", "message"),
    [
        (
            {"flush.messages": "0"},
            "Invalid value 0 for configuration flush.messages: Value must be at least 1",
        ),
        ({"flush.ms": "-1"}, "Invalid value -1 for configuration flush.ms: Value must be at least 0"),
        ({"flush.ms": "soon"}, "Invalid value soon for configuration flush.ms: Not a number of type LONG"),
    ],
)
def test_invalid_topic_flush_configs_are_rejected_like_kafka(configs: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidConfigError) as raised:
        validate_topic_configs(configs)
    assert raised.value.message == message


def test_topics_json_is_fsynced_only_when_a_flush_policy_is_set(tmp_path: Path, fsyncs: list[str]) -> None:
    plain = registry(tmp_path / "plain", {})
    plain.create("t", 1, 1, alive=[1])
    plain.close()  # the clean shutdown flushes the empty log: nothing appended, nothing to sync
    assert fsyncs == []
    flushed = registry(tmp_path / "flushed", {"log.flush.interval.ms": "60000"})
    flushed.create("t", 1, 1, alive=[1])
    assert fsyncs == [str(tmp_path / "flushed" / "topics.tmp"), str(tmp_path / "flushed")]
    flushed.close()
    # A topic's own flush config asks for it too.
    fsyncs.clear()
    per_topic = registry(tmp_path / "per-topic", {})
    per_topic.create("t", 1, 1, {"flush.messages": "1000"}, alive=[1])
    assert str(tmp_path / "per-topic" / "topics.tmp") in fsyncs
    per_topic.close()


def test_a_clean_close_flushes_every_log(tmp_path: Path, fsyncs: list[str]) -> None:
    topics = registry(tmp_path, {})
    topic = topics.create("t", 3, 1, alive=[1])
    topic.partitions[0].log.append(records(2), leader_epoch=0, now_ms=0)
    topic.partitions[2].log.append(records(2), leader_epoch=0, now_ms=0)
    assert fsyncs == []
    topics.close()  # LogManager.shutdown flushes every log
    assert sorted(p for p in fsyncs if p.endswith(SEGMENT_FILE)) == [
        str(tmp_path / "t-0" / SEGMENT_FILE),
        str(tmp_path / "t-2" / SEGMENT_FILE),
    ]


# --------------------------------------------------------------------------- the flush scheduler


async def test_the_flush_scheduler_flushes_dirty_logs_and_stops_with_the_broker(
    tmp_path: Path, fsyncs: list[str]
) -> None:
    before = asyncio.all_tasks()
    config = {"log.flush.scheduler.interval.ms": "20", "log.flush.interval.ms": "0"}
    async with EmbeddedBroker(data_dir=tmp_path, config=config) as broker:
        await broker.create_topic("t")
        topics = broker.cluster.topics
        assert topics.flush_scheduler_running
        log = broker.partition("t", 0).log
        for round_ in range(1, 4):
            log.append(records(5), leader_epoch=0, now_ms=0)
            await wait_until(lambda: log.unflushed_messages == 0, timeout=TIMEOUT)
            assert segment_syncs(fsyncs) == round_
    assert not topics.flush_scheduler_running
    assert asyncio.all_tasks() == before
    # The scheduler is a timer on the loop: a cancelled one never runs again.
    synced = len(fsyncs)
    await asyncio.sleep(0.1)  # five scheduler intervals, with nothing supposed to happen
    assert len(fsyncs) == synced


async def test_no_flush_scheduler_runs_by_default(tmp_path: Path) -> None:
    async with EmbeddedBroker(data_dir=tmp_path) as broker:
        assert not broker.cluster.topics.flush_scheduler_running
    # Kafka checks flush.ms only every log.flush.scheduler.interval.ms (default never), so
    # log.flush.interval.ms alone does not start it either.
    async with EmbeddedBroker(data_dir=tmp_path, config={"log.flush.interval.ms": "1000"}) as broker:
        assert not broker.cluster.topics.flush_scheduler_running


async def test_a_non_positive_scheduler_interval_checks_once() -> None:
    checks: list[int] = []
    scheduler = FlushScheduler(0, lambda: checks.append(1))
    await wait_until(lambda: bool(checks), timeout=TIMEOUT)
    assert not scheduler.running
    scheduler.close()


async def test_a_failing_check_does_not_stop_the_scheduler(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def check() -> None:
        calls.append(1)
        raise OSError("disk gone")

    scheduler = FlushScheduler(1, check)
    try:
        await wait_until(lambda: len(calls) >= 3, timeout=TIMEOUT)
        assert scheduler.running
        assert "flushing logs failed" in caplog.text
    finally:
        scheduler.close()


async def test_flush_messages_one_makes_every_produce_durable_before_its_answer(
    tmp_path: Path, fsyncs: list[str]
) -> None:
    async with EmbeddedBroker(data_dir=tmp_path, config={"log.flush.interval.messages": "1"}) as broker:
        await broker.create_topic(TOPIC)
        log = broker.partition(TOPIC, 0).log
        host, port = broker.address(1)
        connection = await Connection.open(host, port)
        try:
            for round_ in range(1, 6):
                await produce(connection, [b"a", b"b"])
                assert log.unflushed_messages == 0
                assert segment_syncs(fsyncs) == round_
        finally:
            await connection.close()


# --------------------------------------------------------------------------- share-partition state


KEY = ShareStateKey(GROUP, uuid.UUID(int=7), 0)


def state(start: int) -> PersistedState:
    return PersistedState(state_epoch=1, start_offset=start, batches=[PersistedBatch(start, start + 4, 0, 1)])


def test_share_state_is_not_fsynced_by_default(tmp_path: Path, fsyncs: list[str]) -> None:
    store = ShareStateStore(tmp_path)
    for start in range(5):
        store.write(KEY, state(start))
    assert fsyncs == []


def test_share_state_with_flush_messages_one_is_durable_before_the_write_returns(
    tmp_path: Path, fsyncs: list[str]
) -> None:
    store = ShareStateStore(tmp_path, flush_policy=FlushPolicy(messages=1))
    store.write(KEY, state(0))
    group_dir = tmp_path / GROUP.encode().hex()
    file = group_dir / f"{KEY.topic_id.hex}-0"
    # The new content before the rename, the rename, and the new group directory's entry.
    assert fsyncs == [f"{file}.tmp", str(group_dir), str(tmp_path)]
    fsyncs.clear()
    store.write(KEY, state(1))
    assert fsyncs == [f"{file}.tmp", str(group_dir)]


def test_share_state_flushes_every_n_writes_and_when_flush_ms_passed(
    tmp_path: Path, fsyncs: list[str]
) -> None:
    clock = FakeClock()
    store = ShareStateStore(tmp_path, flush_policy=FlushPolicy(messages=3, ms=100), clock=clock)
    other = ShareStateKey(GROUP, uuid.UUID(int=8), 0)
    store.write(KEY, state(0))
    store.write(other, state(0))
    assert fsyncs == []
    store.write(KEY, state(1))  # the third write: it and the two before it are made durable
    group_dir = tmp_path / GROUP.encode().hex()
    assert sorted(fsyncs) == sorted(
        [
            f"{group_dir / KEY.topic_id.hex}-0.tmp",
            str(group_dir),
            f"{group_dir / other.topic_id.hex}-0.json",
            str(group_dir),
            str(tmp_path),
        ]
    )
    fsyncs.clear()
    store.write(other, state(1))
    clock.now += 99
    store.flush_if_due()
    assert fsyncs == []
    clock.now += 1
    store.flush_if_due()
    assert fsyncs == [f"{group_dir / other.topic_id.hex}-0.json", str(group_dir)]
    fsyncs.clear()
    store.delete(GROUP)  # deletions count as writes (tombstones in __share_group_state)
    store.flush()
    assert fsyncs == [str(group_dir)]


def test_the_reported_start_offset_survives_a_restart(tmp_path: Path) -> None:
    # DescribeShareGroupOffsets lags one write behind (what Kafka's share coordinator holds);
    # after a restart it must report the same, as Kafka's coordinator replays what was written.
    store = ShareStateStore(tmp_path)
    store.write(KEY, state(0), first_load=True)
    assert store.reported_start_offset(KEY) == -1
    assert ShareStateStore(tmp_path).reported_start_offset(KEY) == -1
    store.write(KEY, state(5))
    store.write(KEY, state(9))
    assert store.reported_start_offset(KEY) == 5
    reloaded = ShareStateStore(tmp_path)
    assert reloaded.reported_start_offset(KEY) == 5
    assert reloaded.read(KEY) == state(9)


def test_share_state_files_without_a_reported_start_offset_still_load(tmp_path: Path) -> None:
    # Files written before the reported start offset was kept report the state's start offset.
    group_dir = tmp_path / GROUP.encode().hex()
    group_dir.mkdir()
    (group_dir / f"{KEY.topic_id.hex}-0.json").write_text(
        '{"state_epoch":1,"start_offset":4,"batches":[],"delivery_complete_count":0,"leader_epoch":0}'
    )
    store = ShareStateStore(tmp_path)
    assert store.read(KEY) == PersistedState(state_epoch=1, start_offset=4)
    assert store.reported_start_offset(KEY) == 4


async def test_share_state_follows_the_broker_flush_configs(tmp_path: Path, fsyncs: list[str]) -> None:
    from .share_fetch_support import ShareClient, acquired, alter_group_config, partition_data
    from .share_fetch_support import produce as produce_records

    config = {"log.flush.interval.messages": "1"}
    async with EmbeddedBroker(data_dir=tmp_path, config=config) as broker:
        topic_id = await broker.create_topic("t", 1)
        await alter_group_config(broker, "g", share_auto_offset_reset="earliest")
        produce_records(broker, "t", 10, per_batch=5)
        client = await ShareClient.open(broker, topic_id)
        try:
            assert acquired(await client.fetch(max_records=10)) == [(0, 9, 1)]
            fsyncs.clear()
            response = await client.fetch(acks={0: [(0, 4, [1])]}, max_records=0)
            assert partition_data(response).acknowledge_error_code == ErrorCode.NONE
            state_syncs = [p for p in fsyncs if "share-state" in p]
            assert any(p.endswith(".tmp") for p in state_syncs), fsyncs
        finally:
            await client.close()
