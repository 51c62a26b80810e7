"""Share-partitions across leader moves and broker restarts (semantics doc 4.11, 6.3): a node that
does not lead answers NOT_LEADER_OR_FOLLOWER with CurrentLeader and NodeEndpoints; the new
leader reloads the durable state; with a data directory the state survives a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.protocol.errors import ErrorCode

from .share_fetch_support import (
    TIMEOUT,
    ShareClient,
    acquired,
    alter_group_config,
    leader_of,
    offsets,
    partition_data,
    produce,
)


async def test_not_leader_names_the_new_leader_and_state_moves_with_leadership() -> None:
    async with EmbeddedBroker(nodes=3) as broker:
        topic_id = await broker.create_topic("t", 1)
        await alter_group_config(broker, "g", share_auto_offset_reset="earliest")
        produce(broker, "t", 10, per_batch=5)
        old = broker.partition("t", 0).leader
        new = next(node for node in broker.node_ids if node != old)
        client = await ShareClient.open(broker, topic_id, node=old)
        try:
            assert acquired(await client.fetch()) == [(0, 9, 1)]
            response = await client.fetch(acks={0: [(0, 2, [1]), (3, 4, [3]), (5, 5, [2])]})
            assert partition_data(response).acknowledge_error_code == ErrorCode.NONE
            assert acquired(response) == [(5, 5, 2)]
            await broker.move_leader("t", 0, new)
            partition = broker.partition("t", 0)
            # Fetch and ack on the old leader: NOT_LEADER_OR_FOLLOWER naming the new one.
            response = await client.fetch(acks={0: [(6, 6, [1])]}, max_wait_ms=5000)
            data = partition_data(response)
            assert data.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
            assert data.acknowledge_error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
            assert (data.current_leader.leader_id, data.current_leader.leader_epoch) == (
                new,
                partition.leader_epoch,
            )
            host, port = broker.address(new)
            assert [(n.node_id, n.host, n.port) for n in response.node_endpoints] == [(new, host, port)]
            ack = await client.acknowledge({0: [(6, 6, [1])]})
            assert [p.error_code for t in ack.responses for p in t.partitions] == [
                ErrorCode.NOT_LEADER_OR_FOLLOWER
            ]
            assert [n.node_id for n in ack.node_endpoints] == [new]
            # The old leader dropped its copy; the new leader loads the persisted state: accepted
            # and rejected records are gone, the rest is available again. The interrupted
            # deliveries are not counted (acquisitions are never persisted).
            assert leader_of(broker).cached(old, "g", partition) is None
            moved = await ShareClient.open(broker, topic_id, node=new)
            try:
                response = await moved.fetch()
                assert acquired(response) == [(5, 5, 2), (6, 9, 1)]
                sp = leader_of(broker).cached(new, "g", partition)
                assert sp is not None and sp.start_offset == 5
            finally:
                await moved.close()
        finally:
            await client.close()


async def test_a_waiting_fetch_on_the_old_leader_answers_when_leadership_moves() -> None:
    async with EmbeddedBroker(nodes=2) as broker:
        topic_id = await broker.create_topic("t", 1)
        old = broker.partition("t", 0).leader
        new = next(node for node in broker.node_ids if node != old)
        client = await ShareClient.open(broker, topic_id, node=old)
        try:
            assert acquired(await client.fetch()) == []
            waiting = asyncio.ensure_future(client.fetch(max_wait_ms=30_000))
            log = broker.partition("t", 0).log
            async with asyncio.timeout(TIMEOUT):
                while log.listener_count == 0:  # noqa: ASYNC110 - parked fetch, no event
                    await asyncio.sleep(0.002)
            await broker.move_leader("t", 0, new)
            async with asyncio.timeout(TIMEOUT):
                response = await waiting
            assert partition_data(response).error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
            assert partition_data(response).current_leader.leader_id == new
        finally:
            await client.close()


async def test_state_survives_a_restart_with_a_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    holder: ShareClient | None = None
    try:
        async with EmbeddedBroker(data_dir=data_dir) as broker:
            topic_id = await broker.create_topic("t", 1)
            await alter_group_config(broker, "g", share_auto_offset_reset="earliest")
            produce(broker, "t", 20, per_batch=5)
            port = broker.address(1)[1]
            holder = await ShareClient.open(broker, topic_id)
            assert acquired(await holder.fetch(max_records=20)) == [(0, 19, 1)]
            # Accept 0-4 and 10-14, reject 15, release 16 (count 1 stays), hold the rest.
            response = await holder.fetch(
                acks={0: [(0, 4, [1]), (10, 14, [1]), (15, 16, [3, 2])]}, max_records=0
            )
            assert partition_data(response).acknowledge_error_code == ErrorCode.NONE
            # The holder stays connected while the broker stops: its session does not close
            # (which would release the held records with their count kept), the acquisitions
            # die with the broker and were never persisted.
    finally:
        if holder is not None:
            await holder.close()
    # Restart on the same port and directory. Nothing acknowledged comes back; what was held
    # comes back on the delivery it had before (count 1), what was released on its next (2).
    async with EmbeddedBroker(data_dir=data_dir, port=port) as broker:
        client = await ShareClient.open(broker, topic_id)
        try:
            response = await client.fetch(max_records=100)
            got = offsets(acquired(response))
            assert got == [5, 6, 7, 8, 9, 16, 17, 18, 19]
            assert acquired(response) == [(5, 9, 1), (16, 16, 2), (17, 19, 1)]
            produce(broker, "t", 1)
            response = await client.fetch(acks={0: [(5, 9, [1]), (16, 19, [1])]}, max_wait_ms=1000)
            assert acquired(response) == [(20, 20, 1)]
        finally:
            await client.close()


async def test_latest_reset_is_decided_once_and_persisted(tmp_path: Path) -> None:
    async with EmbeddedBroker(data_dir=tmp_path) as broker:
        topic_id = await broker.create_topic("t", 1)
        produce(broker, "t", 5)
        port = broker.address(1)[1]
        client = await ShareClient.open(broker, topic_id)
        try:
            # Default share.auto.offset.reset=latest: starts at the end of the log, at first load.
            assert acquired(await client.fetch()) == []
        finally:
            await client.close()
        produce(broker, "t", 3)
    async with EmbeddedBroker(data_dir=tmp_path, port=port) as broker:
        produce(broker, "t", 2)
        client = await ShareClient.open(broker, topic_id)
        try:
            # Everything produced after the first load is delivered, across the restart.
            assert offsets(acquired(await client.fetch())) == [5, 6, 7, 8, 9]
        finally:
            await client.close()
