"""The messages consumer: every report_new_msg as one row of `messages`, each type's fields in columns."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from consumers import rawmsg
from consumers.clickhouse import Rows, insert_encoded, make_client
from consumers.runner import Event, Poison
from schemas import topics
from schemas.codec import CODEC
from schemas.container import ContainerWriter
from wehub.settings import Settings

# A msg_timestamp below this is in seconds (some client builds), above it in milliseconds.
_SECONDS_LIMIT = 100_000_000_000
# msg_types whose row takes no field from raw_msg (text, image, voice, video, emoji, transfer,
# system notice), so their raw_msg is stored but not parsed.
_NO_RAW_MSG_FIELDS = frozenset({1, 3, 34, 43, 47, 4902, 10000})

COLUMNS = (
    "appid", "bot_wxid", "dedup_key", "event_id", "received_at", "event_time", "msg_id", "msg_timestamp",
    "msg_type", "direction", "chat_kind", "room_wxid", "wxid_from", "wxid_to", "msg", "atUserList",
    "file_index", "file_name", "file_size", "emoji_url", "link_title", "link_desc", "link_url", "link_img_url",
    "transferid", "paysubtype", "card_wxid", "card_nickname", "card_alias", "miniprogram_title",
    "miniprogram_username", "miniprogram_appid", "miniprogram_pagepath", "raw_msg", "raw_msg_error", "extra",
    "gateway", "transport",
)


def to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def chat_kind(room_wxid: str | None) -> str:
    """private (no room), enterprise_group (`@im.chatroom`) or group."""
    if not room_wxid:
        return "private"
    if room_wxid.endswith("@im.chatroom"):
        return "enterprise_group"
    return "group"


def direction(bot_wxid: str, wxid_from: str | None) -> str:
    """sent when the bot itself is the sender (WeHub reports the bot's own messages too), else incoming."""
    return "sent" if wxid_from == bot_wxid else "incoming"


def dedup_key(msg: dict[str, Any], event_id: str) -> str:
    """msg_id when the client sent one (a redelivered message keeps it), else the gateway's event id."""
    msg_id = msg.get("msg_id")
    return f"msg:{msg_id}" if msg_id else f"event:{event_id}"


def msg_timestamp_ms(value: int | None) -> int | None:
    if not value or value <= 0:
        return None
    return value * 1000 if value < _SECONDS_LIMIT else value


def parses_raw_msg(msg_type: int, msg: dict[str, Any]) -> bool:
    """True when raw_msg may add a field to the row: a contact card, or XML with an `<appmsg>`.

    The row skips parsing XML that adds nothing. migrations/070_messages_intake.sql rejects the
    records for which this may be True, so keep the two in step.
    """
    raw_msg = msg.get("raw_msg")
    if not raw_msg or msg_type in _NO_RAW_MSG_FIELDS:
        return False
    if msg_type == 4903 and msg.get("file_name") and msg.get("file_size") is not None:
        return False
    return msg_type == 42 or "appmsg" in raw_msg


def message_row(record: dict[str, Any]) -> tuple[Any, ...]:
    """Build the `messages` row (in COLUMNS order) of a ReportNewMsgEvent record.

    Times are integer milliseconds, which clickhouse-connect writes to DateTime64(3) columns as
    they are. A datetime per value would cost more than the rest of the row.
    """
    msg: dict[str, Any] = record["data"]["msg"]
    msg_type = int(msg["msg_type"])
    raw_msg = msg.get("raw_msg")
    parsed = rawmsg.parse(msg_type, raw_msg) if parses_raw_msg(msg_type, msg) else rawmsg.NO_FIELDS
    received_ms = int(record["received_at_ms"])
    sent_ms = msg_timestamp_ms(msg.get("msg_timestamp"))
    bot_wxid = record["bot_wxid"]
    room_wxid = msg.get("room_wxid")
    wxid_from = msg.get("wxid_from")
    file_size = msg.get("file_size")
    return (
        record["appid"], bot_wxid, dedup_key(msg, record["event_id"]), record["event_id"],
        received_ms, sent_ms or received_ms, msg.get("msg_id") or "", sent_ms,
        msg_type, direction(bot_wxid, wxid_from), chat_kind(room_wxid),
        room_wxid or "", wxid_from or "", msg.get("wxid_to") or "",
        msg.get("msg") or "", msg.get("atUserList") or [],
        msg.get("file_index") or "", msg.get("file_name") or parsed.file_name,
        file_size if file_size is not None else parsed.file_size,
        msg.get("emoji_url") or "",
        msg.get("link_title") or parsed.link_title, msg.get("link_desc") or parsed.link_desc,
        msg.get("link_url") or parsed.link_url, msg.get("link_img_url") or parsed.link_img_url,
        msg.get("transferid") or "", msg.get("paysubtype"),
        parsed.card_wxid, parsed.card_nickname, parsed.card_alias,
        parsed.miniprogram_title, parsed.miniprogram_username, parsed.miniprogram_appid,
        parsed.miniprogram_pagepath,
        raw_msg or "", parsed.error, msg.get("extra") or "",
        record["gateway"], record["transport"],
    )


INTAKE_TABLE = "messages_intake"
# A record holding none of these has no raw_msg that parses_raw_msg would parse: no
# `<appmsg>`, and no card (a card's raw_msg has a `username` attribute).
PARSED_RAW_MSG_SIGNS = (b"appmsg", b"username")
# One insert keeps about one core busy, so a large batch goes in as two halves at once on two
# connections: 50,000 report_new_msg rows took 2.0 µs a row instead of 3.3 to 4.2 (embedded
# ClickHouse, 2 cores, consumers/migrations/070_messages_intake.sql).
PARALLEL_MIN_ROWS = 10_000
# Duplicates of a batch are merged when the table merges its parts or when it is read (FINAL),
# not while inserting: merging on insert would cost a third of the insert.
_INTAKE_SETTINGS = {"optimize_on_insert": 0}


class MessagesBulk:
    """The bulk path: undecoded records into ClickHouse, which builds their rows (migration 070).

    One Python call a batch instead of one per record: the records go into ClickHouse as one
    Avro object container, and the materialized view of migration 070 builds the same rows as
    `message_row`. Records with a raw_msg to parse stay on the Python path. When ClickHouse
    rejects a batch (a record it cannot decode or take), the runner decodes the batch in Python.

    With `second_client`, a batch of at least `parallel_min_rows` records goes in as two halves
    at once, the second on the client that `second_client` returns.
    """

    def __init__(self, second_client: Callable[[], Client] | None = None,
                 parallel_min_rows: int = PARALLEL_MIN_ROWS) -> None:
        self._writer = ContainerWriter(CODEC.schema(topics.EVENT_SCHEMAS["report_new_msg"]))
        self._frame = self._writer.frame
        self._make_second_client = second_client
        self._second_client: Client | None = None
        self._parallel_min_rows = parallel_min_rows

    def accepts(self, value: bytes) -> bool:
        """Tell whether `value` is a record of the schema version that migration 070 reads."""
        return value.startswith(self._frame)

    def insert(self, client: Client, database: str, values: list[bytes]) -> list[int]:
        """Insert the rows of `values` but those with raw_msg XML to parse; return the indexes of those.

        Blocks, raises StoreError.
        """
        if self._make_second_client is None or len(values) < self._parallel_min_rows:
            return self._insert_part(client, database, values, 0)
        if self._second_client is None:
            self._second_client = self._make_second_client()
        second = self._second_client
        half = len(values) // 2
        # NOTE: of two records with the same msg_id in one batch, which one's event_id and
        # received_at the table keeps depends on which half commits its part last.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            second_left = pool.submit(self._insert_part, second, database, values[half:], half)
            left = self._insert_part(client, database, values[:half], 0)
            return left + second_left.result()

    def _insert_part(self, client: Client, database: str, values: list[bytes], offset: int) -> list[int]:
        container = self._writer.container(values)
        left = self._writer.records_holding(container, values, PARSED_RAW_MSG_SIGNS)
        if left:
            skipped = set(left)
            container = self._writer.container([value for index, value in enumerate(values) if index not in skipped])
        # NOTE: tested with the embedded ClickHouse only; a server gets the same container over HTTP.
        insert_encoded(client, database, INTAKE_TABLE, container, fmt="Avro", settings=_INTAKE_SETTINGS)
        return [offset + index for index in left]


class MessagesProcessor:
    """Stateless: a message row depends on its own event only."""

    name = "messages"
    ordered = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bulk = MessagesBulk(second_client=lambda: make_client(settings, lane=1))

    def topic_suffixes(self) -> Sequence[str]:
        return ("report_new_msg",)

    def validate(self, action: str, schema_name: str, record: dict[str, Any]) -> None:
        msg = record["data"]["msg"]
        if msg["msg_type"] < 0:
            raise Poison("invalid_record", f"data.msg.msg_type: {msg['msg_type']} is invalid, expected >= 0")

    def process(self, client: Client, events: list[Event]) -> list[Rows]:
        return [Rows("messages_store", COLUMNS, [message_row(event.record) for event in events])]

    def reset(self) -> None:
        return None
