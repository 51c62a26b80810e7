"""CRC-32C of record batches: the accelerated implementation (the [crc32c] extra) and the
portable fallback (aiokafka's) agree; the test extra installs the accelerated one."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aioshare.protocol import crc
from aioshare.protocol.records import RecordToWrite, encode_batch, iter_batches


def test_the_check_value_of_crc32c() -> None:
    # The CRC catalogue's check value for CRC-32/ISCSI (Castagnoli): the input "123456789".
    assert crc.crc32c(b"123456789") == crc.portable_crc32c(b"123456789") == 0xE3069283


@given(st.binary(max_size=4096), st.integers(0, 64))
def test_both_implementations_agree_on_any_bytes_and_slices(data: bytes, cut: int) -> None:
    view = memoryview(data)[min(cut, len(data)) :]
    assert crc.crc32c(view) == crc.portable_crc32c(view)
    assert crc.crc32c(bytearray(data)) == crc.portable_crc32c(data)


def test_a_batch_checked_with_one_verifies_with_the_other() -> None:
    raw = encode_batch([RecordToWrite(b"k", b"v" * 1000) for _ in range(20)], base_offset=7)
    [batch] = list(iter_batches(raw))
    batch.validate()
    assert batch.crc == crc.portable_crc32c(memoryview(raw)[21:])  # from Attributes on


def test_the_test_run_has_the_accelerated_one() -> None:
    # A benchmark or CI run on the fallback would measure (and hide) the slow path.
    if not os.environ.get("CI"):
        if not crc.ACCELERATED:
            pytest.skip("the crc32c package is not installed: `make test` installs the test extra")
    assert crc.ACCELERATED
