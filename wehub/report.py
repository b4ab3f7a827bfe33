"""`wehub report`: group growth and chat activity per room and day, as a terminal table or a PNG chart.

Both reports read the analyst views of the consumers' ClickHouse database: `room_daily_growth`
(joins, leaves, net change and members at the end of each day) and `room_daily_activity`
(messages and distinct senders). Values such as the bot's wxid go to ClickHouse as query
parameters, never into the SQL text.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import inspect
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect

from consumers.clickhouse import embedded_in_use
from wehub.i18n import Catalog
from wehub.settings import Settings
from wehub.text import display_width

DEFAULT_DAYS = 7
# Lines beyond this many rooms make a chart legend unreadable; the chart keeps the largest rooms.
MAX_ROOMS_PLOTTED = 8
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

MESSAGES = Catalog({
    "rooms_title": {
        "en": "Group growth of bot {bot}, {period}",
        "zh-CN": "机器人 {bot} 的群增长，{period}",
    },
    "activity_title": {
        "en": "Chat activity of {who}, {period}",
        "zh-CN": "{who}的群聊活跃度，{period}",
    },
    "period_days": {
        "en": "{days} days up to {last_day}",
        "zh-CN": "截至 {last_day} 的 {days} 天",
    },
    "period_every_day": {
        "en": "every day up to {last_day}",
        "zh-CN": "截至 {last_day} 的全部日期",
    },
    "all_bots": {
        "en": "all bots",
        "zh-CN": "所有机器人",
    },
    "one_bot": {
        "en": "bot {bot}",
        "zh-CN": "机器人 {bot} ",
    },
    "day": {"en": "day", "zh-CN": "日期"},
    "bot": {"en": "bot", "zh-CN": "机器人"},
    "room": {"en": "room", "zh-CN": "群"},
    "room_name": {"en": "name", "zh-CN": "群名"},
    "joins": {"en": "joins", "zh-CN": "入群"},
    "leaves": {"en": "leaves", "zh-CN": "退群"},
    "net": {"en": "net", "zh-CN": "净增"},
    "members_at_end": {"en": "members at end of day", "zh-CN": "当日结束时成员数"},
    "messages": {"en": "messages", "zh-CN": "消息数"},
    "distinct_senders": {"en": "distinct senders", "zh-CN": "发言人数"},
    "total": {"en": "total", "zh-CN": "合计"},
    "joins_minus_leaves": {"en": "joins and leaves (all rooms)", "zh-CN": "入群与退群（所有群）"},
    "no_data_rooms": {
        "en": "no group growth recorded for bot {bot} in database {database}",
        "zh-CN": "数据库 {database} 中没有机器人 {bot} 的群增长记录",
    },
    "no_data_activity": {
        "en": "no chat activity recorded for {who} in database {database}",
        "zh-CN": "数据库 {database} 中没有{who}的群聊记录",
    },
    "no_data_activity_any_bot": {
        "en": "no chat activity recorded in database {database}",
        "zh-CN": "数据库 {database} 中没有群聊记录",
    },
    "plot_written": {
        "en": "chart written to {path}",
        "zh-CN": "图表已写入 {path}",
    },
    "plot_failed": {
        "en": "cannot write the chart to {path}: {error}",
        "zh-CN": "无法写入图表 {path}：{error}",
    },
    "query_failed": {
        "en": "querying ClickHouse ({where}, database {database}) failed: {error}. "
              "Check WEHUB_CLICKHOUSE_DSN and WEHUB_CLICKHOUSE_DATABASE, "
              "and that the consumers created the tables.",
        "zh-CN": "查询 ClickHouse（{where}，数据库 {database}）失败：{error}。"
                 "请检查 WEHUB_CLICKHOUSE_DSN 和 WEHUB_CLICKHOUSE_DATABASE，并确认消费者已建表。",
    },
    "embedded_in_use": {
        "en": "the embedded ClickHouse in {path} is open in another process, most likely a running "
              "`wehub consume`: stop it and run the report again",
        "zh-CN": "内嵌 ClickHouse 目录 {path} 已被另一个进程打开（多半是正在运行的 `wehub consume`）："
                 "请先停止它，再运行报表",
    },
    "invalid_database": {
        "en": "WEHUB_CLICKHOUSE_DATABASE={database!r} is invalid: expected letters, digits and _ only",
        "zh-CN": "WEHUB_CLICKHOUSE_DATABASE={database!r} 无效：只能包含字母、数字和 _",
    },
})


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


class ReportError(RuntimeError):
    """A report that cannot be produced; the message is ready for the user."""


# --- querying -----------------------------------------------------------------------------------


def run_query(settings: Settings, sql: str, parameters: dict[str, Any]) -> QueryResult:
    """Run one SELECT with server-side parameters ({name:Type} in `sql`); blocks.

    Uses the consumers' `run_query` once it takes parameters, because that one also reaches the
    embedded ClickHouse while the consumer process has its folder open.
    """
    try:
        query_module = importlib.import_module("consumers.query")
    except ModuleNotFoundError as error:
        if error.name not in ("consumers.query", "consumers"):
            raise
        query_module = None
    shared_run_query = getattr(query_module, "run_query", None)
    if shared_run_query is None or "parameters" not in inspect.signature(shared_run_query).parameters:
        return _run_query_directly(settings, sql, parameters)
    result = shared_run_query(settings, sql, parameters=parameters)
    return QueryResult(list(result.columns), [tuple(row) for row in result.rows])


def _run_query_directly(settings: Settings, sql: str, parameters: dict[str, Any]) -> QueryResult:
    # NOTE: consumers.query.run_query takes no query parameters yet, so reports open ClickHouse
    # themselves, and an embedded chdb:// folder held by running consumers cannot be opened.
    dsn = settings.effective_clickhouse_dsn
    if dsn.startswith("chdb://"):
        # The embedded engine lives as long as the process, so its client is not closed here.
        client = clickhouse_connect.get_client(dsn=dsn)
        result = client.query(sql, parameters=parameters)
    else:
        client = clickhouse_connect.get_client(dsn=dsn, connect_timeout=10, send_receive_timeout=300)
        try:
            result = client.query(sql, parameters=parameters)
        finally:
            client.close()
    return QueryResult(list(result.column_names), [tuple(row) for row in result.result_rows])


def _database(settings: Settings, locale: str) -> str:
    """Return the database name after checking it, because it is the one value written into the SQL text."""
    name = str(settings.clickhouse_database)
    if not _IDENTIFIER.fullmatch(name):
        raise ReportError(MESSAGES.render("invalid_database", locale, database=name))
    return name


def _dsn_for_messages(dsn: str) -> str:
    """The DSN without user and password, which must never be printed."""
    parts = urlsplit(dsn)
    if parts.scheme == "chdb":
        return dsn
    return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")


def _query(settings: Settings, locale: str, sql: str, parameters: dict[str, Any]) -> QueryResult:
    try:
        return run_query(settings, sql, parameters)
    except Exception as error:  # every driver failure becomes one message for the user
        dsn = settings.effective_clickhouse_dsn
        if dsn.startswith("chdb://") and embedded_in_use(error):
            folder = dsn[len("chdb://"):]
            raise ReportError(MESSAGES.render("embedded_in_use", locale, path=folder)) from error

        detail = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        message = MESSAGES.render("query_failed", locale, where=_dsn_for_messages(dsn),
                                  database=settings.clickhouse_database, error=detail)
        raise ReportError(message) from error


# The window ends on the latest day with data rather than today, so a report of a replayed or
# older corpus shows its days instead of nothing.
ROOMS_SQL = """
SELECT g.day, g.room_wxid, ifNull(r.name, '') AS name, g.joins, g.leaves, g.net, g.members_at_end
FROM {database}.room_daily_growth AS g
LEFT JOIN
(
    SELECT room_wxid, any(name) AS name FROM {database}.rooms
    WHERE bot_wxid = {{bot:String}} GROUP BY room_wxid
) AS r ON r.room_wxid = g.room_wxid
WHERE g.bot_wxid = {{bot:String}}
  AND (g.day > (
      SELECT max(day) FROM {database}.room_daily_growth WHERE bot_wxid = {{bot:String}}
  ) - {{days:UInt32}} OR {{days:UInt32}} = 0)
ORDER BY g.room_wxid, g.day
"""

ACTIVITY_SQL = """
SELECT day, bot_wxid, room_wxid, messages, distinct_senders
FROM {database}.room_daily_activity
WHERE ({{bot:String}} = '' OR bot_wxid = {{bot:String}})
  AND (day > (
      SELECT max(day) FROM {database}.room_daily_activity
      WHERE ({{bot:String}} = '' OR bot_wxid = {{bot:String}})
  ) - {{days:UInt32}} OR {{days:UInt32}} = 0)
ORDER BY bot_wxid, room_wxid, day
"""


@dataclass(frozen=True)
class GrowthRow:
    day: dt.date
    room_wxid: str
    name: str
    joins: int
    leaves: int
    net: int
    members_at_end: int


@dataclass(frozen=True)
class ActivityRow:
    day: dt.date
    bot_wxid: str
    room_wxid: str
    messages: int
    distinct_senders: int


def _as_date(value: Any) -> dt.date:
    """A day as ClickHouse returns it: a date from the driver, or ISO text through a query endpoint."""
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def query_growth(settings: Settings, locale: str, bot: str, days: int) -> list[GrowthRow]:
    sql = ROOMS_SQL.format(database=_database(settings, locale))
    result = _query(settings, locale, sql, {"bot": bot, "days": days})
    return [GrowthRow(_as_date(day), *values) for day, *values in result.rows]


def query_activity(settings: Settings, locale: str, bot: str, days: int) -> list[ActivityRow]:
    sql = ACTIVITY_SQL.format(database=_database(settings, locale))
    result = _query(settings, locale, sql, {"bot": bot, "days": days})
    return [ActivityRow(_as_date(day), *values) for day, *values in result.rows]


# --- terminal tables ----------------------------------------------------------------------------




def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[bool]) -> str:
    """Align `rows` under `headers`; numeric columns are right-aligned."""
    cells = [[str(value) for value in row] for row in rows]
    widths = [display_width(header) for header in headers]
    for row in cells:
        widths = [max(width, display_width(cell)) for width, cell in zip(widths, row, strict=True)]

    def line(values: Sequence[str]) -> str:
        parts = []
        for value, width, right in zip(values, widths, numeric, strict=True):
            padding = " " * (width - display_width(value))
            parts.append(padding + value if right else value + padding)
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in cells)])


def growth_table(rows: Sequence[GrowthRow], locale: str) -> str:
    def heading(code: str) -> str:
        return MESSAGES.render(code, locale)

    codes = ("day", "room", "room_name", "joins", "leaves", "net", "members_at_end")
    headers = [heading(code) for code in codes]
    body: list[list[Any]] = [
        [row.day, row.room_wxid, row.name, row.joins, row.leaves, row.net, row.members_at_end] for row in rows
    ]
    body.append([heading("total"), "", "", sum(row.joins for row in rows), sum(row.leaves for row in rows),
                 sum(row.net for row in rows), ""])
    return format_table(headers, body, numeric=[False, False, False, True, True, True, True])


def activity_table(rows: Sequence[ActivityRow], locale: str, with_bot: bool) -> str:
    def heading(code: str) -> str:
        return MESSAGES.render(code, locale)

    codes = ["day", "bot", "room", "messages", "distinct_senders"]
    numeric = [False, False, False, True, True]
    body: list[list[Any]] = [
        [row.day, row.bot_wxid, row.room_wxid, row.messages, row.distinct_senders] for row in rows
    ]
    # Distinct senders of several rooms and days cannot be summed, so the total row leaves it empty.
    body.append([heading("total"), "", "", sum(row.messages for row in rows), ""])
    if not with_bot:
        del codes[1], numeric[1]
        body = [row[:1] + row[2:] for row in body]
    return format_table([heading(code) for code in codes], body, numeric)


# --- charts -------------------------------------------------------------------------------------

_CJK_FONT_NAMES = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei",
                   "WenQuanYi Micro Hei", "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC")


def _chart_locale(locale: str) -> str:
    """`locale`, or English when no installed font can draw Chinese labels."""
    if locale != "zh-CN":
        return locale
    pyplot = _pyplot()
    installed = {font.name for font in pyplot.matplotlib.font_manager.fontManager.ttflist}
    for name in _CJK_FONT_NAMES:
        if name in installed:
            pyplot.rcParams["font.sans-serif"] = [name, *pyplot.rcParams["font.sans-serif"]]
            return locale
    # NOTE: without a CJK font matplotlib draws Chinese as empty boxes, so the chart falls back to English.
    return "en"


def _format_day_axes(axes: Sequence[Any], days: Sequence[Any]) -> None:
    """Label the x axis with whole days and the y axes with whole numbers, since every figure is a count."""
    from matplotlib import dates, ticker  # noqa: PLC0415 - loaded with pyplot, see _pyplot

    if not days:
        return
    span_days = (max(days) - min(days)).days
    # A day of margin on each side keeps the bars of the first and last day inside the plot.
    axes[0].set_xlim(min(days) - dt.timedelta(days=1), max(days) + dt.timedelta(days=1))
    for axis in axes:
        axis.xaxis.set_major_locator(dates.DayLocator(interval=max(1, span_days // 10)))  # type: ignore[no-untyped-call]
        axis.xaxis.set_major_formatter(dates.DateFormatter("%Y-%m-%d"))  # type: ignore[no-untyped-call]
        axis.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, which draws to files without a display."""
    # Imported on first use because it takes about 0.3 s and every `wehub` command imports this module.
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    from matplotlib import pyplot  # noqa: PLC0415

    return pyplot


def _largest(totals: dict[str, float]) -> list[str]:
    return sorted(totals, key=lambda key: (-totals[key], key))[:MAX_ROOMS_PLOTTED]


def plot_growth(rows: Sequence[GrowthRow], title: str, locale: str, path: Path) -> None:
    """Draw members at the end of each day per room, and joins and leaves of all rooms per day, as PNG."""
    pyplot = _pyplot()
    locale = _chart_locale(locale)
    by_room: dict[str, list[GrowthRow]] = defaultdict(list)
    joins_by_day: dict[Any, int] = defaultdict(int)
    leaves_by_day: dict[Any, int] = defaultdict(int)
    for row in rows:
        by_room[row.room_wxid].append(row)
        joins_by_day[row.day] += row.joins
        leaves_by_day[row.day] += row.leaves

    figure, (top, bottom) = pyplot.subplots(2, 1, figsize=(10, 7), sharex=True)
    try:
        latest_members = {room: float(room_rows[-1].members_at_end) for room, room_rows in by_room.items()}
        for room in _largest(latest_members):
            room_rows = by_room[room]
            # Room names are left out because their emoji and CJK glyphs are missing from the default font.
            top.step([row.day for row in room_rows], [row.members_at_end for row in room_rows],
                     where="post", marker="o", label=room)
        top.set_ylabel(MESSAGES.render("members_at_end", locale))
        top.legend(fontsize="small", loc="best")
        top.grid(visible=True, alpha=0.3)

        days = sorted(joins_by_day)
        bottom.bar(days, [joins_by_day[day] for day in days], color="tab:green",
                   label=MESSAGES.render("joins", locale))
        bottom.bar(days, [-leaves_by_day[day] for day in days], color="tab:red",
                   label=MESSAGES.render("leaves", locale))
        bottom.axhline(0, color="black", linewidth=0.8)
        bottom.set_ylabel(MESSAGES.render("joins_minus_leaves", locale))
        bottom.set_xlabel(MESSAGES.render("day", locale))
        bottom.legend(fontsize="small", loc="best")
        bottom.grid(visible=True, alpha=0.3)

        _format_day_axes((top, bottom), days)
        figure.suptitle(title)
        figure.autofmt_xdate()
        figure.savefig(path, format="png", dpi=100)
    finally:
        pyplot.close(figure)


def plot_activity(rows: Sequence[ActivityRow], title: str, locale: str, path: Path) -> None:
    """Draw messages and distinct senders per day of the busiest rooms, as PNG."""
    pyplot = _pyplot()
    locale = _chart_locale(locale)
    by_room: dict[str, list[ActivityRow]] = defaultdict(list)
    for row in rows:
        by_room[row.room_wxid].append(row)
    totals = {room: float(sum(row.messages for row in room_rows)) for room, room_rows in by_room.items()}

    first_day = min(row.day for row in rows)
    # A day without a row had no messages, so the lines drop to 0 there instead of bridging the gap.
    every_day = [first_day + dt.timedelta(days=offset)
                 for offset in range((max(row.day for row in rows) - first_day).days + 1)]

    figure, (top, bottom) = pyplot.subplots(2, 1, figsize=(10, 7), sharex=True)
    try:
        for room in _largest(totals):
            by_day = {row.day: row for row in _one_row_per_day(by_room[room])}
            messages = [by_day[day].messages if day in by_day else 0 for day in every_day]
            senders = [by_day[day].distinct_senders if day in by_day else 0 for day in every_day]
            top.plot(every_day, messages, marker="o", markevery=[day in by_day for day in every_day], label=room)
            bottom.plot(every_day, senders, marker="o", markevery=[day in by_day for day in every_day])
        top.set_ylabel(MESSAGES.render("messages", locale))
        top.legend(fontsize="small", loc="best")
        top.grid(visible=True, alpha=0.3)
        bottom.set_ylabel(MESSAGES.render("distinct_senders", locale))
        bottom.set_xlabel(MESSAGES.render("day", locale))
        bottom.grid(visible=True, alpha=0.3)

        _format_day_axes((top, bottom), every_day)
        figure.suptitle(title)
        figure.autofmt_xdate()
        figure.savefig(path, format="png", dpi=100)
    finally:
        pyplot.close(figure)


def _one_row_per_day(rows: Sequence[ActivityRow]) -> list[ActivityRow]:
    """Keep one row per day of a room that several bots are in: the bot that recorded the most messages.

    Every bot in a room receives the same messages, so adding up the bots' rows would count them twice.
    """
    by_day: dict[Any, ActivityRow] = {}
    for row in rows:
        seen = by_day.get(row.day)
        if seen is None or (row.messages, row.distinct_senders) > (seen.messages, seen.distinct_senders):
            by_day[row.day] = row
    return [by_day[day] for day in sorted(by_day)]


# --- command line -------------------------------------------------------------------------------


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of days {text!r}: expected an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid number of days {text!r}: expected 0 or more")
    return value


def _period(locale: str, days: int, last_day: dt.date) -> str:
    if days == 0:
        return MESSAGES.render("period_every_day", locale, last_day=last_day)
    return MESSAGES.render("period_days", locale, days=days, last_day=last_day)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("report", help="group growth and chat activity per room and day")
    reports = parser.add_subparsers(dest="report", metavar="REPORT", required=True)
    days_help = f"days to show, up to the latest day with data; 0 shows every day (default {DEFAULT_DAYS})"
    plot_help = "also draw the figures as a PNG chart in FILE"

    rooms = reports.add_parser("rooms", help="joins, leaves, net change and members per room and day")
    rooms.add_argument("--bot", required=True, metavar="WXID", help="the bot's wxid")
    rooms.add_argument("--days", type=_days, default=DEFAULT_DAYS, help=days_help)
    rooms.add_argument("--plot", type=Path, metavar="FILE", help=plot_help)
    rooms.set_defaults(handler=run_rooms)

    activity = reports.add_parser("activity", help="messages and distinct senders per room and day")
    activity.add_argument("--bot", default="", metavar="WXID",
                          help="only this bot's rooms (default: every bot)")
    activity.add_argument("--days", type=_days, default=DEFAULT_DAYS, help=days_help)
    activity.add_argument("--plot", type=Path, metavar="FILE", help=plot_help)
    activity.set_defaults(handler=run_activity)


def _fail(message: str) -> int:
    print(f"wehub report: {message}", file=sys.stderr)
    return 1


def _write_plot(draw: Any, path: Path, locale: str) -> int:
    try:
        draw()
    except OSError as error:
        return _fail(MESSAGES.render("plot_failed", locale, path=path, error=error.strerror or error))
    print(MESSAGES.render("plot_written", locale, path=path), file=sys.stderr)
    return 0


def run_rooms(arguments: argparse.Namespace) -> int:
    settings: Settings = arguments.settings
    locale = settings.locale
    try:
        rows = query_growth(settings, locale, arguments.bot, arguments.days)
    except ReportError as error:
        return _fail(str(error))
    if not rows:
        database = settings.clickhouse_database
        return _fail(MESSAGES.render("no_data_rooms", locale, bot=arguments.bot, database=database))

    last_day = max(row.day for row in rows)
    title = MESSAGES.render("rooms_title", locale, bot=arguments.bot,
                            period=_period(locale, arguments.days, last_day))
    print(title)
    print(growth_table(rows, locale))
    if arguments.plot is None:
        return 0
    chart_locale = _chart_locale(locale)
    chart_title = MESSAGES.render("rooms_title", chart_locale, bot=arguments.bot,
                                  period=_period(chart_locale, arguments.days, last_day))
    plot_path: Path = arguments.plot
    return _write_plot(lambda: plot_growth(rows, chart_title, locale, plot_path), plot_path, locale)


def run_activity(arguments: argparse.Namespace) -> int:
    settings: Settings = arguments.settings
    locale = settings.locale
    try:
        rows = query_activity(settings, locale, arguments.bot, arguments.days)
    except ReportError as error:
        return _fail(str(error))

    def who(in_locale: str) -> str:
        if arguments.bot:
            return MESSAGES.render("one_bot", in_locale, bot=arguments.bot)
        return MESSAGES.render("all_bots", in_locale)

    if not rows and arguments.bot:
        database = settings.clickhouse_database
        return _fail(MESSAGES.render("no_data_activity", locale, who=who(locale), database=database))
    if not rows:
        database = settings.clickhouse_database
        return _fail(MESSAGES.render("no_data_activity_any_bot", locale, database=database))

    last_day = max(row.day for row in rows)
    period = _period(locale, arguments.days, last_day)
    print(MESSAGES.render("activity_title", locale, who=who(locale), period=period))
    print(activity_table(rows, locale, with_bot=not arguments.bot))
    if arguments.plot is None:
        return 0
    chart_locale = _chart_locale(locale)
    chart_title = MESSAGES.render("activity_title", chart_locale, who=who(chart_locale),
                                  period=_period(chart_locale, arguments.days, last_day))
    plot_path: Path = arguments.plot
    return _write_plot(lambda: plot_activity(rows, chart_title, locale, plot_path), plot_path, locale)
