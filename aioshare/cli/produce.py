"""`aioshare produce TOPIC`: put a few records on a topic, for trying things out.

    printf 'a\\nb\\n' | aioshare produce jobs            # one record per line of stdin
    aioshare produce jobs --count 100 --key k1           # 100 generated values: message-0 ...
    aioshare produce jobs --count 3 --partition 1 --header source=cli --header try=1

Records are sent with aiokafka's producer (acks=all); the command then prints how many were
produced and where (partition and offset range).  The topic must exist: unlike a plain
producer, this command never has it auto-created.  Exit status 0 on success, 1 when Kafka
reports an error or cannot be reached (one line on stderr), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator

from aioshare.cli._admin import fail

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from aioshare.cli.main import add_bootstrap_argument, config_pair

    parser = commands.add_parser(
        "produce", help="produce records to a topic: lines of stdin, or --count generated values"
    )
    parser.add_argument("topic", help="an existing topic")
    add_bootstrap_argument(parser)
    parser.add_argument(
        "--count",
        type=int,
        default=None,
        help="produce this many generated values (message-0, message-1, ...) instead of reading stdin",
    )
    parser.add_argument("--key", default=None, help="every record's key (default: none)")
    parser.add_argument(
        "--partition", type=int, default=None, help="produce to this partition (default: the partitioner's)"
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        type=config_pair,
        metavar="KEY=VALUE",
        help="a header on every record (repeatable)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request, retries included")


def run(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 0:
        return _fail("--count must be >= 0", status=2)
    if args.partition is not None and args.partition < 0:
        return _fail("--partition must be >= 0", status=2)
    if args.timeout <= 0:
        return _fail("--timeout must be > 0", status=2)
    headers = [(k.strip(), v.encode()) for k, _, v in (h.partition("=") for h in args.header)]
    values = _generated(args.count) if args.count is not None else _stdin_lines()
    from aioshare.cli._admin import describe_error
    from aioshare.protocol.errors import ConfigError, KafkaError

    try:
        where = asyncio.run(_produce(args, values, headers))
    except ConfigError as exc:
        return _fail(str(exc), status=2)
    except _Refused as exc:
        return _fail(str(exc))
    except Exception as exc:  # aiokafka's errors, ours, OSError: one line, no traceback
        if not isinstance(exc, KafkaError | OSError | TimeoutError) and not _is_aiokafka(exc):
            raise
        return _fail(describe_error(_unwrap(exc), args.bootstrap_server))
    total = sum(len(offsets) for offsets in where.values())
    noun = "record" if total == 1 else "records"
    if not total:
        print(f"Produced 0 records to {args.topic}.")
        return 0
    ranges = ", ".join(
        f"partition {p} offset{'s' if len(o) > 1 else ''} {_range(o)}" for p, o in sorted(where.items())
    )
    print(f"Produced {total} {noun} to {args.topic}: {ranges}.")
    return 0


class _Refused(Exception):
    """A check before producing failed (unknown topic, no such partition)."""


async def _produce(
    args: argparse.Namespace, values: Iterator[bytes], headers: list[tuple[str, bytes]]
) -> dict[int, list[int]]:
    from aiokafka import AIOKafkaProducer

    from aioshare.admin import ShareAdmin

    # Check the topic first: a producer's metadata request would have the broker auto-create it.
    async with ShareAdmin(args.bootstrap_server, request_timeout=args.timeout) as admin:
        topics = {t.name: t.partitions for t in await admin.list_topics(include_internal=True)}
    if args.topic not in topics:
        raise _Refused(f"unknown topic {args.topic!r} (create it with: aioshare topics create {args.topic})")
    if args.partition is not None and args.partition >= topics[args.topic]:
        raise _Refused(
            f"topic {args.topic!r} has {topics[args.topic]} partition(s): no partition {args.partition}"
        )
    timeout_ms = int(args.timeout * 1000)
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap_server,
        acks="all",
        linger_ms=5,
        request_timeout_ms=timeout_ms,
        client_id="aioshare-produce",
    )
    await producer.start()
    try:
        key = args.key.encode() if args.key is not None else None
        futures = [
            await producer.send(args.topic, value, key=key, partition=args.partition, headers=headers)
            for value in values
        ]
        where: dict[int, list[int]] = {}
        for future in futures:
            metadata = await future
            where.setdefault(metadata.partition, []).append(metadata.offset)
        return where
    finally:
        await producer.stop()


def _generated(count: int) -> Iterator[bytes]:
    return (f"message-{i}".encode() for i in range(count))


def _stdin_lines() -> Iterator[bytes]:
    for line in sys.stdin.buffer:
        yield line.rstrip(b"\r\n")


def _range(offsets: list[int]) -> str:
    low, high = min(offsets), max(offsets)
    return str(low) if low == high else f"{low}-{high}"


def _is_aiokafka(exc: BaseException) -> bool:
    from aiokafka.errors import KafkaError as AIOKafkaError

    return isinstance(exc, AIOKafkaError)


def _unwrap(exc: BaseException) -> BaseException:
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

    if isinstance(exc, KafkaConnectionError | KafkaTimeoutError):
        return TimeoutError(str(exc) or type(exc).__name__)  # reported as "cannot reach Kafka"
    return exc


def _fail(message: str, status: int = 1) -> int:
    return fail("produce", message, status)
