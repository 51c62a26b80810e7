"""Fuzz the embedded broker with mutated requests of every API and version it serves.

python -m benchmarks.fuzz_broker --frames 1000000 [--seed 1] [--connections 16]

A soak target, not part of `python -m benchmarks`: the broker runs in a child process
(`--serve`) that counts every log record at ERROR or with exc_info (tracebacks) on the root
logger; the parent encodes a valid request for each (API key, version) the broker advertises,
mutates it (bit flips, inserted/deleted bytes, truncation, extreme integers, a lying size
prefix) and sends it over loopback, followed by an ApiVersions v0 sentinel so it knows when
the broker is done with it. It prints frames/s, the broker's RSS before/during/after, and
exits non-zero on any traceback or when RSS grows past --max-rss-mb.
tests/broker/test_fuzz_soak.py runs the same client in-process for a bounded time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable

from aioshare.protocol._codec import ApiMessage
from aioshare.protocol.framing import encode_request
from aioshare.protocol.messages import (
    REQUESTS,
    ApiVersionsRequest,
    FetchRequest,
    MetadataRequest,
    ProduceRequest,
    ShareAcknowledgeRequest,
    ShareFetchRequest,
)
from aioshare.protocol.records import RecordToWrite, encode_batch

_SENTINEL_CORRELATION = 0x7FFF0000
_FRAME_TIMEOUT = 1.0
_INTS = (b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00", b"\x00\x00\x00\x00", b"\xff\xff")


def _rich(api_key: int) -> list[ApiMessage]:
    """Requests with content, so mutations reach nested fields (defaults are mostly empty)."""
    topic_id = uuid.UUID(int=1)
    if api_key == ProduceRequest.API_KEY:
        batch = encode_batch([RecordToWrite(b"k", b"v" * 20), RecordToWrite(None, b"w")])
        return [
            ProduceRequest(
                acks=1,
                timeout_ms=100,
                topic_data=[
                    ProduceRequest.TopicProduceData(
                        name="fuzz",
                        topic_id=topic_id,
                        partition_data=[ProduceRequest.PartitionProduceData(index=0, records=batch)],
                    )
                ],
            )
        ]
    if api_key == FetchRequest.API_KEY:
        part = FetchRequest.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 16)
        return [
            FetchRequest(
                max_wait_ms=0,
                min_bytes=1,
                topics=[FetchRequest.FetchTopic(topic="fuzz", topic_id=topic_id, partitions=[part])],
            )
        ]
    if api_key == MetadataRequest.API_KEY:
        return [MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="fuzz")])]
    if api_key == ShareFetchRequest.API_KEY:
        return [
            ShareFetchRequest(
                group_id="g",
                member_id="m" * 22,
                max_wait_ms=0,
                topics=[
                    ShareFetchRequest.FetchTopic(
                        topic_id=topic_id, partitions=[ShareFetchRequest.FetchPartition(partition_index=0)]
                    )
                ],
            )
        ]
    if api_key == ShareAcknowledgeRequest.API_KEY:
        return [ShareAcknowledgeRequest(group_id="g", member_id="m" * 22)]
    return []


def corpus(versions: dict[int, tuple[int, int]]) -> list[bytes]:
    """One valid frame body (no size prefix) per request shape, API key and version."""
    frames: list[bytes] = []
    for api_key, (low, high) in sorted(versions.items()):
        cls = REQUESTS[api_key]
        for version in range(low, high + 1):
            for message in [cls(), *_rich(api_key)]:
                try:
                    frames.append(encode_request(message, version, 1, "fuzz")[4:])
                except Exception:  # a rich shape a version cannot carry
                    continue
    return frames


def mutate(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        op = rng.randrange(6)
        # Keep the API key and version mostly intact so the body decoder is what gets fuzzed.
        lo = 4 if len(data) > 8 and rng.random() < 0.9 else 0
        pos = rng.randrange(lo, len(data) + 1) if len(data) >= lo else 0
        if op == 0 and pos < len(data):
            data[pos] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[pos:pos] = rng.randbytes(rng.choice((1, 2, 4, 16)))
        elif op == 2 and pos < len(data):
            del data[pos : pos + rng.choice((1, 2, 4, 16))]
        elif op == 3:
            del data[pos:]
        elif op == 4:
            data[pos : pos + 4] = rng.choice(_INTS)
        else:
            data[pos : pos + 1] = bytes([rng.choice((0x00, 0x7F, 0x80, 0xFF))])
    return bytes(data)


def frame(rng: random.Random, body: bytes) -> bytes:
    size = len(body)
    if rng.random() < 0.01:  # a size prefix that lies (short or long)
        size = max(0, size + rng.choice((-3, -1, 1, 7)))
    return struct.pack(">i", size) + body


_SENTINEL = encode_request(ApiVersionsRequest(), 0, _SENTINEL_CORRELATION, "fuzz")


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


async def _worker(
    host: str, port: int, bodies: list[bytes], rng: random.Random, stats: dict[str, int]
) -> None:
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    while stats["left"] > 0:
        stats["left"] -= 1
        if writer is None:
            reader, writer = await asyncio.open_connection(host, port)
            stats["connections"] += 1
        assert reader is not None
        writer.write(frame(rng, mutate(rng, rng.choice(bodies))) + _SENTINEL)
        stats["sent"] += 1
        try:
            async with asyncio.timeout(_FRAME_TIMEOUT):
                await writer.drain()
                while True:
                    response = await _read_frame(reader)
                    if struct.unpack_from(">i", response)[0] == _SENTINEL_CORRELATION:
                        stats["answered"] += 1
                        break
        except (asyncio.IncompleteReadError, ConnectionError):
            stats["closed"] += 1
            writer.transport.abort()
            writer = reader = None
        except TimeoutError:
            stats["timeouts"] += 1
            writer.transport.abort()
            writer = reader = None
    if writer is not None:
        writer.transport.abort()


async def fuzz(
    host: str,
    port: int,
    versions: dict[int, tuple[int, int]],
    *,
    frames: int,
    seed: int = 1,
    connections: int = 16,
    seconds: float | None = None,
    progress: float | None = None,
) -> dict[str, int]:
    """Send `frames` mutated frames (or stop after `seconds`); returns counters."""
    bodies = corpus(versions)
    stats = {"left": frames, "sent": 0, "answered": 0, "closed": 0, "timeouts": 0, "connections": 0}
    rng = random.Random(seed)
    tasks = [
        asyncio.create_task(_worker(host, port, bodies, random.Random(rng.getrandbits(64)), stats))
        for _ in range(connections)
    ]
    started = time.monotonic()

    async def stop_after() -> None:
        while True:
            await asyncio.sleep(progress or 1.0)
            if seconds is not None and time.monotonic() - started > seconds:
                stats["left"] = 0
            if progress:
                print(
                    f"  {stats['sent']} frames, {stats['sent'] / (time.monotonic() - started):.0f}/s",
                    flush=True,
                )

    watchdog = asyncio.create_task(stop_after())
    try:
        await asyncio.gather(*tasks)
    finally:
        watchdog.cancel()
    stats["corpus"] = len(bodies)
    return stats


# ---------------------------------------------------------------------------- the broker child


class ErrorCounter(logging.Handler):
    """Counts log records at ERROR or carrying a traceback; keeps the first few."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.count += 1
            if len(self.first) < 5:
                self.first.append(self.format(record))


async def _serve() -> None:
    from aioshare.broker.embedded import EmbeddedBroker

    counter = ErrorCounter()
    counter.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(counter)
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("aioshare").setLevel(logging.WARNING)
    # Warnings about closed connections are expected by the million; keep them off stderr.
    logging.getLogger().handlers[:] = [counter]
    async with EmbeddedBroker() as broker:
        await broker.create_topic("fuzz", partitions=1)
        host, port = broker.address(broker.node_ids[0])
        print(json.dumps({"host": host, "port": port, "versions": broker.registry.versions()}), flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    print(json.dumps({"tracebacks": counter.count, "first": counter.first}), flush=True)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--max-rss-mb", type=float, default=300.0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.serve:
        asyncio.run(_serve())
        return 0
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.fuzz_broker", "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    hello = json.loads(child.stdout.readline())
    versions = {int(k): (v[0], v[1]) for k, v in hello["versions"].items()}
    before = rss_mb(child.pid)
    peak = before

    async def run() -> dict[str, int]:
        nonlocal peak

        async def sample() -> None:
            nonlocal peak
            while True:
                peak = max(peak, rss_mb(child.pid))
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample())
        try:
            return await fuzz(
                hello["host"],
                hello["port"],
                versions,
                frames=args.frames,
                seed=args.seed,
                connections=args.connections,
                progress=10.0,
            )
        finally:
            sampler.cancel()

    started = time.monotonic()
    stats = asyncio.run(run())
    elapsed = time.monotonic() - started
    time.sleep(1.0)
    after = rss_mb(child.pid)
    child.stdin.close()
    report = json.loads(child.stdout.readline())
    child.wait(30)
    print(f"corpus: {stats['corpus']} valid requests over {len(versions)} API keys")
    print(
        f"frames: {stats['sent']} in {elapsed:.1f}s = {stats['sent'] / elapsed:.0f} frames/s; "
        f"answered {stats['answered']}, connection closed {stats['closed']}, timeouts {stats['timeouts']}, "
        f"connections {stats['connections']}"
    )
    print(f"broker RSS: before {before:.0f} MB, peak during {peak:.0f} MB, after {after:.0f} MB")
    print(f"broker tracebacks/ERROR records: {report['tracebacks']}")
    for text in report["first"]:
        print("  ", text.replace("\n", "\n   "))
    return 0 if report["tracebacks"] == 0 and peak <= args.max_rss_mb else 1


if __name__ == "__main__":
    sys.exit(main())
