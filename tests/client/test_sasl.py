"""SCRAM and PLAIN, sans-IO against RFC test vectors, then end to end over a fake broker."""

from __future__ import annotations

import base64
import ssl

import pytest

from aioshare.client.connection import Connection
from aioshare.client.sasl import SaslConfig, ScramClient, plain_initial_response
from aioshare.protocol.errors import (
    ConfigError,
    IllegalStateError,
    KafkaConnectionError,
    SaslAuthenticationFailedError,
    UnsupportedSaslMechanismError,
    UnsupportedVersionError,
)
from aioshare.protocol.messages import MetadataRequest, MetadataResponse

from .conftest import TlsContexts
from .fakes import FakeBroker, SaslUsers, ScramServer, all_versions

# RFC 7677 section 3.
RFC7677_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC7677_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC7677_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC7677_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def rfc_client() -> ScramClient:
    return ScramClient("SCRAM-SHA-256", "user", "pencil", nonce=RFC7677_NONCE)


def test_scram_sha256_rfc7677_vector() -> None:
    client = rfc_client()
    assert client.client_first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert client.client_final(RFC7677_SERVER_FIRST) == RFC7677_CLIENT_FINAL
    client.verify_server_final(RFC7677_SERVER_FINAL)


def test_scram_rejects_wrong_server_signature() -> None:
    client = rfc_client()
    client.client_first()
    client.client_final(RFC7677_SERVER_FIRST)
    forged = b"v=" + base64.b64encode(b"\0" * 32)
    with pytest.raises(SaslAuthenticationFailedError, match="signature"):
        client.verify_server_final(forged)


@pytest.mark.parametrize(
    ("server_first", "match"),
    [
        (b"r=someone-elses-nonce,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "nonce"),
        (b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "nonce"),  # not extended
        (b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1000", "iteration"),
        (b"r=rOprNGfwEbeRWgbNEkqOxyz,i=4096", "malformed"),
        (b"m=ext,r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "extension"),
        (b"e=unknown-user", "unknown-user"),
        (b"garbage", "malformed"),
        (b"\xff\xfe", "UTF-8"),
    ],
)
def test_scram_rejects_bad_server_first(server_first: bytes, match: str) -> None:
    client = rfc_client()
    client.client_first()
    with pytest.raises(SaslAuthenticationFailedError, match=match):
        client.client_final(server_first)


def test_scram_server_final_error() -> None:
    client = rfc_client()
    client.client_first()
    client.client_final(RFC7677_SERVER_FIRST)
    with pytest.raises(SaslAuthenticationFailedError, match="invalid-proof"):
        client.verify_server_final(b"e=invalid-proof")


def test_scram_enforces_order() -> None:
    client = rfc_client()
    with pytest.raises(IllegalStateError):
        client.client_final(RFC7677_SERVER_FIRST)
    client.client_first()
    with pytest.raises(IllegalStateError):
        client.client_first()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_against_independent_server(mechanism: str) -> None:
    server = ScramServer(mechanism, {"a,b=c": "s3cret"})
    client = ScramClient(mechanism, "a,b=c", "s3cret")
    first = client.client_first()
    assert b"n=a=2Cb=3Dc," in first  # RFC 5802 saslname escaping
    client.verify_server_final(server.final(client.client_final(server.first(first))))


def test_scram_wrong_password_is_refused_by_server() -> None:
    server = ScramServer("SCRAM-SHA-512", {"u": "right"})
    client = ScramClient("SCRAM-SHA-512", "u", "wrong")
    with pytest.raises(ValueError, match="proof"):
        server.final(client.client_final(server.first(client.client_first())))


def test_plain_message_and_config() -> None:
    assert plain_initial_response("u", "p") == b"\0u\0p"
    assert "secret" not in repr(SaslConfig("PLAIN", "u", "secret"))
    with pytest.raises(ConfigError):
        SaslConfig("GSSAPI", "u", "p")
    with pytest.raises(ConfigError):
        ScramClient("PLAIN", "u", "p")


USERS = SaslUsers({"alice": "wonderland"})


async def metadata_roundtrip(conn: Connection) -> None:
    response = await conn.send(MetadataRequest(topics=[]), response_type=MetadataResponse)
    assert response.topics == []


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_sasl_end_to_end(mechanism: str) -> None:
    async with FakeBroker(sasl=USERS) as broker:
        broker.handlers[3] = lambda conn, header, body: _empty_metadata()
        conn = await Connection.open(
            broker.host, broker.port, sasl=SaslConfig(mechanism, "alice", "wonderland")
        )
        try:
            await metadata_roundtrip(conn)
            keys = [r.api_key for r in broker.received]
            assert keys[:3] == [18, 17, 36]  # ApiVersions before the handshake, as Kafka expects
        finally:
            await conn.close()


async def _empty_metadata() -> MetadataResponse:
    return MetadataResponse()


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
async def test_sasl_wrong_password(mechanism: str) -> None:
    async with FakeBroker(sasl=USERS) as broker:
        with pytest.raises(SaslAuthenticationFailedError):
            await Connection.open(broker.host, broker.port, sasl=SaslConfig(mechanism, "alice", "nope"))
        await broker.wait_for(lambda: all(c.closed for c in broker.conns))


async def test_sasl_mechanism_not_enabled() -> None:
    async with FakeBroker(sasl=SaslUsers({"alice": "w"}, mechanisms=["PLAIN"])) as broker:
        with pytest.raises(UnsupportedSaslMechanismError, match="PLAIN"):
            await Connection.open(broker.host, broker.port, sasl=SaslConfig("SCRAM-SHA-512", "alice", "w"))


async def test_sasl_handshake_v0_only_is_refused() -> None:
    async with FakeBroker(sasl=USERS, api_versions=all_versions() | {17: (0, 0)}) as broker:
        with pytest.raises(UnsupportedVersionError, match="SaslHandshake v0"):
            await Connection.open(broker.host, broker.port, sasl=SaslConfig("PLAIN", "alice", "wonderland"))


async def test_tls_with_sasl(tls: TlsContexts) -> None:
    async with FakeBroker(ssl_context=tls.server, sasl=USERS) as broker:
        broker.handlers[3] = lambda conn, header, body: _empty_metadata()
        conn = await Connection.open(
            "localhost",
            broker.port,
            ssl=tls.client,
            sasl=SaslConfig("SCRAM-SHA-256", "alice", "wonderland"),
        )
        try:
            await metadata_roundtrip(conn)
        finally:
            await conn.close()


async def test_tls_untrusted_certificate_is_refused(tls: TlsContexts) -> None:
    async with FakeBroker(ssl_context=tls.server) as broker:
        with pytest.raises(KafkaConnectionError, match="cannot connect"):
            await Connection.open("127.0.0.1", broker.port, ssl=ssl.create_default_context())
