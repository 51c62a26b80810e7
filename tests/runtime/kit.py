"""The runtime tests' own kit, on top of ``tests/kit.py`` (waiting, leak checks).

The embedded broker is the one share-group fake.  What is here reads what became of records
(the runtime's events, the broker's record states, a topic's contents), wraps the real
consumer to write down what the runtime asked of it, and changes what the broker serves (no
RENEW; RENEWs tapped or refused).  ``FakeDeadLetterSink`` stands in for the dead-letter
producer only where a test needs it to fail or block on cue.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka import TopicPartition as KafkaTopicPartition

from aioshare.broker.embedded import EmbeddedBroker, ShareRecords
from aioshare.broker.server import RequestContext
from aioshare.protocol.messages import ShareAcknowledgeRequest, ShareAcknowledgeResponse, ShareFetchRequest
from aioshare.protocol.types import RecordState, TopicIdPartition, TopicPartition
from aioshare.runtime import App, ConsumerSpec, Event, EventKind, Message
from aioshare.runtime.consumer import ConsumerLike, share_consumer
from aioshare.runtime.events import TERMINAL_KINDS
from aioshare.share.message import Message as ShareMessage
from aioshare.share.message import detached_message
from aioshare.testing import ThreadedBroker
from tests.kit import wait_for

__all__ = [
    "AppFactory",
    "FakeDeadLetterSink",
    "Ready",
    "Recorder",
    "RenewTap",
    "SentDeadLetter",
    "SentRenew",
    "Watch",
    "WatchedConsumer",
    "applied_acks",
    "header",
    "lock_renewed",
    "message_at",
    "read_topic",
    "settled_at_broker",
    "share_records_when",
    "trail",
    "without_renew_support",
]

AppFactory = Callable[..., App]


class Ready(Protocol):
    """The ``ready`` fixture: ``await ready(app, partitions=1, lock_ms=None, **group_config)``."""

    def __call__(
        self, app: App, *, partitions: int = 1, lock_ms: int | None = None, **group_config: str
    ) -> Awaitable[None]: ...


# ---------------------------------------------------------------- the runtime's events


class Recorder:
    """Collects the app's events; answers 'what became of each record'."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self, kind: EventKind | str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    def terminal(self) -> dict[tuple[str, int, int, int], EventKind]:
        """(topic, partition, offset, delivery_count) -> its terminal event; fails on doubles."""
        out: dict[tuple[str, int, int, int], EventKind] = {}
        for e in self.events:
            if e.kind in TERMINAL_KINDS:
                assert e.topic is not None and e.partition is not None
                assert e.offset is not None and e.delivery_count is not None
                key = (e.topic, e.partition, e.offset, e.delivery_count)
                assert key not in out, f"{key} settled twice: {out[key]} and {e.kind}"
                out[key] = e.kind
        return out

    def received(self) -> set[tuple[str, int, int, int]]:
        out = set()
        for e in self.kinds(EventKind.RECEIVED):
            assert e.topic is not None and e.partition is not None
            assert e.offset is not None and e.delivery_count is not None
            out.add((e.topic, e.partition, e.offset, e.delivery_count))
        return out

    def outcome_counts(self) -> collections.Counter[str]:
        return collections.Counter(k.value for k in self.terminal().values())


def applied_acks(recorder: Recorder) -> dict[tuple[str, int], list[str]]:
    """(topic, offset) -> the acknowledgements the broker applied to it, in order ("accept", ...).

    Every acknowledgement must have been applied: a refused or in-doubt one fails here.
    """
    out: dict[tuple[str, int], list[str]] = {}
    for e in recorder.kinds(EventKind.ACK_COMMITTED):
        assert e.topic is not None and e.offset is not None and e.ack_type is not None
        assert e.reason == "applied", e
        for offset in range(e.offset, e.offset + e.count):
            out.setdefault((e.topic, offset), []).append(e.ack_type)
    return out


def trail(recorder: Recorder, offset: int, topic: str = "jobs") -> list[str]:
    """One record's deliveries and applied acknowledgements: ["acquired#1", "RELEASE", ...].

    Each delivery is followed by the acknowledgement that ended it; they are paired by order
    because a RELEASE's answer and the redelivery can reach the runtime in either order.
    """
    deliveries = sorted(dc for (t, _p, o, dc) in recorder.received() if t == topic and o == offset)
    acks = [ack.upper() for ack in applied_acks(recorder).get((topic, offset), [])]
    out: list[str] = []
    for i, dc in enumerate(deliveries):
        out.append(f"acquired#{dc}")
        out.extend(acks[i : i + 1])
    out.extend(acks[len(deliveries) :])
    return out


# ---------------------------------------------------------------- the broker's view


async def share_records_when(
    kafka: ThreadedBroker,
    group: str,
    topic: str,
    until: Callable[[ShareRecords], bool],
    partition: int = 0,
) -> ShareRecords:
    """The broker's records of ``group`` on ``topic``/``partition`` once ``until(records)`` holds."""
    found = await wait_for(
        lambda: kafka.share_records(group, topic, partition), lambda r: r is not None and until(r)
    )
    assert found is not None
    return found


async def settled_at_broker(
    kafka: ThreadedBroker, group: str, topic: str, count: int, partition: int = 0
) -> ShareRecords:
    """Wait until the broker has the first ``count`` records of the partition done (acknowledged
    or archived: below the share-partition's start offset)."""
    return await share_records_when(kafka, group, topic, lambda r: r.start_offset >= count, partition)


def lock_deadline(records: ShareRecords, offset: int) -> int | None:
    for run in records.in_flight:
        if run.first_offset <= offset <= run.last_offset:
            return run.lock_deadline_ms
    return None


async def lock_renewed(kafka: ThreadedBroker, group: str, topic: str, offset: int, renewals: int) -> None:
    """Wait until the broker has moved the lock of ``offset`` on ``renewals`` times while it
    stays acquired by its first delivery (a lock left alone would expire instead)."""
    deadlines: set[int | None] = set()

    def still_held_and_renewed(records: ShareRecords) -> bool:
        assert records.state_of(offset) == (RecordState.ACQUIRED, 1), records
        deadlines.add(lock_deadline(records, offset))
        return len(deadlines) > renewals

    await share_records_when(kafka, group, topic, still_held_and_renewed)


# ---------------------------------------------------------------- topics


async def read_topic(bootstrap: str, topic: str, count: int) -> list[ConsumerRecord[Any, Any]]:
    """Every record of partition 0 of ``topic``, which must hold exactly ``count``."""
    # "earliest" as well as the seek: aiokafka's own reset of a new assignment can land after
    # seek_to_beginning (seen once with end_offsets() in between), and "latest" would skip all.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tp = KafkaTopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        assert (await consumer.end_offsets([tp]))[tp] == count
        out: list[ConsumerRecord[Any, Any]] = []

        async def read() -> int:
            batch = await consumer.getmany(tp, timeout_ms=100)
            out.extend(batch.get(tp, []))
            return len(out)

        await wait_for(read, lambda n: n >= count, timeout=20)
        return out
    finally:
        await consumer.stop()


def header(record: ConsumerRecord[Any, Any] | SentDeadLetter, name: str) -> str | None:
    """The first value of header ``name`` as text (None: absent, or a null value)."""
    for k, v in record.headers:
        if k == name:
            return None if v is None else bytes(v).decode()
    return None


def message_at(topic: str, offset: int, partition: int = 0, key: bytes | None = None) -> Message[Any]:
    """A runtime Message of value b"v" at ``topic``/``partition``/``offset``, first delivery,
    held by no consumer (for the parts of the runtime that only read a message)."""
    inner = detached_message(
        topic=topic,
        tp=TopicIdPartition(uuid.uuid5(uuid.NAMESPACE_DNS, topic), partition),
        offset=offset,
        key=key,
        value=b"v",
        headers=[],
        timestamp=0,
        delivery_count=1,
        lock_expires_at=100.0,
    )
    return Message(inner, owner=None, route="r")  # type: ignore[arg-type]


# ---------------------------------------------------------------- the consumer


class WatchedConsumer:
    """The real ShareConsumer, with what the runtime asked of it written down: the
    ``max_records`` of every ``getmany`` call, whether one is in progress, commits, close;
    ``fail_with`` makes getmany raise (a consumer that gave up), nothing else changes.

    With ``kafka``, the broker's record states are read just before the close (``at_close``)."""

    def __init__(self, spec: ConsumerSpec, kafka: ThreadedBroker | None = None) -> None:
        self.spec = spec
        self.real = share_consumer(spec)
        self.kafka = kafka
        self.getmany_calls: list[int | None] = []
        self.in_getmany = False
        self.commits = 0
        self.closed = False
        # The broker's view after the final commit, before the close ends the share session:
        # what the app acknowledged itself, not what the session close released.  (Afterwards
        # the leader drops the group's share-partitions: share_records says None.)
        self.at_close: ShareRecords | None = None
        self.held_at_close: int | None = None
        # A fault to raise from the next getmany (as ShareConsumer does once it gave up; the
        # embedded broker has no ACLs to refuse a group for real).
        self.fail_with: BaseException | None = None

    @property
    def held(self) -> int:
        held: int = getattr(self.real, "held")  # noqa: B009 -- ShareConsumer's, not ConsumerLike's
        return held

    async def start(self) -> None:
        await self.real.start()

    async def getmany(
        self,
        max_records: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 -- ShareConsumer's signature
    ) -> list[ShareMessage]:
        self.getmany_calls.append(max_records)
        if self.fail_with is not None:
            raise self.fail_with
        self.in_getmany = True
        try:
            return await self.real.getmany(max_records=max_records, timeout=timeout)
        finally:
            self.in_getmany = False

    async def commit(self, timeout: float | None = None) -> Mapping[TopicPartition, BaseException | None]:  # noqa: ASYNC109 -- ShareConsumer's
        self.commits += 1
        return await self.real.commit(timeout=timeout)

    async def close(self, timeout: float = 30.0) -> Mapping[TopicPartition, BaseException | None]:  # noqa: ASYNC109 -- ShareConsumer's
        self.closed = True
        if self.kafka is not None:
            self.at_close = await self.kafka.share_records(self.spec.group_id, self.spec.topics[0])
        self.held_at_close = self.held
        return await self.real.close(timeout=timeout)

    def stop_fetching(self) -> None:
        stop: Callable[[], None] = getattr(self.real, "stop_fetching")  # noqa: B009
        stop()


class Watch:
    """A consumer factory (``App(consumer_factory=...)``) that keeps every consumer it made."""

    def __init__(self, kafka: ThreadedBroker | None = None) -> None:
        self.kafka = kafka
        self.consumers: list[WatchedConsumer] = []

    def __call__(self, spec: ConsumerSpec) -> ConsumerLike:
        consumer = WatchedConsumer(spec, self.kafka)
        self.consumers.append(consumer)
        return consumer


# ---------------------------------------------------------------- what the broker serves

SHARE_FETCH, SHARE_ACKNOWLEDGE = ShareFetchRequest.API_KEY, ShareAcknowledgeRequest.API_KEY


async def without_renew_support(kafka: ThreadedBroker) -> None:
    """Serve ShareFetch and ShareAcknowledge up to v1 only, as Kafka before 4.2: no RENEW."""

    async def cap(broker: EmbeddedBroker) -> None:
        registry = broker.registry
        for api_key in (SHARE_FETCH, SHARE_ACKNOWLEDGE):
            served = registry.version_range(api_key)
            assert served is not None
            handler = registry.lookup(api_key, served[1])
            assert handler is not None
            registry.register(api_key, handler, min_version=served[0], max_version=1)

    await kafka.acall(cap)


@dataclass(frozen=True)
class SentRenew:
    at: float  # time.monotonic() when the broker received it (the test loop's clock too)
    offsets: tuple[int, ...]


class RenewTap:
    """Wraps the broker's ShareAcknowledge: records every renew-only request it receives and
    answers the next ``refuse``d ones with an error code for each partition, unapplied (the
    broker's handler still sees the request, without its batches, so the share session's
    epoch moves on as it would).  ``await RenewTap.installed(kafka)``."""

    def __init__(self, kafka: ThreadedBroker) -> None:
        self._kafka = kafka
        self.renews: list[SentRenew] = []
        self._refusals: list[int] = []

    @classmethod
    async def installed(cls, kafka: ThreadedBroker) -> RenewTap:
        tap = cls(kafka)
        await tap.install()
        return tap

    async def install(self) -> None:
        async def wrap(broker: EmbeddedBroker) -> None:
            registry = broker.registry
            served = registry.version_range(SHARE_ACKNOWLEDGE)
            assert served is not None
            real = registry.lookup(SHARE_ACKNOWLEDGE, served[1])
            assert real is not None

            async def serve(context: RequestContext, request: Any) -> Any:
                if not request.is_renew_ack:
                    return await real(context, request)
                asked = [(t.topic_id, p) for t in request.topics for p in t.partitions]
                offsets = tuple(
                    offset
                    for _, p in asked
                    for b in p.acknowledgement_batches
                    for offset in range(b.first_offset, b.last_offset + 1)
                )
                self.renews.append(SentRenew(time.monotonic(), offsets))
                if not self._refusals:
                    return await real(context, request)
                code = self._refusals.pop(0)
                for _, p in asked:
                    p.acknowledgement_batches = []
                answer = await real(context, request)
                assert isinstance(answer, ShareAcknowledgeResponse) and answer.error_code == 0
                by_topic: dict[uuid.UUID, list[ShareAcknowledgeResponse.PartitionData]] = {}
                for topic_id, p in asked:
                    by_topic.setdefault(topic_id, []).append(
                        ShareAcknowledgeResponse.PartitionData(
                            partition_index=p.partition_index, error_code=code
                        )
                    )
                answer.responses = [
                    ShareAcknowledgeResponse.ShareAcknowledgeTopicResponse(topic_id=t, partitions=parts)
                    for t, parts in by_topic.items()
                ]
                return answer

            registry.register(SHARE_ACKNOWLEDGE, serve, min_version=served[0], max_version=served[1])

        await self._kafka.acall(wrap)

    async def refuse(self, code: int, times: int = 1) -> None:
        async def add(_broker: EmbeddedBroker) -> None:
            self._refusals.extend([code] * times)

        await self._kafka.acall(add)

    def of(self, offset: int) -> list[SentRenew]:
        return [r for r in self.renews if offset in r.offsets]


# ---------------------------------------------------------------- the dead-letter producer


@dataclass
class SentDeadLetter:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]

    def header(self, name: str) -> str | None:
        return header(self, name)


class FakeDeadLetterSink:
    def __init__(self) -> None:
        self.sent: list[SentDeadLetter] = []
        self.fail_with: BaseException | None = None
        self.gate: asyncio.Event | None = None
        self.started = False
        self.closed = False
        self.attempts = 0

    async def start(self) -> None:
        self.started = True

    async def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes | None]],
        timeout: float,  # noqa: ASYNC109
    ) -> None:
        self.attempts += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(SentDeadLetter(topic, key, value, headers))

    async def close(self) -> None:
        self.closed = True
