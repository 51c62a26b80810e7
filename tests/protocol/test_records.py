"""aioshare.protocol.records: v2 record batches.

Besides round-trips through aioshare itself, batches are checked against a small decoder written
here from the protocol spec (with its own CRC-32C), and against kafka-python's record code.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioshare.protocol import records as rec
from aioshare.protocol.errors import CorruptRecordError, KafkaError, UnsupportedCompressionTypeError
from aioshare.protocol.records import (
    HEADER_SIZE,
    Compression,
    ControlType,
    DecodedRecord,
    RecordBatchView,
    RecordToWrite,
    TimestampType,
    compression_available,
    encode_batch,
    iter_batches,
    rewrite_base_offset,
    transaction_marker,
    validate_batch,
)

AVAILABLE = [c for c in Compression if compression_available(c)]
COMPRESSIONS = [
    pytest.param(c, marks=pytest.mark.skipif(not compression_available(c), reason=f"no {c.name} codec"))
    for c in Compression
]

SAMPLE = [
    RecordToWrite(b"key-0", b"value-0" * 20, [("trace", b"abc"), ("empty", b""), ("none", None)], 1_000),
    RecordToWrite(None, b"no key", (), 1_005),
    RecordToWrite(b"no value", None, [("ünïcödé", b"\x00\xff")], 999),
    RecordToWrite(None, None, (), 2_000),
    RecordToWrite(b"", b"", (), 2_000),
]


def _expected(records: Sequence[RecordToWrite], base_offset: int) -> list[DecodedRecord]:
    return [
        DecodedRecord(base_offset + i, r.timestamp_ms or 0, r.key, r.value, list(r.headers))
        for i, r in enumerate(records)
    ]


# --- a decoder written from the protocol spec, independent of aiokafka ---------------------------


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), pos


def _write_varint(out: bytearray, value: int) -> None:
    value = (value << 1) ^ (value >> 63)
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


_SPEC_HEADER = struct.Struct(">qiibIhiqqqhii")


def spec_decode(batch: bytes) -> tuple[tuple[Any, ...], list[DecodedRecord]]:
    """Header tuple and records of one uncompressed batch; asserts the CRC."""
    header = _SPEC_HEADER.unpack_from(batch)
    base, length, _epoch, magic, crc, attrs, _lod, first_ts, max_ts, _pid, _pe, _seq, count = header
    assert magic == 2 and length == len(batch) - 12
    assert crc == _crc32c(batch[21:])
    assert attrs & 0x07 == 0
    pos, out = 61, []
    for _ in range(count):
        size, pos = _varint(batch, pos)
        end = pos + size
        pos += 1  # record attributes, unused
        ts_delta, pos = _varint(batch, pos)
        offset_delta, pos = _varint(batch, pos)
        fields: list[bytes | None] = []
        for _ in range(2):
            n, pos = _varint(batch, pos)
            fields.append(None if n < 0 else batch[pos : pos + n])
            pos += max(n, 0)
        n_headers, pos = _varint(batch, pos)
        headers: list[tuple[str, bytes | None]] = []
        for _ in range(n_headers):
            n, pos = _varint(batch, pos)
            name = batch[pos : pos + n].decode()
            pos += n
            n, pos = _varint(batch, pos)
            headers.append((name, None if n < 0 else batch[pos : pos + n]))
            pos += max(n, 0)
        assert pos == end
        ts = max_ts if attrs & 0x08 else first_ts + ts_delta
        out.append(DecodedRecord(base + offset_delta, ts, fields[0], fields[1], headers))
    assert pos == len(batch)
    return header, out


def spec_encode(
    records: Sequence[RecordToWrite], *, base_offset: int, attributes: int, producer_id: int = -1
) -> bytes:
    """An uncompressed batch built by hand from the spec."""
    body = bytearray()
    first_ts = records[0].timestamp_ms or 0
    for i, r in enumerate(records):
        one = bytearray(b"\x00")
        _write_varint(one, (r.timestamp_ms or 0) - first_ts)
        _write_varint(one, i)
        for field in (r.key, r.value):
            _write_varint(one, -1 if field is None else len(field))
            one += field or b""
        _write_varint(one, len(r.headers))
        for name, value in r.headers:
            _write_varint(one, len(name.encode()))
            one += name.encode()
            _write_varint(one, -1 if value is None else len(value))
            one += value or b""
        _write_varint(body, len(one))
        body += one
    max_ts = max(r.timestamp_ms or 0 for r in records)
    after_crc = struct.pack(
        ">hiqqqhii", attributes, len(records) - 1, first_ts, max_ts, producer_id, 0, 0, len(records)
    )
    after_crc += body
    head = struct.pack(">qiib", base_offset, len(after_crc) + 9, 7, 2)
    return head + struct.pack(">I", _crc32c(after_crc)) + after_crc


def test_spec_crc32c_matches_the_standard_check_value() -> None:
    assert _crc32c(b"123456789") == 0xE3069283


# --- encoding and decoding ------------------------------------------------------------------------


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_round_trip(compression: Compression) -> None:
    many = SAMPLE + [RecordToWrite(b"k%d" % i, b"repetitive value " * 10, (), 3_000 + i) for i in range(200)]
    data = encode_batch(many, base_offset=42, compression=compression)
    [view] = list(iter_batches(data))
    assert view.compression is compression
    assert (view.base_offset, view.last_offset, view.next_offset) == (42, 42 + len(many) - 1, 42 + len(many))
    assert view.last_offset_delta == len(many) - 1
    assert view.record_count == len(many)
    assert view.size == len(data)
    assert (view.first_timestamp, view.max_timestamp) == (1_000, 3_199)
    assert (view.producer_id, view.producer_epoch, view.base_sequence) == (-1, -1, -1)
    assert not view.is_transactional and not view.is_control
    assert view.timestamp_type is TimestampType.CREATE_TIME
    assert list(view.records()) == _expected(many, 42)


def test_headers_and_null_key_value_match_the_spec() -> None:
    data = encode_batch(SAMPLE, base_offset=7)
    header, decoded = spec_decode(data)
    assert decoded == _expected(SAMPLE, 7)
    assert header[5] == 0  # attributes
    assert decoded[0].headers == [("trace", b"abc"), ("empty", b""), ("none", None)]
    assert (decoded[1].key, decoded[2].value) == (None, None)
    assert (decoded[4].key, decoded[4].value) == (b"", b"")


def test_views_decode_hand_built_batches() -> None:
    attributes = 0x08 | 0x10  # log-append time, transactional
    data = spec_encode(SAMPLE, base_offset=1000, attributes=attributes, producer_id=55)
    view = validate_batch(data)
    assert view.timestamp_type is TimestampType.LOG_APPEND_TIME
    assert view.is_transactional and not view.is_control
    assert view.producer_id == 55 and view.partition_leader_epoch == 7
    # With log-append time every record carries the batch's max timestamp.
    assert [r.timestamp for r in view.records()] == [2_000] * len(SAMPLE)
    assert [r.offset for r in view.records()] == list(range(1000, 1000 + len(SAMPLE)))


def test_timestamp_defaults_to_now() -> None:
    [record] = validate_batch(encode_batch([RecordToWrite(b"k", b"v")])).records()
    assert record.timestamp > 1_600_000_000_000


def test_transactional_producer_fields() -> None:
    data = encode_batch(
        SAMPLE, producer_id=123456789, producer_epoch=7, base_sequence=1000, transactional=True
    )
    view = validate_batch(data)
    assert view.is_transactional and not view.is_control
    assert (view.producer_id, view.producer_epoch, view.base_sequence) == (123456789, 7, 1000)
    header, _ = spec_decode(data)
    assert header[5] == 0x10 and header[9:12] == (123456789, 7, 1000)


def test_log_append_time_bit() -> None:
    data = encode_batch(SAMPLE, timestamp_type=TimestampType.LOG_APPEND_TIME)
    header, decoded = spec_decode(data)
    assert header[5] == 0x08
    view = validate_batch(data)
    assert view.timestamp_type is TimestampType.LOG_APPEND_TIME
    assert [r.timestamp for r in view.records()] == [r.timestamp for r in decoded] == [2_000] * len(SAMPLE)


@pytest.mark.parametrize("control_type", [ControlType.COMMIT, ControlType.ABORT])
def test_control_batch(control_type: ControlType) -> None:
    marker = transaction_marker(control_type, coordinator_epoch=9, timestamp_ms=5_000)
    data = encode_batch(
        [marker], base_offset=77, is_control=True, transactional=True, producer_id=11, producer_epoch=2
    )
    header, [decoded] = spec_decode(data)
    assert header[5] == 0x30  # control | transactional
    assert decoded.key == struct.pack(">hh", 0, control_type)
    assert decoded.value == struct.pack(">hi", 0, 9)
    view = validate_batch(data)
    assert view.is_control and view.is_transactional
    assert view.control_type() is control_type
    assert (view.base_offset, view.last_offset, view.producer_id, view.producer_epoch) == (77, 77, 11, 2)


def test_control_type_edge_cases() -> None:
    future = encode_batch([RecordToWrite(struct.pack(">hh", 0, 99), b"", (), 1)], is_control=True)
    assert validate_batch(future).control_type() is ControlType.UNKNOWN
    kraft = encode_batch([RecordToWrite(struct.pack(">hh", 0, 6), b"", (), 1)], is_control=True)
    assert validate_batch(kraft).control_type() is ControlType.KRAFT_VOTERS
    short = encode_batch([RecordToWrite(b"\x00", b"", (), 1)], is_control=True)
    with pytest.raises(CorruptRecordError):
        validate_batch(short).control_type()
    with pytest.raises(ValueError):
        validate_batch(encode_batch(SAMPLE)).control_type()
    with pytest.raises(ValueError):
        transaction_marker(ControlType.LEADER_CHANGE)


def test_encode_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        encode_batch([])
    with pytest.raises(ValueError):
        encode_batch(SAMPLE, timestamp_type=2)


def test_missing_codec_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode_batch(SAMPLE * 10, compression=Compression.GZIP)
    monkeypatch.setitem(rec._CODEC_CHECKS, Compression.GZIP, lambda: False)
    assert not compression_available(Compression.GZIP)
    with pytest.raises(UnsupportedCompressionTypeError, match="cramjam"):
        encode_batch(SAMPLE, compression=Compression.GZIP)
    view = validate_batch(data)  # headers and CRC need no codec
    assert view.compression is Compression.GZIP and view.record_count == 50
    with pytest.raises(UnsupportedCompressionTypeError):
        list(view.records())


# --- walking a records field ----------------------------------------------------------------------


def _three_batches() -> tuple[bytes, list[bytes]]:
    codecs = (AVAILABLE * 3)[:3]
    parts = [encode_batch(SAMPLE, base_offset=10 * i, compression=codecs[i], producer_id=i) for i in range(3)]
    return b"".join(parts), parts


def test_iter_batches_walks_concatenated_batches() -> None:
    data, parts = _three_batches()
    views = list(iter_batches(data))
    assert [v.base_offset for v in views] == [0, 10, 20]
    assert [v.producer_id for v in views] == [0, 1, 2]
    assert [bytes(v.raw) for v in views] == parts
    assert [r.offset for v in views for r in v.records()] == [
        10 * i + j for i in range(3) for j in range(len(SAMPLE))
    ]


def test_views_are_zero_copy() -> None:
    data, _ = _three_batches()
    buffer = memoryview(data)
    views = list(iter_batches(buffer))
    assert all(v.raw.obj is data for v in views)
    assert list(iter_batches(bytearray(data)))[2].base_offset == 20


def test_empty_input() -> None:
    assert list(iter_batches(b"")) == []
    assert list(iter_batches(b"", strict=True)) == []


def test_truncated_last_batch_is_skipped() -> None:
    data, parts = _three_batches()
    complete = len(parts[0]) + len(parts[1])
    assert len(list(iter_batches(data[:complete], strict=True))) == 2
    for cut in range(complete + 1, len(data)):
        views = list(iter_batches(data[:cut]))
        assert [v.base_offset for v in views] == [0, 10], cut
        with pytest.raises(CorruptRecordError):
            list(iter_batches(data[:cut], strict=True))
    assert len(list(iter_batches(data, strict=True))) == 3


def test_header_and_crc_are_read_without_decompressing() -> None:
    # A batch that claims gzip but whose body is not gzip, with a correct CRC: everything short
    # of records() must work, which shows none of it decompresses.
    batch = bytearray(spec_encode(SAMPLE, base_offset=5, attributes=0))
    batch[22] |= Compression.GZIP
    struct.pack_into(">I", batch, 17, _crc32c(bytes(batch[21:])))
    [view] = iter_batches(batch, strict=True)
    validate_batch(batch)
    assert (view.compression, view.base_offset, view.last_offset, view.record_count) == (
        Compression.GZIP,
        5,
        5 + len(SAMPLE) - 1,
        len(SAMPLE),
    )
    assert rewrite_base_offset(batch, 9)[8:] == bytes(batch[8:])
    with pytest.raises(CorruptRecordError):
        list(view.records())


# --- offsets and validation -----------------------------------------------------------------------


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_rewrite_base_offset_keeps_the_crc(compression: Compression) -> None:
    data = encode_batch(SAMPLE, compression=compression)
    moved = rewrite_base_offset(data, 1 << 40)
    assert moved[8:] == data[8:]  # nothing but the base offset changed
    view = validate_batch(moved)
    assert view.base_offset == 1 << 40
    assert list(view.records()) == _expected(SAMPLE, 1 << 40)
    if compression is Compression.NONE:
        assert spec_decode(moved)[1] == _expected(SAMPLE, 1 << 40)
    # aiokafka checks the CRC on its own too.
    from aiokafka.record.default_records import DefaultRecordBatch

    assert DefaultRecordBatch(moved).validate_crc()
    assert rewrite_base_offset(memoryview(bytearray(moved)), 3) == rewrite_base_offset(data, 3)


def test_rewrite_base_offset_rejects_non_batches() -> None:
    with pytest.raises(CorruptRecordError):
        rewrite_base_offset(b"\x00" * 20, 1)
    bad_magic = bytearray(encode_batch(SAMPLE))
    bad_magic[16] = 1
    with pytest.raises(CorruptRecordError):
        rewrite_base_offset(bad_magic, 1)


def test_corrupted_crc_is_detected() -> None:
    data = encode_batch(SAMPLE)
    for position in (17, 21, 40, 61, len(data) - 1):  # the CRC itself, attributes, header, records
        broken = bytearray(data)
        broken[position] ^= 0x01
        [view] = iter_batches(broken)
        with pytest.raises(CorruptRecordError, match="CRC"):
            view.validate()
        with pytest.raises(CorruptRecordError):
            validate_batch(broken)
        with pytest.raises(CorruptRecordError):
            list(view.records())
    # Outside the CRC: base offset and partition leader epoch.
    for position in (0, 7, 12, 15):
        broken = bytearray(data)
        broken[position] ^= 0x01
        validate_batch(broken)


def test_structural_errors() -> None:
    data = bytearray(encode_batch(SAMPLE))
    wrong_magic = bytearray(data)
    wrong_magic[16] = 1
    with pytest.raises(CorruptRecordError, match="magic"):
        list(iter_batches(wrong_magic))
    short_length = bytearray(data)
    struct.pack_into(">i", short_length, 8, 10)
    with pytest.raises(CorruptRecordError, match="length"):
        list(iter_batches(short_length))
    with pytest.raises(CorruptRecordError):
        RecordBatchView(data + b"\x00")  # a view is exactly one batch
    with pytest.raises(CorruptRecordError):
        RecordBatchView(data[: HEADER_SIZE - 1])
    bad_codec = bytearray(data)
    bad_codec[22] |= 0x07
    with pytest.raises(CorruptRecordError, match="codec"):
        RecordBatchView(bad_codec)
    negative_count = bytearray(data)
    struct.pack_into(">i", negative_count, 57, -1)
    with pytest.raises(CorruptRecordError, match="count"):
        RecordBatchView(negative_count)
    too_many = bytearray(data)
    struct.pack_into(">i", too_many, 57, 1000)
    with pytest.raises(CorruptRecordError):
        list(RecordBatchView(too_many).records(check_crc=False))


# --- properties and garbage -----------------------------------------------------------------------

_bytes_or_none = st.one_of(st.none(), st.binary(max_size=64))
_records = st.lists(
    st.builds(
        RecordToWrite,
        key=_bytes_or_none,
        value=_bytes_or_none,
        headers=st.lists(st.tuples(st.text(max_size=8), _bytes_or_none), max_size=3),
        timestamp_ms=st.integers(min_value=0, max_value=2**40),
    ),
    min_size=1,
    max_size=20,
)


@given(
    records=_records,
    base_offset=st.integers(min_value=0, max_value=2**62),
    compression=st.sampled_from(AVAILABLE),
)
def test_round_trip_property(
    records: list[RecordToWrite], base_offset: int, compression: Compression
) -> None:
    data = encode_batch(records, base_offset=base_offset, compression=compression)
    [view] = iter_batches(data, strict=True)
    assert list(view.records()) == _expected(records, base_offset)
    if view.compression is Compression.NONE:
        assert spec_decode(data)[1] == _expected(records, base_offset)


def _consume(data: bytes | bytearray, check_crc: bool) -> None:
    for view in iter_batches(data):
        repr(view)
        list(view.records(check_crc=check_crc))
        if view.is_control:
            view.control_type(check_crc=check_crc)


def _only_typed_errors(data: bytes | bytearray, check_crc: bool = False) -> None:
    try:
        _consume(data, check_crc)
    except KafkaError as exc:
        assert isinstance(exc, CorruptRecordError | UnsupportedCompressionTypeError), exc


@given(st.binary(max_size=300))
def test_garbage_gives_typed_errors(data: bytes) -> None:
    _only_typed_errors(data)


_header_then_garbage = st.builds(
    lambda attrs, count, body: (
        struct.pack(">qiibIhiqqqhii", 0, 49 + len(body), -1, 2, 0, attrs, 0, 0, 0, -1, -1, -1, count) + body
    ),
    st.integers(min_value=0, max_value=0x3C),
    st.integers(min_value=-2, max_value=2**31 - 1),
    st.binary(max_size=300),
)


@given(_header_then_garbage)
def test_garbage_after_a_valid_header_gives_typed_errors(data: bytes) -> None:
    _only_typed_errors(data)


_valid_batches = [
    encode_batch(SAMPLE * 3, compression=c, is_control=(c is Compression.NONE)) for c in AVAILABLE
]


@settings(max_examples=300)
@given(
    batch=st.sampled_from(_valid_batches),
    flips=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)), min_size=1, max_size=6
    ),
    cut=st.integers(min_value=0, max_value=40),
)
def test_mutated_batches_give_typed_errors(batch: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    broken = bytearray(batch)
    for position, mask in flips:
        broken[position % len(broken)] ^= mask
    _only_typed_errors(broken, check_crc=False)
    _only_typed_errors(broken[: len(broken) - cut], check_crc=True)
    if broken[:21] == batch[:21] and broken != batch:  # framing intact, covered bytes changed
        with pytest.raises(CorruptRecordError):
            _consume(broken, check_crc=True)


# --- interop with kafka-python's record code ------------------------------------------------------


def _kafka_python_codec(compression: Compression) -> bool:
    codec = pytest.importorskip("kafka.codec")
    checks = {
        Compression.NONE: lambda: True,
        Compression.GZIP: codec.has_gzip,
        Compression.SNAPPY: codec.has_snappy,
        Compression.LZ4: codec.has_lz4,
        Compression.ZSTD: codec.has_zstd,
    }
    return bool(checks[compression]())


def _skip_unless_both(compression: Compression) -> None:
    if not compression_available(compression) or not _kafka_python_codec(compression):
        pytest.skip(f"{compression.name} not available to both aioshare and kafka-python")


@pytest.mark.interop
@pytest.mark.parametrize("compression", list(Compression))
def test_kafka_python_reads_our_batches(compression: Compression) -> None:
    _skip_unless_both(compression)
    from kafka.record import MemoryRecords

    data = encode_batch(SAMPLE, base_offset=0, compression=compression, producer_id=3, producer_epoch=1)
    moved = rewrite_base_offset(data, 500)
    batches = list(MemoryRecords(data + moved))
    assert len(batches) == 2
    for batch, base in zip(batches, (0, 500), strict=True):
        assert batch.validate_crc()
        assert (batch.base_offset, batch.producer_id, batch.producer_epoch) == (base, 3, 1)
        assert batch.compression_type == compression
        got = [DecodedRecord(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in batch]
        assert got == _expected(SAMPLE, base)


@pytest.mark.interop
@pytest.mark.parametrize("compression", list(Compression))
def test_we_read_kafka_python_batches(compression: Compression) -> None:
    _skip_unless_both(compression)
    from kafka.record import MemoryRecordsBuilder

    builder = MemoryRecordsBuilder(magic=2, compression_type=int(compression), batch_size=1 << 20)
    for r in SAMPLE:
        builder.append(r.timestamp_ms, r.key, r.value, list(r.headers))
    builder.close()
    data = bytes(builder.buffer())
    view = validate_batch(data)
    assert view.compression is compression
    assert list(view.records()) == _expected(SAMPLE, 0)


@pytest.mark.interop
def test_kafka_python_reads_our_control_batch() -> None:
    from kafka.record import MemoryRecords

    marker = transaction_marker(ControlType.COMMIT, coordinator_epoch=4, timestamp_ms=1)
    data = encode_batch([marker], is_control=True, transactional=True, producer_id=8, producer_epoch=0)
    [batch] = list(MemoryRecords(data))
    assert batch.is_control_batch and batch.is_transactional and batch.validate_crc()
    [record] = list(batch)
    assert record.type == ControlType.COMMIT and record.commit
