"""A tiny in-test Kafka broker: decodes requests with the codec, answers through handlers.

Each request is handled in its own task, so a handler that waits lets later requests overtake
it (out-of-order responses). Every task belongs to the FakeBroker and is cancelled by close().
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ssl
import struct
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aioshare.protocol._codec import NIL_UUID, ApiMessage
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.framing import decode_request, encode_response
from aioshare.protocol.messages import (
    REQUESTS,
    ApiVersionsResponse,
    FindCoordinatorResponse,
    MetadataResponse,
    RequestHeader,
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)


@dataclass
class Raw:
    """A handler result written to the socket as is (already framed)."""

    data: bytes


@dataclass
class Received:
    api_key: int
    version: int
    correlation_id: int
    body: Any  # the request class for api_key; Any so tests can read its fields


Handler = Callable[["FakeConn", RequestHeader, Any], Awaitable[ApiMessage | Raw | None]]

SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36


def owned_tasks() -> set[asyncio.Task[Any]]:
    """Running tasks whose coroutine is aioshare code (not the test's or the fakes')."""
    found = set()
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if code is not None and "/aioshare/" in code.co_filename:
            found.add(task)
    return found


def all_versions() -> dict[int, tuple[int, int]]:
    return {key: (cls.MIN_VERSION, cls.MAX_VERSION) for key, cls in REQUESTS.items()}


class FakeConn:
    """The server side of one client connection."""

    def __init__(
        self, broker: FakeBroker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.broker = broker
        self.reader = reader
        self.writer = writer
        self.state: dict[str, Any] = {}
        self.closed = False
        self.unanswered = 0  # requests read and not yet answered

    def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def abort(self) -> None:
        transport = self.writer.transport
        transport.abort()

    async def serve(self) -> None:
        try:
            while True:
                (size,) = struct.unpack(">i", await self.reader.readexactly(4))
                frame = await self.reader.readexactly(size)
                request = decode_request(frame)
                header = request.header
                self.broker.received.append(
                    Received(
                        header.request_api_key,
                        header.request_api_version,
                        header.correlation_id,
                        request.body,
                    )
                )
                self.broker.changed()
                if not self._admit(header.request_api_key):
                    self.abort()  # as Kafka does: no answer, the connection is gone
                    return
                self.unanswered += 1
                self.broker.spawn(self._answer(header, request.body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.writer.close()
            self.closed = True
            self.broker.changed()

    def _admit(self, api_key: int) -> bool:
        """Kafka's rules for SASL sessions with a lifetime (KIP-368; SocketServer and
        SaslServerAuthenticator): a SaslHandshake on an authenticated connection starts a
        re-authentication, even once the session has ended; until it succeeds only
        SaslAuthenticate may come; any other request read after the session ended closes the
        connection.  Each refusal is recorded in `broker.violations`."""
        state = self.state
        if state.get("reauthenticating"):
            if api_key == SASL_AUTHENTICATE:
                return True
            self.broker.violations.append(f"API key {api_key} during re-authentication")
            return False
        ends = state.get("session_ends")
        if ends is None:
            return True
        if api_key == SASL_HANDSHAKE:
            state["reauthenticating"] = True
            self.broker.reauth_backlog.append(self.unanswered)
            return True
        if asyncio.get_running_loop().time() > ends:
            self.broker.violations.append(f"API key {api_key} after the session ended")
            return False
        return True

    async def _answer(self, header: RequestHeader, body: ApiMessage) -> None:
        handler = self.broker.handlers.get(header.request_api_key)
        if handler is None:
            raise AssertionError(f"fake broker has no handler for API key {header.request_api_key}")
        result = await handler(self, header, body)
        if result is None:
            return
        if isinstance(result, Raw):
            self.write(result.data)
        else:
            version = header.request_api_version
            if isinstance(result, ApiVersionsResponse) and result.error_code:
                version = 0  # error answers to ApiVersions always use the v0 body
            self.write(encode_response(result, version, header.correlation_id))
        self.unanswered -= 1
        self.broker.answered.append(header.correlation_id)
        self.broker.changed()


class FakeBroker:
    """`async with FakeBroker() as broker:` listens on 127.0.0.1:<free port>.

    `api_versions` is what ApiVersions advertises; `api_versions_max` is the highest
    ApiVersions version it accepts (higher gets UNSUPPORTED_VERSION with a v0 body, or with
    undecodable bytes like librdkafka's mock when `garbled_unsupported` is set).
    """

    def __init__(
        self,
        *,
        api_versions: dict[int, tuple[int, int]] | None = None,
        api_versions_max: int = 4,
        garbled_unsupported: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        sasl: SaslUsers | None = None,
        changes: asyncio.Condition | None = None,
    ) -> None:
        self.api_versions = api_versions if api_versions is not None else all_versions()
        self.api_versions_max = api_versions_max
        self.garbled_unsupported = garbled_unsupported
        self.ssl_context = ssl_context
        self.sasl = sasl
        self.handlers: dict[int, Handler] = {
            18: self._api_versions,
            17: self._sasl_handshake,
            36: self._sasl_auth,
        }
        self.received: list[Received] = []
        self.answered: list[int] = []
        self.conns: list[FakeConn] = []
        self.refuse = False  # accept, then hang up at once
        # KIP-368 (when `sasl.session_lifetime_ms` is set): requests Kafka would have closed the
        # connection for, and how many requests were unanswered at each re-authentication.
        self.violations: list[str] = []
        self.reauth_backlog: list[int] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        # Connection tasks are started by asyncio.start_server, which logs an error when they
        # are cancelled; close() ends them by aborting their transports instead.
        self._serving: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._changed = changes if changes is not None else asyncio.Condition()
        self.host = "127.0.0.1"
        self.port = 0

    async def __aenter__(self) -> FakeBroker:
        self._server = await asyncio.start_server(self._accept, self.host, self.port, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def changed(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        self.spawn(notify())

    async def wait_for(self, predicate: Callable[[], bool], limit: float = 5.0) -> None:
        """Waits until `predicate()` holds (re-checked whenever a request arrives or is answered)."""
        async with asyncio.timeout(limit), self._changed:
            await self._changed.wait_for(predicate)

    def requests(self, api_key: int) -> list[Received]:
        return [r for r in self.received if r.api_key == api_key]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            writer.transport.abort()
            return
        conn = FakeConn(self, reader, writer)
        self.conns.append(conn)
        self.changed()
        task = asyncio.current_task()
        assert task is not None
        self._serving.add(task)
        try:
            await conn.serve()
        finally:
            self._serving.discard(task)

    def drop_connections(self) -> None:
        for conn in self.conns:
            conn.abort()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop_connections()
        await asyncio.gather(*self._serving, return_exceptions=True)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # ----------------------------------------------------------------------------- default handlers

    async def _api_versions(self, conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage | Raw:
        if header.request_api_version > self.api_versions_max:
            if self.garbled_unsupported:
                # librdkafka's mock: error code, then a flexible-style array no version decodes.
                payload = struct.pack(">ih", header.correlation_id, ErrorCode.UNSUPPORTED_VERSION)
                payload += bytes.fromhex("01001200000002000000")
                return Raw(struct.pack(">i", len(payload)) + payload)
            return ApiVersionsResponse(
                error_code=ErrorCode.UNSUPPORTED_VERSION,
                api_keys=[
                    ApiVersionsResponse.ApiVersion(
                        api_key=18, min_version=0, max_version=self.api_versions_max
                    )
                ],
            )
        return ApiVersionsResponse(
            api_keys=[
                ApiVersionsResponse.ApiVersion(api_key=k, min_version=lo, max_version=hi)
                for k, (lo, hi) in sorted(self.api_versions.items())
            ]
        )

    async def _sasl_handshake(self, conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage:
        assert isinstance(body, SaslHandshakeRequest)
        enabled = self.sasl.mechanisms if self.sasl is not None else []
        if body.mechanism not in enabled:
            return SaslHandshakeResponse(error_code=ErrorCode.UNSUPPORTED_SASL_MECHANISM, mechanisms=enabled)
        conn.state["mechanism"] = body.mechanism
        conn.state.pop("scram", None)  # a re-authentication starts a new exchange
        return SaslHandshakeResponse(mechanisms=enabled)

    async def _sasl_auth(self, conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage:
        assert isinstance(body, SaslAuthenticateRequest) and self.sasl is not None
        mechanism = conn.state.get("mechanism")
        failed = SaslAuthenticateResponse(
            error_code=ErrorCode.SASL_AUTHENTICATION_FAILED, error_message="Authentication failed"
        )
        if mechanism == "PLAIN":
            _, user, password = body.auth_bytes.split(b"\0")
            ok = self.sasl.users.get(user.decode()) == password.decode()
            return self._authenticated(conn, header, SaslAuthenticateResponse()) if ok else failed
        server = conn.state.get("scram")
        if server is None:
            server = conn.state["scram"] = ScramServer(str(mechanism), self.sasl.users)
            return SaslAuthenticateResponse(auth_bytes=server.first(body.auth_bytes))
        try:
            final = SaslAuthenticateResponse(auth_bytes=server.final(body.auth_bytes))
        except ValueError:
            return failed
        return self._authenticated(conn, header, final)

    def _authenticated(
        self, conn: FakeConn, header: RequestHeader, response: SaslAuthenticateResponse
    ) -> SaslAuthenticateResponse:
        assert self.sasl is not None
        conn.state["reauthenticating"] = False
        lifetime_ms = self.sasl.session_lifetime_ms
        if lifetime_ms and header.request_api_version >= 1:
            # Like Kafka: the session is timed from the moment the broker accepted the client.
            conn.state["session_ends"] = asyncio.get_running_loop().time() + lifetime_ms / 1000
            response.session_lifetime_ms = lifetime_ms
        return response


@dataclass
class SaslUsers:
    users: dict[str, str]
    mechanisms: list[str] = field(default_factory=lambda: ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
    # Kafka's connections.max.reauth.ms: 0 = sessions never end.
    session_lifetime_ms: int = 0


class ScramServer:
    """The server side of SCRAM (RFC 5802), independent of the client code under test."""

    def __init__(
        self,
        mechanism: str,
        users: dict[str, str],
        *,
        salt: bytes = b"fake-broker-salt",
        iterations: int = 4096,
        nonce: str = "server-nonce",
    ) -> None:
        self.hash = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}[mechanism]
        self.users = users
        self.salt = salt
        self.iterations = iterations
        self.server_nonce = nonce

    def first(self, client_first: bytes) -> bytes:
        text = client_first.decode()
        assert text.startswith("n,,")
        self.client_first_bare = text[3:]
        attrs = dict(part.split("=", 1) for part in self.client_first_bare.split(","))
        self.user = attrs["n"].replace("=2C", ",").replace("=3D", "=")
        self.nonce = attrs["r"] + self.server_nonce
        salt = base64.b64encode(self.salt).decode()
        self.server_first = f"r={self.nonce},s={salt},i={self.iterations}"
        return self.server_first.encode()

    def final(self, client_final: bytes) -> bytes:
        text = client_final.decode()
        without_proof, _, proof_part = text.rpartition(",p=")
        attrs = dict(part.split("=", 1) for part in without_proof.split(","))
        if attrs["r"] != self.nonce or attrs["c"] != "biws":
            raise ValueError("bad nonce or channel binding")
        password = self.users.get(self.user)
        if password is None:
            raise ValueError("unknown user")
        salted = hashlib.pbkdf2_hmac(self.hash, password.encode(), self.salt, self.iterations)
        client_key = hmac.digest(salted, b"Client Key", self.hash)
        stored_key = hashlib.new(self.hash, client_key).digest()
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        signature = hmac.digest(stored_key, auth_message, self.hash)
        proof = base64.b64decode(proof_part)
        recovered = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if hashlib.new(self.hash, recovered).digest() != stored_key:
            raise ValueError("bad proof")
        server_key = hmac.digest(salted, b"Server Key", self.hash)
        return b"v=" + base64.b64encode(hmac.digest(server_key, auth_message, self.hash))


class FakeCluster:
    """Several FakeBrokers answering Metadata about each other and FindCoordinator.

    `topics` maps name -> (topic id, {partition: leader}); `coordinator_errors` is a queue of
    error codes FindCoordinator answers with before it names `coordinator` (a node id).
    """

    def __init__(self, size: int = 3, **broker_kwargs: Any) -> None:
        # One condition for all brokers, so a wait sees a request to any of them.
        changes = asyncio.Condition()
        self.brokers = {n: FakeBroker(changes=changes, **broker_kwargs) for n in range(1, size + 1)}
        self.topics: dict[str, tuple[uuid.UUID, dict[int, int]]] = {}
        self.leader_epoch = 0
        self.coordinator = 1
        self.coordinator_errors: list[int] = []
        for broker in self.brokers.values():
            broker.handlers[3] = self._metadata
            broker.handlers[10] = self._find_coordinator

    async def __aenter__(self) -> FakeCluster:
        for broker in self.brokers.values():
            await broker.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for broker in self.brokers.values():
            await broker.close()

    @property
    def bootstrap(self) -> str:
        return ",".join(b.address for b in self.brokers.values())

    def requests(self, api_key: int) -> list[Received]:
        return [r for b in self.brokers.values() for r in b.requests(api_key)]

    async def wait_for(self, predicate: Callable[[], bool], limit: float = 5.0) -> None:
        await next(iter(self.brokers.values())).wait_for(predicate, limit)

    async def _metadata(self, conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage:
        version = header.request_api_version
        all_topics = body.topics is None or (version == 0 and not body.topics)
        refs: list[tuple[str | None, uuid.UUID]]
        if all_topics:
            refs = [(n, NIL_UUID) for n in self.topics]
        else:
            refs = [(t.name, t.topic_id) for t in body.topics]
        topics = []
        for name, topic_id in refs:
            if name is None:  # asked for by id (v12+)
                name = next((n for n, (tid, _) in self.topics.items() if tid == topic_id), None)
                if name is None:
                    topics.append(
                        MetadataResponse.MetadataResponseTopic(error_code=100, name=None, topic_id=topic_id)
                    )
                    continue
            if name not in self.topics:
                topics.append(MetadataResponse.MetadataResponseTopic(error_code=3, name=name))
                continue
            topic_id, leaders = self.topics[name]
            topics.append(
                MetadataResponse.MetadataResponseTopic(
                    name=name,
                    topic_id=topic_id if version >= 10 else NIL_UUID,
                    partitions=[
                        MetadataResponse.MetadataResponsePartition(
                            partition_index=p,
                            leader_id=leader,
                            leader_epoch=self.leader_epoch,
                            replica_nodes=[leader],
                        )
                        for p, leader in leaders.items()
                    ],
                )
            )
        return MetadataResponse(
            brokers=[
                MetadataResponse.MetadataResponseBroker(node_id=n, host=b.host, port=b.port)
                for n, b in self.brokers.items()
            ],
            cluster_id="fake",
            controller_id=1,
            topics=topics,
        )

    async def _find_coordinator(self, conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage:
        coordinator = self.brokers[self.coordinator]

        def answer() -> tuple[int, int, str, int]:
            if self.coordinator_errors:
                return self.coordinator_errors.pop(0), -1, "", -1
            return 0, self.coordinator, coordinator.host, coordinator.port

        if header.request_api_version >= 4:
            coordinators = []
            for key in body.coordinator_keys:
                code, node, host, port = answer()
                coordinators.append(
                    FindCoordinatorResponse.Coordinator(
                        key=key, node_id=node, host=host, port=port, error_code=code
                    )
                )
            return FindCoordinatorResponse(coordinators=coordinators)
        code, node, host, port = answer()
        return FindCoordinatorResponse(error_code=code, node_id=node, host=host, port=port)
