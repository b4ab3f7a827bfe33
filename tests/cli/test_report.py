"""`wehub report` on the consumers' tables and views in a fresh embedded ClickHouse database."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from consumers import migrate
from tests import services
from wehub import cli
from wehub.report import format_table
from wehub.text import display_width

APPID = "wh_report_app"
BOT = "wxid_bot_one"
OTHER_BOT = "wxid_bot_two"
ROOM_A = "11111111@chatroom"
ROOM_B = "22222222@chatroom"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

MEMBER_EVENT_COLUMNS = ["appid", "bot_wxid", "room_wxid", "member_wxid", "change", "source", "source_action",
                        "event_id", "event_time"]
MESSAGE_COLUMNS = ["appid", "bot_wxid", "dedup_key", "event_id", "received_at", "event_time", "msg_id",
                   "msg_type", "direction", "chat_kind", "room_wxid", "wxid_from", "wxid_to"]
ROOM_COLUMNS = ["appid", "bot_wxid", "room_wxid", "chat_kind", "name", "owner_wxid", "source", "event_id",
                "updated_at", "version"]


def at(day: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2025, 12, day, 9, minute, tzinfo=dt.UTC)


def member_events() -> list[list[Any]]:
    """Room A: 5 members in the first snapshot, 2 joins on the 4th, 1 leave on the 5th.
    Room B: 1 member in its snapshot and 1 join on the 5th.
    """
    snapshot = ("initial", "report_contact")
    change = ("member_change", "report_room_member_change")
    plan = [
        *[(ROOM_A, f"m{number}", "join", snapshot, f"a{number}", 3) for number in range(5)],
        (ROOM_A, "n1", "join", change, "a5", 4),
        (ROOM_A, "n2", "join", change, "a6", 4),
        (ROOM_A, "m1", "leave", change, "a7", 5),
        (ROOM_B, "x", "join", snapshot, "b0", 3),
        (ROOM_B, "y", "join", change, "b1", 5),
    ]
    return [[APPID, BOT, room, member, kind, *source, event_id, at(day)]
            for room, member, kind, source, event_id, day in plan]


def messages() -> list[list[Any]]:
    """(day, bot, room, sender, count): room A is busy on the 3rd, room B on the 4th; one private chat."""
    plan = [
        (3, BOT, ROOM_A, "alice", 3), (3, BOT, ROOM_A, "bob", 2), (4, BOT, ROOM_A, "alice", 1),
        (4, BOT, ROOM_B, "carol", 4), (5, OTHER_BOT, ROOM_B, "dave", 2), (5, BOT, "", "erin", 7),
    ]
    rows: list[list[Any]] = []
    for day, bot, room, sender, count in plan:
        for minute in range(count):
            key = f"{bot}-{day}-{room}-{sender}-{minute}"
            rows.append([APPID, bot, key, key, at(day, minute), at(day, minute), key, 1, "incoming",
                         "group" if room else "private", room, sender, room or bot])
    return rows


@pytest.fixture
def analytics_database(clickhouse_dsn: str, clickhouse_database: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The consumers' tables in a fresh database, with a few days of rooms and messages."""
    client = services.clickhouse_client(clickhouse_dsn)
    # Only the analytics migrations: the reports read nothing else, and a broken unrelated
    # migration should fail its own tests rather than these.
    for migration in migrate.available():
        if migration.name.startswith("analytics"):
            for statement in migration.statements(clickhouse_database):
                client.command(statement)
    client.insert("room_member_events_store", member_events(), column_names=MEMBER_EVENT_COLUMNS,
                  database=clickhouse_database)
    client.insert("messages_store", messages(), column_names=MESSAGE_COLUMNS, database=clickhouse_database)
    client.insert("rooms_store", [[APPID, BOT, ROOM_A, "group", "Hiking club", "m0", "report_contact", "r1",
                                   at(3), 1]], column_names=ROOM_COLUMNS, database=clickhouse_database)
    monkeypatch.setenv("WEHUB_CLICKHOUSE_DSN", clickhouse_dsn)
    monkeypatch.setenv("WEHUB_CLICKHOUSE_DATABASE", clickhouse_database)
    monkeypatch.setenv("WEHUB_LOCALE", "en")
    monkeypatch.setenv("WEHUB_LOG_FORMAT", "text")
    return clickhouse_database


def report(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, list[str], str]:
    status = cli.main(["report", *arguments])
    out, err = capsys.readouterr()
    return status, out.splitlines(), err


def cells(line: str) -> list[str]:
    return line.split()


def assert_valid_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 10_000


# --- rooms --------------------------------------------------------------------------------------


def test_rooms_table_lists_growth_per_room_and_day(analytics_database, capsys):
    status, lines, _ = report(capsys, "rooms", "--bot", BOT)

    assert status == 0
    assert lines[0] == f"Group growth of bot {BOT}, 7 days up to 2025-12-05"
    assert lines[1].split("  ")[0] == "day"
    assert lines[1].endswith("joins  leaves  net  members at end of day")
    rows = [cells(line) for line in lines[3:]]
    assert rows == [
        ["2025-12-03", ROOM_A, "Hiking", "club", "0", "0", "0", "5"],
        ["2025-12-04", ROOM_A, "Hiking", "club", "2", "0", "2", "7"],
        ["2025-12-05", ROOM_A, "Hiking", "club", "0", "1", "-1", "6"],
        ["2025-12-03", ROOM_B, "0", "0", "0", "1"],
        ["2025-12-05", ROOM_B, "1", "0", "1", "2"],
        ["total", "3", "1", "2"],
    ]


def test_rooms_days_keep_members_counted_before_the_window(analytics_database, capsys):
    status, lines, _ = report(capsys, "rooms", "--bot", BOT, "--days", "1")

    assert status == 0
    rows = [cells(line) for line in lines[3:]]
    assert rows == [
        ["2025-12-05", ROOM_A, "Hiking", "club", "0", "1", "-1", "6"],
        ["2025-12-05", ROOM_B, "1", "0", "1", "2"],
        ["total", "1", "1", "0"],
    ]


def test_rooms_headings_are_in_chinese_by_locale(analytics_database, capsys, monkeypatch):
    monkeypatch.setenv("WEHUB_LOCALE", "zh-CN")

    status, lines, _ = report(capsys, "rooms", "--bot", BOT)

    assert status == 0
    assert lines[0] == f"机器人 {BOT} 的群增长，截至 2025-12-05 的 7 天"
    assert cells(lines[1]) == ["日期", "群", "群名", "入群", "退群", "净增", "当日结束时成员数"]
    assert cells(lines[-1]) == ["合计", "3", "1", "2"]


def test_rooms_plot_writes_a_png(analytics_database, capsys, tmp_path):
    chart = tmp_path / "rooms.png"

    status, _, err = report(capsys, "rooms", "--bot", BOT, "--plot", str(chart))

    assert status == 0
    assert_valid_png(chart)
    assert f"chart written to {chart}" in err


def test_rooms_of_unknown_bot_report_no_data(analytics_database, capsys):
    status, lines, err = report(capsys, "rooms", "--bot", "nobody' OR '1'='1")

    assert status == 1
    assert lines == []
    assert f"no group growth recorded for bot nobody' OR '1'='1 in database {analytics_database}" in err


# --- activity -----------------------------------------------------------------------------------


def test_activity_of_every_bot_shows_the_bot_column(analytics_database, capsys):
    status, lines, _ = report(capsys, "activity")

    assert status == 0
    assert lines[0] == "Chat activity of all bots, 7 days up to 2025-12-05"
    assert cells(lines[1]) == ["day", "bot", "room", "messages", "distinct", "senders"]
    rows = [cells(line) for line in lines[3:]]
    assert rows == [
        ["2025-12-03", BOT, ROOM_A, "5", "2"],
        ["2025-12-04", BOT, ROOM_A, "1", "1"],
        ["2025-12-04", BOT, ROOM_B, "4", "1"],
        ["2025-12-05", OTHER_BOT, ROOM_B, "2", "1"],
        ["total", "12"],
    ]


def test_activity_of_one_bot_leaves_out_other_bots(analytics_database, capsys):
    status, lines, _ = report(capsys, "activity", "--bot", BOT, "--days", "2")

    assert status == 0
    assert lines[0] == f"Chat activity of bot {BOT}, 2 days up to 2025-12-04"
    assert cells(lines[1]) == ["day", "room", "messages", "distinct", "senders"]
    rows = [cells(line) for line in lines[3:]]
    assert rows == [
        ["2025-12-03", ROOM_A, "5", "2"],
        ["2025-12-04", ROOM_A, "1", "1"],
        ["2025-12-04", ROOM_B, "4", "1"],
        ["total", "10"],
    ]


def test_activity_with_zero_days_shows_every_day(analytics_database, capsys):
    status, lines, _ = report(capsys, "activity", "--bot", OTHER_BOT, "--days", "0")

    assert status == 0
    assert lines[0] == f"Chat activity of bot {OTHER_BOT}, every day up to 2025-12-05"
    assert [cells(line) for line in lines[3:]] == [["2025-12-05", ROOM_B, "2", "1"], ["total", "2"]]


def test_negative_days_are_rejected(analytics_database, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["report", "rooms", "--bot", BOT, "--days", "-1"])

    _, err = capsys.readouterr()
    assert exit_info.value.code == 2
    assert "invalid number of days '-1': expected 0 or more" in err


def test_activity_plot_writes_a_png(analytics_database, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WEHUB_LOCALE", "zh-CN")
    chart = tmp_path / "activity.png"

    status, _, err = report(capsys, "activity", "--plot", str(chart))

    assert status == 0
    assert_valid_png(chart)
    assert f"图表已写入 {chart}" in err


def test_plot_into_missing_folder_is_reported(analytics_database, capsys, tmp_path):
    chart = tmp_path / "absent" / "activity.png"

    status, _, err = report(capsys, "activity", "--plot", str(chart))

    assert status == 1
    assert f"cannot write the chart to {chart}" in err


# --- failures -----------------------------------------------------------------------------------


def test_missing_database_is_reported_with_its_name(clickhouse_dsn, capsys, monkeypatch):
    monkeypatch.setenv("WEHUB_CLICKHOUSE_DSN", clickhouse_dsn)
    monkeypatch.setenv("WEHUB_CLICKHOUSE_DATABASE", "no_such_database")
    monkeypatch.setenv("WEHUB_LOCALE", "en")

    status, lines, err = report(capsys, "activity")

    assert status == 1
    assert lines == []
    assert "database no_such_database" in err
    assert "WEHUB_CLICKHOUSE_DATABASE" in err


def test_database_name_not_identifier_rejected(clickhouse_dsn, capsys, monkeypatch):
    monkeypatch.setenv("WEHUB_CLICKHOUSE_DSN", clickhouse_dsn)
    monkeypatch.setenv("WEHUB_CLICKHOUSE_DATABASE", "wehub; DROP TABLE x")
    monkeypatch.setenv("WEHUB_LOCALE", "en")

    status, _, err = report(capsys, "rooms", "--bot", BOT)

    assert status == 1
    assert "WEHUB_CLICKHOUSE_DATABASE='wehub; DROP TABLE x' is invalid" in err


def test_embedded_folder_open_elsewhere_is_explained(tmp_path):
    folder = tmp_path / "held"
    script = (
        "import time, clickhouse_connect\n"
        f"client = clickhouse_connect.get_client(dsn='chdb://{folder}')\n"
        "client.command('CREATE DATABASE held')\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "ready"
            environment = {**os.environ, "WEHUB_CLICKHOUSE_DSN": f"chdb://{folder}", "WEHUB_LOCALE": "en"}
            finished = subprocess.run(
                [sys.executable, "-m", "wehub.cli", "report", "activity"],
                env=environment, capture_output=True, text=True, timeout=120, check=False,
            )
        finally:
            holder.kill()

    assert finished.returncode == 1
    assert f"the embedded ClickHouse in {folder} is open in another process" in finished.stderr
    assert "wehub consume" in finished.stderr


# --- table layout -------------------------------------------------------------------------------


def test_wide_characters_take_two_columns():
    assert display_width("入群") == 4
    assert display_width("joins") == 5
    assert display_width("🙏") == 2


def test_joined_emoji_take_one_wide_cell():
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"

    assert display_width(family) == 2
    assert display_width("间" + family + "群") == 6
    assert display_width("\u2764\ufe0f") == 1


def test_table_aligns_chinese_headings_and_numbers():
    text = format_table(["日期", "入群"], [["2025-12-03", 12], ["2025-12-04", 3]], numeric=[False, True])

    assert text.splitlines() == [
        "日期        入群",
        "----------  ----",
        "2025-12-03    12",
        "2025-12-04     3",
    ]
