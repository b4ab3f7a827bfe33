"""The contacts consumer: current contacts per bot and the history of friend events.

A report_contact is a full snapshot: entities it lists are marked `in_snapshot`, and earlier
rows it no longer lists lose `in_snapshot` (users also `is_friend`). A snapshot the gateway
split into parts is reconciled once all of its parts were seen.

Events of different actions come from different topics, so they can arrive out of order. The
descriptive fields, is_friend and in_snapshot are each last-writer-wins on the gateway time of
the event that set them (`fields_version`, `friend_version`, `snapshot_version`). So a replayed
event, or one older than what a row already reflects, leaves the row as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clickhouse_connect.driver.client import Client

from consumers import rawmsg
from consumers.clickhouse import Rows
from consumers.messages import to_datetime
from consumers.runner import Event
from consumers.state import Row, load_rows, ordered
from wehub.settings import Settings

CONTACT_COLUMNS = (
    "appid", "bot_wxid", "wxid", "kind", "is_friend", "in_snapshot", "snapshot_id", "wx_alias", "nickname",
    "remark_name", "head_img", "sex", "country", "province", "city", "name", "owner_wxid", "member_count",
    "source", "event_id", "updated_at", "fields_version", "friend_version", "snapshot_version", "version",
)
FRIEND_EVENT_COLUMNS = (
    "appid", "bot_wxid", "event_id", "event_time", "event_type", "wxid", "nickname", "wx_alias", "head_img",
    "notice_word", "sourceusername", "sourcenickname", "v1", "v2", "scene", "status", "raw_msg",
)
_TEXT_FIELDS = ("wx_alias", "nickname", "remark_name", "head_img", "country", "province", "city", "name",
                "owner_wxid")
_NUMBER_FIELDS = ("sex", "member_count")
_PART_SCHEMA = "wehub.event.ReportContactPartEvent"


def is_room(wxid: str) -> bool:
    """Room ids end in @chatroom, enterprise rooms in @im.chatroom."""
    return wxid.endswith(("@chatroom", "@im.chatroom"))


def _empty_contact(appid: str, bot_wxid: str, wxid: str, kind: str) -> Row:
    row: Row = dict.fromkeys(CONTACT_COLUMNS, "")
    row.update(appid=appid, bot_wxid=bot_wxid, wxid=wxid, kind=kind, is_friend=0, in_snapshot=0,
               sex=None, member_count=None, fields_version=0, friend_version=0, snapshot_version=0, version=0)
    return row


class _BotContacts:
    def __init__(self, rows: list[Row]) -> None:
        self.rows = {row["wxid"]: row for row in rows}
        self.changed: set[str] = set()
        self.parts_seen: dict[str, set[int]] = {}


class ContactsProcessor:
    name = "contacts"
    ordered = True

    def __init__(self, settings: Settings) -> None:
        self.database = str(settings.clickhouse_database)
        self._bots: dict[tuple[str, str], _BotContacts] = {}

    def topic_suffixes(self) -> Sequence[str]:
        return ("report_contact", "report_contact_update", "report_new_friend", "report_friend_removed",
                "report_friend_add_request", "report_zoom_check_status")

    def validate(self, action: str, schema_name: str, record: dict[str, Any]) -> None:
        return None

    def reset(self) -> None:
        self._bots.clear()

    def _bot(self, client: Client, record: dict[str, Any]) -> _BotContacts:
        key = (record["appid"], record["bot_wxid"])
        state = self._bots.get(key)
        if state is None:
            rows = load_rows(client, self.database, "contacts_store", CONTACT_COLUMNS, appid=key[0], bot_wxid=key[1])
            state = self._bots[key] = _BotContacts(rows)
        return state

    def process(self, client: Client, events: list[Event]) -> list[Rows]:
        friend_events: list[Sequence[Any]] = []
        for event in sorted(events, key=lambda item: item.order_key):
            state = self._bot(client, event.record)
            friend_events.extend(self._apply(state, event))
        changed: dict[Any, Row] = {}
        for state in self._bots.values():
            changed.update({(row["bot_wxid"], wxid): row for wxid, row in state.rows.items() if wxid in state.changed})
            state.changed.clear()
        return [Rows("contacts_store", CONTACT_COLUMNS, ordered(changed, CONTACT_COLUMNS)),
                Rows("friend_events_store", FRIEND_EVENT_COLUMNS, friend_events)]

    def _apply(self, state: _BotContacts, event: Event) -> list[Sequence[Any]]:
        record = event.record
        action = record["action"]
        if event.schema_name == _PART_SCHEMA:
            self._apply_part(state, record)
            return []
        data = record["data"]
        if action == "report_contact":
            for kind, items in (("group", data["group_list"]), ("user", data["friend_list"]),
                                ("public", data["public_list"])):
                for item in items:
                    self._upsert_listed(state, record, kind, item, record["event_id"])
            self._reconcile(state, record, record["event_id"])
            return []
        if action == "report_contact_update":
            for item in data["update_list"]:
                kind = "group" if is_room(item["wxid"]) else "user"
                self._upsert(state, record, item["wxid"], kind, item, is_friend=item.get("is_friend"))
            return []
        return self._friend_event(state, record, action, data)

    def _apply_part(self, state: _BotContacts, record: dict[str, Any]) -> None:
        snapshot_id = record["snapshot_id"]
        kind = str(record["kind"])
        item = record[kind]
        if item is not None:
            self._upsert_listed(state, record, "user" if kind == "friend" else kind, item, snapshot_id)
        seen = state.parts_seen.setdefault(snapshot_id, set())
        seen.add(int(record["part_index"]))
        listed = sum(1 for row in state.rows.values() if row["snapshot_id"] == snapshot_id)
        if len(seen) >= int(record["part_count"]) or listed >= int(record["part_count"]):
            self._reconcile(state, record, snapshot_id)
            state.parts_seen.pop(snapshot_id, None)

    def _upsert_listed(self, state: _BotContacts, record: dict[str, Any], kind: str, item: dict[str, Any],
                       snapshot_id: str) -> None:
        version = int(record["received_at_ms"])
        row = self._upsert(state, record, item["wxid"], kind, item, is_friend=1 if kind == "user" else None)
        if version >= row["snapshot_version"]:
            row.update(in_snapshot=1, snapshot_id=snapshot_id, snapshot_version=version)
            self._touch(state, record, row)

    def _reconcile(self, state: _BotContacts, record: dict[str, Any], snapshot_id: str) -> None:
        """Rows that this snapshot does not list, and no newer event set, are no longer the bot's contacts."""
        version = int(record["received_at_ms"])
        for row in state.rows.values():
            if row["snapshot_id"] == snapshot_id:
                continue
            changed = False
            if row["in_snapshot"] and row["snapshot_version"] < version:
                row.update(in_snapshot=0, snapshot_version=version)
                changed = True
            if row["is_friend"] and row["friend_version"] < version:
                row.update(is_friend=0, friend_version=version)
                changed = True
            if changed:
                self._touch(state, record, row)

    def _upsert(self, state: _BotContacts, record: dict[str, Any], wxid: str, kind: str, item: dict[str, Any],
                *, is_friend: int | None) -> Row:
        """Merge the non-empty fields of `item` and `is_friend` into the row of `wxid`, where they are newer."""
        version = int(record["received_at_ms"])
        row = state.rows.get(wxid)
        if row is None:
            row = state.rows[wxid] = _empty_contact(record["appid"], record["bot_wxid"], wxid, kind)
        if version >= row["fields_version"]:
            for name in _TEXT_FIELDS:
                if item.get(name):
                    row[name] = item[name]
            for name in _NUMBER_FIELDS:
                if item.get(name) is not None:
                    row[name] = item[name]
            row.update(kind=kind, fields_version=version)
        if is_friend is not None and version >= row["friend_version"]:
            row.update(is_friend=1 if is_friend else 0, friend_version=version)
        self._touch(state, record, row)
        return row

    def _touch(self, state: _BotContacts, record: dict[str, Any], row: Row) -> None:
        """Mark the row for insertion with a version above every row it replaces."""
        version = int(record["received_at_ms"])
        if version >= row["version"]:
            row.update(source=record["action"], event_id=record["event_id"], updated_at=to_datetime(version),
                       version=version)
        state.changed.add(row["wxid"])

    def _friend_event(self, state: _BotContacts, record: dict[str, Any], action: str,
                      data: dict[str, Any]) -> list[Sequence[Any]]:
        fields: dict[str, Any] = dict.fromkeys(FRIEND_EVENT_COLUMNS, "")
        fields.update(appid=record["appid"], bot_wxid=record["bot_wxid"], event_id=record["event_id"],
                      event_time=to_datetime(int(record["received_at_ms"])), status=None)
        if action == "report_new_friend":
            fields.update({name: data.get(name) or "" for name in
                           ("nickname", "wx_alias", "head_img", "notice_word", "sourceusername", "sourcenickname")})
            fields.update(event_type="new_friend", wxid=data["fans_wxid"])
            self._upsert(state, record, data["fans_wxid"], "user", data, is_friend=1)
        elif action == "report_friend_removed":
            fields.update(event_type="friend_removed", wxid=data["wxid_removed"])
            self._upsert(state, record, data["wxid_removed"], "user", {}, is_friend=0)
        elif action == "report_friend_add_request":
            attributes = rawmsg.request_attributes(data.get("raw_msg"))
            fields.update(event_type="add_request", wxid=attributes.get("fromusername", ""),
                          nickname=attributes.get("fromnickname", ""), scene=attributes.get("scene", ""),
                          v1=data.get("v1") or "", v2=data.get("v2") or "", notice_word=data.get("notice_word") or "",
                          raw_msg=data.get("raw_msg") or "")
        elif action == "report_zoom_check_status":
            # A zoom check reports what the other side did; it does not change is_friend.
            fields.update(event_type="zoom_check", wxid=data["wxid"], status=data.get("status"))
        else:
            return []
        return [[fields[name] for name in FRIEND_EVENT_COLUMNS]]
