"""Message rows: direction, chat kind, dedup keys, event time and link fields from raw_msg."""

from __future__ import annotations

from typing import Any

import pytest

from consumers.messages import COLUMNS, chat_kind, dedup_key, direction, message_row

BOT = "wxid_bot"
RECEIVED_MS = 1_764_800_000_000


def _record(**msg: Any) -> dict[str, Any]:
    unit: dict[str, Any] = {
            "msg_type": 1, "room_wxid": None, "wxid_from": "wxid_friend", "wxid_to": BOT, "msg_id": None,
            "msg_timestamp": None, "msg": "hello", "atUserList": [], "file_index": None, "file_name": None,
            "file_size": None, "raw_msg": None, "emoji_url": None, "link_title": None, "link_desc": None,
            "link_url": None, "link_img_url": None, "transferid": None, "paysubtype": None, "extra": None}
    unit.update(msg)
    return {"event_id": "event-1", "received_at_ms": RECEIVED_MS, "appid": "app", "bot_wxid": BOT,
            "gateway": "gw", "transport": "http", "data": {"msg": unit, "extra": None}}


def _row(**msg: Any) -> dict[str, Any]:
    return dict(zip(COLUMNS, message_row(_record(**msg)), strict=True))


@pytest.mark.parametrize(("room_wxid", "expected"), [
    ("", "private"),
    (None, "private"),
    ("12109199501@chatroom", "group"),
    ("47606400495@im.chatroom", "enterprise_group"),
])
def test_chat_kind_follows_room_suffix(room_wxid: str | None, expected: str) -> None:
    assert chat_kind(room_wxid) == expected


def test_message_from_bot_is_sent() -> None:
    assert direction(BOT, BOT) == "sent"
    assert direction(BOT, "wxid_friend") == "incoming"


def test_dedup_key_prefers_msg_id() -> None:
    assert dedup_key({"msg_id": "1604344849661264321"}, "event-1") == "msg:1604344849661264321"
    assert dedup_key({"msg_id": None}, "event-1") == "event:event-1"
    assert dedup_key({"msg_id": ""}, "event-1") == "event:event-1"


def test_redelivered_message_keeps_its_key() -> None:
    first = _row(msg_id="42")
    again = dict(zip(COLUMNS, message_row(dict(_record(msg_id="42"), event_id="event-2")), strict=True))

    assert again["event_id"] != first["event_id"]
    assert again["dedup_key"] == first["dedup_key"]


def test_event_time_is_msg_timestamp_when_sent() -> None:
    row = _row(msg_timestamp=1_764_800_104_183)

    assert row["event_time"] == 1_764_800_104_183
    assert row["msg_timestamp"] == 1_764_800_104_183


def test_event_time_in_seconds_is_scaled() -> None:
    row = _row(msg_timestamp=1_764_800_104)

    assert row["event_time"] == 1_764_800_104_000


def test_event_time_falls_back_to_received_at() -> None:
    row = _row()

    assert row["event_time"] == RECEIVED_MS
    assert row["received_at"] == RECEIVED_MS
    assert row["msg_timestamp"] is None


def test_empty_link_fields_are_filled_from_raw_msg() -> None:
    raw = ("<msg><appmsg><title>T</title><des>D</des><url>https://example.com/a?b=1&amp;c=2</url>"
           "<thumburl>http://img</thumburl></appmsg></msg>")

    row = _row(msg_type=49, link_title="", link_url="", raw_msg=raw)

    assert row["link_title"] == "T"
    assert row["link_desc"] == "D"
    assert row["link_url"] == "https://example.com/a?b=1&c=2"
    assert row["link_img_url"] == "http://img"
    assert row["raw_msg"] == raw


def test_client_link_fields_win_over_raw_msg() -> None:
    raw = "<msg><appmsg><title>from xml</title><url>https://xml</url></appmsg></msg>"

    row = _row(msg_type=49, link_title="from client", link_url="https://client", raw_msg=raw)

    assert row["link_title"] == "from client"
    assert row["link_url"] == "https://client"


def test_transfer_fields_are_kept() -> None:
    row = _row(msg_type=4902, transferid="1000050001201912", paysubtype=3)

    assert row["transferid"] == "1000050001201912"
    assert row["paysubtype"] == 3
    assert row["chat_kind"] == "private"


def test_mentions_keep_their_order() -> None:
    row = _row(room_wxid="1@chatroom", atUserList=["wxid_a", "wxid_b"])

    assert row["atUserList"] == ["wxid_a", "wxid_b"]


def test_image_raw_msg_is_stored_unparsed() -> None:
    row = _row(msg_type=3, file_index="abc", raw_msg="<msg><img length=")

    assert row["raw_msg"] == "<msg><img length="
    assert row["raw_msg_error"] == ""


def test_file_raw_msg_parsed_only_for_missing_fields() -> None:
    raw = "<msg><appmsg><title>a.pdf</title><appattach><totallen>1234</totallen></appattach></appmsg></msg>"

    complete = _row(msg_type=4903, file_name="b.pdf", file_size=99, raw_msg="<msg><appmsg>")
    missing_size = _row(msg_type=4903, file_name="b.pdf", raw_msg=raw)

    assert (complete["file_name"], complete["file_size"], complete["raw_msg_error"]) == ("b.pdf", 99, "")
    assert (missing_size["file_name"], missing_size["file_size"]) == ("b.pdf", 1234)


def test_card_with_invalid_raw_msg_records_error() -> None:
    row = _row(msg_type=42, raw_msg="<msg username=")

    assert row["raw_msg_error"] == "invalid_xml"
