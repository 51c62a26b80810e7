"""CRC-32C (Castagnoli), the checksum of Kafka's record batches.

The ``crc32c`` package (``pip install aioshare[crc32c]``) computes it with the CPU's CRC
instructions, about fifteen times faster than aiokafka's table-driven one, which is used
when it is not installed: with 1 KiB values the checksum was a fifth of the consumer's CPU
per record (docs/performance.md).  An optional extra, not a requirement, because the package
is LGPL-2.1 (aioshare is Apache-2.0) - the same choice kafka-python makes.
"""

from __future__ import annotations

from collections.abc import Callable

from aiokafka.record.util import calc_crc32c as _portable

__all__ = ["ACCELERATED", "crc32c", "portable_crc32c"]

portable_crc32c: Callable[[bytes | bytearray | memoryview], int] = _portable

try:
    # (mypyc type-checks the compiled modules in pip's isolated build environment, where
    # this optional package is absent; installed, it ships its own stubs)
    from crc32c import crc32c as _accelerated  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - the test extra installs it
    crc32c: Callable[[bytes | bytearray | memoryview], int] = _portable
    ACCELERATED = False
else:
    crc32c = _accelerated
    ACCELERATED = True
