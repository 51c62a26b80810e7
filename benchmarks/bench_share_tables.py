"""The share layer's two per-record tables on their own, in process: the LeaseTable (held
records, aioshare/share/leases.py) and the AckBook (recorded acks, aioshare/share/acks.py).

Each case prints its wall time and ns per operation: leases added in ranges and settled in
order and at random, every other record renewed and the rest expired, acks recorded in order
(one batch) and in random order with mixed types (the fragmented worst case).  The consumer's
end-to-end cost is benchmarks.bench_consumer's; the share core per record bench_share_core's.

Run: `python -m benchmarks share_tables`.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable

from aioshare.protocol.types import AckType, TopicIdPartition
from aioshare.share.acks import AckBook
from aioshare.share.leases import LeaseTable

TPS = [TopicIdPartition(uuid.UUID(int=i + 1), p) for i in range(10) for p in range(10)]


def bench(name: str, n: int, fn: Callable[[], object]) -> None:
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    print(f"{name:55s} {dt * 1e3:9.2f} ms  {dt / n * 1e9:9.0f} ns/op")


def leases_in_order(n_ranges: int = 200, size: int = 500) -> None:
    table = LeaseTable()

    def run() -> None:
        for i in range(n_ranges):
            table.add_acquired(
                TPS[i % len(TPS)], (i // len(TPS)) * size, (i // len(TPS)) * size + size - 1, 1, i
            )
        for tp in TPS:
            for r in table.ranges(tp):
                for o in range(r.first, r.last + 1):
                    table.settle(tp, o)

    bench(f"LeaseTable add {n_ranges}x{size} + settle in order", n_ranges * size, run)


def leases_random(n_ranges: int = 200, size: int = 500) -> None:
    table = LeaseTable()
    for i in range(n_ranges):
        table.add_acquired(TPS[i % len(TPS)], (i // len(TPS)) * size, (i // len(TPS)) * size + size - 1, 1, i)
    keys = [(r.tp, o) for r in table.ranges() for o in range(r.first, r.last + 1)]
    random.Random(1).shuffle(keys)

    def run() -> None:
        for tp, o in keys:
            table.settle(tp, o)

    bench(f"LeaseTable settle {len(keys)} in random order", len(keys), run)


def leases_renew_expire(n: int = 100_000) -> None:
    table = LeaseTable()
    tp = TPS[0]
    table.add_acquired(tp, 0, n - 1, 1, 30.0)

    def run() -> None:
        for o in range(0, n, 2):
            table.renew(tp, o, 60.0)
        table.expire(30.0)
        table.expire(60.0)

    bench(f"LeaseTable renew every other of {n} + expire", n // 2, run)


def acks_in_order(n: int = 100_000) -> None:
    book: AckBook[None] = AckBook()
    tp = TPS[0]

    def run() -> None:
        for o in range(n):
            book.record(tp, o, AckType.ACCEPT)
        snap = book.take()
        assert snap is not None and len(snap.batches[tp]) == 1
        book.complete(snap, {tp: 0})

    bench(f"AckBook record {n} ACCEPT in order + take", n, run)


def acks_mixed(n: int = 100_000) -> None:
    book: AckBook[None] = AckBook()
    tp = TPS[0]
    rnd = random.Random(2)
    types = [rnd.choice([AckType.ACCEPT, AckType.ACCEPT, AckType.ACCEPT, AckType.RELEASE]) for _ in range(n)]
    order = list(range(n))
    rnd.shuffle(order)

    def run() -> None:
        for o in order:
            book.record(tp, o, types[o])
        book.take()

    bench(f"AckBook record {n} mixed types in random order + take", n, run)


def main() -> None:
    leases_in_order()
    leases_random()
    leases_renew_expire()
    acks_in_order()
    acks_mixed()


if __name__ == "__main__":
    main()
