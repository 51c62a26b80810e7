"""unpack_partition (sans-IO): what a ShareFetch partition delivers, and how the offsets without a
deliverable record are settled - GAP, RELEASE, or REJECT for a batch that fails its checks."""

from __future__ import annotations

import pytest

from aioshare.protocol import records as records_module
from aioshare.protocol.errors import CorruptRecordError, UnsupportedCompressionTypeError
from aioshare.protocol.records import Compression, RecordToWrite, encode_batch
from aioshare.share.delivery import Acquired, Delivery, unpack_partition


def batch(first: int, n: int, compression: Compression = Compression.NONE) -> bytes:
    return encode_batch(
        [RecordToWrite(None, f"v{first + i}".encode() * 20) for i in range(n)],
        base_offset=first,
        compression=compression,
    )


def corrupt(data: bytes) -> bytes:
    """The batch with one byte of its records flipped: its CRC no longer matches."""
    broken = bytearray(data)
    broken[-3] ^= 0xFF
    return bytes(broken)


def offsets(delivery: Delivery) -> list[int]:
    return [rec[0] for rec, _ in delivery.records]


def test_every_acquired_record_of_good_batches_is_delivered() -> None:
    data = batch(0, 3) + batch(3, 3)
    out = unpack_partition(data, [Acquired(0, 5, 1)])
    assert offsets(out) == [0, 1, 2, 3, 4, 5]
    assert (out.gaps, out.releases, out.rejects, out.corrupt) == ([], [], [], None)


def test_a_batch_failing_its_crc_is_rejected_and_the_next_batches_are_delivered() -> None:
    data = batch(0, 3) + corrupt(batch(3, 3)) + batch(6, 3)
    out = unpack_partition(data, [Acquired(0, 8, 2)])
    assert offsets(out) == [0, 1, 2, 6, 7, 8]
    assert out.rejects == [(3, 5)]
    assert out.gaps == [] and out.releases == []
    assert isinstance(out.corrupt, CorruptRecordError)


def test_only_the_acquired_offsets_of_a_corrupt_batch_are_rejected() -> None:
    data = corrupt(batch(0, 6))
    out = unpack_partition(data, [Acquired(1, 2, 1), Acquired(4, 4, 1)])
    assert offsets(out) == []
    assert out.rejects == [(1, 2), (4, 4)]
    assert out.gaps == [] and out.releases == []


def test_broken_framing_keeps_what_came_before_and_releases_the_rest() -> None:
    data = batch(0, 3) + batch(3, 3)[:20]  # a batch header cut short
    out = unpack_partition(data, [Acquired(0, 5, 1)])
    assert offsets(out) == [0, 1, 2]
    assert out.releases == [(3, 5)] and out.rejects == []


def test_a_batch_without_a_codec_here_is_not_the_datas_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    data = batch(0, 3, Compression.ZSTD)
    monkeypatch.setitem(records_module._CODEC_CHECKS, Compression.ZSTD, lambda: False)
    with pytest.raises(UnsupportedCompressionTypeError):
        unpack_partition(data, [Acquired(0, 2, 1)])
