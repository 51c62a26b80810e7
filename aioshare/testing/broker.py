"""``ThreadedBroker``: an ``EmbeddedBroker`` on its own thread and event loop.

Tests run on event loops the test runner owns - one per test with pytest-asyncio's
defaults, one per module or session with other settings, none at all in a sync test.  A
broker that lives on its own loop serves them all the same way (over TCP, as a real
cluster would), so one fixture works in every scope, with any async plugin or none, and a
session-scoped broker outlives every test loop.

    with ThreadedBroker() as broker:
        topic = broker.call(lambda b: b.create_topic("jobs", 3))   # from sync code
        ...
        await broker.produce("jobs", [b"a", b"b"])                   # from a test's loop

Every coroutine given to ``call`` / ``acall`` runs on the broker's loop, so it may use the
``EmbeddedBroker`` freely (fault injection included).  ``close()`` stops the broker and its
producer on that loop and joins the thread: nothing is left running.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

if TYPE_CHECKING:
    from aioshare.broker.config import RawValue
    from aioshare.broker.embedded import EmbeddedBroker, ShareRecords

__all__ = ["TEST_BROKER_CONFIG", "ThreadedBroker"]

T = TypeVar("T")

# Short heartbeats: a member joins (and gets its assignment) within ~0.2 s instead of 5 s.
# Lock durations down to 1 s are allowed, so a test can watch a lock expire quickly (set
# "group.share.record.lock.duration.ms", or the group's share.record.lock.duration.ms).
# From Kafka 4.3 a group's target assignment is computed at most once a second
# (share.assignment.interval.ms): a second member would wait for its partitions. ThreadedBroker
# leaves this out when it emulates 4.2, which does not have the config.
TEST_BROKER_CONFIG: dict[str, str | int | bool] = {
    "group.share.min.heartbeat.interval.ms": 100,
    "group.share.heartbeat.interval.ms": 200,
    "group.share.min.record.lock.duration.ms": 1000,
    "group.share.assignment.interval.ms": 0,
}

_START_TIMEOUT = 30.0


class ThreadedBroker:
    """An EmbeddedBroker served from a daemon thread; see the module docstring."""

    def __init__(
        self,
        config: Mapping[str, RawValue] | None = None,
        *,
        nodes: int = 1,
        kafka_version: str | None = None,
    ) -> None:
        """`kafka_version`: the Kafka release to answer like ("4.2", "4.3", "4.4"; default the newest)."""
        release = kafka_version or (config or {}).get("aioshare.kafka.version")
        self.config: dict[str, RawValue] = {**_test_defaults(release), **(config or {})}
        self.nodes = nodes
        self.kafka_version = kafka_version
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: EmbeddedBroker | None = None
        self._producer: Any = None  # aiokafka producer, created on first produce()
        self._bootstrap = ""

    # -------------------------------------------------------------------- lifecycle

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the broker is already running")
        ready: Future[str] = Future()
        loop = asyncio.new_event_loop()
        self._loop = loop

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start(ready))
            except BaseException as exc:  # reported to start(), which raises it
                if not ready.done():
                    ready.set_exception(exc)
                loop.close()
                return
            # Runs until close() stops the loop (after closing the broker on it).
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=serve, name="aioshare-test-broker", daemon=True)
        self._thread.start()
        try:
            self._bootstrap = ready.result(_START_TIMEOUT)
        except BaseException:
            self._thread.join(5)
            self._thread = None
            self._loop = None
            raise

    async def _start(self, ready: Future[str]) -> None:
        # Imported here: a test session that never starts a broker never loads one.
        from aioshare.broker.embedded import EmbeddedBroker

        broker = EmbeddedBroker(nodes=self.nodes, config=self.config, kafka_version=self.kafka_version)
        await broker.start()
        self._broker = broker
        ready.set_result(broker.bootstrap_servers)

    def close(self) -> None:
        """Stop the producer and the broker (on their loop), then the loop and the thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
            self._thread = None
            self._loop = None

    async def _close(self) -> None:
        producer, self._producer = self._producer, None
        try:
            if producer is not None:
                await producer.stop()
        finally:
            broker, self._broker = self._broker, None
            if broker is not None:
                await broker.close()

    # -------------------------------------------------------------------- access

    @property
    def bootstrap_servers(self) -> str:
        if not self._bootstrap:
            raise RuntimeError("the broker is not running")
        return self._bootstrap

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _submit(self, make: Callable[[EmbeddedBroker], Awaitable[T]]) -> Future[T]:
        loop = self._loop
        if loop is None:
            raise RuntimeError("the broker is not running")

        async def run() -> T:
            assert self._broker is not None
            return await make(self._broker)

        return asyncio.run_coroutine_threadsafe(run(), loop)

    def call(self, make: Callable[[EmbeddedBroker], Awaitable[T]], timeout: float = 30.0) -> T:
        """Run ``make(broker)`` on the broker's loop and wait for it (blocking: for sync code)."""
        return self._submit(make).result(timeout)

    async def acall(self, make: Callable[[EmbeddedBroker], Awaitable[T]]) -> T:
        """Run ``make(broker)`` on the broker's loop; await it from any other loop."""
        return await asyncio.wrap_future(self._submit(make))

    # -------------------------------------------------------------------- helpers

    async def create_topic(
        self, name: str | None = None, partitions: int = 1, config: Mapping[str, str] | None = None
    ) -> str:
        """Create a topic (a fresh unique name when ``name`` is None) and return its name."""
        topic = name if name is not None else f"test-{uuid.uuid4().hex[:12]}"

        async def create(broker: EmbeddedBroker) -> None:
            await broker.create_topic(topic, partitions, config)

        await self.acall(create)
        return topic

    async def produce(
        self,
        topic: str,
        values: Iterable[bytes | str | None],
        *,
        key: bytes | str | None = None,
        keys: Iterable[bytes | str | None] | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> list[int]:
        """Produce ``values`` (in order, acks=all) and return their offsets.

        ``key`` is every record's key, ``keys`` one per value; ``partition`` None lets the
        producer's partitioner choose (by key).  Strings are UTF-8 encoded.
        """
        value_list = [_bytes(v) for v in values]
        key_list = [_bytes(k) for k in keys] if keys is not None else [_bytes(key)] * len(value_list)
        if len(key_list) != len(value_list):
            raise ValueError("keys and values differ in length")

        async def send(_broker: EmbeddedBroker) -> list[int]:
            producer = await self._ensure_producer()
            futures = [
                await producer.send(topic, v, key=k, partition=partition, headers=list(headers or []))
                for v, k in zip(value_list, key_list, strict=True)
            ]
            return [(await f).offset for f in futures]

        return await self.acall(send)

    async def _ensure_producer(self) -> Any:
        # On the broker's loop: the producer lives (and is closed) where the broker is.
        if self._producer is None:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, acks="all", linger_ms=1)
            await producer.start()
            self._producer = producer
        return self._producer

    async def share_records(self, group: str, topic: str, partition: int = 0) -> ShareRecords | None:
        """What ``group`` holds of the partition now (``EmbeddedBroker.share_records``): count
        records acknowledged, archived, acquired or available, with their delivery counts."""

        async def read(broker: EmbeddedBroker) -> ShareRecords | None:
            return broker.share_records(group, topic, partition)

        return await self.acall(read)

    async def set_group_config(self, group_id: str, config: Mapping[str, str]) -> None:
        """Set share-group configs (``share.auto.offset.reset``, ``share.record.lock.duration.ms``...)."""
        from aioshare.admin import ShareAdmin

        async with ShareAdmin(self.bootstrap_servers) as admin:
            await admin.alter_group_config(group_id, dict(config))


def _test_defaults(release: RawValue | None) -> dict[str, RawValue]:
    """TEST_BROKER_CONFIG without the configs the emulated release does not have yet."""
    from aioshare.broker.kafka_versions import CONFIGS_SINCE, NEWEST, parse_kafka_version

    try:
        emulated = parse_kafka_version(str(release or NEWEST))
    except ValueError:
        return dict(TEST_BROKER_CONFIG)  # EmbeddedBroker refuses the release with its message
    return {
        name: value
        for name, value in TEST_BROKER_CONFIG.items()
        if name not in CONFIGS_SINCE or emulated.at_least(CONFIGS_SINCE[name])
    }


def _bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value
