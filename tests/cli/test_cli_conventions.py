"""Conventions every `aioshare` subcommand shares: -b/--bootstrap-server, --version, help with
defaults, exit status 2 for usage and configuration errors and 1 for runtime failures."""

from __future__ import annotations

import argparse
import importlib.metadata

import pytest

from aioshare.cli.main import build_parser
from aioshare.testing.broker import ThreadedBroker

from ._cli import aioshare, assert_one_line_error, dead_address

SPELLINGS = ["-b", "--bootstrap-server", "--bootstrap-servers"]


def test_version() -> None:
    result = aioshare("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"aioshare {importlib.metadata.version('aioshare')}"


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_every_spelling_of_the_bootstrap_option(broker: ThreadedBroker, spelling: str) -> None:
    servers = broker.bootstrap_servers
    topic = f"conventions{SPELLINGS.index(spelling)}"
    created = aioshare("topics", "create", topic, spelling, servers)
    assert created.returncode == 0, created.stderr
    listed = aioshare("topics", "list", spelling, servers)
    assert listed.returncode == 0 and topic in listed.stdout, listed.stderr
    produced = aioshare("produce", topic, "--count", "2", spelling, servers)
    assert produced.returncode == 0, produced.stderr
    groups = aioshare("groups", "list", spelling, servers)
    assert (groups.returncode, groups.stdout) == (0, "No share groups.\n"), groups.stderr


@pytest.mark.parametrize(
    "command",
    [["run", "app:app"], ["demo"], ["groups", "list"], ["topics", "list"], ["produce", "jobs"]],
)
def test_every_cluster_command_takes_the_same_option(command: list[str]) -> None:
    for spelling in SPELLINGS:
        args = build_parser().parse_args([*command, spelling, "kafka:9092"])
        assert "kafka:9092" in vars(args).values()
    usage = aioshare(*command, "--help").stdout
    assert "-b HOST:PORT[,...], --bootstrap-server HOST:PORT[,...], --bootstrap-servers" in usage


def test_run_takes_the_old_spelling() -> None:
    # `run -b/--bootstrap-servers` worked before: it still does (here: the module is missing).
    result = aioshare("run", "no_such_module_here:app", "--bootstrap-servers", dead_address())
    assert result.returncode == 2
    assert "no_such_module_here" in result.stderr


def _parsers(
    parser: argparse.ArgumentParser, path: str = "aioshare"
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _parsers(sub, f"{path} {name}")
    return found


def test_every_option_has_help_and_shows_its_default() -> None:
    for path, parser in _parsers(build_parser()):
        text = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                continue
            assert action.help, f"{path} {action.dest}: no help text"
            if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS):
                assert f"(default: {action.default})" in " ".join(text.split()), f"{path} {action.dest}"


def test_help_through_the_cli_shows_defaults() -> None:
    broker_help = " ".join(aioshare("broker", "--help").stdout.split())
    for expected in ["(default: 127.0.0.1)", "(default: 9092)", "(default: 1)", "(default: in memory)"]:
        assert expected in broker_help
    demo_help = " ".join(aioshare("demo", "--help").stdout.split())
    assert "--seed SEED seed of the job mix (default: 7)" in demo_help
    assert (
        "--crash-jobs CRASH_JOBS jobs the fifth member takes before it is frozen with SIGSTOP (0: no frozen member) (default: 20)"
        in demo_help
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["broker", "--port", "0", "--config", "bogus"],
            "argument --config: expected KEY=VALUE, got 'bogus'",
        ),
        (["broker", "--port", "0", "--config", "=1"], "argument --config: expected KEY=VALUE"),
        (["kafka", "start", "--config", "bogus"], "argument --config: expected KEY=VALUE"),
        (["run", "app:app", "--broker-config", "bogus"], "argument --broker-config: expected KEY=VALUE"),
        (["topics", "create", "t", "--config", "bogus"], "argument --config: expected KEY=VALUE"),
        (["groups", "config", "g", "--set", "bogus"], "argument --set: expected KEY=VALUE"),
        (["groups", "reset", "g", "--topic", "t", "--to", "soon"], "expected earliest, latest"),
        (["produce", "t", "--header", "bogus"], "argument --header: expected KEY=VALUE"),
        (["produce", "t", "--count", "-1"], "--count must be >= 0"),
        (["topics", "create", "t", "--partitions", "0"], "--partitions and --replication-factor"),
        (["broker", "--no-such-option"], "unrecognized arguments"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = aioshare(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_broker_config_exits_2() -> None:
    result = aioshare("broker", "--port", "0", "--config", "no.such.key=1")
    assert result.returncode == 2
    assert "no.such.key" in result.stderr


@pytest.mark.parametrize(
    "command", [["groups", "list"], ["topics", "list"], ["produce", "jobs", "--count", "1"]]
)
def test_no_broker_is_a_runtime_failure(command: list[str]) -> None:
    dead = dead_address()
    result = aioshare(*command, "-b", dead, "--timeout", "1")
    assert_one_line_error(result, 1, "error:", dead)
