"""The rooms consumer: group info, current members per room, and a ledger of joins and leaves.

Members change in two ways. A report_room_member_change announces joins and leaves. A member
snapshot (report_contact's member_wxid_list, report_new_room, report_room_member_info) lists
everyone, and its difference from the members known before it becomes joins and leaves with
source `snapshot`: WeChat does not announce every leave. The first snapshot of a room (by
gateway time) is its baseline, recorded with source `initial`, which the `room_member_events`
view leaves out.

Events of different actions come from different topics and can arrive out of order. Each
member row is last-writer-wins on the gateway time of the event that changed it, so a replayed
event, or one older than what the row already reflects, changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clickhouse_connect.driver.client import Client

from consumers.clickhouse import Rows
from consumers.contacts import is_room
from consumers.messages import chat_kind, to_datetime
from consumers.runner import Event, Poison
from consumers.state import Row, load_rows, ordered
from wehub.settings import Settings

ROOM_COLUMNS = ("appid", "bot_wxid", "room_wxid", "chat_kind", "name", "owner_wxid", "head_img", "member_count",
                "source", "event_id", "updated_at", "info_version", "baseline_version", "version")
MEMBER_COLUMNS = ("appid", "bot_wxid", "room_wxid", "member_wxid", "present", "wx_alias", "room_nickname",
                  "nickname", "head_img", "changed_at", "event_id", "version")
MEMBER_EVENT_COLUMNS = ("appid", "bot_wxid", "room_wxid", "member_wxid", "change", "source", "source_action",
                        "event_id", "event_time")
_MEMBER_DETAILS = ("wx_alias", "room_nickname", "nickname", "head_img")
_CONTACT_PART = "wehub.event.ReportContactPartEvent"
_MEMBER_INFO_PART = "wehub.event.ReportRoomMemberInfoPartEvent"


class _BotRooms:
    def __init__(self, rooms: list[Row], members: list[Row]) -> None:
        self.rooms = {row["room_wxid"]: row for row in rooms}
        self.members = {(row["room_wxid"], row["member_wxid"]): row for row in members}
        self.changed_rooms: set[str] = set()
        self.changed_members: set[tuple[str, str]] = set()


class _Change:
    """The event being applied: who, when, and the ledger rows it produced."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self.version = int(record["received_at_ms"])
        self.event_id = str(record["event_id"])
        self.at = to_datetime(self.version)
        self.ledger: list[Sequence[Any]] = []

    def is_older_or_same(self, row: Row) -> bool:
        return (self.version, self.event_id) <= (int(row["version"]), str(row["event_id"]))

    def log(self, room_wxid: str, member_wxid: str, change: str, source: str) -> None:
        record = self.record
        self.ledger.append((record["appid"], record["bot_wxid"], room_wxid, member_wxid, change, source,
                            record["action"], self.event_id, self.at))


class RoomsProcessor:
    name = "rooms"
    ordered = True

    def __init__(self, settings: Settings) -> None:
        self.database = str(settings.clickhouse_database)
        self._bots: dict[tuple[str, str], _BotRooms] = {}

    def topic_suffixes(self) -> Sequence[str]:
        return ("report_contact", "report_contact_update", "report_new_room", "report_room_member_info",
                "report_room_member_change")

    def validate(self, action: str, schema_name: str, record: dict[str, Any]) -> None:
        if action == "report_room_member_change" and record["data"]["flag"] not in (0, 1):
            raise Poison("invalid_record", f"data.flag: {record['data']['flag']} is invalid, expected 0 or 1")

    def reset(self) -> None:
        self._bots.clear()

    def _bot(self, client: Client, record: dict[str, Any]) -> _BotRooms:
        # NOTE: every member row of a bot is cached; a bot in thousands of large rooms would need
        # a cache per room instead.
        key = (record["appid"], record["bot_wxid"])
        state = self._bots.get(key)
        if state is None:
            rooms = load_rows(client, self.database, "rooms_store", ROOM_COLUMNS, appid=key[0], bot_wxid=key[1])
            members = load_rows(client, self.database, "room_members_store", MEMBER_COLUMNS, appid=key[0],
                                bot_wxid=key[1])
            state = self._bots[key] = _BotRooms(rooms, members)
        return state

    def process(self, client: Client, events: list[Event]) -> list[Rows]:
        ledger: list[Sequence[Any]] = []
        for event in sorted(events, key=lambda item: item.order_key):
            change = _Change(event.record)
            self._apply(self._bot(client, event.record), event.schema_name, change)
            ledger.extend(change.ledger)
        rooms: dict[Any, Row] = {}
        members: dict[Any, Row] = {}
        for (_, bot_wxid), state in self._bots.items():
            rooms.update({(bot_wxid, wxid): state.rooms[wxid] for wxid in state.changed_rooms})
            members.update({(bot_wxid, *key): state.members[key] for key in state.changed_members})
            state.changed_rooms.clear()
            state.changed_members.clear()
        # The ledger goes first and room state last: a crash in between replays the batch, which
        # rebuilds the same ledger rows (merged away) from the state as it was before.
        return [Rows("room_member_events_store", MEMBER_EVENT_COLUMNS, ledger),
                Rows("room_members_store", MEMBER_COLUMNS, ordered(members, MEMBER_COLUMNS)),
                Rows("rooms_store", ROOM_COLUMNS, ordered(rooms, ROOM_COLUMNS))]

    def _apply(self, state: _BotRooms, schema_name: str, change: _Change) -> None:
        record = change.record
        if schema_name == _CONTACT_PART:
            group = record["group"] if record["kind"] == "group" else None
            if group is not None:
                self._room_info(state, change, group["wxid"], group)
                self._snapshot(state, change, group["wxid"], {wxid: None for wxid in group["member_wxid_list"]})
            return
        if schema_name == _MEMBER_INFO_PART:
            self._member_info(state, change, record["room"])
            return
        data = record["data"]
        action = record["action"]
        if action == "report_contact":
            for group in data["group_list"]:
                self._room_info(state, change, group["wxid"], group)
                self._snapshot(state, change, group["wxid"], {wxid: None for wxid in group["member_wxid_list"]})
        elif action == "report_contact_update":
            for item in data["update_list"]:
                if is_room(item["wxid"]):
                    self._room_info(state, change, item["wxid"], item)
        elif action == "report_new_room":
            members = {member["wxid"]: member for member in data["memberInfo_list"]}
            self._room_info(state, change, data["wxid"], {**data, "member_count": len(members) or None})
            self._snapshot(state, change, data["wxid"], members)
        elif action == "report_room_member_info":
            for room in data["room_data_list"]:
                self._member_info(state, change, room)
        elif action == "report_room_member_change":
            self._member_change(state, change, data)

    def _member_info(self, state: _BotRooms, change: _Change, room: dict[str, Any]) -> None:
        self._room_info(state, change, room["room_wxid"], room)
        members = {member["wxid"]: member for member in room["memberInfo_list"]}
        self._snapshot(state, change, room["room_wxid"], members)

    def _room(self, state: _BotRooms, change: _Change, room_wxid: str) -> Row:
        row = state.rooms.get(room_wxid)
        if row is None:
            row = state.rooms[room_wxid] = {
                "appid": change.record["appid"], "bot_wxid": change.record["bot_wxid"], "room_wxid": room_wxid,
                "chat_kind": chat_kind(room_wxid), "name": "", "owner_wxid": "", "head_img": "",
                "member_count": None, "source": "", "event_id": "", "updated_at": change.at,
                "info_version": 0, "baseline_version": 0, "version": 0,
            }
        return row

    def _touch_room(self, state: _BotRooms, change: _Change, row: Row) -> None:
        """Mark the room for insertion with a version above every row it replaces."""
        if change.version >= int(row["version"]):
            row.update(source=change.record["action"], event_id=change.event_id, updated_at=change.at,
                       version=change.version)
        state.changed_rooms.add(row["room_wxid"])

    def _room_info(self, state: _BotRooms, change: _Change, room_wxid: str, info: dict[str, Any]) -> None:
        row = self._room(state, change, room_wxid)
        if change.version < int(row["info_version"]):
            return
        for name in ("name", "owner_wxid", "head_img"):
            if info.get(name):
                row[name] = info[name]
        if info.get("member_count") is not None:
            row["member_count"] = info["member_count"]
        row["info_version"] = change.version
        self._touch_room(state, change, row)

    def _is_baseline(self, state: _BotRooms, change: _Change, room_wxid: str) -> bool:
        """True for the room's earliest snapshot so far, whose members are its starting point, not joins."""
        row = self._room(state, change, room_wxid)
        baseline = int(row["baseline_version"])
        if baseline and change.version > baseline:
            return False
        row["baseline_version"] = change.version
        self._touch_room(state, change, row)
        return True

    def _set_member(self, state: _BotRooms, change: _Change, room_wxid: str, member_wxid: str, *, present: int,
                    details: dict[str, Any] | None) -> None:
        key = (room_wxid, member_wxid)
        row = state.members.get(key)
        if row is None:
            row = state.members[key] = {
                "appid": change.record["appid"], "bot_wxid": change.record["bot_wxid"], "room_wxid": room_wxid,
                "member_wxid": member_wxid, "wx_alias": "", "room_nickname": "", "nickname": "", "head_img": "",
            }
        for name in _MEMBER_DETAILS:
            if details and details.get(name):
                row[name] = details[name]
        row.update(present=present, changed_at=change.at, event_id=change.event_id, version=change.version)
        state.changed_members.add(key)

    def _snapshot(self, state: _BotRooms, change: _Change, room_wxid: str,
                  members: dict[str, dict[str, Any] | None]) -> None:
        baseline = self._is_baseline(state, change, room_wxid)
        for member_wxid, details in members.items():
            row = state.members.get((room_wxid, member_wxid))
            if row is not None and change.is_older_or_same(row):
                if baseline and not row["present"]:
                    # A later leave is in the ledger already; its starting join belongs there too.
                    change.log(room_wxid, member_wxid, "join", "initial")
                continue
            if row is None or not row["present"]:
                change.log(room_wxid, member_wxid, "join", "initial" if baseline else "snapshot")
            self._set_member(state, change, room_wxid, member_wxid, present=1, details=details)
        gone = [key for key, row in state.members.items()
                if key[0] == room_wxid and row["present"] and key[1] not in members
                and not change.is_older_or_same(row)]
        for key in gone:
            change.log(room_wxid, key[1], "leave", "snapshot")
            self._set_member(state, change, room_wxid, key[1], present=0, details=None)

    def _member_change(self, state: _BotRooms, change: _Change, data: dict[str, Any]) -> None:
        room_wxid = data["room_wxid"]
        joined = int(data["flag"]) == 1
        for member_wxid in data["wxid_list"]:
            row = state.members.get((room_wxid, member_wxid))
            if row is not None and change.is_older_or_same(row):
                continue
            was_present = bool(row is not None and row["present"])
            if joined and not was_present:
                change.log(room_wxid, member_wxid, "join", "member_change")
            elif not joined and (was_present or row is None):
                change.log(room_wxid, member_wxid, "leave", "member_change")
            self._set_member(state, change, room_wxid, member_wxid, present=1 if joined else 0, details=None)
        if data.get("owner_wxid"):
            self._room_info(state, change, room_wxid, {"owner_wxid": data["owner_wxid"]})
