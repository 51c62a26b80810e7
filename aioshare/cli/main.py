"""The `aioshare` command line: `aioshare broker | run | demo | groups | kafka ...`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aioshare", description="Apache Kafka share groups for asyncio")
    commands = parser.add_subparsers(dest="command", required=True)

    broker = commands.add_parser("broker", help="run an embedded Kafka-protocol broker in the foreground")
    broker.add_argument("--host", default="127.0.0.1")
    broker.add_argument("--port", type=int, default=9092)
    broker.add_argument("--nodes", type=int, default=1)
    broker.add_argument("--data-dir", default=None)
    broker.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Kafka broker config, e.g. group.share.record.lock.duration.ms=15000 (repeatable)",
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
    return parser


def parse_config_pairs(pairs: Sequence[str]) -> dict[str, str]:
    config: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--config expects KEY=VALUE, got {pair!r}")
        config[key.strip()] = value.strip()
    return config


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "broker":
        from aioshare.cli.broker import run_broker

        return run_broker(args.host, args.port, args.nodes, args.data_dir, parse_config_pairs(args.config))
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
    return 2


if __name__ == "__main__":
    sys.exit(main())
