"""Clusters the ShareConsumer scenario tests run against, behind one small interface.

* ``MockCluster``: librdkafka's mock cluster (an implementation of share groups nobody here
  wrote), driven through its C API with ctypes from the librdkafka that confluent-kafka
  bundles, so lock duration, heartbeat interval, offset reset, leaders, broker outages and
  manual assignments can be set - the Python binding exposes none of that.
* ``EmbeddedCluster``: aioshare's EmbeddedBroker (every share-group API, Kafka's rules).

What the mock (librdkafka 2.16) does and does not do, found by experiment and its source:
- ApiVersions: ShareGroupHeartbeat v1, ShareFetch v1, ShareAcknowledge v1 only: no RENEW
  (KIP-1222) and no ShareAcquireMode (KIP-1206).
- ShareFetch cuts acquisition at MaxRecords even inside a batch (record_limit-like) but
  returns the whole batch in Records; AcquisitionLockTimeoutMs reports the configured lock
  duration; expired locks are swept by a 1 s timer (so expiry is late by up to ~1 s).
- Its assignor gives each partition to one member only: four members on a one-partition
  topic leave three idle unless a manual target assignment shares it (``share_all``).
- It re-reports records a member holds as acquired on every ShareFetch, with the same
  delivery count.  The consumer skips those while their lock runs; once its own (earlier)
  clock expired a lock, the next re-report is taken as a new delivery with the old count,
  and the mock's own expiry a moment later brings the real redelivery (one count higher),
  which replaces it.  Kafka never re-reports a held record.
- Releasing a member's records on session close keeps the delivery count, as Kafka 4.2+
  does (KAFKA-19972; 4.1 decremented it); a new epoch-0 ShareFetch releases the member's
  records (Kafka keeps them).
- Closing any connection to a broker closes every share session on that broker, other
  members' included: consumers of one test must not come and go while others work.
"""

from __future__ import annotations

import asyncio
import ctypes
import glob
import os
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

_c_int, _c_char_p, _c_void_p = ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p


class ShareCluster(Protocol):
    name: str
    bootstrap: str
    supports_renew: bool
    lock_ms: int

    async def create_topic(self, topic: str, partitions: int = 1) -> None: ...

    async def new_group(self) -> str: ...

    async def produce(
        self, topic: str, values: Sequence[bytes], partition: int | None = None, batch_records: int = 0
    ) -> None:
        """Write ``values``; ``batch_records`` > 0 cuts them into log batches of that many
        (Kafka acquires whole batches in batch_optimized mode, so batch size shapes who gets what)."""

    def share_all(self, group: str, topic: str, partitions: int, member_ids: Sequence[str]) -> None: ...

    async def move_leader(self, topic: str, partition: int, node_id: int) -> None: ...

    async def broker_down(self, node_id: int) -> None: ...

    async def broker_up(self, node_id: int) -> None: ...

    async def close(self) -> None: ...


def _lib() -> ctypes.CDLL:
    libs = os.path.join(os.path.dirname(confluent_kafka.__file__), os.pardir, "confluent_kafka.libs")
    found = sorted(glob.glob(os.path.join(libs, "librdkafka*.so*")))
    if not found:
        pytest.skip("the bundled librdkafka shared library was not found")
    lib = ctypes.CDLL(found[0])
    lib.rd_kafka_conf_new.restype = _c_void_p
    lib.rd_kafka_conf_set.argtypes = [_c_void_p, _c_char_p, _c_char_p, _c_char_p, ctypes.c_size_t]
    lib.rd_kafka_new.restype = _c_void_p
    lib.rd_kafka_new.argtypes = [_c_int, _c_void_p, _c_char_p, ctypes.c_size_t]
    lib.rd_kafka_destroy.argtypes = [_c_void_p]
    lib.rd_kafka_mock_cluster_new.restype = _c_void_p
    lib.rd_kafka_mock_cluster_new.argtypes = [_c_void_p, _c_int]
    lib.rd_kafka_mock_cluster_destroy.argtypes = [_c_void_p]
    lib.rd_kafka_mock_cluster_bootstraps.restype = _c_char_p
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [_c_void_p]
    lib.rd_kafka_mock_topic_create.argtypes = [_c_void_p, _c_char_p, _c_int, _c_int]
    lib.rd_kafka_mock_partition_set_leader.argtypes = [_c_void_p, _c_char_p, ctypes.c_int32, ctypes.c_int32]
    lib.rd_kafka_mock_broker_set_down.argtypes = [_c_void_p, ctypes.c_int32]
    lib.rd_kafka_mock_broker_set_up.argtypes = [_c_void_p, ctypes.c_int32]
    for setter in (
        "set_auto_offset_reset",
        "set_record_lock_duration",
        "set_heartbeat_interval",
        "set_session_timeout",
        "set_max_delivery_attempts",
    ):
        getattr(lib, f"rd_kafka_mock_sharegroup_{setter}").argtypes = [_c_void_p, _c_int]
    lib.rd_kafka_topic_partition_list_new.restype = _c_void_p
    lib.rd_kafka_topic_partition_list_new.argtypes = [_c_int]
    lib.rd_kafka_topic_partition_list_add.restype = _c_void_p
    lib.rd_kafka_topic_partition_list_add.argtypes = [_c_void_p, _c_char_p, ctypes.c_int32]
    lib.rd_kafka_topic_partition_list_destroy.argtypes = [_c_void_p]
    lib.rd_kafka_mock_sharegroup_target_assignment.argtypes = [
        _c_void_p,
        _c_char_p,
        ctypes.POINTER(_c_char_p),
        ctypes.POINTER(_c_void_p),
        ctypes.c_size_t,
    ]
    return lib


class MockCluster:
    name = "mock"
    supports_renew = False  # ShareAcknowledge v1 only

    def __init__(self, brokers: int = 3, *, lock_ms: int = 2000, heartbeat_ms: int = 200) -> None:
        self._lib = lib = _lib()
        conf = lib.rd_kafka_conf_new()
        err = ctypes.create_string_buffer(512)
        lib.rd_kafka_conf_set(conf, b"log_level", b"2", err, len(err))
        # A consumer-type handle only to own the mock cluster: it starts no producer threads.
        self._rk = lib.rd_kafka_new(1, conf, err, len(err))
        if not self._rk:
            raise RuntimeError(f"rd_kafka_new failed: {err.value!r}")
        self._mc = lib.rd_kafka_mock_cluster_new(self._rk, brokers)
        self.bootstrap = lib.rd_kafka_mock_cluster_bootstraps(self._mc).decode()
        lib.rd_kafka_mock_sharegroup_set_auto_offset_reset(self._mc, 1)  # earliest
        lib.rd_kafka_mock_sharegroup_set_record_lock_duration(self._mc, lock_ms)
        lib.rd_kafka_mock_sharegroup_set_heartbeat_interval(self._mc, heartbeat_ms)
        self.lock_ms = lock_ms
        self._producer: Any = None

    async def create_topic(self, topic: str, partitions: int = 1) -> None:
        assert self._lib.rd_kafka_mock_topic_create(self._mc, topic.encode(), partitions, 1) == 0

    async def new_group(self) -> str:
        return new_group()  # share.auto.offset.reset=earliest is the mock's global setting

    async def produce(
        self, topic: str, values: Sequence[bytes], partition: int | None = None, batch_records: int = 0
    ) -> None:
        # Blocking is fine here: the mock's brokers run on librdkafka's own threads.
        if self._producer is None:
            self._producer = confluent_kafka.Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        for i, value in enumerate(values):
            kwargs: dict[str, Any] = {"partition": partition} if partition is not None else {}
            self._producer.produce(topic, value, key=str(i).encode(), **kwargs)
            if batch_records and (i + 1) % batch_records == 0:
                assert self._producer.flush(30) == 0, "the mock cluster did not take every record"
        assert self._producer.flush(30) == 0, "the mock cluster did not take every record"

    def share_all(self, group: str, topic: str, partitions: int, member_ids: Sequence[str]) -> None:
        """Assign every partition of ``topic`` to every member (what Kafka's assignor does
        when members outnumber partitions; the mock's assignor does not share)."""
        lib = self._lib
        lists = []
        for _ in member_ids:
            tpl = lib.rd_kafka_topic_partition_list_new(partitions)
            for p in range(partitions):
                lib.rd_kafka_topic_partition_list_add(tpl, topic.encode(), p)
            lists.append(tpl)
        ids = (_c_char_p * len(member_ids))(*(m.encode() for m in member_ids))
        tpls = (_c_void_p * len(lists))(*lists)
        lib.rd_kafka_mock_sharegroup_target_assignment(self._mc, group.encode(), ids, tpls, len(member_ids))
        for tpl in lists:
            lib.rd_kafka_topic_partition_list_destroy(tpl)

    async def move_leader(self, topic: str, partition: int, node_id: int) -> None:
        self._lib.rd_kafka_mock_partition_set_leader(self._mc, topic.encode(), partition, node_id)

    async def broker_down(self, node_id: int) -> None:
        self._lib.rd_kafka_mock_broker_set_down(self._mc, node_id)

    async def broker_up(self, node_id: int) -> None:
        self._lib.rd_kafka_mock_broker_set_up(self._mc, node_id)

    async def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(5)
            self._producer = None
        if self._mc:
            self._lib.rd_kafka_mock_cluster_destroy(self._mc)
            self._mc = None
        if self._rk:
            self._lib.rd_kafka_destroy(self._rk)
            self._rk = None


class EmbeddedCluster:
    """aioshare's EmbeddedBroker, three nodes, Kafka's share-group rules."""

    name = "embedded"
    supports_renew = True

    def __init__(self, broker: Any, lock_ms: int) -> None:
        self._broker = broker
        self.bootstrap = broker.bootstrap_servers
        self.lock_ms = lock_ms
        self._producer: Any = None

    @classmethod
    async def start(cls, *, lock_ms: int = 2000, heartbeat_ms: int = 200) -> EmbeddedCluster:
        from aioshare.broker.embedded import EmbeddedBroker

        broker = EmbeddedBroker(
            nodes=3,
            config={
                "group.share.min.record.lock.duration.ms": 1000,
                "group.share.record.lock.duration.ms": lock_ms,
                "group.share.min.heartbeat.interval.ms": heartbeat_ms,
                "group.share.heartbeat.interval.ms": heartbeat_ms,
            },
        )
        await broker.start()
        return cls(broker, lock_ms)

    async def create_topic(self, topic: str, partitions: int = 1) -> None:
        await self._broker.create_topic(topic, partitions)

    async def new_group(self) -> str:
        """A fresh group reading from the start, as Kafka's admin would set it up: the
        scenarios produce before the first ShareFetch, and Kafka's default is ``latest``."""
        from aioshare.admin import ShareAdmin

        group = new_group()
        async with ShareAdmin(self.bootstrap) as admin:
            await admin.alter_group_config(group, {"share.auto.offset.reset": "earliest"})
        return group

    async def produce(
        self, topic: str, values: Sequence[bytes], partition: int | None = None, batch_records: int = 0
    ) -> None:
        from aiokafka import AIOKafkaProducer

        if self._producer is None:
            self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
            await self._producer.start()
        for i, value in enumerate(values):
            await self._producer.send(topic, value, key=str(i).encode(), partition=partition)
            if batch_records and (i + 1) % batch_records == 0:
                await self._producer.flush()
        await self._producer.flush()

    def share_all(self, group: str, topic: str, partitions: int, member_ids: Sequence[str]) -> None:
        pass  # Kafka's SimpleAssignor already shares a partition among more members than partitions

    async def move_leader(self, topic: str, partition: int, node_id: int) -> None:
        await self._broker.move_leader(topic, partition, node_id)

    async def broker_down(self, node_id: int) -> None:
        await self._broker.stop_node(node_id)

    async def broker_up(self, node_id: int) -> None:
        await self._broker.start_node(node_id)

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        await self._broker.close()


class RealKafkaCluster:
    """A real single-node Apache Kafka shared by the session (tests/conftest.py ``real_kafka``).

    Scenarios use fixed topic names, so ``close()`` deletes the topics a scenario created and
    waits until Kafka no longer lists them; a group's lock is set through its group config.
    """

    supports_renew = True

    def __init__(self, cluster: Any, lock_ms: int) -> None:
        self.name = f"kafka-{cluster.version}"
        self.bootstrap = cluster.bootstrap_servers
        self.lock_ms = lock_ms
        self._topics: list[str] = []
        self._producer: Any = None

    async def create_topic(self, topic: str, partitions: int = 1) -> None:
        from aioshare.admin import ShareAdmin
        from aioshare.protocol.errors import TopicAlreadyExistsError

        async with ShareAdmin(self.bootstrap) as admin:
            async with asyncio.timeout(30):
                while True:
                    try:
                        await admin.create_topic(topic, partitions)
                        break
                    except TopicAlreadyExistsError:
                        # The previous scenario's deletion is still being applied.
                        await asyncio.sleep(0.2)
        self._topics.append(topic)

    async def new_group(self) -> str:
        from aioshare.admin import ShareAdmin

        group = new_group()
        async with ShareAdmin(self.bootstrap) as admin:
            await admin.alter_group_config(
                group,
                {"share.auto.offset.reset": "earliest", "share.record.lock.duration.ms": str(self.lock_ms)},
            )
        return group

    produce = EmbeddedCluster.produce

    async def close(self) -> None:
        from aioshare.admin import ShareAdmin

        if self._producer is not None:
            await self._producer.stop()
        async with ShareAdmin(self.bootstrap) as admin:
            for topic in self._topics:
                await admin.delete_topic(topic)
            async with asyncio.timeout(30):
                while set(self._topics) & {t.name for t in await admin.list_topics()}:  # noqa: ASYNC110 -- broker state: no event to await
                    await asyncio.sleep(0.2)


def new_group() -> str:
    return f"g-{uuid.uuid4().hex[:8]}"
