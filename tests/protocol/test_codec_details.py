"""Hand-written tests of the codec's tricky rules, golden bytes, framing, and decoder fuzzing.

Golden bytes here are written out by hand from the JSON schemas (field order, compact or not,
tagged sections), never produced by our encoder.
"""

from __future__ import annotations

import struct
import uuid
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aioshare.protocol import framing
from aioshare.protocol._codec import ApiMessage
from aioshare.protocol.errors import MalformedMessage, ProtocolError, UnsupportedVersionForField
from aioshare.protocol.framing import FrameSplitter, FrameTooLarge, UnsupportedRequest
from aioshare.protocol.messages import (
    REQUESTS,
    RESPONSES,
    ApiVersionsRequest,
    ApiVersionsResponse,
    FetchResponse,
    MetadataRequest,
    ProduceRequest,
    RequestHeader,
    ResponseHeader,
    ShareAcknowledgeRequest,
    ShareFetchRequest,
    ShareFetchResponse,
    ShareGroupHeartbeatRequest,
    ShareGroupHeartbeatResponse,
)
from tests.protocol import schema_strategies as ss

needs_schemas = pytest.mark.skipif(not ss.SCHEMA_DIR.is_dir(), reason=f"{ss.SCHEMA_DIR} not checked out")

FUZZ = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def h(text: str) -> bytes:
    """Hex with spaces, newlines and `#` comments allowed."""
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    return bytes.fromhex("".join(lines))


TOPIC_A = uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")
TOPIC_B = uuid.UUID("fedcba98-7654-3210-fedc-ba9876543210")
TOPIC_C = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
SHARE_HEARTBEAT_RESPONSE = ShareGroupHeartbeatResponse(
    member_id="m", member_epoch=3, heartbeat_interval_ms=5000
)


# --------------------------------------------------------------------------- golden bytes


SHARE_FETCH_V2 = ShareFetchRequest(
    group_id="grp",
    member_id="m1",
    share_session_epoch=1,
    max_wait_ms=500,
    min_bytes=1,
    max_bytes=1048576,
    max_records=500,
    batch_size=100,
    share_acquire_mode=1,
    is_renew_ack=True,
    topics=[
        ShareFetchRequest.FetchTopic(
            topic_id=TOPIC_A,
            partitions=[
                ShareFetchRequest.FetchPartition(
                    partition_index=3,
                    acknowledgement_batches=[
                        ShareFetchRequest.AcknowledgementBatch(
                            first_offset=10, last_offset=12, acknowledge_types=[1, 2, 4]
                        ),
                        ShareFetchRequest.AcknowledgementBatch(
                            first_offset=20, last_offset=20, acknowledge_types=[3]
                        ),
                    ],
                )
            ],
        )
    ],
    forgotten_topics_data=[ShareFetchRequest.ForgottenTopic(topic_id=TOPIC_B, partitions=[0, 7])],
)
SHARE_FETCH_V2_BYTES = h(
    """
    04 677270                          # GroupId: compact nullable string "grp" (len+1 = 4)
    03 6d31                            # MemberId: "m1"
    00000001                           # ShareSessionEpoch
    000001f4                           # MaxWaitMs 500
    00000001                           # MinBytes
    00100000                           # MaxBytes 1 MiB
    000001f4                           # MaxRecords 500 (v1+)
    00000064                           # BatchSize 100 (v1+)
    01                                 # ShareAcquireMode int8 (v2+)
    01                                 # IsRenewAck bool (v2+)
    02                                 # Topics: compact array, 1 element
      0123456789abcdef0123456789abcdef # TopicId
      02                               # Partitions: 1 element
        00000003                       # PartitionIndex (PartitionMaxBytes is v0 only)
        03                             # AcknowledgementBatches: 2 elements
          000000000000000a             # FirstOffset 10
          000000000000000c             # LastOffset 12
          04 010204                    # AcknowledgeTypes: compact []int8 [1, 2, 4]
          00                           # batch tagged fields
          0000000000000014             # FirstOffset 20
          0000000000000014             # LastOffset 20
          02 03                        # AcknowledgeTypes [3]
          00                           # batch tagged fields
        00                             # partition tagged fields
      00                               # topic tagged fields
    02                                 # ForgottenTopicsData: 1 element
      fedcba9876543210fedcba9876543210 # TopicId
      03 00000000 00000007             # Partitions: compact []int32 [0, 7]
      00                               # forgotten topic tagged fields
    00                                 # top-level tagged fields
    """
)

SHARE_ACK = ShareAcknowledgeRequest(
    group_id="g",
    member_id="m",
    share_session_epoch=2,
    topics=[
        ShareAcknowledgeRequest.AcknowledgeTopic(
            topic_id=TOPIC_C,
            partitions=[
                ShareAcknowledgeRequest.AcknowledgePartition(
                    partition_index=0,
                    acknowledgement_batches=[
                        ShareAcknowledgeRequest.AcknowledgementBatch(
                            first_offset=100, last_offset=101, acknowledge_types=[1, 0]
                        )
                    ],
                )
            ],
        )
    ],
)
SHARE_ACK_BODY_AFTER_EPOCH = h(
    """
    02                                 # Topics: 1 element
      00112233445566778899aabbccddeeff # TopicId
      02                               # Partitions: 1 element
        00000000                       # PartitionIndex
        02                             # AcknowledgementBatches: 1 element
          0000000000000064             # FirstOffset 100
          0000000000000065             # LastOffset 101
          03 0100                      # AcknowledgeTypes [1, 0]
          00                           # batch tagged fields
        00                             # partition tagged fields
      00                               # topic tagged fields
    00                                 # top-level tagged fields
    """
)
SHARE_ACK_PREFIX = h("02 67  02 6d  00000002")  # GroupId "g", MemberId "m", ShareSessionEpoch 2

SHARE_HEARTBEAT_V1 = ShareGroupHeartbeatRequest(
    group_id="g",
    member_id="member-1",
    member_epoch=0,
    rack_id="r1",
    subscribed_topic_names=["orders", "payments"],
)
SHARE_HEARTBEAT_V1_BYTES = h(
    """
    02 67                              # GroupId: compact string "g" (not nullable)
    09 6d656d6265722d31                # MemberId "member-1"
    00000000                           # MemberEpoch 0 (join)
    03 7231                            # RackId "r1"
    03                                 # SubscribedTopicNames: compact nullable []string, 2 elements
      07 6f7264657273                  # "orders"
      09 7061796d656e7473              # "payments"
    00                                 # tagged fields
    """
)


@pytest.mark.parametrize(
    ("message", "version", "expected"),
    [
        pytest.param(SHARE_FETCH_V2, 2, SHARE_FETCH_V2_BYTES, id="ShareFetchRequest-v2"),
        pytest.param(
            msgspec.structs.replace(SHARE_ACK, is_renew_ack=True),
            2,
            SHARE_ACK_PREFIX + h("01") + SHARE_ACK_BODY_AFTER_EPOCH,
            id="ShareAcknowledgeRequest-v2-renew",
        ),
        pytest.param(
            SHARE_ACK,
            2,
            SHARE_ACK_PREFIX + h("00") + SHARE_ACK_BODY_AFTER_EPOCH,
            id="ShareAcknowledgeRequest-v2",
        ),
        pytest.param(
            SHARE_ACK, 1, SHARE_ACK_PREFIX + SHARE_ACK_BODY_AFTER_EPOCH, id="ShareAcknowledgeRequest-v1"
        ),
        pytest.param(SHARE_HEARTBEAT_V1, 1, SHARE_HEARTBEAT_V1_BYTES, id="ShareGroupHeartbeatRequest-v1"),
        pytest.param(
            ShareGroupHeartbeatRequest(group_id="g", member_id="member-1", member_epoch=-1),
            1,
            h("02 67  09 6d656d6265722d31  ffffffff  00  00  00"),  # leave: null rack, null topics
            id="ShareGroupHeartbeatRequest-v1-leave",
        ),
    ],
)
def test_golden_bytes(message: ApiMessage, version: int, expected: bytes) -> None:
    assert message.encode(version) == expected
    assert type(message).decode(expected, version) == message


def test_golden_share_fetch_v1_drops_v2_fields() -> None:
    # v1 has neither ShareAcquireMode (ignorable: dropped) nor IsRenewAck (not ignorable).
    message = ShareFetchRequest(
        group_id="grp",
        member_id="m1",
        share_session_epoch=1,
        max_wait_ms=500,
        min_bytes=1,
        max_bytes=1048576,
        max_records=500,
        batch_size=100,
        share_acquire_mode=1,
        topics=SHARE_FETCH_V2.topics,
        forgotten_topics_data=SHARE_FETCH_V2.forgotten_topics_data,
    )
    # Cut the two v2-only bytes (ShareAcquireMode, IsRenewAck) out of the v2 golden bytes.
    head = 4 + 3 + 6 * 4
    expected = SHARE_FETCH_V2_BYTES[:head] + SHARE_FETCH_V2_BYTES[head + 2 :]
    assert message.encode(1) == expected
    decoded = ShareFetchRequest.decode(expected, 1)
    assert decoded.share_acquire_mode == 0
    assert decoded.topics == message.topics


# --------------------------------------------------------------------------- headers


def test_request_header_v1_and_v2() -> None:
    header = RequestHeader(request_api_key=78, request_api_version=2, correlation_id=7, client_id="cli")
    v1 = h("004e 0002 00000007 0003 636c69")
    assert header.encode(1) == v1
    # v2 is flexible, yet ClientId stays a non-compact (int16-length) nullable string.
    assert header.encode(2) == v1 + h("00")
    assert RequestHeader.decode(v1, 1) == header
    assert RequestHeader.decode(v1 + h("00"), 2) == header
    null_client = RequestHeader(request_api_key=18, request_api_version=3, correlation_id=1, client_id=None)
    assert null_client.encode(2) == h("0012 0003 00000001 ffff 00")
    assert RequestHeader.decode(h("0012 0003 00000001 ffff 00"), 2) == null_client


def test_request_header_v2_skips_unknown_tags() -> None:
    data = h("004e 0002 00000007 0001 63  02  00 01 aa  0a 02 bbcc")
    header = RequestHeader.decode(data, 2)
    assert header == RequestHeader(request_api_key=78, request_api_version=2, correlation_id=7, client_id="c")


@pytest.mark.parametrize(
    ("api_key", "version", "expected"),
    [(78, 1, 2), (78, 2, 2), (3, 8, 1), (3, 9, 2), (18, 2, 1), (18, 3, 2), (0, 8, 1), (0, 9, 2)],
)
def test_request_header_version(api_key: int, version: int, expected: int) -> None:
    assert framing.request_header_version(api_key, version) == expected


def test_response_header_versions() -> None:
    assert ResponseHeader(correlation_id=9).encode(0) == h("00000009")
    assert ResponseHeader(correlation_id=9).encode(1) == h("00000009 00")
    assert framing.response_header_version(78, 1) == 1
    assert framing.response_header_version(3, 8) == 0
    assert framing.response_header_version(3, 9) == 1
    # ApiVersions answers always use header v0, even for flexible versions.
    for version in range(ApiVersionsResponse.MIN_VERSION, ApiVersionsResponse.MAX_VERSION + 1):
        assert framing.response_header_version(18, version) == 0


def test_api_versions_response_frame_has_no_header_tags() -> None:
    response = ApiVersionsResponse(api_keys=[ApiVersionsResponse.ApiVersion(api_key=18, max_version=4)])
    frame = framing.encode_response(response, 3, correlation_id=9)
    body = response.encode(3)
    assert frame == struct.pack(">i", 4 + len(body)) + h("00000009") + body
    assert framing.decode_response(frame[4:], 18, 3) == response
    assert framing.peek_correlation_id(frame[4:]) == 9
    # A flexible non-ApiVersions response carries the header's tagged-field byte.
    fetch = ShareFetchResponse(acquisition_lock_timeout_ms=30000)
    fetch_frame = framing.encode_response(fetch, 1, correlation_id=9)
    assert fetch_frame[4:9] == h("00000009 00")
    assert framing.decode_response(fetch_frame[4:], 78, 1) == fetch


# --------------------------------------------------------------------------- tagged fields


API_VERSIONS_V3_HEAD = h(
    """
    0000                               # ErrorCode
    02  0012 0000 0004  00             # ApiKeys: 1 element (ApiVersions 0-4) + its tagged fields
    00000000                           # ThrottleTimeMs
    """
)
API_VERSIONS_V3 = ApiVersionsResponse(api_keys=[ApiVersionsResponse.ApiVersion(api_key=18, max_version=4)])


def test_tagged_fields_written_only_when_non_default() -> None:
    assert API_VERSIONS_V3.encode(3) == API_VERSIONS_V3_HEAD + h("00")
    # default-valued tagged fields are not written
    explicit_defaults = ApiVersionsResponse(
        api_keys=API_VERSIONS_V3.api_keys, finalized_features_epoch=-1, zk_migration_ready=False
    )
    assert explicit_defaults.encode(3) == API_VERSIONS_V3_HEAD + h("00")
    tagged = ApiVersionsResponse(
        api_keys=API_VERSIONS_V3.api_keys,
        supported_features=[
            ApiVersionsResponse.SupportedFeatureKey(name="mv", min_version=1, max_version=20)
        ],
        finalized_features_epoch=7,
        zk_migration_ready=True,
    )
    expected = API_VERSIONS_V3_HEAD + h(
        """
        03                             # three tagged fields, ascending tags
        00 09  02 036d76 0001 0014 00  # tag 0 SupportedFeatures: 9 bytes, 1 element + its tags
        01 08  0000000000000007        # tag 1 FinalizedFeaturesEpoch
        03 01  01                      # tag 3 ZkMigrationReady
        """
    )
    assert tagged.encode(3) == expected
    assert ApiVersionsResponse.decode(expected, 3) == tagged
    assert ApiVersionsResponse.decode(expected, 5) == tagged


def test_tagged_fields_dropped_below_their_versions() -> None:
    # The tagged fields are ignorable, so v0-v2 (not flexible) silently drop them.
    tagged = ApiVersionsResponse(
        api_keys=API_VERSIONS_V3.api_keys, finalized_features_epoch=7, zk_migration_ready=True
    )
    v2 = tagged.encode(2)
    assert v2 == h("0000  00000001 0012 0000 0004  00000000")
    assert ApiVersionsResponse.decode(v2, 2) == API_VERSIONS_V3


def test_unknown_tags_are_skipped() -> None:
    data = API_VERSIONS_V3_HEAD + h(
        """
        03
        01 08 000000000000002a         # tag 1 FinalizedFeaturesEpoch = 42
        07 03 aabbcc                   # tag 7: unknown
        c801 01 ff                     # tag 200 (two-byte varint): unknown
        """
    )
    decoded = ApiVersionsResponse.decode(data, 3)
    assert decoded == ApiVersionsResponse(api_keys=API_VERSIONS_V3.api_keys, finalized_features_epoch=42)
    # unknown tags are not kept, so they are not re-encoded
    assert decoded.encode(3) == API_VERSIONS_V3_HEAD + h("01 01 08 000000000000002a")


def test_unknown_tags_in_nested_struct_and_tagless_message() -> None:
    nested = h("0000  02  0012 0000 0004  01 00 02 abcd  00000000  00")
    assert ApiVersionsResponse.decode(nested, 3) == API_VERSIONS_V3
    tagless = SHARE_HEARTBEAT_V1_BYTES[:-1] + h("02 00 01 ff 1f 00")
    assert ShareGroupHeartbeatRequest.decode(tagless, 1) == SHARE_HEARTBEAT_V1


@pytest.mark.parametrize(
    "tags",
    [
        h("01 01 09 00000000000000070a"),  # known tag with the wrong size (9 for an int64)
        h("01 01 07 00000000000007"),  # too short for an int64
        h("01 07 05 aabb"),  # unknown tag running past the end
        h("02 07 01 aa"),  # fewer tags than announced
        h("01 03 01"),  # tag value missing
    ],
)
def test_bad_tagged_sections_are_malformed(tags: bytes) -> None:
    with pytest.raises(MalformedMessage):
        ApiVersionsResponse.decode(API_VERSIONS_V3_HEAD + tags, 3)


# --------------------------------------------------------------------------- nullable struct


def test_nullable_struct() -> None:
    head = h("00000000 0000 00 02 6d 00000003 00001388")  # throttle, error, null message, "m", epoch, 5000
    absent = ShareGroupHeartbeatResponse(member_id="m", member_epoch=3, heartbeat_interval_ms=5000)
    assert absent.assignment is None
    assert absent.encode(1) == head + h("ff 00")
    assert ShareGroupHeartbeatResponse.decode(head + h("ff 00"), 1) == absent
    present = ShareGroupHeartbeatResponse(
        member_id="m",
        member_epoch=3,
        heartbeat_interval_ms=5000,
        assignment=ShareGroupHeartbeatResponse.Assignment(
            topic_partitions=[
                ShareGroupHeartbeatResponse.TopicPartitions(topic_id=TOPIC_A, partitions=[0, 2])
            ]
        ),
    )
    present_bytes = head + h(
        """
        01                                   # Assignment present
          02                                 # TopicPartitions: 1 element
            0123456789abcdef0123456789abcdef # TopicId
            03 00000000 00000002             # Partitions [0, 2]
            00                               # TopicPartitions tagged fields
          00                                 # Assignment tagged fields
        00                                   # top-level tagged fields
        """
    )
    assert present.encode(1) == present_bytes
    assert ShareGroupHeartbeatResponse.decode(present_bytes, 1) == present
    empty = ShareGroupHeartbeatResponse(assignment=ShareGroupHeartbeatResponse.Assignment())
    decoded = ShareGroupHeartbeatResponse.decode(empty.encode(1), 1)
    assert decoded.assignment == ShareGroupHeartbeatResponse.Assignment()


# --------------------------------------------------------------------------- encode-side errors


def test_non_default_in_missing_non_ignorable_field_raises() -> None:
    with pytest.raises(UnsupportedVersionForField):
        ShareFetchRequest(is_renew_ack=True).encode(1)
    with pytest.raises(UnsupportedVersionForField):
        ShareAcknowledgeRequest(is_renew_ack=True).encode(1)
    # nested: PartitionMaxBytes exists only in v0
    nested = ShareFetchRequest(
        topics=[
            ShareFetchRequest.FetchTopic(
                topic_id=TOPIC_A, partitions=[ShareFetchRequest.FetchPartition(partition_max_bytes=1)]
            )
        ]
    )
    with pytest.raises(UnsupportedVersionForField):
        nested.encode(2)
    # AllowAutoTopicCreation (v4+, default true) is not ignorable
    with pytest.raises(UnsupportedVersionForField):
        MetadataRequest(topics=[], allow_auto_topic_creation=False).encode(3)
    assert MetadataRequest(topics=[], allow_auto_topic_creation=True).encode(3) == h("00000000")
    assert issubclass(UnsupportedVersionForField, ProtocolError)


def test_non_default_in_missing_ignorable_field_is_dropped() -> None:
    assert ShareFetchRequest(share_acquire_mode=1).encode(1) == ShareFetchRequest().encode(1)
    # MetadataRequestTopic.TopicId is v10+ and ignorable
    topic = MetadataRequest.MetadataRequestTopic(topic_id=TOPIC_A, name="t")
    assert MetadataRequest(topics=[topic]).encode(4) == h("00000001 0001 74 01")


@pytest.mark.parametrize(
    ("message", "version"),
    [
        # None where the schema does not allow null (the type hints do not either)
        (ShareGroupHeartbeatRequest(group_id=None), 1),  # type: ignore[arg-type]  # never-nullable string
        (ShareGroupHeartbeatRequest(member_epoch=None), 1),  # type: ignore[arg-type]  # int
        (ShareGroupHeartbeatRequest(subscribed_topic_names=[None]), 1),  # type: ignore[list-item]  # element
        (MetadataRequest(topics=None), 0),  # nullable only from v1
        (MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=None)]), 9),  # nullable from v10
        (ShareFetchResponse(responses=[ShareFetchResponse.ShareFetchableTopicResponse(
            partitions=None)]), 1),  # type: ignore[arg-type]
        (ShareFetchResponse(responses=[ShareFetchResponse.ShareFetchableTopicResponse(
            partitions=[ShareFetchResponse.PartitionData(
                records=None)])]), 1),  # type: ignore[arg-type]  # records: nullable in v0 only
        (ShareGroupHeartbeatRequest(member_epoch=2**31), 1),  # out of range
        (ShareFetchRequest(share_acquire_mode=128), 2),  # int8 out of range
        (ShareGroupHeartbeatRequest(group_id="\ud800"), 1),  # not encodable as UTF-8
    ],
)  # fmt: skip
def test_invalid_values_raise_protocol_error(message: ApiMessage, version: int) -> None:
    with pytest.raises(ProtocolError) as info:
        message.encode(version)
    assert not isinstance(info.value, UnsupportedVersionForField)


def test_nullable_fields_accept_none() -> None:
    assert MetadataRequest(topics=None).encode(1) == h("ffffffff")
    # null topics, AllowAutoTopicCreation, two authorized-operations bools, tagged fields
    assert MetadataRequest(topics=None).encode(9) == h("00  01  00  00  00")
    assert MetadataRequest.decode(h("ffffffff"), 1).topics is None


def test_unknown_version_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        ShareFetchRequest().encode(0)  # v0 was removed
    with pytest.raises(ProtocolError):
        ShareFetchRequest.decode(b"", 3)


def test_long_compact_string_uses_multibyte_varint() -> None:
    message = ShareGroupHeartbeatRequest(group_id="x" * 200, member_id="m")
    data = message.encode(1)
    assert data[:2] == h("c901")  # 201 as an unsigned varint
    assert data[2:202] == b"x" * 200
    assert ShareGroupHeartbeatRequest.decode(data, 1) == message


def test_non_compact_string_length_limit() -> None:
    with pytest.raises(ProtocolError):
        RequestHeader(client_id="x" * 32768).encode(1)
    assert RequestHeader.decode(RequestHeader(client_id="x" * 32767).encode(1), 1).client_id == "x" * 32767


def test_compact_string_length_limit_on_encode() -> None:
    # Kafka's generated writers throw "'GroupId' field is too long to be serialized".
    with pytest.raises(ProtocolError):
        ShareGroupHeartbeatRequest(group_id="x" * 32768, member_id="m").encode(1)


def test_compact_string_length_limit_on_decode() -> None:
    # Kafka's generated readers throw "string field GroupId had invalid length 32768".
    data = h("818002") + b"x" * 32768 + h("02 6d  00000000  00  00  00")  # varint 32769 = 32768 + 1
    with pytest.raises(MalformedMessage):
        ShareGroupHeartbeatRequest.decode(data, 1)


# --------------------------------------------------------------------------- decode-side errors


@pytest.mark.parametrize(
    ("cls", "version", "data"),
    [
        (ShareGroupHeartbeatRequest, 1, b""),
        (ShareGroupHeartbeatRequest, 1, SHARE_HEARTBEAT_V1_BYTES + b"\x00"),  # trailing byte
        (ShareGroupHeartbeatRequest, 1, h("00") + SHARE_HEARTBEAT_V1_BYTES[2:]),  # null non-nullable string
        (ShareGroupHeartbeatRequest, 1, h("ffffffffff01")),  # varint longer than 5 bytes
        (ShareGroupHeartbeatRequest, 1, h("03 ff fe 00")),  # invalid UTF-8
        (ShareFetchRequest, 2, SHARE_FETCH_V2_BYTES[:33] + h("ffffffff0f")),  # 2**32 topics, few bytes
        (MetadataRequest, 1, h("7fffffff 0001")),  # huge non-compact array count
        (MetadataRequest, 0, h("ffffffff")),  # null array where v0 does not allow it
        (ShareGroupHeartbeatResponse, 1, h("00000000 0000 00 00 00000000 00000000 01")),  # truncated struct
    ],
)
def test_malformed_input(cls: type[ApiMessage], version: int, data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        cls.decode(data, version)


@pytest.mark.parametrize(
    ("message", "version"),
    [(SHARE_FETCH_V2, 2), (SHARE_HEARTBEAT_V1, 1), (API_VERSIONS_V3, 3), (SHARE_ACK, 2)],
)
def test_every_truncation_is_malformed(message: ApiMessage, version: int) -> None:
    data = message.encode(version)
    for cut in range(len(data)):
        with pytest.raises(MalformedMessage):
            type(message).decode(data[:cut], version)


ALL_CASES = [
    pytest.param(cls, version, id=f"{cls.__name__}-v{version}")
    for registry in (REQUESTS, RESPONSES)
    for cls in sorted(registry.values(), key=lambda c: c.__name__)
    for version in range(cls.MIN_VERSION, cls.MAX_VERSION + 1)
]
REQUEST_CASES = [p for p in ALL_CASES if p.values[0].__name__.endswith("Request")]  # type: ignore[union-attr]


def decode_or_malformed(cls: type[ApiMessage], version: int, data: bytes) -> ApiMessage | None:
    """Decodes `data`, allowing only MalformedMessage; a success must round-trip stably."""
    try:
        message = cls.decode(data, version)
    except MalformedMessage:
        return None
    try:
        again = message.encode(version)
    except ProtocolError:
        return message
    assert cls.decode(again, version) == message
    return message


@pytest.mark.parametrize(("cls", "version"), REQUEST_CASES)
def test_fuzz_request_decoder_random_bytes(cls: type[ApiMessage], version: int) -> None:
    @FUZZ
    @given(st.binary(max_size=96))
    def run(data: bytes) -> None:
        decode_or_malformed(cls, version, data)

    run()


@needs_schemas
@pytest.mark.parametrize(("cls", "version"), ALL_CASES)
def test_fuzz_decoder_mutated_and_truncated(cls: type[ApiMessage], version: int) -> None:
    """Flips bytes of valid encodings (reaching deep into the decoder) and truncates them."""

    @FUZZ
    @given(
        ss.message_strategy(cls, version, max_list=2),
        st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
        st.integers(0, 10_000),
    )
    def run(value: Any, flips: list[tuple[int, int]], cut: int) -> None:
        data = value.encode(version)
        if data:
            mutated = bytearray(data)
            for index, byte in flips:
                mutated[index % len(data)] = byte
            decode_or_malformed(cls, version, bytes(mutated))
            # A proper prefix of a valid encoding never decodes completely.
            with pytest.raises(MalformedMessage):
                cls.decode(data[: cut % len(data)], version)

    run()


# --------------------------------------------------------------------------- framing


def test_encode_decode_request_round_trip() -> None:
    frame = framing.encode_request(SHARE_HEARTBEAT_V1, 1, correlation_id=5, client_id="c")
    expected_header = h("004c 0001 00000005 0001 63 00")  # key 76, v1, correlation 5, "c", no tags
    assert frame == struct.pack(">i", len(expected_header) + len(SHARE_HEARTBEAT_V1_BYTES)) + (
        expected_header + SHARE_HEARTBEAT_V1_BYTES
    )
    decoded = framing.decode_request(frame[4:])
    assert decoded.header == RequestHeader(
        request_api_key=76, request_api_version=1, correlation_id=5, client_id="c"
    )
    assert decoded.body == SHARE_HEARTBEAT_V1
    assert framing.peek_request_header(frame[4:]) == (76, 1, 5)


@needs_schemas
@pytest.mark.parametrize(("cls", "version"), REQUEST_CASES)
def test_framing_round_trip_every_request(cls: type[ApiMessage], version: int) -> None:
    @settings(max_examples=5, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        ss.message_strategy(cls, version, max_list=1),
        st.integers(-(2**31), 2**31 - 1),
        st.none() | st.text(max_size=20),
    )
    def run(value: Any, correlation_id: int, client_id: str | None) -> None:
        frame = framing.encode_request(value, version, correlation_id, client_id)
        (size,) = struct.unpack_from(">i", frame)
        assert size == len(frame) - 4
        decoded = framing.decode_request(memoryview(frame)[4:])
        assert decoded.body == value
        assert decoded.header.request_api_key == cls.API_KEY
        assert decoded.header.request_api_version == version
        assert decoded.header.correlation_id == correlation_id
        assert decoded.header.client_id == client_id

    run()


def test_unsupported_request_unknown_key() -> None:
    frame = h("2710 0000 0000007b 0001 63")  # key 10000, v0, correlation 123
    with pytest.raises(UnsupportedRequest) as info:
        framing.decode_request(frame)
    assert (info.value.api_key, info.value.api_version, info.value.correlation_id) == (10000, 0, 123)
    assert isinstance(info.value, ProtocolError)


@pytest.mark.parametrize(("api_key", "version"), [(78, 0), (78, 3), (18, 99), (76, 0), (3, -1)])
def test_unsupported_request_version(api_key: int, version: int) -> None:
    # Only the fixed part of the header needs to be readable; the body may be anything.
    frame = struct.pack(">hhi", api_key, version, -77) + b"\xde\xad"
    with pytest.raises(UnsupportedRequest) as info:
        framing.decode_request(frame)
    assert (info.value.api_key, info.value.api_version, info.value.correlation_id) == (api_key, version, -77)


def test_decode_request_trailing_bytes_and_short_frames() -> None:
    frame = framing.encode_request(ApiVersionsRequest(), 0, correlation_id=1, client_id=None)[4:]
    assert framing.decode_request(frame).body == ApiVersionsRequest()
    with pytest.raises(MalformedMessage):
        framing.decode_request(frame + b"\x00")
    for cut in range(len(frame)):
        with pytest.raises(MalformedMessage):
            framing.decode_request(frame[:cut])


def test_decode_response_trailing_bytes() -> None:
    frame = framing.encode_response(SHARE_HEARTBEAT_RESPONSE, 1, correlation_id=2)[4:] + b"\x00"
    with pytest.raises(MalformedMessage):
        framing.decode_response(frame, 76, 1)
    assert framing.decode_response(frame, 76, 1, strict=False) == SHARE_HEARTBEAT_RESPONSE


REQUEST_KEYS_AND_VERSIONS = [
    (key, version) for key, cls in REQUESTS.items() for version in range(cls.MIN_VERSION, cls.MAX_VERSION + 1)
]


@settings(max_examples=400, deadline=None, database=None)
@given(
    st.one_of(
        st.binary(max_size=64),
        st.builds(
            lambda kv, corr, tail: struct.pack(">hhi", kv[0], kv[1], corr) + tail,
            st.sampled_from(REQUEST_KEYS_AND_VERSIONS),
            st.integers(-(2**31), 2**31 - 1),
            st.binary(max_size=64),
        ),
    )
)
def test_fuzz_decode_request(frame: bytes) -> None:
    try:
        decoded = framing.decode_request(frame)
    except UnsupportedRequest as exc:
        assert (exc.api_key, exc.api_version, exc.correlation_id) == struct.unpack_from(">hhi", frame)
        return
    except MalformedMessage:
        return
    cls = REQUESTS[decoded.header.request_api_key]
    assert isinstance(decoded.body, cls)


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.sampled_from(sorted(RESPONSES)),
    st.integers(0, 20),
    st.binary(max_size=64),
)
def test_fuzz_decode_response(api_key: int, version: int, frame: bytes) -> None:
    try:
        framing.decode_response(frame, api_key, version)
    except ProtocolError:
        pass


# --------------------------------------------------------------------------- records zero copy


def test_records_decode_as_zero_copy_memoryview() -> None:
    payload = bytes(range(256)) * 4
    response = ShareFetchResponse(
        acquisition_lock_timeout_ms=30000,
        responses=[
            ShareFetchResponse.ShareFetchableTopicResponse(
                topic_id=TOPIC_A,
                partitions=[
                    ShareFetchResponse.PartitionData(
                        partition_index=0,
                        records=payload,
                        acquired_records=[
                            ShareFetchResponse.AcquiredRecords(
                                first_offset=0, last_offset=9, delivery_count=1
                            )
                        ],
                    )
                ],
            )
        ],
    )
    frame = framing.encode_response(response, 2, correlation_id=3)[4:]
    decoded = framing.decode_response(frame, 78, 2)
    assert isinstance(decoded, ShareFetchResponse)
    records = decoded.responses[0].partitions[0].records
    assert isinstance(records, memoryview)
    assert records.obj is frame  # a view of the frame, not a copy
    assert records.tobytes() == payload
    assert decoded == response


@pytest.mark.parametrize("version", [4, 11, 12, 18])
def test_fetch_response_records_zero_copy(version: int) -> None:
    payload = b"\x01\x02\x03" * 50
    response = FetchResponse(
        responses=[
            FetchResponse.FetchableTopicResponse(
                topic="t" if version < 13 else "",
                topic_id=TOPIC_A if version >= 13 else uuid.UUID(int=0),
                partitions=[FetchResponse.PartitionData(partition_index=1, records=payload)],
            )
        ]
    )
    data = bytearray(response.encode(version))
    decoded = FetchResponse.decode(data, version)
    records = decoded.responses[0].partitions[0].records
    assert isinstance(records, memoryview)
    assert records.obj is data
    assert bytes(records) == payload


def test_produce_request_null_records() -> None:
    request = ProduceRequest(
        topic_data=[
            ProduceRequest.TopicProduceData(
                name="t", partition_data=[ProduceRequest.PartitionProduceData(index=0, records=None)]
            )
        ]
    )
    assert ProduceRequest.decode(request.encode(3), 3) == request
    assert ProduceRequest.decode(request.encode(9), 9) == request


# --------------------------------------------------------------------------- frame splitter


def frame_of(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def test_splitter_partial_frames() -> None:
    splitter = FrameSplitter()
    stream = frame_of(b"hello") + frame_of(b"") + frame_of(b"world!")
    out: list[bytes] = []
    for i in range(len(stream)):
        out += splitter.feed(stream[i : i + 1])
    assert out == [b"hello", b"", b"world!"]
    assert splitter.buffered == 0


def test_splitter_several_frames_in_one_feed_and_a_partial_tail() -> None:
    splitter = FrameSplitter()
    tail = frame_of(b"third")
    assert splitter.feed(frame_of(b"one") + frame_of(b"two") + tail[:6]) == [b"one", b"two"]
    assert splitter.buffered == 6
    assert splitter.feed(memoryview(tail)[6:]) == [b"third"]
    assert splitter.buffered == 0


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(st.binary(max_size=40), max_size=8), st.lists(st.integers(1, 50), min_size=1, max_size=30))
def test_splitter_any_chunking(bodies: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame_of(b) for b in bodies)
    splitter = FrameSplitter(max_frame=64)
    out: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        out += splitter.feed(stream[pos : pos + step])
        pos += step
        i += 1
    assert out == bodies
    assert splitter.buffered == 0


def test_splitter_over_limit_raises_without_buffering() -> None:
    splitter = FrameSplitter(max_frame=1000)
    assert splitter.feed(frame_of(b"x" * 1000)) == [b"x" * 1000]  # the limit itself is allowed
    with pytest.raises(FrameTooLarge) as info:
        splitter.feed(struct.pack(">i", 1001) + b"abc")
    assert (info.value.size, info.value.limit) == (1001, 1000)
    assert splitter.buffered == 0
    # a huge claimed size fails on the 4 size bytes alone
    with pytest.raises(FrameTooLarge):
        FrameSplitter(max_frame=1 << 20).feed(struct.pack(">i", 2**31 - 1))
    assert isinstance(info.value, ProtocolError)


def test_splitter_negative_size() -> None:
    splitter = FrameSplitter()
    with pytest.raises(MalformedMessage):
        splitter.feed(struct.pack(">i", -1) + b"zz")
    assert splitter.buffered == 0


def test_splitter_frames_decode() -> None:
    frames = [
        framing.encode_request(SHARE_HEARTBEAT_V1, 1, correlation_id=i, client_id="c") for i in range(3)
    ]
    splitter = FrameSplitter()
    got = splitter.feed(b"".join(frames))
    assert [framing.decode_request(f).header.correlation_id for f in got] == [0, 1, 2]
