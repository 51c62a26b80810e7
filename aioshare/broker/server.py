"""Per-node listener: framing, request dispatch, responses. No broker state lives here.

Handlers are registered in an `ApiRegistry` by API key with the version range they serve;
ApiVersions advertises exactly that table. A handler is `async (ctx, request) -> response`;
returning None sends nothing (Produce with acks=0), raising `CloseConnection` closes the
connection (what Kafka does when an acks=0 produce fails).

Like Kafka's SocketServer, which mutes a connection from the moment it reads a request until
that request's response is sent, each connection processes one request at a time, in arrival
order. Pipelined requests wait in the connection's queue, so responses always leave in request
order even when a handler waits (a long-poll Fetch holds back everything behind it on its
connection, exactly as on a real broker).

Kafka's answers to bad input, kept here:
* a frame that cannot be parsed, is larger than socket.request.max.bytes, or names an API key
  or version the broker does not serve: the connection is closed (and logged), nothing else is
  disturbed;
* a connection above max.connections is closed as soon as it is accepted (Kafka leaves it in
  the accept backlog until a slot frees; closing at once lets the client back off and retry);
* a connection with no bytes read or written for connections.max.idle.ms is closed (one that
  is processing a request is not idle), as Kafka's Selector expires idle channels;
* ApiVersions with a version above the supported maximum: an ApiVersionsResponse v0 carrying
  UNSUPPORTED_VERSION and the ApiVersions range, so the client can retry with a version it
  and the broker share.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import struct
import time
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any, cast

from aioshare.broker.listeners import CURRENT_LISTENER
from aioshare.protocol._codec import ApiMessage
from aioshare.protocol.errors import ErrorCode, ProtocolError
from aioshare.protocol.framing import (
    API_VERSIONS_KEY,
    DEFAULT_MAX_FRAME,
    encode_response,
    peek_request_header,
    request_header_version,
)
from aioshare.protocol.messages import (
    REQUESTS,
    ApiVersionsResponse,
    RequestHeader,
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)

if TYPE_CHECKING:
    from aioshare.broker.security import ListenerSecurity, SaslSession, Step

logger = logging.getLogger("aioshare.broker")

# Frames queued on one connection before the socket stops being read (flow control).
_QUEUE_HIGH = 64
_QUEUE_LOW = 16

_SIZE = struct.Struct(">i")

# Requests up to this size may borrow from a headroom above queued.max.request.bytes, so a
# broker whose pool is held by slow, large partial frames still reads Metadata, Fetch,
# heartbeats and ordinary Produce requests (Kafka mutes every connection instead).
SMALL_REQUEST_BYTES = 1 << 20
SMALL_REQUEST_HEADROOM = 8 << 20


class RequestMemoryPool:
    """Bytes of requests being read or waiting to be processed: Kafka's queued.max.request.bytes.

    A request reserves its declared size once its size prefix has been read and releases it
    when it has been decoded (Kafka's MemoryPool: allocate on the size, release after parsing).
    A connection that cannot reserve stops reading until memory is released. Like Kafka's
    non-strict SimpleMemoryPool, a request is admitted whenever nothing else is reserved, so a
    request of up to socket.request.max.bytes can always be read. `capacity <= 0` is unbounded.
    One pool serves every node of an embedded broker: they share one process.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0
        self.peak = 0
        self._waiting: dict[_Connection, None] = {}

    def try_reserve(self, size: int) -> bool:
        if self.capacity > 0 and self.in_use > 0:
            limit = self.capacity + (SMALL_REQUEST_HEADROOM if size <= SMALL_REQUEST_BYTES else 0)
            if self.in_use + size > limit:
                return False
        self.in_use += size
        self.peak = max(self.peak, self.in_use)
        return True

    def release(self, size: int) -> None:
        self.in_use -= size
        if self._waiting:
            waiting, self._waiting = self._waiting, {}
            for connection in waiting:
                connection._memory_released()

    def wait(self, connection: _Connection) -> None:
        self._waiting[connection] = None

    def forget(self, connection: _Connection) -> None:
        self._waiting.pop(connection, None)


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """Identity of one client connection (Kafka's connection id format)."""

    connection_id: str
    node_id: int
    client_host: str
    client_port: int


@dataclasses.dataclass(frozen=True, slots=True)
class RequestContext:
    """What a handler knows about the request besides its body."""

    node_id: int
    connection: ConnectionInfo
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    # The listener the request arrived on and the authenticated SASL user (Kafka's
    # KafkaPrincipal name; ANONYMOUS without SASL).
    listener: str = "PLAINTEXT"
    principal: str = "ANONYMOUS"


Handler = Callable[[RequestContext, Any], Awaitable[ApiMessage | None]]
DisconnectListener = Callable[[ConnectionInfo], None]


class CloseConnection(Exception):
    """Raised by a handler to close the connection instead of answering."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Registration:
    handler: Handler
    min_version: int
    max_version: int


class ApiRegistry:
    """The dispatch table shared by every node, plus connection-lifecycle listeners."""

    def __init__(self) -> None:
        self._handlers: dict[int, _Registration] = {}
        self._disconnect_listeners: list[DisconnectListener] = []

    def register(
        self,
        api_key: int,
        handler: Handler,
        *,
        min_version: int | None = None,
        max_version: int | None = None,
    ) -> None:
        """Serve `api_key` with `handler`, for versions the codec knows, capped to the given range."""
        request = REQUESTS.get(api_key)
        if request is None:
            raise ValueError(f"the codec has no request type for API key {api_key}")
        low = request.MIN_VERSION if min_version is None else max(min_version, request.MIN_VERSION)
        high = request.MAX_VERSION if max_version is None else min(max_version, request.MAX_VERSION)
        if low > high:
            raise ValueError(f"API key {api_key}: empty version range {low}..{high}")
        self._handlers[api_key] = _Registration(handler, low, high)

    def unregister(self, api_key: int) -> None:
        self._handlers.pop(api_key, None)

    def lookup(self, api_key: int, api_version: int) -> Handler | None:
        registration = self._handlers.get(api_key)
        if registration is None or not registration.min_version <= api_version <= registration.max_version:
            return None
        return registration.handler

    def version_range(self, api_key: int) -> tuple[int, int] | None:
        registration = self._handlers.get(api_key)
        return None if registration is None else (registration.min_version, registration.max_version)

    def versions(self) -> dict[int, tuple[int, int]]:
        return {key: (r.min_version, r.max_version) for key, r in sorted(self._handlers.items())}

    def add_disconnect_listener(self, listener: DisconnectListener) -> None:
        """Called with the ConnectionInfo of every client connection that closes, on any node."""
        self._disconnect_listeners.append(listener)

    def remove_disconnect_listener(self, listener: DisconnectListener) -> None:
        if listener in self._disconnect_listeners:
            self._disconnect_listeners.remove(listener)

    def connection_closed(self, info: ConnectionInfo) -> None:
        for listener in list(self._disconnect_listeners):
            try:
                listener(info)
            except Exception:
                logger.exception("disconnect listener failed for %s", info.connection_id)


class ResponseDelay:
    """Fault injection: hold responses back before they are written (all nodes share one)."""

    def __init__(self) -> None:
        self._seconds = 0.0
        self._api_keys: frozenset[int] | None = None

    def set(self, seconds: float, api_keys: Collection[int] | None = None) -> None:
        self._seconds = max(0.0, seconds)
        self._api_keys = None if api_keys is None else frozenset(api_keys)

    def for_api(self, api_key: int) -> float:
        if self._seconds and (self._api_keys is None or api_key in self._api_keys):
            return self._seconds
        return 0.0


class NodeServer:
    """The listener of one node: accepts connections and owns their tasks."""

    def __init__(
        self,
        node_id: int,
        host: str,
        port: int,
        registry: ApiRegistry,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME,
        delay: ResponseDelay | None = None,
        memory_pool: RequestMemoryPool | None = None,
        connections_max_idle_ms: int = 600000,
        max_connections: int = 2**31 - 1,
        listener: ListenerSecurity | None = None,
    ) -> None:
        self.node_id = node_id
        # TLS and SASL of this listener; None: PLAINTEXT named "PLAINTEXT".
        self.listener = listener
        self.listener_name = listener.name if listener is not None else "PLAINTEXT"
        self.host = host
        self.port = port
        self.registry = registry
        self.max_frame_bytes = max_frame_bytes
        self.delay = delay or ResponseDelay()
        self.memory_pool = memory_pool or RequestMemoryPool(-1)
        self.connections_max_idle_ms = connections_max_idle_ms
        self.max_connections = max_connections
        self._reaper: asyncio.Task[None] | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._sequence = itertools.count()

    @property
    def serving(self) -> bool:
        return self._server is not None

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        tls = self.listener.ssl_context if self.listener is not None else None
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_address=True, ssl=tls
        )
        # With port 0 the OS picked one; keep it so a restart listens on the same port.
        self.port = self._server.sockets[0].getsockname()[1]
        if self.connections_max_idle_ms >= 0:  # Kafka: negative disables idle expiry
            self._reaper = loop.create_task(self._expire_idle(), name=f"kafka-idle-{self.node_id}")

    async def _expire_idle(self) -> None:
        idle = self.connections_max_idle_ms / 1000
        interval = min(max(idle / 10, 0.01), 5.0)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for connection in list(self._connections):
                if connection.idle_since(now) > idle:
                    connection._close(
                        f"idle for more than connections.max.idle.ms={self.connections_max_idle_ms}"
                    )

    async def stop(self) -> None:
        """Stop listening and close every connection; returns when all their tasks are done."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            reaper.cancel()
            await asyncio.gather(reaper, return_exceptions=True)
        await self.drop_connections()
        if server is not None:
            await server.wait_closed()

    async def drop_connections(self) -> None:
        connections = list(self._connections)
        for connection in connections:
            connection.abort()
        # connection_lost runs from the loop after abort(); waiting for it means the
        # disconnect listeners have run when this returns.
        waits = [c.lost for c in connections] + [c.task for c in connections if c.task is not None]
        if waits:
            await asyncio.gather(*waits, return_exceptions=True)

    def _next_connection_number(self) -> int:
        return next(self._sequence)

    def _added(self, connection: _Connection) -> None:
        self._connections.add(connection)

    def _removed(self, connection: _Connection) -> None:
        self._connections.discard(connection)


class _Connection(asyncio.Protocol):
    """One client connection: splits frames, processes them one by one, writes responses."""

    def __init__(self, server: NodeServer) -> None:
        self._server = server
        self._pool = server.memory_pool
        self._header = bytearray()  # the size prefix being read
        self._body: bytearray | None = None  # the body being read, once its size is reserved
        self._body_size = 0
        self._reserved = 0  # bytes reserved in the pool: partial and queued frames
        self._backlog = bytearray()  # bytes read while waiting for pool memory
        self._memory_paused = False
        self._busy = False
        self._last_active = time.monotonic()
        self._queue: asyncio.Queue[tuple[bytearray, int]] = asyncio.Queue()
        self._transport: asyncio.Transport | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._reading_paused = False
        self.task: asyncio.Task[None] | None = None
        self.info: ConnectionInfo | None = None
        listener = server.listener
        self._sasl: SaslSession | None = listener.new_session() if listener is not None else None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's TCPTransport (which `aioshare broker` runs on)
        # implements asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        if not self._server.serving:
            # Accepted just before the listener stopped: the node is down, so refuse it.
            transport.abort()
            return
        if self._server.connection_count >= self._server.max_connections:
            logger.warning(
                "node %d: refusing a connection: max.connections=%d reached",
                self._server.node_id,
                self._server.max_connections,
            )
            transport.abort()
            return
        local = transport.get_extra_info("sockname") or ("", 0)
        peer = transport.get_extra_info("peername") or ("", 0)
        number = self._server._next_connection_number()
        self.info = ConnectionInfo(
            f"{local[0]}:{local[1]}-{peer[0]}:{peer[1]}-{self._server.node_id}-{number}",
            self._server.node_id,
            str(peer[0]),
            int(peer[1]),
        )
        self._server._added(self)
        self.task = asyncio.get_running_loop().create_task(
            self._serve(), name=f"kafka-conn-{self.info.connection_id}"
        )

    def data_received(self, data: bytes) -> None:
        self._last_active = time.monotonic()
        if self._memory_paused:
            self._backlog += data  # at most one read's worth: reading is paused
            return
        self._consume(memoryview(data))
        self._update_reading()

    def _consume(self, view: memoryview) -> None:
        """Split `view` into frames; stops (keeping the rest in the backlog) when the pool is full."""
        pos, end = 0, len(view)
        while pos < end or (self._body is None and len(self._header) == 4):
            body = self._body
            if body is None:
                take = min(4 - len(self._header), end - pos)
                self._header += view[pos : pos + take]
                pos += take
                if len(self._header) < 4:
                    break
                (size,) = _SIZE.unpack(self._header)
                if size < 0 or size > self._server.max_frame_bytes:
                    what = "negative frame size" if size < 0 else "frame larger than socket.request.max.bytes"
                    self._close(f"unreadable frame: {what} ({size} > {self._server.max_frame_bytes})")
                    return
                if not self._pool.try_reserve(size):
                    self._memory_paused = True
                    self._pool.wait(self)
                    self._backlog = bytearray(view[pos:])
                    return
                self._header.clear()
                self._reserved += size
                self._body_size = size
                body = self._body = bytearray()
            take = min(self._body_size - len(body), end - pos)
            body += view[pos : pos + take]
            pos += take
            if len(body) == self._body_size:
                self._body = None
                self._queue.put_nowait((body, self._body_size))

    def _memory_released(self) -> None:
        if not self._memory_paused or self._transport is None or self._transport.is_closing():
            return
        self._memory_paused = False
        backlog, self._backlog = self._backlog, bytearray()
        # The size prefix is complete: _consume re-reads it from _header and reserves again.
        self._consume(memoryview(backlog))
        self._update_reading()

    def _update_reading(self) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        want_paused = self._memory_paused or self._queue.qsize() >= _QUEUE_HIGH
        if want_paused and not self._reading_paused:
            self._reading_paused = True
            self._transport.pause_reading()
        elif not want_paused and self._reading_paused and self._queue.qsize() <= _QUEUE_LOW:
            self._reading_paused = False
            self._transport.resume_reading()

    def idle_since(self, now: float) -> float:
        return 0.0 if self._busy else now - self._last_active

    def _free_memory(self) -> None:
        self._pool.forget(self)
        self._body = None
        self._backlog = bytearray()
        while not self._queue.empty():
            self._queue.get_nowait()
        reserved, self._reserved = self._reserved, 0
        if reserved:
            self._pool.release(reserved)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self._can_write.set()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self._server._removed(self)
        self._free_memory()
        if self.info is not None:
            self._server.registry.connection_closed(self.info)

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # ------------------------------------------------------------------ processing

    def abort(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()

    def _close(self, reason: str) -> None:
        info = self.info.connection_id if self.info is not None else "?"
        logger.warning("node %d: closing connection %s: %s", self._server.node_id, info, reason)
        self.abort()

    def _close_after_write(self, reason: str) -> None:
        """Close once what was written is flushed (the answer to a failed authentication)."""
        info = self.info.connection_id if self.info is not None else "?"
        logger.warning("node %d: closing connection %s: %s", self._server.node_id, info, reason)
        if self.task is not None and self.task is not asyncio.current_task() and not self.task.done():
            self.task.cancel()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    async def _serve(self) -> None:
        # Handlers that report node endpoints see this listener's (Node.host / Node.port).
        CURRENT_LISTENER.set(self._server.listener_name)
        while True:
            frame, size = await self._queue.get()
            self._update_reading()
            self._busy = True
            try:
                if not await self._process(frame, size):
                    return
            finally:
                self._busy = False
                self._last_active = time.monotonic()

    def _release(self, size: int) -> None:
        if self._reserved >= size:
            self._reserved -= size
            self._pool.release(size)

    async def _process(self, frame: bytearray, size: int) -> bool:
        """Handle one request; False means the connection must close."""
        sasl = self._sasl
        if sasl is not None and sasl.raw_tokens:
            # After SaslHandshake v0 the client sends bare SASL tokens, not Kafka requests.
            token = bytes(frame)
            del frame
            self._release(size)
            return await self._raw_token(sasl, token)
        try:
            prepared = self._prepare(frame)
        finally:
            # Kafka releases a request's memory once it is parsed.
            del frame
            self._release(size)
        if isinstance(prepared, str):
            self._close(prepared)
            return False
        if isinstance(prepared, _Unsupported):
            await self._write(prepared.response, API_VERSIONS_KEY, 0, prepared.correlation_id)
            return True
        handler, header, body, api_key, api_version, correlation_id = prepared
        assert self.info is not None
        principal = "ANONYMOUS"
        if sasl is not None:
            verdict = sasl.check(api_key, time.monotonic_ns())
            if verdict.action == "close":
                self._close(verdict.reason)
                return False
            if verdict.action == "handshake":
                assert isinstance(body, SaslHandshakeRequest)
                return await self._handshake(sasl, body, api_version, correlation_id)
            if verdict.action == "authenticate":
                assert isinstance(body, SaslAuthenticateRequest)
                return await self._authenticate(sasl, body, api_version, correlation_id)
            principal = sasl.principal or principal
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "node %d: %s v%d from %s (%s)",
                self._server.node_id,
                type(body).__name__,
                api_version,
                self.info.connection_id,
                header.client_id,
            )
        context = RequestContext(
            self._server.node_id,
            self.info,
            api_key,
            api_version,
            correlation_id,
            header.client_id,
            self._server.listener_name,
            principal,
        )
        try:
            response = await handler(context, body)
        except CloseConnection as exc:
            self._close(str(exc) or f"handler for API key {api_key} asked to close")
            return False
        except Exception:
            logger.exception(
                "node %d: handler for API key %d v%d failed", self._server.node_id, api_key, api_version
            )
            self.abort()
            return False
        if response is None:
            return True
        return await self._write(response, api_key, api_version, correlation_id)

    # ------------------------------------------------------------------ SASL

    async def _handshake(
        self, sasl: SaslSession, request: SaslHandshakeRequest, version: int, correlation_id: int
    ) -> bool:
        step, mechanisms = sasl.handshake(request.mechanism, version)
        response = SaslHandshakeResponse(error_code=step.error_code, mechanisms=list(mechanisms))
        if not step.close:
            return await self._write(response, SaslHandshakeRequest.API_KEY, version, correlation_id)
        await self._fail_authentication(
            response,
            SaslHandshakeRequest.API_KEY,
            version,
            correlation_id,
            f"Unsupported SASL mechanism {request.mechanism}",
        )
        return False

    async def _authenticate(
        self, sasl: SaslSession, request: SaslAuthenticateRequest, version: int, correlation_id: int
    ) -> bool:
        step = sasl.authenticate(request.auth_bytes, version, time.monotonic_ns())
        response = SaslAuthenticateResponse(
            error_code=step.error_code,
            error_message=step.error_message,
            auth_bytes=step.auth_bytes,
            session_lifetime_ms=step.session_lifetime_ms,
        )
        if not step.close:
            self._log_authenticated(sasl, step)
            return await self._write(response, SaslAuthenticateRequest.API_KEY, version, correlation_id)
        await self._fail_authentication(
            response, SaslAuthenticateRequest.API_KEY, version, correlation_id, step.error_message or ""
        )
        return False

    async def _raw_token(self, sasl: SaslSession, token: bytes) -> bool:
        step = sasl.authenticate(token, 0, time.monotonic_ns())
        if step.close:
            # No Kafka framing to carry an error: Kafka closes the connection (after the delay).
            await self._delay_failure()
            self._close(f"SASL authentication failed: {step.error_message}")
            return False
        self._log_authenticated(sasl, step)
        await self._can_write.wait()
        if self._transport is None or self._transport.is_closing():
            return False
        self._transport.write(_SIZE.pack(len(step.auth_bytes)) + step.auth_bytes)
        self._last_active = time.monotonic()
        return True

    def _log_authenticated(self, sasl: SaslSession, step: Step) -> None:
        if sasl.authenticated and logger.isEnabledFor(logging.DEBUG):
            assert self.info is not None
            logger.debug(
                "node %d: %s authenticated as User:%s with %s (session lifetime %d ms)",
                self._server.node_id,
                self.info.connection_id,
                sasl.principal,
                sasl.mechanism,
                step.session_lifetime_ms,
            )

    async def _delay_failure(self) -> None:
        # Kafka's connection.failed.authentication.delay.ms: a failed client is answered (and
        # closed) late, which slows down password guessing.
        listener = self._server.listener
        if listener is not None and listener.failed_authentication_delay_ms > 0:
            await asyncio.sleep(listener.failed_authentication_delay_ms / 1000)

    async def _fail_authentication(
        self, response: ApiMessage, api_key: int, version: int, correlation_id: int, reason: str
    ) -> None:
        await self._delay_failure()
        await self._write(response, api_key, version, correlation_id)
        assert self.info is not None
        self._close_after_write(
            f"failed authentication with {self.info.client_host} on listener "
            f"{self._server.listener_name} ({reason})"
        )

    def _prepare(
        self, frame: bytearray
    ) -> str | _Unsupported | tuple[Handler, RequestHeader, ApiMessage, int, int, int]:
        """The handler and decoded request, an ApiVersions error answer, or why to close."""
        registry = self._server.registry
        try:
            api_key, api_version, correlation_id = peek_request_header(frame)
        except ProtocolError as exc:
            return f"malformed request header: {exc}"
        if api_key == API_VERSIONS_KEY:
            supported = registry.version_range(API_VERSIONS_KEY)
            if supported is not None and api_version > supported[1]:
                return _Unsupported(_unsupported_api_versions(supported), correlation_id)
        handler = registry.lookup(api_key, api_version)
        if handler is None:
            return f"unsupported request: API key {api_key} version {api_version}"
        try:
            header, body = _decode(frame, api_key, api_version)
        except ProtocolError as exc:
            return f"malformed request (API key {api_key} v{api_version}): {exc}"
        return handler, header, body, api_key, api_version, correlation_id

    async def _write(self, response: ApiMessage, api_key: int, api_version: int, correlation_id: int) -> bool:
        try:
            data = encode_response(response, api_version, correlation_id)
        except ProtocolError:
            logger.exception(
                "node %d: cannot encode the response to API key %d v%d",
                self._server.node_id,
                api_key,
                api_version,
            )
            self.abort()
            return False
        delay = self._server.delay.for_api(api_key)
        if delay:
            await asyncio.sleep(delay)
        await self._can_write.wait()
        if self._transport is None or self._transport.is_closing():
            return False
        self._transport.write(data)
        self._last_active = time.monotonic()
        return True


@dataclasses.dataclass(frozen=True, slots=True)
class _Unsupported:
    response: ApiVersionsResponse
    correlation_id: int


def _decode(frame: bytes | bytearray, api_key: int, api_version: int) -> tuple[RequestHeader, ApiMessage]:
    """Header and body of a request, ignoring bytes after the body.

    Kafka's request parsing reads the fields it knows and never checks for leftovers, and
    clients rely on that: librdkafka 2.x sends three stray bytes after some Metadata v13
    bodies. framing.decode_request is stricter, so the broker decodes here.
    """
    view = memoryview(frame)
    header, pos = RequestHeader.decode_from(view, 0, request_header_version(api_key, api_version))
    body, _ = REQUESTS[api_key].decode_from(view, pos, api_version)
    return header, body


def _unsupported_api_versions(supported: tuple[int, int]) -> ApiVersionsResponse:
    # Kafka's ApiVersionsRequest.getErrorResponse: only the ApiVersions range is listed, so
    # the client can pick a version both sides know and ask again.
    return ApiVersionsResponse(
        error_code=ErrorCode.UNSUPPORTED_VERSION,
        api_keys=[
            ApiVersionsResponse.ApiVersion(
                api_key=API_VERSIONS_KEY, min_version=supported[0], max_version=supported[1]
            )
        ],
    )
