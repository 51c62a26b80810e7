"""TLS and SASL listeners of the embedded broker, with Kafka's config names, against four clients.

One broker (``ThreadedBroker``, what the pytest fixtures run) serves the module with four
listeners: PLAINTEXT (setup), SSL with client certificates required, SASL_PLAINTEXT and SASL_SSL,
both with PLAIN (users from the listener's JAAS config, Kafka's syntax) and SCRAM-SHA-256/512
(seeded by ``aioshare.scram.credentials``). Certificates come from the openssl binary
(tests/broker/tls_support.py). Each client - ours (ShareConsumer, ShareAdmin), aiokafka,
librdkafka (confluent-kafka) and Java's kafka-clients - produces and consumes over SASL_SSL and is
refused with SASL_AUTHENTICATION_FAILED for a wrong password. The protocol-level tests pin Kafka's
SaslServerAuthenticator behaviour: what is allowed before authentication, the handshake, the
closed connection after a failure, SaslHandshake v0, and KIP-368 session expiry/re-authentication.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as AioTopicPartition
from aiokafka.errors import KafkaConnectionError as AioConnectionError
from aiokafka.errors import KafkaError as AioKafkaError

from aioshare.admin import ShareAdmin
from aioshare.broker.config import BrokerConfig, InvalidBrokerConfig
from aioshare.broker.embedded import EmbeddedBroker
from aioshare.client.connection import Connection
from aioshare.client.sasl import SaslConfig
from aioshare.protocol.errors import ErrorCode, KafkaConnectionError, SaslAuthenticationFailedError
from aioshare.protocol.framing import decode_response, encode_request
from aioshare.protocol.messages import (
    ApiVersionsRequest,
    MetadataRequest,
    MetadataResponse,
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)
from aioshare.share import ShareConsumer
from aioshare.testing.broker import ThreadedBroker
from aioshare.testing.kafka import DEFAULT_KAFKA_VERSION
from aioshare.testing.kafka.java import compile_java, java_command
from aioshare.testing.kafka.requirement import require
from tests.broker.tls_support import Pki, make_pki

ALICE, PASSWORD = "alice", "alice-secret"
PLAIN_JAAS = f'org.apache.kafka.common.security.plain.PlainLoginModule required user_{ALICE}="{PASSWORD}";'
SCRAM_SEED = ";".join(f"{m}=[name={ALICE},password={PASSWORD}]" for m in ("SCRAM-SHA-256", "SCRAM-SHA-512"))
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
PLAIN_FAILURE = "Authentication failed: Invalid username or password"
TIMEOUT = 30.0
JAVA_PROBE = Path(__file__).resolve().parents[1] / "java" / "SecureProbe.java"


def security_config(pki: Pki, **extra: str) -> dict[str, str]:
    return {
        "listeners": (
            "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0"
        ),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(pki.broker_keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki.ca),
        "listener.name.ssl.ssl.client.auth": "required",
        "sasl.enabled.mechanisms": ",".join(MECHANISMS),
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
        "listener.name.sasl_ssl.plain.sasl.jaas.config": PLAIN_JAAS,
        "aioshare.scram.credentials": SCRAM_SEED,
        **extra,
    }


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def broker(pki: Pki) -> Iterator[ThreadedBroker]:
    with ThreadedBroker(security_config(pki)) as threaded:
        yield threaded


def bootstrap(broker: ThreadedBroker, listener: str) -> str:
    async def get(embedded: EmbeddedBroker) -> str:
        return embedded.bootstrap(listener)

    return broker.call(get)


def address(broker: ThreadedBroker, listener: str) -> tuple[str, int]:
    host, _, port = bootstrap(broker, listener).partition(",")[0].rpartition(":")
    return host, int(port)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        (
            {"listeners": "PLAINTEXT://:0,PLAINTEXT://:0"},
            "listeners",
            "Each listener must have a different name",
        ),
        ({"listeners": "INTERNAL://:0"}, "listeners", "No security protocol defined for listener INTERNAL"),
        (
            {"listeners": "PLAINTEXT//:9092"},
            "listeners",
            "Unable to parse PLAINTEXT//:9092 to a broker endpoint",
        ),
        (
            {"listeners": "PLAINTEXT://:9092,SSL://:9092"},
            "listeners",
            "Each listener must have a different port",
        ),
        (
            {"listener.security.protocol.map": "INTERNAL:TLS"},
            "listener.security.protocol.map",
            "Invalid security protocol `TLS` defined in listener.security.protocol.map",
        ),
        (
            {"listener.name.ssl.ssl.client.auth": "maybe"},
            "listener.name.ssl.ssl.client.auth",
            "String must be one of",
        ),
        ({"listener.name.ssl.ssl.bogus": "1"}, "listener.name.ssl.ssl.bogus", "Unknown broker config name"),
        (
            {"aioshare.scram.credentials": "SCRAM-SHA-1=[name=a,password=p]"},
            "aioshare.scram.credentials",
            "[hidden]",
        ),
    ],
)
def test_listener_configs_are_validated_like_kafka(config: dict[str, str], key: str, message: str) -> None:
    with pytest.raises(InvalidBrokerConfig) as caught:
        BrokerConfig.from_mapping(config)
    assert caught.value.key == key
    assert message in str(caught.value)
    assert "p]" not in str(caught.value)  # a password is never echoed


def test_listener_names_map_to_protocols(pki: Pki) -> None:
    config = BrokerConfig.from_mapping(
        {
            "listeners": "INTERNAL://127.0.0.1:0,external://[::1]:0",
            "listener.security.protocol.map": "INTERNAL:PLAINTEXT, EXTERNAL:SASL_SSL",
        }
    )
    specs = config.listener_specs("127.0.0.1", 0)
    assert [(s.name, s.protocol.value, s.host) for s in specs] == [
        ("INTERNAL", "PLAINTEXT", "127.0.0.1"),
        ("EXTERNAL", "SASL_SSL", "::1"),
    ]


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        (
            {"ssl.keystore.location": "/nonexistent/keystore.pem"},
            "ssl.keystore.location",
            "Failed to load SSL keystore",
        ),
        ({"ssl.keystore.type": "JKS"}, "ssl.keystore.type", "PEM key stores only"),
        ({"ssl.keystore.password": "x"}, "ssl.keystore.password", "only key password may be specified"),
        ({"sasl.enabled.mechanisms": "GSSAPI"}, "sasl.enabled.mechanisms", "not GSSAPI"),
        (
            {"listener.name.sasl_ssl.plain.sasl.jaas.config": None},
            "listener.name.sasl_ssl.plain.sasl.jaas.config",
            "Could not find a 'KafkaServer' or 'sasl_ssl.KafkaServer' entry",
        ),
        (
            {"listener.name.sasl_ssl.plain.sasl.jaas.config": 'PlainLoginModule required user_a="x"'},
            "listener.name.sasl_ssl.plain.sasl.jaas.config",
            "must end with ';'",
        ),
        ({"listeners": "SSL://127.0.0.1:47000,SASL_SSL://127.0.0.1:47001"}, "listeners", "leave a gap"),
    ],
)
def test_security_settings_fail_at_construction(
    pki: Pki, change: dict[str, str | None], key: str, message: str
) -> None:
    config: dict[str, str] = security_config(pki)
    for name, value in change.items():
        if value is None:
            config.pop(name)
        else:
            config[name] = value
    with pytest.raises(InvalidBrokerConfig) as caught:
        EmbeddedBroker(nodes=2, config=config)
    assert caught.value.key == key, caught.value
    assert message in str(caught.value)


async def test_cli_announces_every_bound_listener(pki: Pki) -> None:
    args = [f"{k}={v}" for k, v in security_config(pki).items()]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aioshare.cli.main",
        "broker",
        "--nodes",
        "2",
        *(arg for pair in args for arg in ("--config", pair)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(TIMEOUT):
            line = (await process.stdout.readline()).decode().strip()
        match = re.fullmatch(r"aioshare broker listening on (\S+)", line)
        assert match, line
        endpoints = [re.fullmatch(r"([A-Z_]+)://127\.0\.0\.1:(\d+)", e) for e in match.group(1).split(",")]
        assert all(endpoints), line
        names = [m.group(1) for m in endpoints if m]
        assert names == ["PLAINTEXT"] * 2 + ["SSL"] * 2 + ["SASL_PLAINTEXT"] * 2 + ["SASL_SSL"] * 2
        ports = {m.group(1) + str(i % 2): int(m.group(2)) for i, m in enumerate(endpoints) if m}
        assert len(set(ports.values())) == 8 and 0 not in ports.values()
        # Node 2's SASL_SSL endpoint serves SASL_SSL, and Metadata names that listener's ports.
        conn = await Connection.open(
            "127.0.0.1",
            ports["SASL_SSL1"],
            ssl=pki.client_context(),
            sasl=SaslConfig("SCRAM-SHA-512", ALICE, PASSWORD),
        )
        try:
            response = await conn.send(MetadataRequest(topics=[]), response_type=MetadataResponse)
            assert sorted(b.port for b in response.brokers) == sorted(
                [ports["SASL_SSL0"], ports["SASL_SSL1"]]
            )
        finally:
            await conn.close()
    finally:
        process.terminate()
        async with asyncio.timeout(TIMEOUT):
            await process.communicate()
    assert process.returncode == 0


# ---------------------------------------------------------------------------------- our client


def client_security(listener: str, pki: Pki, mechanism: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if listener in ("SSL", "SASL_SSL"):
        options["ssl"] = pki.client_context(cert="alice" if listener == "SSL" else None)
    if listener.startswith("SASL"):
        options["sasl"] = SaslConfig(mechanism, ALICE, PASSWORD)
    return options


@pytest.mark.parametrize(
    ("listener", "mechanism"),
    [
        ("PLAINTEXT", ""),
        ("SSL", ""),
        ("SASL_PLAINTEXT", "PLAIN"),
        ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
        ("SASL_SSL", "PLAIN"),
        ("SASL_SSL", "SCRAM-SHA-256"),
        ("SASL_SSL", "SCRAM-SHA-512"),
    ],
)
async def test_our_share_consumer_on_each_listener(
    broker: ThreadedBroker, pki: Pki, listener: str, mechanism: str
) -> None:
    topic = await broker.create_topic(unique("ours"))
    group = unique("ours")
    security = client_security(listener, pki, mechanism)
    servers = bootstrap(broker, listener)
    async with ShareAdmin(servers, **security) as admin:
        await admin.alter_group_config(group, {"share.auto.offset.reset": "earliest"})
    await broker.produce(topic, [f"v{i}" for i in range(5)])
    consumer = ShareConsumer(bootstrap_servers=servers, group_id=group, fetch_max_wait=0.1, **security)
    consumer.subscribe([topic])
    seen: list[bytes] = []
    async with consumer:
        async with asyncio.timeout(TIMEOUT):
            while len(seen) < 5:
                for message in await consumer.getmany(timeout=0.5):
                    seen.append(message.value or b"")
                    message.accept()
        results = await consumer.commit()
    assert sorted(seen) == [f"v{i}".encode() for i in range(5)]
    assert all(result is None for result in results.values())


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_our_client_wrong_password_is_refused(broker: ThreadedBroker, pki: Pki, mechanism: str) -> None:
    host, port = address(broker, "SASL_SSL")
    with pytest.raises(SaslAuthenticationFailedError) as caught:
        async with asyncio.timeout(TIMEOUT):
            await Connection.open(
                host, port, ssl=pki.client_context(), sasl=SaslConfig(mechanism, ALICE, "nope")
            )
    expected = (
        PLAIN_FAILURE
        if mechanism == "PLAIN"
        else f"Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"
    )
    assert expected in str(caught.value)


# ---------------------------------------------------------------------------------- other clients


def aiokafka_security(pki: Pki, mechanism: str, password: str) -> dict[str, Any]:
    return {
        "security_protocol": "SASL_SSL",
        "ssl_context": pki.client_context(),
        "sasl_mechanism": mechanism,
        "sasl_plain_username": ALICE,
        "sasl_plain_password": password,
    }


@pytest.mark.interop
@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_aiokafka_over_sasl_ssl(broker: ThreadedBroker, pki: Pki, mechanism: str) -> None:
    topic = await broker.create_topic(unique("aiokafka"))
    servers = bootstrap(broker, "SASL_SSL")
    security = aiokafka_security(pki, mechanism, PASSWORD)
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", **security)
    async with asyncio.timeout(TIMEOUT):
        await producer.start()
        try:
            for i in range(5):
                await producer.send_and_wait(topic, f"a{i}".encode(), partition=0)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=servers, enable_auto_commit=False, auto_offset_reset="earliest", **security
        )
        await consumer.start()
        try:
            consumer.assign([AioTopicPartition(topic, 0)])
            values: list[bytes] = []
            while len(values) < 5:
                batches = await consumer.getmany(timeout_ms=500)
                values += [r.value for records in batches.values() for r in records if r.value is not None]
        finally:
            await consumer.stop()
    assert values == [f"a{i}".encode() for i in range(5)]


@pytest.mark.interop
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
async def test_aiokafka_wrong_password_is_refused(
    broker: ThreadedBroker, pki: Pki, mechanism: str, caplog: pytest.LogCaptureFixture
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap(broker, "SASL_SSL"), **aiokafka_security(pki, mechanism, "nope")
    )
    with pytest.raises((AioKafkaError, AioConnectionError)):
        async with asyncio.timeout(TIMEOUT):
            await producer.start()
    await producer.stop()
    # aiokafka raises "Unable to bootstrap" and logs the broker's SaslAuthenticate error.
    expected = (
        PLAIN_FAILURE
        if mechanism == "PLAIN"
        else f"Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"
    )
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("aiokafka")]
    assert any(f"[Error 58] SaslAuthenticationFailed: {expected}" in m for m in logged), logged


def librdkafka_config(servers: str, pki: Pki, mechanism: str, password: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": servers,
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(pki.ca),
        "sasl.mechanism": mechanism,
        "sasl.username": ALICE,
        "sasl.password": password,
    }


@pytest.mark.interop
@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_librdkafka_over_sasl_ssl(broker: ThreadedBroker, pki: Pki, mechanism: str) -> None:
    topic = await broker.create_topic(unique("rdkafka"))
    config = librdkafka_config(bootstrap(broker, "SASL_SSL"), pki, mechanism, PASSWORD)

    def run() -> list[bytes]:
        producer: Any = confluent_kafka.Producer({**config, "linger.ms": 1})
        for i in range(5):
            producer.produce(topic, f"r{i}".encode(), partition=0)
        assert producer.flush(TIMEOUT) == 0
        consumer: Any = confluent_kafka.Consumer(
            {**config, "group.id": unique("rd"), "enable.auto.commit": False, "auto.offset.reset": "earliest"}
        )
        try:
            consumer.assign([confluent_kafka.TopicPartition(topic, 0, 0)])
            values: list[bytes] = []
            for message in consumer.consume(5, timeout=TIMEOUT):
                assert message.error() is None, message.error()
                values.append(message.value())
            return values
        finally:
            consumer.close()

    async with asyncio.timeout(TIMEOUT * 2):
        assert await asyncio.to_thread(run) == [f"r{i}".encode() for i in range(5)]


@pytest.mark.interop
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
async def test_librdkafka_wrong_password_is_refused(broker: ThreadedBroker, pki: Pki, mechanism: str) -> None:
    errors: list[Any] = []
    config = librdkafka_config(bootstrap(broker, "SASL_SSL"), pki, mechanism, "nope")

    def run() -> None:
        producer: Any = confluent_kafka.Producer({**config, "error_cb": errors.append, "log_level": 0})
        # The producer connects to the bootstrap server at once and is refused.
        deadline = time.monotonic() + 15
        while not errors and time.monotonic() < deadline:  # error_cb runs from poll()
            producer.poll(0.2)

    async with asyncio.timeout(TIMEOUT):
        await asyncio.to_thread(run)
    codes = {error.code() for error in errors}
    assert confluent_kafka.KafkaError._AUTHENTICATION in codes, errors
    if mechanism == "PLAIN":
        assert any(PLAIN_FAILURE in error.str() for error in errors), errors


@pytest.fixture(scope="module")
def java_classes() -> Path:
    return require(lambda: compile_java([JAVA_PROBE], DEFAULT_KAFKA_VERSION))


def run_java(classes: Path, servers: str, topic: str, records: int, *settings: str) -> dict[str, Any]:
    command = java_command(
        DEFAULT_KAFKA_VERSION, "SecureProbe", servers, topic, str(records), *settings, classes=classes
    )
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from Java ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def java_settings(pki: Pki, mechanism: str, password: str) -> list[str]:
    module = (
        "org.apache.kafka.common.security.plain.PlainLoginModule"
        if mechanism == "PLAIN"
        else "org.apache.kafka.common.security.scram.ScramLoginModule"
    )
    return [
        "security.protocol=SASL_SSL",
        f"sasl.mechanism={mechanism}",
        f'sasl.jaas.config={module} required username="{ALICE}" password="{password}";',
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={pki.ca}",
    ]


@pytest.mark.interop
async def test_java_client_over_sasl_ssl_and_wrong_password(
    broker: ThreadedBroker, pki: Pki, java_classes: Path
) -> None:
    topic = await broker.create_topic(unique("java"))
    servers = bootstrap(broker, "SASL_SSL")
    # Both JVMs at once: start-up is most of their time.
    good, bad = await asyncio.gather(
        asyncio.to_thread(
            run_java, java_classes, servers, topic, 5, *java_settings(pki, "SCRAM-SHA-256", PASSWORD)
        ),
        asyncio.to_thread(run_java, java_classes, servers, topic, 1, *java_settings(pki, "PLAIN", "nope")),
    )
    assert good == {"produced": 5, "consumed": 5}
    assert bad["error"] == "SaslAuthenticationException", bad
    assert PLAIN_FAILURE in bad["message"]


# ---------------------------------------------------------------------------------- TLS refusals


async def wait_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the broker sends until it closes the connection (reset counts as closed)."""
    data = b""
    async with asyncio.timeout(TIMEOUT):
        try:
            while chunk := await reader.read(65536):
                data += chunk
        except (ConnectionResetError, ssl.SSLError):
            pass
    return data


async def test_plaintext_client_on_a_tls_port_fails_and_others_are_served(
    broker: ThreadedBroker, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = address(broker, "SASL_SSL")
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(encode_request(ApiVersionsRequest(), 3, 1, "plaintext-client"))
    await writer.drain()
    assert await wait_closed(reader) == b""  # no Kafka answer, just a closed connection
    writer.close()
    # Our client says what went wrong instead of hanging.
    with pytest.raises(KafkaConnectionError):
        async with asyncio.timeout(TIMEOUT):
            await Connection.open(host, port, sasl=SaslConfig("PLAIN", ALICE, PASSWORD))
    conn = await Connection.open(
        host, port, ssl=pki.client_context(), sasl=SaslConfig("PLAIN", ALICE, PASSWORD)
    )
    try:
        await conn.send(MetadataRequest(topics=[]), response_type=MetadataResponse)
    finally:
        await conn.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("cert", [None, "mallory"])
async def test_mutual_tls_required_refuses_a_client_without_a_trusted_cert(
    broker: ThreadedBroker, pki: Pki, cert: str | None
) -> None:
    host, port = address(broker, "SSL")
    with pytest.raises(KafkaConnectionError):
        async with asyncio.timeout(TIMEOUT):
            conn = await Connection.open(host, port, ssl=pki.client_context(cert=cert))
            # TLS 1.3: the client's handshake ends before the broker checks its certificate, so
            # the refusal shows at the first request at the latest.
            await conn.send(MetadataRequest(topics=[]), response_type=MetadataResponse)
    conn = await Connection.open(host, port, ssl=pki.client_context(cert="alice"))
    try:
        await conn.send(MetadataRequest(topics=[]), response_type=MetadataResponse)
    finally:
        await conn.close()


async def test_mutual_tls_requested_accepts_a_client_without_a_cert(pki: Pki) -> None:
    config = security_config(pki, **{"listener.name.ssl.ssl.client.auth": "requested"})
    async with EmbeddedBroker(config=config) as embedded:
        host, port = embedded.address(1, "SSL")
        for cert in (None, "alice"):
            conn = await Connection.open(host, port, ssl=pki.client_context(cert=cert))
            try:
                await conn.send(MetadataRequest(topics=[]), response_type=MetadataResponse)
            finally:
                await conn.close()
        with pytest.raises(KafkaConnectionError):
            conn = await Connection.open(host, port, ssl=pki.client_context(cert="mallory"))
            await conn.send(MetadataRequest(topics=[]), response_type=MetadataResponse)


# ---------------------------------------------------------------------------------- the SASL protocol


class Raw:
    """A bare Kafka connection: requests at explicit versions, frames read as they come."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.correlation = 0

    @classmethod
    async def open(cls, address: tuple[str, int]) -> Raw:
        return cls(*await asyncio.open_connection(*address))

    async def send(self, request: Any, version: int) -> Any:
        self.correlation += 1
        self.writer.write(encode_request(request, version, self.correlation, "raw"))
        frame = await self.frame()
        return decode_response(frame, request.API_KEY, version)

    async def frame(self) -> bytes:
        async with asyncio.timeout(TIMEOUT):
            (size,) = struct.unpack(">i", await self.reader.readexactly(4))
            return await self.reader.readexactly(size)

    async def closed(self) -> bool:
        return await wait_closed(self.reader) == b""

    def close(self) -> None:
        self.writer.close()


def plain_token(user: str, password: str) -> bytes:
    return f"\0{user}\0{password}".encode()


@pytest.mark.parametrize("first", ["metadata", "apiversions-then-metadata"])
async def test_requests_before_authentication_close_the_connection(
    broker: ThreadedBroker, first: str
) -> None:
    raw = await Raw.open(address(broker, "SASL_PLAINTEXT"))
    try:
        if first == "apiversions-then-metadata":
            versions = await raw.send(
                ApiVersionsRequest(client_software_name="raw", client_software_version="1"), 3
            )
            assert versions.error_code == 0
            keys = {k.api_key: (k.min_version, k.max_version) for k in versions.api_keys}
            assert keys[17] == (0, 1) and keys[36] == (0, 2)
        raw.writer.write(encode_request(MetadataRequest(topics=[]), 12, 99, "raw"))
        assert await raw.closed()
    finally:
        raw.close()


async def test_unsupported_mechanism_is_answered_then_closed(broker: ThreadedBroker) -> None:
    raw = await Raw.open(address(broker, "SASL_PLAINTEXT"))
    try:
        response = await raw.send(SaslHandshakeRequest(mechanism="GSSAPI"), 1)
        assert isinstance(response, SaslHandshakeResponse)
        assert response.error_code == ErrorCode.UNSUPPORTED_SASL_MECHANISM
        assert response.mechanisms == list(MECHANISMS)
        assert await raw.closed()
    finally:
        raw.close()


async def test_wrong_password_answer_then_closed_connection(broker: ThreadedBroker) -> None:
    raw = await Raw.open(address(broker, "SASL_PLAINTEXT"))
    try:
        assert (await raw.send(SaslHandshakeRequest(mechanism="PLAIN"), 1)).error_code == 0
        response = await raw.send(SaslAuthenticateRequest(auth_bytes=plain_token(ALICE, "nope")), 2)
        assert isinstance(response, SaslAuthenticateResponse)
        assert response.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
        assert response.error_message == PLAIN_FAILURE
        assert await raw.closed()
    finally:
        raw.close()


async def test_handshake_v0_then_bare_tokens(broker: ThreadedBroker) -> None:
    raw = await Raw.open(address(broker, "SASL_PLAINTEXT"))
    try:
        assert (await raw.send(SaslHandshakeRequest(mechanism="PLAIN"), 0)).error_code == 0
        token = plain_token(ALICE, PASSWORD)
        raw.writer.write(struct.pack(">i", len(token)) + token)
        assert await raw.frame() == b""  # PLAIN's (empty) challenge, size-prefixed, no header
        metadata = await raw.send(MetadataRequest(topics=[]), 12)
        assert metadata.brokers
        # Authenticated: another SaslHandshake goes to KafkaApis (v0 clients cannot re-authenticate).
        assert (
            await raw.send(SaslHandshakeRequest(mechanism="PLAIN"), 1)
        ).error_code == ErrorCode.ILLEGAL_SASL_STATE
    finally:
        raw.close()


async def test_sasl_requests_on_a_plaintext_listener_are_illegal(broker: ThreadedBroker) -> None:
    raw = await Raw.open(address(broker, "PLAINTEXT"))
    try:
        handshake = await raw.send(SaslHandshakeRequest(mechanism="PLAIN"), 1)
        assert handshake.error_code == ErrorCode.ILLEGAL_SASL_STATE
        authenticate = await raw.send(SaslAuthenticateRequest(auth_bytes=b""), 2)
        assert authenticate.error_code == ErrorCode.ILLEGAL_SASL_STATE
        assert (
            authenticate.error_message == "SaslAuthenticate request received after successful authentication"
        )
    finally:
        raw.close()


REAUTH_MS = 600


async def test_session_lifetime_expiry_and_reauthentication(pki: Pki) -> None:
    """KIP-368: the lifetime is reported; an expired session is closed unless re-authenticated."""
    config = security_config(
        pki, **{"listener.name.sasl_plaintext.plain.connections.max.reauth.ms": str(REAUTH_MS)}
    )
    async with EmbeddedBroker(config=config) as embedded:
        address_ = embedded.address(1, "SASL_PLAINTEXT")

        async def authenticated(raw: Raw) -> int:
            assert (await raw.send(SaslHandshakeRequest(mechanism="PLAIN"), 1)).error_code == 0
            response = await raw.send(SaslAuthenticateRequest(auth_bytes=plain_token(ALICE, PASSWORD)), 1)
            assert response.error_code == 0, response
            lifetime: int = response.session_lifetime_ms
            return lifetime

        loop = asyncio.get_running_loop()
        stale, renewed = await Raw.open(address_), await Raw.open(address_)
        try:
            assert await authenticated(stale) == REAUTH_MS
            assert await authenticated(renewed) == REAUTH_MS
            expiry = loop.time() + REAUTH_MS / 1000
            # Half-way through, re-authenticate one connection: its session starts again.
            await asyncio.sleep(REAUTH_MS / 1000 / 2)
            assert await authenticated(renewed) == REAUTH_MS
            # Wait out the first sessions' lifetime (a deadline, not a race).
            await asyncio.sleep(max(0.0, expiry - loop.time()) + 0.05)
            assert (await renewed.send(MetadataRequest(topics=[]), 12)).brokers
            stale.writer.write(encode_request(MetadataRequest(topics=[]), 12, 50, "raw"))
            assert await stale.closed()
        finally:
            stale.close()
            renewed.close()
        # Our client re-authenticates by itself before the session ends.
        conn = await Connection.open(*address_, sasl=SaslConfig("PLAIN", ALICE, PASSWORD))
        try:
            for _ in range(3):
                await conn.send(MetadataRequest(topics=[]), response_type=MetadataResponse)
                await asyncio.sleep(REAUTH_MS / 1000 / 2)
            await conn.send(MetadataRequest(topics=[]), response_type=MetadataResponse)
        finally:
            await conn.close()


async def test_reauthentication_cannot_change_the_principal(pki: Pki) -> None:
    jaas = PLAIN_JAAS.replace(";", ' user_bob="bob-secret";')
    config = security_config(pki, **{"listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas})
    async with EmbeddedBroker(config=config) as embedded:
        raw = await Raw.open(embedded.address(1, "SASL_PLAINTEXT"))
        try:
            for user, password in ((ALICE, PASSWORD), ("bob", "bob-secret")):
                assert (await raw.send(SaslHandshakeRequest(mechanism="PLAIN"), 1)).error_code == 0
                response = await raw.send(SaslAuthenticateRequest(auth_bytes=plain_token(user, password)), 2)
            assert response.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
            assert (
                response.error_message
                == "Cannot change principals during re-authentication from User.alice: User.bob"
            )
            assert await raw.closed()
        finally:
            raw.close()


# ---------------------------------------------------------------------------------- the fixtures


@pytest.fixture
def aioshare_broker_config(pki: Pki) -> dict[str, str]:
    return security_config(pki)


async def test_pytest_fixtures_serve_secured_listeners(
    aioshare_broker: ThreadedBroker, aioshare_topic: Callable[..., Awaitable[str]], pki: Pki
) -> None:
    topic = await aioshare_topic()
    # aioshare_produce and the other helpers use the first listener (PLAINTEXT here).
    assert await aioshare_broker.produce(topic, [b"x"]) == [0]
    host, port = address(aioshare_broker, "SASL_SSL")
    conn = await Connection.open(
        host, port, ssl=pki.client_context(), sasl=SaslConfig("SCRAM-SHA-256", ALICE, PASSWORD)
    )
    try:
        response = await conn.send(
            MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=topic)]),
            response_type=MetadataResponse,
        )
        assert response.topics[0].error_code == 0
        assert {b.port for b in response.brokers} == {port}
    finally:
        await conn.close()
