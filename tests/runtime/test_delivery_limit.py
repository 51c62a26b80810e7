"""The share group's delivery-count limit: the runtime reads it at route start and gives a record
up on delivery ``min(max_attempts, limit)`` instead of releasing it for a retry the broker never
makes (it archives a record released on its last delivery, with no dead-letter copy).

Counted from both sides: the runtime's events (``trail``, ``outcome_counts``), the broker's
record states, and the dead-letter topic read back with aiokafka.  The reading itself is checked
against real Kafka 4.2 (no group config: the broker's ``group.share.delivery.count.limit``) and
4.4 (the group config ``share.delivery.count.limit``, which DescribeConfigs reports with the
broker's value as its default).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator

import pytest

from aioshare.admin import ShareAdmin
from aioshare.broker.embedded import EmbeddedBroker
from aioshare.protocol.errors import GroupAuthorizationFailedError, InvalidConfigError
from aioshare.protocol.messages import DescribeConfigsRequest
from aioshare.runtime import App, Backoff, EventKind, Message
from aioshare.runtime.delivery_limit import learn_delivery_count_limit
from aioshare.runtime.route import Route
from aioshare.testing import ThreadedBroker, prepare
from aioshare.testing.kafka import TESTED_KAFKA_VERSIONS
from aioshare.testing.kafka.cluster import KafkaCluster
from tests.kit import wait_until

from .kit import AppFactory, Ready, Recorder, header, read_topic, settled_at_broker, trail

LIMIT_LOGGER = "aioshare.runtime.delivery_limit"
QUICK = Backoff(initial=0.05, max=0.05, jitter=False)


@pytest.fixture
def limit_log(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[str]]]:
    """The WARNINGs of the delivery-limit reading, as text."""
    caplog.set_level(logging.DEBUG, logger=LIMIT_LOGGER)

    def warnings() -> list[str]:
        return [
            r.getMessage() for r in caplog.records if r.name == LIMIT_LOGGER and r.levelno == logging.WARNING
        ]

    yield warnings


def always_failing(app: App, deliveries: list[int], **route: object) -> None:
    """A route on "jobs" (group "g") that fails b"bad" every time and accepts anything else."""

    @app.handler("jobs", group_id="g", **route)  # type: ignore[arg-type]
    async def handle(msg: Message[bytes]) -> None:
        if msg.value == b"bad":
            deliveries.append(msg.delivery_count)
            raise RuntimeError("always")


# ---------------------------------------------------------------- embedded broker


async def test_a_limit_below_max_attempts_dead_letters_the_record_on_its_last_delivery(
    kafka: ThreadedBroker,
    kafka_app: AppFactory,
    ready: Ready,
    recorder: Recorder,
    limit_log: Callable[[], list[str]],
) -> None:
    app = kafka_app()
    deliveries: list[int] = []
    always_failing(app, deliveries, retry=QUICK, max_attempts=5, dead_letter_topic="jobs.dlq")
    await ready(app, delivery_count_limit="2")
    await kafka.produce("jobs", [b"bad", b"good"], partition=0)
    async with app:
        (runner,) = app.runners
        assert runner.delivery_count_limit == 2  # known once start() returns
        await wait_until(lambda: trail(recorder, 0) == ["acquired#1", "RELEASE", "acquired#2", "REJECT"])
        await wait_until(lambda: trail(recorder, 1) == ["acquired#1", "ACCEPT"])
        await settled_at_broker(kafka, "g", "jobs", 2)
    assert deliveries == [1, 2]  # never a third: the runtime gave it up on the broker's last delivery
    assert recorder.outcome_counts() == {"released": 1, "dead_lettered": 1, "accepted": 1}
    (dead,) = recorder.kinds(EventKind.DEAD_LETTERED)
    assert (dead.offset, dead.delivery_count, dead.reason) == (0, 2, "exhausted")
    (copy,) = await read_topic(kafka.bootstrap_servers, "jobs.dlq", 1)
    assert copy.value == b"bad"
    assert header(copy, "aioshare.dlq.delivery.count") == "2"
    assert header(copy, "aioshare.dlq.reason") == "exhausted"
    (warning,) = limit_log()
    for said in (
        "'handle'",
        "'g'",
        "max_attempts=5",
        "limit (share.delivery.count.limit) of 2:",
        "delivery 2",
        "dead-lettered to 'jobs.dlq'",
    ):
        assert said in warning, (said, warning)


async def test_without_a_dead_letter_topic_the_last_delivery_is_rejected(
    kafka: ThreadedBroker,
    kafka_app: AppFactory,
    ready: Ready,
    recorder: Recorder,
    limit_log: Callable[[], list[str]],
) -> None:
    app = kafka_app()
    deliveries: list[int] = []
    always_failing(app, deliveries, on_error="release")  # max_attempts: the default 5
    await ready(app, delivery_count_limit="2")
    await kafka.produce("jobs", [b"bad"], partition=0)
    async with app:
        await wait_until(lambda: trail(recorder, 0) == ["acquired#1", "RELEASE", "acquired#2", "REJECT"])
        await settled_at_broker(kafka, "g", "jobs", 1)
    assert deliveries == [1, 2]
    assert recorder.outcome_counts() == {"released": 1, "rejected": 1}
    assert [(e.delivery_count, e.reason) for e in recorder.kinds(EventKind.REJECTED)] == [(2, "exhausted")]
    (warning,) = limit_log()
    assert "max_attempts=5" in warning and "is rejected then" in warning


async def test_max_attempts_below_the_limit_is_unchanged(
    kafka: ThreadedBroker,
    kafka_app: AppFactory,
    ready: Ready,
    recorder: Recorder,
    limit_log: Callable[[], list[str]],
) -> None:
    app = kafka_app()
    deliveries: list[int] = []
    always_failing(app, deliveries, retry=QUICK, max_attempts=3, dead_letter_topic="jobs.dlq")
    await ready(app, delivery_count_limit="4")
    await kafka.produce("jobs", [b"bad"], partition=0)
    async with app:
        assert app.runners[0].delivery_count_limit == 4
        await wait_until(lambda: recorder.outcome_counts() == {"released": 2, "dead_lettered": 1})
        await settled_at_broker(kafka, "g", "jobs", 1)
    assert deliveries == [1, 2, 3]  # max_attempts decides, as before
    assert trail(recorder, 0) == ["acquired#1", "RELEASE", "acquired#2", "RELEASE", "acquired#3", "REJECT"]
    (copy,) = await read_topic(kafka.bootstrap_servers, "jobs.dlq", 1)
    assert header(copy, "aioshare.dlq.delivery.count") == "3"
    assert limit_log() == []


async def describe_configs_answered_after(broker: EmbeddedBroker) -> None:
    broker.delay_responses(5.0, [DescribeConfigsRequest.API_KEY])


async def test_a_limit_that_cannot_be_read_leaves_max_attempts_alone(
    kafka: ThreadedBroker,
    kafka_app: AppFactory,
    ready: Ready,
    recorder: Recorder,
    limit_log: Callable[[], list[str]],
) -> None:
    # The group's limit is 2, but its DescribeConfigs answer comes too late (request_timeout).
    app = kafka_app(consumer_options={"request_timeout": 1.0, "fetch_max_wait": 0.1})
    deliveries: list[int] = []
    always_failing(app, deliveries, retry=QUICK, max_attempts=5, dead_letter_topic="jobs.dlq")
    await ready(app, delivery_count_limit="2")
    await kafka.acall(describe_configs_answered_after)
    await kafka.produce("jobs", [b"bad"], partition=0)
    async with app:
        assert app.runners[0].delivery_count_limit is None
        # As before this feature: released on its last delivery, archived by the broker.
        await wait_until(lambda: trail(recorder, 0) == ["acquired#1", "RELEASE", "acquired#2", "RELEASE"])
        await settled_at_broker(kafka, "g", "jobs", 1)
    assert deliveries == [1, 2]
    assert recorder.outcome_counts() == {"released": 2}
    assert await read_topic(kafka.bootstrap_servers, "jobs.dlq", 0) == []
    (warning,) = limit_log()
    assert "could not read the delivery-count limit of share group 'g'" in warning
    assert "'handle'" in warning and "TimeoutError" in warning and "max_attempts=5 alone" in warning


def a_route(**options: object) -> Route:
    async def handle(msg: Message[bytes]) -> None:
        pass

    return Route(name="r", topics=("jobs",), group_id="g", handler=handle, **options)  # type: ignore[arg-type]


def reading(result: int | BaseException) -> Callable[[], Awaitable[int]]:
    async def read() -> int:
        if isinstance(result, BaseException):
            raise result
        return result

    return read


async def test_a_refused_reading_is_one_warning(limit_log: Callable[[], list[str]]) -> None:
    refused = GroupAuthorizationFailedError("not authorized").with_context("group 'g'")
    assert await learn_delivery_count_limit(a_route(), reading(refused)) is None
    (warning,) = limit_log()
    assert "GroupAuthorizationFailedError" in warning and "'r'" in warning and "'g'" in warning
    # Not a limit at all: the same.
    assert await learn_delivery_count_limit(a_route(), reading(0)) is None
    assert len(limit_log()) == 2


@pytest.mark.parametrize(
    ("max_attempts", "limit", "warned"), [(6, 5, True), (5, 5, False), (2, 5, False), (None, 3, False)]
)
async def test_only_max_attempts_above_the_limit_is_warned_about(
    max_attempts: int | None, limit: int, warned: bool, limit_log: Callable[[], list[str]]
) -> None:
    assert await learn_delivery_count_limit(a_route(max_attempts=max_attempts), reading(limit)) == limit
    assert len(limit_log()) == (1 if warned else 0)


# ---------------------------------------------------------------- real Apache Kafka


@pytest.fixture(params=TESTED_KAFKA_VERSIONS, ids=lambda v: f"kafka-{v}")
def real(request: pytest.FixtureRequest, real_kafka: Callable[[str], KafkaCluster]) -> KafkaCluster:
    return real_kafka(request.param)


def per_group_limits(cluster: KafkaCluster) -> bool:
    """``share.delivery.count.limit`` is a group config from Kafka 4.3 on (KIP-1240)."""
    major, minor, *_ = (int(part) for part in cluster.version.split("."))
    return (major, minor) >= (4, 3)


async def test_the_limit_read_from_real_kafka(real: KafkaCluster) -> None:
    group = f"limit-{uuid.uuid4().hex[:8]}"
    async with ShareAdmin(real.bootstrap_servers) as admin:
        # A group nobody configured (nor ever used): the broker's default, 5.
        assert await admin.delivery_count_limit(group) == 5
        broker = await admin.describe_broker_config(names=["group.share.delivery.count.limit"])
        assert broker["group.share.delivery.count.limit"].value == "5"
        if per_group_limits(real):
            await admin.alter_group_config(group, {"share.delivery.count.limit": "3"})
            assert await admin.delivery_count_limit(group) == 3
        else:
            with pytest.raises(InvalidConfigError, match="Unknown group config name"):
                await admin.alter_group_config(group, {"share.delivery.count.limit": "3"})
            assert await admin.delivery_count_limit(group) == 5


async def test_the_runtime_gives_up_on_real_kafkas_last_delivery(
    real: KafkaCluster, limit_log: Callable[[], list[str]]
) -> None:
    tag = uuid.uuid4().hex[:8]
    topic, dlq, group = f"jobs-{tag}", f"jobs-{tag}.dlq", f"g-{tag}"
    # 4.4: the group's own limit; 4.2: the broker's default, 5.
    limit = 2 if per_group_limits(real) else 5
    recorder = Recorder()
    app = App(
        real.bootstrap_servers, shutdown_timeout=5.0, reports=False, consumer_options={"fetch_max_wait": 0.1}
    )
    app.events.subscribe(recorder)
    deliveries: list[int] = []

    @app.handler(topic, group_id=group, retry=QUICK, max_attempts=6, dead_letter_topic=dlq)
    async def handle(msg: Message[bytes]) -> None:
        deliveries.append(msg.delivery_count)
        raise RuntimeError("always")

    await prepare(app, group_config={"share.delivery.count.limit": str(limit)} if limit != 5 else None)
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=real.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"bad", partition=0)
    finally:
        await producer.stop()
    async with app:
        assert app.runners[0].delivery_count_limit == limit
        await wait_until(lambda: recorder.kinds(EventKind.DEAD_LETTERED) != [], timeout=30)
    assert deliveries == list(range(1, limit + 1))
    assert recorder.outcome_counts() == {"released": limit - 1, "dead_lettered": 1}
    released = [step for n in range(1, limit) for step in (f"acquired#{n}", "RELEASE")]
    assert trail(recorder, 0, topic) == [*released, f"acquired#{limit}", "REJECT"]
    (copy,) = await read_topic(real.bootstrap_servers, dlq, 1)
    assert header(copy, "aioshare.dlq.delivery.count") == str(limit)
    (warning,) = limit_log()
    assert f"(share.delivery.count.limit) of {limit}: " in warning
    assert f"max_attempts=6, but share group '{group}' has a delivery-count limit" in warning
