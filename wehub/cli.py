"""The `wehub` command: one entry point, each subcommand owned by the package that implements it.

A module in COMMAND_MODULES defines `add_parser(subparsers)`, which registers its subcommands
and sets `handler` (a function of the parsed arguments returning the exit status).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from wehub import logs, settings

COMMAND_MODULES = (
    "wehub.commands",
    "deploy.local.cli",
    "gateway.cli",
    "consumers.cli",
    "wehub.task_cli",
    "wehub.up",
    "wehub.replay",
    "wehub.report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wehub",
        description="WeHub callback pipeline: gateway, Kafka topics, ClickHouse and MinIO consumers.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            # A command module that is not written yet leaves its subcommands out.
            if error.name != name:
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    handler = getattr(arguments, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        config = settings.load()
    except settings.SettingError as error:
        print(f"wehub: {error}", file=sys.stderr)
        return 2
    logs.configure(config.log_level, config.log_format)
    arguments.settings = config
    try:
        result: Any = handler(arguments)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
