"""The sessions consumer: every login and logout of a bot, with its machine and client version."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clickhouse_connect.driver.client import Client

from consumers.clickhouse import Rows
from consumers.messages import to_datetime
from consumers.runner import Event
from wehub.settings import Settings

COLUMNS = ("appid", "bot_wxid", "event_id", "event_type", "event_time", "machine_id", "client_version", "nickname",
           "wx_alias", "head_img", "local_ip", "client_address", "client_session", "transport", "gateway")


def session_row(record: dict[str, Any]) -> list[Any]:
    data = record["data"]
    return [
        record["appid"], record["bot_wxid"], record["event_id"], record["action"],
        to_datetime(int(record["received_at_ms"])), data.get("machine_id") or "", data.get("client_version") or "",
        data.get("nickname") or "", data.get("wx_alias") or "", data.get("head_img") or "",
        data.get("local_ip") or "", record["client_address"], record.get("client_session") or "",
        record["transport"], record["gateway"],
    ]


class SessionsProcessor:
    name = "sessions"
    ordered = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def topic_suffixes(self) -> Sequence[str]:
        return ("login", "logout")

    def validate(self, action: str, schema_name: str, record: dict[str, Any]) -> None:
        return None

    def process(self, client: Client, events: list[Event]) -> list[Rows]:
        return [Rows("bot_sessions_store", COLUMNS, [session_row(event.record) for event in events])]

    def reset(self) -> None:
        return None
