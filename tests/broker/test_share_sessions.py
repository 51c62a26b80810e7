"""Share-session cache rules (semantics doc, sections 3.2-3.4)."""

from __future__ import annotations

import uuid

import pytest

from aioshare.broker import _codes
from aioshare.broker.share_sessions import (
    ClosedSession,
    SessionKey,
    ShareSessionCache,
    next_epoch,
    rotate_partitions,
)
from aioshare.protocol.types import TopicIdPartition

TOPIC = uuid.UUID(int=7)
P0, P1, P2, P3 = (TopicIdPartition(TOPIC, index) for index in range(4))
G, M = "group", "member"


def opened(
    cache: ShareSessionCache, *partitions: TopicIdPartition, member: str = M, conn: str = "c1"
) -> None:
    context = cache.open_fetch(G, member, 0, connection_id=conn, topics=list(partitions))
    assert context.error_code == _codes.NONE


class TestEpochs:
    def test_next_epoch_wraps_to_one_and_final_stays_final(self) -> None:
        assert next_epoch(0) == 1
        assert next_epoch(41) == 42
        assert next_epoch(2**31 - 1) == 1
        assert next_epoch(-1) == -1

    def test_epoch_zero_opens_a_session_expecting_epoch_one(self) -> None:
        cache = ShareSessionCache(10)
        context = cache.open_fetch(G, M, 0, connection_id="c1", topics=[P0, P1])
        assert (context.error_code, context.is_full, context.partitions, context.added) == (
            _codes.NONE,
            True,
            [P0, P1],
            [P0, P1],
        )
        session = cache.get(G, M)
        assert session is not None and session.epoch == 1

    def test_epoch_zero_with_acknowledgements_is_invalid_and_keeps_the_old_session(self) -> None:
        cache = ShareSessionCache(10)
        opened(cache, P0)
        context = cache.open_fetch(G, M, 0, connection_id="c1", topics=[P1], has_acknowledgements=True)
        assert context.error_code == _codes.INVALID_REQUEST
        session = cache.get(G, M)
        assert session is not None and list(session.partitions) == [P0]

    def test_epoch_zero_replaces_an_existing_session_without_a_release(self) -> None:
        cache = ShareSessionCache(10)
        opened(cache, P0)
        cache.open_fetch(G, M, 1, connection_id="c1")
        context = cache.open_fetch(G, M, 0, connection_id="c1", topics=[P1])
        assert context.partitions == [P1]
        session = cache.get(G, M)
        assert session is not None and session.epoch == 1 and len(cache) == 1

    def test_incremental_fetch_adds_and_forgets_then_fetches_the_whole_session(self) -> None:
        cache = ShareSessionCache(10)
        opened(cache, P0, P1)
        context = cache.open_fetch(G, M, 1, connection_id="c1", topics=[P1, P2], forgotten=[P0])
        assert context.error_code == _codes.NONE and not context.is_full
        assert context.added == [P2]
        assert sorted(context.partitions) == [P1, P2]
        session = cache.get(G, M)
        assert session is not None and session.epoch == 2

    def test_partition_added_and_forgotten_in_one_request_is_gone(self) -> None:
        cache = ShareSessionCache(10)
        opened(cache, P0)
        context = cache.open_fetch(G, M, 1, connection_id="c1", topics=[P1], forgotten=[P1])
        assert context.partitions == [P0] and context.added == []

    @pytest.mark.parametrize("epoch", [2, 5, -2])
    def test_wrong_epoch_is_rejected_and_the_session_is_unchanged(self, epoch: int) -> None:
        cache = ShareSessionCache(10)
        opened(cache, P0)
        context = cache.open_fetch(G, M, epoch, connection_id="c1", topics=[P1])
        assert context.error_code == _codes.INVALID_SHARE_SESSION_EPOCH
        session = cache.get(G, M)
        assert session is not None and session.epoch == 1 and list(session.partitions) == [P0]

    @pytest.mark.parametrize("epoch", [1, -1, 7])
    def test_missing_session_is_not_found(self, epoch: int) -> None:
        context = ShareSessionCache(10).open_fetch(G, M, epoch, connection_id="c1")
        assert context.error_code == _codes.SHARE_SESSION_NOT_FOUND

    def test_final_epoch_fetches_nothing_and_close_returns_the_partitions(self) -> None:
        cache = ShareSessionCache(10)
        opened(cache, P0, P1)
        context = cache.open_fetch(G, M, -1, connection_id="c1")
        assert (context.error_code, context.is_final, context.partitions) == (_codes.NONE, True, [])
        assert cache.get(G, M) is not None  # acks are processed before the session goes
        assert cache.close(G, M) == ClosedSession(SessionKey(G, M), [P0, P1])
        assert cache.get(G, M) is None and cache.close(G, M) is None

    def test_epoch_wraps_after_int32_max(self) -> None:
        cache = ShareSessionCache(10)
        opened(cache, P0)
        session = cache.get(G, M)
        assert session is not None
        session.epoch = 2**31 - 1
        assert cache.open_fetch(G, M, 2**31 - 1, connection_id="c1").error_code == _codes.NONE
        assert session.epoch == 1


class TestCapacity:
    def test_limit_reached_for_a_new_member(self) -> None:
        cache = ShareSessionCache(2)
        opened(cache, P0, member="a")
        opened(cache, P0, member="b")
        context = cache.open_fetch(G, "c", 0, connection_id="c3", topics=[P0])
        assert context.error_code == _codes.SHARE_SESSION_LIMIT_REACHED
        assert len(cache) == 2

    def test_a_member_may_replace_its_own_session_when_full(self) -> None:
        cache = ShareSessionCache(1)
        opened(cache, P0, member="a")
        assert cache.open_fetch(G, "a", 0, connection_id="c1", topics=[P1]).error_code == _codes.NONE


class TestShareAcknowledge:
    def test_epoch_zero_is_not_allowed(self) -> None:
        cache = ShareSessionCache(10)
        opened(cache, P0)
        assert cache.open_acknowledge(G, M, 0).error_code == _codes.INVALID_SHARE_SESSION_EPOCH

    def test_matching_epoch_advances_the_session_but_not_its_partitions(self) -> None:
        cache = ShareSessionCache(10)
        opened(cache, P0)
        assert cache.open_acknowledge(G, M, 1).error_code == _codes.NONE
        session = cache.get(G, M)
        assert session is not None and session.epoch == 2 and list(session.partitions) == [P0]
        assert cache.open_acknowledge(G, M, 1).error_code == _codes.INVALID_SHARE_SESSION_EPOCH

    def test_missing_session(self) -> None:
        assert ShareSessionCache(10).open_acknowledge(G, M, 3).error_code == _codes.SHARE_SESSION_NOT_FOUND
        assert ShareSessionCache(10).open_acknowledge(G, M, -1).error_code == _codes.SHARE_SESSION_NOT_FOUND

    def test_final_epoch_needs_no_epoch_match(self) -> None:
        cache = ShareSessionCache(10)
        opened(cache, P0)
        context = cache.open_acknowledge(G, M, -1)
        assert (context.error_code, context.is_final) == (_codes.NONE, True)
        session = cache.get(G, M)
        assert session is not None and session.epoch == 1


class TestDisconnect:
    def test_disconnect_closes_the_connections_sessions_and_reports_empty_groups(self) -> None:
        cache = ShareSessionCache(10)
        opened(cache, P0, member="a", conn="c1")
        opened(cache, P1, member="b", conn="c2")
        result = cache.disconnect("c1")
        assert result.closed == [ClosedSession(SessionKey(G, "a"), [P0])]
        assert result.empty_groups == []
        result = cache.disconnect("c2")
        assert result.closed == [ClosedSession(SessionKey(G, "b"), [P1])]
        assert result.empty_groups == [G]
        assert len(cache) == 0 and cache.session_count(G) == 0

    def test_disconnect_after_a_final_epoch_still_reports_the_empty_group(self) -> None:
        cache = ShareSessionCache(10)
        opened(cache, P0)
        cache.close(G, M)
        result = cache.disconnect("c1")
        assert result.closed == [] and result.empty_groups == [G]

    def test_unknown_connection_changes_nothing(self) -> None:
        cache = ShareSessionCache(10)
        opened(cache, P0)
        assert cache.disconnect("other").closed == []
        assert len(cache) == 1

    def test_old_connection_closing_keeps_a_session_reopened_elsewhere(self) -> None:
        # KAFKA-19950 (Kafka 4.2 and 4.4): the old connection's mapping went stale when the
        # epoch-0 request replaced its session; tests/differential/test_sessions.py pins it.
        cache = ShareSessionCache(10)
        opened(cache, P0, conn="old")
        opened(cache, P1, conn="new")
        result = cache.disconnect("old")
        assert result.closed == []
        assert result.empty_groups == []
        assert cache.get(G, M) is not None
        assert cache.disconnect("new").closed == [ClosedSession(SessionKey(G, M), [P1])]

    def test_connection_that_reopened_its_own_session_closes_it(self) -> None:
        cache = ShareSessionCache(10)
        opened(cache, P0, conn="c1")
        opened(cache, P1, conn="c1")
        assert cache.disconnect("c1").closed == [ClosedSession(SessionKey(G, M), [P1])]


class TestRotation:
    def test_round_robin_by_request_epoch(self) -> None:
        partitions = [P0, P1, P2, P3]
        assert rotate_partitions(partitions, 0) == partitions
        assert rotate_partitions(partitions, 1) == [P1, P2, P3, P0]
        assert rotate_partitions(partitions, 6) == [P2, P3, P0, P1]
        assert rotate_partitions(partitions, 4) == partitions
        assert rotate_partitions([P0], 3) == [P0]

    def test_incremental_fetch_rotates_the_session_partitions(self) -> None:
        cache = ShareSessionCache(10)
        opened(cache, P0, P1, P2)
        assert cache.open_fetch(G, M, 1, connection_id="c1").partitions == [P1, P2, P0]
        assert cache.open_fetch(G, M, 2, connection_id="c1").partitions == [P2, P0, P1]
