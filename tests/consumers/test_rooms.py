"""Room membership from snapshots and member changes, in order, out of order and replayed."""

from __future__ import annotations

from typing import Any

from consumers.rooms import MEMBER_EVENT_COLUMNS, RoomsProcessor, _BotRooms
from consumers.runner import Event
from wehub.settings import load

APPID, BOT, ROOM = "app", "wxid_bot", "1@chatroom"


def _processor() -> RoomsProcessor:
    processor = RoomsProcessor(load({}))
    processor._bots[(APPID, BOT)] = _BotRooms([], [])
    return processor


def _event(action: str, at_ms: int, data: dict[str, Any]) -> Event:
    record = {"appid": APPID, "bot_wxid": BOT, "action": action, "event_id": f"{action}-{at_ms}",
              "received_at_ms": at_ms, "data": data}
    return Event(f"t.{action}", 0, at_ms, f"wehub.event.{action}", record)


def _snapshot(at_ms: int, members: list[str]) -> Event:
    room = {"room_wxid": ROOM, "name": "Room", "owner_wxid": None, "head_img": None, "member_count": len(members),
            "memberInfo_list": [{"wxid": wxid} for wxid in members]}
    return _event("report_room_member_info", at_ms, {"room_data_list": [room]})


def _change(at_ms: int, flag: int, members: list[str]) -> Event:
    return _event("report_room_member_change", at_ms, {"room_wxid": ROOM, "owner_wxid": None, "wxid_list": members,
                                                       "flag": flag})


def _ledger(processor: RoomsProcessor, events: list[Event]) -> list[tuple[str, str, str]]:
    rows = processor.process(None, events)  # type: ignore[arg-type]
    ledger = next(table for table in rows if table.table == "room_member_events_store")
    named = [dict(zip(MEMBER_EVENT_COLUMNS, row, strict=True)) for row in ledger.rows]
    return sorted((row["member_wxid"], row["change"], row["source"]) for row in named)


def _present(processor: RoomsProcessor) -> set[str]:
    members = processor._bots[(APPID, BOT)].members
    return {member for (_, member), row in members.items() if row["present"]}


def test_first_snapshot_is_baseline() -> None:
    processor = _processor()

    ledger = _ledger(processor, [_snapshot(1, [BOT, "a", "b"])])

    assert ledger == [("a", "join", "initial"), ("b", "join", "initial"), (BOT, "join", "initial")]
    assert _present(processor) == {BOT, "a", "b"}


def test_snapshot_difference_gives_leave_and_join() -> None:
    processor = _processor()
    _ledger(processor, [_snapshot(1, [BOT, "a", "b"])])

    ledger = _ledger(processor, [_snapshot(2, [BOT, "b", "c"])])

    assert ledger == [("a", "leave", "snapshot"), ("c", "join", "snapshot")]
    assert _present(processor) == {BOT, "b", "c"}


def test_announced_change_is_not_counted_again() -> None:
    processor = _processor()
    _ledger(processor, [_snapshot(1, [BOT, "a"])])

    ledger = _ledger(processor, [_change(2, 1, ["c"]), _change(3, 0, ["a"]), _snapshot(4, [BOT, "c"])])

    assert ledger == [("a", "leave", "member_change"), ("c", "join", "member_change")]


def test_older_change_after_snapshot_is_ignored() -> None:
    processor = _processor()
    _ledger(processor, [_snapshot(1, [BOT, "a"])])
    _ledger(processor, [_snapshot(4, [BOT])])

    ledger = _ledger(processor, [_change(3, 0, ["a"])])

    assert ledger == []
    assert _present(processor) == {BOT}


def test_baseline_arriving_late_keeps_ledger_balanced() -> None:
    processor = _processor()
    _ledger(processor, [_change(5, 0, ["a"])])

    ledger = _ledger(processor, [_snapshot(1, [BOT, "a"])])

    assert ledger == [("a", "join", "initial"), (BOT, "join", "initial")]
    assert _present(processor) == {BOT}


def _ledger_rows(processor: RoomsProcessor, events: list[Event]) -> set[tuple[Any, ...]]:
    rows = processor.process(None, events)  # type: ignore[arg-type]
    return {tuple(row) for table in rows if table.table == "room_member_events_store" for row in table.rows}


def test_replayed_events_add_no_new_rows() -> None:
    processor = _processor()
    events = [_snapshot(1, [BOT, "a", "b"]), _change(2, 0, ["a"]), _snapshot(3, [BOT, "d"])]
    first = _ledger_rows(processor, events)
    before = _present(processor)

    replayed = _ledger_rows(processor, events)

    # Rows may be written again, but with the keys of the first pass, so they merge away.
    assert replayed <= first
    assert _present(processor) == before
