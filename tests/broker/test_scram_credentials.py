"""DescribeUserScramCredentials (50) and AlterUserScramCredentials (51) on the embedded broker.

The handlers (aioshare/broker/apis/scram_credentials.py) first, sans-IO on a credential store:
every error of Kafka's ScramControlManager and ScramImage with its message, what is stored, and
that the stored credential authenticates a SCRAM exchange. Then end to end on a broker with a
SASL_PLAINTEXT listener: Java's Admin (``tests/java/ScramAdmin.java``) and Kafka's kafka-configs
create and delete credentials over PLAINTEXT, and our client and librdkafka log in with them at
once, or are refused once they are deleted. Answers against real Kafka: tests/differential/test_scram.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest

from aioshare.broker.apis.scram_credentials import (
    JavaStringHashMap,
    alter_credentials,
    describe_credentials,
)
from aioshare.broker.embedded import EmbeddedBroker
from aioshare.broker.security import SaslFailure, ScramCredential, ScramCredentialStore, ScramServer
from aioshare.client.connection import Connection
from aioshare.client.sasl import SaslConfig, ScramClient
from aioshare.protocol.errors import ErrorCode, SaslAuthenticationFailedError
from aioshare.protocol.messages import (
    AlterUserScramCredentialsRequest,
    AlterUserScramCredentialsResponse,
    ApiVersionsRequest,
    ApiVersionsResponse,
    DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
)
from aioshare.testing.kafka import DEFAULT_KAFKA_VERSION
from aioshare.testing.kafka.java import compile_java, java_command
from aioshare.testing.kafka.requirement import require

SHA256, SHA512 = 1, 2
MECHANISM_NAMES = {SHA256: "SCRAM-SHA-256", SHA512: "SCRAM-SHA-512"}
HASHES = {SHA256: "sha256", SHA512: "sha512"}
TIMEOUT = 30.0
JAVA_DRIVER = Path(__file__).resolve().parents[1] / "java" / "ScramAdmin.java"
CONFIG_COMMAND = "org.apache.kafka.tools.ConfigCommand"
Deletion = AlterUserScramCredentialsRequest.ScramCredentialDeletion
Upsertion = AlterUserScramCredentialsRequest.ScramCredentialUpsertion
UserName = DescribeUserScramCredentialsRequest.UserName


def upsertion(
    user: str,
    password: str = "secret",
    mechanism: int = SHA256,
    iterations: int = 8192,
    salt: bytes = b"salt",
) -> Upsertion:
    """What an admin client sends: the password salted with PBKDF2 (SCRAM's Hi) client-side."""
    hash_name = HASHES.get(mechanism, "sha256")
    salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), salt, max(iterations, 1))
    return Upsertion(name=user, mechanism=mechanism, iterations=iterations, salt=salt, salted_password=salted)


def alter(store: ScramCredentialStore, *changes: Deletion | Upsertion) -> list[tuple[str, int, str | None]]:
    request = AlterUserScramCredentialsRequest(
        deletions=[c for c in changes if isinstance(c, Deletion)],
        upsertions=[c for c in changes if isinstance(c, Upsertion)],
    )
    response = alter_credentials(store, request)
    assert response.throttle_time_ms == 0
    return [(r.user, r.error_code, r.error_message) for r in response.results]


def describe(store: ScramCredentialStore, users: list[str] | None) -> list[tuple[str, int, str | None, Any]]:
    request = DescribeUserScramCredentialsRequest(
        users=None if users is None else [UserName(name=u) for u in users]
    )
    response = describe_credentials(store, request)
    # Kafka leaves the message-level error at its schema default: "", not null.
    assert (response.error_code, response.error_message) == (0, "")
    return [
        (r.user, r.error_code, r.error_message, [(c.mechanism, c.iterations) for c in r.credential_infos])
        for r in response.results
    ]


def logs_in(store: ScramCredentialStore, mechanism: str, user: str, password: str) -> bool:
    """One SCRAM exchange against the broker's SaslServer side; False when it is refused."""
    client = ScramClient(mechanism, user, password)
    server = ScramServer(mechanism, store.get)
    try:
        server_first = server.evaluate(client.client_first())
        server_final = server.evaluate(client.client_final(server_first))
    except SaslFailure:  # an unknown user or a wrong proof
        return False
    client.verify_server_final(server_final)
    return server.complete and server.principal == user


# ---------------------------------------------------------------------------------- alter


def test_upsertion_stores_keys_derived_from_the_salted_password() -> None:
    store = ScramCredentialStore()
    assert alter(store, upsertion("alice", "s3cret", SHA512, iterations=8192, salt=b"pepper")) == [
        ("alice", 0, None)
    ]
    stored = store.get("SCRAM-SHA-512", "alice")
    assert stored == ScramCredential.from_password("SCRAM-SHA-512", "s3cret", 8192, salt=b"pepper")
    assert store.get("SCRAM-SHA-256", "alice") is None
    assert logs_in(store, "SCRAM-SHA-512", "alice", "s3cret")
    assert not logs_in(store, "SCRAM-SHA-512", "alice", "wrong")
    assert not logs_in(store, "SCRAM-SHA-256", "alice", "s3cret")


def test_upsertion_replaces_an_existing_credential() -> None:
    store = ScramCredentialStore()
    store.add_password("SCRAM-SHA-256", "alice", "old")
    assert alter(store, upsertion("alice", "new", iterations=16384)) == [("alice", 0, None)]
    assert describe(store, ["alice"]) == [("alice", 0, "", [(SHA256, 16384)])]
    assert logs_in(store, "SCRAM-SHA-256", "alice", "new")
    assert not logs_in(store, "SCRAM-SHA-256", "alice", "old")


@pytest.mark.parametrize(
    ("iterations", "error"),
    [
        (4095, (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too few iterations")),
        (4096, (0, None)),
        (16384, (0, None)),
        (16385, (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too many iterations")),
        (-1, (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too few iterations")),
    ],
)
def test_iterations_bounds(iterations: int, error: tuple[int, str | None]) -> None:
    store = ScramCredentialStore()
    assert alter(store, upsertion("alice", iterations=iterations)) == [("alice", *error)]
    assert (store.get("SCRAM-SHA-256", "alice") is not None) == (error[0] == 0)


@pytest.mark.parametrize("mechanism", [0, 3, -1])
def test_unknown_mechanism(mechanism: int) -> None:
    store = ScramCredentialStore()
    expected = (ErrorCode.UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism")
    assert alter(store, upsertion("alice", mechanism=mechanism)) == [("alice", *expected)]
    assert alter(store, Deletion(name="bob", mechanism=mechanism)) == [("bob", *expected)]
    assert store.describe() == {}


def test_empty_user_name_is_unacceptable_before_the_mechanism() -> None:
    store = ScramCredentialStore()
    expected = ("", ErrorCode.UNACCEPTABLE_CREDENTIAL, "Username must not be empty")
    assert alter(store, upsertion("", mechanism=0)) == [expected]
    assert alter(store, Deletion(name="", mechanism=SHA256)) == [expected]
    assert store.describe() == {}


def test_deletion_of_a_missing_credential_is_not_found() -> None:
    store = ScramCredentialStore()
    store.add_password("SCRAM-SHA-256", "alice", "secret")
    missing = (ErrorCode.RESOURCE_NOT_FOUND, "Attempt to delete a user credential that does not exist")
    assert alter(store, Deletion(name="bob", mechanism=SHA256)) == [("bob", *missing)]
    # The user exists, but not with this mechanism.
    assert alter(store, Deletion(name="alice", mechanism=SHA512)) == [("alice", *missing)]
    assert logs_in(store, "SCRAM-SHA-256", "alice", "secret")


def test_deletion_refuses_the_next_login_and_keeps_the_other_mechanism() -> None:
    store = ScramCredentialStore()
    for mechanism in MECHANISM_NAMES.values():
        store.add_password(mechanism, "alice", "secret")
    assert alter(store, Deletion(name="alice", mechanism=SHA256)) == [("alice", 0, None)]
    assert not logs_in(store, "SCRAM-SHA-256", "alice", "secret")
    assert logs_in(store, "SCRAM-SHA-512", "alice", "secret")
    assert describe(store, None) == [("alice", 0, "", [(SHA512, 4096)])]


def test_a_user_altered_twice_is_a_duplicate_and_nothing_of_it_applies() -> None:
    store = ScramCredentialStore()
    store.add_password("SCRAM-SHA-256", "alice", "old")
    store.add_password("SCRAM-SHA-512", "alice", "old")
    duplicate = (
        ErrorCode.DUPLICATE_RESOURCE,
        "A user credential cannot be altered twice in the same request",
    )
    # Twice the same upsertion, two mechanisms, a deletion and an upsertion, two deletions.
    assert alter(store, upsertion("bob"), upsertion("bob")) == [("bob", *duplicate)]
    assert alter(store, upsertion("bob", mechanism=SHA256), upsertion("bob", mechanism=SHA512)) == [
        ("bob", *duplicate)
    ]
    assert alter(store, Deletion(name="alice", mechanism=SHA256), upsertion("alice", "new")) == [
        ("alice", *duplicate)
    ]
    assert alter(
        store, Deletion(name="alice", mechanism=SHA256), Deletion(name="alice", mechanism=SHA512)
    ) == [("alice", *duplicate)]
    assert store.describe() == {"alice": {"SCRAM-SHA-256": 4096, "SCRAM-SHA-512": 4096}}
    assert logs_in(store, "SCRAM-SHA-256", "alice", "old")


def test_a_users_first_error_stands_over_a_later_duplicate() -> None:
    store = ScramCredentialStore()
    # Kafka skips every later alteration of a user that already failed: no DUPLICATE_RESOURCE.
    assert alter(store, Deletion(name="carol", mechanism=SHA256), upsertion("carol")) == [
        ("carol", ErrorCode.RESOURCE_NOT_FOUND, "Attempt to delete a user credential that does not exist")
    ]
    assert alter(store, upsertion("carol", iterations=1), upsertion("carol"), upsertion("carol")) == [
        ("carol", ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too few iterations")
    ]
    assert store.describe() == {}


def test_empty_salted_password_fails_alone_as_an_unknown_server_error() -> None:
    store = ScramCredentialStore()
    empty = Upsertion(name="dave", mechanism=SHA256, iterations=4096, salt=b"s", salted_password=b"")
    results = alter(store, empty, upsertion("erin"))
    # Java's HMAC refuses an empty key; ApiError.fromThrowable sends no message with it.
    assert sorted(results) == [("dave", ErrorCode.UNKNOWN_SERVER_ERROR, None), ("erin", 0, None)]
    assert store.describe() == {"erin": {"SCRAM-SHA-256": 8192}}


def test_an_empty_request_answers_no_results() -> None:
    store = ScramCredentialStore()
    assert alter(store) == []


def test_good_and_bad_alterations_in_one_request_are_applied_independently() -> None:
    store = ScramCredentialStore()
    store.add_password("SCRAM-SHA-256", "gone", "x")
    results = alter(
        store,
        Deletion(name="gone", mechanism=SHA256),
        Deletion(name="never", mechanism=SHA256),
        upsertion("new", mechanism=SHA512),
        upsertion("weak", iterations=10),
    )
    # Successful deletions, then successful upsertions, then errors (each group in HashMap order).
    assert results == [
        ("gone", 0, None),
        ("new", 0, None),
        ("never", ErrorCode.RESOURCE_NOT_FOUND, "Attempt to delete a user credential that does not exist"),
        ("weak", ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too few iterations"),
    ]
    assert store.describe() == {"new": {"SCRAM-SHA-512": 8192}}


# ---------------------------------------------------------------------------------- describe


def test_describe_every_user_for_null_or_empty_users() -> None:
    store = ScramCredentialStore()
    store.add_password("SCRAM-SHA-512", "alice", "a", 8192)
    store.add_password("SCRAM-SHA-256", "alice", "a", 4096)
    store.add_password("SCRAM-SHA-512", "bob", "b", 16384)
    # In a Java HashMap "bob" comes before "alice" (buckets 4 and 9 of 16).
    expected = [
        ("bob", 0, "", [(SHA512, 16384)]),
        ("alice", 0, "", [(SHA256, 4096), (SHA512, 8192)]),
    ]
    assert describe(store, None) == expected
    assert describe(store, []) == expected
    assert describe(ScramCredentialStore(), None) == []


def test_describe_named_users_with_kafkas_per_user_errors() -> None:
    store = ScramCredentialStore()
    store.add_password("SCRAM-SHA-256", "alice", "a", 8192)
    results = describe(store, ["alice", "nobody", "alice", "", "nobody"])
    assert sorted(results) == [
        ("", ErrorCode.RESOURCE_NOT_FOUND, "Attempt to describe a user credential that does not exist: ", []),
        (
            "alice",
            ErrorCode.DUPLICATE_RESOURCE,
            "Cannot describe SCRAM credentials for the same user twice in a single request: alice",
            [],
        ),
        (
            "nobody",
            ErrorCode.DUPLICATE_RESOURCE,
            "Cannot describe SCRAM credentials for the same user twice in a single request: nobody",
            [],
        ),
    ]
    assert describe(store, ["alice"]) == [("alice", 0, "", [(SHA256, 8192)])]


# ---------------------------------------------------------------------------------- Java's order


def test_java_hash_map_order() -> None:
    # String.hashCode of one letter is its code: bucket = code % 16 in a new HashMap.
    ordered: JavaStringHashMap[int] = JavaStringHashMap()
    for key in ["q", "a", "p", "b"]:  # 113, 97, 112, 98: buckets 1, 1, 0, 2
        ordered.put(key, 0)
    assert [k for k, _ in ordered.items()] == ["p", "q", "a", "b"]
    ordered.remove("q")
    ordered.put("q", 1)  # back in at the end of its bucket
    assert [k for k, _ in ordered.items()] == ["p", "a", "q", "b"]
    ordered.put("a", 2)  # replaced in place
    assert list(ordered.items())[1] == ("a", 2)
    # "Aa" and "BB" share a hash code (2112): one bucket, in insertion order.
    colliding: JavaStringHashMap[int] = JavaStringHashMap()
    colliding.put("BB", 0)
    colliding.put("Aa", 0)
    assert [k for k, _ in colliding.items()] == ["BB", "Aa"]
    # "R" (82) and "B" (66) share bucket 2 of 16 but not of 32 (18 and 2); the 13th key grows the
    # table to 32 buckets.
    grown: JavaStringHashMap[int] = JavaStringHashMap()
    keys = ["R", "B", *"cdefghijkl"]
    for key in keys:
        grown.put(key, 0)
    assert [k for k, _ in grown.items()][:2] == ["R", "B"]  # 12 keys: still 16 buckets, bucket 2
    grown.put("m", 0)
    order = [k for k, _ in grown.items()]
    assert order.index("B") < order.index("R")  # 32 buckets: B in 2, R in 18


# ---------------------------------------------------------------------------------- the broker


@contextlib.asynccontextmanager
async def scram_broker(
    config: Mapping[str, str] | None = None, *, kafka_version: str | None = None
) -> AsyncIterator[EmbeddedBroker]:
    """An embedded broker (it serves the SCRAM credential APIs on its listeners)."""
    async with EmbeddedBroker(config=config, kafka_version=kafka_version) as broker:
        yield broker


SASL_CONFIG = {
    "listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
    "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512",
}


def endpoint(broker: EmbeddedBroker, listener: str) -> tuple[str, int]:
    host, _, port = broker.bootstrap(listener).partition(",")[0].rpartition(":")
    return host, int(port)


async def our_login(broker: EmbeddedBroker, mechanism: str, user: str, password: str) -> bool:
    """Our client's SCRAM login on the SASL_PLAINTEXT listener; False when it is refused."""
    host, port = endpoint(broker, "SASL_PLAINTEXT")
    try:
        async with asyncio.timeout(TIMEOUT):
            connection = await Connection.open(host, port, sasl=SaslConfig(mechanism, user, password))
    except SaslAuthenticationFailedError:
        return False
    await connection.close()
    return True


def librdkafka_login(bootstrap: str, mechanism: str, user: str, password: str) -> bool:
    """librdkafka's SCRAM login (a metadata request after it); False when authentication fails."""
    errors: list[Any] = []
    producer: Any = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism,
            "sasl.username": user,
            "sasl.password": password,
            "error_cb": errors.append,
            "log_level": 0,
        }
    )
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            producer.list_topics(timeout=1)
        except confluent_kafka.KafkaException:
            producer.poll(0.2)  # error_cb runs from poll()
            if any(error.code() == confluent_kafka.KafkaError._AUTHENTICATION for error in errors):
                return False
        else:
            return True
    pytest.fail(f"librdkafka neither logged in nor was refused in {TIMEOUT:.0f} s: {errors}")


async def test_raw_requests_change_who_can_log_in_at_once() -> None:
    async with scram_broker(SASL_CONFIG) as broker:
        host, port = endpoint(broker, "PLAINTEXT")
        admin = await Connection.open(host, port)
        try:
            response = await admin.send(
                AlterUserScramCredentialsRequest(upsertions=[upsertion("zoe", "pw", SHA512, 4096)]),
                response_type=AlterUserScramCredentialsResponse,
            )
            assert [(r.user, r.error_code) for r in response.results] == [("zoe", 0)]
            assert await our_login(broker, "SCRAM-SHA-512", "zoe", "pw")
            assert not await our_login(broker, "SCRAM-SHA-512", "zoe", "other")
            assert not await our_login(broker, "SCRAM-SHA-256", "zoe", "pw")
            described = await admin.send(
                DescribeUserScramCredentialsRequest(users=None),
                response_type=DescribeUserScramCredentialsResponse,
            )
            assert [
                (r.user, [(c.mechanism, c.iterations) for c in r.credential_infos]) for r in described.results
            ] == [("zoe", [(SHA512, 4096)])]
            response = await admin.send(
                AlterUserScramCredentialsRequest(deletions=[Deletion(name="zoe", mechanism=SHA512)]),
                response_type=AlterUserScramCredentialsResponse,
            )
            assert [(r.user, r.error_code) for r in response.results] == [("zoe", 0)]
            assert not await our_login(broker, "SCRAM-SHA-512", "zoe", "pw")
        finally:
            await admin.close()


@pytest.mark.parametrize("kafka_version", ["4.2", "4.3", "4.4"])
async def test_both_apis_are_advertised_at_v0(kafka_version: str) -> None:
    async with scram_broker(kafka_version=kafka_version) as broker:
        host, port = endpoint(broker, "PLAINTEXT")
        connection = await Connection.open(host, port)
        try:
            versions = await connection.send(
                ApiVersionsRequest(client_software_name="t", client_software_version="1"),
                3,
                response_type=ApiVersionsResponse,
            )
        finally:
            await connection.close()
    keys = {k.api_key: (k.min_version, k.max_version) for k in versions.api_keys}
    assert keys[50] == (0, 0) and keys[51] == (0, 0)


# ---------------------------------------------------------------------------------- Java, librdkafka


@pytest.fixture(scope="module")
def java_classes() -> Path:
    return require(lambda: compile_java([JAVA_DRIVER], DEFAULT_KAFKA_VERSION))


def run_java_admin(classes: Path, bootstrap: str, *operations: str) -> list[dict[str, Any]]:
    command = java_command(DEFAULT_KAFKA_VERSION, "ScramAdmin", bootstrap, *operations, classes=classes)
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and len(answers) == len(operations), (
        f"ScramAdmin exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return answers


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.mark.interop
async def test_java_admin_creates_and_deletes_logins(java_classes: Path) -> None:
    user, other = unique("java"), unique("nobody")
    async with scram_broker(SASL_CONFIG) as broker:
        plaintext, sasl = broker.bootstrap("PLAINTEXT"), broker.bootstrap("SASL_PLAINTEXT")
        answers = await asyncio.to_thread(
            run_java_admin,
            java_classes,
            plaintext,
            f"upsert,{user},SCRAM-SHA-256,8192,first-pw",
            f"upsert,{user},SCRAM-SHA-256,4000,weak",
            f"describe,{user},{other}",
            "describe",
        )
        assert [a.get("result") for a in answers[:2]] == ["ok", None]
        assert answers[1]["error"] == {
            "class": "UnacceptableCredentialException",
            "message": "Too few iterations",
        }
        assert answers[2]["users"] == {
            user: {"SCRAM-SHA-256": 8192},
            other: {
                "error": {
                    "class": "ResourceNotFoundException",
                    "message": f"Attempt to describe a user credential that does not exist: {other}",
                }
            },
        }
        assert answers[3]["users"] == {user: {"SCRAM-SHA-256": 8192}}
        assert await our_login(broker, "SCRAM-SHA-256", user, "first-pw")
        assert await asyncio.to_thread(librdkafka_login, sasl, "SCRAM-SHA-256", user, "first-pw")
        assert not await asyncio.to_thread(librdkafka_login, sasl, "SCRAM-SHA-256", user, "weak")

        answers = await asyncio.to_thread(
            run_java_admin,
            java_classes,
            plaintext,
            f"delete,{user},SCRAM-SHA-256",
            f"delete,{user},SCRAM-SHA-256",
        )
        assert answers[0]["result"] == "ok"
        assert answers[1]["error"] == {
            "class": "ResourceNotFoundException",
            "message": "Attempt to delete a user credential that does not exist",
        }
        assert not await our_login(broker, "SCRAM-SHA-256", user, "first-pw")
        assert not await asyncio.to_thread(librdkafka_login, sasl, "SCRAM-SHA-256", user, "first-pw")


def kafka_configs(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = java_command(DEFAULT_KAFKA_VERSION, CONFIG_COMMAND, "--bootstrap-server", bootstrap, *args)
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)


@pytest.mark.interop
async def test_kafka_configs_adds_and_deletes_a_scram_user() -> None:
    require(lambda: java_command(DEFAULT_KAFKA_VERSION, CONFIG_COMMAND))
    user = unique("alice")
    entity = ("--entity-type", "users", "--entity-name", user)
    async with scram_broker(SASL_CONFIG) as broker:
        plaintext, sasl = broker.bootstrap("PLAINTEXT"), broker.bootstrap("SASL_PLAINTEXT")
        both = await asyncio.to_thread(
            kafka_configs,
            plaintext,
            "--alter",
            "--add-config",
            "SCRAM-SHA-256=[iterations=8192,password=alice-secret],SCRAM-SHA-512=[password=alice-512]",
            *entity,
        )
        # One request altering a user twice, which Kafka refuses too (ScramControlManager).
        assert both.returncode == 1
        assert (
            "DuplicateResourceException: A user credential cannot be altered twice in the same request"
            in both.stdout + both.stderr
        )
        assert broker.scram.describe() == {}
        for config in (
            "SCRAM-SHA-256=[iterations=8192,password=alice-secret]",
            "SCRAM-SHA-512=[password=alice-512]",
        ):
            added = await asyncio.to_thread(
                kafka_configs, plaintext, "--alter", "--add-config", config, *entity
            )
            assert added.returncode == 0, added.stdout + added.stderr
            assert f"Completed updating config for user {user}." in added.stdout
        assert broker.scram.describe() == {user: {"SCRAM-SHA-256": 8192, "SCRAM-SHA-512": 4096}}
        assert await our_login(broker, "SCRAM-SHA-256", user, "alice-secret")
        assert await our_login(broker, "SCRAM-SHA-512", user, "alice-512")
        assert await asyncio.to_thread(librdkafka_login, sasl, "SCRAM-SHA-512", user, "alice-512")

        deleted = await asyncio.to_thread(
            kafka_configs, plaintext, "--alter", "--delete-config", "SCRAM-SHA-512", *entity
        )
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr
        assert not await our_login(broker, "SCRAM-SHA-512", user, "alice-512")
        assert not await asyncio.to_thread(librdkafka_login, sasl, "SCRAM-SHA-512", user, "alice-512")
        assert await our_login(broker, "SCRAM-SHA-256", user, "alice-secret")
