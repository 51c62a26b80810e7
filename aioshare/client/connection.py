"""One TCP (optionally TLS) connection to one Kafka broker.

Requests are pipelined: each gets a correlation id and a future, and responses are matched by
that id, so any number may be in flight and they may complete in any order. Bytes arrive
through asyncio.Protocol callbacks, so no task reads the socket.

The one task a connection may own is SASL re-authentication (KIP-368): when the broker limits
the session (`connections.max.reauth.ms`, credential lifetimes) it closes the connection at the
first request it reads after the session ended, so before then a timer starts a task that
closes the write gate (new requests queue behind it, in order), waits for the requests in
flight, runs SaslHandshake + SaslAuthenticate again, and opens the gate. Closing the
connection cancels the timer and that task and waits for it.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import random
import ssl as _ssl
import struct
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal, TypeVar, cast, overload

from aioshare.protocol._codec import ApiMessage
from aioshare.protocol.errors import (
    ErrorCode,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MalformedMessage,
    ProtocolError,
    UnsupportedVersionError,
    raise_for_code,
)
from aioshare.protocol.framing import (
    DEFAULT_MAX_FRAME,
    FrameSplitter,
    decode_response,
    encode_request,
    peek_correlation_id,
)
from aioshare.protocol.messages import (
    REQUESTS,
    ApiVersionsRequest,
    ApiVersionsResponse,
)

if TYPE_CHECKING:
    from aioshare.client.sasl import SaslConfig

__all__ = ["Connection", "RequestNotSentError"]

log = logging.getLogger(__name__)


class RequestNotSentError(KafkaConnectionError):
    """The connection had already failed when the request was to be written: the broker never
    saw it (unlike a KafkaConnectionError for a request in flight, which it may have applied)."""


R = TypeVar("R", bound=ApiMessage)

# v4 is what brokers since 3.9 answer; v5 only adds cluster-id checks we do not use, and
# starting higher than most brokers know costs every connection an extra round trip.
_API_VERSIONS_FIRST: Final = min(4, ApiVersionsRequest.MAX_VERSION)
_API_VERSIONS_KEY: Final = ApiVersionsRequest.API_KEY
_SOFTWARE_NAME: Final = "aioshare"


def _software_version() -> str:
    # From the installed distribution rather than aioshare.__version__, which an editable
    # install made before the package had an __init__ does not expose.
    try:
        return importlib.metadata.version("aioshare")
    except importlib.metadata.PackageNotFoundError:
        return "0"


# Late responses to requests that timed out or were cancelled are dropped by id. Brokers answer
# in order, so ids stuck here for long belong to requests the broker will never answer; the cap
# only bounds memory on a connection that sees a great many timeouts.
_ABANDONED_LIMIT: Final = 1024
_CLOSE_TIMEOUT: Final = 5.0
# Java's client re-authenticates at a random point between 85% and 95% of the session lifetime:
# the margin covers latency and clock drift, the jitter keeps a client's many connections from
# re-authenticating all at once.
_REAUTH_WINDOW: Final = (0.85, 0.95)
# ... but at least this long before the end: Kafka reads a connection's requests one at a time,
# so a request written just before the re-authentication closes the gate can sit behind a
# long-polling ShareFetch (MaxWaitMs, 0.5 s by default) and reach the broker after the session
# ended - which closes the connection and, with it, the share session and its locks.  Seen on
# real Kafka with 3 s sessions under load.  Short sessions re-authenticate at half their life.
_REAUTH_LEAD: Final = 1.0
_ERROR_CODE = struct.Struct(">h")


def reauth_delay(lifetime: float, fraction: float) -> float:
    """Seconds into a SASL session of ``lifetime`` seconds at which to re-authenticate:
    ``fraction`` of it (Java's 85-95%), but at least ``_REAUTH_LEAD`` before its end, and not
    before half of it."""
    return max(lifetime / 2, min(lifetime * fraction, lifetime - _REAUTH_LEAD))


class _Wire(asyncio.Protocol):
    """The transport side: splits bytes into frames and handles write flow control."""

    def __init__(self, conn: Connection, max_frame: int) -> None:
        self._conn = conn
        self._splitter = FrameSplitter(max_frame)
        self.transport: asyncio.Transport | None = None
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._splitter.feed(data)
        except ProtocolError as exc:
            # The size prefix is unusable, so no later frame boundary can be trusted either.
            self._conn._fail(KafkaConnectionError(f"{self._conn}: {exc}"))
            return
        for frame in frames:
            self._conn._on_frame(frame)

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost does the rest

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"{self._conn}: connection lost" + (f" ({exc})" if exc else "")
        error = KafkaConnectionError(reason)
        # Kept as the cause: an ssl.SSLError here is the broker refusing the TLS session (with
        # TLS 1.3 it checks our certificate after our side of the handshake is done).
        error.__cause__ = exc
        self._conn._fail(error)
        self._wake_writers(KafkaConnectionError(reason))
        if not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_writers(None)

    def _wake_writers(self, exc: Exception | None) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)

    async def drain(self) -> None:
        if not self._paused:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        await waiter


class Connection:
    """A connection to one broker. Create with `await Connection.open(...)`."""

    def __init__(self, host: str, port: int, *, client_id: str | None, request_timeout: float) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.request_timeout = request_timeout
        self._wire: _Wire | None = None
        # correlation id -> the future that gets the response frame (decoded by the sender)
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._abandoned: dict[int, None] = {}
        self._correlation = 0
        self._api_versions: dict[int, tuple[int, int]] = {}
        self._features: dict[str, int] = {}
        self._failure: KafkaConnectionError | None = None
        # KIP-368 re-authentication. The gate is held only while re-authenticating; every other
        # request passes through it, and asyncio.Lock queues waiters first come, first served.
        self._sasl: SaslConfig | None = None
        self._gate = asyncio.Lock()
        self._session_ends: float | None = None  # loop time; None = the session never ends
        self._reauth_timer: asyncio.TimerHandle | None = None
        self._reauth_task: asyncio.Task[None] | None = None
        self._settled: asyncio.Event | None = None  # set once nothing is in flight (while awaited)

    def __repr__(self) -> str:
        return f"Connection({self.host}:{self.port})"

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        client_id: str | None = "aioshare",
        ssl: _ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        sasl: SaslConfig | None = None,
        request_timeout: float = 30.0,
        connect_timeout: float | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> Connection:
        """Connects, negotiates API versions, then authenticates if `sasl` is given.

        `connect_timeout` (default: `request_timeout`) bounds the TCP and TLS handshakes.
        """
        conn = cls(host, port, client_id=client_id, request_timeout=request_timeout)
        loop = asyncio.get_running_loop()
        wire = conn._wire = _Wire(conn, max_frame)
        try:
            async with asyncio.timeout(connect_timeout if connect_timeout is not None else request_timeout):
                await loop.create_connection(
                    lambda: wire,
                    host,
                    port,
                    ssl=ssl,
                    server_hostname=server_hostname if ssl is not None else None,
                )
        except TimeoutError:
            raise KafkaTimeoutError(f"{conn}: connect timed out") from None
        except OSError as exc:  # includes ssl.SSLError
            raise KafkaConnectionError(f"{conn}: cannot connect: {exc}") from exc
        try:
            await conn._negotiate_versions()
            if sasl is not None:
                await conn._authenticate(sasl)
        except BaseException:
            await conn.close()
            raise
        return conn

    # ----------------------------------------------------------------------------- state

    @property
    def closed(self) -> bool:
        return self._failure is not None

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered (timed-out ones excluded)."""
        return len(self._pending)

    @property
    def api_versions(self) -> Mapping[int, tuple[int, int]]:
        """The broker's (min, max) version per API key, as its ApiVersions response said."""
        return MappingProxyType(self._api_versions)

    @property
    def finalized_features(self) -> Mapping[str, int]:
        """The cluster's finalized feature levels (e.g. ``share.version``) as the broker's
        ApiVersions response listed them (v3+; empty before, or from a broker that lists none)."""
        return MappingProxyType(self._features)

    def version_for(self, api_key: int, max_supported: int | None = None) -> int:
        """The highest version of `api_key` both this codec and the broker support.

        Raises UnsupportedVersionError when the ranges do not meet. A schema whose latest
        version is marked unstable is used only up to the version before it.
        """
        cls = REQUESTS.get(api_key)
        if cls is None:
            raise UnsupportedVersionError(f"aioshare has no codec for API key {api_key}")
        ours = cls.MAX_VERSION - 1 if getattr(cls, "LATEST_VERSION_UNSTABLE", False) else cls.MAX_VERSION
        if max_supported is not None:
            ours = min(ours, max_supported)
        theirs = self._api_versions.get(api_key)
        name = cls.__name__.removesuffix("Request")
        if theirs is None:
            raise UnsupportedVersionError(f"{self} does not support {name} (API key {api_key})")
        low, high = max(cls.MIN_VERSION, theirs[0]), min(ours, theirs[1])
        if low > high:
            raise UnsupportedVersionError(
                f"{name}: broker supports v{theirs[0]}-{theirs[1]}, aioshare v{cls.MIN_VERSION}-{ours}"
            )
        return high

    # ----------------------------------------------------------------------------- requests

    # `timeout` is Kafka's per-request timeout with a connection-wide default, turned into
    # KafkaTimeoutError; an enclosing asyncio.timeout works too (the id is abandoned either way).
    @overload
    async def send(
        self,
        request: ApiMessage,
        version: int | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> ApiMessage: ...

    @overload
    async def send(
        self,
        request: ApiMessage,
        version: int | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        response_type: type[R],
    ) -> R: ...

    @overload
    async def send(
        self,
        request: ApiMessage,
        version: int | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        expect_response: Literal[False],
    ) -> None: ...

    async def send(
        self,
        request: ApiMessage,
        version: int | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        response_type: type[ApiMessage] | None = None,
        expect_response: bool = True,
    ) -> ApiMessage | None:
        """Sends `request` and returns the decoded response.

        `version` defaults to `version_for(request.API_KEY)`; `timeout` to `request_timeout`.
        On timeout raises KafkaTimeoutError and the connection stays open: the late response
        is recognised by its correlation id and dropped. `expect_response=False` is for
        requests the broker never answers (Produce with acks=0); it returns once the frame is
        handed to the transport. `response_type` only narrows the static type (checked).
        """
        if version is None:
            version = self.version_for(request.API_KEY)
        limit = self.request_timeout if timeout is None else timeout
        if not expect_response:
            try:
                async with asyncio.timeout(limit):
                    await self._write(request, version, self._next_correlation_id())
            except TimeoutError:
                raise KafkaTimeoutError(f"{self}: timed out writing {type(request).__name__}") from None
            return None
        frame = await self._request_frame(request, version, limit)
        # librdkafka's mock cluster pads some flexible responses (Metadata v9+,
        # ShareGroupHeartbeat v1) with a trailing byte; Java and librdkafka ignore it.
        response = decode_response(frame, request.API_KEY, version, strict=False)
        if response_type is not None and not isinstance(response, response_type):
            raise TypeError(f"expected {response_type.__name__}, got {type(response).__name__}")
        return response

    async def _request_frame(
        self, request: ApiMessage, version: int, limit: float, *, gated: bool = True
    ) -> bytes:
        """Sends a request and returns its response frame undecoded (still with its header)."""
        correlation_id = self._next_correlation_id()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(limit):
                # Registered before writing: a fast broker may answer before drain returns.
                await self._write(request, version, correlation_id, future, gated=gated)
                return await future
        except TimeoutError:
            raise KafkaTimeoutError(
                f"{self}: no response to {type(request).__name__} v{version} within {limit}s"
            ) from None
        finally:
            if not future.done() or future.cancelled():
                self._abandon(correlation_id)

    async def _write(
        self,
        request: ApiMessage,
        version: int,
        correlation_id: int,
        pending: asyncio.Future[bytes] | None = None,
        *,
        gated: bool = True,
    ) -> None:
        if gated:
            # Waits while a re-authentication holds the gate: Kafka reads nothing but the SASL
            # exchange until it ends. Uncontended, this returns without suspending.
            async with self._gate:
                pass
        if self._failure is not None:
            raise RequestNotSentError(str(self._failure))
        wire = self._wire
        assert wire is not None and wire.transport is not None
        # Encoding first: a message the version cannot carry fails without touching the stream.
        frame = encode_request(request, version, correlation_id, self.client_id)
        if pending is not None:
            self._pending[correlation_id] = pending
        wire.transport.write(frame)
        await wire.drain()

    def _next_correlation_id(self) -> int:
        while True:
            self._correlation = (self._correlation + 1) & 0x7FFFFFFF
            cid = self._correlation
            if cid not in self._pending and cid not in self._abandoned:
                return cid

    def _abandon(self, correlation_id: int) -> None:
        if self._pending.pop(correlation_id, None) is None:
            return
        self._abandoned[correlation_id] = None
        if len(self._abandoned) > _ABANDONED_LIMIT:
            del self._abandoned[next(iter(self._abandoned))]
        self._check_settled()

    def _check_settled(self) -> None:
        if self._settled is not None and not self._pending:
            self._settled.set()

    def _on_frame(self, frame: bytes) -> None:
        try:
            correlation_id = peek_correlation_id(frame)
        except MalformedMessage as exc:
            self._fail(KafkaConnectionError(f"{self}: {exc}"))
            return
        pending = self._pending.pop(correlation_id, None)
        if pending is None:
            if correlation_id in self._abandoned:
                del self._abandoned[correlation_id]
                return
            # Not something we asked for: the stream is out of step with our requests.
            self._fail(KafkaConnectionError(f"{self}: response with unknown correlation id {correlation_id}"))
            return
        if not pending.done():
            pending.set_result(frame)
        self._check_settled()

    # ----------------------------------------------------------------------------- ApiVersions

    async def _negotiate_versions(self) -> None:
        version = _API_VERSIONS_FIRST
        request = ApiVersionsRequest(
            client_software_name=_SOFTWARE_NAME, client_software_version=_software_version()
        )
        while True:
            frame = await self._request_frame(request, version, self.request_timeout)
            response = _decode_api_versions(frame, version)
            error_code = response.error_code if response is not None else _peek_error_code(frame)
            if error_code == ErrorCode.UNSUPPORTED_VERSION and version > 0:
                # Brokers answer an unknown version with a v0 body listing their own range.
                # librdkafka's mock cluster sends a body no version decodes: fall back to v0.
                advertised = 0
                if response is not None:
                    for entry in response.api_keys:
                        if entry.api_key == _API_VERSIONS_KEY:
                            advertised = entry.max_version
                version = max(0, min(advertised, version - 1))
                continue
            if response is None:
                raise MalformedMessage(f"{self}: undecodable ApiVersions v{version} response")
            raise_for_code(response.error_code)
            self._api_versions = {e.api_key: (e.min_version, e.max_version) for e in response.api_keys}
            self._features = {f.name: f.max_version_level for f in response.finalized_features}
            return

    # ----------------------------------------------------------------------------- SASL

    async def _authenticate(self, sasl: SaslConfig) -> None:
        """Runs the SASL exchange and schedules the next one if the broker limits the session."""
        from aioshare.client.sasl import authenticate

        loop = asyncio.get_running_loop()
        # The broker starts the session once it has checked our last message, after this
        # point: a session timed from here ends a little before the broker's does, never after.
        began = loop.time()
        lifetime_ms = await authenticate(self, sasl, send=self._send_past_gate)
        self._sasl = sasl
        if lifetime_ms <= 0 or self._failure is not None:
            self._session_ends = None
            return
        lifetime = lifetime_ms / 1000
        self._session_ends = began + lifetime
        at = began + reauth_delay(lifetime, random.uniform(*_REAUTH_WINDOW))
        log.debug("%s: SASL session of %d ms; re-authenticating in %.3f s", self, lifetime_ms, at - began)
        self._reauth_timer = loop.call_at(at, self._start_reauth)

    async def _send_past_gate(self, request: ApiMessage, version: int) -> ApiMessage:
        """send() for the SASL exchange: it runs while the re-authentication holds the gate."""
        frame = await self._request_frame(request, version, self.request_timeout, gated=False)
        return decode_response(frame, request.API_KEY, version, strict=False)

    def _start_reauth(self) -> None:
        self._reauth_timer = None
        if self._failure is None:
            self._reauth_task = asyncio.get_running_loop().create_task(
                self._reauthenticate(), name=f"aioshare-reauth-{self.host}:{self.port}"
            )

    async def _reauthenticate(self) -> None:
        sasl = self._sasl
        assert sasl is not None
        try:
            async with self._gate:
                await self._wait_in_flight()
                await self._authenticate(sasl)
        except Exception as exc:
            # Half an exchange leaves the broker expecting SASL bytes: the connection is done
            # for. A reconnect authenticates afresh and reports bad credentials as such.
            error = KafkaConnectionError(f"{self}: re-authentication failed: {exc}")
            error.__cause__ = exc
            self._fail(error)
        finally:
            self._reauth_task = None

    async def _wait_in_flight(self) -> None:
        """Until every request written before the gate closed is answered or given up.

        Kafka reads a connection's requests one at a time, in order, so the exchange could go
        out behind them; waiting keeps their answers out of it. Not past the session's end,
        though: holding every new request for a slow one would gain nothing, since the broker
        still reads the handshake after it, and takes it even once the session has ended.
        """
        if not self._pending:
            return
        settled = self._settled = asyncio.Event()
        ends = self._session_ends
        limit = None if ends is None else max(0.0, ends - asyncio.get_running_loop().time())
        try:
            async with asyncio.timeout(limit):
                await settled.wait()
        except TimeoutError:
            log.debug("%s: re-authenticating with %d requests in flight", self, len(self._pending))
        finally:
            self._settled = None

    # ----------------------------------------------------------------------------- closing

    def _fail(self, error: KafkaConnectionError) -> None:
        """Marks the connection dead and fails every request in flight with `error`."""
        if self._failure is None:
            self._failure = error
        if self._reauth_timer is not None:
            self._reauth_timer.cancel()
            self._reauth_timer = None
        task = self._reauth_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()  # close() waits for it; a peer disconnect just lets it end
        pending, self._pending = self._pending, {}
        self._abandoned.clear()
        self._check_settled()
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
                # A request whose sender was already gone must not warn "never retrieved".
                future.exception()
        wire = self._wire
        if wire is not None and wire.transport is not None and not wire.transport.is_closing():
            wire.transport.close()

    async def wait_closed(self) -> None:
        """Returns once the transport is gone (after close() or a peer disconnect)."""
        if self._wire is not None and self._wire.transport is not None:
            await asyncio.shield(self._wire.lost)

    async def close(self) -> None:
        """Closes the connection; requests in flight fail with KafkaConnectionError."""
        reauth = self._reauth_task
        self._fail(KafkaConnectionError(f"{self}: closed"))
        if reauth is not None and reauth is not asyncio.current_task():
            await asyncio.wait([reauth])  # cancelled by _fail: no task outlives the connection
        wire = self._wire
        if wire is None or wire.transport is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(wire.lost), _CLOSE_TIMEOUT)
        except TimeoutError:
            # A TLS close_notify that the peer never answers must not hold us up.
            wire.transport.abort()
            await wire.lost


def _decode_api_versions(frame: bytes, version: int) -> ApiVersionsResponse | None:
    # Same fallback as Kafka's ApiVersionsResponse.parse: an error answer to a version the
    # broker does not know comes as a v0 body, whatever version we asked with.
    for candidate in (version, 0) if version else (0,):
        try:
            response = decode_response(frame, _API_VERSIONS_KEY, candidate)
        except KafkaError:
            continue
        assert isinstance(response, ApiVersionsResponse)
        return response
    return None


def _peek_error_code(frame: bytes) -> int:
    # ApiVersions responses use header v0 (just the correlation id), then ErrorCode first.
    if len(frame) < 6:
        return ErrorCode.UNKNOWN_SERVER_ERROR
    return int(_ERROR_CODE.unpack_from(frame, 4)[0])
