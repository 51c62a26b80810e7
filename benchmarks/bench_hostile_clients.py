"""Broker RSS under hostile clients: N connections each announce a 100 MiB frame and send 90 MiB.

python -m benchmarks.bench_hostile_clients [--connections 8] [--announce-mib 100] [--send-mib 90]

Runs `aioshare broker` in a child process twice: with the embedded defaults
(queued.max.request.bytes=100 MiB) and with Kafka's default (-1, unbounded). Prints the
broker's RSS before, during (peak) and after the hostile connections close, and how long a
normal client's Metadata round trip takes while they hold their partial frames.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import time
from collections.abc import Iterable

from aioshare.protocol.framing import encode_request
from aioshare.protocol.messages import MetadataRequest
from benchmarks._broker import BrokerProcess
from benchmarks.fuzz_broker import rss_mb

MiB = 1 << 20


async def _hostile(
    host: str, port: int, announce: int, send: int, sent: list[int], pumps: list[asyncio.Task[None]]
) -> asyncio.StreamWriter:
    _reader, writer = await asyncio.open_connection(host, port)
    writer.write(struct.pack(">i", announce))
    chunk = b"\0" * MiB
    index = len(sent)
    sent.append(0)

    async def pump() -> None:
        for _ in range(send // MiB):
            writer.write(chunk)
            await writer.drain()  # blocks while the broker does not read
            sent[index] += MiB

    pumps.append(asyncio.create_task(pump()))
    return writer


async def _metadata_round_trip(host: str, port: int) -> float:
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(encode_request(MetadataRequest(topics=None), 12, 1, "bench"))
    async with asyncio.timeout(30):
        (size,) = struct.unpack(">i", await reader.readexactly(4))
        await reader.readexactly(size)
    writer.close()
    return time.monotonic() - started


async def _scenario(broker: BrokerProcess, connections: int, announce: int, send: int) -> dict[str, float]:
    host, _, port_text = broker.bootstrap.rpartition(":")
    port = int(port_text)
    await asyncio.sleep(0.5)
    before = rss_mb(broker.pid)
    sent: list[int] = []
    pumps: list[asyncio.Task[None]] = []
    writers = [await _hostile(host, port, announce, send, sent, pumps) for _ in range(connections)]
    peak = before
    deadline = time.monotonic() + 30
    last_total, stable = -1, 0
    while time.monotonic() < deadline and stable < 6:  # until the broker stops taking bytes
        await asyncio.sleep(0.5)
        peak = max(peak, rss_mb(broker.pid))
        total = sum(sent)
        stable = stable + 1 if total == last_total else 0
        last_total = total
    latency = await _metadata_round_trip(host, port)
    peak = max(peak, rss_mb(broker.pid))
    for pump in pumps:
        pump.cancel()
    for writer in writers:
        writer.transport.abort()
    await asyncio.sleep(2.0)
    after = rss_mb(broker.pid)
    return {
        "before": before,
        "peak": peak,
        "after": after,
        "accepted_mib": sum(sent) / MiB,
        "metadata_ms": latency * 1000,
    }


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--announce-mib", type=int, default=100)
    parser.add_argument("--send-mib", type=int, default=90)
    parser.add_argument("--skip-unbounded", action="store_true", help="only run with the embedded defaults")
    args = parser.parse_args(list(argv) if argv is not None else None)
    runs: list[tuple[str, dict[str, str]]] = [("embedded default (queued.max.request.bytes=104857600)", {})]
    if not args.skip_unbounded:
        runs.append(("Kafka default (queued.max.request.bytes=-1)", {"queued.max.request.bytes": "-1"}))
    print(
        f"{args.connections} connections, each announcing {args.announce_mib} MiB and sending {args.send_mib} MiB"
    )
    for title, config in runs:
        broker = BrokerProcess(config)
        try:
            figures = asyncio.run(
                _scenario(broker, args.connections, args.announce_mib * MiB, args.send_mib * MiB)
            )
        finally:
            broker.close()
        print(
            f"{title}: RSS before {figures['before']:.0f} MB, peak {figures['peak']:.0f} MB, "
            f"after close {figures['after']:.0f} MB; bytes the client got off its hands "
            f"{figures['accepted_mib']:.0f} MiB; Metadata round trip meanwhile {figures['metadata_ms']:.1f} ms",
            flush=True,
        )


if __name__ == "__main__":
    main()
