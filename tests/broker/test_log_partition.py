"""PartitionLog: offsets, reads, timestamps, producer state, transactions, deletion, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest

from aioshare.broker.log import LOG_START_FILE, SEGMENT_FILE, PartitionLog
from aioshare.protocol.errors import (
    InvalidProducerEpochError,
    OffsetOutOfRangeError,
    OutOfOrderSequenceNumberError,
)
from aioshare.protocol.records import (
    Compression,
    ControlType,
    RecordBatchView,
    RecordToWrite,
    TimestampType,
    encode_batch,
    iter_batches,
    transaction_marker,
)

NOW = 1_700_000_000_000


def batch(
    count: int,
    *,
    first: int = 0,
    ts: int = NOW,
    compression: Compression = Compression.NONE,
    pid: int = -1,
    epoch: int = -1,
    seq: int = -1,
    transactional: bool = False,
) -> bytes:
    records = [RecordToWrite(None, f"v{first + i}".encode(), (), ts + i) for i in range(count)]
    return encode_batch(
        records,
        compression=compression,
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
        transactional=transactional,
    )


def marker(control: ControlType, pid: int, epoch: int = 0) -> bytes:
    return encode_batch(
        [transaction_marker(control, timestamp_ms=NOW)],
        is_control=True,
        transactional=True,
        producer_id=pid,
        producer_epoch=epoch,
    )


def values(data: bytes) -> list[tuple[int, bytes | None]]:
    return [(r.offset, r.value) for view in iter_batches(data) for r in view.records()]


def append(log: PartitionLog, data: bytes, **kwargs: object) -> tuple[int, int]:
    result = log.append(data, leader_epoch=3, now_ms=NOW, **kwargs)  # type: ignore[arg-type]
    return result.base_offset, result.last_offset


def test_offsets_are_assigned_in_order() -> None:
    log = PartitionLog()
    assert append(log, batch(3)) == (0, 2)
    assert append(log, batch(2, first=3)) == (3, 4)
    assert log.log_end_offset == log.high_watermark == log.last_stable_offset == 5
    assert log.log_start_offset == 0
    assert values(log.read(0, 1 << 20).records) == [(i, f"v{i}".encode()) for i in range(5)]


def test_batches_are_stored_as_sent_apart_from_broker_fields() -> None:
    log = PartitionLog()
    append(log, batch(1))
    sent = batch(10, compression=Compression.GZIP)
    append(log, sent)
    stored = log.read(1, 1 << 20).records
    view = RecordBatchView(stored)
    assert view.compression == Compression.GZIP
    assert view.base_offset == 1 and view.partition_leader_epoch == 3
    view.validate()  # the CRC still holds: only fields before it were rewritten
    assert stored[17:] == sent[17:]
    assert [r.offset for r in view.records()] == list(range(1, 11))


def test_read_from_the_middle_of_a_batch_returns_the_whole_batch() -> None:
    log = PartitionLog()
    append(log, batch(5))
    append(log, batch(5, first=5))
    read = log.read(7, 1 << 20)
    assert [(b.base_offset, b.last_offset) for b in read.batches] == [(5, 9)]
    assert values(read.records)[0] == (5, b"v5")


def test_read_is_bounded_by_max_bytes_in_whole_batches() -> None:
    log = PartitionLog()
    for i in range(4):
        append(log, batch(1, first=i))
    size = log.batches[0].size
    read = log.read(0, size * 2 + size // 2)
    assert [b.base_offset for b in read.batches] == [0, 1]
    assert len(read.records) == size * 2
    # A first batch larger than the limit is still returned (KIP-74) unless min_one is off.
    assert [b.base_offset for b in log.read(0, 1).batches] == [0]
    assert log.read(0, 1, min_one=False).records == b""


def test_read_range_errors_and_the_log_end() -> None:
    log = PartitionLog()
    append(log, batch(2))
    assert log.read(2, 100).records == b""
    with pytest.raises(OffsetOutOfRangeError):
        log.read(3, 100)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(-1, 100)


def test_timestamp_lookup_finds_the_exact_record() -> None:
    log = PartitionLog()
    append(log, batch(5, ts=1000))  # offsets 0-4, ts 1000-1004
    append(log, batch(5, ts=2000, compression=Compression.LZ4))  # offsets 5-9, ts 2000-2004
    assert log.offset_for_timestamp(0) == (0, 1000)
    assert log.offset_for_timestamp(1003) == (3, 1003)
    assert log.offset_for_timestamp(1500) == (5, 2000)
    assert log.offset_for_timestamp(2002) == (7, 2002)
    assert log.offset_for_timestamp(2005) is None
    assert log.max_timestamp() == (9, 2004)
    assert PartitionLog().max_timestamp() == (-1, -1)


def test_log_append_time_stamps_the_batch() -> None:
    log = PartitionLog()
    result = log.append(batch(3, ts=5), leader_epoch=0, now_ms=NOW, log_append_time=True)
    assert result.log_append_time == NOW
    view = RecordBatchView(log.read(0, 1 << 20).records)
    view.validate()
    assert view.timestamp_type == TimestampType.LOG_APPEND_TIME
    assert view.max_timestamp == NOW
    assert log.offset_for_timestamp(NOW) == (0, NOW)


def test_idempotent_producer_sequences() -> None:
    log = PartitionLog()
    assert append(log, batch(2, pid=7, epoch=0, seq=0)) == (0, 1)
    assert append(log, batch(3, pid=7, epoch=0, seq=2)) == (2, 4)
    # A retry of a cached batch gets the original offsets and writes nothing.
    retry = log.append(batch(2, pid=7, epoch=0, seq=0), leader_epoch=0, now_ms=NOW)
    assert (retry.base_offset, retry.last_offset, retry.duplicate) == (0, 1, True)
    assert log.log_end_offset == 5
    with pytest.raises(OutOfOrderSequenceNumberError):
        log.append(batch(1, pid=7, epoch=0, seq=9), leader_epoch=0, now_ms=NOW)
    # A new epoch must start again at sequence 0.
    with pytest.raises(OutOfOrderSequenceNumberError):
        log.append(batch(1, pid=7, epoch=1, seq=5), leader_epoch=0, now_ms=NOW)
    assert append(log, batch(1, pid=7, epoch=1, seq=0)) == (5, 5)
    with pytest.raises(InvalidProducerEpochError):
        log.append(batch(1, pid=7, epoch=0, seq=5), leader_epoch=0, now_ms=NOW)
    # A producer the log has no state for may start anywhere.
    assert append(log, batch(1, pid=8, epoch=0, seq=42)) == (6, 6)


def test_duplicate_cache_holds_five_batches() -> None:
    log = PartitionLog()
    for seq in range(6):
        append(log, batch(1, pid=1, epoch=0, seq=seq))
    assert log.append(batch(1, pid=1, epoch=0, seq=1), leader_epoch=0, now_ms=NOW).duplicate
    with pytest.raises(OutOfOrderSequenceNumberError):
        log.append(batch(1, pid=1, epoch=0, seq=0), leader_epoch=0, now_ms=NOW)


def test_transactions_hold_back_the_lso_and_record_aborts() -> None:
    log = PartitionLog()
    append(log, batch(2))  # 0-1
    append(log, batch(2, pid=5, epoch=0, seq=0, transactional=True))  # 2-3
    append(log, batch(1, first=4))  # 4
    assert log.last_stable_offset == 2 and log.high_watermark == 5
    assert [b.base_offset for b in log.read(0, 1 << 20, upper_bound=log.upper_bound(True)).batches] == [0]
    append(log, marker(ControlType.ABORT, 5))  # 5
    assert log.last_stable_offset == log.high_watermark == 6
    assert [(t.producer_id, t.first_offset, t.last_offset) for t in log.aborted_transactions(0, 6)] == [
        (5, 2, 5)
    ]
    assert log.aborted_transactions(6, 10) == []
    append(log, batch(1, pid=5, epoch=0, seq=2, transactional=True))  # 6
    assert log.last_stable_offset == 6
    append(log, marker(ControlType.COMMIT, 5))
    assert log.last_stable_offset == log.high_watermark == 8
    assert len(log.aborted_transactions(0, 8)) == 1


def test_delete_records_moves_the_log_start() -> None:
    log = PartitionLog()
    for i in range(3):
        append(log, batch(2, first=2 * i))  # 0-1, 2-3, 4-5
    assert log.delete_records(3) == 3
    assert log.log_start_offset == 3
    with pytest.raises(OffsetOutOfRangeError):
        log.read(2, 100)
    # The batch holding the new start is still served whole.
    assert values(log.read(3, 1 << 20).records)[0] == (2, b"v2")
    assert log.delete_records(1) == 3  # never backwards
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_records(7)
    assert log.delete_records(-1) == 6
    assert log.read(6, 100).records == b""
    assert append(log, batch(1)) == (6, 6)


def test_retention_drops_expired_batches() -> None:
    log = PartitionLog()
    append(log, batch(2, ts=NOW - 10_000))
    append(log, batch(2, ts=NOW))
    assert log.enforce_retention(NOW, 5_000, -1)
    assert log.log_start_offset == 2
    assert not log.enforce_retention(NOW, 5_000, -1)
    assert log.enforce_retention(NOW, -1, 0)
    assert log.log_start_offset == log.log_end_offset == 4


def test_listeners_hear_appends_and_deletes() -> None:
    log = PartitionLog()
    calls: list[int] = []

    def listener() -> None:
        calls.append(log.log_end_offset)

    log.add_listener(listener)
    append(log, batch(1))
    log.delete_records(1)
    log.remove_listener(listener)
    append(log, batch(1))
    assert calls == [1, 1]


def test_persistence_across_reopen(tmp_path: Path) -> None:
    log = PartitionLog(tmp_path)
    append(log, batch(3, pid=9, epoch=0, seq=0))
    append(log, batch(2, first=3, compression=Compression.ZSTD))
    append(log, batch(1, first=5))
    log.delete_records(2)
    log.close()

    reopened = PartitionLog(tmp_path)
    assert reopened.log_start_offset == 2
    assert reopened.log_end_offset == 6
    assert values(reopened.read(2, 1 << 20).records) == [(i, f"v{i}".encode()) for i in range(6)]
    assert reopened.offset_for_timestamp(NOW + 1) == (2, NOW + 2)
    with pytest.raises(OffsetOutOfRangeError):
        reopened.read(1, 100)
    # The rebuilt producer state still recognises a retry of the first batch.
    assert reopened.append(batch(3, pid=9, epoch=0, seq=0), leader_epoch=0, now_ms=NOW).duplicate
    assert append(reopened, batch(1, first=6)) == (6, 6)
    reopened.close()
    assert PartitionLog(tmp_path).log_end_offset == 7


def test_torn_tail_is_cut_off_on_reopen(tmp_path: Path) -> None:
    log = PartitionLog(tmp_path)
    append(log, batch(2))
    append(log, batch(2, first=2))
    log.close()
    segment = tmp_path / SEGMENT_FILE
    data = segment.read_bytes()
    segment.write_bytes(data[:-5])  # a crash in the middle of the last write
    reopened = PartitionLog(tmp_path)
    assert reopened.log_end_offset == 2
    assert segment.stat().st_size == len(data) - len(batch(2, first=2))
    assert append(reopened, batch(1, first=2)) == (2, 2)
    assert values(reopened.read(0, 1 << 20).records)[-1] == (2, b"v2")
    reopened.close()
    assert not (tmp_path / LOG_START_FILE).exists()


def test_producer_state_goes_with_deleted_records(tmp_path: Path) -> None:
    log = PartitionLog(tmp_path)
    append(log, batch(2, pid=4, epoch=0, seq=0))
    append(log, batch(1, first=2))
    log.delete_records(2)
    # Kafka forgets producers whose last write is below the log start: any sequence goes.
    assert append(log, batch(1, pid=4, epoch=0, seq=17)) == (3, 3)
    log.close()
    reopened = PartitionLog(tmp_path)
    with pytest.raises(OutOfOrderSequenceNumberError):
        reopened.append(batch(1, pid=4, epoch=0, seq=0), leader_epoch=0, now_ms=NOW)
    reopened.close()


def test_in_memory_log_trims_deleted_bytes() -> None:
    log = PartitionLog()
    for i in range(10):
        append(log, batch(1, first=i))
    log.delete_records(8)
    assert [b.base_offset for b in log.batches] == [8, 9]
    assert values(log.read(8, 1 << 20).records) == [(8, b"v8"), (9, b"v9")]
