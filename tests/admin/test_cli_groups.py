"""`aioshare groups ...` on the embedded broker (the scene of scene.py): output, exit codes,
error messages, and what each command changed.

main() runs its own event loop, so it runs in a worker thread; the broker serves from its own.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from aioshare.admin import ConfigSource
from aioshare.cli.main import main
from aioshare.testing import ThreadedBroker

from .scene import (
    IDLE,
    IDLE_OFFSETS,
    LOG_END,
    LOG_START,
    MEMBER_CLIENT_ID,
    TOPIC,
    WORKERS,
    Scene,
    setup_admin,
    stamp,
    stop_leader_of_partition_1,
)


async def run(broker: ThreadedBroker, *args: str) -> int:
    return await asyncio.to_thread(
        main, ["groups", *args, "--bootstrap-server", broker.bootstrap_servers, "--timeout", "10"]
    )


def lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


async def start_offsets(scene: Scene, group: str = IDLE) -> dict[int, int]:
    return {tp.partition: info.start_offset for tp, info in (await scene.offsets(group)).items()}


async def test_list(scene: Scene, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(scene.broker, "list") == 0
    assert lines(capsys.readouterr().out) == [["GROUP", "STATE"], [IDLE, "Empty"], [WORKERS, "Stable"]]


async def test_list_empty(broker: ThreadedBroker, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(broker, "list") == 0
    assert capsys.readouterr().out == "No share groups.\n"


async def test_describe(scene: Scene, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(scene.broker, "describe", WORKERS) == 0
    out = capsys.readouterr().out
    assert "State:            Stable" in out
    assert "Assignor:         simple" in out
    assert "Members:          1" in out
    member = scene.member
    row = [
        member.member_id,
        MEMBER_CLIENT_ID,
        "/127.0.0.1",
        str(member.member_epoch),
        TOPIC,
        f"{TOPIC}:0,1,2",
    ]
    assert row in lines(out)


async def test_describe_empty_group(scene: Scene, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(scene.broker, "describe", IDLE) == 0
    out = capsys.readouterr().out
    assert "State:            Empty" in out and "Members:          0" in out
    assert "MEMBER-ID" not in out  # no member table


async def test_describe_unknown_group(scene: Scene, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(scene.broker, "describe", "nope") == 1
    err = capsys.readouterr().err
    assert "group 'nope'" in err and "GROUP_ID_NOT_FOUND" in err


async def test_offsets(scene: Scene, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(scene.broker, "offsets", IDLE) == 0
    assert lines(capsys.readouterr().out) == [
        ["TOPIC", "PARTITION", "START-OFFSET", "LAG", "LEADER-EPOCH", "ERROR"],
        *([TOPIC, str(p), str(offset), str(LOG_END - offset), "0"] for p, offset in IDLE_OFFSETS.items()),
    ]


async def test_offsets_undecided_print_dashes(scene: Scene, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(scene.broker, "offsets", WORKERS) == 0
    rows = lines(capsys.readouterr().out)[1:]
    assert rows == [[TOPIC, str(p), "-", "-", "0"] for p in range(3)]


async def test_offsets_of_unknown_group(scene: Scene, capsys: pytest.CaptureFixture[str]) -> None:
    # DescribeShareGroupOffsets has no error for it; the CLI describes the group to tell.
    assert await run(scene.broker, "offsets", "nope") == 1
    assert "GROUP_ID_NOT_FOUND" in capsys.readouterr().err


async def test_offsets_with_partition_errors_exit_1(scene: Scene, capsys: pytest.CaptureFixture[str]) -> None:
    # The leader of jobs-1, its one replica, stops: Kafka cannot look up the log end for the
    # lag, and that partition's row carries LEADER_NOT_AVAILABLE
    # (GroupCoordinatorService.computeShareGroupLagAndBuildResponse).
    await scene.broker.acall(stop_leader_of_partition_1)
    assert await run(scene.broker, "offsets", IDLE, "--topic", TOPIC) == 1
    captured = capsys.readouterr()
    rows = {row[1]: row for row in lines(captured.out)[1:]}
    # No offsets for it: the row's numbers would be the schema's defaults, not the group's.
    assert rows["1"] == [TOPIC, "1", "-", "-", "-", "LEADER_NOT_AVAILABLE"]
    assert rows["0"] == [TOPIC, "0", str(IDLE_OFFSETS[0]), str(LOG_END - IDLE_OFFSETS[0]), "0"]
    assert f"{TOPIC}-1: LEADER_NOT_AVAILABLE" in captured.err


async def test_reset_to_earliest(scene: Scene, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(scene.broker, "reset", IDLE, "--topic", TOPIC, "--to", "earliest") == 0
    assert lines(capsys.readouterr().out) == [
        ["TOPIC", "PARTITION", "NEW-START-OFFSET", "ERROR"],
        *([TOPIC, str(p), str(LOG_START)] for p in range(3)),
    ]
    assert await start_offsets(scene) == dict.fromkeys(range(3), LOG_START)


async def test_reset_to_an_offset_on_one_partition(scene: Scene) -> None:
    assert await run(scene.broker, "reset", IDLE, "--topic", TOPIC, "--to", "12", "--partition", "1") == 0
    assert await start_offsets(scene) == {**IDLE_OFFSETS, 1: 12}


async def test_reset_to_an_offset_on_every_partition(scene: Scene) -> None:
    assert await run(scene.broker, "reset", IDLE, "--topic", TOPIC, "--to", "12") == 0
    assert await start_offsets(scene) == dict.fromkeys(range(3), 12)


async def test_reset_to_an_offset_outside_the_log(scene: Scene, capsys: pytest.CaptureFixture[str]) -> None:
    # Moved into the log, as kafka-share-groups --to-offset does, and said so.
    assert await run(scene.broker, "reset", IDLE, "--topic", TOPIC, "--to", "1000", "--partition", "0") == 0
    assert f"offset 1000 is past the log end of {TOPIC}-0: using {LOG_END}." in capsys.readouterr().err
    assert await run(scene.broker, "reset", IDLE, "--topic", TOPIC, "--to", "2", "--partition", "1") == 0
    assert f"offset 2 is before the log start of {TOPIC}-1: using {LOG_START}." in capsys.readouterr().err
    assert await start_offsets(scene) == {**IDLE_OFFSETS, 0: LOG_END, 1: LOG_START}


async def test_reset_to_a_datetime(scene: Scene) -> None:
    to = stamp(11).isoformat()  # record 11 carries exactly this time
    assert await run(scene.broker, "reset", IDLE, "--topic", TOPIC, "--to", to, "--partition", "0") == 0
    assert await start_offsets(scene) == {**IDLE_OFFSETS, 0: 11}


async def test_reset_non_empty_group(scene: Scene, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(scene.broker, "reset", WORKERS, "--topic", TOPIC, "--to", "latest") == 1
    err = capsys.readouterr().err
    assert "NON_EMPTY_GROUP" in err and "stop the group's consumers first" in err
    assert await start_offsets(scene, WORKERS) == dict.fromkeys(range(3), -1)


async def test_reset_bad_target(broker: ThreadedBroker, capsys: pytest.CaptureFixture[str]) -> None:
    # A usage error: argparse's exit status 2, before anything is sent.
    with pytest.raises(SystemExit) as info:
        await run(broker, "reset", IDLE, "--topic", TOPIC, "--to", "soon")
    assert info.value.code == 2
    assert "expected earliest, latest, an offset or an ISO-8601 datetime" in capsys.readouterr().err


async def test_delete(scene: Scene, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(scene.broker, "delete", IDLE, WORKERS) == 1
    captured = capsys.readouterr()
    assert captured.out == f"Deleted share group {IDLE!r}.\n"
    assert f"group {WORKERS!r}" in captured.err and "NON_EMPTY_GROUP" in captured.err
    assert await run(scene.broker, "list") == 0
    assert lines(capsys.readouterr().out) == [["GROUP", "STATE"], [WORKERS, "Stable"]]


async def test_config_show_set_delete(broker: ThreadedBroker, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(broker, "config", WORKERS) == 0
    assert ["share.auto.offset.reset", "latest", "DEFAULT_CONFIG"] in lines(capsys.readouterr().out)
    set_args = ["--set", "share.auto.offset.reset=earliest", "--set", "share.isolation.level=read_committed"]
    assert await run(broker, "config", WORKERS, *set_args) == 0
    assert capsys.readouterr().out == f"Updated configs of group {WORKERS!r}.\n"
    assert await run(broker, "config", WORKERS) == 0
    shown = lines(capsys.readouterr().out)
    assert ["share.isolation.level", "read_committed", "GROUP_CONFIG"] in shown
    assert await run(broker, "config", WORKERS, "--delete", "share.isolation.level") == 0
    async with setup_admin(broker) as admin:
        entries = await admin.describe_group_config(WORKERS)
    assert {e.name: e.value for e in entries.values() if e.source == ConfigSource.GROUP_CONFIG} == {
        "share.auto.offset.reset": "earliest"
    }


async def test_config_invalid(broker: ThreadedBroker, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(broker, "config", WORKERS, "--set", "share.auto.offset.reset=sideways") == 1
    assert "INVALID_CONFIG" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        await run(broker, "config", WORKERS, "--set", "no-equals-sign")
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
