"""AlterUserScramCredentials and DescribeUserScramCredentials: the embedded broker against real
Kafka 4.4.0 and 4.2.2, which serve both on their PLAINTEXT listener (no authorizer in the test
clusters).

One scenario, in raw requests: every error ScramControlManager gives an upsertion or a deletion
(too few / too many iterations, an empty user name, an unknown mechanism, an empty salted
password, a credential that does not exist, a user altered twice, a user's first error standing
over a later duplicate), an empty request, then Describe of named users (found, missing,
duplicated, the empty name), of every user, and after a deletion. The answers are compared whole:
the users in the order Kafka lists them (its HashMaps'), error codes and messages.

Two things are compared loosely, because Kafka itself varies: a user's CredentialInfos are sorted
(Kafka lists them in the order of a HashMap keyed by an enum, whose hash differs between JVMs),
and Describe of every user keeps only this run's users, sorted (the real clusters are shared by
the session). A real broker applies an alteration when the controller's record reaches its
metadata cache, a moment after the answer: Describe is repeated until that happened.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from typing import Any

from aioshare.client.connection import Connection
from aioshare.protocol.messages import (
    AlterUserScramCredentialsRequest,
    AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
)
from aioshare.testing.kafka.cluster import KafkaCluster
from tests.broker.test_scram_credentials import scram_broker

from .harness import EMBEDDED_CONFIG, TIMEOUT, Observations, Target, assert_same, code, run_everywhere

SHA256, SHA512 = 1, 2
Deletion = AlterUserScramCredentialsRequest.ScramCredentialDeletion
Upsertion = AlterUserScramCredentialsRequest.ScramCredentialUpsertion
UserName = DescribeUserScramCredentialsRequest.UserName


def upsertion(user: str, mechanism: int = SHA256, iterations: int = 4096, password: str = "pw") -> Upsertion:
    salt = b"differential-salt"
    hash_name = "sha512" if mechanism == SHA512 else "sha256"
    salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), salt, 4096)
    return Upsertion(name=user, mechanism=mechanism, iterations=iterations, salt=salt, salted_password=salted)


async def alter(
    connection: Connection, deletions: list[Deletion], upsertions: list[Upsertion]
) -> list[tuple[str, str, str | None]]:
    response = await connection.send(
        AlterUserScramCredentialsRequest(deletions=deletions, upsertions=upsertions),
        response_type=AlterUserScramCredentialsResponse,
    )
    return [(r.user, code(r.error_code), r.error_message) for r in response.results]


async def describe(connection: Connection, users: list[str] | None) -> dict[str, Any]:
    response = await connection.send(
        DescribeUserScramCredentialsRequest(
            users=None if users is None else [UserName(name=u) for u in users]
        ),
        response_type=DescribeUserScramCredentialsResponse,
    )
    return {
        "error": (code(response.error_code), response.error_message),
        "results": [
            (
                r.user,
                code(r.error_code),
                r.error_message,
                sorted((c.mechanism, c.iterations) for c in r.credential_infos),
            )
            for r in response.results
        ],
    }


async def describe_when(
    connection: Connection, users: list[str] | None, ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Describe, repeated until `ready` holds (a real broker's metadata cache catches up)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            answer = await describe(connection, users)
            if ready(answer):
                return answer
            await asyncio.sleep(0.05)


def credentials(answer: dict[str, Any], user: str) -> list[tuple[int, int]] | None:
    """The user's (mechanism, iterations), or None when Describe did not find it."""
    return next((r[3] for r in answer["results"] if r[0] == user and r[1] == "NONE"), None)


def found(answer: dict[str, Any], user: str) -> bool:
    return credentials(answer, user) is not None


async def test_alter_and_describe_answers_match_kafka(clusters: dict[str, KafkaCluster]) -> None:
    run = uuid.uuid4().hex[:6]
    alice, bob, carol, dave, erin = (f"{name}-{run}" for name in ("alice", "bob", "carol", "dave", "erin"))
    frank, gina, henry, ivan = (f"{name}-{run}" for name in ("frank", "gina", "henry", "ivan"))

    async def scenario(target: Target) -> Observations:
        seen = Observations()
        connection = await target.connect()
        seen.add("describe before", await describe(connection, [alice, bob]))
        seen.add(
            "alter: created and refused",
            await alter(
                connection,
                [Deletion(name=carol, mechanism=SHA256), Deletion(name=henry, mechanism=3)],
                [
                    upsertion(alice, SHA256, 8192),
                    upsertion(bob, SHA512, 16384),
                    upsertion(dave, iterations=4095),
                    upsertion(erin, iterations=16385),
                    upsertion("", SHA256),
                    upsertion(frank, mechanism=0),
                    Upsertion(name=gina, mechanism=SHA256, iterations=4096, salt=b"s", salted_password=b""),
                ],
            ),
        )
        seen.add(
            "describe created",
            await describe_when(
                connection, [alice, bob, gina], lambda answer: found(answer, alice) and found(answer, bob)
            ),
        )
        seen.add(
            "alter: twice in one request",
            await alter(
                connection,
                [
                    Deletion(name=alice, mechanism=SHA256),
                    Deletion(name=carol, mechanism=SHA256),
                    Deletion(name=bob, mechanism=SHA512),
                    Deletion(name=bob, mechanism=SHA256),
                ],
                [
                    upsertion(alice, SHA512),
                    upsertion(carol, SHA256),
                    upsertion(ivan, SHA256),
                    upsertion(ivan, SHA512),
                ],
            ),
        )
        seen.add("alter: nothing", await alter(connection, [], []))
        seen.add(
            "describe duplicated, missing, empty", await describe(connection, [bob, ivan, alice, "", bob])
        )
        everyone = await describe_when(connection, None, lambda answer: found(answer, alice))
        seen.add("describe all: error", everyone["error"])
        seen.add("describe all: ours", sorted(r for r in everyone["results"] if r[0].endswith(run)))
        listed = await describe(connection, [])
        seen.add("describe empty list: ours", sorted(r for r in listed["results"] if r[0].endswith(run)))
        seen.add(
            "alter: delete and replace",
            await alter(connection, [Deletion(name=alice, mechanism=SHA256)], [upsertion(bob, SHA512, 4096)]),
        )
        seen.add(
            "describe after",
            await describe_when(
                connection,
                [alice, bob],
                lambda answer: not found(answer, alice) and credentials(answer, bob) == [(SHA512, 4096)],
            ),
        )
        # Leave the shared real clusters as they were.
        seen.add("clean up", await alter(connection, [Deletion(name=bob, mechanism=SHA512)], []))
        return seen

    async with scram_broker(EMBEDDED_CONFIG) as broker:
        results = await run_everywhere(scenario, clusters, broker)
    assert_same(results)
