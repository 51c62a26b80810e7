"""Codec benchmarks: the share-group hot path, and our codec against kafka-python's.

* ShareFetchResponse v2 carrying one record batch of 500 records (100-byte values, built with
  aiokafka's DefaultRecordBatchBuilder) and three AcquiredRecords ranges: our decode (header +
  body, records left as a zero-copy view), then decode + iterating the records with aiokafka's
  DefaultRecordBatch.
* ShareFetchRequest v2 with 500 acknowledgement ranges (alternating types, so they cannot be
  merged): encode, and decode (the broker's side).
* The same shapes on messages kafka-python's codec also implements (FetchResponse v16 with the
  same record batch, FetchRequest v16 with 500 partitions), encoded/decoded by both codecs.

Each figure is the median over repetitions of time.perf_counter() around a calibrated loop.
Run with `python -m benchmarks codec` (or `python -m benchmarks.bench_codec`).
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from aioshare.protocol import framing
from aioshare.protocol.messages import FetchRequest, FetchResponse, ShareFetchRequest, ShareFetchResponse

RECORDS = 500
VALUE_SIZE = 100
ACK_RANGES = 500
TOPIC_ID = uuid.UUID("5f1a8d9e-3c2b-4a7d-9e61-0b2c4d6e8f10")
TARGET_SECONDS = 0.02  # per repetition
REPEAT = 21


def _calibrate(fn: Callable[[], Any], target: float) -> int:
    fn()  # warm up (kafka-python compiles its codecs on first use)
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, int(target / once))


def _sample(fn: Callable[[], Any], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def median_seconds(
    *fns: Callable[[], Any], repeat: int = REPEAT, target: float = TARGET_SECONDS
) -> list[float]:
    """Median wall time of one call of each of `fns` over `repeat` calibrated loops.

    With several functions the loops are interleaved, so a noisy neighbour on the machine
    slows all of them alike and the ratio stays meaningful.
    """
    numbers = [_calibrate(fn, target) for fn in fns]
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, number, out in zip(fns, numbers, samples, strict=True):
            out.append(_sample(fn, number))
    return [statistics.median(s) for s in samples]


def us(seconds: float) -> str:
    return f"{seconds * 1e6:10.1f} µs/msg"


# --------------------------------------------------------------------------- messages


def record_batch() -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 24,
    )
    for i in range(RECORDS):
        value = (b"%05d|" % i + b"payload-" * 13)[:VALUE_SIZE]
        builder.append(i, timestamp=1_700_000_000_000 + i, key=b"key-%d" % i, value=value, headers=[])
    return bytes(builder.build())


def share_fetch_response(batch: bytes) -> ShareFetchResponse:
    third = RECORDS // 3
    return ShareFetchResponse(
        acquisition_lock_timeout_ms=30_000,
        responses=[
            ShareFetchResponse.ShareFetchableTopicResponse(
                topic_id=TOPIC_ID,
                partitions=[
                    ShareFetchResponse.PartitionData(
                        partition_index=0,
                        current_leader=ShareFetchResponse.LeaderIdAndEpoch(leader_id=1, leader_epoch=5),
                        records=batch,
                        acquired_records=[
                            ShareFetchResponse.AcquiredRecords(
                                first_offset=0, last_offset=third - 1, delivery_count=1
                            ),
                            ShareFetchResponse.AcquiredRecords(
                                first_offset=third, last_offset=2 * third - 1, delivery_count=2
                            ),
                            ShareFetchResponse.AcquiredRecords(
                                first_offset=2 * third, last_offset=RECORDS - 1, delivery_count=1
                            ),
                        ],
                    )
                ],
            )
        ],
    )


def share_fetch_request() -> ShareFetchRequest:
    # Single-offset ranges with alternating ACCEPT(1)/RELEASE(2): adjacent ranges cannot merge.
    batches = [
        ShareFetchRequest.AcknowledgementBatch(first_offset=i, last_offset=i, acknowledge_types=[1 + i % 2])
        for i in range(ACK_RANGES)
    ]
    return ShareFetchRequest(
        group_id="bench-group",
        member_id="QmVuY2hNZW1iZXJJZDAxMg",
        share_session_epoch=7,
        max_wait_ms=500,
        min_bytes=1,
        max_bytes=52_428_800,
        max_records=500,
        batch_size=500,
        topics=[
            ShareFetchRequest.FetchTopic(
                topic_id=TOPIC_ID,
                partitions=[
                    ShareFetchRequest.FetchPartition(partition_index=0, acknowledgement_batches=batches)
                ],
            )
        ],
    )


def fetch_response(batch: bytes) -> FetchResponse:
    return FetchResponse(
        session_id=12,
        responses=[
            FetchResponse.FetchableTopicResponse(
                topic_id=TOPIC_ID,
                partitions=[
                    FetchResponse.PartitionData(
                        partition_index=0, high_watermark=RECORDS, last_stable_offset=RECORDS, records=batch
                    )
                ],
            )
        ],
    )


def fetch_request() -> FetchRequest:
    return FetchRequest(
        max_wait_ms=500,
        min_bytes=1,
        session_id=12,
        session_epoch=3,
        topics=[
            FetchRequest.FetchTopic(
                topic_id=TOPIC_ID,
                partitions=[
                    FetchRequest.FetchPartition(
                        partition=p,
                        current_leader_epoch=5,
                        fetch_offset=1000 * p,
                        partition_max_bytes=1 << 20,
                    )
                    for p in range(ACK_RANGES)
                ],
            )
        ],
    )


# --------------------------------------------------------------------------- kafka-python


def kafka_python_fetch(batch: bytes) -> tuple[Any, Any] | None:
    """kafka-python's FetchResponse/FetchRequest v16 objects equal to ours, or None without it."""
    try:
        from kafka.protocol.consumer.fetch import FetchRequest as KRequest
        from kafka.protocol.consumer.fetch import FetchResponse as KResponse
    except ImportError:
        return None
    partition_data = KResponse.FetchableTopicResponse.PartitionData
    response = KResponse(
        version=16,
        throttle_time_ms=0,
        error_code=0,
        session_id=12,
        responses=[
            KResponse.FetchableTopicResponse(
                topic_id=TOPIC_ID,
                partitions=[
                    partition_data(
                        partition_index=0,
                        error_code=0,
                        high_watermark=RECORDS,
                        last_stable_offset=RECORDS,
                        log_start_offset=-1,
                        aborted_transactions=[],
                        preferred_read_replica=-1,
                        records=batch,
                    )
                ],
            )
        ],
    )
    fetch_partition = KRequest.FetchTopic.FetchPartition
    request = KRequest(
        version=16,
        max_wait_ms=500,
        min_bytes=1,
        max_bytes=0x7FFFFFFF,
        isolation_level=0,
        session_id=12,
        session_epoch=3,
        topics=[
            KRequest.FetchTopic(
                topic_id=TOPIC_ID,
                partitions=[
                    fetch_partition(
                        partition=p,
                        current_leader_epoch=5,
                        fetch_offset=1000 * p,
                        last_fetched_epoch=-1,
                        log_start_offset=-1,
                        partition_max_bytes=1 << 20,
                    )
                    for p in range(ACK_RANGES)
                ],
            )
        ],
        forgotten_topics_data=[],
        rack_id="",
    )
    return response, request


# --------------------------------------------------------------------------- main


def main() -> None:
    batch = record_batch()

    response = share_fetch_response(batch)
    frame = framing.encode_response(response, 2, correlation_id=1)[4:]

    def decode_share_fetch() -> Any:
        return framing.decode_response(frame, 78, 2)

    def decode_and_iterate() -> int:
        decoded = framing.decode_response(frame, 78, 2)
        assert isinstance(decoded, ShareFetchResponse)
        total = 0
        for topic in decoded.responses:
            for partition in topic.partitions:
                for record in DefaultRecordBatch(partition.records):
                    total += len(record.value)
        return total

    assert decode_and_iterate() == RECORDS * VALUE_SIZE
    request = share_fetch_request()
    request_body = request.encode(2)
    assert ShareFetchRequest.decode(request_body, 2) == request

    print(f"ShareFetchResponse v2 frame: {len(frame)} bytes, {RECORDS} records of {VALUE_SIZE}-byte values")
    print(f"  decode (header + body, records zero-copy)     {us(median_seconds(decode_share_fetch)[0])}")
    print(f"  decode + iterate records (aiokafka batch)     {us(median_seconds(decode_and_iterate)[0])}")
    print(f"ShareFetchRequest v2: {ACK_RANGES} acknowledgement ranges, {len(request_body)} bytes")
    print(
        f"  encode                                        {us(median_seconds(lambda: request.encode(2))[0])}"
    )
    print(
        "  decode (broker side)                          "
        f"{us(median_seconds(lambda: ShareFetchRequest.decode(request_body, 2))[0])}"
    )

    ours_response = fetch_response(batch)
    ours_request = fetch_request()
    response_body = ours_response.encode(16)
    fetch_body = ours_request.encode(16)
    theirs = kafka_python_fetch(batch)
    if theirs is None:
        print("kafka-python is not installed: no comparison")
        return
    k_response, k_request = theirs
    k_response_type, k_request_type = type(k_response), type(k_request)
    # Same bytes from both codecs, so the comparison is like for like.
    assert bytes(k_response.encode(version=16)) == response_body, "FetchResponse v16 bytes differ"
    assert bytes(k_request.encode(version=16)) == fetch_body, "FetchRequest v16 bytes differ"

    rows = [
        (
            f"FetchResponse v16 decode ({RECORDS} records, {len(response_body)} B)",
            lambda: FetchResponse.decode(response_body, 16),
            lambda: k_response_type.decode(response_body, version=16),
        ),
        (
            f"FetchRequest v16 encode ({ACK_RANGES} partitions)",
            lambda: ours_request.encode(16),
            lambda: k_request.encode(version=16),
        ),
        (
            f"FetchRequest v16 decode ({ACK_RANGES} partitions)",
            lambda: FetchRequest.decode(fetch_body, 16),
            lambda: k_request_type.decode(fetch_body, version=16),
        ),
    ]
    print("aioshare vs kafka-python 3 (same message, same bytes):")
    for label, ours_fn, theirs_fn in rows:
        ours_s, theirs_s = median_seconds(ours_fn, theirs_fn)
        print(f"  {label:46}")
        print(f"    aioshare     {us(ours_s)}")
        print(f"    kafka-python {us(theirs_s)}   ratio kafka-python/aioshare = {theirs_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
