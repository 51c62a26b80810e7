"""Primitives and the base class behind the generated message codecs.

The generated module (`messages.py`) specialises one encoder and one decoder per struct and
version; it calls these helpers only for the variable-length wire types (strings, bytes,
varints, tagged-field sections). Fixed-width runs of fields are packed with one precompiled
`struct.Struct` each by the generated code itself.

Decoders read from a `memoryview` and raise `IndexError`/`struct.error`/`_Truncated` deep
inside; `ApiMessage.decode*` turns all of them into one typed `MalformedMessage`.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from typing import Any, ClassVar, Self

import msgspec

from aioshare.protocol.errors import MalformedMessage, ProtocolError, UnsupportedVersionForField

Buffer = bytes | bytearray | memoryview
Encoder = Callable[[Any, bytearray], None]
Decoder = Callable[[memoryview, int], tuple[Any, int]]

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_UUID_CACHE_LIMIT = 4096
_uuid_cache: dict[bytes, uuid.UUID] = {}

NIL_UUID = uuid.UUID(int=0)


class _Truncated(Exception):
    """Raised by helpers when a length points past the end of the buffer."""


# --------------------------------------------------------------------------- varints


def write_uvarint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ProtocolError(f"unsigned varint cannot hold {value}")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def read_uvarint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 28:
            raise MalformedMessage("unsigned varint longer than 5 bytes")


# --------------------------------------------------------------------------- strings and bytes


def _utf8(value: str) -> bytes:
    return value.encode("utf-8")


def w_str(out: bytearray, value: str) -> None:
    data = _utf8(value)
    if len(data) > 0x7FFF:
        raise ProtocolError("string longer than 32767 bytes")
    out += _I16.pack(len(data))
    out += data


def w_nstr(out: bytearray, value: str | None) -> None:
    if value is None:
        out += b"\xff\xff"
    else:
        w_str(out, value)


def w_cstr(out: bytearray, value: str) -> None:
    data = _utf8(value)
    # Kafka caps every string at 32767 bytes, compact or not; a broker rejects longer ones.
    if len(data) > 0x7FFF:
        raise ProtocolError("string longer than 32767 bytes")
    write_uvarint(out, len(data) + 1)
    out += data


def w_cnstr(out: bytearray, value: str | None) -> None:
    if value is None:
        out.append(0)
    else:
        w_cstr(out, value)


def w_bytes(out: bytearray, value: Buffer) -> None:
    out += _I32.pack(len(value))
    out += value


def w_nbytes(out: bytearray, value: Buffer | None) -> None:
    if value is None:
        out += b"\xff\xff\xff\xff"
    else:
        w_bytes(out, value)


def w_cbytes(out: bytearray, value: Buffer) -> None:
    write_uvarint(out, len(value) + 1)
    out += value


def w_cnbytes(out: bytearray, value: Buffer | None) -> None:
    if value is None:
        out.append(0)
    else:
        w_cbytes(out, value)


def _take(buf: memoryview, pos: int, size: int) -> memoryview:
    end = pos + size
    if end > len(buf):
        raise _Truncated(f"field of {size} bytes at {pos} runs past the end ({len(buf)})")
    return buf[pos:end]


def r_str(buf: memoryview, pos: int) -> tuple[str, int]:
    (size,) = _I16.unpack_from(buf, pos)
    if size < 0:
        raise MalformedMessage("null in a non-nullable string")
    return str(_take(buf, pos + 2, size), "utf-8"), pos + 2 + size


def r_nstr(buf: memoryview, pos: int) -> tuple[str | None, int]:
    (size,) = _I16.unpack_from(buf, pos)
    if size < 0:
        return None, pos + 2
    return str(_take(buf, pos + 2, size), "utf-8"), pos + 2 + size


def r_cstr(buf: memoryview, pos: int) -> tuple[str, int]:
    size, pos = read_uvarint(buf, pos)
    if size == 0:
        raise MalformedMessage("null in a non-nullable compact string")
    size -= 1
    if size > 0x7FFF:
        raise MalformedMessage(f"compact string of {size} bytes exceeds 32767")
    return str(_take(buf, pos, size), "utf-8"), pos + size


def r_cnstr(buf: memoryview, pos: int) -> tuple[str | None, int]:
    size, pos = read_uvarint(buf, pos)
    if size == 0:
        return None, pos
    size -= 1
    if size > 0x7FFF:
        raise MalformedMessage(f"compact string of {size} bytes exceeds 32767")
    return str(_take(buf, pos, size), "utf-8"), pos + size


def r_bytes(buf: memoryview, pos: int) -> tuple[bytes, int]:
    (size,) = _I32.unpack_from(buf, pos)
    if size < 0:
        raise MalformedMessage("null in non-nullable bytes")
    return bytes(_take(buf, pos + 4, size)), pos + 4 + size


def r_nbytes(buf: memoryview, pos: int) -> tuple[bytes | None, int]:
    (size,) = _I32.unpack_from(buf, pos)
    if size < 0:
        return None, pos + 4
    return bytes(_take(buf, pos + 4, size)), pos + 4 + size


def r_cbytes(buf: memoryview, pos: int) -> tuple[bytes, int]:
    size, pos = read_uvarint(buf, pos)
    if size == 0:
        raise MalformedMessage("null in non-nullable compact bytes")
    size -= 1
    return bytes(_take(buf, pos, size)), pos + size


def r_cnbytes(buf: memoryview, pos: int) -> tuple[bytes | None, int]:
    size, pos = read_uvarint(buf, pos)
    if size == 0:
        return None, pos
    size -= 1
    return bytes(_take(buf, pos, size)), pos + size


# Records stay a zero-copy view of the frame: a fetch response is mostly record data and the
# consumer decodes it lazily, batch by batch.
def r_records(buf: memoryview, pos: int) -> tuple[memoryview, int]:
    (size,) = _I32.unpack_from(buf, pos)
    if size < 0:
        raise MalformedMessage("null in non-nullable records")
    return _take(buf, pos + 4, size), pos + 4 + size


def r_nrecords(buf: memoryview, pos: int) -> tuple[memoryview | None, int]:
    (size,) = _I32.unpack_from(buf, pos)
    if size < 0:
        return None, pos + 4
    return _take(buf, pos + 4, size), pos + 4 + size


def r_crecords(buf: memoryview, pos: int) -> tuple[memoryview, int]:
    size, pos = read_uvarint(buf, pos)
    if size == 0:
        raise MalformedMessage("null in non-nullable compact records")
    size -= 1
    return _take(buf, pos, size), pos + size


def r_cnrecords(buf: memoryview, pos: int) -> tuple[memoryview | None, int]:
    size, pos = read_uvarint(buf, pos)
    if size == 0:
        return None, pos
    size -= 1
    return _take(buf, pos, size), pos + size


# --------------------------------------------------------------------------- uuid and arrays


def make_uuid(raw: bytes) -> uuid.UUID:
    # Topic ids repeat in every response; constructing uuid.UUID is the costly part.
    found = _uuid_cache.get(raw)
    if found is None:
        if len(_uuid_cache) >= _UUID_CACHE_LIMIT:
            _uuid_cache.clear()
        found = _uuid_cache[raw] = uuid.UUID(bytes=raw)
    return found


def array_len(buf: memoryview, pos: int) -> tuple[int, int]:
    (size,) = _I32.unpack_from(buf, pos)
    pos += 4
    if size > len(buf) - pos:
        raise MalformedMessage(f"array of {size} elements in {len(buf) - pos} bytes")
    return size, pos


def carray_len(buf: memoryview, pos: int) -> tuple[int, int]:
    size, pos = read_uvarint(buf, pos)
    size -= 1
    if size > len(buf) - pos:
        raise MalformedMessage(f"array of {size} elements in {len(buf) - pos} bytes")
    return size, pos


def w_array_len(out: bytearray, value: list[Any] | None) -> None:
    out += _I32.pack(-1 if value is None else len(value))


def w_carray_len(out: bytearray, value: list[Any] | None) -> None:
    write_uvarint(out, 0 if value is None else len(value) + 1)


def skip_tagged(buf: memoryview, pos: int) -> int:
    """Skips a whole tagged-field section whose fields this version does not know."""
    count, pos = read_uvarint(buf, pos)
    for _ in range(count):
        _, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        _take(buf, pos, size)
        pos += size
    return pos


def w_tagged(out: bytearray, tag: int, data: bytearray) -> None:
    write_uvarint(out, tag)
    write_uvarint(out, len(data))
    out += data


def null_error(field: str) -> ProtocolError:
    return ProtocolError(f"{field} is null, but the version being encoded does not allow null")


def version_error(field: str) -> UnsupportedVersionForField:
    return UnsupportedVersionForField(f"{field} has a non-default value, which this version cannot carry")


# --------------------------------------------------------------------------- base class


class ApiMessage(msgspec.Struct, kw_only=True, gc=False):
    """Base of every generated request, response and header class.

    gc=False: messages are trees (no reference cycles), and tracking the thousands of small
    structs a large fetch decodes into was the largest single cost of decoding.
    """

    API_KEY: ClassVar[int] = -1
    MIN_VERSION: ClassVar[int] = 0
    MAX_VERSION: ClassVar[int] = 0
    FLEXIBLE_MIN: ClassVar[int] = 1 << 15
    _encoders: ClassVar[dict[int, Encoder]] = {}
    _decoders: ClassVar[dict[int, Decoder]] = {}

    def encode(self, version: int) -> bytes:
        out = bytearray()
        self.encode_into(out, version)
        return bytes(out)

    def encode_into(self, out: bytearray, version: int) -> None:
        encoder = self._encoders.get(version)
        if encoder is None:
            raise ProtocolError(f"{type(self).__name__} has no version {version}")
        try:
            encoder(self, out)
        except UnsupportedVersionForField as exc:
            raise UnsupportedVersionForField(f"{type(self).__name__} v{version}: {exc}") from None
        except (AttributeError, TypeError, struct.error, UnicodeEncodeError, OverflowError) as exc:
            raise ProtocolError(f"cannot encode {type(self).__name__} v{version}: {exc}") from exc

    @classmethod
    def decode(cls, data: Buffer, version: int) -> Self:
        view = data if isinstance(data, memoryview) else memoryview(data)
        message, pos = cls.decode_from(view, 0, version)
        if pos != len(view):
            raise MalformedMessage(f"{cls.__name__} v{version}: {len(view) - pos} bytes left over")
        return message

    @classmethod
    def decode_from(cls, data: Buffer, pos: int, version: int) -> tuple[Self, int]:
        decoder = cls._decoders.get(version)
        if decoder is None:
            raise ProtocolError(f"{cls.__name__} has no version {version}")
        view = data if isinstance(data, memoryview) else memoryview(data)
        try:
            message, end = decoder(view, pos)
        except MalformedMessage:
            raise
        except (IndexError, struct.error, _Truncated, UnicodeDecodeError, ValueError, TypeError) as exc:
            raise MalformedMessage(f"{cls.__name__} v{version}: {exc}") from exc
        return message, end

    @classmethod
    def is_flexible(cls, version: int) -> bool:
        return version >= cls.FLEXIBLE_MIN
