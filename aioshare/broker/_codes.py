"""Kafka error codes used by the broker's share-group cores.

Thin aliases of ``aioshare.protocol.errors.ErrorCode`` (the protocol-fixed numbers of the
semantics doc, section 0), kept so the cores name only the codes they use.
"""

from __future__ import annotations

from typing import Final

from aioshare.protocol.errors import ErrorCode

NONE: Final = ErrorCode.NONE
UNKNOWN_TOPIC_OR_PARTITION: Final = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
LEADER_NOT_AVAILABLE: Final = ErrorCode.LEADER_NOT_AVAILABLE
NOT_LEADER_OR_FOLLOWER: Final = ErrorCode.NOT_LEADER_OR_FOLLOWER
INVALID_GROUP_ID: Final = ErrorCode.INVALID_GROUP_ID
UNKNOWN_MEMBER_ID: Final = ErrorCode.UNKNOWN_MEMBER_ID
INVALID_CONFIG: Final = ErrorCode.INVALID_CONFIG
INVALID_REQUEST: Final = ErrorCode.INVALID_REQUEST
NON_EMPTY_GROUP: Final = ErrorCode.NON_EMPTY_GROUP
GROUP_ID_NOT_FOUND: Final = ErrorCode.GROUP_ID_NOT_FOUND
OFFSET_NOT_AVAILABLE: Final = ErrorCode.OFFSET_NOT_AVAILABLE
GROUP_MAX_SIZE_REACHED: Final = ErrorCode.GROUP_MAX_SIZE_REACHED
FENCED_MEMBER_EPOCH: Final = ErrorCode.FENCED_MEMBER_EPOCH
INVALID_RECORD_STATE: Final = ErrorCode.INVALID_RECORD_STATE
SHARE_SESSION_NOT_FOUND: Final = ErrorCode.SHARE_SESSION_NOT_FOUND
INVALID_SHARE_SESSION_EPOCH: Final = ErrorCode.INVALID_SHARE_SESSION_EPOCH
SHARE_SESSION_LIMIT_REACHED: Final = ErrorCode.SHARE_SESSION_LIMIT_REACHED
