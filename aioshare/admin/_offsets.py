"""Looking up log offsets (earliest, latest, by time) on partition leaders, for offset resets."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from typing import Final

from aioshare.admin._routing import Deadline, Router
from aioshare.admin.types import ResetTarget
from aioshare.client.backoff import Backoff
from aioshare.client.connection import Connection
from aioshare.protocol.errors import (
    BrokerError,
    ErrorCode,
    KafkaError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    error_for_code,
)
from aioshare.protocol.messages import ListOffsetsRequest, ListOffsetsResponse

__all__ = ["EARLIEST", "LATEST", "list_offsets", "timestamp_of"]

# ListOffsets' special timestamps.
LATEST: Final = -1
EARLIEST: Final = -2
_CONSUMER_REPLICA_ID: Final = -1  # not a follower: ListOffsets answers from the leader's view
_READ_UNCOMMITTED: Final = 0  # what Kafka's admin tools use when they resolve reset offsets

Answer = dict[int, ListOffsetsResponse.ListOffsetsPartitionResponse] | KafkaError


def timestamp_of(to: ResetTarget) -> int:
    """The ListOffsets timestamp for "earliest", "latest" or a datetime (naive means local time)."""
    if to == "earliest":
        return EARLIEST
    if to == "latest":
        return LATEST
    if isinstance(to, datetime):
        millis = int(to.timestamp() * 1000)
        if millis < 0:
            raise ValueError(f"cannot reset to a time before 1970: {to.isoformat()}")
        return millis
    raise ValueError(
        f"unknown reset target {to!r}: use 'earliest', 'latest', a datetime or {{partition: offset}}"
    )


async def list_offsets(
    router: Router, topic: str, partitions: Iterable[int], timestamp: int
) -> dict[int, int | BrokerError]:
    """Each partition's offset for `timestamp`, asking the leaders.

    A time after the last record has no offset; like kafka-share-groups.sh, such partitions
    get the log end offset instead. Leader moves and other retriable errors are retried with
    a metadata refresh until the admin timeout.
    """
    found = await _lookup(router, topic, list(partitions), timestamp)
    if timestamp >= 0:
        past_end = [p for p, offset in found.items() if offset == -1]
        if past_end:
            found.update(await _lookup(router, topic, past_end, LATEST))
    return found


async def _lookup(
    router: Router, topic: str, partitions: list[int], timestamp: int
) -> dict[int, int | BrokerError]:
    cluster = router.cluster
    deadline = router.deadline()
    backoff = Backoff(*router.backoff)
    results: dict[int, int | BrokerError] = {}
    last: dict[int, KafkaError] = {}
    pending = partitions
    while pending:
        retry: list[int] = []
        by_leader: dict[int, list[int]] = {}
        for p in pending:
            leader = cluster.leader_for(topic, p)
            if leader is None:
                last[p] = LeaderNotAvailableError(f"no leader known for {topic}-{p}")
                retry.append(p)
            else:
                by_leader.setdefault(leader.node_id, []).append(p)
        answers = await asyncio.gather(
            *(_ask(router, node, topic, ps, timestamp, deadline) for node, ps in by_leader.items())
        )
        for ps, answer in zip(by_leader.values(), answers, strict=True):
            for p in ps:
                outcome = _outcome(answer, p)
                if isinstance(outcome, KafkaError) and outcome.retriable:
                    last[p] = outcome
                    retry.append(p)
                elif isinstance(outcome, BrokerError) or not isinstance(outcome, KafkaError):
                    results[p] = outcome
                else:
                    raise outcome
        pending = retry
        if not pending:
            break
        # Leaders moved or are unknown: look again before the next round.
        await router.refresh_quietly([topic])
        if not await deadline.pause(backoff):
            for p in pending:
                error = last[p]
                if not isinstance(error, BrokerError):
                    raise KafkaTimeoutError(
                        f"ListOffsets for {topic}-{p}: no answer within {deadline.timeout}s ({error})"
                    ) from error
                results[p] = error
            break
    return dict(sorted(results.items()))


async def _ask(
    router: Router, node_id: int, topic: str, partitions: list[int], timestamp: int, deadline: Deadline
) -> Answer:
    epochs = {p: _leader_epoch(router, topic, p) for p in partitions}
    request = ListOffsetsRequest(
        replica_id=_CONSUMER_REPLICA_ID,
        isolation_level=_READ_UNCOMMITTED,
        topics=[
            ListOffsetsRequest.ListOffsetsTopic(
                name=topic,
                partitions=[
                    ListOffsetsRequest.ListOffsetsPartition(
                        partition_index=p, current_leader_epoch=epochs[p], timestamp=timestamp
                    )
                    for p in partitions
                ],
            )
        ],
    )
    try:
        async with asyncio.timeout(deadline.remaining()):
            conn: Connection = await router.cluster.connection(node_id)
            response = await conn.send(request, response_type=ListOffsetsResponse)
    except TimeoutError:
        return KafkaTimeoutError(f"node {node_id} did not answer ListOffsets in time")
    except KafkaError as exc:
        return exc
    return {p.partition_index: p for t in response.topics if t.name == topic for p in t.partitions}


def _leader_epoch(router: Router, topic: str, partition: int) -> int:
    # Sent so a leader that has moved on answers FENCED/UNKNOWN_LEADER_EPOCH instead of stale data.
    found = router.cluster.metadata.partition(topic, partition)
    return found.leader_epoch if found is not None else -1


def _outcome(answer: Answer, partition: int) -> int | KafkaError:
    if isinstance(answer, KafkaError):
        return answer
    found = answer.get(partition)
    if found is None:
        return error_for_code(ErrorCode.UNKNOWN_SERVER_ERROR, f"ListOffsets left out partition {partition}")
    if found.error_code:
        return error_for_code(found.error_code)
    return found.offset
