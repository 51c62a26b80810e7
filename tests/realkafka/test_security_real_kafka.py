"""aioshare against a real Kafka listener with TLS, SASL and ACLs, every tested Kafka version.

One cluster per version serves the module.  It has five listeners:

* ``PLAINTEXT`` (first: readiness, setup and producing) - its principal ``User:ANONYMOUS`` is a
  super user, as is every broker-internal connection;
* ``SSL`` with client certificates required, mapped to principals by their CN
  (``ssl.principal.mapping.rules``): the generated client certificate is ``User:alice``;
* ``SASL_SSL`` with PLAIN (users from the listener's JAAS config) and SCRAM-SHA-256/512 (alice's
  credentials are written into the cluster's bootstrap metadata by ``kafka-storage format
  --add-scram``, so they exist before the broker serves anyone).
* ``MISNAMED`` (SSL) whose certificate names localhost but not the 127.0.0.1 it advertises;
* ``REAUTH`` (SASL_PLAINTEXT, PLAIN) whose sessions last ``REAUTH_MS`` (KIP-368
  ``connections.max.reauth.ms``): a client must re-authenticate before then or be disconnected.

Certificates (a CA, the broker's for 127.0.0.1/localhost, alice's client certificate, and an
unrelated CA for the wrong-CA scenario) are made by the ``openssl`` binary for each module run;
Kafka reads them as PEM key stores.  ``StandardAuthorizer`` enforces ACLs created with Kafka's
``AclCommand``: alice may read and describe topics and groups prefixed ``sec-alice-``; bob may
read and describe those prefixed ``sec-bob-``, except that a DENY takes reading topics prefixed
``sec-bob-noread-`` from him (describing them is still allowed).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aioshare.admin import ShareAdmin
from aioshare.client.sasl import SaslConfig
from aioshare.protocol.errors import (
    GroupAuthorizationFailedError,
    KafkaError,
    SaslAuthenticationFailedError,
    SslAuthenticationError,
    TopicAuthorizationFailedError,
)
from aioshare.share import ShareConsumer, TopicPartition
from aioshare.testing.kafka import TESTED_KAFKA_VERSIONS
from aioshare.testing.kafka.cluster import KafkaCluster
from aioshare.testing.kafka.java import java_command
from aioshare.testing.kafka.requirement import in_ci, require
from tests.conftest import started as report_startup

confluent_kafka = pytest.importorskip("confluent_kafka")

ALICE, ALICE_PASSWORD = "alice", "alice-secret"
BOB, BOB_PASSWORD = "bob", "bob-secret"
ALICE_PREFIX, BOB_PREFIX, BOB_NO_READ_PREFIX = "sec-alice-", "sec-bob-", "sec-bob-noread-"
SCRAM = ("SCRAM-SHA-256", "SCRAM-SHA-512")
# Joining a share group and initialising share state take a few half-second heartbeats.
CONSUME_TIMEOUT = 45.0
# How long a refusal (bad credentials, bad certificate, missing ACL) may take to surface: a
# couple of round trips and Kafka's 100 ms failed-authentication delay, never a retry loop.
REFUSAL_TIMEOUT = 15.0
CLOSE_AFTER_FAILURE = 2.0
TOOL_TIMEOUT = 120.0
LISTENERS = {
    "PLAINTEXT": "PLAINTEXT",
    "SSL": "SSL",
    "SASL_SSL": "SASL_SSL",
    "MISNAMED": "SSL",
    "REAUTH": "SASL_PLAINTEXT",
}
REAUTH_MS = 3000


# -- certificates --------------------------------------------------------------------------------

_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[server_dns_only]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA that signed the broker's and alice's certificates (PEM)
    other_ca: Path  # a CA that signed nothing here: trusting only it must fail
    broker_keystore: Path  # Kafka's PEM key store: the broker's key, then its chain
    localhost_keystore: Path  # the same for a certificate naming localhost, not 127.0.0.1
    alice_cert: Path
    alice_key: Path

    def client_context(self, *, ca: Path | None = None, client_cert: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(ca or self.ca))
        if client_cert:
            context.load_cert_chain(str(self.alice_cert), str(self.alice_key))
        return context


def _openssl(directory: Path, *args: str) -> None:
    done = subprocess.run(
        ["openssl", *args], cwd=directory, capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


def make_pki(directory: Path) -> Pki:
    """P-256 keys (fast to make), PKCS#8 unencrypted, as Kafka's PEM key stores read them."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "openssl.cnf").write_text(_OPENSSL_CONFIG)
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for name in ("ca", "other-ca"):
        _openssl(
            directory,
            *("req", "-x509", "-config", "openssl.cnf", "-extensions", "ca", *new_key),
            *("-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2"),
            *("-subj", f"/CN=aioshare test {name}"),
        )
    for serial, (name, cn, extensions) in enumerate(
        [
            ("broker", "localhost", "server"),
            ("broker-dns", "localhost", "server_dns_only"),
            ("alice", ALICE, "client"),
        ],
        start=1,
    ):
        _openssl(
            directory,
            *("req", "-new", "-config", "openssl.cnf", *new_key),
            *("-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}"),
        )
        _openssl(
            directory,
            *("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key"),
            *("-set_serial", str(serial), "-days", "2", "-out", f"{name}.pem"),
            *("-extfile", "openssl.cnf", "-extensions", extensions),
        )
    for name in ("broker", "broker-dns"):
        (directory / f"{name}-keystore.pem").write_text(
            "".join((directory / f).read_text() for f in (f"{name}.key", f"{name}.pem", "ca.pem"))
        )
    return Pki(
        ca=directory / "ca.pem",
        other_ca=directory / "other-ca.pem",
        broker_keystore=directory / "broker-keystore.pem",
        localhost_keystore=directory / "broker-dns-keystore.pem",
        alice_cert=directory / "alice.pem",
        alice_key=directory / "alice.key",
    )


# -- the cluster -----------------------------------------------------------------------------------


def security_config(pki: Pki) -> dict[str, str]:
    plain_users = " ".join(f'user_{u}="{p}"' for u, p in ((ALICE, ALICE_PASSWORD), (BOB, BOB_PASSWORD)))
    scram_module = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    return {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(pki.broker_keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki.ca),
        "listener.name.ssl.ssl.client.auth": "required",
        # MISNAMED advertises 127.0.0.1 like every listener here, but its certificate only
        # names localhost: a client bootstrapping via localhost gets in, then cannot verify
        # the broker it is sent to (a classic advertised.listeners mistake).
        "listener.name.misnamed.ssl.keystore.type": "PEM",
        "listener.name.misnamed.ssl.keystore.location": str(pki.localhost_keystore),
        "ssl.principal.mapping.rules": "RULE:^CN=([^,]+)$/$1/,DEFAULT",
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        "listener.name.sasl_ssl.plain.sasl.jaas.config": (
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
        ),
        "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": scram_module,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram_module,
        "listener.name.reauth.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.reauth.plain.sasl.jaas.config": (
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
        ),
        "listener.name.reauth.plain.connections.max.reauth.ms": str(REAUTH_MS),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        # ANONYMOUS: the PLAINTEXT listener (setup, producing) and the broker's own connections.
        "super.users": "User:ANONYMOUS;User:admin",
    }


def scram_format_args() -> tuple[str, ...]:
    return tuple(
        arg
        for mechanism in SCRAM
        for arg in ("--add-scram", f"{mechanism}=[name={ALICE},password={ALICE_PASSWORD}]")
    )


def acl_commands(version: str, bootstrap: str) -> list[list[str]]:
    """Kafka's AclCommand (org.apache.kafka.tools.AclCommand in 4.2 and 4.4), one per rule set."""

    def acl(permission: str, user: str, operations: Sequence[str], *resources: str) -> list[str]:
        ops = [arg for operation in operations for arg in ("--operation", operation)]
        return java_command(
            version,
            "org.apache.kafka.tools.AclCommand",
            *("--bootstrap-server", bootstrap, "--add", "--resource-pattern-type", "prefixed"),
            *(f"--{permission}-principal", f"User:{user}", *ops, *resources),
        )

    return [
        acl("allow", ALICE, ["Read", "Describe"], "--topic", ALICE_PREFIX, "--group", ALICE_PREFIX),
        acl("allow", BOB, ["Read", "Describe"], "--topic", BOB_PREFIX, "--group", BOB_PREFIX),
        acl("deny", BOB, ["Read"], "--topic", BOB_NO_READ_PREFIX),
    ]


def run_concurrently(commands: Sequence[list[str]], timeout: float) -> None:
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for command in commands
    ]
    try:
        deadline = time.monotonic() + timeout
        for process, command in zip(processes, commands, strict=True):
            output, _ = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            if process.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{output}")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


@dataclass
class SecureKafka:
    cluster: KafkaCluster
    pki: Pki

    @property
    def plaintext(self) -> str:
        return self.cluster.bootstrap("PLAINTEXT")

    @property
    def ssl_bootstrap(self) -> str:
        return self.cluster.bootstrap("SSL")

    @property
    def sasl_ssl(self) -> str:
        return self.cluster.bootstrap("SASL_SSL")

    @property
    def reauth(self) -> str:
        return self.cluster.bootstrap("REAUTH")

    @property
    def misnamed_via_localhost(self) -> str:
        return self.cluster.bootstrap("MISNAMED").replace("127.0.0.1", "localhost")


@pytest.fixture(scope="module", params=TESTED_KAFKA_VERSIONS, ids=lambda v: f"kafka-{v}")
def secure_kafka(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureKafka]:
    if shutil.which("openssl") is None:
        if in_ci():
            pytest.fail("the TLS scenarios need the openssl binary", pytrace=False)
        pytest.skip("the TLS scenarios need the openssl binary")
    version: str = request.param
    pki = make_pki(tmp_path_factory.mktemp(f"pki-{version}"))
    cluster = KafkaCluster(
        version,
        listeners=LISTENERS,
        broker_config=security_config(pki),
        format_args=scram_format_args(),
    )
    began = time.monotonic()
    require(cluster.start)
    report_startup(cluster)
    try:
        run_concurrently(acl_commands(version, cluster.bootstrap("PLAINTEXT")), TOOL_TIMEOUT)
        listeners = ", ".join(f"{name} {cluster.bootstrap(name)}" for name in LISTENERS)
        print(
            f"\nsecure Kafka {version} ready in {cluster.startup_seconds:.1f} s, with ACLs after "
            f"{time.monotonic() - began:.1f} s: {listeners}"
        )
        yield SecureKafka(cluster, pki)
    except BaseException:
        print(cluster.log_tail(lines=80))
        raise
    finally:
        cluster.stop()
        cluster.cleanup()


@pytest.fixture
async def super_admin(secure_kafka: SecureKafka) -> AsyncIterator[ShareAdmin]:
    async with ShareAdmin(secure_kafka.plaintext, request_timeout=20.0) as admin:
        yield admin


# -- helpers -------------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def new_topic(admin: ShareAdmin, prefix: str = ALICE_PREFIX, partitions: int = 2) -> str:
    name = unique(prefix)
    await admin.create_topic(name, partitions, replication_factor=1)
    return name


async def new_group(admin: ShareAdmin, prefix: str = ALICE_PREFIX) -> str:
    group = unique(prefix)
    await admin.alter_group_config(group, {"share.auto.offset.reset": "earliest"})
    return group


async def produce(bootstrap: str, topic: str, n: int, partitions: int) -> None:
    """``n`` records over PLAINTEXT (a super user), round robin over the partitions."""
    producer: Any = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": False}
    )

    def run() -> int:
        for i in range(n):
            producer.produce(topic, f"job-{i}".encode(), key=str(i).encode(), partition=i % partitions)
        left: int = producer.flush(60)
        return left

    assert await asyncio.to_thread(run) == 0, "records were not acknowledged"


async def consume_all(consumer: ShareConsumer, topic: str, n: int, partitions: int) -> None:
    """Take, accept and commit all ``n`` records; each exactly once, every ack answered None."""
    seen: collections.Counter[tuple[int, int]] = collections.Counter()
    async with asyncio.timeout(CONSUME_TIMEOUT):
        while len(seen) < n:
            for msg in await consumer.getmany(timeout=1.0):
                assert msg.topic == topic
                seen[(msg.partition, msg.offset)] += 1
                msg.accept()
    results = await consumer.commit()
    assert results and all(r is None for r in results.values()), results
    assert set(results) <= {TopicPartition(topic, p) for p in range(partitions)}
    assert sum(seen.values()) == n and max(seen.values()) == 1, seen
    assert {p for p, _ in seen} == set(range(partitions))


async def nothing_left(admin: ShareAdmin, group: str, topic: str, partitions: int) -> None:
    """The group's lag reaches 0 everywhere: every record was accepted for the whole group."""
    expected = dict.fromkeys(range(partitions), 0)
    got: dict[int, int | None] = {}
    try:
        async with asyncio.timeout(20):
            while True:
                offsets = await admin.describe_share_group_offsets(group, [topic])
                got = {tp.partition: info.lag for tp, info in offsets.items() if info.error is None}
                if got == expected:
                    return
                await asyncio.sleep(0.2)
    except TimeoutError:
        pytest.fail(f"the group's lag stayed {got}, expected {expected}")


@contextlib.asynccontextmanager
async def refused_within(seconds: float) -> AsyncIterator[None]:
    """Bounds a step that must fail fast: a hang shows as a test failure, not a stuck run."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        pytest.fail(f"no error within {seconds} s: the client hangs or retries forever")
    finally:
        print(f"refused after {time.monotonic() - started:.2f} s")


async def consumer_error(consumer: ShareConsumer) -> KafkaError:
    """Starts ``consumer`` and polls it until it fails; returns what it raised (start or poll)."""
    try:
        async with refused_within(REFUSAL_TIMEOUT):
            try:
                await consumer.start()
                while True:
                    assert await consumer.getmany(timeout=0.5) == []
            except KafkaError as exc:
                return exc
    finally:
        # Bounded in case a refusal path leaves close() waiting (it must not:
        # test_close_after_a_failed_coordinator_lookup_is_prompt).
        await consumer.close(timeout=CLOSE_AFTER_FAILURE)
    raise AssertionError("unreachable")


N = 200
PARTITIONS = 2


# -- scenarios: the happy paths ------------------------------------------------------------------


async def test_consume_over_mutual_tls(secure_kafka: SecureKafka, super_admin: ShareAdmin) -> None:
    """SSL listener: the client verifies the broker against the CA and presents alice's cert."""
    topic = await new_topic(super_admin, partitions=PARTITIONS)
    group = await new_group(super_admin)
    await produce(secure_kafka.plaintext, topic, N, PARTITIONS)
    context = secure_kafka.pki.client_context(client_cert=True)
    async with ShareConsumer(
        topic, group_id=group, bootstrap_servers=secure_kafka.ssl_bootstrap, ack_mode="explicit", ssl=context
    ) as consumer:
        await consume_all(consumer, topic, N, PARTITIONS)
    await nothing_left(super_admin, group, topic, PARTITIONS)
    # The certificate made the principal User:alice (not a super user): bob's groups are closed.
    error = await consumer_error(
        ShareConsumer(
            topic, group_id=unique(BOB_PREFIX), bootstrap_servers=secure_kafka.ssl_bootstrap, ssl=context
        )
    )
    assert isinstance(error, GroupAuthorizationFailedError), repr(error)


@pytest.mark.parametrize("mechanism", ["PLAIN", *SCRAM])
async def test_consume_over_sasl_ssl(
    secure_kafka: SecureKafka, super_admin: ShareAdmin, mechanism: str
) -> None:
    topic = await new_topic(super_admin, partitions=PARTITIONS)
    group = await new_group(super_admin)
    await produce(secure_kafka.plaintext, topic, N, PARTITIONS)
    async with ShareConsumer(
        topic,
        group_id=group,
        bootstrap_servers=secure_kafka.sasl_ssl,
        ack_mode="explicit",
        ssl=secure_kafka.pki.client_context(),
        sasl=SaslConfig(mechanism, ALICE, ALICE_PASSWORD),
    ) as consumer:
        await consume_all(consumer, topic, N, PARTITIONS)
    await nothing_left(super_admin, group, topic, PARTITIONS)


async def test_share_admin_over_sasl_ssl(secure_kafka: SecureKafka, super_admin: ShareAdmin) -> None:
    """alice's admin sees her groups and their offsets, and only what her ACLs let her describe."""
    topic = await new_topic(super_admin, partitions=PARTITIONS)
    group = await new_group(super_admin)
    await produce(secure_kafka.plaintext, topic, N, PARTITIONS)
    async with ShareConsumer(
        topic, group_id=group, bootstrap_servers=secure_kafka.plaintext, ack_mode="explicit"
    ) as consumer:
        await consume_all(consumer, topic, N, PARTITIONS)
    await nothing_left(super_admin, group, topic, PARTITIONS)
    # A group alice may not describe: the listing leaves it out (Kafka filters, no error).
    hidden = unique(BOB_PREFIX)
    async with ShareConsumer(topic, group_id=hidden, bootstrap_servers=secure_kafka.plaintext) as other:
        assert await other.getmany(timeout=0.2) == []
        async with asyncio.timeout(10):
            while hidden not in {g.group_id for g in await super_admin.list_share_groups()}:  # noqa: ASYNC110 -- broker state
                await asyncio.sleep(0.1)

    async with ShareAdmin(
        secure_kafka.sasl_ssl,
        ssl=secure_kafka.pki.client_context(),
        sasl=SaslConfig("SCRAM-SHA-512", ALICE, ALICE_PASSWORD),
        request_timeout=20.0,
    ) as admin:
        listed = {g.group_id for g in await admin.list_share_groups()}
        assert group in listed
        assert hidden not in listed
        assert all(g.startswith(ALICE_PREFIX) for g in listed), listed
        offsets = await admin.describe_share_group_offsets(group, [topic])
        assert set(offsets) == {TopicPartition(topic, p) for p in range(PARTITIONS)}
        assert all(info.error is None and info.lag == 0 for info in offsets.values()), offsets
        assert {t.name for t in await admin.list_topics()} >= {topic}
        assert all(t.name.startswith(ALICE_PREFIX) for t in await admin.list_topics())


# -- scenarios: refused authentication -----------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", *SCRAM])
async def test_wrong_password_is_a_typed_error(secure_kafka: SecureKafka, mechanism: str) -> None:
    consumer = ShareConsumer(
        "sec-alice-any",
        group_id="sec-alice-any",
        bootstrap_servers=secure_kafka.sasl_ssl,
        ssl=secure_kafka.pki.client_context(),
        sasl=SaslConfig(mechanism, ALICE, "not-the-password"),
    )
    error = await consumer_error(consumer)
    assert isinstance(error, SaslAuthenticationFailedError), repr(error)
    # Kafka's own words: "Authentication failed: Invalid username or password" (PLAIN),
    # "... invalid credentials with SASL mechanism SCRAM-SHA-256" (SCRAM).
    assert "Authentication failed" in error.message, error.message
    if mechanism != "PLAIN":
        assert mechanism in error.message, error.message

    # bob's PLAIN password with SCRAM: he has no SCRAM credentials (they are per mechanism).
    password = "nope" if mechanism == "PLAIN" else BOB_PASSWORD
    async with refused_within(REFUSAL_TIMEOUT):
        with pytest.raises(SaslAuthenticationFailedError, match="Authentication failed"):
            async with ShareAdmin(
                secure_kafka.sasl_ssl,
                ssl=secure_kafka.pki.client_context(),
                sasl=SaslConfig(mechanism, BOB, password),
            ):
                pass


async def test_unknown_ca_is_a_tls_error(secure_kafka: SecureKafka) -> None:
    """The client trusts a CA that did not sign the broker's certificate: a typed TLS error."""
    wrong = secure_kafka.pki.client_context(ca=secure_kafka.pki.other_ca)
    for bootstrap, sasl in (
        (secure_kafka.ssl_bootstrap, None),
        (secure_kafka.sasl_ssl, SaslConfig("PLAIN", ALICE, ALICE_PASSWORD)),
    ):
        consumer = ShareConsumer(
            "sec-alice-any", group_id="sec-alice-any", bootstrap_servers=bootstrap, ssl=wrong, sasl=sasl
        )
        error = await consumer_error(consumer)
        assert isinstance(error, SslAuthenticationError), repr(error)
        assert not error.retriable
        assert "CERTIFICATE_VERIFY_FAILED" in str(error), str(error)
        assert isinstance(error.__cause__, ssl.SSLCertVerificationError), repr(error.__cause__)
    async with refused_within(REFUSAL_TIMEOUT):
        with pytest.raises(SslAuthenticationError, match="CERTIFICATE_VERIFY_FAILED"):
            async with ShareAdmin(
                secure_kafka.sasl_ssl, ssl=wrong, sasl=SaslConfig("PLAIN", ALICE, ALICE_PASSWORD)
            ):
                pass


async def test_missing_client_certificate_is_a_tls_error(secure_kafka: SecureKafka) -> None:
    """The SSL listener requires a client certificate.  Under TLS 1.3 the broker refuses it only
    after the client's side of the handshake is done: the alert ends the first request."""
    consumer = ShareConsumer(
        "sec-alice-any",
        group_id="sec-alice-any",
        bootstrap_servers=secure_kafka.ssl_bootstrap,
        ssl=secure_kafka.pki.client_context(client_cert=False),
    )
    error = await consumer_error(consumer)
    assert isinstance(error, SslAuthenticationError), repr(error)
    # Java's SSLEngine answers with a bad_certificate alert (not TLS 1.3's certificate_required).
    assert "ALERT_BAD_CERTIFICATE" in str(error), str(error)
    assert isinstance(error.__cause__, ssl.SSLError), repr(error.__cause__)


async def test_certificate_not_naming_the_advertised_host_is_a_tls_error(
    secure_kafka: SecureKafka, super_admin: ShareAdmin
) -> None:
    """Bootstrap succeeds (via localhost, which the certificate names); the broker then advertises
    127.0.0.1, which it does not.  The consumer and the admin must say so, not retry forever."""
    topic = await new_topic(super_admin, partitions=1)
    group = await new_group(super_admin)
    context = secure_kafka.pki.client_context()
    error = await consumer_error(
        ShareConsumer(
            topic, group_id=group, bootstrap_servers=secure_kafka.misnamed_via_localhost, ssl=context
        )
    )
    assert isinstance(error, SslAuthenticationError), repr(error)
    assert "IP address mismatch" in str(error), str(error)
    async with ShareAdmin(secure_kafka.misnamed_via_localhost, ssl=context, request_timeout=30.0) as admin:
        async with refused_within(REFUSAL_TIMEOUT):
            with pytest.raises(SslAuthenticationError, match="IP address mismatch"):
                await admin.list_share_groups()


async def test_close_after_a_failed_coordinator_lookup_is_prompt(
    secure_kafka: SecureKafka, super_admin: ShareAdmin
) -> None:
    topic = await new_topic(super_admin, partitions=1)
    group = await new_group(super_admin)  # alice's: bob may not even look its coordinator up
    consumer = bob_consumer(secure_kafka, topic, group)
    await consumer.start()
    try:
        async with refused_within(REFUSAL_TIMEOUT):
            with pytest.raises(GroupAuthorizationFailedError):
                while True:
                    await consumer.getmany(timeout=0.5)
    finally:
        started = time.monotonic()
        await consumer.close(timeout=4.0)
        closed_in = time.monotonic() - started
    assert closed_in < 2.0, f"close() took {closed_in:.1f} s (its timeout: 4 s)"


# -- scenarios: refused authorization -------------------------------------------------------------


def bob_consumer(secure_kafka: SecureKafka, topic: str, group: str) -> ShareConsumer:
    return ShareConsumer(
        topic,
        group_id=group,
        bootstrap_servers=secure_kafka.sasl_ssl,
        ssl=secure_kafka.pki.client_context(),
        sasl=SaslConfig("PLAIN", BOB, BOB_PASSWORD),
        request_timeout=10.0,
    )


async def test_group_without_acl_is_refused(secure_kafka: SecureKafka, super_admin: ShareAdmin) -> None:
    topic = await new_topic(super_admin, partitions=1)
    group = await new_group(super_admin)  # alice's: bob has no ACL on it
    await produce(secure_kafka.plaintext, topic, 5, 1)
    error = await consumer_error(bob_consumer(secure_kafka, topic, group))
    assert isinstance(error, GroupAuthorizationFailedError), repr(error)
    # Kafka's FindCoordinator answer has no ErrorMessage: the client names the group.
    assert repr(group) in str(error), str(error)


async def test_topic_without_acl_is_refused(secure_kafka: SecureKafka, super_admin: ShareAdmin) -> None:
    topic = await new_topic(super_admin, partitions=1)
    group = await new_group(super_admin, BOB_PREFIX)  # bob may use the group, not the topic
    await produce(secure_kafka.plaintext, topic, 5, 1)
    error = await consumer_error(bob_consumer(secure_kafka, topic, group))
    assert isinstance(error, TopicAuthorizationFailedError), repr(error)
    # Kafka's answer has no ErrorMessage: the client names the topic.
    assert topic in str(error), str(error)


async def test_topic_described_but_not_readable_is_refused(
    secure_kafka: SecureKafka, super_admin: ShareAdmin
) -> None:
    """bob may describe the topic (so he joins and gets it assigned) but a DENY forbids reading:
    Kafka refuses the partition in ShareFetch, and the consumer reports it."""
    topic = await new_topic(super_admin, BOB_NO_READ_PREFIX, partitions=1)
    group = await new_group(super_admin, BOB_PREFIX)
    await produce(secure_kafka.plaintext, topic, 5, 1)
    consumer = bob_consumer(secure_kafka, topic, group)
    try:
        async with refused_within(REFUSAL_TIMEOUT):
            await consumer.start()
            with pytest.raises(TopicAuthorizationFailedError) as refused:
                while True:
                    assert await consumer.getmany(timeout=0.5) == []
        assert topic in str(refused.value), str(refused.value)  # Kafka's answer does not name it
        assert consumer.member_epoch > 0, "the heartbeat should have succeeded (topic describable)"
        assert consumer.assignment() == {TopicPartition(topic, 0)}
    finally:
        await consumer.close(timeout=5.0)


async def test_share_admin_denied_operations(secure_kafka: SecureKafka, super_admin: ShareAdmin) -> None:
    topic = await new_topic(super_admin, partitions=1)
    group = await new_group(super_admin)
    async with ShareAdmin(
        secure_kafka.sasl_ssl,
        ssl=secure_kafka.pki.client_context(),
        sasl=SaslConfig("PLAIN", BOB, BOB_PASSWORD),
        request_timeout=10.0,
    ) as admin:
        async with refused_within(REFUSAL_TIMEOUT):
            assert group not in {g.group_id for g in await admin.list_share_groups()}
            assert topic not in {t.name for t in await admin.list_topics()}
            with pytest.raises(TopicAuthorizationFailedError):
                await admin.describe_share_group_offsets(group, [topic])  # the topic's metadata
            with pytest.raises(GroupAuthorizationFailedError):
                await admin.describe_share_group_offsets(group, {topic: [0]})
            with pytest.raises(GroupAuthorizationFailedError):
                await admin.alter_group_config(group, {"share.auto.offset.reset": "latest"})
            with pytest.raises(TopicAuthorizationFailedError):
                await admin.create_topic(unique(BOB_PREFIX))
            described = await admin.describe_share_groups([group])
            assert isinstance(described[group], GroupAuthorizationFailedError), described
            deleted = await admin.delete_share_groups([group])
            assert isinstance(deleted[group], GroupAuthorizationFailedError), deleted
            with pytest.raises(TopicAuthorizationFailedError):
                await admin.reset_share_group_offsets(group, topic, to="earliest")


# -- scenarios: sessions that must be renewed ----------------------------------------------------


async def test_sasl_session_outlives_connections_max_reauth_ms(
    secure_kafka: SecureKafka, super_admin: ShareAdmin
) -> None:
    topic = await new_topic(super_admin, partitions=1)
    group = await new_group(super_admin)
    await produce(secure_kafka.plaintext, topic, 1, 1)
    async with ShareConsumer(
        topic,
        group_id=group,
        bootstrap_servers=secure_kafka.reauth,
        ack_mode="explicit",
        sasl=SaslConfig("PLAIN", ALICE, ALICE_PASSWORD),
    ) as consumer:
        async with asyncio.timeout(CONSUME_TIMEOUT):
            (msg,) = await consumer.getmany(timeout=CONSUME_TIMEOUT)
        # Work on the record for longer than one authenticated session, polling meanwhile.
        loop = asyncio.get_running_loop()
        until = loop.time() + REAUTH_MS / 1000 + 1.5
        while loop.time() < until:
            again = await consumer.getmany(timeout=0.5)
            # Seen today: the record again, delivery_count 2 (the broker dropped the session).
            assert again == [], f"the broker released the held record: {again}"
        msg.accept()
        results = await consumer.commit()
    assert results == {TopicPartition(topic, 0): None}, results
