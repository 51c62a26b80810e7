"""Embedded-broker share-group throughput: records/s and broker CPU per record delivered.

The broker runs in its own process (`python -m aioshare.cli.main broker --port 0`), so its CPU
time can be read from /proc/<pid>/stat (utime + stime) before and after each scenario without
counting the client's work. N records are produced first (not measured), then:

(a) librdkafka's ShareConsumer (confluent-kafka) consumes all N with explicit acknowledgements
    (acknowledge() per message, sent piggy-backed on its next ShareFetch), then commit_sync.
(b) a raw ShareFetch loop on aioshare.client.Connection: one session, MaxRecords 500, every
    acquired range ACCEPTed piggy-backed on the next fetch (one batch per range), final epoch
    at the end.

Each scenario uses its own share group with share.auto.offset.reset=earliest, so both read the
same N records. Run with `python -m benchmarks broker_share` (N from BENCH_SHARE_RECORDS, records
per log batch from BENCH_SHARE_BATCH).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import confluent_kafka
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported without __all__
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from aioshare.client.connection import Connection
from aioshare.protocol.messages import (
    MetadataRequest,
    MetadataResponse,
    ShareFetchRequest,
    ShareFetchResponse,
)
from benchmarks._broker import BrokerProcess

# /proc CPU times tick at 100 Hz: enough records keep the 10 ms granularity out of the figures.
RECORDS = int(os.environ.get("BENCH_SHARE_RECORDS", "300000"))
# Records per produced log batch (librdkafka's batch.num.messages): the broker works per batch
# and per acquired range, so small batches are its expensive case.
BATCH = int(os.environ.get("BENCH_SHARE_BATCH", "500"))
PARTITIONS = 4
VALUE = b"x" * 100
TOPIC = "bench-share"
TIMEOUT = 300.0


def prepare(bootstrap: str, groups: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)]).values():
        future.result(TIMEOUT)
    resources = [
        ConfigResource(
            ResourceType.GROUP,
            group,
            incremental_configs=[
                ConfigEntry(
                    "share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET
                )
            ],
        )
        for group in groups
    ]
    for future in admin.incremental_alter_configs(resources).values():
        future.result(TIMEOUT)
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": BATCH}
    )
    for n in range(RECORDS):
        while True:
            try:
                producer.produce(TOPIC, VALUE, partition=n % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(TIMEOUT):
        raise RuntimeError("produce did not finish")


def librdkafka_explicit(bootstrap: str, group: str) -> int:
    consumer: Any = confluent_kafka.ShareConsumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "share.acknowledgement.mode": "explicit"}
    )
    delivered = 0
    deadline = time.monotonic() + TIMEOUT
    try:
        consumer.subscribe([TOPIC])
        while delivered < RECORDS:
            if time.monotonic() > deadline:
                raise TimeoutError(f"librdkafka consumer stalled at {delivered}")
            for message in consumer.poll(1.0):
                if message.error() is None:
                    consumer.acknowledge(message)
                    delivered += 1
        consumer.commit_sync(TIMEOUT)
    finally:
        consumer.close()
    return delivered


async def raw_share_fetch(bootstrap: str, group: str) -> int:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    connection = await Connection.open(host, int(port))
    try:
        metadata = await connection.send(
            MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=TOPIC)]),
            response_type=MetadataResponse,
        )
        topic_id: uuid.UUID = metadata.topics[0].topic_id
        member = uuid.uuid4().hex[:22]
        epoch = 0
        delivered = 0
        pending: dict[int, list[ShareFetchRequest.AcknowledgementBatch]] = {}
        async with asyncio.timeout(TIMEOUT):
            while delivered < RECORDS:
                partitions = range(PARTITIONS) if epoch == 0 else sorted(pending)
                request = ShareFetchRequest(
                    group_id=group,
                    member_id=member,
                    share_session_epoch=epoch,
                    max_wait_ms=500,
                    min_bytes=1,
                    max_records=500,
                    batch_size=500,
                    topics=[
                        ShareFetchRequest.FetchTopic(
                            topic_id=topic_id,
                            partitions=[
                                ShareFetchRequest.FetchPartition(
                                    partition_index=index, acknowledgement_batches=pending.get(index, [])
                                )
                                for index in partitions
                            ],
                        )
                    ],
                )
                response = await connection.send(request, response_type=ShareFetchResponse)
                if response.error_code:
                    raise RuntimeError(f"ShareFetch failed: error {response.error_code}")
                epoch += 1
                pending = {}
                for topic in response.responses:
                    for data in topic.partitions:
                        if data.error_code or data.acknowledge_error_code:
                            raise RuntimeError(f"partition {data.partition_index}: {data}")
                        for acquired in data.acquired_records:
                            delivered += acquired.last_offset - acquired.first_offset + 1
                            pending.setdefault(data.partition_index, []).append(
                                ShareFetchRequest.AcknowledgementBatch(
                                    first_offset=acquired.first_offset,
                                    last_offset=acquired.last_offset,
                                    acknowledge_types=[1],
                                )
                            )
        final = ShareFetchRequest(
            group_id=group,
            member_id=member,
            share_session_epoch=-1,
            topics=[
                ShareFetchRequest.FetchTopic(
                    topic_id=topic_id,
                    partitions=[
                        ShareFetchRequest.FetchPartition(
                            partition_index=index, acknowledgement_batches=batches
                        )
                        for index, batches in pending.items()
                    ],
                )
            ],
        )
        await connection.send(final, response_type=ShareFetchResponse)
        return delivered
    finally:
        await connection.close()


def measure(broker: BrokerProcess, name: str, run: Any) -> None:
    cpu_before = broker.cpu_seconds()
    started = time.perf_counter()
    delivered = run()
    elapsed = time.perf_counter() - started
    cpu = broker.cpu_seconds() - cpu_before
    print(
        f"{name:<44} {delivered:>8} records  {delivered / elapsed:>10,.0f} records/s  "
        f"broker CPU {cpu * 1e6 / max(delivered, 1):>6.2f} µs/record ({cpu * 1000:.0f} ms)",
        flush=True,
    )


def main() -> None:
    broker = BrokerProcess()
    try:
        prepare(broker.bootstrap, ["bench-librdkafka", "bench-raw"])
        print(
            f"{RECORDS} records of {len(VALUE)} bytes on {PARTITIONS} partitions, "
            f"up to {BATCH} per log batch, broker pid {broker.process.pid}"
        )
        measure(
            broker,
            "(a) librdkafka ShareConsumer, explicit acks",
            lambda: librdkafka_explicit(broker.bootstrap, "bench-librdkafka"),
        )
        measure(
            broker,
            "(b) raw ShareFetch loop, piggy-backed ACCEPT",
            lambda: asyncio.run(raw_share_fetch(broker.bootstrap, "bench-raw")),
        )
    finally:
        broker.close()


if __name__ == "__main__":
    main()
