"""The share consumer's own CPU per record, without I/O or an event loop.

The share core is sans-IO (aioshare/share/leader_session.py and the AckTracker, LeaseTable
and Capacity it drives), so its cost can be measured apart from sockets, the event loop and
the broker: for ROUNDS ShareFetch responses of BATCH records of 100 B, each round

  * builds the next ShareFetch (with the previous round's acks) and encodes it,
  * decodes the response bytes (as the connection would hand them over),
  * hands the answer to the core (leases, record batches unpacked and buffered),
  * takes the buffered records as Messages (ReadyBuffer.take_held, as getmany does),
  * reads each message's value and accepts it (AckTracker, LeaseTable),

on a fake clock; optionally every message is kept alive first (``msg.keep_alive()``, what the
runtime does for each job it hands to a handler) and the lease timer swept each round.
Figures: CPU µs per record (time.process_time), median of REPEAT runs, each in this process.
The end-to-end figure (sockets, event loop, getmany) is benchmarks.bench_consumer's; this is
the part of it the share layer owns.

Run: `python -m benchmarks share_core`.  BENCH_CORE_ROUNDS (default 400), BENCH_CORE_BATCH
(default 500), BENCH_CORE_REPEAT (default 5).
"""

from __future__ import annotations

import os
import statistics
import time
import uuid

from aioshare.protocol.messages import ShareFetchRequest, ShareFetchResponse
from aioshare.protocol.record_reader import RecordFields
from aioshare.protocol.records import RecordToWrite, encode_batch
from aioshare.protocol.types import AcquireMode, TopicIdPartition, TopicPartition
from aioshare.share.ack_tracker import AckTracker
from aioshare.share.buffer import ReadyBuffer
from aioshare.share.capacity import Capacity
from aioshare.share.delivery import Acquired
from aioshare.share.leader_session import Delivered, FetchConfig, LeaderSession, Turn
from aioshare.share.leases import LeaseTable
from aioshare.share.message import DeliveryContext, Message

ROUNDS = int(os.environ.get("BENCH_CORE_ROUNDS", "400"))
BATCH = int(os.environ.get("BENCH_CORE_BATCH", "500"))
REPEAT = int(os.environ.get("BENCH_CORE_REPEAT", "5"))
TP = TopicIdPartition(uuid.UUID(int=7), 0)
LOCK_MS = 30_000
FETCH_VERSION = 2


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _responses() -> list[bytes]:
    out = []
    for i in range(ROUNDS):
        part = ShareFetchResponse.PartitionData(partition_index=TP.partition)
        first = i * BATCH
        part.acquired_records = [
            ShareFetchResponse.AcquiredRecords(
                first_offset=first, last_offset=first + BATCH - 1, delivery_count=1
            )
        ]
        part.records = encode_batch(
            [RecordToWrite(None, b"x" * 100) for _ in range(BATCH)], base_offset=first
        )
        response = ShareFetchResponse(
            acquisition_lock_timeout_ms=LOCK_MS,
            responses=[
                ShareFetchResponse.ShareFetchableTopicResponse(topic_id=TP.topic_id, partitions=[part])
            ],
        )
        out.append(response.encode(FETCH_VERSION))
    return out


def run_once(frames: list[bytes], *, keep_alive: bool) -> float:
    """CPU µs per record for one pass over ``frames``."""
    clock = _Clock()
    leases = LeaseTable()
    capacity = Capacity(2 * BATCH, lambda: leases.held_count)
    tracker = AckTracker(
        leases, lambda tp: TopicPartition("bench", tp.partition), linger=0.005, capacity=capacity, clock=clock
    )
    ctx = DeliveryContext("bench", TP, tracker, None, None)

    def messages(
        tp: TopicIdPartition,
        runs: list[tuple[Acquired, list[RecordFields]]],
        deadline: float,
        out: ReadyBuffer,
    ) -> None:
        for acquired, records in runs:
            out.add(ctx, records, acquired.delivery_count, deadline, leases.lease_at(tp, records[0][0]))

    config = FetchConfig("bench", "m" * 22, BATCH, 500, 1, 1 << 20, AcquireMode.BATCH_OPTIMIZED, 30.0)
    core = LeaderSession(
        1,
        config=config,
        tracker=tracker,
        capacity=capacity,
        make_messages=messages,
        topic_name=lambda _: "bench",
    )
    core.set_partitions({TP})

    def version_of(api_key: int) -> int:
        return FETCH_VERSION

    records = 0
    began = time.process_time()
    for frame in frames:
        turn = core.next_request(clock())
        assert isinstance(turn, Turn), turn
        out = core.build(turn, version_of, clock())
        assert out is not None and isinstance(out.request, ShareFetchRequest)
        out.request.encode(FETCH_VERSION)
        core.answered(out, ShareFetchResponse.decode(memoryview(frame), FETCH_VERSION), clock())
        for event in core.take_events():
            if isinstance(event, Delivered):
                batch: list[Message] = []
                event.records.take_held(batch, len(event.records), leases, clock())
                for msg in batch:
                    if keep_alive:
                        msg.keep_alive()
                    len(msg.value or b"")
                    msg.accept()
                    records += 1
        clock.now += 0.002
        leases.expire(clock())
        tracker.timers_due(leases.take_fired(), clock())
    cpu = time.process_time() - began
    if records != ROUNDS * BATCH:
        raise RuntimeError(f"delivered {records} records, expected {ROUNDS * BATCH}")
    return cpu * 1e6 / records


def main(argv: list[str] | None = None) -> None:
    frames = _responses()
    print(
        f"share core (sans-IO), {ROUNDS} ShareFetch responses x {BATCH} records of 100 B, fake clock; "
        f"CPU µs/record, median of {REPEAT}"
    )
    for keep_alive in (False, True):
        runs = [run_once(frames, keep_alive=keep_alive) for _ in range(REPEAT)]
        label = "accept + keep_alive() first" if keep_alive else "accept"
        print(f"  {label:<30} {statistics.median(runs):6.2f}  (min {min(runs):.2f}, max {max(runs):.2f})")


if __name__ == "__main__":
    main()
