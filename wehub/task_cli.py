"""`wehub task send`: validate tasks and produce them to the compacted task topic.

    wehub task send --bot WXID --type 1 --to ROOM --text "hello"
    wehub task send --bot WXID --type 13 --dict '{"v1": "...", "v2": "..."}'
    wehub task send --json tasks.json        # one task object or an array of them

The appid comes from --appid, the task object, or the accounts file: its only app, or the only
app whose wxids list the bot.
Every task is checked before any is produced. The exit status is 0 when all were written,
2 when one is invalid (the message names the field) and 1 when Kafka did not acknowledge.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson

from gateway.accounts import AccountsError, read_apps
from schemas import topics
from schemas.codec import CODEC
from wehub.i18n import Catalog
from wehub.kafka import PipelineKafkaError, make_producer, translate
from wehub.settings import Settings
from wehub.task_validation import (
    Submission,
    TaskInvalid,
    check_account,
    default_appid,
    now_ms,
    parse_submission,
)

SOURCE = "cli"

MESSAGES = Catalog({
    "sent": {"en": "{count} task(s) written to {topic}:", "zh-CN": "已将 {count} 个任务写入 {topic}："},
    "invalid": {"en": "task #{index} refused: {reason}", "zh-CN": "任务 #{index} 被拒绝：{reason}"},
    "unreadable": {"en": "cannot read {path}: {detail}", "zh-CN": "无法读取 {path}：{detail}"},
    "accounts": {"en": "accounts file: {detail}", "zh-CN": "账号文件：{detail}"},
    "kafka": {"en": "nothing written: {detail}; check WEHUB_KAFKA_BOOTSTRAP and try again",
              "zh-CN": "没有写入任何任务：{detail}；请检查 WEHUB_KAFKA_BOOTSTRAP 后重试"},
    "missing_options": {"en": "give --json FILE, or --bot and --type (with --to/--text or --dict)",
                        "zh-CN": "请提供 --json 文件，或 --bot 和 --type（以及 --to/--text 或 --dict）"},
    "missing_flags": {"en": "missing {flags}: task_type 1 sends the --text messages to the chat or room given by "
                            "--to WXID (or give the whole task_dict with --dict)",
                      "zh-CN": "缺少 {flags}：task_type 1 将 --text 消息发送到 --to WXID 指定的会话或群"
                               "（也可以用 --dict 给出完整的 task_dict）"},
})


class MissingFlags(ValueError):
    """Options of `wehub task send` that the requested task needs but were not given."""

    def __init__(self, flags: list[str]) -> None:
        super().__init__(", ".join(flags))
        self.flags = flags

    def render(self, locale: str) -> str:
        named = ", ".join(f"{flag} ({_FLAG_FIELDS[flag]})" for flag in self.flags)
        return MESSAGES.render("missing_flags", locale, flags=named)


# The task_dict field that each option of a task_type 1 task fills.
_FLAG_FIELDS = {"--to": "task_dict.wxid_to", "--text": "task_dict.msg_list"}


def add_parser(subparsers: Any) -> None:
    task = subparsers.add_parser("task", help="submit tasks for bots")
    commands = task.add_subparsers(dest="task_command", metavar="COMMAND", required=True)
    send = commands.add_parser("send", help="validate tasks and write them to the task topic")
    send.add_argument("--json", metavar="FILE", help="JSON file with a task object or an array of them; - for stdin")
    send.add_argument(
        "--appid",
        help="appid of the bot; default: the only app of the accounts file, or the only one whose wxids list the bot",
    )
    send.add_argument("--bot", metavar="WXID", help="wxid of the bot that runs the task")
    send.add_argument("--type", type=int, metavar="N", dest="task_type", help="task_type (1-15, 100, 101)")
    send.add_argument("--to", metavar="WXID", help="task_type 1: wxid_to, the chat or room to send to")
    send.add_argument("--text", action="append", default=[], help="task_type 1: a text message (repeatable)")
    send.add_argument("--at", action="append", default=[], metavar="WXID", help="task_type 1: wxid to @ (repeatable)")
    send.add_argument("--at-style", type=int, default=0, choices=[0, 1],
                      help="task_type 1: 0 puts the @ in front, 1 replaces each {$@} in the text")
    send.add_argument("--dict", metavar="JSON", dest="task_dict", help="task_dict as a JSON object")
    send.add_argument("--task-id", help="task_id to use; default: a new time-ordered id")
    send.add_argument("--not-before", type=int, metavar="MS", help="not handed out before this time (ms since 1970)")
    send.add_argument("--expires-in", type=float, metavar="S", help="never handed out after this many seconds")
    send.set_defaults(handler=send_tasks)

    consume = commands.add_parser(
        "consume", help="run the tasks consumer alone (same as `wehub consume tasks`): task statuses and "
                        "latencies into ClickHouse")
    consume.set_defaults(handler=consume_tasks)


def _documents(arguments: argparse.Namespace) -> list[Any]:
    """Build the task objects the options describe; raises ValueError when they describe none."""
    if arguments.json:
        raw = sys.stdin.buffer.read() if arguments.json == "-" else Path(arguments.json).read_bytes()
        document = orjson.loads(raw)
        return document if isinstance(document, list) else [document]
    if arguments.bot is None or arguments.task_type is None:
        raise ValueError("missing_options")
    if arguments.task_dict is not None:
        task_dict = orjson.loads(arguments.task_dict)
    elif arguments.task_type == 1:
        missing = [flag for flag, given in (("--to", arguments.to is not None), ("--text", bool(arguments.text)))
                   if not given]
        if missing:
            raise MissingFlags(missing)
        task_dict = {"wxid_to": arguments.to, "at_list": arguments.at, "at_style": arguments.at_style,
                     "msg_list": [{"msg_type": 1, "msg": text} for text in arguments.text]}
    else:
        task_dict = {}
    task: dict[str, Any] = {"bot_wxid": arguments.bot, "task_type": arguments.task_type, "task_dict": task_dict}
    if arguments.task_id:
        task["task_id"] = arguments.task_id
    if arguments.not_before is not None:
        task["not_before"] = arguments.not_before
    if arguments.expires_in is not None:
        task["expires_at"] = now_ms() + int(arguments.expires_in * 1000)
    return [task]


async def produce(settings: Settings, submissions: list[Submission], created_at: int, source: str) -> None:
    """Write the tasks and wait for Kafka's acknowledgement; raises PipelineKafkaError."""
    producer = make_producer(settings)
    topic = settings.topic(topics.TASKS)
    try:
        await asyncio.wait_for(producer.start(), float(settings.kafka_timeout_s))
        sends = [await producer.send(topic, CODEC.encode(topics.TASK_SCHEMA, item.record(created_at, source)),
                                     key=item.task_id.encode()) for item in submissions]
        await asyncio.wait_for(asyncio.gather(*sends), float(settings.kafka_timeout_s))
    except Exception as error:
        raise translate(error, "writing tasks") from None
    finally:
        await producer.stop()


async def send_tasks(arguments: argparse.Namespace) -> int:
    settings: Settings = arguments.settings
    locale = str(settings.locale)
    try:
        documents = _documents(arguments)
    except ValueError as error:
        if isinstance(error, MissingFlags):
            print(error.render(locale), file=sys.stderr)
        elif str(error) == "missing_options":
            print(MESSAGES.render("missing_options", locale), file=sys.stderr)
        else:
            print(MESSAGES.render("unreadable", locale, path=arguments.json or "--dict", detail=error), file=sys.stderr)
        return 2
    except OSError as error:
        print(MESSAGES.render("unreadable", locale, path=arguments.json, detail=error.strerror), file=sys.stderr)
        return 2
    try:
        apps = {app.appid: app.wxids for app in read_apps(Path(settings.accounts)).values()}
    except AccountsError as error:
        print(MESSAGES.render("accounts", locale, detail=error), file=sys.stderr)
        return 2

    created_at = now_ms()
    submissions = []
    for index, document in enumerate(documents):
        if arguments.appid and isinstance(document, dict):
            document.setdefault("appid", arguments.appid)
        try:
            submission = parse_submission(document, default_appid(apps, document), created_at, index)
            check_account(submission, apps)
        except TaskInvalid as error:
            print(MESSAGES.render("invalid", locale, index=index + 1, reason=error.render(locale)), file=sys.stderr)
            return 2
        submissions.append(submission)

    try:
        await produce(settings, submissions, created_at, SOURCE)
    except PipelineKafkaError as error:
        print(MESSAGES.render("kafka", locale, detail=error), file=sys.stderr)
        return 1
    print(MESSAGES.render("sent", locale, count=len(submissions), topic=settings.topic(topics.TASKS)))
    for submission in submissions:
        print(submission.task_id)
    return 0


async def consume_tasks(arguments: argparse.Namespace) -> int:
    """`wehub consume tasks` under its older name; an embedded ClickHouse must not be open elsewhere."""
    # Imported here so that every other `wehub` command starts without loading the ClickHouse client.
    from consumers.cli import run_consumers  # noqa: PLC0415

    return await run_consumers(arguments.settings, ["tasks"])
