"""``ThreadedBroker.share_records``: the leader's view of a share-partition, for counting fates."""

from __future__ import annotations

import pytest

from aioshare.protocol.types import RecordState
from aioshare.share import ShareConsumer
from aioshare.testing import ThreadedBroker


async def test_counts_each_records_state_and_delivery_count(aioshare_broker: ThreadedBroker) -> None:
    topic = await aioshare_broker.create_topic()
    await aioshare_broker.produce(topic, [b"a", b"b", b"c", b"d", b"e"], partition=0)
    await aioshare_broker.set_group_config("g", {"share.auto.offset.reset": "earliest"})
    assert await aioshare_broker.share_records("g", topic) is None  # nobody fetched yet

    async with ShareConsumer(
        topic,
        group_id="g",
        bootstrap_servers=aioshare_broker.bootstrap_servers,
        ack_mode="explicit",
        fetch_max_wait=0.1,
        fetch_ahead=False,  # else the next fetch may take the released record again at once
    ) as consumer:
        got: list = []
        while len(got) < 5:
            got += await consumer.getmany(max_records=5 - len(got), timeout=10)
        held = await aioshare_broker.share_records("g", topic)
        assert held is not None and held.counts() == {"acquired": 5}
        got[1].accept()
        got[2].release()
        got[3].reject()
        await consumer.commit(timeout=10)
        seen = await aioshare_broker.share_records("g", topic)
        assert seen is not None
        # Offset 0 is still acquired, so the start offset stays at 0 and every run is visible.
        assert seen.start_offset == 0 and seen.end_offset == 4
        assert [seen.state_of(o) for o in range(5)] == [
            (RecordState.ACQUIRED, 1),
            (RecordState.ACKNOWLEDGED, 1),
            (RecordState.AVAILABLE, 1),
            (RecordState.ARCHIVED, 1),
            (RecordState.ACQUIRED, 1),
        ]
        assert seen.counts() == {"acquired": 2, "acknowledged": 1, "available": 1, "archived": 1}
        assert seen.state_of(5) is None
    # The session is closed, the leader forgot the group: the persisted state answers, with
    # what the close released available again (delivery count kept).
    after = await aioshare_broker.share_records("g", topic)
    assert after is not None and after.start_offset == 0
    assert [after.state_of(o) for o in range(5)] == [
        (RecordState.AVAILABLE, 1),
        (RecordState.ACKNOWLEDGED, 1),
        (RecordState.AVAILABLE, 1),
        (RecordState.ARCHIVED, 1),
        (RecordState.AVAILABLE, 1),
    ]


async def test_an_unknown_partition_is_a_key_error(aioshare_broker: ThreadedBroker) -> None:
    with pytest.raises(KeyError, match="no partition missing-0"):
        await aioshare_broker.share_records("g", "missing")
