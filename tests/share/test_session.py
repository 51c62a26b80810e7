import uuid

import pytest

from aioshare.protocol.types import AcquireMode, TopicIdPartition
from aioshare.share.acks import AckBatch
from aioshare.share.session import (
    FINAL_EPOCH,
    FetchParams,
    SessionError,
    ShareSessionState,
    next_epoch,
)

TA = uuid.UUID(int=0xA)
TB = uuid.UUID(int=0xB)
P0, P1, P2 = TopicIdPartition(TA, 0), TopicIdPartition(TA, 1), TopicIdPartition(TB, 0)
PARAMS = FetchParams(max_wait_ms=500, min_bytes=1, max_bytes=1000, max_records=50, batch_size=25)
ACCEPT = [AckBatch(0, 9, [1])]
RENEW = [AckBatch(0, 9, [4])]


def opened(*tps: TopicIdPartition) -> ShareSessionState:
    s = ShareSessionState("g", "m", node_id=1)
    s.set_partitions(tps or (P0, P1))
    s.build_fetch(PARAMS)
    s.on_fetch_response(0)
    return s


def test_first_fetch_is_full_at_epoch_0() -> None:
    s = ShareSessionState("g", "m")
    s.set_partitions([P0, P1, P2])
    req = s.build_fetch(PARAMS)
    assert req.share_session_epoch == 0
    assert list(req.topics) == [P0, P1, P2]
    assert all(b == [] for b in req.topics.values())
    assert req.forgotten_topics_data == []
    assert (req.max_wait_ms, req.min_bytes, req.max_bytes, req.max_records, req.batch_size) == (
        500,
        1,
        1000,
        50,
        25,
    )
    assert req.share_acquire_mode == 0 and not req.is_renew_ack
    assert req.topics_by_id() == {TA: {0: [], 1: []}, TB: {0: []}}


def test_epoch_0_fetch_refuses_acks_and_acknowledge_needs_a_session() -> None:
    s = ShareSessionState("g", "m")
    s.add(P0)
    with pytest.raises(SessionError):
        s.build_fetch(PARAMS, {P0: ACCEPT})
    with pytest.raises(SessionError):
        s.build_acknowledge({P0: ACCEPT})
    assert not s.in_flight  # a refused build leaves no request behind
    s.build_fetch(PARAMS, {P0: []})  # empty batch lists are not acks


def test_incremental_fetch_lists_only_changes() -> None:
    s = opened(P0, P1)
    assert s.epoch == 1 and s.session_partitions == [P0, P1]
    req = s.build_fetch(PARAMS)
    assert req.share_session_epoch == 1 and req.topics == {} and req.forgotten_topics_data == []
    s.on_fetch_response(0)
    s.remove(P1)
    s.add(P2)
    req = s.build_fetch(PARAMS)
    assert req.share_session_epoch == 2
    assert list(req.topics) == [P2]
    assert req.forgotten_topics_data == [P1]
    assert req.forgotten_by_id() == {TA: [1]}
    s.on_fetch_response(0)
    assert s.session_partitions == [P0, P2]
    req = s.build_fetch(PARAMS)
    assert req.topics == {} and req.forgotten_topics_data == []


def test_acks_piggy_back_on_incremental_fetches() -> None:
    s = opened(P0, P1)
    req = s.build_fetch(PARAMS, {P1: ACCEPT})
    assert req.topics == {P1: ACCEPT}
    out = s.on_fetch_response(0)
    assert out.ack_partitions == frozenset({P1}) and not out.acks_failed and not out.reset


def test_acks_for_partitions_not_fetched_here_must_use_acknowledge() -> None:
    s = opened(P0)
    with pytest.raises(SessionError):
        s.build_fetch(PARAMS, {P2: ACCEPT})
    req = s.build_acknowledge({P2: ACCEPT})
    assert req.share_session_epoch == 1 and req.topics == {P2: ACCEPT} and not req.is_renew_ack
    s.on_acknowledge_response(0)
    assert s.epoch == 2
    assert s.session_partitions == [P0]  # ShareAcknowledge never changes the partition set


def test_one_request_at_a_time() -> None:
    s = ShareSessionState("g", "m")
    s.add(P0)
    s.build_fetch(PARAMS)
    with pytest.raises(SessionError):
        s.build_fetch(PARAMS)
    s.on_fetch_response(0)
    with pytest.raises(SessionError):
        s.on_fetch_response(0)


def test_epoch_wraps_to_1_never_0() -> None:
    assert next_epoch(0) == 1
    assert next_epoch(41) == 42
    assert next_epoch(2**31 - 1) == 1
    s = opened()
    s.epoch = 2**31 - 1
    s.build_fetch(PARAMS)
    s.on_fetch_response(0)
    assert s.epoch == 1


@pytest.mark.parametrize("code", [122, 123, 133])
def test_session_errors_reset_to_epoch_0_and_fail_acks(code: int) -> None:
    s = opened(P0, P1)
    s.build_fetch(PARAMS, {P0: ACCEPT})
    out = s.on_fetch_response(code)
    assert out.reset and out.acks_failed and out.error_code == code
    assert out.ack_partitions == frozenset({P0})
    assert s.epoch == 0 and s.session_partitions == []
    req = s.build_fetch(PARAMS)
    assert req.share_session_epoch == 0 and list(req.topics) == [P0, P1]


def test_other_top_level_errors_still_advance_the_epoch() -> None:
    s = opened()
    s.build_fetch(PARAMS, {P0: ACCEPT})
    out = s.on_fetch_response(30)
    assert not out.reset and out.acks_failed and out.error_code == 30
    assert s.epoch == 2


def test_disconnect_resets_and_fails_in_flight_acks() -> None:
    s = opened()
    s.build_acknowledge({P0: ACCEPT})
    out = s.on_failure()
    assert out.reset and out.acks_failed and out.error_code == 13
    assert s.epoch == 0 and not s.is_open
    req = s.build_fetch(PARAMS)
    assert req.share_session_epoch == 0


def test_idle_reset() -> None:
    s = opened()
    s.reset()
    assert s.epoch == 0
    assert list(s.build_fetch(PARAMS).topics) == [P0, P1]


def test_close_sends_final_epoch_with_acks() -> None:
    s = opened()
    req = s.build_close({P0: ACCEPT})
    assert req is not None
    assert req.share_session_epoch == FINAL_EPOCH and req.topics == {P0: ACCEPT}
    out = s.on_acknowledge_response(0)
    assert out.closed and not out.acks_failed
    assert s.closed
    with pytest.raises(SessionError):
        s.build_fetch(PARAMS)


def test_close_without_a_session_sends_nothing() -> None:
    s = ShareSessionState("g", "m")
    assert s.build_close() is None
    assert s.closed


def test_lost_close_still_closes() -> None:
    s = opened()
    s.build_close()
    out = s.on_failure()
    assert out.closed and not out.acks_failed and s.closed


def test_renew_rules() -> None:
    s = opened()
    with pytest.raises(SessionError):
        s.build_fetch(PARAMS, {P0: RENEW})
    with pytest.raises(SessionError):
        s.build_fetch(PARAMS, {P0: [AckBatch(0, 1, [1, 4])]})
    with pytest.raises(SessionError):
        s.build_acknowledge({P0: ACCEPT}, renew=True)
    req = s.build_acknowledge({P0: RENEW}, renew=True)
    assert req.is_renew_ack
    s.on_acknowledge_response(0)
    with pytest.raises(SessionError):
        s.build_close({P0: RENEW})


def test_acquire_mode_is_passed_through() -> None:
    s = ShareSessionState("g", "m")
    s.add(P0)
    req = s.build_fetch(FetchParams(acquire_mode=AcquireMode.RECORD_LIMIT))
    assert req.share_acquire_mode == 1
