"""KIP-368 SASL re-authentication against a fake broker that enforces Kafka's rules.

The fake (see FakeConn._admit) times each session from its successful SaslAuthenticate and, like
Kafka, closes the connection when it reads any request but a SaslHandshake after the session
ended, or anything but SaslAuthenticate while a re-authentication is under way.  Sessions here
last a fraction of a second, so a test sees several re-authentications.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aioshare.client.connection import Connection
from aioshare.client.sasl import SaslConfig
from aioshare.protocol._codec import ApiMessage
from aioshare.protocol.errors import KafkaConnectionError
from aioshare.protocol.messages import (
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    MetadataRequest,
    MetadataResponse,
    RequestHeader,
)

from .fakes import (
    SASL_AUTHENTICATE,
    SASL_HANDSHAKE,
    FakeBroker,
    FakeConn,
    Handler,
    Raw,
    SaslUsers,
    all_versions,
    owned_tasks,
)

# Sessions this short re-authenticate at half their life (connection.reauth_delay): room for a
# loaded machine's event loop lag, while a test still sees several sessions in a few seconds.
LIFETIME_MS = 800
METADATA = MetadataRequest.API_KEY
FIND = FindCoordinatorRequest.API_KEY
EXCHANGES = {
    "PLAIN": [SASL_HANDSHAKE, SASL_AUTHENTICATE],
    "SCRAM-SHA-256": [SASL_HANDSHAKE, *[SASL_AUTHENTICATE] * 2],
}


def users(lifetime_ms: int = LIFETIME_MS) -> SaslUsers:
    return SaslUsers({"alice": "wonderland"}, session_lifetime_ms=lifetime_ms)


async def open_to(broker: FakeBroker, mechanism: str = "PLAIN") -> Connection:
    return await Connection.open(
        broker.host,
        broker.port,
        sasl=SaslConfig(mechanism, "alice", "wonderland"),
    )


def named(name: str) -> MetadataRequest:
    return MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=name)])


async def ask(conn: Connection, name: str) -> None:
    """One request whose answer must be its own: the fake echoes the topic name asked for."""
    response = await conn.send(named(name), response_type=MetadataResponse)
    assert [t.name for t in response.topics] == [name]


async def echo_names(conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage:
    # A few milliseconds' varying delay: requests are in flight whenever a re-authentication
    # starts, and answers overtake one another.
    names = [t.name for t in body.topics]
    await asyncio.sleep(0.001 * (sum(map(ord, names[0])) % 5))
    return MetadataResponse(topics=[MetadataResponse.MetadataResponseTopic(name=n) for n in names])


def hold_reauthentication(broker: FakeBroker, release: asyncio.Event) -> None:
    """Re-authentications get their SaslAuthenticate answer only once `release` is set."""
    default: Handler = broker.handlers[SASL_AUTHENTICATE]

    async def held(conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage | Raw | None:
        if conn.state.get("reauthenticating"):
            await release.wait()
        return await default(conn, header, body)

    broker.handlers[SASL_AUTHENTICATE] = held


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
async def test_requests_flow_across_reauthentications(mechanism: str) -> None:
    """Four senders keep requests in flight on one connection through three re-authentications:
    the connection stays up, every answer is the right one, each sender's requests reach the
    broker in the order sent, and each exchange went out alone, after what was in flight."""
    senders = 4
    async with FakeBroker(sasl=users()) as broker:
        broker.handlers[METADATA] = echo_names
        conn = await open_to(broker, mechanism)
        sent: dict[int, list[str]] = {k: [] for k in range(senders)}

        async def sender(k: int) -> None:
            while len(broker.reauth_backlog) < 3:
                name = f"s{k}-{len(sent[k])}"
                sent[k].append(name)
                await ask(conn, name)

        try:
            async with asyncio.timeout(10):
                await asyncio.gather(*(sender(k) for k in range(senders)))
        finally:
            await conn.close()
        assert broker.violations == []
        assert len(broker.conns) == 1
        assert broker.reauth_backlog and set(broker.reauth_backlog) == {0}  # nothing was in flight
        names = [r.body.topics[0].name for r in broker.requests(METADATA)]
        for k in range(senders):
            assert [n for n in names if n.startswith(f"s{k}-")] == sent[k]
        keys = [r.api_key for r in broker.received]
        exchange = EXCHANGES[mechanism]
        starts = [i for i, key in enumerate(keys) if key == SASL_HANDSHAKE]
        assert len(starts) == 1 + len(broker.reauth_backlog) >= 4
        assert all(keys[i : i + len(exchange)] == exchange for i in starts)
    assert not owned_tasks()


async def test_requests_held_at_the_gate_go_out_in_order_after_it() -> None:
    release = asyncio.Event()
    async with FakeBroker(sasl=users()) as broker:
        broker.handlers[METADATA] = echo_names
        hold_reauthentication(broker, release)
        conn = await open_to(broker)
        try:
            async with asyncio.timeout(5):
                await broker.wait_for(lambda: len(broker.requests(SASL_AUTHENTICATE)) == 2)
                held = [asyncio.create_task(ask(conn, f"q-{i}")) for i in range(20)]
                release.set()
                await asyncio.gather(*held)
        finally:
            await conn.close()
        assert [r.body.topics[0].name for r in broker.requests(METADATA)] == [f"q-{i}" for i in range(20)]
        keys = [r.api_key for r in broker.received]
        # Sent while the exchange was under way, written only after it.
        assert keys[-21:] == [SASL_AUTHENTICATE] + [METADATA] * 20
        assert broker.violations == []


async def test_a_request_outlasting_the_session_does_not_hold_reauthentication_back() -> None:
    """Waiting for the requests in flight stops at the session's end: the broker reads the
    handshake after them anyway, and takes it even then; new requests must not wait longer."""
    answer = asyncio.Event()

    async def slow(conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage:
        await answer.wait()
        return FindCoordinatorResponse(node_id=int(body.key), host="h", port=1)

    async with FakeBroker(sasl=users(), api_versions=all_versions() | {FIND: (0, 3)}) as broker:
        broker.handlers[METADATA] = echo_names
        broker.handlers[FIND] = slow
        conn = await open_to(broker)
        try:
            async with asyncio.timeout(5):
                pending = asyncio.create_task(
                    conn.send(FindCoordinatorRequest(key="7"), response_type=FindCoordinatorResponse)
                )
                await broker.wait_for(lambda: len(broker.reauth_backlog) == 1)
                await ask(conn, "after")
                answer.set()
                assert (await pending).node_id == 7
        finally:
            await conn.close()
        assert broker.reauth_backlog == [1]  # the slow request was still unanswered
        assert broker.violations == []


async def test_refused_reauthentication_closes_the_connection() -> None:
    credentials = users()
    async with FakeBroker(sasl=credentials) as broker:
        conn = await open_to(broker)
        try:
            credentials.users["alice"] = "changed"  # e.g. the password was rotated
            await asyncio.wait_for(conn.wait_closed(), 5)
            with pytest.raises(
                KafkaConnectionError, match=r"re-authentication failed.*Authentication failed"
            ):
                await ask(conn, "x")
        finally:
            await conn.close()
    assert not owned_tasks()


async def test_close_during_reauthentication_leaves_no_task() -> None:
    release = asyncio.Event()  # never set: the re-authentication never ends
    async with FakeBroker(sasl=users()) as broker:
        broker.handlers[METADATA] = echo_names
        hold_reauthentication(broker, release)
        conn = await open_to(broker)
        async with asyncio.timeout(5):
            await broker.wait_for(lambda: len(broker.requests(SASL_AUTHENTICATE)) == 2)
            held = asyncio.create_task(ask(conn, "held"))
            await conn.close()
            with pytest.raises(KafkaConnectionError, match="closed"):
                await held
        assert not owned_tasks()


async def test_no_session_lifetime_no_reauthentication() -> None:
    async with FakeBroker(sasl=users(lifetime_ms=0)) as broker:
        broker.handlers[METADATA] = echo_names
        conn = await open_to(broker)
        try:
            await ask(conn, "x")
            assert not owned_tasks() and conn._reauth_timer is None
        finally:
            await conn.close()


@pytest.mark.parametrize("fraction", [0.85, 0.95])
def test_reauthentication_starts_early_enough_for_a_long_poll_queued_before_it(fraction: float) -> None:
    from aioshare.client.connection import reauth_delay

    assert reauth_delay(3600.0, fraction) == pytest.approx(3600.0 * fraction)  # Java's window
    assert reauth_delay(3.0, fraction) == pytest.approx(2.0)  # a second before the end
    assert reauth_delay(0.8, fraction) == pytest.approx(0.4)  # half a short session
