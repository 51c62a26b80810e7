"""SASL authentication: PLAIN and SCRAM-SHA-256/512 over SaslHandshake v1 + SaslAuthenticate.

`ScramClient` is the sans-IO SCRAM exchange (RFC 5802, RFC 7677); `authenticate` is the small
async driver that carries its messages in SaslAuthenticate requests, on a fresh connection or,
to re-authenticate (KIP-368), on one whose other requests the Connection holds back meanwhile.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from aioshare.protocol.errors import (
    ConfigError,
    IllegalStateError,
    SaslAuthenticationFailedError,
    UnsupportedVersionError,
    error_for_code,
)
from aioshare.protocol.messages import (
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)

if TYPE_CHECKING:
    from aioshare.client.connection import Connection
    from aioshare.protocol._codec import ApiMessage

    # Sends one request at the given version and returns the decoded response.
    SaslSend = Callable[[ApiMessage, int], Awaitable[ApiMessage]]

__all__ = ["MECHANISMS", "SaslConfig", "ScramClient", "authenticate", "plain_initial_response"]

_HASHES: Final = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MECHANISMS: Final = frozenset({"PLAIN", *_HASHES})
# Kafka's ScramMechanism.minIterations for both hashes; fewer means a weak or hostile server.
_MIN_ITERATIONS: Final = 4096
_GS2_HEADER: Final = "n,,"  # no channel binding, no authzid


@dataclass(frozen=True, slots=True)
class SaslConfig:
    """SASL credentials: `mechanism` is "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512"."""

    mechanism: str
    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if self.mechanism not in MECHANISMS:
            raise ConfigError(
                f"unsupported SASL mechanism {self.mechanism!r}; use one of {sorted(MECHANISMS)}"
            )


def plain_initial_response(username: str, password: str) -> bytes:
    """RFC 4616 message: empty authzid, authcid, password, NUL-separated."""
    return b"\0" + username.encode() + b"\0" + password.encode()


def _saslname(name: str) -> str:
    # RFC 5802 5.1: "," and "=" would end or corrupt the attribute.
    return name.replace("=", "=3D").replace(",", "=2C")


def _text(message: bytes) -> str:
    try:
        return message.decode()
    except UnicodeDecodeError as exc:
        raise SaslAuthenticationFailedError("SCRAM message is not UTF-8") from exc


def _attributes(message: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for part in message.split(","):
        key, sep, value = part.partition("=")
        if not sep or len(key) != 1:
            raise SaslAuthenticationFailedError(f"malformed SCRAM message {message!r}")
        attrs[key] = value
    return attrs


class ScramClient:
    """The client side of one SCRAM exchange, sans-IO.

    `client_first()`, then `client_final(server_first)`, then `verify_server_final(server_final)`;
    any other order raises IllegalStateError. `nonce` is only for tests (test vectors).
    """

    def __init__(self, mechanism: str, username: str, password: str, *, nonce: str | None = None) -> None:
        hash_name = _HASHES.get(mechanism)
        if hash_name is None:
            raise ConfigError(f"not a SCRAM mechanism: {mechanism!r}")
        self._hash = hash_name
        self._password = password.encode()
        self._nonce = nonce if nonce is not None else secrets.token_urlsafe(24)
        self._first_bare = f"n={_saslname(username)},r={self._nonce}"
        self._server_signature: bytes | None = None
        self._state = "start"

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.digest(key, message, self._hash)

    def client_first(self) -> bytes:
        self._expect("start", "first")
        return (_GS2_HEADER + self._first_bare).encode()

    def client_final(self, server_first: bytes) -> bytes:
        self._expect("first", "final")
        text = _text(server_first)
        attrs = _attributes(text)
        if "e" in attrs:
            raise SaslAuthenticationFailedError(f"SCRAM server error: {attrs['e']}")
        if "m" in attrs:
            raise SaslAuthenticationFailedError("SCRAM server requires an extension aioshare does not know")
        try:
            nonce, salt, iterations = attrs["r"], base64.b64decode(attrs["s"], validate=True), int(attrs["i"])
        except (KeyError, ValueError) as exc:
            raise SaslAuthenticationFailedError(f"malformed SCRAM server-first message {text!r}") from exc
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise SaslAuthenticationFailedError("SCRAM server nonce does not extend the client nonce")
        if iterations < _MIN_ITERATIONS:
            raise SaslAuthenticationFailedError(f"SCRAM iteration count {iterations} < {_MIN_ITERATIONS}")
        salted = hashlib.pbkdf2_hmac(self._hash, self._password, salt, iterations)
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(self._hash, client_key).digest()
        channel_binding = base64.b64encode(_GS2_HEADER.encode()).decode()
        final_without_proof = f"c={channel_binding},r={nonce}"
        auth_message = f"{self._first_bare},{text},{final_without_proof}".encode()
        signature = self._hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_signature = self._hmac(self._hmac(salted, b"Server Key"), auth_message)
        return f"{final_without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify_server_final(self, server_final: bytes) -> None:
        """Raises SaslAuthenticationFailedError unless the server proved it knows the password."""
        self._expect("final", "done")
        attrs = _attributes(_text(server_final))
        if "e" in attrs:
            raise SaslAuthenticationFailedError(f"SCRAM server error: {attrs['e']}")
        assert self._server_signature is not None
        try:
            signature = base64.b64decode(attrs["v"], validate=True)
        except (KeyError, ValueError) as exc:
            raise SaslAuthenticationFailedError("malformed SCRAM server-final message") from exc
        if not hmac.compare_digest(signature, self._server_signature):
            raise SaslAuthenticationFailedError("SCRAM server signature does not match")

    def _expect(self, state: str, then: str) -> None:
        if self._state != state:
            raise IllegalStateError(f"SCRAM exchange is at {self._state!r}, not {state!r}")
        self._state = then


async def authenticate(conn: Connection, config: SaslConfig, *, send: SaslSend | None = None) -> int:
    """Runs the SASL exchange on a connection that has negotiated API versions.

    Returns the session lifetime the broker granted in milliseconds (SaslAuthenticate v1+), 0
    when it does not limit the session: the connection must re-authenticate before it ends.
    `send` defaults to `conn.send`; re-authentication passes one that bypasses its write gate.
    """

    async def call(request: ApiMessage, version: int) -> ApiMessage:
        return await (send(request, version) if send is not None else conn.send(request, version))

    handshake_version = conn.version_for(SaslHandshakeRequest.API_KEY)
    if handshake_version < 1:
        # v0 means raw SASL tokens outside Kafka framing, which only very old brokers need.
        raise UnsupportedVersionError(f"{conn} only supports SaslHandshake v0")
    handshake = await call(SaslHandshakeRequest(mechanism=config.mechanism), handshake_version)
    if not isinstance(handshake, SaslHandshakeResponse):
        raise TypeError(f"expected SaslHandshakeResponse, got {type(handshake).__name__}")
    if handshake.error_code:
        raise error_for_code(
            handshake.error_code, f"{config.mechanism}; broker enables {handshake.mechanisms}"
        )
    auth_version = conn.version_for(SaslAuthenticateRequest.API_KEY)
    lifetime_ms = 0

    async def exchange(token: bytes) -> bytes:
        nonlocal lifetime_ms
        response = await call(SaslAuthenticateRequest(auth_bytes=token), auth_version)
        if not isinstance(response, SaslAuthenticateResponse):
            raise TypeError(f"expected SaslAuthenticateResponse, got {type(response).__name__}")
        if response.error_code:
            raise error_for_code(response.error_code, response.error_message)
        # The last answer's value is the one that counts: the broker sets it once the exchange
        # has succeeded (v1+).
        lifetime_ms = response.session_lifetime_ms
        return response.auth_bytes

    if config.mechanism == "PLAIN":
        await exchange(plain_initial_response(config.username, config.password))
        return lifetime_ms
    scram = ScramClient(config.mechanism, config.username, config.password)
    server_first = await exchange(scram.client_first())
    server_final = await exchange(scram.client_final(server_first))
    scram.verify_server_final(server_final)
    return lifetime_ms
