"""Request/response framing: size prefixes, header versions, and a sans-IO frame splitter."""

from __future__ import annotations

import struct
from typing import NamedTuple

from aioshare.protocol._codec import ApiMessage, Buffer
from aioshare.protocol.errors import MalformedMessage, ProtocolError
from aioshare.protocol.messages import REQUESTS, RESPONSES, RequestHeader, ResponseHeader

API_VERSIONS_KEY = 18
DEFAULT_MAX_FRAME = 100 * 1024 * 1024  # Kafka's socket.request.max.bytes default

_SIZE = struct.Struct(">i")
_KEY_VERSION_CORRELATION = struct.Struct(">hhi")


class UnsupportedRequest(ProtocolError):
    """A request whose API key or version this side does not implement.

    Carries what could be read of the header so a broker can still answer (ApiVersions) or
    log which client asked for what.
    """

    def __init__(self, message: str, api_key: int, api_version: int, correlation_id: int) -> None:
        super().__init__(message)
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id


class FrameTooLarge(ProtocolError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


def request_header_version(api_key: int, api_version: int) -> int:
    cls = REQUESTS.get(api_key)
    return 2 if cls is not None and cls.is_flexible(api_version) else 1


def response_header_version(api_key: int, api_version: int) -> int:
    # ApiVersions responses always use header v0, so a client that does not yet know the
    # broker's versions can still read the answer whatever version it asked for.
    if api_key == API_VERSIONS_KEY:
        return 0
    cls = RESPONSES.get(api_key)
    return 1 if cls is not None and cls.is_flexible(api_version) else 0


def encode_request(message: ApiMessage, version: int, correlation_id: int, client_id: str | None) -> bytes:
    """A complete frame: size prefix, request header, body."""
    out = bytearray(4)
    header = RequestHeader(
        request_api_key=message.API_KEY,
        request_api_version=version,
        correlation_id=correlation_id,
        client_id=client_id,
    )
    header.encode_into(out, request_header_version(message.API_KEY, version))
    message.encode_into(out, version)
    _SIZE.pack_into(out, 0, len(out) - 4)
    return bytes(out)


def encode_response(message: ApiMessage, version: int, correlation_id: int) -> bytes:
    out = bytearray(4)
    ResponseHeader(correlation_id=correlation_id).encode_into(
        out, response_header_version(message.API_KEY, version)
    )
    message.encode_into(out, version)
    _SIZE.pack_into(out, 0, len(out) - 4)
    return bytes(out)


class DecodedRequest(NamedTuple):
    header: RequestHeader
    body: ApiMessage


def peek_request_header(frame: Buffer) -> tuple[int, int, int]:
    """(api_key, api_version, correlation_id) of a request frame without the size prefix."""
    if len(frame) < _KEY_VERSION_CORRELATION.size:
        raise MalformedMessage(f"request frame of {len(frame)} bytes is shorter than a header")
    key, version, correlation = _KEY_VERSION_CORRELATION.unpack_from(frame, 0)
    return int(key), int(version), int(correlation)


def decode_request(frame: Buffer) -> DecodedRequest:
    """Decodes a request frame (without its size prefix), as a broker receives it."""
    api_key, api_version, correlation_id = peek_request_header(frame)
    cls = REQUESTS.get(api_key)
    if cls is None:
        raise UnsupportedRequest(f"unknown API key {api_key}", api_key, api_version, correlation_id)
    if not cls.MIN_VERSION <= api_version <= cls.MAX_VERSION:
        raise UnsupportedRequest(
            f"{cls.__name__} v{api_version} is outside {cls.MIN_VERSION}-{cls.MAX_VERSION}",
            api_key,
            api_version,
            correlation_id,
        )
    view = frame if isinstance(frame, memoryview) else memoryview(frame)
    header, pos = RequestHeader.decode_from(view, 0, request_header_version(api_key, api_version))
    body, end = cls.decode_from(view, pos, api_version)
    if end != len(view):
        raise MalformedMessage(f"{cls.__name__} v{api_version}: {len(view) - end} bytes left over")
    return DecodedRequest(header, body)


def peek_correlation_id(frame: Buffer) -> int:
    if len(frame) < 4:
        raise MalformedMessage("response frame shorter than a correlation id")
    return int(_SIZE.unpack_from(frame, 0)[0])


def decode_response(frame: Buffer, api_key: int, api_version: int, *, strict: bool = True) -> ApiMessage:
    """Decodes a response frame (without its size prefix) for a request the caller sent.

    strict=False ignores bytes after the body, as Kafka's Java client and librdkafka do: a
    client must stay readable against brokers that pad responses (librdkafka's mock cluster
    adds a byte after some flexible responses).
    """
    cls = RESPONSES.get(api_key)
    if cls is None:
        raise ProtocolError(f"no response type for API key {api_key}")
    view = frame if isinstance(frame, memoryview) else memoryview(frame)
    _, pos = ResponseHeader.decode_from(view, 0, response_header_version(api_key, api_version))
    body, end = cls.decode_from(view, pos, api_version)
    if strict and end != len(view):
        raise MalformedMessage(f"{cls.__name__} v{api_version}: {len(view) - end} bytes left over")
    return body


class FrameSplitter:
    """Splits a byte stream into size-prefixed frames. Feed it bytes; take whole frames.

    A declared size over `max_frame` raises FrameTooLarge before any of the body is buffered,
    so a peer cannot make us allocate what it claims.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max_frame = max_frame

    def feed(self, data: Buffer) -> list[bytes]:
        self._buffer += data
        frames: list[bytes] = []
        buf = self._buffer
        start = 0
        end = len(buf)
        while end - start >= 4:
            (size,) = _SIZE.unpack_from(buf, start)
            if size < 0 or size > self._max_frame:
                self._buffer = bytearray()
                raise (
                    FrameTooLarge(size, self._max_frame)
                    if size >= 0
                    else MalformedMessage(f"negative frame size {size}")
                )
            if end - start - 4 < size:
                break
            frames.append(bytes(buf[start + 4 : start + 4 + size]))
            start += 4 + size
        if start:
            del buf[:start]
        return frames

    @property
    def buffered(self) -> int:
        return len(self._buffer)
