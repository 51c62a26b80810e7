"""BrokerDeadLetterSink: the broker's DLQ (KIP-1191) where the cluster has it, the client copy elsewhere.

The same App - a handler that fails twice on "bad" records, then dead-letters them - runs on
the embedded broker emulating 4.4 (share.version 2) and 4.2 (share.version 1), and on real Kafka
4.4.0 and 4.2.2: on 4.4 the broker writes the dead letters with Kafka's __dlq.errors.* headers,
on 4.2 the runtime produces its own copy with aioshare.dlq.* headers.  Every record is counted.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from aioshare.admin import ShareAdmin
from aioshare.protocol.errors import ConfigError
from aioshare.runtime import App, Backoff, EventKind, Message
from aioshare.runtime.broker_dlq import BrokerDeadLetterSink
from aioshare.testing.kafka import TESTED_KAFKA_VERSIONS
from tests.kit import wait_until

from .kit import Recorder, read_topic

LOCK_MS = 2000
GOOD, BAD = [b"good-0", b"good-2"], [b"bad-1", b"bad-3"]


class Target:
    def __init__(self, bootstrap: str, kafka_version: str, real: bool) -> None:
        self.bootstrap = bootstrap
        self.kafka_version = kafka_version
        self.real = real

    @property
    def broker_dlq(self) -> bool:
        return self.kafka_version.startswith("4.4")


@pytest.fixture(
    params=["embedded-4.4", "embedded-4.2", *(f"kafka-{v}" for v in TESTED_KAFKA_VERSIONS)],
)
async def target(request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    kind, _, version = request.param.partition("-")
    if kind == "kafka":
        kafka = request.getfixturevalue("real_kafka")(version)
        yield Target(kafka.bootstrap_servers, version, True)
        return
    from aioshare.broker.embedded import EmbeddedBroker

    config = {
        "group.share.min.record.lock.duration.ms": 1000,
        "group.share.min.heartbeat.interval.ms": 200,
        "group.share.heartbeat.interval.ms": 200,
    }
    if version == "4.4":
        config["group.share.assignment.interval.ms"] = 0
        # The embedded broker does not know 4.4's DLQ topic config yet: it creates the DLQ
        # topic on first use instead (docs/embedded-broker.md, "Kafka versions").
        config["errors.deadletterqueue.auto.create.topics.enable"] = "true"
    async with EmbeddedBroker(kafka_version=version, config=config) as broker:
        yield Target(broker.bootstrap_servers, version, False)


async def prepare(target: Target, topic: str, dlq: str, group: str) -> None:
    async with ShareAdmin(target.bootstrap) as admin:
        await admin.create_topic(topic, 1)
        # A DLQ topic of Kafka 4.4 must say so (TopicConfig errors.deadletterqueue.group.enable);
        # the embedded broker creates its own on first use (see the fixture).
        dlq_config = (
            {"errors.deadletterqueue.group.enable": "true"} if target.real and target.broker_dlq else None
        )
        if target.real or not target.broker_dlq:
            await admin.create_topic(dlq, 1, config=dlq_config)
        await admin.alter_group_config(
            group, {"share.auto.offset.reset": "earliest", "share.record.lock.duration.ms": str(LOCK_MS)}
        )


async def test_dead_letters_come_from_the_broker_on_44_and_from_the_runtime_before(target: Target) -> None:
    tag = uuid.uuid4().hex[:8]
    topic, dlq, group = f"jobs-{tag}", f"dlq.jobs-{tag}", f"g-{tag}"
    await prepare(target, topic, dlq, group)
    sink = BrokerDeadLetterSink(target.bootstrap, {group: dlq})
    recorder = Recorder()
    app = App(
        target.bootstrap,
        dead_letter_sink=sink,
        shutdown_timeout=5.0,
        consumer_options={"fetch_max_wait": 0.1},
    )
    app.events.subscribe(recorder)
    seen: list[bytes] = []

    @app.handler(
        topic,
        group_id=group,
        retry=Backoff(initial=0.2, max=0.2, jitter=False),
        max_attempts=2,
        dead_letter_topic=dlq,
    )
    async def handle(msg: Message[bytes]) -> None:
        seen.append(msg.value)
        if msg.value.startswith(b"bad"):
            raise ValueError(f"cannot handle {msg.value!r}")

    async with ShareAdmin(target.bootstrap) as admin:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=target.bootstrap)
        await producer.start()
        try:
            for value in [GOOD[0], BAD[0], GOOD[1], BAD[1]]:
                await producer.send_and_wait(topic, value, partition=0)
        finally:
            await producer.stop()
        async with app:
            assert sink.mode == ("broker" if target.broker_dlq else "client")
            await wait_until(lambda: len(recorder.kinds(EventKind.DEAD_LETTERED)) == 2, timeout=30)
            await wait_until(lambda: len(recorder.kinds(EventKind.ACCEPTED)) == 2, timeout=10)
        group_dlq = (await admin.describe_group_config(group)).get("errors.deadletterqueue.topic.name")
    # Each good record handled once, each bad one twice (then given up): nothing else.
    assert sorted(seen) == sorted([*GOOD, *BAD, *BAD])
    copies = await read_topic(target.bootstrap, dlq, 2)
    assert sorted(r.value for r in copies) == sorted(BAD)
    headers = {k: (v or b"").decode() for k, v in copies[0].headers}
    if target.broker_dlq:
        assert group_dlq is not None and group_dlq.value == dlq
        assert headers["__dlq.errors.topic"] == topic
        assert headers["__dlq.errors.group"] == group
        assert headers["__dlq.errors.delivery.count"] == "2"
        assert not any(k.startswith("aioshare.dlq.") for k in headers)
    else:
        assert group_dlq is None  # 4.2 has no such group config: nothing was set
        assert headers["aioshare.dlq.original.topic"] == topic
        assert headers["aioshare.dlq.exception.class"] == "builtins.ValueError"


def test_a_dlq_topic_without_the_broker_prefix_is_refused_up_front() -> None:
    """Kafka 4.4 writes dead letters only to topics under errors.deadletterqueue.topic.name.prefix
    ("dlq."), and finds out only when it writes one (it then logs and archives the record)."""
    with pytest.raises(ConfigError, match=r"does not start with 'dlq\.'"):
        BrokerDeadLetterSink("localhost:9092", {"g": "jobs.dlq"})
    BrokerDeadLetterSink("localhost:9092", {"g": "jobs.dlq"}, topic_prefix="jobs.")


async def test_a_group_config_the_broker_refuses_fails_the_start() -> None:
    from aioshare.broker.embedded import EmbeddedBroker

    async with EmbeddedBroker(kafka_version="4.4") as broker:
        # Kafka's own rule: a DLQ topic name must not start with "__".
        sink = BrokerDeadLetterSink(broker.bootstrap_servers, {"g": "__dlq"}, topic_prefix="")
        with pytest.raises(ConfigError, match="group g: the broker refused"):
            await sink.start()
        assert sink.mode is None


async def test_sends_to_a_topic_it_did_not_configure_are_refused() -> None:
    from aioshare.broker.embedded import EmbeddedBroker

    async with EmbeddedBroker(kafka_version="4.4") as broker:
        sink = BrokerDeadLetterSink(broker.bootstrap_servers, {"g": "dlq.jobs"})
        await sink.start()
        try:
            assert sink.mode == "broker"
            await sink.send("dlq.jobs", key=None, value=b"v", headers=[], timeout=1)  # the REJECT does it
            with pytest.raises(ConfigError, match="not one this sink configured"):
                await sink.send("other.dlq", key=None, value=b"v", headers=[], timeout=1)
        finally:
            await sink.close()


def test_needs_a_group() -> None:
    with pytest.raises(ConfigError):
        BrokerDeadLetterSink("localhost:9092", {})
