"""One wording per Kafka error, hints for the usual causes, and `--timeout` on bootstrap.

The CLI cases run the real `aioshare` CLI in a subprocess against the embedded broker (the scene
of scene.py).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import pytest

from aioshare.admin import ShareAdmin
from aioshare.protocol.errors import (
    GroupIdNotFoundError,
    KafkaTimeoutError,
    NonEmptyGroupError,
    UnknownTopicOrPartitionError,
    error_for_code,
)

from .scene import WORKERS, Scene


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aioshare.cli.main",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_broker_error_wording() -> None:
    error = error_for_code(69, "Group g not found.")
    assert isinstance(error, GroupIdNotFoundError)
    assert str(error).startswith("GROUP_ID_NOT_FOUND (69): Group g not found. Hint: ")
    assert str(error.with_context("group 'g'")).startswith("group 'g': GROUP_ID_NOT_FOUND (69): ")
    assert "stop the group's consumers first" in str(NonEmptyGroupError())
    assert "Hint: the topic does not exist" in str(UnknownTopicOrPartitionError(context="topic 't'"))
    # No hint for the others, and the broker's message stays as sent.
    assert str(error_for_code(40, "bad value")) == "INVALID_CONFIG (40): bad value"


async def test_admin_and_cli_word_group_not_found_alike(scene: Scene) -> None:
    bootstrap = scene.broker.bootstrap_servers
    async with ShareAdmin(bootstrap, request_timeout=5) as admin:
        described = (await admin.describe_share_groups(["nope"]))["nope"]
        deleted = (await admin.delete_share_groups(["nope"]))["nope"]
    assert isinstance(described, GroupIdNotFoundError) and isinstance(deleted, GroupIdNotFoundError)
    assert str(described).startswith("group 'nope': GROUP_ID_NOT_FOUND (69): ")
    assert str(deleted).startswith("group 'nope': GROUP_ID_NOT_FOUND (69): ")
    for command in ("describe", "offsets", "delete"):
        code, _, err = await cli("groups", command, "nope", "--bootstrap-server", bootstrap, "--timeout", "5")
        assert code == 1, err
        assert err.startswith("aioshare groups: error: group 'nope': GROUP_ID_NOT_FOUND (69): "), err
        assert "Hint: no share group has this id" in err
        assert "Traceback" not in err


async def test_cli_delete_of_non_empty_group_hints(scene: Scene) -> None:
    code, _, err = await cli(
        "groups", "delete", WORKERS, "--bootstrap-server", scene.broker.bootstrap_servers, "--timeout", "5"
    )
    assert code == 1
    assert f"group {WORKERS!r}: NON_EMPTY_GROUP (68)" in err
    assert "stop the group's consumers first" in err


async def test_admin_bootstrap_honours_request_timeout() -> None:
    began = time.monotonic()
    with pytest.raises(KafkaTimeoutError, match=r"127\.0\.0\.1:1") as info:
        async with ShareAdmin("127.0.0.1:1", request_timeout=2, retry_backoff=0.05):
            pass
    took = time.monotonic() - began
    assert 1.6 <= took <= 6.0, took
    assert "within 2s" in str(info.value)


async def test_cli_groups_list_timeout_against_dead_address() -> None:
    began = time.monotonic()
    code, _, err = await cli("groups", "list", "--bootstrap-server", "127.0.0.1:1", "--timeout", "2")
    took = time.monotonic() - began
    assert code == 1
    assert 1.6 <= took <= 15.0, took  # the interpreter's start-up is in there too
    assert err.count("\n") == 1, err
    assert "no broker answered within 2s at 127.0.0.1:1" in err
    assert "Traceback" not in err
