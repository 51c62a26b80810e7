"""Kafka record batches (magic v2): encode, walk, inspect, validate.

The `records` field of Produce/Fetch/ShareFetch is a run of record batches. Encoding is
aiokafka's (its C-accelerated builder), and so are the codecs; records are read by
record_reader.py (compiled). This module adds what a share-group client and an embedded broker
need on top:

* `encode_batch` with the bits only a broker sets (control batches, log-append time, base offset);
* `iter_batches`, which reads batch headers without decompressing and hands out zero-copy views;
* `rewrite_base_offset` to assign offsets to a produced batch without re-encoding it;
* typed errors: malformed input raises `CorruptRecordError` (code CORRUPT_MESSAGE), a codec that
  is not installed raises `UnsupportedCompressionTypeError`; never struct.error or IndexError.

Snappy, LZ4 and ZSTD need the `cramjam` package (aiokafka's only backend for them); gzip is stdlib.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import aiokafka.codec
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from aioshare.protocol.crc import crc32c
from aioshare.protocol.errors import CorruptRecordError, UnsupportedCompressionTypeError
from aioshare.protocol.record_reader import RecordFields, read_records


class Compression(enum.IntEnum):
    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


class TimestampType(enum.IntEnum):
    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


class ControlType(enum.IntEnum):
    """Type field of a control record's key (Kafka's ControlRecordType)."""

    UNKNOWN = -1
    ABORT = 0
    COMMIT = 1
    LEADER_CHANGE = 2
    SNAPSHOT_HEADER = 3
    SNAPSHOT_FOOTER = 4
    KRAFT_VERSION = 5
    KRAFT_VOTERS = 6


class RecordToWrite(NamedTuple):
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]] = ()
    timestamp_ms: int | None = None  # None: now


class DecodedRecord(NamedTuple):
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


# BaseOffset, Length, PartitionLeaderEpoch, Magic, CRC, Attributes, LastOffsetDelta,
# FirstTimestamp, MaxTimestamp, ProducerId, ProducerEpoch, BaseSequence, RecordCount.
_HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = _HEADER.size  # 61
_LOG_OVERHEAD = 12  # BaseOffset + Length: the bytes that Length does not count
_LENGTH = struct.Struct(">i")
_BASE_OFFSET = struct.Struct(">q")
_CRC = struct.Struct(">I")
_ATTRIBUTES = struct.Struct(">h")
_MAGIC_OFFSET = 16
_CRC_OFFSET = 17
_ATTRIBUTES_OFFSET = 21  # the CRC covers everything from here on, so BaseOffset is free to change
_COMPRESSION_MASK = 0x07
_MAX_CODEC = max(Compression)  # once: max() iterates the enum (2% of the share core per batch)
_LOG_APPEND_TIME_BIT = 0x08
_TRANSACTIONAL_BIT = 0x10
_CONTROL_BIT = 0x20
_CONTROL_KEY = struct.Struct(">hh")  # version, type
_END_TXN_MARKER = struct.Struct(">hi")  # version, coordinator epoch
_MAX_BATCH_BYTES = 2**31 - 1  # the Length field is an int32

_CODEC_CHECKS: dict[Compression, Callable[[], bool]] = {
    Compression.NONE: lambda: True,
    Compression.GZIP: aiokafka.codec.has_gzip,
    Compression.SNAPPY: aiokafka.codec.has_snappy,
    Compression.LZ4: aiokafka.codec.has_lz4,
    Compression.ZSTD: aiokafka.codec.has_zstd,
}


_DECOMPRESS: dict[Compression, Callable[[bytes], bytes]] = {
    Compression.GZIP: aiokafka.codec.gzip_decode,
    Compression.SNAPPY: aiokafka.codec.snappy_decode,
    Compression.LZ4: aiokafka.codec.lz4_decode,
    Compression.ZSTD: aiokafka.codec.zstd_decode,
}


def compression_available(compression: Compression) -> bool:
    return _CODEC_CHECKS[compression]()


def _require_codec(compression: Compression) -> None:
    if not compression_available(compression):
        raise UnsupportedCompressionTypeError(
            f"{compression.name} compression needs the 'cramjam' package, which is not installed"
        )


def encode_batch(
    records: Sequence[RecordToWrite],
    *,
    base_offset: int = 0,
    compression: Compression = Compression.NONE,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    transactional: bool = False,
    is_control: bool = False,
    timestamp_type: int = TimestampType.CREATE_TIME,
) -> bytes:
    """One v2 record batch holding `records` at offsets base_offset, base_offset + 1, ...

    aiokafka's pure-Python builder (its fallback when the C extension is missing) stores the batch
    uncompressed when compression would not shrink it, so read the codec back from the batch
    (`RecordBatchView.compression`) rather than assuming `compression`.
    """
    if not records:
        raise ValueError("a record batch needs at least one record")
    if timestamp_type not in (TimestampType.CREATE_TIME, TimestampType.LOG_APPEND_TIME):
        raise ValueError(f"invalid timestamp type {timestamp_type}")
    compression = Compression(compression)
    _require_codec(compression)
    builder: Any = DefaultRecordBatchBuilder(
        2, compression, int(transactional), producer_id, producer_epoch, base_sequence, _MAX_BATCH_BYTES
    )
    for delta, record in enumerate(records):
        if builder.append(delta, record.timestamp_ms, record.key, record.value, list(record.headers)) is None:
            raise ValueError("the records do not fit in one record batch")
    buf: bytearray = builder.build()
    # aiokafka's builder only writes what a producer may set; these bits are a broker's, so they
    # are patched in and the CRC recomputed.
    extra = (_CONTROL_BIT if is_control else 0) | (
        _LOG_APPEND_TIME_BIT if timestamp_type == TimestampType.LOG_APPEND_TIME else 0
    )
    if extra:
        (attributes,) = _ATTRIBUTES.unpack_from(buf, _ATTRIBUTES_OFFSET)
        _ATTRIBUTES.pack_into(buf, _ATTRIBUTES_OFFSET, attributes | extra)
        _CRC.pack_into(buf, _CRC_OFFSET, _crc_of(memoryview(buf)))
    _BASE_OFFSET.pack_into(buf, 0, base_offset)
    return bytes(buf)


def transaction_marker(
    control_type: ControlType, *, coordinator_epoch: int = 0, timestamp_ms: int | None = None
) -> RecordToWrite:
    """The single record of a COMMIT or ABORT marker batch.

    Encode it with `encode_batch([...], is_control=True, transactional=True, producer_id=...,
    producer_epoch=...)`.
    """
    if control_type not in (ControlType.ABORT, ControlType.COMMIT):
        raise ValueError(f"transaction markers are ABORT or COMMIT, not {control_type!r}")
    key = _CONTROL_KEY.pack(0, control_type)
    value = _END_TXN_MARKER.pack(0, coordinator_epoch)
    return RecordToWrite(key, value, (), timestamp_ms)


def _crc_of(batch: memoryview) -> int:
    crc: int = crc32c(batch[_ATTRIBUTES_OFFSET:])
    return crc


class RecordBatchView:
    """One complete record batch, read from its header only; `raw` is a zero-copy slice.

    `raw` aliases the buffer it was cut from: copy it (`bytes(view.raw)`) before keeping it past
    the life of a reused or mutable buffer.
    """

    __slots__ = (
        "attributes",
        "base_offset",
        "base_sequence",
        "crc",
        "first_timestamp",
        "last_offset_delta",
        "magic",
        "max_timestamp",
        "partition_leader_epoch",
        "producer_epoch",
        "producer_id",
        "raw",
        "record_count",
    )

    raw: memoryview
    base_offset: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    first_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        raw = memoryview(data).cast("B")
        if len(raw) < HEADER_SIZE:
            raise CorruptRecordError(f"record batch of {len(raw)} bytes is shorter than its header")
        (
            self.base_offset,
            length,
            self.partition_leader_epoch,
            self.magic,
            self.crc,
            self.attributes,
            self.last_offset_delta,
            self.first_timestamp,
            self.max_timestamp,
            self.producer_id,
            self.producer_epoch,
            self.base_sequence,
            self.record_count,
        ) = _HEADER.unpack_from(raw)
        if self.magic != 2:
            raise CorruptRecordError(f"record batch magic {self.magic} is not supported (only v2)")
        if length + _LOG_OVERHEAD != len(raw):
            raise CorruptRecordError(f"record batch length {length} does not match its {len(raw)} bytes")
        if self.record_count < 0:
            raise CorruptRecordError(f"negative record count {self.record_count}")
        if self.attributes & _COMPRESSION_MASK > _MAX_CODEC:
            raise CorruptRecordError(f"unknown compression codec {self.attributes & _COMPRESSION_MASK}")
        self.raw = raw

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.last_offset + 1

    @property
    def compression(self) -> Compression:
        return Compression(self.attributes & _COMPRESSION_MASK)

    @property
    def timestamp_type(self) -> TimestampType:
        return TimestampType(1 if self.attributes & _LOG_APPEND_TIME_BIT else 0)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & _TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & _CONTROL_BIT)

    @property
    def size(self) -> int:
        return len(self.raw)

    def validate(self) -> None:
        """Raise CorruptRecordError unless the stored CRC matches the batch's bytes."""
        actual = _crc_of(self.raw)
        if actual != self.crc:
            raise CorruptRecordError(
                f"record batch CRC is {self.crc:#010x} but the data gives {actual:#010x}"
            )

    def payload(self) -> bytes:
        """The records section, decompressed."""
        body = self.raw[HEADER_SIZE:]
        if not self.attributes & _COMPRESSION_MASK:
            return bytes(body)
        compression = self.compression
        _require_codec(compression)
        try:
            return bytes(_DECOMPRESS[compression](body.tobytes()))
        except Exception as exc:
            # Decompressors raise a wide, version-dependent set of exception types on garbage
            # (zlib.error, EOFError, cramjam's own).
            raise CorruptRecordError(f"{compression.name} records do not decompress: {exc!r}") from exc

    def records(self, *, check_crc: bool = True) -> Iterator[DecodedRecord]:
        """Decompress (if needed) and decode the records, as DecodedRecord tuples."""
        for r in self.decode_all(check_crc=check_crc):
            yield DecodedRecord(r[0], r[1], r[2], r[3], r[4] if r[4] is not None else [])

    def decode_all(self, *, check_crc: bool = True) -> list[RecordFields]:
        """Every record at once, as ``RecordFields`` tuples (record_reader.py, compiled): the
        consumer's way, without the ``DecodedRecord`` that ``records()`` makes of each."""
        if check_crc:
            self.validate()
        log_append_time = self.max_timestamp if self.attributes & _LOG_APPEND_TIME_BIT else None
        return read_records(
            self.payload(), self.record_count, self.base_offset, self.first_timestamp, log_append_time
        )

    def control_type(self, *, check_crc: bool = True) -> ControlType:
        """The type in a control batch's record key (UNKNOWN for types newer than this module)."""
        if not self.is_control:
            raise ValueError("not a control batch")
        first = next(self.records(check_crc=check_crc), None)
        if first is None or first.key is None or len(first.key) < _CONTROL_KEY.size:
            raise CorruptRecordError("control record key is missing or shorter than 4 bytes")
        version, type_ = _CONTROL_KEY.unpack_from(first.key)
        if version < 0:
            raise CorruptRecordError(f"negative control record key version {version}")
        try:
            return ControlType(type_)
        except ValueError:
            return ControlType.UNKNOWN

    def __repr__(self) -> str:
        return (
            f"RecordBatchView(base_offset={self.base_offset}, last_offset={self.last_offset}, "
            f"records={self.record_count}, compression={self.compression.name}, "
            f"control={self.is_control}, transactional={self.is_transactional}, size={self.size})"
        )


def iter_batches(data: bytes | bytearray | memoryview, *, strict: bool = False) -> Iterator[RecordBatchView]:
    """Walk the concatenated batches of a `records` field, lazily and without decompressing.

    A truncated last batch is skipped: brokers cut Fetch responses at the size limit mid-batch,
    and Kafka's consumers skip that tail too. With `strict=True` (a broker checking Produce data)
    it raises CorruptRecordError instead.
    """
    buf = memoryview(data).cast("B")
    pos = 0
    while len(buf) - pos >= _LOG_OVERHEAD:
        (length,) = _LENGTH.unpack_from(buf, pos + 8)
        if length < HEADER_SIZE - _LOG_OVERHEAD:
            raise CorruptRecordError(f"record batch length {length} is less than a batch header")
        end = pos + _LOG_OVERHEAD + length
        if end > len(buf):
            break
        yield RecordBatchView(buf[pos:end])
        pos = end
    if strict and pos < len(buf):
        raise CorruptRecordError(f"{len(buf) - pos} bytes of an incomplete record batch at the end")


def validate_batch(data: bytes | bytearray | memoryview) -> RecordBatchView:
    """Check that `data` is exactly one v2 batch with a correct CRC; return its view."""
    view = RecordBatchView(data)
    view.validate()
    return view


def rewrite_base_offset(batch: bytes | bytearray | memoryview, new_base_offset: int) -> bytes:
    """A copy of `batch` with its base offset replaced; the CRC stays valid (it starts later)."""
    raw = memoryview(batch).cast("B")
    if len(raw) < HEADER_SIZE or raw[_MAGIC_OFFSET] != 2:
        raise CorruptRecordError("not a v2 record batch")
    return _BASE_OFFSET.pack(new_base_offset) + raw[_BASE_OFFSET.size :]
