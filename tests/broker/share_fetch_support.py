"""Helpers for the ShareFetch / ShareAcknowledge handler tests: a raw share-session client over
a real socket, record production straight into a partition log, and response accessors."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.broker.share_leader import ShareLeader, leader_for
from aioshare.broker.share_partition import SharePartition
from aioshare.client.connection import Connection
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.messages import (
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
    ShareAcknowledgeRequest,
    ShareAcknowledgeResponse,
    ShareFetchRequest,
    ShareFetchResponse,
)
from aioshare.protocol.records import RecordToWrite, encode_batch, iter_batches

TIMEOUT = 20.0
GROUP_RESOURCE = 32

# (first offset, last offset, acknowledge types)
Ack = tuple[int, int, Sequence[int]]
Range = tuple[int, int, int]


def produce(
    broker: EmbeddedBroker, topic: str, count: int, *, partition: int = 0, per_batch: int = 1
) -> None:
    """Append `count` records (values b"<topic>-<n>") in batches of `per_batch`, as Produce would."""
    log = broker.partition(topic, partition).log
    start = log.log_end_offset
    for first in range(0, count, per_batch):
        values = [f"{topic}-{start + n}".encode() for n in range(first, min(count, first + per_batch))]
        log.append(
            encode_batch([RecordToWrite(None, value) for value in values]),
            leader_epoch=broker.partition(topic, partition).leader_epoch,
            now_ms=broker.cluster.now_ms(),
        )


async def alter_group_config(broker: EmbeddedBroker, group: str, **configs: str) -> None:
    """IncrementalAlterConfigs SET on the GROUP resource (names with '_' for '.')."""
    host, port = broker.address(broker.node_ids[0])
    connection = await Connection.open(host, port)
    try:
        response = await connection.send(
            IncrementalAlterConfigsRequest(
                resources=[
                    IncrementalAlterConfigsRequest.AlterConfigsResource(
                        resource_type=GROUP_RESOURCE,
                        resource_name=group,
                        configs=[
                            IncrementalAlterConfigsRequest.AlterableConfig(
                                name=name.replace("_", "."), config_operation=0, value=value
                            )
                            for name, value in configs.items()
                        ],
                    )
                ]
            ),
            response_type=IncrementalAlterConfigsResponse,
        )
    finally:
        await connection.close()
    assert [r.error_code for r in response.responses] == [ErrorCode.NONE], response


def leader_of(broker: EmbeddedBroker) -> ShareLeader:
    leader, created = leader_for(broker.registry, broker.cluster)
    assert not created
    return leader


def share_partition(
    broker: EmbeddedBroker, group: str, topic: str, partition: int = 0
) -> SharePartition | None:
    part = broker.partition(topic, partition)
    return leader_of(broker).cached(part.leader, group, part)


def partition_data(response: ShareFetchResponse, index: int = 0) -> ShareFetchResponse.PartitionData:
    found = [p for t in response.responses for p in t.partitions if p.partition_index == index]
    assert len(found) == 1, response
    return found[0]


def acquired(response: ShareFetchResponse, index: int = 0) -> list[Range]:
    found = [p for t in response.responses for p in t.partitions if p.partition_index == index]
    if not found:
        return []
    return [(r.first_offset, r.last_offset, r.delivery_count) for r in found[0].acquired_records]


def offsets(ranges: Iterable[Range]) -> list[int]:
    return [offset for first, last, _count in ranges for offset in range(first, last + 1)]


def record_offsets(data: bytes | memoryview) -> list[int]:
    return [record.offset for view in iter_batches(data) for record in view.records()]


class ShareClient:
    """One member's share session with one node, epochs tracked like a real client."""

    def __init__(self, connection: Connection, group: str, member: str, topic_id: uuid.UUID) -> None:
        self.connection = connection
        self.group = group
        self.member = member
        self.topic_id = topic_id
        self.epoch = 0

    @classmethod
    async def open(
        cls,
        broker: EmbeddedBroker,
        topic_id: uuid.UUID,
        *,
        group: str = "g",
        member: str = "m1",
        node: int = 1,
    ) -> ShareClient:
        host, port = broker.address(node)
        return cls(await Connection.open(host, port), group, member, topic_id)

    async def close(self) -> None:
        await self.connection.close()

    def fetch_request(
        self,
        partitions: Sequence[int] = (0,),
        acks: dict[int, Sequence[Ack]] | None = None,
        *,
        max_records: int = 500,
        batch_size: int | None = None,
        max_wait_ms: int = 0,
        min_bytes: int = 1,
        max_bytes: int = 0x7FFFFFFF,
        mode: int = 0,
        renew: bool = False,
        forgotten: Sequence[int] = (),
        epoch: int | None = None,
    ) -> ShareFetchRequest:
        acks = acks or {}
        wanted = list(dict.fromkeys([*partitions, *acks]))
        return ShareFetchRequest(
            group_id=self.group,
            member_id=self.member,
            share_session_epoch=self.epoch if epoch is None else epoch,
            max_wait_ms=max_wait_ms,
            min_bytes=min_bytes,
            max_bytes=max_bytes,
            max_records=max_records,
            batch_size=max_records if batch_size is None else batch_size,
            share_acquire_mode=mode,
            is_renew_ack=renew,
            topics=[
                ShareFetchRequest.FetchTopic(
                    topic_id=self.topic_id,
                    partitions=[
                        ShareFetchRequest.FetchPartition(
                            partition_index=index,
                            acknowledgement_batches=[
                                ShareFetchRequest.AcknowledgementBatch(
                                    first_offset=first, last_offset=last, acknowledge_types=list(types)
                                )
                                for first, last, types in acks.get(index, ())
                            ],
                        )
                        for index in wanted
                    ],
                )
            ]
            if wanted
            else [],
            forgotten_topics_data=[
                ShareFetchRequest.ForgottenTopic(topic_id=self.topic_id, partitions=list(forgotten))
            ]
            if forgotten
            else [],
        )

    async def fetch(
        self,
        partitions: Sequence[int] | None = None,
        acks: dict[int, Sequence[Ack]] | None = None,
        *,
        version: int | None = None,
        **kwargs: Any,
    ) -> ShareFetchResponse:
        """A ShareFetch; `partitions` defaults to (0,) on a full request and () on incremental ones."""
        if partitions is None:
            partitions = (0,) if self.epoch == 0 else ()
        request = self.fetch_request(partitions, acks, **kwargs)
        response = await self.connection.send(
            request, version, timeout=TIMEOUT + 30, response_type=ShareFetchResponse
        )
        self._advance(response.error_code, request.share_session_epoch)
        return response

    async def acknowledge(
        self,
        acks: dict[int, Sequence[Ack]],
        *,
        renew: bool = False,
        epoch: int | None = None,
        version: int | None = None,
    ) -> ShareAcknowledgeResponse:
        used = self.epoch if epoch is None else epoch
        request = ShareAcknowledgeRequest(
            group_id=self.group,
            member_id=self.member,
            share_session_epoch=used,
            is_renew_ack=renew,
            topics=[
                ShareAcknowledgeRequest.AcknowledgeTopic(
                    topic_id=self.topic_id,
                    partitions=[
                        ShareAcknowledgeRequest.AcknowledgePartition(
                            partition_index=index,
                            acknowledgement_batches=[
                                ShareAcknowledgeRequest.AcknowledgementBatch(
                                    first_offset=first, last_offset=last, acknowledge_types=list(types)
                                )
                                for first, last, types in batches
                            ],
                        )
                        for index, batches in acks.items()
                    ],
                )
            ],
        )
        response = await self.connection.send(
            request, version, timeout=TIMEOUT, response_type=ShareAcknowledgeResponse
        )
        self._advance(response.error_code, used)
        return response

    def _advance(self, error_code: int, used: int) -> None:
        # Session errors leave the epoch alone (tests decide what to send next); a real client
        # would start over at 0.
        if error_code in (
            ErrorCode.SHARE_SESSION_NOT_FOUND,
            ErrorCode.INVALID_SHARE_SESSION_EPOCH,
            ErrorCode.SHARE_SESSION_LIMIT_REACHED,
        ):
            return
        if used == -1:
            self.epoch = 0
        elif used == self.epoch:
            self.epoch += 1


async def fetch_until(
    client: ShareClient,
    condition: Callable[[ShareFetchResponse], bool],
    *,
    max_wait_ms: int = 500,
    **kwargs: Any,
) -> ShareFetchResponse:
    """Long-poll fetches until one satisfies `condition` (bounded by TIMEOUT): waits on the broker,
    never sleeps."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            response = await client.fetch(max_wait_ms=max_wait_ms, **kwargs)
            if condition(response):
                return response
