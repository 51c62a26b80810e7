"""DescribeUserScramCredentials (50) and AlterUserScramCredentials (51), answered as Kafka does.

Both read and write the broker's `ScramCredentialStore`, the one its SASL listeners authenticate
against, so an upserted credential works for the next SCRAM login at once and a deleted one is
refused (connections already authenticated stay, as in Kafka).

Alter is `ScramControlManager.alterCredentials` (Kafka's broker forwards it to the controller):
each user may appear once in a request (deletions and upsertions together), a deletion needs an
existing credential, an upsertion 4096..16384 iterations; the controller keeps StoredKey and
ServerKey derived from the client's salted password. Describe is `ScramImage.describe`: every
user with a credential when Users is null or empty, otherwise the named ones, each with its own
error. Both build their results in Java HashMaps; `JavaStringHashMap` reproduces that order so the
answers list the users as Kafka's do. Kafka 4.2 and 4.4 answer alike (v0 in both).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Generic, TypeVar

from aioshare.broker.cluster import Cluster
from aioshare.broker.security import (
    SCRAM_MAX_ITERATIONS,
    SCRAM_MECHANISM_TYPES,
    SCRAM_MIN_ITERATIONS,
    ScramCredential,
    ScramCredentialStore,
)
from aioshare.broker.server import ApiRegistry, RequestContext
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.messages import (
    AlterUserScramCredentialsRequest,
    AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
)

__all__ = ["JavaStringHashMap", "ScramCredentialApis", "alter_credentials", "describe_credentials"]

# ScramControlManager's and ScramImage's messages, word for word.
DUPLICATE_ALTERATION = "A user credential cannot be altered twice in the same request"
DELETE_MISSING = "Attempt to delete a user credential that does not exist"
EMPTY_USERNAME = "Username must not be empty"
UNKNOWN_MECHANISM = "Unknown SCRAM mechanism"
TOO_FEW_ITERATIONS = "Too few iterations"
TOO_MANY_ITERATIONS = "Too many iterations"
DESCRIBE_DUPLICATE = "Cannot describe SCRAM credentials for the same user twice in a single request: "
DESCRIBE_MISSING = "Attempt to describe a user credential that does not exist: "

V = TypeVar("V")
Error = tuple[ErrorCode, str | None]


class ScramCredentialApis:
    """The two APIs as an ApiModule bound to one broker's credential store: the broker that owns the
    store installs it (a module of apis.DEFAULT_MODULES could not reach the store)."""

    def __init__(self, store: ScramCredentialStore) -> None:
        self._store = store

    def register(self, registry: ApiRegistry, cluster: Cluster) -> None:
        store = self._store

        async def describe(
            context: RequestContext, request: DescribeUserScramCredentialsRequest
        ) -> DescribeUserScramCredentialsResponse:
            return describe_credentials(store, request)

        async def alter(
            context: RequestContext, request: AlterUserScramCredentialsRequest
        ) -> AlterUserScramCredentialsResponse:
            return alter_credentials(store, request)

        registry.register(DescribeUserScramCredentialsRequest.API_KEY, describe)
        registry.register(AlterUserScramCredentialsRequest.API_KEY, alter)


# ------------------------------------------------------------------------------------- describe


def describe_credentials(
    store: ScramCredentialStore, request: DescribeUserScramCredentialsRequest
) -> DescribeUserScramCredentialsResponse:
    """ScramImage.describe."""
    credentials = store.describe()
    duplicated: JavaStringHashMap[bool] = JavaStringHashMap()
    if not request.users:
        for user in credentials:
            duplicated.put(user, False)
    else:
        for name in request.users:
            duplicated.put(name.name, name.name in duplicated)
    results = []
    for user, duplicate in duplicated.items():
        result = DescribeUserScramCredentialsResponse.DescribeUserScramCredentialsResult(user=user)
        mechanisms = credentials.get(user)
        if duplicate:
            result.error_code = ErrorCode.DUPLICATE_RESOURCE
            result.error_message = DESCRIBE_DUPLICATE + user
        elif mechanisms is None:
            result.error_code = ErrorCode.RESOURCE_NOT_FOUND
            result.error_message = DESCRIBE_MISSING + user
        else:
            # Kafka lists them in its mechanism map's order, which varies between JVMs (the enum's
            # identity hash): SCRAM-SHA-256 first is one of its two orders.
            result.credential_infos = [
                DescribeUserScramCredentialsResponse.CredentialInfo(
                    mechanism=mechanism_type, iterations=mechanisms[mechanism]
                )
                for mechanism_type, mechanism in SCRAM_MECHANISM_TYPES.items()
                if mechanism in mechanisms
            ]
        results.append(result)
    return DescribeUserScramCredentialsResponse(results=results)


# ------------------------------------------------------------------------------------- alter


def alter_credentials(
    store: ScramCredentialStore, request: AlterUserScramCredentialsRequest
) -> AlterUserScramCredentialsResponse:
    """QuorumController.alterUserScramCredentials and ScramControlManager.alterCredentials."""
    if not request.deletions and not request.upsertions:
        return AlterUserScramCredentialsResponse()
    deletions: JavaStringHashMap[AlterUserScramCredentialsRequest.ScramCredentialDeletion] = (
        JavaStringHashMap()
    )
    upsertions: JavaStringHashMap[AlterUserScramCredentialsRequest.ScramCredentialUpsertion] = (
        JavaStringHashMap()
    )
    errors: JavaStringHashMap[Error] = JavaStringHashMap()
    # A user's first error stands: later alterations of that user are not even looked at.
    for deletion in request.deletions:
        if deletion.name in errors:
            continue
        if deletion.name in deletions:
            deletions.remove(deletion.name)
            errors.put(deletion.name, (ErrorCode.DUPLICATE_RESOURCE, DUPLICATE_ALTERATION))
            continue
        error = _deletion_error(store, deletion)
        if error is not None:
            errors.put(deletion.name, error)
        else:
            deletions.put(deletion.name, deletion)
    for upsertion in request.upsertions:
        if upsertion.name in errors:
            continue
        if upsertion.name in deletions or upsertion.name in upsertions:
            deletions.remove(upsertion.name)
            upsertions.remove(upsertion.name)
            errors.put(upsertion.name, (ErrorCode.DUPLICATE_RESOURCE, DUPLICATE_ALTERATION))
            continue
        error = _upsertion_error(upsertion)
        if error is not None:
            errors.put(upsertion.name, error)
        else:
            upsertions.put(upsertion.name, upsertion)
    result = AlterUserScramCredentialsResponse.AlterUserScramCredentialsResult
    results = []
    changes: list[tuple[str, str, ScramCredential | None]] = []
    for user, deletion in deletions.items():
        results.append(result(user=user, error_message=None))
        changes.append((SCRAM_MECHANISM_TYPES[deletion.mechanism], user, None))
    for user, upsertion in upsertions.items():
        if not upsertion.salted_password:
            # finishUpsertion: Java's HMAC refuses an empty key (IllegalArgumentException), which
            # ApiError.fromThrowable turns into UNKNOWN_SERVER_ERROR without a message.
            errors.put(user, (ErrorCode.UNKNOWN_SERVER_ERROR, None))
            continue
        mechanism = SCRAM_MECHANISM_TYPES[upsertion.mechanism]
        credential = ScramCredential.from_salted_password(
            mechanism, upsertion.salted_password, upsertion.salt, upsertion.iterations
        )
        results.append(result(user=user, error_message=None))
        changes.append((mechanism, user, credential))
    for user, (code, message) in errors.items():
        results.append(result(user=user, error_code=code, error_message=message))
    # Applied together, as the controller appends the request's records atomically.
    for mechanism, user, new in changes:
        if new is None:
            store.delete(mechanism, user)
        else:
            store.set(mechanism, user, new)
    return AlterUserScramCredentialsResponse(results=results)


def _mechanism_error(user: str, mechanism_type: int) -> Error | None:
    """validateScramUsernameAndMechanism."""
    if not user:
        return ErrorCode.UNACCEPTABLE_CREDENTIAL, EMPTY_USERNAME
    if mechanism_type not in SCRAM_MECHANISM_TYPES:
        return ErrorCode.UNSUPPORTED_SASL_MECHANISM, UNKNOWN_MECHANISM
    return None


def _deletion_error(
    store: ScramCredentialStore, deletion: AlterUserScramCredentialsRequest.ScramCredentialDeletion
) -> Error | None:
    error = _mechanism_error(deletion.name, deletion.mechanism)
    if error is None and store.get(SCRAM_MECHANISM_TYPES[deletion.mechanism], deletion.name) is None:
        return ErrorCode.RESOURCE_NOT_FOUND, DELETE_MISSING
    return error


def _upsertion_error(upsertion: AlterUserScramCredentialsRequest.ScramCredentialUpsertion) -> Error | None:
    error = _mechanism_error(upsertion.name, upsertion.mechanism)
    if error is not None:
        return error
    # ScramMechanism.minIterations is 4096 for both mechanisms.
    if upsertion.iterations < SCRAM_MIN_ITERATIONS:
        return ErrorCode.UNACCEPTABLE_CREDENTIAL, TOO_FEW_ITERATIONS
    if upsertion.iterations > SCRAM_MAX_ITERATIONS:
        return ErrorCode.UNACCEPTABLE_CREDENTIAL, TOO_MANY_ITERATIONS
    return None


# ------------------------------------------------------------------------------------- Java order


class JavaStringHashMap(Generic[V]):
    """A java.util.HashMap<String, V> as far as its iteration order goes.

    HashMap iterates bucket by bucket (the spread String.hashCode masked by the table size), and
    within a bucket in insertion order; the table starts at 16 buckets and doubles when the size
    passes 3/4 of it, or when a bucket reaches 9 entries in a table under 64 (treeifyBin).
    Buckets that do turn into trees (9+ colliding names in a table of 64 or more) may order
    differently in Java.
    """

    def __init__(self) -> None:
        self._values: dict[str, V] = {}
        self._hashes: dict[str, int] = {}
        self._inserted: dict[str, int] = {}
        self._next = 0
        self._capacity = 16
        self._bucket_sizes: Counter[int] = Counter()

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def put(self, key: str, value: V) -> None:
        if key in self._values:
            self._values[key] = value  # replaced in place: its position does not change
            return
        spread = self._hashes[key] = _spread_hash(key)
        bucket = spread & (self._capacity - 1)
        chain = self._bucket_sizes[bucket]
        self._bucket_sizes[bucket] += 1
        self._values[key] = value
        self._inserted[key] = self._next
        self._next += 1
        if chain >= 8 and self._capacity < 64:
            self._grow()
        if len(self._values) > self._capacity * 3 // 4:
            self._grow()

    def remove(self, key: str) -> None:
        if key in self._values:
            self._bucket_sizes[self._hashes[key] & (self._capacity - 1)] -= 1
            del self._values[key], self._hashes[key], self._inserted[key]

    def items(self) -> Iterator[tuple[str, V]]:
        mask = self._capacity - 1
        order = sorted(self._values, key=lambda k: (self._hashes[k] & mask, self._inserted[k]))
        return ((key, self._values[key]) for key in order)

    def _grow(self) -> None:
        self._capacity *= 2
        self._bucket_sizes = Counter(spread & (self._capacity - 1) for spread in self._hashes.values())


def _spread_hash(text: str) -> int:
    """HashMap.hash(key): String.hashCode (over UTF-16 code units) with its high half folded in."""
    h = 0
    data = text.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] << 8 | data[i + 1])) & 0xFFFFFFFF
    return h ^ (h >> 16)
