"""The `aioshare` command line: `aioshare broker | run | demo | groups | topics | produce | kafka | web ...`.

Exit status: 0 on success, 1 for runtime failures (Kafka errors, no broker), 2 for usage and
configuration errors (argparse's own, malformed KEY=VALUE pairs, invalid configs).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every subcommand's help shows each option's default (none for flags and empty lists)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, []) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def config_pair(text: str) -> str:
    """argparse type of KEY=VALUE options: a malformed pair is a usage error (exit status 2)."""
    key, sep, _ = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return text


def add_bootstrap_argument(
    parser: argparse.ArgumentParser,
    default: str | None = DEFAULT_BOOTSTRAP,
    *,
    dest: str = "bootstrap_server",
    help: str = "the Kafka cluster to talk to",
) -> None:
    """Kafka's spelling, `-b/--bootstrap-server`, with `--bootstrap-servers` accepted as well."""
    parser.add_argument(
        "-b",
        "--bootstrap-server",
        "--bootstrap-servers",
        dest=dest,
        default=default,
        metavar="HOST:PORT[,...]",
        help=help,
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aioshare")
    except PackageNotFoundError:  # run from a source tree that is not installed
        from aioshare import __version__

        return __version__


def _use_formatter(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _use_formatter(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aioshare", description="Apache Kafka share groups for asyncio")
    parser.add_argument(
        "--version", action="version", version=f"aioshare {_version()}", help="print the version and exit"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    broker = commands.add_parser("broker", help="run an embedded Kafka-protocol broker in the foreground")
    broker.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    broker.add_argument("--port", type=int, default=9092, help="the first node's port; 0 picks a free one")
    broker.add_argument("--nodes", type=int, default=1, help="broker nodes, each on its own port")
    broker.add_argument(
        "--data-dir",
        default=None,
        help="keep logs, topics and share-group state in this directory, see docs/embedded-broker.md "
        "'Durability' (default: in memory)",
    )
    broker.add_argument(
        "--config",
        action="append",
        default=[],
        type=config_pair,
        metavar="KEY=VALUE",
        help="a Kafka broker config, e.g. group.share.record.lock.duration.ms=15000 (repeatable)",
    )
    from aioshare.broker.kafka_versions import KAFKA_VERSIONS, NEWEST

    broker.add_argument(
        "--kafka-version",
        default=None,
        metavar="X.Y",
        help=f"the Kafka release to answer like: {', '.join(KAFKA_VERSIONS)} (default: {NEWEST}, the newest)",
    )

    demo = commands.add_parser("demo", help="run the demo job on an embedded broker")
    from aioshare.cli.demo import add_arguments as add_demo_arguments

    add_demo_arguments(demo)

    from aioshare.cli.run import add_parser as add_run_parser

    add_run_parser(commands)

    from aioshare.cli.groups import add_parser as add_groups_parser

    add_groups_parser(commands)

    from aioshare.cli.kafka import add_parser as add_kafka_parser

    add_kafka_parser(commands)

    from aioshare.cli.topics import add_parser as add_topics_parser

    add_topics_parser(commands)

    from aioshare.cli.produce import add_parser as add_produce_parser

    add_produce_parser(commands)

    from aioshare.cli.web import add_parser as add_web_parser

    add_web_parser(commands)
    _use_formatter(parser)
    return parser


def parse_config_pairs(pairs: Sequence[str]) -> dict[str, str]:
    config: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            print(f"aioshare: error: --config expects KEY=VALUE, got {pair!r}", file=sys.stderr)
            raise SystemExit(2)
        config[key.strip()] = value.strip()
    return config


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "broker":
        from aioshare.cli.broker import run_broker

        return run_broker(
            args.host,
            args.port,
            args.nodes,
            args.data_dir,
            parse_config_pairs(args.config),
            kafka_version=args.kafka_version,
        )
    if args.command == "run":
        from aioshare.cli.run import run as run_app

        return run_app(args)
    if args.command == "demo":
        from aioshare.cli.demo import run_demo

        return run_demo(args)
    if args.command == "groups":
        from aioshare.cli.groups import run as run_groups

        return run_groups(args)
    if args.command == "kafka":
        from aioshare.cli.kafka import run as run_kafka

        return run_kafka(args)
    if args.command == "topics":
        from aioshare.cli.topics import run as run_topics

        return run_topics(args)
    if args.command == "produce":
        from aioshare.cli.produce import run as run_produce

        return run_produce(args)
    if args.command == "web":
        from aioshare.cli.web import run as run_web

        return run_web(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
