"""The records of a v2 record batch, read from its (decompressed) records section.

Kafka's record format (DefaultRecord): a zigzag-varint length, an int8 attributes byte, a
varlong timestamp delta, a varint offset delta, key and value as varint-length bytes (-1 is
null), then a varint count of headers, each a varint-length UTF-8 key and varint-length bytes.

A consumer reads every record it is given, so this is compiled (aioshare/_compiled.py) and
makes one tuple per record and nothing else (``RecordFields``): keys and values are bytes
slices, and a record without headers gets no list.  Malformed input raises CorruptRecordError,
never IndexError or UnicodeDecodeError.
"""

from __future__ import annotations

from aioshare.protocol.errors import CorruptRecordError

__all__ = ["RecordFields", "read_records"]


# One record: (offset, timestamp, key, value, headers), headers None when the record has none.
# A plain tuple, not an object: CPython's collector stops tracking a tuple of untracked values
# (ints, bytes, None) the first time it sees it, so a consumer's records - thousands alive, many
# outliving a young-generation collection - are never scanned or promoted again; as objects
# they were a sixth of the consumer's CPU, spent in the collector.
RecordFields = tuple[int, int, bytes | None, bytes | None, list[tuple[str, bytes | None]] | None]


def _varint(data: bytes, pos: int, end: int, max_bytes: int) -> tuple[int, int]:
    """A zigzag varint of at most ``max_bytes`` bytes at ``pos``: (value, position after it)."""
    result = 0
    shift = 0
    limit = 7 * max_bytes
    while True:
        if pos >= end:
            raise CorruptRecordError("record ends inside a varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift >= limit:
            raise CorruptRecordError(f"varint longer than {max_bytes} bytes")


def _bytes(data: bytes, pos: int, end: int) -> tuple[bytes | None, int]:
    size, pos = _varint(data, pos, end, 5)
    if size < 0:
        if size != -1:
            raise CorruptRecordError(f"negative length {size}")
        return None, pos
    stop = pos + size
    if stop > end:
        raise CorruptRecordError(f"a field of {size} bytes runs past its record")
    return data[pos:stop], stop


def read_records(
    data: bytes, count: int, base_offset: int, first_timestamp: int, log_append_time: int | None
) -> list[RecordFields]:
    """The ``count`` records of ``data`` (a batch's records section, decompressed).

    Offsets are ``base_offset`` plus each record's delta; timestamps ``first_timestamp`` plus
    its delta, or ``log_append_time`` for every record when the batch has that timestamp type.
    """
    out: list[RecordFields] = []
    append = out.append
    pos = 0
    total = len(data)
    for _ in range(count):
        length, pos = _varint(data, pos, total, 5)
        end = pos + length
        if length < 1 or end > total:
            raise CorruptRecordError(f"record length {length} does not fit the {total - pos} bytes left")
        pos += 1  # attributes: unused by Kafka since v2
        ts_delta, pos = _varint(data, pos, end, 10)
        offset_delta, pos = _varint(data, pos, end, 5)
        key, pos = _bytes(data, pos, end)
        value, pos = _bytes(data, pos, end)
        header_count, pos = _varint(data, pos, end, 5)
        headers: list[tuple[str, bytes | None]] | None = None
        if header_count:
            if header_count < 0:
                raise CorruptRecordError(f"negative header count {header_count}")
            headers = []
            for _h in range(header_count):
                name, pos = _bytes(data, pos, end)
                if name is None:
                    raise CorruptRecordError("null header key")
                header_value, pos = _bytes(data, pos, end)
                try:
                    headers.append((name.decode(), header_value))
                except UnicodeDecodeError as exc:
                    raise CorruptRecordError(f"header key is not UTF-8: {exc}") from exc
        if pos != end:
            raise CorruptRecordError(f"record of {length} bytes has {end - pos} bytes left over")
        timestamp = first_timestamp + ts_delta if log_append_time is None else log_append_time
        append((base_offset + offset_delta, timestamp, key, value, headers))
    if pos != total:
        raise CorruptRecordError(f"{total - pos} bytes after the batch's {count} records")
    return out
