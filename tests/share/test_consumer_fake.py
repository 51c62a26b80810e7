"""ShareConsumer against a scripted fake broker: the cases a real broker will not stage on demand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from aioshare.protocol.errors import (
    ConfigError,
    ErrorCode,
    GroupAuthorizationFailedError,
    InvalidRecordStateError,
    KafkaConnectionError,
    ShareSessionNotFoundError,
    TopicAuthorizationFailedError,
)
from aioshare.protocol.messages import ShareAcknowledgeRequest, ShareFetchRequest, ShareFetchResponse
from aioshare.protocol.types import AckType
from aioshare.share import LockExpiry, Message, ShareConsumer, TopicPartition
from aioshare.share.lease_timer import LeaseTimer
from tests.client.fakes import FakeCluster
from tests.kit import aioshare_tasks, wait_until

from .consumer_fake import TOPIC, TOPIC_ID, ShareFake

TP = TopicPartition(TOPIC, 0)


@pytest.fixture
async def fake() -> AsyncIterator[ShareFake]:
    async with FakeCluster() as cluster:
        yield ShareFake(cluster)


def consumer(fake: ShareFake, **kwargs: Any) -> ShareConsumer:
    kwargs.setdefault("ack_mode", "explicit")
    kwargs.setdefault("fetch_max_wait", 0.05)
    return ShareConsumer(TOPIC, group_id="g", bootstrap_servers=fake.cluster.bootstrap, **kwargs)


async def take(c: ShareConsumer, n: int, timeout: float = 5.0) -> list[Message]:  # noqa: ASYNC109
    out: list[Message] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            out.extend(await c.getmany(max_records=n - len(out), timeout=0.5))
    return out


def answer(fake: ShareFake, acquired: list[tuple[int, int, int]], records: bytes) -> ShareFetchResponse:
    return ShareFetchResponse(
        acquisition_lock_timeout_ms=fake.lock_ms,
        responses=[
            ShareFetchResponse.ShareFetchableTopicResponse(
                topic_id=TOPIC_ID,
                partitions=[
                    ShareFetchResponse.PartitionData(
                        partition_index=0,
                        records=records,
                        acquired_records=[
                            ShareFetchResponse.AcquiredRecords(
                                first_offset=a, last_offset=b, delivery_count=d
                            )
                            for a, b, d in acquired
                        ],
                    )
                ],
            )
        ],
    )


def once(fake: ShareFake, response: ShareFetchResponse) -> None:
    """Answer the first ShareFetch with ``response``; later ones get the default (nothing new)."""
    used = False

    async def hook(req: ShareFetchRequest) -> ShareFetchResponse | None:
        nonlocal used
        if used:
            return None
        used = True
        return response

    fake.next = fake.end  # the default answer has nothing left to acquire
    fake.fetch_hook = hook


async def test_only_acquired_offsets_are_delivered(fake: ShareFake) -> None:
    fake.add_batch([f"v{i}".encode() for i in range(10)])
    once(fake, answer(fake, [(2, 4, 1), (7, 7, 3)], fake.records_for(0, 9)))
    async with consumer(fake) as c:
        msgs = await take(c, 4)
        assert [(m.offset, m.delivery_count, m.value) for m in msgs] == [
            (2, 1, b"v2"),
            (3, 1, b"v3"),
            (4, 1, b"v4"),
            (7, 3, b"v7"),
        ]
        assert await c.getmany(timeout=0.3) == []
        for m in msgs:
            m.accept()
        assert await c.commit() == {TP: None}
    assert fake.acked() == {2: AckType.ACCEPT, 3: AckType.ACCEPT, 4: AckType.ACCEPT, 7: AckType.ACCEPT}


async def test_control_records_are_gap_acked_and_a_cut_tail_released(fake: ShareFake) -> None:
    fake.add_batch([b"a", b"b", b"c"])  # 0..2
    fake.add_batch([b"\x00\x00\x00\x01"], control=True)  # 3: a COMMIT marker
    fake.add_batch([b"e"])  # 4
    fake.add_batch([b"f", b"g"])  # 5..6: acquired but not sent (the response was cut)
    once(fake, answer(fake, [(0, 6, 1)], fake.records_for(0, 4)))
    async with consumer(fake) as c:
        msgs = await take(c, 4)
        assert [m.offset for m in msgs] == [0, 1, 2, 4]
        for m in msgs:
            m.accept()
        assert await c.commit() == {TP: None}
        assert c.held == 0
    acked = fake.acked()
    assert acked[3] == AckType.GAP  # no such record for consumers: archive it
    assert acked[5] == acked[6] == AckType.RELEASE  # may exist: must come back
    assert [acked[o] for o in (0, 1, 2, 4)] == [AckType.ACCEPT] * 4


async def test_ack_after_lock_expiry_is_reported_failed_and_not_sent(fake: ShareFake) -> None:
    fake.lock_ms = 300
    fake.add_batch([b"slow", b"fast"])
    expired: list[LockExpiry] = []
    reports: list[tuple[Any, BaseException | None]] = []
    async with consumer(
        fake,
        max_in_flight=2,
        on_lock_expired=expired.extend,
        on_ack_commit=lambda offsets, exc: reports.append((offsets, exc)),
    ) as c:
        slow, fast = await take(c, 2)
        fast.accept()
        await wait_until(lambda: expired, timeout=3)
        assert expired == [LockExpiry(TP, 0, 0)]
        assert slow.lock_expires_at <= asyncio.get_running_loop().time()
        slow.accept()
        results = await c.commit()
        assert isinstance(results[TP], InvalidRecordStateError)
    assert fake.acked() == {1: AckType.ACCEPT}  # the expired one never reached the broker
    assert ({TP: {0}}, results[TP]) in reports


async def test_fetch_never_asks_for_more_than_free_capacity(fake: ShareFake) -> None:
    fake.add_batch([str(i).encode() for i in range(50)])
    async with consumer(fake, max_poll_records=5, max_in_flight=7) as c:
        held = await c.getmany(max_records=9)  # more than a batch: one fetch of the ceiling
        assert [m.offset for m in held] == list(range(7))
        assert c.held == 7
        await asyncio.sleep(0.3)  # full: no fetch may go out (acks none, capacity none)
        assert [f.max_records for f in fake.fetches] == [7]
        for m in held[:3]:
            m.accept()
        more = await take(c, 3)
        assert [m.offset for m in more] == [7, 8, 9]
        sizes = [f.max_records for f in fake.fetches]
        assert sizes[:2] == [7, 3], sizes
        assert all(f.batch_size == f.max_records for f in fake.fetches)
        # The three acks rode the fetch that asked for the capacity they freed.
        second = fake.fetches[1]
        assert [b.acknowledgement_batches for t in second.topics for b in t.partitions] == [
            [ShareFetchRequest.AcknowledgementBatch(first_offset=0, last_offset=2, acknowledge_types=[1])]
        ]


async def test_acks_go_alone_after_the_linger_when_no_fetch_is_due(fake: ShareFake) -> None:
    fake.add_batch([b"x", b"y"])
    async with consumer(fake, max_in_flight=2, ack_linger=0.01) as c:
        x, _y = await take(c, 2)
        x.accept()  # frees capacity for one record, but a partial fetch waits for the linger ...
        await wait_until(lambda: fake.acked().get(0) == AckType.ACCEPT, timeout=2)
        assert c.held == 1


async def test_session_loss_fails_acks_in_flight_and_reopens_at_epoch_0(fake: ShareFake) -> None:
    fake.add_batch([b"a", b"b"])
    lost = False

    async def hook(req: ShareFetchRequest) -> ShareFetchResponse | None:
        nonlocal lost
        carries_acks = any(p.acknowledgement_batches for t in req.topics for p in t.partitions)
        if carries_acks and not lost:
            lost = True
            return ShareFetchResponse(error_code=ErrorCode.SHARE_SESSION_NOT_FOUND)
        return None

    fake.fetch_hook = hook
    reports: list[BaseException | None] = []
    async with consumer(fake, max_in_flight=1, on_ack_commit=lambda o, exc: reports.append(exc)) as c:
        (a,) = await take(c, 1)
        a.accept()
        await wait_until(lambda: reports, timeout=3)
        assert isinstance(reports[0], ShareSessionNotFoundError)
        (b,) = await take(c, 1)
        assert b.offset == 1
        epochs = [f.share_session_epoch for f in fake.fetches]
        assert epochs[:3] == [0, 1, 0], epochs
        results = await c.commit()
        assert isinstance(results[TP], ShareSessionNotFoundError)


async def test_connection_loss_fails_acks_and_recovers(fake: ShareFake) -> None:
    fake.add_batch([b"a", b"b", b"c"])
    reports: list[BaseException | None] = []
    async with consumer(fake, max_in_flight=1, on_ack_commit=lambda o, exc: reports.append(exc)) as c:
        (a,) = await take(c, 1)
        fake.cluster.brokers[1].drop_connections()
        await asyncio.sleep(0.05)
        a.accept()  # its session died with the connection: reported, not lost
        (b,) = await take(c, 1)
        assert b.offset == 1
        b.accept()
        results = await c.commit()
    failures = [r for r in reports if r is not None]
    assert failures and all(isinstance(r, (KafkaConnectionError, InvalidRecordStateError)) for r in failures)
    assert results[TP] is not None


async def test_renew_extends_the_lock(fake: ShareFake) -> None:
    fake.lock_ms = 5000
    fake.add_batch([b"long"])
    async with consumer(fake) as c:
        (msg,) = await take(c, 1)
        before = msg.lock_expires_at
        await asyncio.sleep(0.05)
        after = await msg.renew()
        assert after == msg.lock_expires_at > before
        msg.accept()
        assert await c.commit() == {TP: None}
    renewals = [a for a in fake.acknowledges if a.is_renew_ack]
    assert len(renewals) == 1
    (batch,) = [b for t in renewals[0].topics for p in t.partitions for b in p.acknowledgement_batches]
    assert (batch.first_offset, batch.last_offset, batch.acknowledge_types) == (0, 0, [4])


async def test_fatal_heartbeat_error_reaches_the_application(fake: ShareFake) -> None:
    fake.heartbeat_error = ErrorCode.GROUP_AUTHORIZATION_FAILED
    async with consumer(fake) as c:
        with pytest.raises(GroupAuthorizationFailedError):
            async with asyncio.timeout(5):
                await c.__anext__()
        with pytest.raises(GroupAuthorizationFailedError):
            await c.getmany(timeout=0.1)


async def test_topic_authorization_failure_in_the_heartbeat_names_the_topic(fake: ShareFake) -> None:
    fake.heartbeat_error = ErrorCode.TOPIC_AUTHORIZATION_FAILED  # with a null ErrorMessage, as Kafka
    async with consumer(fake) as c:
        with pytest.raises(TopicAuthorizationFailedError) as info:
            async with asyncio.timeout(5):
                await c.__anext__()
    assert info.value.message == f"Not authorized to access topics: [{TOPIC}]"


async def test_topic_authorization_failure_in_share_fetch_names_the_topic(fake: ShareFake) -> None:
    refused = ShareFetchResponse.PartitionData(
        partition_index=0, error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED, error_message=None
    )

    async def hook(req: ShareFetchRequest) -> ShareFetchResponse:
        return ShareFetchResponse(
            responses=[
                ShareFetchResponse.ShareFetchableTopicResponse(topic_id=TOPIC_ID, partitions=[refused])
            ]
        )

    fake.fetch_hook = hook
    async with consumer(fake) as c:
        with pytest.raises(TopicAuthorizationFailedError) as info:
            async with asyncio.timeout(5):
                await c.__anext__()
        assert c.member_epoch == 1  # the heartbeat was fine: ShareFetch refused it
    assert info.value.message == f"Not authorized to access topics: [{TOPIC}]"


async def test_close_after_a_refused_coordinator_lookup_is_prompt(fake: ShareFake) -> None:
    """The heartbeat loop stops when FindCoordinator is refused: close() must not wait for
    an answer to the leave heartbeat that no task will ever send (it used to, for its whole
    timeout)."""
    fake.cluster.coordinator_errors = [ErrorCode.GROUP_AUTHORIZATION_FAILED]
    before = set(aioshare_tasks())
    c = consumer(fake)
    await c.start()
    with pytest.raises(GroupAuthorizationFailedError):
        async with asyncio.timeout(5):
            await c.__anext__()
    async with asyncio.timeout(1.0):  # far below close()'s own timeout
        await c.close(timeout=30)
    assert set(aioshare_tasks()) - before == set()
    assert fake.heartbeats == []  # no coordinator, so nothing was ever sent


async def test_close_sends_final_epoch_and_leaves(fake: ShareFake) -> None:
    fake.add_batch([b"a", b"b"])
    before = set(aioshare_tasks())
    c = consumer(fake, ack_mode="implicit", ack_linger=30.0)
    await c.start()
    first, _ = sorted(await take(c, 2), key=lambda m: m.offset)
    first.accept()  # pending (long linger): it goes with the final epoch
    await c.close(timeout=5)
    assert set(aioshare_tasks()) - before == set()
    (final,) = [a for a in fake.acknowledges if a.share_session_epoch == -1]
    # Implicit mode: the rest of the last delivery is not accepted on close (as Kafka's Java
    # client): the final epoch releases it on the broker.
    assert fake.acked() == {0: AckType.ACCEPT}
    assert final.topics
    assert fake.heartbeats[-1].member_epoch == -1


async def test_100k_held_records_one_timer(fake: ShareFake) -> None:
    n = 100_000
    fake.lock_ms = 1500
    for _ in range(0, n, 10_000):
        fake.add_batch([b"x"] * 10_000)
    expired: list[LockExpiry] = []
    async with consumer(fake, max_poll_records=10_000, max_in_flight=n, on_lock_expired=expired.extend) as c:
        msgs = await take(c, n, timeout=30)
        assert c.held == n
        tasks = len(aioshare_tasks())
        assert tasks < 10  # heartbeat, placement, timer, one fetcher (+ transient cluster tasks)
        await wait_until(lambda: c.held == 0, timeout=10)
        assert sum(e.last_offset - e.first_offset + 1 for e in expired) == n
        assert len(expired) <= 20  # reported as ranges, not one entry per record
        assert len(msgs) == n


async def test_fenced_member_rejoins_with_the_same_member_id(fake: ShareFake) -> None:
    fake.add_batch([b"a"])
    async with consumer(fake) as c:
        (msg,) = await take(c, 1)
        msg.accept()
        seen = len(fake.heartbeats)
        fake.heartbeat_error = ErrorCode.FENCED_MEMBER_EPOCH
        await wait_until(lambda: any(h.member_epoch == 0 for h in fake.heartbeats[seen:]), timeout=3)
        fake.heartbeat_error = 0
        await wait_until(lambda: c.member_epoch == 1 and bool(c.assignment()), timeout=3)
        rejoin = [h for h in fake.heartbeats if h.member_epoch == 0]
        assert len(rejoin) >= 2  # the first join and the rejoin
        assert {h.member_id for h in fake.heartbeats} == {c.member_id}
        assert rejoin[-1].subscribed_topic_names == [TOPIC]


async def test_coordinator_move_is_followed(fake: ShareFake) -> None:
    async with consumer(fake) as c:
        await wait_until(lambda: c.member_epoch == 1, timeout=3)
        first = fake.cluster.brokers[1]
        assert first.requests(76)
        fake.cluster.coordinator = 2
        fake.heartbeat_error = ErrorCode.NOT_COORDINATOR
        await wait_until(
            lambda: bool(fake.cluster.brokers[1].requests(76)[-1:]) and len(fake.heartbeats) > 2, timeout=20
        )
        fake.heartbeat_error = 0
        await wait_until(lambda: bool(fake.cluster.brokers[2].requests(76)), timeout=5)
        assert c.member_epoch == 1


def scripted(fake: ShareFake, *answers: Callable[[], Awaitable[ShareFetchResponse]]) -> None:
    """Answer the first ShareFetches with ``answers`` in turn (each may wait); later ones get
    the default, which has nothing left to acquire."""
    pending = list(answers)

    async def hook(req: ShareFetchRequest) -> ShareFetchResponse | None:
        return await pending.pop(0)() if pending else None

    fake.next = fake.end
    fake.fetch_hook = hook


def acquired(fake: ShareFake, delivery_count: int) -> Callable[[], Awaitable[ShareFetchResponse]]:
    """A ShareFetch answer acquiring offset 0 with ``delivery_count``."""

    async def respond() -> ShareFetchResponse:
        return answer(fake, [(0, 0, delivery_count)], fake.records_for(0, 0))

    return respond


def nothing_until(fake: ShareFake, gate: asyncio.Event) -> Callable[[], Awaitable[ShareFetchResponse]]:
    """A long poll that ends, empty, when ``gate`` is set."""

    async def respond() -> ShareFetchResponse:
        await gate.wait()
        return answer(fake, [], b"")

    return respond


class _LateSweep(LeaseTimer):
    """A lease timer whose sweep has not run yet (it never does)."""

    async def run(self) -> None:
        await asyncio.Event().wait()


async def test_a_held_record_reported_again_is_not_delivered_twice(fake: ShareFake) -> None:
    # librdkafka's mock re-reports held records on every fetch with the same delivery count.
    fake.add_batch([b"a"])
    scripted(fake, *(acquired(fake, 1) for _ in range(4)))
    async with consumer(fake) as c:
        (msg,) = await take(c, 1)
        await wait_until(lambda: len(fake.fetches) >= 4, timeout=3)
        assert await c.getmany(timeout=0.1) == []
        assert c.held == 1
        msg.accept()
        assert await c.commit() == {TP: None}


async def test_redelivery_with_a_higher_count_replaces_a_lock_still_running_here(fake: ShareFake) -> None:
    # The broker's lock ran out before ours (so it re-acquired the record for us, counting
    # a delivery): the new delivery must reach the application, not be taken for a re-report.
    fake.add_batch([b"a"])
    gate = asyncio.Event()
    scripted(fake, acquired(fake, 1), nothing_until(fake, gate), acquired(fake, 2))
    expired: list[LockExpiry] = []
    async with consumer(fake, on_lock_expired=expired.extend) as c:
        (first,) = await take(c, 1)
        gate.set()
        (second,) = await take(c, 1)
        assert (second.offset, second.delivery_count) == (0, 2)
        assert expired == [LockExpiry(TP, 0, 0)]  # the first delivery is over
        first.accept()  # refused here: it would settle the second delivery
        second.accept()
        results = await c.commit()
        assert isinstance(results[TP], InvalidRecordStateError)
    assert fake.acked() == {0: AckType.ACCEPT}


@pytest.mark.parametrize("delivery_count", [1, 2])
async def test_redelivery_replaces_an_expired_lock_not_yet_swept(
    fake: ShareFake, monkeypatch: pytest.MonkeyPatch, delivery_count: int
) -> None:
    monkeypatch.setattr("aioshare.share.consumer.LeaseTimer", _LateSweep)
    fake.lock_ms = 200
    fake.add_batch([b"a"])
    gate = asyncio.Event()
    # The third fetch goes out after the first lock ran out here (the second one waits for that).
    scripted(fake, acquired(fake, 1), nothing_until(fake, gate), acquired(fake, delivery_count))
    expired: list[LockExpiry] = []
    loop = asyncio.get_running_loop()
    async with consumer(fake, on_lock_expired=expired.extend) as c:
        (first,) = await take(c, 1)
        await wait_until(lambda: loop.time() > first.lock_expires_at, timeout=3)
        gate.set()
        (second,) = await take(c, 1)
        assert (second.offset, second.delivery_count) == (0, delivery_count)
        assert second.lock_expires_at > loop.time()
        assert expired == [LockExpiry(TP, 0, 0)]
        second.accept()
        assert await c.commit() == {TP: None}


async def test_renew_fails_when_the_lock_ran_out_before_it_could_be_sent(fake: ShareFake) -> None:
    # The renew waits behind a long-polling fetch; meanwhile the lock runs out, and the broker
    # re-acquires the record for us with the next fetch.  A RENEW sent after the lock ran out
    # would renew whatever delivery the broker made since.
    fake.lock_ms = 300
    fake.add_batch([b"long"])
    gate = asyncio.Event()
    scripted(fake, acquired(fake, 1), nothing_until(fake, gate), acquired(fake, 2))
    loop = asyncio.get_running_loop()
    async with consumer(fake) as c:
        (msg,) = await take(c, 1)
        await wait_until(lambda: len(fake.fetches) >= 2, timeout=3)  # the long poll is out
        renewal = asyncio.ensure_future(msg.renew())
        await wait_until(lambda: loop.time() > msg.lock_expires_at, timeout=3)
        gate.set()
        with pytest.raises(InvalidRecordStateError):
            await asyncio.wait_for(renewal, 3)
        (back,) = await take(c, 1)
        assert back.delivery_count == 2
        back.accept()
        assert await c.commit() == {TP: None}
    assert not [a for a in fake.acknowledges if a.is_renew_ack]


async def test_renew_fails_when_the_lock_ran_out_before_it_was_answered(fake: ShareFake) -> None:
    fake.lock_ms = 300
    fake.add_batch([b"long"])
    gate = asyncio.Event()

    async def hold_renewals(req: ShareAcknowledgeRequest) -> None:
        if req.is_renew_ack:
            await gate.wait()

    fake.acknowledge_hook = hold_renewals
    loop = asyncio.get_running_loop()
    async with consumer(fake, max_in_flight=1) as c:
        (msg,) = await take(c, 1)
        renewal = asyncio.ensure_future(msg.renew())
        await wait_until(lambda: any(a.is_renew_ack for a in fake.acknowledges), timeout=3)
        await wait_until(lambda: loop.time() > msg.lock_expires_at, timeout=3)
        gate.set()
        with pytest.raises(InvalidRecordStateError):
            await asyncio.wait_for(renewal, 3)


async def test_stop_fetching_keeps_acks_and_commits_flowing(fake: ShareFake) -> None:
    fake.add_batch([b"a", b"b", b"c", b"d"])
    async with consumer(fake, max_poll_records=2) as c:
        a, b = await take(c, 2)
        c.stop_fetching()
        assert c.max_in_flight == 0
        fetches = len(fake.fetches)
        a.accept()
        b.accept()  # capacity is free again, but nothing may be acquired any more
        assert await c.commit() == {TP: None}
        assert await c.getmany(timeout=0.3) == []
        assert len(fake.fetches) == fetches
        assert c.held == 0
    assert fake.acked() == {0: AckType.ACCEPT, 1: AckType.ACCEPT}
    assert [a for a in fake.acknowledges if a.share_session_epoch != -1]  # sent alone


async def test_set_max_in_flight_grows_and_shrinks_capacity(fake: ShareFake) -> None:
    fake.add_batch([str(i).encode() for i in range(20)])
    async with consumer(fake, max_poll_records=10, max_in_flight=2) as c:
        held = await take(c, 2)
        with pytest.raises(ConfigError):
            c.set_max_in_flight(0)
        c.set_max_in_flight(5)
        held += await take(c, 3)
        assert c.held == 5 and c.max_in_flight == 5
        c.set_max_in_flight(1)  # below what is held: nothing is given back, nothing fetched
        for msg in held[:4]:
            msg.accept()
        assert await c.commit() == {TP: None}
        fetches = len(fake.fetches)
        assert await c.getmany(timeout=0.2) == []
        assert len(fake.fetches) == fetches
        held[4].accept()
        (more,) = await take(c, 1)
        assert more.offset == 5
    assert [f.max_records for f in fake.fetches if f.max_records] == [2, 3, 1]


async def test_acks_freeing_a_whole_fetch_wake_the_fetcher_before_the_linger(fake: ShareFake) -> None:
    fake.add_batch([str(i).encode() for i in range(20)])
    async with consumer(fake, max_poll_records=5, max_in_flight=5, ack_linger=30.0) as c:
        held = await take(c, 5)
        for msg in held[:4]:
            msg.accept()  # a sliver of capacity: it waits for the (long) linger ...
        assert await c.getmany(timeout=0.2) == []
        assert len(fake.fetches) == 1
        held[4].accept()  # ... until a whole fetch's worth is free
        more = await take(c, 5, timeout=3)
        assert [m.offset for m in more] == [5, 6, 7, 8, 9]
    assert [f.max_records for f in fake.fetches[:2]] == [5, 5]


async def test_heartbeat_health_and_failure_are_public(fake: ShareFake) -> None:
    async with consumer(fake) as c:
        assert c.failure is None
        await wait_until(lambda: c.last_heartbeat_at is not None, timeout=3)
        answered = c.last_heartbeat_at
        assert answered is not None and answered <= asyncio.get_running_loop().time()
        assert c.heartbeat_failures == 0
        fake.heartbeat_error = ErrorCode.COORDINATOR_LOAD_IN_PROGRESS  # retriable: keeps its epoch
        await wait_until(lambda: c.heartbeat_failures >= 2, timeout=5)
        assert c.last_heartbeat_at == answered and c.member_epoch == 1 and c.failure is None
        fake.heartbeat_error = 0
        await wait_until(lambda: c.heartbeat_failures == 0, timeout=5)
        assert (c.last_heartbeat_at or 0) > answered
        fake.heartbeat_error = ErrorCode.GROUP_AUTHORIZATION_FAILED
        await wait_until(lambda: c.failure is not None, timeout=5)
        assert isinstance(c.failure, GroupAuthorizationFailedError)
