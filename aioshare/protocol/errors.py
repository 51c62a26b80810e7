"""Errors aioshare raises, and every Kafka protocol error code.

Three families, all under `KafkaError`:

* `BrokerError` -- one subclass per protocol error code (the codes are fixed by the protocol; names
  follow Kafka's `Errors.java`). `error_for_code` / `raise_for_code` turn a response's ErrorCode
  and ErrorMessage into one; a broker built on aioshare answers with `SomeError.code`.
* `ProtocolError` -- bytes that do not decode (`MalformedMessage`) or a message that a version
  cannot carry (`UnsupportedVersionForField`).
* Client-side conditions that have no protocol code (`KafkaConnectionError`, `KafkaTimeoutError`,
  `NoBrokersAvailable`, `SslAuthenticationError`, `IllegalStateError`, `ConfigError`).

`retriable` follows the Java client: true where Java's exception is a `RetriableException`, so
retry loops here behave like the reference client. `invalid_metadata` marks the retriable codes
that also mean "refresh metadata before retrying" (Java's `InvalidMetadataException`).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar


class KafkaError(Exception):
    """Base of every error aioshare raises about Kafka."""

    retriable: ClassVar[bool] = False


# --- codec errors --------------------------------------------------------------------------------


class ProtocolError(KafkaError):
    """A message could not be encoded or decoded."""


class MalformedMessage(ProtocolError):
    """Bytes that are not a valid encoding of the expected message."""


class UnsupportedVersionForField(ProtocolError):
    """A field holds a value that the API version being encoded cannot carry."""


# --- client-side errors (no protocol code) -------------------------------------------------------


class KafkaConnectionError(KafkaError):
    """The connection to a broker failed or was closed; requests in flight on it fail with this."""

    retriable = True


class KafkaTimeoutError(KafkaError):
    """An operation did not complete within its time limit on the client side."""

    retriable = True


class NoBrokersAvailable(KafkaError):
    """None of the bootstrap or known brokers could be reached."""

    # The cluster may come back; how long to keep trying is the caller's decision.
    retriable = True


class SslAuthenticationError(KafkaError):
    """The TLS handshake with a broker failed: its certificate did not verify (unknown CA, a host
    name it does not cover, expired), it refused ours, or it does not speak TLS on that port.

    Not retriable, like Java's SslAuthenticationException: the same trust store and certificates
    cannot do better next time. The message carries the SSL library's reason.
    """


class IllegalStateError(KafkaError):
    """An operation was called in a state that does not allow it (for example after close)."""


class ConfigError(KafkaError, ValueError):
    """A configuration value is invalid."""


# --- broker error codes --------------------------------------------------------------------------


class ErrorCode(enum.IntEnum):
    """Every protocol error code, with Kafka's names (`ErrorCode.INVALID_RECORD_STATE`)."""

    UNKNOWN_SERVER_ERROR = -1
    NONE = 0
    OFFSET_OUT_OF_RANGE = 1
    CORRUPT_MESSAGE = 2
    UNKNOWN_TOPIC_OR_PARTITION = 3
    INVALID_FETCH_SIZE = 4
    LEADER_NOT_AVAILABLE = 5
    NOT_LEADER_OR_FOLLOWER = 6
    REQUEST_TIMED_OUT = 7
    BROKER_NOT_AVAILABLE = 8
    REPLICA_NOT_AVAILABLE = 9
    MESSAGE_TOO_LARGE = 10
    STALE_CONTROLLER_EPOCH = 11
    OFFSET_METADATA_TOO_LARGE = 12
    NETWORK_EXCEPTION = 13
    COORDINATOR_LOAD_IN_PROGRESS = 14
    COORDINATOR_NOT_AVAILABLE = 15
    NOT_COORDINATOR = 16
    INVALID_TOPIC_EXCEPTION = 17
    RECORD_LIST_TOO_LARGE = 18
    NOT_ENOUGH_REPLICAS = 19
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
    INVALID_REQUIRED_ACKS = 21
    ILLEGAL_GENERATION = 22
    INCONSISTENT_GROUP_PROTOCOL = 23
    INVALID_GROUP_ID = 24
    UNKNOWN_MEMBER_ID = 25
    INVALID_SESSION_TIMEOUT = 26
    REBALANCE_IN_PROGRESS = 27
    INVALID_COMMIT_OFFSET_SIZE = 28
    TOPIC_AUTHORIZATION_FAILED = 29
    GROUP_AUTHORIZATION_FAILED = 30
    CLUSTER_AUTHORIZATION_FAILED = 31
    INVALID_TIMESTAMP = 32
    UNSUPPORTED_SASL_MECHANISM = 33
    ILLEGAL_SASL_STATE = 34
    UNSUPPORTED_VERSION = 35
    TOPIC_ALREADY_EXISTS = 36
    INVALID_PARTITIONS = 37
    INVALID_REPLICATION_FACTOR = 38
    INVALID_REPLICA_ASSIGNMENT = 39
    INVALID_CONFIG = 40
    NOT_CONTROLLER = 41
    INVALID_REQUEST = 42
    UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
    POLICY_VIOLATION = 44
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45
    DUPLICATE_SEQUENCE_NUMBER = 46
    INVALID_PRODUCER_EPOCH = 47
    INVALID_TXN_STATE = 48
    INVALID_PRODUCER_ID_MAPPING = 49
    INVALID_TRANSACTION_TIMEOUT = 50
    CONCURRENT_TRANSACTIONS = 51
    TRANSACTION_COORDINATOR_FENCED = 52
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
    SECURITY_DISABLED = 54
    OPERATION_NOT_ATTEMPTED = 55
    KAFKA_STORAGE_ERROR = 56
    LOG_DIR_NOT_FOUND = 57
    SASL_AUTHENTICATION_FAILED = 58
    UNKNOWN_PRODUCER_ID = 59
    REASSIGNMENT_IN_PROGRESS = 60
    DELEGATION_TOKEN_AUTH_DISABLED = 61
    DELEGATION_TOKEN_NOT_FOUND = 62
    DELEGATION_TOKEN_OWNER_MISMATCH = 63
    DELEGATION_TOKEN_REQUEST_NOT_ALLOWED = 64
    DELEGATION_TOKEN_AUTHORIZATION_FAILED = 65
    DELEGATION_TOKEN_EXPIRED = 66
    INVALID_PRINCIPAL_TYPE = 67
    NON_EMPTY_GROUP = 68
    GROUP_ID_NOT_FOUND = 69
    FETCH_SESSION_ID_NOT_FOUND = 70
    INVALID_FETCH_SESSION_EPOCH = 71
    LISTENER_NOT_FOUND = 72
    TOPIC_DELETION_DISABLED = 73
    FENCED_LEADER_EPOCH = 74
    UNKNOWN_LEADER_EPOCH = 75
    UNSUPPORTED_COMPRESSION_TYPE = 76
    STALE_BROKER_EPOCH = 77
    OFFSET_NOT_AVAILABLE = 78
    MEMBER_ID_REQUIRED = 79
    PREFERRED_LEADER_NOT_AVAILABLE = 80
    GROUP_MAX_SIZE_REACHED = 81
    FENCED_INSTANCE_ID = 82
    ELIGIBLE_LEADERS_NOT_AVAILABLE = 83
    ELECTION_NOT_NEEDED = 84
    NO_REASSIGNMENT_IN_PROGRESS = 85
    GROUP_SUBSCRIBED_TO_TOPIC = 86
    INVALID_RECORD = 87
    UNSTABLE_OFFSET_COMMIT = 88
    THROTTLING_QUOTA_EXCEEDED = 89
    PRODUCER_FENCED = 90
    RESOURCE_NOT_FOUND = 91
    DUPLICATE_RESOURCE = 92
    UNACCEPTABLE_CREDENTIAL = 93
    INCONSISTENT_VOTER_SET = 94
    INVALID_UPDATE_VERSION = 95
    FEATURE_UPDATE_FAILED = 96
    PRINCIPAL_DESERIALIZATION_FAILURE = 97
    SNAPSHOT_NOT_FOUND = 98
    POSITION_OUT_OF_RANGE = 99
    UNKNOWN_TOPIC_ID = 100
    DUPLICATE_BROKER_REGISTRATION = 101
    BROKER_ID_NOT_REGISTERED = 102
    INCONSISTENT_TOPIC_ID = 103
    INCONSISTENT_CLUSTER_ID = 104
    TRANSACTIONAL_ID_NOT_FOUND = 105
    FETCH_SESSION_TOPIC_ID_ERROR = 106
    INELIGIBLE_REPLICA = 107
    NEW_LEADER_ELECTED = 108
    OFFSET_MOVED_TO_TIERED_STORAGE = 109
    FENCED_MEMBER_EPOCH = 110
    UNRELEASED_INSTANCE_ID = 111
    UNSUPPORTED_ASSIGNOR = 112
    STALE_MEMBER_EPOCH = 113
    MISMATCHED_ENDPOINT_TYPE = 114
    UNSUPPORTED_ENDPOINT_TYPE = 115
    UNKNOWN_CONTROLLER_ID = 116
    UNKNOWN_SUBSCRIPTION_ID = 117
    TELEMETRY_TOO_LARGE = 118
    INVALID_REGISTRATION = 119
    TRANSACTION_ABORTABLE = 120
    INVALID_RECORD_STATE = 121
    SHARE_SESSION_NOT_FOUND = 122
    INVALID_SHARE_SESSION_EPOCH = 123
    FENCED_STATE_EPOCH = 124
    INVALID_VOTER_KEY = 125
    DUPLICATE_VOTER = 126
    VOTER_NOT_FOUND = 127
    INVALID_REGULAR_EXPRESSION = 128
    REBOOTSTRAP_REQUIRED = 129
    STREAMS_INVALID_TOPOLOGY = 130
    STREAMS_INVALID_TOPOLOGY_EPOCH = 131
    STREAMS_TOPOLOGY_FENCED = 132
    SHARE_SESSION_LIMIT_REACHED = 133


_BY_CODE: dict[int, type[BrokerError]] = {}
ERRORS_BY_CODE: Mapping[int, type[BrokerError]] = MappingProxyType(_BY_CODE)


class BrokerError(KafkaError):
    """An error code from a Kafka response; subclasses are one per code.

    `message` is the broker's ErrorMessage when it sent one, else the class description.
    """

    code: ClassVar[int]
    name: ClassVar[str]
    description: ClassVar[str]
    invalid_metadata: ClassVar[bool] = False

    def __init_subclass__(
        cls,
        *,
        code: int | None = None,
        retriable: bool = False,
        invalid_metadata: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if code is None:
            # Intermediate or user subclasses inherit everything and stay out of the table.
            return
        if code in _BY_CODE:
            raise TypeError(f"error code {code} is already taken by {_BY_CODE[code].__name__}")
        cls.code = code
        cls.name = ErrorCode(code).name
        cls.retriable = retriable or invalid_metadata
        cls.invalid_metadata = invalid_metadata
        cls.description = cls.__doc__ or cls.name
        _BY_CODE[code] = cls

    # What usually causes this error and what to do about it; appended to `str(exc)`.
    hint: ClassVar[str | None] = None

    def __init__(self, message: str | None = None, *, context: str | None = None) -> None:
        # Brokers send null or "" when they have nothing to add to the code.
        self.message = message or self.description
        self.context = context
        super().__init__(self.message)

    def with_context(self, context: str) -> BrokerError:
        """Names what the error is about ("group 'g'", "topic 't'"); returns `self`."""
        self.context = context
        return self

    def __str__(self) -> str:
        """The one wording of a Kafka error everywhere (CLI, admin, runtime logs):
        "[<context>: ]<NAME> (<code>): <message>[ Hint: <hint>]"."""
        text = f"{self.name} ({self.code}): {self.message}"
        if self.context:
            text = f"{self.context}: {text}"
        if self.hint:
            text = f"{text} Hint: {self.hint}"
        return text


class UnknownBrokerError(BrokerError):
    """An error code this version of aioshare does not know (sent by a newer broker)."""

    name = "UNKNOWN_ERROR_CODE"
    description = "An error code this version of aioshare does not know."


@functools.cache
def _unknown_error_class(code: int) -> type[UnknownBrokerError]:
    # One class per unknown code keeps `code` a class attribute, like every other BrokerError.
    return type("UnknownBrokerError", (UnknownBrokerError,), {"code": code, "__module__": __name__})


def error_for_code(code: int, message: str | None = None) -> BrokerError:
    """The exception for a non-zero protocol error code (not raised)."""
    if code == ErrorCode.NONE:
        raise ValueError("error code 0 (NONE) is not an error")
    cls = _BY_CODE.get(code) or _unknown_error_class(code)
    return cls(message)


def raise_for_code(code: int, message: str | None = None) -> None:
    """Raise the exception for `code`; do nothing for 0 (NONE)."""
    if code != ErrorCode.NONE:
        raise error_for_code(code, message)


class UnknownServerError(BrokerError, code=-1):
    """The broker hit an unexpected error while handling the request."""


class OffsetOutOfRangeError(BrokerError, code=1):
    """The requested offset lies outside the offsets the partition holds."""


class CorruptRecordError(BrokerError, code=2, retriable=True):
    """A record batch failed its CRC check, is the wrong size, or is otherwise corrupt."""


class UnknownTopicOrPartitionError(BrokerError, code=3, invalid_metadata=True):
    """This broker does not host the topic-partition."""

    hint = (
        "the topic does not exist (check its name, or create it first), "
        "or the partition number is past the topic's partition count."
    )


class InvalidFetchSizeError(BrokerError, code=4):
    """The fetch size in the request is invalid."""


class LeaderNotAvailableError(BrokerError, code=5, invalid_metadata=True):
    """The partition has no leader right now (an election is in progress)."""


class NotLeaderOrFollowerError(BrokerError, code=6, invalid_metadata=True):
    """This broker is not the leader (or not a replica) of the partition."""


class RequestTimedOutError(BrokerError, code=7, retriable=True):
    """The broker timed out while handling the request."""


class BrokerNotAvailableError(BrokerError, code=8):
    """The broker is not available."""


class ReplicaNotAvailableError(BrokerError, code=9, invalid_metadata=True):
    """The replica for the partition is not available."""


class MessageTooLargeError(BrokerError, code=10):
    """A record batch is larger than the broker accepts."""


class StaleControllerEpochError(BrokerError, code=11):
    """The controller has moved to another broker."""


class OffsetMetadataTooLargeError(BrokerError, code=12):
    """The metadata string of an offset commit is too large."""


class NetworkError(BrokerError, code=13, invalid_metadata=True):
    """The connection was lost before a response arrived."""


class CoordinatorLoadInProgressError(BrokerError, code=14, retriable=True):
    """The coordinator is still loading its state."""


class CoordinatorNotAvailableError(BrokerError, code=15, retriable=True):
    """The coordinator is not available."""


class NotCoordinatorError(BrokerError, code=16, retriable=True):
    """This broker is not the coordinator for the group or transaction."""


class InvalidTopicError(BrokerError, code=17):
    """The topic name is invalid or the operation is not allowed on it."""


class RecordListTooLargeError(BrokerError, code=18):
    """The record batch is larger than the broker's segment size."""


class NotEnoughReplicasError(BrokerError, code=19, retriable=True):
    """Fewer in-sync replicas than required; the write was rejected."""


class NotEnoughReplicasAfterAppendError(BrokerError, code=20, retriable=True):
    """The write was appended, but to fewer in-sync replicas than required."""


class InvalidRequiredAcksError(BrokerError, code=21):
    """The produce request has an invalid acks value."""


class IllegalGenerationError(BrokerError, code=22):
    """The group generation id is not valid."""


class InconsistentGroupProtocolError(BrokerError, code=23):
    """The member's protocols do not match those of the group."""


class InvalidGroupIdError(BrokerError, code=24):
    """The group id is invalid."""


class UnknownMemberIdError(BrokerError, code=25):
    """The coordinator does not know this member."""


class InvalidSessionTimeoutError(BrokerError, code=26):
    """The session timeout is outside the range the broker allows."""


class RebalanceInProgressError(BrokerError, code=27):
    """The group is rebalancing; the member must rejoin."""


class InvalidCommitOffsetSizeError(BrokerError, code=28):
    """The offset commit data has an invalid size."""


class TopicAuthorizationFailedError(BrokerError, code=29):
    """Not authorized to access the topic."""


class GroupAuthorizationFailedError(BrokerError, code=30):
    """Not authorized to access the group."""


class ClusterAuthorizationFailedError(BrokerError, code=31):
    """Not authorized for this cluster operation."""


class InvalidTimestampError(BrokerError, code=32):
    """A record timestamp is outside the accepted range."""


class UnsupportedSaslMechanismError(BrokerError, code=33):
    """The broker does not support the requested SASL mechanism."""


class IllegalSaslStateError(BrokerError, code=34):
    """The request is not valid in the current SASL state."""


class UnsupportedVersionError(BrokerError, code=35):
    """The broker does not support this API version."""


class TopicAlreadyExistsError(BrokerError, code=36):
    """A topic with this name already exists."""


class InvalidPartitionsError(BrokerError, code=37):
    """The number of partitions is invalid."""


class InvalidReplicationFactorError(BrokerError, code=38):
    """The replication factor is invalid for this cluster."""


class InvalidReplicaAssignmentError(BrokerError, code=39):
    """The replica assignment is invalid."""


class InvalidConfigError(BrokerError, code=40):
    """A configuration value is invalid."""


class NotControllerError(BrokerError, code=41, retriable=True):
    """This broker is not the active controller."""


class InvalidRequestError(BrokerError, code=42):
    """The request is malformed or not valid for this broker."""


class UnsupportedForMessageFormatError(BrokerError, code=43):
    """The partition's message format does not support the request."""


class PolicyViolationError(BrokerError, code=44):
    """The request violates a configured policy."""


class OutOfOrderSequenceNumberError(BrokerError, code=45):
    """The producer sequence number is out of order."""


class DuplicateSequenceNumberError(BrokerError, code=46):
    """The producer sequence number is a duplicate."""


class InvalidProducerEpochError(BrokerError, code=47, retriable=True):
    """The producer epoch is older than the current one."""


class InvalidTxnStateError(BrokerError, code=48):
    """The transactional operation is not valid in the current state."""


class InvalidProducerIdMappingError(BrokerError, code=49):
    """The producer id is not assigned to this transactional id."""


class InvalidTransactionTimeoutError(BrokerError, code=50):
    """The transaction timeout exceeds the broker's maximum."""


class ConcurrentTransactionsError(BrokerError, code=51, retriable=True):
    """Another operation on the same transaction is in progress."""


class TransactionCoordinatorFencedError(BrokerError, code=52):
    """The transaction coordinator sending the marker is no longer current."""


class TransactionalIdAuthorizationFailedError(BrokerError, code=53):
    """Not authorized for the transactional id."""


class SecurityDisabledError(BrokerError, code=54):
    """Security features are disabled on the broker."""


class OperationNotAttemptedError(BrokerError, code=55):
    """The broker skipped this operation because another in the batch failed."""


class KafkaStorageError(BrokerError, code=56, invalid_metadata=True):
    """The broker hit a disk error accessing the log."""


class LogDirNotFoundError(BrokerError, code=57):
    """The log directory is not in the broker's configuration."""


class SaslAuthenticationFailedError(BrokerError, code=58):
    """SASL authentication failed."""


class UnknownProducerIdError(BrokerError, code=59):
    """The broker has no state for this producer id."""


class ReassignmentInProgressError(BrokerError, code=60):
    """A partition reassignment is in progress."""


class DelegationTokenAuthDisabledError(BrokerError, code=61):
    """Delegation tokens are disabled."""


class DelegationTokenNotFoundError(BrokerError, code=62):
    """The delegation token does not exist."""


class DelegationTokenOwnerMismatchError(BrokerError, code=63):
    """The principal is not the token's owner or renewer."""


class DelegationTokenRequestNotAllowedError(BrokerError, code=64):
    """Delegation token requests are not allowed on this channel."""


class DelegationTokenAuthorizationFailedError(BrokerError, code=65):
    """Not authorized for the delegation token operation."""


class DelegationTokenExpiredError(BrokerError, code=66):
    """The delegation token has expired."""


class InvalidPrincipalTypeError(BrokerError, code=67):
    """The principal type is not supported."""


class NonEmptyGroupError(BrokerError, code=68):
    """The group still has members."""

    hint = (
        "the share group still has members: stop the group's consumers first "
        "(Kafka resets offsets of, and deletes, only an empty group)."
    )


class GroupIdNotFoundError(BrokerError, code=69):
    """The group does not exist (or is of another type)."""

    hint = (
        "no share group has this id (check the spelling; `aioshare groups list` lists them), "
        "or the group is not a share group."
    )


class FetchSessionIdNotFoundError(BrokerError, code=70, retriable=True):
    """The fetch session does not exist."""


class InvalidFetchSessionEpochError(BrokerError, code=71, retriable=True):
    """The fetch session epoch is not the expected one."""


class ListenerNotFoundError(BrokerError, code=72, invalid_metadata=True):
    """The leader has no listener matching the one the metadata came from."""


class TopicDeletionDisabledError(BrokerError, code=73):
    """Topic deletion is disabled."""


class FencedLeaderEpochError(BrokerError, code=74, invalid_metadata=True):
    """The request's leader epoch is older than the broker's."""


class UnknownLeaderEpochError(BrokerError, code=75, retriable=True):
    """The request's leader epoch is newer than the broker's."""


class UnsupportedCompressionTypeError(BrokerError, code=76):
    """The compression type is not supported here."""


class StaleBrokerEpochError(BrokerError, code=77):
    """The broker epoch has changed."""


class OffsetNotAvailableError(BrokerError, code=78, retriable=True):
    """The leader cannot yet guarantee monotonic offsets after an election."""


class MemberIdRequiredError(BrokerError, code=79):
    """The member must rejoin with the member id the coordinator assigned."""


class PreferredLeaderNotAvailableError(BrokerError, code=80, invalid_metadata=True):
    """The preferred leader is not available."""


class GroupMaxSizeReachedError(BrokerError, code=81):
    """The group has reached its maximum number of members."""


class FencedInstanceIdError(BrokerError, code=82):
    """Another member with the same group instance id has joined."""


class EligibleLeadersNotAvailableError(BrokerError, code=83, invalid_metadata=True):
    """No eligible leader is available for the partition."""


class ElectionNotNeededError(BrokerError, code=84, invalid_metadata=True):
    """The partition does not need a leader election."""


class NoReassignmentInProgressError(BrokerError, code=85):
    """No partition reassignment is in progress."""


class GroupSubscribedToTopicError(BrokerError, code=86):
    """The group is subscribed to the topic, so its offsets cannot be deleted."""


class InvalidRecordError(BrokerError, code=87):
    """A record failed the broker's validation."""


class UnstableOffsetCommitError(BrokerError, code=88, retriable=True):
    """Offsets are pending from an open transaction."""


class ThrottlingQuotaExceededError(BrokerError, code=89, retriable=True):
    """The throttling quota has been exceeded."""


class ProducerFencedError(BrokerError, code=90):
    """A newer producer with the same transactional id exists."""


class ResourceNotFoundError(BrokerError, code=91):
    """The request refers to a resource that does not exist."""


class DuplicateResourceError(BrokerError, code=92):
    """The request refers to the same resource twice."""


class UnacceptableCredentialError(BrokerError, code=93):
    """The credential does not meet the acceptance criteria."""


class InconsistentVoterSetError(BrokerError, code=94):
    """The sender or receiver is not one of the expected voters."""


class InvalidUpdateVersionError(BrokerError, code=95):
    """The update version is invalid."""


class FeatureUpdateFailedError(BrokerError, code=96):
    """Finalized features could not be updated."""


class PrincipalDeserializationFailureError(BrokerError, code=97):
    """The forwarded request's principal could not be deserialized."""


class SnapshotNotFoundError(BrokerError, code=98):
    """The requested snapshot does not exist."""


class PositionOutOfRangeError(BrokerError, code=99):
    """The requested snapshot position is out of range."""


class UnknownTopicIdError(BrokerError, code=100, invalid_metadata=True):
    """This broker does not host a topic with this id."""


class DuplicateBrokerRegistrationError(BrokerError, code=101):
    """The broker id is already registered."""


class BrokerIdNotRegisteredError(BrokerError, code=102):
    """The broker id is not registered."""


class InconsistentTopicIdError(BrokerError, code=103, invalid_metadata=True):
    """The topic id does not match the one in the log."""


class InconsistentClusterIdError(BrokerError, code=104):
    """The cluster id does not match this cluster."""


class TransactionalIdNotFoundError(BrokerError, code=105):
    """The transactional id does not exist."""


class FetchSessionTopicIdError(BrokerError, code=106, retriable=True):
    """The fetch session mixed requests with and without topic ids."""


class IneligibleReplicaError(BrokerError, code=107):
    """The proposed ISR contains an ineligible replica."""


class NewLeaderElectedError(BrokerError, code=108):
    """The partition state was updated but the leader has changed."""


class OffsetMovedToTieredStorageError(BrokerError, code=109):
    """The requested offset is only in tiered storage."""


class FencedMemberEpochError(BrokerError, code=110):
    """The member epoch is fenced; the member must rejoin."""


class UnreleasedInstanceIdError(BrokerError, code=111):
    """The instance id is still held by another member."""


class UnsupportedAssignorError(BrokerError, code=112):
    """The group does not support the assignor or its version."""


class StaleMemberEpochError(BrokerError, code=113):
    """The member epoch is stale."""


class MismatchedEndpointTypeError(BrokerError, code=114):
    """The request was sent to an endpoint of the wrong type."""


class UnsupportedEndpointTypeError(BrokerError, code=115):
    """The endpoint type is not supported."""


class UnknownControllerIdError(BrokerError, code=116):
    """The controller id is unknown."""


class UnknownSubscriptionIdError(BrokerError, code=117):
    """The telemetry subscription id is unknown or outdated."""


class TelemetryTooLargeError(BrokerError, code=118):
    """The telemetry payload is larger than the broker accepts."""


class InvalidRegistrationError(BrokerError, code=119):
    """The controller considers the broker registration invalid."""


class TransactionAbortableError(BrokerError, code=120):
    """The transaction failed; abort it to continue."""


class InvalidRecordStateError(BrokerError, code=121):
    """The record's delivery state does not allow this acknowledgement."""


class ShareSessionNotFoundError(BrokerError, code=122, retriable=True):
    """The share session does not exist."""


class InvalidShareSessionEpochError(BrokerError, code=123, retriable=True):
    """The share session epoch is not the expected one."""


class FencedStateEpochError(BrokerError, code=124):
    """The share-group state epoch is out of date."""


class InvalidVoterKeyError(BrokerError, code=125):
    """The voter key does not match the replica's key."""


class DuplicateVoterError(BrokerError, code=126):
    """The voter is already in the voter set."""


class VoterNotFoundError(BrokerError, code=127):
    """The voter is not in the voter set."""


class InvalidRegularExpressionError(BrokerError, code=128):
    """The regular expression is invalid."""


class RebootstrapRequiredError(BrokerError, code=129):
    """Client metadata is stale; the client must rebootstrap."""


class StreamsInvalidTopologyError(BrokerError, code=130):
    """The streams topology is invalid."""


class StreamsInvalidTopologyEpochError(BrokerError, code=131):
    """The streams topology epoch is invalid."""


class StreamsTopologyFencedError(BrokerError, code=132):
    """The streams topology epoch is outdated."""


class ShareSessionLimitReachedError(BrokerError, code=133, retriable=True):
    """The broker's share session cache is full."""
