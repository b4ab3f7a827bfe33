"""`wehub consume NAME|all` and `wehub sql "SELECT ..."`."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import logging
import signal
import sys
from typing import Any

import orjson

from consumers import clickhouse, query, registry
from consumers.clickhouse import StoreError
from consumers.runner import RETRIABLE_ERRORS, DeadLetterRateExceeded, Runner
from wehub import kafka
from wehub.i18n import Catalog
from wehub.settings import Settings
from wehub.text import display_width

log = logging.getLogger(__name__)

MESSAGES = Catalog({
    "consumer_failed": {
        "en": "consumer {name} stopped: {reason}",
        "zh-CN": "消费者 {name} 已停止：{reason}",
    },
    "unknown_consumer": {
        "en": "unknown consumer {name!r}: expected one of {choices}",
        "zh-CN": "未知的消费者 {name!r}：应为 {choices} 之一",
    },
    "query_failed": {
        "en": "query failed: {reason}",
        "zh-CN": "查询失败：{reason}",
    },
    "embedded_in_use": {
        "en": "the embedded ClickHouse in {path} is open in another process, most likely a running "
              "`wehub consume` or `wehub up`, and this command found no query endpoint of that process to "
              "reach: restart it without --no-query-endpoint, or stop it, then run the query again",
        "zh-CN": "内嵌 ClickHouse 目录 {path} 已被另一个进程打开（多半是正在运行的 `wehub consume` 或 "
                 "`wehub up`），且本命令找不到该进程可连接的查询端点：请不带 --no-query-endpoint 重新启动它，"
                 "或先停止它，再运行查询",
    },
    "rows": {
        "en": "({count} rows)",
        "zh-CN": "（{count} 行）",
    },
})


def add_parser(subparsers: Any) -> None:
    consume = subparsers.add_parser(
        "consume", help="run a ClickHouse consumer (its own consumer group), or all of them in one process")
    consume.add_argument("name", help=f"consumer name: {', '.join(registry.names())} or all")
    consume.add_argument("--no-query-endpoint", action="store_true",
                         help="do not serve `wehub sql` queries on a loopback port (embedded ClickHouse only)")
    consume.set_defaults(handler=_consume)

    sql = subparsers.add_parser("sql", help="run a query on the configured ClickHouse and print the result")
    sql.add_argument("query", help="the SQL query; unqualified names are in WEHUB_CLICKHOUSE_DATABASE, "
                                    "e.g. \"SELECT count() FROM messages\"")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table", help="output format")
    sql.set_defaults(handler=_sql)


async def run_consumers(settings: Settings, names: list[str], query_endpoint: bool = True) -> int:
    """Run the named consumers in this process until SIGTERM/SIGINT or a failure; returns the exit status."""
    runners = [Runner(settings, registry.factory(name)(settings)) for name in names]
    await kafka.ensure_topics(settings, kafka.pipeline_topics(settings))
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stop() -> None:
        stopped.set()
        for runner in runners:
            runner.stop()

    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop)
    endpoint = None
    if query_endpoint and clickhouse.is_embedded(settings.effective_clickhouse_dsn):
        endpoint = asyncio.ensure_future(query.serve(settings, stopped))
    tasks = {asyncio.ensure_future(runner.run()): runner for runner in runners}
    status = 0
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = task.exception()
                if error is None:
                    continue
                status = 1
                _report_failure(settings, tasks[task].name, error)
                stop()
    finally:
        stop()
        if endpoint is not None:
            await endpoint
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signal_number)
        await asyncio.to_thread(clickhouse.close_embedded)
    return status


def _report_failure(settings: Settings, name: str, error: BaseException) -> None:
    known = (DeadLetterRateExceeded, *RETRIABLE_ERRORS)
    if not isinstance(error, known):
        log.error("consumer %s failed", name, exc_info=error)
    print(MESSAGES.render("consumer_failed", settings.locale, name=name, reason=error), file=sys.stderr)


async def _consume(arguments: argparse.Namespace) -> int:
    settings: Settings = arguments.settings
    names = registry.names() if arguments.name == "all" else [arguments.name]
    unknown = [name for name in names if name not in registry.CONSUMERS]
    if unknown:
        choices = ", ".join([*registry.names(), "all"])
        print(MESSAGES.render("unknown_consumer", settings.locale, name=unknown[0], choices=choices),
              file=sys.stderr)
        return 2
    return await run_consumers(settings, names, not arguments.no_query_endpoint)


def format_result(result: query.QueryResult, output: str, locale: str = "en") -> str:
    """Render a result as an aligned text table, CSV or a JSON array of objects."""
    if output == "json":
        objects = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
        return orjson.dumps(objects, default=str, option=orjson.OPT_INDENT_2 | query.JSON_OPTIONS).decode()
    if output == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(result.rows)
        return buffer.getvalue().rstrip("\n")
    cells = [[str(value) for value in row] for row in result.rows]
    widths = [max([display_width(name), *(display_width(row[index]) for row in cells)])
              for index, name in enumerate(result.columns)]

    def line(values: list[str]) -> str:
        padded = (value + " " * (width - display_width(value)) for value, width in zip(values, widths, strict=True))
        return " | ".join(padded)

    lines = [line(result.columns), "-+-".join("-" * width for width in widths), *(line(row) for row in cells)]
    lines.append(MESSAGES.render("rows", locale, count=len(cells)))
    return "\n".join(lines)


def _sql(arguments: argparse.Namespace) -> int:
    settings: Settings = arguments.settings
    try:
        result = query.run_query(settings, arguments.query)
    except (query.QueryError, StoreError) as error:
        dsn = settings.effective_clickhouse_dsn
        if clickhouse.is_embedded(dsn) and isinstance(error, StoreError) and clickhouse.embedded_in_use(error):
            print(MESSAGES.render("embedded_in_use", settings.locale, path=dsn[len("chdb://"):]), file=sys.stderr)
            return 1
        print(MESSAGES.render("query_failed", settings.locale, reason=error), file=sys.stderr)
        return 1
    finally:
        clickhouse.close_embedded()
    print(format_result(result, arguments.format, settings.locale))
    return 0
