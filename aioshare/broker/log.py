"""One partition's log: record batches kept exactly as produced, plus the index over them.

Sans-IO apart from optional file persistence: no event loop, no tasks. The asyncio side learns
about changes through `add_listener` callbacks (appends, DeleteRecords, retention, close).

* Batches are stored byte-for-byte as the producer sent them (a compressed batch stays
  compressed); appending only rewrites the header fields that a broker owns: the base offset,
  the partition leader epoch and, for LogAppendTime topics, the max timestamp (the CRC starts
  after the base offset and leader epoch, so only the timestamp case recomputes it).
* The high watermark is the log end offset: one process holds every replica, so everything
  appended is "replicated" at once.
* Idempotent producers: Kafka's per-(producer id, partition) sequence rules, including the
  five-batch duplicate cache (a retried batch gets the original offsets, no error).
* Transactions: ongoing transactions hold back the last stable offset; ABORT markers record
  aborted ranges for read_committed fetches.
* Persistence (`directory` given): one append-only segment file, rebuilt into the index on open
  (a torn tail from a crash is cut off), and a checkpoint file for the log start offset. File
  writes are plain blocking writes into the page cache. They are fsynced only as the log's
  FlushPolicy says (Kafka's `flush.messages` after an append, `flush.ms` through the flush
  scheduler, see flush.py) and at a clean shutdown; by default, as in Kafka, never otherwise.
"""

from __future__ import annotations

import bisect
import os
import struct
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from aioshare.broker.flush import NO_FLUSH, FlushPolicy, fsync_directory, monotonic_ms, replace_file
from aioshare.protocol.crc import crc32c
from aioshare.protocol.errors import (
    CorruptRecordError,
    InvalidProducerEpochError,
    KafkaStorageError,
    OffsetOutOfRangeError,
    OutOfOrderSequenceNumberError,
)
from aioshare.protocol.records import ControlType, RecordBatchView, iter_batches

SEGMENT_FILE = "00000000000000000000.log"
LOG_START_FILE = "log-start-offset"

NO_TIMESTAMP = -1
_INT32_MAX = 2**31 - 1
# Kafka keeps the metadata of the last five batches per producer: the most a producer may have
# in flight with idempotence on, so any retry it sends is still recognised as a duplicate.
_PRODUCER_BATCH_CACHE = 5

# Header fields a broker rewrites (see records.py for the full layout).
_BASE_OFFSET = struct.Struct(">q")
_LEADER_EPOCH_AT = 12
_I32 = struct.Struct(">i")
_CRC_AT = 17
_ATTRIBUTES_AT = 21
_MAX_TIMESTAMP_AT = 35
_I16 = struct.Struct(">h")
_I64 = struct.Struct(">q")
_U32 = struct.Struct(">I")
_LOG_APPEND_TIME_BIT = 0x08
_TRANSACTIONAL_BIT = 0x10
_CONTROL_BIT = 0x20


class BatchInfo(NamedTuple):
    """Index entry for one stored batch (header facts only; the bytes stay in the store)."""

    base_offset: int
    last_offset: int
    position: int
    size: int
    max_timestamp: int
    leader_epoch: int
    producer_id: int
    attributes: int
    record_count: int

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & _CONTROL_BIT)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & _TRANSACTIONAL_BIT)

    @property
    def next_offset(self) -> int:
        return self.last_offset + 1


class AppendResult(NamedTuple):
    base_offset: int
    last_offset: int
    # The broker's timestamp for LogAppendTime topics, else -1 (what ProduceResponse carries).
    log_append_time: int
    log_start_offset: int
    # A retry of a batch that is already in the log: nothing was written.
    duplicate: bool = False


class LogRead(NamedTuple):
    """Whole batches starting at the one that holds the requested offset."""

    records: bytes
    batches: list[BatchInfo]
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int


class AbortedTxn(NamedTuple):
    producer_id: int
    first_offset: int
    last_offset: int  # offset of the ABORT marker


class _SequencedBatch(NamedTuple):
    first_seq: int
    last_seq: int
    base_offset: int
    last_offset: int
    max_timestamp: int


class _ProducerState:
    __slots__ = ("batches", "epoch", "last_offset", "txn_first_offset")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.batches: deque[_SequencedBatch] = deque(maxlen=_PRODUCER_BATCH_CACHE)
        self.txn_first_offset: int | None = None
        self.last_offset = -1

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else -1


def _next_sequence(sequence: int, increment: int) -> int:
    # Sequences wrap from Integer.MAX_VALUE back to 0 (DefaultRecordBatch.incrementSequence).
    if sequence > _INT32_MAX - increment:
        return increment - (_INT32_MAX - sequence) - 1
    return sequence + increment


def _in_sequence(last_seq: int, next_seq: int) -> bool:
    return next_seq == last_seq + 1 or (next_seq == 0 and last_seq == _INT32_MAX)


# --------------------------------------------------------------------------- byte stores


class _MemoryStore:
    """The log's bytes in one buffer; positions stay absolute after the front is trimmed."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0

    @property
    def end(self) -> int:
        return self._base + len(self._buf)

    def append(self, data: bytes) -> int:
        position = self.end
        self._buf += data
        return position

    def read(self, position: int, size: int) -> bytes:
        start = position - self._base
        return bytes(self._buf[start : start + size])

    def trim_before(self, position: int) -> None:
        if position > self._base:
            del self._buf[: position - self._base]
            self._base = position

    def close(self) -> None:
        self._buf = bytearray()


class _FileStore:
    """An append-only segment file. Deleted records stay in the file; the index skips them."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self._end = os.fstat(self._fd).st_size

    @property
    def end(self) -> int:
        return self._end

    def append(self, data: bytes) -> int:
        position = self._end
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._end += len(data)
        return position

    def read(self, position: int, size: int) -> bytes:
        return os.pread(self._fd, size, position)

    def read_all(self) -> bytes:
        return os.pread(self._fd, self._end, 0)

    def sync(self) -> None:
        os.fsync(self._fd)

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        self._end = size

    def trim_before(self, position: int) -> None:
        """Nothing to do: reads never go below the log start."""

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


# --------------------------------------------------------------------------- producers


class ProducerStateManager:
    """Per-producer state of one partition (Kafka's ProducerStateManager): the last sequences
    of idempotent producers and the transactions that are open or were aborted."""

    def __init__(self) -> None:
        self._producers: dict[int, _ProducerState] = {}
        self._ongoing_txns: dict[int, int] = {}  # producer id -> first offset
        self._aborted: list[AbortedTxn] = []

    def first_unstable_offset(self) -> int | None:
        """First offset of the oldest open transaction: where the last stable offset stops."""
        return min(self._ongoing_txns.values()) if self._ongoing_txns else None

    def aborted_transactions(self, first_offset: int, upper_bound: int) -> list[AbortedTxn]:
        return [
            txn for txn in self._aborted if txn.last_offset >= first_offset and txn.first_offset < upper_bound
        ]

    @property
    def max_producer_id(self) -> int:
        return max(self._producers, default=-1)

    def forget_before(self, offset: int) -> None:
        # Producer state whose last write is gone is forgotten, as Kafka does: such a producer
        # may then continue with any sequence number.
        for pid in [pid for pid, state in self._producers.items() if state.last_offset < offset]:
            if pid not in self._ongoing_txns:
                del self._producers[pid]
        self._aborted = [txn for txn in self._aborted if txn.last_offset >= offset]

    def check(self, view: RecordBatchView, next_offset: int) -> _SequencedBatch | None:
        """Kafka's ProducerAppendInfo checks; returns the cached batch when this one is a retry."""
        pid = view.producer_id
        if pid < 0:
            return None
        state = self._producers.get(pid)
        if state is None:
            # No state (new producer, or its records were deleted): any sequence is accepted.
            return None
        epoch = view.producer_epoch
        if epoch < state.epoch:
            raise InvalidProducerEpochError(
                f"Epoch of producer {pid} is {epoch}, which is smaller than the last seen epoch {state.epoch}"
            )
        if view.is_control or view.base_sequence < 0:
            return None
        first_seq = view.base_sequence
        last_seq = _next_sequence(first_seq, view.last_offset_delta)
        if epoch == state.epoch:
            for cached in state.batches:
                if cached.first_seq == first_seq and cached.last_seq == last_seq:
                    return cached
            if not _in_sequence(state.last_seq, first_seq):
                raise OutOfOrderSequenceNumberError(
                    f"Out of order sequence number for producer {pid} at offset {next_offset}: "
                    f"{first_seq} (incoming seq. number), {state.last_seq} (current end sequence number)"
                )
        elif first_seq != 0:
            raise OutOfOrderSequenceNumberError(
                f"Invalid sequence number for new epoch of producer {pid} at offset {next_offset}: "
                f"{epoch} (request epoch), {first_seq} (seq. number), {state.epoch} (current producer epoch)"
            )
        return None

    def update(self, view: RecordBatchView) -> None:
        """Take in a batch just written to the log (its offsets are final)."""
        pid = view.producer_id
        if pid < 0:
            return
        state = self._producers.get(pid)
        if state is None or view.producer_epoch != state.epoch:
            previous_txn = state.txn_first_offset if state is not None else None
            state = self._producers[pid] = _ProducerState(view.producer_epoch)
            state.txn_first_offset = previous_txn
        state.last_offset = view.last_offset
        if view.is_control:
            self._end_transaction(pid, state, view)
            return
        if view.base_sequence >= 0:
            last_seq = _next_sequence(view.base_sequence, view.last_offset_delta)
            state.batches.append(
                _SequencedBatch(
                    view.base_sequence, last_seq, view.base_offset, view.last_offset, view.max_timestamp
                )
            )
        if view.is_transactional and state.txn_first_offset is None:
            state.txn_first_offset = view.base_offset
            self._ongoing_txns[pid] = view.base_offset

    def _end_transaction(self, pid: int, state: _ProducerState, marker: RecordBatchView) -> None:
        try:
            control = marker.control_type(check_crc=False)
        except CorruptRecordError:
            return
        if control not in (ControlType.ABORT, ControlType.COMMIT):
            return
        first = self._ongoing_txns.pop(pid, None)
        state.txn_first_offset = None
        if control is ControlType.ABORT and first is not None:
            self._aborted.append(AbortedTxn(pid, first, marker.base_offset))


# --------------------------------------------------------------------------- the log


class PartitionLog:
    """The batches of one partition, their offsets, watermarks and producer/transaction state."""

    def __init__(
        self,
        directory: Path | None = None,
        *,
        flush_policy: FlushPolicy = NO_FLUSH,
        clock: Callable[[], int] = monotonic_ms,
    ) -> None:
        """`clock` (milliseconds) only times flushes: when the last one was, for `flush.ms`."""
        self._directory = directory
        self._entries: list[BatchInfo] = []
        self._last_offsets: list[int] = []  # parallel to _entries, for bisect by offset
        # Running maximum of max_timestamp, non-decreasing, so a timestamp lookup can bisect.
        self._max_ts_so_far: list[int] = []
        self._log_start = 0
        self._next_offset = 0
        self._producers = ProducerStateManager()
        self._listeners: list[Callable[[], None]] = []
        self._closed = False
        self._flush_policy = flush_policy
        self._flush_messages = flush_policy.messages  # read on every append
        self._clock = clock
        # Kafka's recovery point: offsets below it are known to be on disk. What an open finds
        # in the file may still be only in the page cache (after a killed process), so it
        # counts as unflushed until the next flush.
        self._recovery_point = 0
        self._last_flush_ms = clock()
        # The first flush also fsyncs the directories, so that a new segment file (and a new
        # partition directory) is found after a machine crash.
        self._directories_synced = False
        self._store: _MemoryStore | _FileStore
        if directory is None:
            self._store = _MemoryStore()
        else:
            directory.mkdir(parents=True, exist_ok=True)
            self._store = _FileStore(directory / SEGMENT_FILE)
            self._recover()
            self._recovery_point = self._log_start

    # ------------------------------------------------------------------ state

    @property
    def directory(self) -> Path | None:
        return self._directory

    @property
    def log_start_offset(self) -> int:
        return self._log_start

    @property
    def log_end_offset(self) -> int:
        return self._next_offset

    @property
    def high_watermark(self) -> int:
        return self._next_offset

    @property
    def last_stable_offset(self) -> int:
        unstable = self._producers.first_unstable_offset()
        return self.high_watermark if unstable is None else unstable

    @property
    def size_in_bytes(self) -> int:
        return sum(entry.size for entry in self._entries)

    @property
    def batches(self) -> list[BatchInfo]:
        """The index (a copy is not made: do not mutate)."""
        return self._entries

    def upper_bound(self, read_committed: bool) -> int:
        """Where a fetch stops: the LSO for read_committed, else the high watermark."""
        return self.last_stable_offset if read_committed else self.high_watermark

    # ------------------------------------------------------------------ listeners

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Called (synchronously) after every change: append, log start move, close."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        try:
            self._listeners.remove(callback)
        except ValueError:
            pass

    @property
    def listener_count(self) -> int:
        """How many listeners wait on this log (long polls parked on it, for instance)."""
        return len(self._listeners)

    def notify(self) -> None:
        """Wake listeners; also used by owners for changes outside the log (leader moves)."""
        for callback in list(self._listeners):
            callback()

    # ------------------------------------------------------------------ append

    def append(
        self,
        batch: bytes | bytearray | memoryview,
        *,
        leader_epoch: int,
        now_ms: int,
        log_append_time: bool = False,
    ) -> AppendResult:
        """Append one validated v2 batch (CRC already checked by the caller).

        Raises OutOfOrderSequenceNumberError / InvalidProducerEpochError for idempotent
        producers that broke Kafka's sequence rules; a duplicate of one of a producer's last
        five batches returns the original offsets with `duplicate=True`.
        """
        self._check_open()
        view = RecordBatchView(batch)
        duplicate = self._producers.check(view, self._next_offset)
        if duplicate is not None:
            return AppendResult(duplicate.base_offset, duplicate.last_offset, -1, self._log_start, True)
        base = self._next_offset
        append_time = now_ms if log_append_time else -1
        data = _stamp(view.raw, base, leader_epoch, append_time)
        info = self._store_batch(RecordBatchView(data))
        if self._next_offset - self._recovery_point >= self._flush_messages:
            self._flush_after_append()
        self.notify()
        return AppendResult(info.base_offset, info.last_offset, append_time, self._log_start)

    def _store_batch(self, view: RecordBatchView) -> BatchInfo:
        position = self._store.append(bytes(view.raw))
        return self._index(view, position)

    def _index(self, view: RecordBatchView, position: int) -> BatchInfo:
        info = BatchInfo(
            view.base_offset,
            view.last_offset,
            position,
            view.size,
            view.max_timestamp,
            view.partition_leader_epoch,
            view.producer_id,
            view.attributes,
            view.record_count,
        )
        self._entries.append(info)
        self._last_offsets.append(info.last_offset)
        previous = self._max_ts_so_far[-1] if self._max_ts_so_far else NO_TIMESTAMP
        self._max_ts_so_far.append(max(previous, info.max_timestamp))
        self._next_offset = info.last_offset + 1
        self._producers.update(view)
        return info

    # ------------------------------------------------------------------ read

    def read(
        self,
        offset: int,
        max_bytes: int,
        *,
        upper_bound: int | None = None,
        min_one: bool = True,
    ) -> LogRead:
        """Whole batches from the one holding `offset`, up to `max_bytes` and below `upper_bound`.

        `min_one` returns the first batch even when it alone exceeds `max_bytes` (KIP-74), so a
        consumer can always make progress. Raises OffsetOutOfRangeError for offsets below the
        log start or past the log end; the log end itself reads as empty.
        """
        self._check_offset(offset)
        bound = self.high_watermark if upper_bound is None else min(upper_bound, self.high_watermark)
        first = bisect.bisect_left(self._last_offsets, offset)
        total = 0
        end = first
        entries = self._entries
        while end < len(entries):
            entry = entries[end]
            if entry.last_offset >= bound:
                break
            if total + entry.size > max_bytes and not (min_one and end == first):
                break
            total += entry.size
            end += 1
        batches = entries[first:end]
        data = self._store.read(batches[0].position, total) if batches else b""
        return LogRead(data, batches, self.high_watermark, self.last_stable_offset, self._log_start)

    def read_batches(self, batches: list[BatchInfo]) -> bytes:
        """The bytes of consecutive index entries (as returned by `read` or `batches_between`)."""
        if not batches:
            return b""
        start = batches[0].position
        return self._store.read(start, batches[-1].position + batches[-1].size - start)

    def batches_between(self, first_offset: int, last_offset: int) -> list[BatchInfo]:
        """Index entries of the batches overlapping [first_offset, last_offset]."""
        start = bisect.bisect_left(self._last_offsets, max(first_offset, self._log_start))
        stop = start
        while stop < len(self._entries) and self._entries[stop].base_offset <= last_offset:
            stop += 1
        return self._entries[start:stop]

    def aborted_transactions(self, first_offset: int, upper_bound: int) -> list[AbortedTxn]:
        """Aborted transactions overlapping [first_offset, upper_bound), for read_committed fetches."""
        return self._producers.aborted_transactions(first_offset, upper_bound)

    def _check_offset(self, offset: int) -> None:
        if offset < self._log_start or offset > self._next_offset:
            raise OffsetOutOfRangeError(
                f"Received request for offset {offset}, but we only have log segments "
                f"in the range {self._log_start} to {self._next_offset}."
            )

    # ------------------------------------------------------------------ timestamps

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record at or after `timestamp`, or None."""
        index = bisect.bisect_left(self._max_ts_so_far, timestamp)
        for entry in self._entries[index:]:
            if entry.max_timestamp < timestamp:
                continue
            for offset, ts in self._record_timestamps(entry):
                if ts >= timestamp and offset >= self._log_start:
                    return offset, ts
        return None

    def max_timestamp(self) -> tuple[int, int]:
        """(offset, timestamp) of the record with the largest timestamp; (-1, -1) when empty."""
        if not self._entries:
            return -1, NO_TIMESTAMP
        best = max(self._entries, key=lambda entry: entry.max_timestamp)
        for offset, ts in self._record_timestamps(best):
            if ts == best.max_timestamp:
                return offset, ts
        return best.last_offset, best.max_timestamp

    def leader_epoch_for(self, offset: int) -> int:
        """The leader epoch stamped on the batch holding `offset` (-1 when there is none)."""
        index = bisect.bisect_left(self._last_offsets, offset)
        if index < len(self._entries) and self._entries[index].base_offset <= offset:
            return self._entries[index].leader_epoch
        return self._entries[-1].leader_epoch if self._entries else -1

    def _record_timestamps(self, entry: BatchInfo) -> Iterator[tuple[int, int]]:
        view = RecordBatchView(self._store.read(entry.position, entry.size))
        if view.timestamp_type == 1:  # LogAppendTime: every record carries the batch's time
            for offset in range(entry.base_offset, entry.last_offset + 1):
                yield offset, entry.max_timestamp
            return
        for record in view.records(check_crc=False):
            yield record.offset, record.timestamp

    # ------------------------------------------------------------------ deletion

    def delete_records(self, offset: int) -> int:
        """DeleteRecords: move the log start to `offset` (-1 = high watermark); returns it."""
        self._check_open()
        if offset == -1:
            offset = self.high_watermark
        if offset < 0 or offset > self.high_watermark:
            raise OffsetOutOfRangeError(
                f"Cannot increment the log start offset to {offset} of partition since it is larger "
                f"than the high watermark {self.high_watermark}"
            )
        if offset > self._log_start:
            self._advance_log_start(offset)
            self.notify()
        return self._log_start

    def enforce_retention(self, now_ms: int, retention_ms: int, retention_bytes: int) -> bool:
        """Drop whole batches from the front past retention.ms / retention.bytes (-1 = no limit).

        Kafka deletes whole segments; here each batch acts as a segment, which keeps the same
        contract (only complete, expired data below the log start is removed).
        """
        drop = 0
        if retention_ms >= 0:
            while drop < len(self._entries) and self._entries[drop].max_timestamp < now_ms - retention_ms:
                drop += 1
        if retention_bytes >= 0:
            size = sum(entry.size for entry in self._entries[drop:])
            while drop < len(self._entries) and size > retention_bytes:
                size -= self._entries[drop].size
                drop += 1
        if drop == 0:
            return False
        new_start = self._entries[drop].base_offset if drop < len(self._entries) else self._next_offset
        self._advance_log_start(new_start)
        self.notify()
        return True

    def _advance_log_start(self, offset: int) -> None:
        self._log_start = offset
        self._forget_before(offset)
        if self._entries:
            self._store.trim_before(self._entries[0].position)
        elif isinstance(self._store, _MemoryStore):
            self._store.trim_before(self._store.end)
        self._write_log_start()

    def _forget_before(self, offset: int) -> None:
        """Drop index entries, producer state and aborted ranges wholly below `offset`."""
        keep = bisect.bisect_left(self._last_offsets, offset)
        if keep:
            del self._entries[:keep]
            del self._last_offsets[:keep]
            self._rebuild_timestamp_index()
        self._producers.forget_before(offset)

    def _rebuild_timestamp_index(self) -> None:
        running = NO_TIMESTAMP
        self._max_ts_so_far = []
        for entry in self._entries:
            running = max(running, entry.max_timestamp)
            self._max_ts_so_far.append(running)

    # ------------------------------------------------------------------ flushing

    @property
    def flush_policy(self) -> FlushPolicy:
        return self._flush_policy

    @flush_policy.setter
    def flush_policy(self, policy: FlushPolicy) -> None:
        """Topic configs can change while the log is open (IncrementalAlterConfigs)."""
        self._flush_policy = policy
        self._flush_messages = policy.messages

    @property
    def unflushed_messages(self) -> int:
        """Offsets appended since the last flush (Kafka's LocalLog.unflushedMessages)."""
        return self._next_offset - self._recovery_point

    def flush(self) -> None:
        """fsync everything appended since the last flush; nothing to do when nothing was."""
        if self._closed or self._next_offset <= self._recovery_point:
            return
        if isinstance(self._store, _FileStore):
            self._store.sync()
            if not self._directories_synced:
                assert self._directory is not None
                fsync_directory(self._directory)
                fsync_directory(self._directory.parent)
                self._directories_synced = True
        self._recovery_point = self._next_offset
        self._last_flush_ms = self._clock()

    def _flush_after_append(self) -> None:
        """flush.messages reached: flush before the append is answered, as UnifiedLog.append does.

        A failed fsync fails the append with KAFKA_STORAGE_ERROR (Kafka takes the log directory
        offline); the batch stays in the log, only as durable as the page cache.
        """
        try:
            self.flush()
        except OSError as exc:
            self.notify()
            raise KafkaStorageError(
                f"Error while flushing log in dir {self._directory} with offset {self._next_offset} "
                f"(exclusive) and recovery point {self._recovery_point}: {exc}"
            ) from exc

    def flush_if_due(self) -> None:
        """The flush scheduler's check: flush when the last flush is `flush.ms` old or older."""
        if self._clock() - self._last_flush_ms >= self._flush_policy.ms:
            self.flush()

    # ------------------------------------------------------------------ persistence

    def _recover(self) -> None:
        assert isinstance(self._store, _FileStore) and self._directory is not None
        data = self._store.read_all()
        good = 0
        try:
            for view in iter_batches(data):
                view.validate()
                self._index(view, good)
                good += view.size
        except CorruptRecordError:
            pass
        if good != len(data):
            # A crash mid-write leaves a partial or corrupt tail; Kafka's recovery truncates it.
            self._store.truncate(good)
        start_file = self._directory / LOG_START_FILE
        if start_file.exists():
            try:
                start = int(start_file.read_text().strip())
            except ValueError:
                start = 0
            if start > 0:
                self._log_start = start
                self._next_offset = max(self._next_offset, start)
                self._forget_before(start)
        elif self._entries:
            self._log_start = self._entries[0].base_offset

    def _write_log_start(self) -> None:
        if self._directory is None:
            return
        data = f"{self._log_start}\n".encode()
        replace_file(self._directory / LOG_START_FILE, data, durable=self._flush_policy.enabled)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the log is closed")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._store.close()
            self.notify()
            self._listeners.clear()

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ producer ids

    @property
    def max_producer_id(self) -> int:
        """The largest producer id with state here (-1 when none), so ids are not reused."""
        return self._producers.max_producer_id


def _stamp(raw: memoryview, base_offset: int, leader_epoch: int, log_append_time: int) -> bytes:
    """A copy of `raw` with the header fields the broker owns set."""
    buf = bytearray(raw)
    _BASE_OFFSET.pack_into(buf, 0, base_offset)
    _I32.pack_into(buf, _LEADER_EPOCH_AT, leader_epoch)
    if log_append_time >= 0:
        (attributes,) = _I16.unpack_from(buf, _ATTRIBUTES_AT)
        _I16.pack_into(buf, _ATTRIBUTES_AT, attributes | _LOG_APPEND_TIME_BIT)
        _I64.pack_into(buf, _MAX_TIMESTAMP_AT, log_append_time)
        _U32.pack_into(buf, _CRC_AT, crc32c(memoryview(buf)[_ATTRIBUTES_AT:]))
    return bytes(buf)
