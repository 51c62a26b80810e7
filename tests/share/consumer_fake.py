"""A scriptable share-group broker for ShareConsumer unit tests.

Built on the client tests' FakeCluster (Metadata, FindCoordinator, ApiVersions); adds
ShareGroupHeartbeat, ShareFetch and ShareAcknowledge handlers that record every request, and
DescribeConfigs for the one config a runtime route reads at start (the group's delivery-count
limit, Kafka's default 5): unanswered, it held every route back for its 30 s timeout.
By default ShareFetch acquires the next ``MaxRecords`` offsets of one partition and returns
the batches holding them; ``fetch_hook`` replaces that answer for a test, and
``acknowledge_hook`` runs before each ShareAcknowledge is answered (to hold it back).
``refuse_acks`` and ``hold_acks`` script the two ways an acknowledgement fails on the wire.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aioshare.admin.share_admin import BROKER_DELIVERY_COUNT_LIMIT, GROUP_DELIVERY_COUNT_LIMIT
from aioshare.protocol.messages import (
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    RequestHeader,
    ShareAcknowledgeRequest,
    ShareAcknowledgeResponse,
    ShareFetchRequest,
    ShareFetchResponse,
    ShareGroupHeartbeatRequest,
    ShareGroupHeartbeatResponse,
)
from aioshare.protocol.records import RecordToWrite, encode_batch, iter_batches
from tests.client.fakes import FakeCluster, FakeConn

TOPIC = "jobs"
TOPIC_ID = uuid.UUID("22222222-2222-2222-2222-222222222222")

FetchHook = Callable[[ShareFetchRequest], Awaitable[ShareFetchResponse | None]]
AcknowledgeHook = Callable[[ShareAcknowledgeRequest], Awaitable[None]]


class ShareFake:
    def __init__(self, cluster: FakeCluster, *, leader: int = 1, lock_ms: int = 30_000) -> None:
        self.cluster = cluster
        cluster.topics[TOPIC] = (TOPIC_ID, {0: leader})
        for broker in cluster.brokers.values():
            broker.handlers[76] = self._heartbeat
            broker.handlers[78] = self._fetch
            broker.handlers[79] = self._acknowledge
            broker.handlers[32] = self._describe_configs
        self.lock_ms = lock_ms
        self.batches: list[bytes] = []
        self.end = 0  # next offset to write
        self.next = 0  # next offset to acquire
        self.fetch_hook: FetchHook | None = None
        self.acknowledge_hook: AcknowledgeHook | None = None
        self.heartbeat_error = 0
        self.fetches: list[ShareFetchRequest] = []
        self.acknowledges: list[ShareAcknowledgeRequest] = []
        self.heartbeats: list[ShareGroupHeartbeatRequest] = []
        self.ack_error: tuple[int, str] | None = None  # refuse_acks()
        self.delivery_count_limit = 5

    # -- scripted failures --------------------------------------------------------------

    def refuse_acks(self, code: int, message: str) -> None:
        """Answer every acknowledgement (on a ShareFetch or a ShareAcknowledge) with ``code``."""
        self.ack_error = (code, message)

    def hold_acks(self) -> asyncio.Event:
        """Never answer the first request that carries acknowledgements; the event is set when
        it arrives (a test then drops the connection: the acks are in doubt)."""
        arrived = asyncio.Event()
        never = asyncio.Event()

        async def hold(req: ShareFetchRequest | ShareAcknowledgeRequest) -> None:
            if carries_acks(req) and not arrived.is_set():
                arrived.set()
                await never.wait()

        async def hold_fetch(req: ShareFetchRequest) -> ShareFetchResponse | None:
            await hold(req)
            return None

        self.fetch_hook = hold_fetch
        self.acknowledge_hook = hold
        return arrived

    # -- data --------------------------------------------------------------------------

    def add_batch(self, values: list[bytes], *, control: bool = False) -> None:
        records = [RecordToWrite(None, v) for v in values]
        self.batches.append(encode_batch(records, base_offset=self.end, is_control=control))
        self.end += len(values)

    def records_for(self, first: int, last: int) -> bytes:
        """The whole batches that hold any of [first, last] (what a broker sends)."""
        out = b""
        for raw in self.batches:
            (view,) = list(iter_batches(raw))
            if view.base_offset <= last and view.last_offset >= first:
                out += raw
        return out

    # -- what the client sent ------------------------------------------------------------

    def acked(self) -> dict[int, int]:
        """offset -> acknowledge type, over every request that carried acks."""
        out: dict[int, int] = {}
        batches: list[Any] = []
        for f in self.fetches:
            batches.extend(b for t in f.topics for p in t.partitions for b in p.acknowledgement_batches)
        for a in self.acknowledges:
            if not a.is_renew_ack:
                batches.extend(b for t in a.topics for p in t.partitions for b in p.acknowledgement_batches)
        for b in batches:
            types = b.acknowledge_types
            for i, offset in enumerate(range(b.first_offset, b.last_offset + 1)):
                out[offset] = types[0] if len(types) == 1 else types[i]
        return out

    # -- handlers ----------------------------------------------------------------------

    async def _describe_configs(
        self, conn: FakeConn, header: RequestHeader, body: DescribeConfigsRequest
    ) -> DescribeConfigsResponse:
        limits = (GROUP_DELIVERY_COUNT_LIMIT, BROKER_DELIVERY_COUNT_LIMIT)
        Result = DescribeConfigsResponse.DescribeConfigsResult
        Entry = DescribeConfigsResponse.DescribeConfigsResourceResult
        return DescribeConfigsResponse(
            results=[
                Result(
                    resource_type=r.resource_type,
                    resource_name=r.resource_name,
                    configs=[
                        Entry(name=name, value=str(self.delivery_count_limit))
                        for name in r.configuration_keys or limits
                        if name in limits
                    ],
                )
                for r in body.resources
            ]
        )

    async def _heartbeat(
        self, conn: FakeConn, header: RequestHeader, body: Any
    ) -> ShareGroupHeartbeatResponse:
        assert isinstance(body, ShareGroupHeartbeatRequest)
        self.heartbeats.append(body)
        if self.heartbeat_error:
            return ShareGroupHeartbeatResponse(error_code=self.heartbeat_error)
        if body.member_epoch == -1:
            return ShareGroupHeartbeatResponse(member_id=body.member_id, member_epoch=-1)
        return ShareGroupHeartbeatResponse(
            member_id=body.member_id,
            member_epoch=1,
            heartbeat_interval_ms=100,
            assignment=ShareGroupHeartbeatResponse.Assignment(
                topic_partitions=[
                    ShareGroupHeartbeatResponse.TopicPartitions(topic_id=TOPIC_ID, partitions=[0])
                ]
            ),
        )

    async def _fetch(self, conn: FakeConn, header: RequestHeader, body: Any) -> ShareFetchResponse:
        assert isinstance(body, ShareFetchRequest)
        self.fetches.append(body)
        if self.fetch_hook is not None:
            answer = await self.fetch_hook(body)
            if answer is not None:
                return answer
        return await self.default_fetch(body)

    async def default_fetch(self, body: ShareFetchRequest) -> ShareFetchResponse:
        partition = ShareFetchResponse.PartitionData(partition_index=0)
        n = min(body.max_records, self.end - self.next)
        if body.share_session_epoch != -1 and not body.is_renew_ack and n > 0:
            first, last = self.next, self.next + n - 1
            self.next += n
            partition.acquired_records = [
                ShareFetchResponse.AcquiredRecords(first_offset=first, last_offset=last, delivery_count=1)
            ]
            partition.records = self.records_for(first, last)
        elif body.max_wait_ms:
            await asyncio.sleep(min(body.max_wait_ms, 50) / 1000)  # a short long-poll
        if self.ack_error is not None and carries_acks(body):
            partition.acknowledge_error_code, partition.acknowledge_error_message = self.ack_error
        return ShareFetchResponse(
            acquisition_lock_timeout_ms=self.lock_ms,
            responses=[
                ShareFetchResponse.ShareFetchableTopicResponse(topic_id=TOPIC_ID, partitions=[partition])
            ],
        )

    async def _acknowledge(
        self, conn: FakeConn, header: RequestHeader, body: Any
    ) -> ShareAcknowledgeResponse:
        assert isinstance(body, ShareAcknowledgeRequest)
        self.acknowledges.append(body)
        if self.acknowledge_hook is not None:
            await self.acknowledge_hook(body)
        return ShareAcknowledgeResponse(
            acquisition_lock_timeout_ms=self.lock_ms if header.request_api_version >= 2 else 0,
            responses=[
                ShareAcknowledgeResponse.ShareAcknowledgeTopicResponse(
                    topic_id=t.topic_id,
                    partitions=[
                        ShareAcknowledgeResponse.PartitionData(
                            partition_index=p.partition_index,
                            error_code=self.ack_error[0] if self.ack_error else 0,
                            error_message=self.ack_error[1] if self.ack_error else None,
                        )
                        for p in t.partitions
                    ],
                )
                for t in body.topics
            ],
        )


def carries_acks(req: ShareFetchRequest | ShareAcknowledgeRequest) -> bool:
    return any(p.acknowledgement_batches for t in req.topics for p in t.partitions)
