"""ClusterMetadata, sans-IO: fed MetadataResponses and times, no sockets."""

from __future__ import annotations

import uuid

import pytest

from aioshare.client.metadata import BrokerNode, ClusterMetadata, parse_bootstrap
from aioshare.protocol.errors import ConfigError, UnknownTopicIdError, UnknownTopicOrPartitionError
from aioshare.protocol.messages import MetadataResponse

Broker = MetadataResponse.MetadataResponseBroker
Topic = MetadataResponse.MetadataResponseTopic
Partition = MetadataResponse.MetadataResponsePartition

ORDERS = uuid.UUID("11111111-1111-1111-1111-111111111111")
PAYMENTS = uuid.UUID("22222222-2222-2222-2222-222222222222")


def topic(
    name: str | None, topic_id: uuid.UUID, leaders: dict[int, tuple[int, int]], error: int = 0
) -> Topic:
    """leaders: partition -> (leader id, leader epoch)."""
    return Topic(
        error_code=error,
        name=name,
        topic_id=topic_id,
        partitions=[
            Partition(
                partition_index=p, leader_id=leader, leader_epoch=epoch, replica_nodes=[1, 2], isr_nodes=[1]
            )
            for p, (leader, epoch) in leaders.items()
        ],
    )


def response(*topics: Topic, brokers: tuple[int, ...] = (1, 2, 3)) -> MetadataResponse:
    return MetadataResponse(
        brokers=[Broker(node_id=b, host=f"b{b}", port=9000 + b) for b in brokers],
        cluster_id="c1",
        controller_id=1,
        topics=list(topics),
    )


def test_lookups_by_name_and_id() -> None:
    md = ClusterMetadata()
    errors = md.update(response(topic("orders", ORDERS, {0: (1, 5), 1: (2, 3)})), now=10.0, full=True)
    assert errors == {}
    assert md.cluster_id == "c1" and md.controller_id == 1
    assert md.brokers[2] == BrokerNode(2, "b2", 9002)
    assert md.topic("orders") is md.topic(ORDERS)
    assert md.topic_id("orders") == ORDERS and md.topic_name(ORDERS) == "orders"
    assert md.leader_for("orders", 1) == BrokerNode(2, "b2", 9002)
    assert md.leader_for(ORDERS, 0) == BrokerNode(1, "b1", 9001)
    part = md.partition("orders", 0)
    assert part is not None and part.leader_epoch == 5 and part.replicas == (1, 2) and part.isr == (1,)
    assert md.leader_for("orders", 7) is None
    assert md.leader_for("missing", 0) is None
    assert md.topic(uuid.uuid4()) is None


def test_no_leader_or_unknown_leader_node() -> None:
    md = ClusterMetadata()
    md.update(response(topic("t", ORDERS, {0: (-1, 0), 1: (9, 0)})), now=0.0, full=True)
    assert md.leader_for("t", 0) is None  # election in progress
    assert md.leader_for("t", 1) is None  # leader not among the brokers reported
    assert md.partition("t", 1) is not None


def test_full_update_replaces_partial_merges() -> None:
    md = ClusterMetadata()
    md.update(
        response(topic("orders", ORDERS, {0: (1, 0)}), topic("payments", PAYMENTS, {0: (2, 0)})),
        0.0,
        full=True,
    )
    md.update(response(topic("orders", ORDERS, {0: (3, 1)})), 1.0, full=False)
    assert md.leader_for("orders", 0) == BrokerNode(3, "b3", 9003)
    assert md.topic("payments") is not None
    md.update(response(topic("orders", ORDERS, {0: (3, 1)})), 2.0, full=True)
    assert md.topic("payments") is None and md.topic(PAYMENTS) is None
    assert set(md.topics) == {"orders"}


def test_topic_errors_are_returned_and_drop_the_topic() -> None:
    md = ClusterMetadata()
    md.update(response(topic("orders", ORDERS, {0: (1, 0)})), 0.0, full=True)
    errors = md.update(
        response(topic("orders", uuid.UUID(int=0), {}, error=3), topic(None, PAYMENTS, {}, error=100)),
        1.0,
        full=False,
    )
    assert isinstance(errors["orders"], UnknownTopicOrPartitionError)
    assert isinstance(errors[PAYMENTS], UnknownTopicIdError)
    assert md.topic("orders") is None and md.topic(ORDERS) is None


def test_older_leader_epoch_does_not_overwrite() -> None:
    md = ClusterMetadata()
    md.update(response(topic("orders", ORDERS, {0: (2, 7), 1: (2, 7)})), 0.0, full=True)
    # A lagging broker reports an older leader for partition 0 and a newer one for 1.
    md.update(response(topic("orders", ORDERS, {0: (1, 6), 1: (3, 8)})), 1.0, full=True)
    assert md.leader_for("orders", 0) == BrokerNode(2, "b2", 9002)
    assert md.leader_for("orders", 1) == BrokerNode(3, "b3", 9003)


def test_recreated_topic_takes_new_epochs() -> None:
    md = ClusterMetadata()
    md.update(response(topic("orders", ORDERS, {0: (2, 7)})), 0.0, full=True)
    md.update(response(topic("orders", PAYMENTS, {0: (1, 0)})), 1.0, full=False)
    assert md.leader_for("orders", 0) == BrokerNode(1, "b1", 9001)
    assert md.topic(ORDERS) is None and md.topic_name(PAYMENTS) == "orders"


def test_nil_topic_ids_from_old_versions() -> None:
    md = ClusterMetadata()
    md.update(response(topic("orders", uuid.UUID(int=0), {0: (1, 0)})), 0.0, full=True)
    assert md.topic("orders") is not None
    assert md.topic(uuid.UUID(int=0)) is None


def test_refresh_timing_and_invalidate() -> None:
    md = ClusterMetadata()
    assert md.needs_refresh(0.0, max_age=300.0)  # never read
    md.update(response(), now=100.0, full=True)
    assert md.refresh_in(100.0, 300.0) == 300.0
    assert md.refresh_in(350.0, 300.0) == 50.0
    assert not md.needs_refresh(399.0, 300.0) and md.needs_refresh(400.0, 300.0)
    md.invalidate()
    assert md.refresh_in(101.0, 300.0) == 0.0
    md.update(response(), now=102.0, full=False)
    assert not md.needs_refresh(103.0, 300.0)


def test_coordinators() -> None:
    md = ClusterMetadata()
    md.update(response(brokers=(1,)), 0.0, full=True)
    node = BrokerNode(7, "coordinator-host", 9999)
    md.set_coordinator("g", 0, node)
    assert md.coordinator("g") == node and md.coordinator("g", key_type=1) is None
    assert md.node(7) == node  # reachable by id though not in the broker list
    assert md.node(1) == BrokerNode(1, "b1", 9001)
    md.invalidate_coordinator("g")
    assert md.coordinator("g") is None and md.node(7) is None


@pytest.mark.parametrize(
    ("servers", "expected"),
    [
        ("a:1,b:2", [("a", 1), ("b", 2)]),
        (" a:1 , ,b ", [("a", 1), ("b", 9092)]),
        (["h:10", "[::1]:11", "[fe80::1]"], [("h", 10), ("::1", 11), ("fe80::1", 9092)]),
        ("::1", [("::1", 9092)]),
    ],
)
def test_parse_bootstrap(servers: str | list[str], expected: list[tuple[str, int]]) -> None:
    assert parse_bootstrap(servers) == expected


@pytest.mark.parametrize("servers", ["", " , ", "a:x", "a:0", "a:70000", ":9092", []])
def test_parse_bootstrap_rejects(servers: str | list[str]) -> None:
    with pytest.raises(ConfigError):
        parse_bootstrap(servers)
