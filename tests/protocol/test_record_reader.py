"""record_reader.py: Kafka's record format read from a batch's records section.

Round trips, compression, log-append time and garbage are covered through RecordBatchView in
test_records.py (and against kafka-python there); here each malformed field on its own."""

from __future__ import annotations

import gc

import pytest

from aioshare.protocol.errors import CorruptRecordError
from aioshare.protocol.record_reader import read_records


def _varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte = z & 0x7F
        z >>= 7
        if z:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(data: bytes | None) -> bytes:
    return _varint(-1) if data is None else _varint(len(data)) + data


def _record(
    ts_delta: int = 5,
    offset_delta: int = 0,
    key: bytes | None = b"k",
    value: bytes | None = b"v",
    headers: list[tuple[bytes | None, bytes | None]] | None = None,
    header_count: int | None = None,
    extra: bytes = b"",
) -> bytes:
    pairs = headers or []
    body = b"\x00" + _varint(ts_delta) + _varint(offset_delta) + _field(key) + _field(value)
    body += _varint(len(pairs) if header_count is None else header_count)
    for name, value_ in pairs:
        body += _field(name) + _field(value_)
    body += extra
    return _varint(len(body)) + body


def test_reads_offsets_timestamps_keys_values_and_headers() -> None:
    data = _record(offset_delta=0) + _record(
        ts_delta=7, offset_delta=2, key=None, value=None, headers=[(b"h", b"x"), (b"\xc3\xa9", None)]
    )
    first, second = read_records(data, 2, 100, 1_000, None)
    assert first == (100, 1_005, b"k", b"v", None)  # no headers: no list
    assert second == (102, 1_007, None, None, [("h", b"x"), ("é", None)])
    assert [r[1] for r in read_records(data, 2, 0, 1_000, 9_999)] == [9_999, 9_999]  # log-append time


def test_records_without_headers_leave_the_collector_alone() -> None:
    # Why records are plain tuples: once the collector has seen one it stops tracking it.
    records = read_records(_record() + _record(offset_delta=1), 2, 0, 0, None)
    gc.collect()
    assert [type(r) is tuple and not gc.is_tracked(r) for r in records] == [True, True]


def test_no_records() -> None:
    assert read_records(b"", 0, 0, 0, None) == []


@pytest.mark.parametrize(
    ("data", "count", "message"),
    [
        (_record()[:-1], 1, "does not fit"),  # cut short
        (_record(), 2, "inside a varint"),  # fewer records than the header counts
        (_record() + b"\x00", 1, "bytes after"),  # more bytes than the counted records
        (b"\x80" * 6, 1, "longer than 5 bytes"),  # a varint that never ends
        (_record(header_count=-1), 1, "negative header count"),
        (_record(headers=[(None, b"x")]), 1, "null header key"),
        (_record(headers=[(b"\xff", b"x")]), 1, "not UTF-8"),
        (_record(extra=b"\x00"), 1, "left over"),  # the record's length counts a stray byte
        (_varint(3) + b"\x00\x00\x00", 1, "inside a varint"),  # the fields run past the length
        (_varint(0), 1, "does not fit"),  # an empty record
    ],
)
def test_malformed_records_raise_corrupt_record_error(data: bytes, count: int, message: str) -> None:
    with pytest.raises(CorruptRecordError, match=message):
        read_records(data, count, 0, 0, None)


def test_a_field_longer_than_its_record_is_corrupt() -> None:
    body = b"\x00" + _varint(0) + _varint(0) + _varint(50) + b"k"
    with pytest.raises(CorruptRecordError, match="runs past its record"):
        read_records(_varint(len(body)) + body, 1, 0, 0, None)
    body = b"\x00" + _varint(0) + _varint(0) + _varint(-2)
    with pytest.raises(CorruptRecordError, match="negative length -2"):
        read_records(_varint(len(body)) + body, 1, 0, 0, None)
