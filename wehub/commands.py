"""Small subcommands of `wehub` itself: `settings` and `topics`."""

from __future__ import annotations

import argparse
from typing import Any

from wehub import kafka, settings


def add_parser(subparsers: Any) -> None:
    show = subparsers.add_parser("settings", help="print every WEHUB_* setting and its current value")
    show.add_argument("--markdown", choices=["en", "zh-CN"], help="print the README's settings table instead")
    show.set_defaults(handler=_show_settings)

    create = subparsers.add_parser("topics", help="create the pipeline's Kafka topics that do not exist yet")
    create.set_defaults(handler=_create_topics)


def _show_settings(arguments: argparse.Namespace) -> int:
    if arguments.markdown:
        print(settings.markdown_table(arguments.markdown))
        return 0
    for setting in settings.SETTINGS:
        value = arguments.settings.values[setting.name]
        shown = value
        if "secret" in setting.name or "token" in setting.name:
            shown = "(set)" if value else "(empty)"
        print(f"{setting.env}={shown}")
    return 0


async def _create_topics(arguments: argparse.Namespace) -> int:
    config = arguments.settings
    created = await kafka.ensure_topics(config, kafka.pipeline_topics(config))
    print(f"created {len(created)} topics" + (": " + ", ".join(created) if created else ""))
    return 0
