"""`aioshare broker`: an embedded Kafka-protocol broker in the foreground.

Announces ``aioshare broker listening on HOST:PORT[,HOST:PORT...]`` (one per node) once it
serves; with ``--config listeners=...`` the line lists every bound listener of every node in
Kafka's syntax instead: ``aioshare broker listening on PLAINTEXT://127.0.0.1:41001,SASL_SSL://...``
(port 0 in `listeners` shows the port the OS picked).
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.cli._loop import run


async def serve(
    host: str,
    port: int,
    nodes: int,
    data_dir: str | None,
    config: dict[str, str],
    kafka_version: str | None = None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with EmbeddedBroker(
            host=host, port=port, nodes=nodes, data_dir=data_dir, config=config, kafka_version=kafka_version
        ) as broker:
            # Scripts wait for this exact line before they connect.
            print(f"aioshare broker listening on {announced(broker)}", flush=True)
            await stop.wait()
            print("aioshare broker stopping", flush=True)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def announced(broker: EmbeddedBroker) -> str:
    """host:port,... without `listeners`; with it, every bound NAME://host:port (Kafka's syntax)."""
    if not broker.config.listeners:
        return broker.bootstrap_servers
    return ",".join(broker.bound_listeners())


def run_broker(
    host: str,
    port: int,
    nodes: int,
    data_dir: str | None,
    config: dict[str, str],
    *,
    kafka_version: str | None = None,
) -> int:
    from aioshare.protocol.errors import ConfigError

    try:
        run(serve(host, port, nodes, data_dir, config, kafka_version))
    except (ConfigError, ValueError) as exc:
        print(f"aioshare broker: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"aioshare broker: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    return 0
