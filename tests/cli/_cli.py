"""Runs the real `aioshare` CLI in a subprocess, as a user would."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from aioshare.testing.broker import ThreadedBroker


def aioshare(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aioshare.cli.main", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def dead_address() -> str:
    """An address nothing listens on (a port bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def assert_one_line_error(result: subprocess.CompletedProcess[str], status: int, *fragments: str) -> None:
    assert result.returncode == status, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.fixture(scope="module")
def broker() -> Iterator[ThreadedBroker]:
    with ThreadedBroker() as started:
        yield started


BROKER_ANNOUNCE = "aioshare broker listening on "


async def start_cli_broker(
    *args: str,
    timeout: float = 30,  # noqa: ASYNC109
    stderr: int = asyncio.subprocess.PIPE,
) -> tuple[asyncio.subprocess.Process, str]:
    """`aioshare broker --port 0 ARGS` in a child process, and the first line it printed (the
    announce line once it serves; "" if it exited first).  The caller stops the process, and
    reads its stderr if it keeps the default PIPE (or passes DEVNULL for a long run)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aioshare.cli.main",
        "broker",
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(timeout):
            line = (await process.stdout.readline()).decode()
    except BaseException:
        process.kill()
        await process.wait()
        raise
    return process, line


def announced_addresses(line: str) -> list[tuple[str, int]]:
    """The host:port pairs of a broker's announce line."""
    assert line.startswith(BROKER_ANNOUNCE), line
    addresses = []
    for address in line[len(BROKER_ANNOUNCE) :].strip().split(","):
        host, _, port = address.rpartition(":")
        addresses.append((host, int(port)))
    return addresses
