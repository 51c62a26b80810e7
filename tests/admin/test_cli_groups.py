"""`aioshare groups ...` against the admin fake: output, exit codes and error messages.

main() runs its own event loop, so it runs in a thread while the fake serves on the test's loop.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from aioshare.cli.main import main

from .fakes import AdminFake, FakeMember, FakeShareGroup


@pytest.fixture
async def fake() -> AsyncIterator[AdminFake]:
    async with AdminFake() as cluster:
        cluster.add_topic("jobs", {0: 1, 1: 2}, start=5, end=100)
        cluster.groups["workers"] = FakeShareGroup(
            members=[FakeMember("m-1", ["jobs"], {"jobs": [0, 1]}, client_id="worker-a")],
            offsets={("jobs", 0): (7, 93), ("jobs", 1): (40, 60)},
        )
        cluster.groups["idle"] = FakeShareGroup(offsets={("jobs", 0): (0, 100)}, lister=2)
        yield cluster


async def run(fake: AdminFake, *args: str) -> int:
    return await asyncio.to_thread(
        main, ["groups", *args, "--bootstrap-server", fake.bootstrap, "--timeout", "5"]
    )


def lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


async def test_list(fake: AdminFake, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(fake, "list") == 0
    assert lines(capsys.readouterr().out) == [["GROUP", "STATE"], ["idle", "Empty"], ["workers", "Stable"]]


async def test_list_empty(capsys: pytest.CaptureFixture[str]) -> None:
    async with AdminFake() as fake:
        assert await run(fake, "list") == 0
    assert capsys.readouterr().out == "No share groups.\n"


async def test_describe(fake: AdminFake, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(fake, "describe", "workers") == 0
    out = capsys.readouterr().out
    assert "State:            Stable" in out
    assert "Assignor:         simple" in out
    assert ["m-1", "worker-a", "/127.0.0.1", "3", "jobs", "jobs:0,1"] in lines(out)


async def test_describe_unknown_group(fake: AdminFake, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(fake, "describe", "nope") == 1
    err = capsys.readouterr().err
    assert "group 'nope'" in err and "GROUP_ID_NOT_FOUND" in err


async def test_offsets(fake: AdminFake, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(fake, "offsets", "workers") == 0
    assert lines(capsys.readouterr().out) == [
        ["TOPIC", "PARTITION", "START-OFFSET", "LAG", "LEADER-EPOCH", "ERROR"],
        ["jobs", "0", "7", "93", "0"],
        ["jobs", "1", "40", "60", "0"],
    ]


async def test_offsets_with_partition_errors_exit_1(
    fake: AdminFake, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run(fake, "offsets", "idle", "--topic", "jobs") == 1
    captured = capsys.readouterr()
    assert ["jobs", "1", "-", "-", "-", "UNKNOWN_TOPIC_OR_PARTITION"] in lines(captured.out)
    assert "jobs-1: UNKNOWN_TOPIC_OR_PARTITION" in captured.err


async def test_reset_to_earliest(fake: AdminFake, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(fake, "reset", "idle", "--topic", "jobs", "--to", "earliest") == 0
    assert lines(capsys.readouterr().out) == [
        ["TOPIC", "PARTITION", "NEW-START-OFFSET", "ERROR"],
        ["jobs", "0", "5"],
        ["jobs", "1", "5"],
    ]
    assert fake.groups["idle"].offsets[("jobs", 1)] == (5, 95)


async def test_reset_to_an_offset_on_one_partition(
    fake: AdminFake, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run(fake, "reset", "idle", "--topic", "jobs", "--to", "42", "--partition", "1") == 0
    assert fake.groups["idle"].offsets[("jobs", 1)] == (42, 58)
    assert ("jobs", 0) in fake.groups["idle"].offsets and fake.groups["idle"].offsets[("jobs", 0)][0] == 0


async def test_reset_to_an_offset_on_every_partition(fake: AdminFake) -> None:
    assert await run(fake, "reset", "idle", "--topic", "jobs", "--to", "42") == 0
    assert {k: v[0] for k, v in fake.groups["idle"].offsets.items()} == {("jobs", 0): 42, ("jobs", 1): 42}


async def test_reset_to_a_datetime(fake: AdminFake) -> None:
    fake.logs[("jobs", 0)].timestamps = [(1_000, 11), (5_000, 50)]
    to = "1970-01-01T00:00:02+00:00"
    assert await run(fake, "reset", "idle", "--topic", "jobs", "--to", to, "--partition", "0") == 0
    assert fake.groups["idle"].offsets[("jobs", 0)][0] == 50


async def test_reset_non_empty_group(fake: AdminFake, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(fake, "reset", "workers", "--topic", "jobs", "--to", "latest") == 1
    err = capsys.readouterr().err
    assert "NON_EMPTY_GROUP" in err and "stop the group's consumers first" in err


async def test_reset_bad_target(fake: AdminFake, capsys: pytest.CaptureFixture[str]) -> None:
    # A usage error: argparse's exit status 2, before anything is sent.
    with pytest.raises(SystemExit) as info:
        await run(fake, "reset", "idle", "--topic", "jobs", "--to", "soon")
    assert info.value.code == 2
    assert "expected earliest, latest, an offset or an ISO-8601 datetime" in capsys.readouterr().err


async def test_delete(fake: AdminFake, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(fake, "delete", "idle", "workers") == 1
    captured = capsys.readouterr()
    assert captured.out == "Deleted share group 'idle'.\n"
    assert "group 'workers'" in captured.err and "NON_EMPTY_GROUP" in captured.err
    assert set(fake.groups) == {"workers"}


async def test_config_show_set_delete(fake: AdminFake, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(fake, "config", "workers") == 0
    assert ["share.auto.offset.reset", "latest", "DEFAULT_CONFIG"] in lines(capsys.readouterr().out)
    set_args = ["--set", "share.auto.offset.reset=earliest", "--set", "share.isolation.level=read_committed"]
    assert await run(fake, "config", "workers", *set_args) == 0
    assert capsys.readouterr().out == "Updated configs of group 'workers'.\n"
    assert await run(fake, "config", "workers", "--delete", "share.isolation.level") == 0
    assert fake.group_configs["workers"] == {"share.auto.offset.reset": "earliest"}


async def test_config_invalid(fake: AdminFake, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(fake, "config", "workers", "--set", "share.auto.offset.reset=sideways") == 1
    assert "INVALID_CONFIG" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        await run(fake, "config", "workers", "--set", "no-equals-sign")
    assert info.value.code == 2
    assert "argument --set: expected KEY=VALUE" in capsys.readouterr().err


async def test_unreachable_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"
    code = await asyncio.to_thread(main, ["groups", "list", "--bootstrap-server", dead, "--timeout", "1"])
    assert code == 1
    assert "aioshare groups: error:" in capsys.readouterr().err


def test_groups_needs_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["groups"])
    assert info.value.code == 2
