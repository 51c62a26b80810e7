"""aioshare.protocol.errors: the code table, its lookups, and a cross-check against kafka-python."""

from __future__ import annotations

import pickle

import pytest

from aioshare.protocol import errors
from aioshare.protocol.errors import (
    ERRORS_BY_CODE,
    BrokerError,
    ConfigError,
    CorruptRecordError,
    ErrorCode,
    IllegalStateError,
    InvalidRecordStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MalformedMessage,
    NoBrokersAvailable,
    NotLeaderOrFollowerError,
    ProtocolError,
    RequestTimedOutError,
    ShareSessionNotFoundError,
    UnknownBrokerError,
    UnknownServerError,
    UnsupportedVersionForField,
    error_for_code,
    raise_for_code,
)


def test_every_code_has_exactly_one_class() -> None:
    assert set(ERRORS_BY_CODE) == {c.value for c in ErrorCode} - {0}
    assert len(set(ERRORS_BY_CODE.values())) == len(ERRORS_BY_CODE)
    # Codes are dense from -1 to the newest one: a gap would mean a code was left out.
    assert sorted(ErrorCode) == [-1, *range(0, max(ErrorCode) + 1)]
    assert max(ErrorCode) >= 133


def test_class_attributes_match_the_enum() -> None:
    for code, cls in ERRORS_BY_CODE.items():
        assert cls.code == code
        assert cls.name == ErrorCode(code).name
        assert cls.description and cls.description == cls.__doc__
        assert issubclass(cls, BrokerError)
        assert getattr(errors, cls.__name__) is cls


def _camel(name: str) -> str:
    for suffix in ("_ERROR", "_EXCEPTION"):
        name = name.removesuffix(suffix)
    return "".join(part.capitalize() for part in name.split("_")) + "Error"


def test_class_names_follow_the_kafka_names() -> None:
    renamed = {ErrorCode.CORRUPT_MESSAGE: "CorruptRecordError"}  # Java's CorruptRecordException
    for code, cls in ERRORS_BY_CODE.items():
        assert cls.__name__ == renamed.get(ErrorCode(code), _camel(cls.name)), code


def test_share_group_codes() -> None:
    # The share-group codes of docs section 0, with Java's retriability.
    expected = {
        121: ("INVALID_RECORD_STATE", InvalidRecordStateError, False),
        122: ("SHARE_SESSION_NOT_FOUND", ShareSessionNotFoundError, True),
        123: ("INVALID_SHARE_SESSION_EPOCH", errors.InvalidShareSessionEpochError, True),
        124: ("FENCED_STATE_EPOCH", errors.FencedStateEpochError, False),
        133: ("SHARE_SESSION_LIMIT_REACHED", errors.ShareSessionLimitReachedError, True),
    }
    for code, (name, cls, retriable) in expected.items():
        assert ErrorCode[name] == code
        assert ERRORS_BY_CODE[code] is cls
        assert cls.retriable is retriable


def test_retriable_and_invalid_metadata_flags() -> None:
    assert NotLeaderOrFollowerError.retriable and NotLeaderOrFollowerError.invalid_metadata
    assert errors.UnknownTopicIdError.invalid_metadata
    assert errors.UnknownLeaderEpochError.retriable and not errors.UnknownLeaderEpochError.invalid_metadata
    assert CorruptRecordError.retriable  # Java: CorruptRecordException extends RetriableException
    assert RequestTimedOutError.retriable
    assert not UnknownServerError.retriable
    assert not errors.FencedMemberEpochError.retriable
    for cls in ERRORS_BY_CODE.values():
        assert cls.retriable or not cls.invalid_metadata, cls


def test_error_for_code_builds_an_instance() -> None:
    err = error_for_code(ErrorCode.INVALID_RECORD_STATE, "record 5 is not acquired")
    assert type(err) is InvalidRecordStateError
    assert err.message == "record 5 is not acquired"
    assert str(err) == "INVALID_RECORD_STATE (121): record 5 is not acquired"
    # Brokers send null or "" when they have nothing to add.
    assert error_for_code(6).message == NotLeaderOrFollowerError.description
    assert error_for_code(6, "").message == NotLeaderOrFollowerError.description


def test_unknown_codes_keep_their_code() -> None:
    err = error_for_code(999, "from the future")
    assert isinstance(err, UnknownBrokerError)
    assert isinstance(err, BrokerError)
    assert err.code == 999
    assert err.message == "from the future"
    assert not err.retriable
    assert type(error_for_code(999)) is type(err)
    assert error_for_code(-7).code == -7
    assert 999 not in ERRORS_BY_CODE


def test_code_zero_is_not_an_error() -> None:
    raise_for_code(0)
    raise_for_code(ErrorCode.NONE, "ignored")
    with pytest.raises(ValueError):
        error_for_code(0)


def test_raise_for_code() -> None:
    with pytest.raises(NotLeaderOrFollowerError) as info:
        raise_for_code(6, "leader moved")
    assert info.value.message == "leader moved"
    with pytest.raises(UnknownBrokerError):
        raise_for_code(4242)


def test_error_code_enum_reads_like_kafka() -> None:
    assert int(ErrorCode.INVALID_RECORD_STATE) == 121
    assert ErrorCode(122) is ErrorCode.SHARE_SESSION_NOT_FOUND
    assert InvalidRecordStateError.code == ErrorCode.INVALID_RECORD_STATE


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        ERRORS_BY_CODE[500] = UnknownServerError  # type: ignore[index]


def test_subclassing() -> None:
    class MyNotLeader(NotLeaderOrFollowerError):
        pass

    assert MyNotLeader.code == 6 and ERRORS_BY_CODE[6] is NotLeaderOrFollowerError
    with pytest.raises(TypeError, match="already taken"):

        class Duplicate(BrokerError, code=6):
            """Taken."""


def test_pickles() -> None:
    err = error_for_code(122, "gone")
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is ShareSessionNotFoundError and copy.message == "gone"


def test_hierarchy_of_non_broker_errors() -> None:
    for codec_error in (MalformedMessage, UnsupportedVersionForField):
        assert issubclass(codec_error, ProtocolError) and issubclass(codec_error, KafkaError)
        assert not issubclass(codec_error, BrokerError)
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, KafkaError)
    assert KafkaConnectionError.retriable and KafkaTimeoutError.retriable and NoBrokersAvailable.retriable
    assert not IllegalStateError.retriable and not ProtocolError.retriable
    for cls in (KafkaConnectionError, KafkaTimeoutError, NoBrokersAvailable, IllegalStateError, ConfigError):
        assert not issubclass(cls, BrokerError)
    # The client-side timeout is not the broker's REQUEST_TIMED_OUT.
    assert not issubclass(KafkaTimeoutError, RequestTimedOutError)


@pytest.mark.interop
def test_matches_kafka_python_table() -> None:
    kafka_errors = pytest.importorskip("kafka.errors")
    theirs = {code: cls for code, cls in kafka_errors.kafka_errors.items() if isinstance(code, int)}
    assert len(theirs) > 100
    # kafka-python kept pre-KIP names for a few codes; Kafka renamed them.
    renamed = {
        -1: "UNKNOWN",
        0: "NO_ERROR",
        6: "NOT_LEADER_FOR_PARTITION",
        10: "MESSAGE_SIZE_TOO_LARGE",
        17: "INVALID_TOPIC",
        39: "INVALID_REPLICATION_ASSIGNMENT",
    }
    # Where kafka-python disagrees with the Java client, aioshare follows Java:
    # CorruptRecordException and InvalidProducerEpochException extend RetriableException there.
    retriable_differs = {2, 47}
    # UnknownLeaderEpochException is a RetriableException, not an InvalidMetadataException, in Java.
    metadata_differs = {75}
    for code, their_cls in theirs.items():
        if code == 0:
            continue
        ours = ERRORS_BY_CODE[code]
        assert renamed.get(code, ours.name) == their_cls.message, code
        assert (ours.retriable != their_cls.retriable) == (code in retriable_differs), code
        their_metadata = issubclass(their_cls, kafka_errors.InvalidMetadataError)
        assert (ours.invalid_metadata != their_metadata) == (code in metadata_differs), code
