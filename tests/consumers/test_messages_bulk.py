"""The messages consumer's bulk path: ClickHouse builds the same rows as Python, and rejects what Python rejects."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from consumers import migrate
from consumers.clickhouse import Rows, StoreError, insert, make_client
from consumers.messages import COLUMNS, MessagesBulk, message_row
from consumers.query import run_query
from consumers.runner import millis
from schemas import topics
from schemas.codec import CODEC, HEADER_BYTES
from tests.consumers.helpers import read_dead_letters, run_until_drained
from tests.corpus_feed import FeedRecord, corpus_records, produce
from wehub.settings import Settings

SCHEMA = topics.EVENT_SCHEMAS["report_new_msg"]
MIGRATIONS = Path(migrate.__file__).resolve().parent / "migrations"
BOT = "wxid_bot"
RECEIVED_MS = 1_764_800_000_000


def _encode(index: int, envelope: dict[str, Any] | None = None, **msg: Any) -> bytes:
    unit: dict[str, Any] = {"msg_type": 1, "wxid_from": "wxid_friend", "wxid_to": BOT, "msg": f"hello {index}"}
    unit.update(msg)
    record = {"event_id": f"event-{index}", "received_at": RECEIVED_MS + index, "gateway": "gw", "appid": "app",
              "bot_wxid": BOT, "action": "report_new_msg", "client_address": "127.0.0.1", "body_bytes": 100,
              "transport": "http", "data": {"msg": unit}}
    record.update(envelope or {})
    return CODEC.encode(SCHEMA, record)


# Messages whose rows take nothing from raw_msg, with every field the row derives something from.
EDGE_MESSAGES: list[dict[str, Any]] = [
    {"msg_id": "1001", "msg_timestamp": 1_764_800_104_183},
    {"msg_id": "1002", "msg_timestamp": 1_764_800_104},
    {"msg_id": "", "msg_timestamp": 0},
    {"msg_id": None, "msg_timestamp": -5},
    {"room_wxid": "12109199501@chatroom", "atUserList": ["wxid_a", "wxid_b"], "msg": "@a @b 你好 🌏"},
    {"room_wxid": "47606400495@im.chatroom", "wxid_from": BOT, "msg_id": "1003"},
    {"room_wxid": "", "wxid_from": None, "wxid_to": None, "msg": None},
    {"msg_type": 3, "raw_msg": '<msg><img aeskey="k" length="2048"/></msg>', "file_index": "files/a.jpg"},
    {"msg_type": 47, "emoji_url": "http://emoji.example/1.gif", "raw_msg": '<msg><emoji md5="m"/></msg>'},
    {"msg_type": 48, "raw_msg": '<msg><location x="1" y="2"/></msg>'},
    {"msg_type": 49, "raw_msg": "not xml", "link_title": "t", "link_url": "http://link.example"},
    {"msg_type": 4902, "transferid": "tr-1", "paysubtype": 3},
    {"msg_type": 4903, "file_name": "a.pdf", "file_size": 12_345, "raw_msg": "<msg><appmsg/></msg>"},
    {"msg_type": 10000, "raw_msg": "<sysmsg>joined</sysmsg>", "extra": '{"new_field": 1}'},
]


def _client(settings: Settings) -> Any:
    client = make_client(settings)
    migrate.apply(client, str(settings.clickhouse_database))
    return client


def _rows(settings: Settings, table: str) -> list[tuple[Any, ...]]:
    columns = ", ".join(COLUMNS)
    query = f"SELECT {columns} FROM {settings.clickhouse_database}.{table} FINAL ORDER BY dedup_key, event_id"
    return [tuple(row) for row in run_query(settings, query).rows]


@pytest.fixture
def store_settings(pipeline_settings: Settings, clickhouse_dsn: str, clickhouse_database: str) -> Settings:
    return pipeline_settings.with_overrides(clickhouse_dsn=clickhouse_dsn, clickhouse_database=clickhouse_database)


def test_bulk_rows_equal_python_rows(store_settings: Settings, samples_dir: Path) -> None:
    corpus = [record.value for record in corpus_records(samples_dir / "corpus.jsonl")
              if record.topic_suffix == "report_new_msg"]
    values = corpus + [_encode(index, **msg) for index, msg in enumerate(EDGE_MESSAGES)]
    database = str(store_settings.clickhouse_database)
    client = _client(store_settings)
    client.command(f"CREATE TABLE {database}.messages_python AS {database}.messages_store")

    left = set(MessagesBulk().insert(client, database, values))
    records = [CODEC.decode(value)[1] for index, value in enumerate(values) if index not in left]
    for record in records:
        record["received_at_ms"] = millis(record["received_at"])
    insert(client, database, Rows("messages_python", COLUMNS, [message_row(record) for record in records]))

    assert 0 < len(left) < len(corpus)
    assert _rows(store_settings, "messages_store") == _rows(store_settings, "messages_python")


def test_bulk_halves_give_same_rows(store_settings: Settings) -> None:
    link = '<msg><appmsg><title>t</title><url>http://link.example</url></appmsg></msg>'
    values = [_encode(index, msg_type=49, raw_msg=link) if index % 7 == 3 else _encode(index) for index in range(40)]
    database = str(store_settings.clickhouse_database)
    client = _client(store_settings)
    bulk = MessagesBulk(second_client=lambda: make_client(store_settings, lane=1), parallel_min_rows=10)

    left = bulk.insert(client, database, values)

    assert left == [index for index in range(40) if index % 7 == 3]
    stored = sorted(row[3] for row in _rows(store_settings, "messages_store"))
    assert stored == sorted(f"event-{index}" for index in range(40) if index % 7 != 3)


def test_bulk_leaves_records_with_raw_msg_to_parse(store_settings: Settings) -> None:
    link = '<msg><appmsg><title>t</title><url>http://link.example</url></appmsg></msg>'
    values = [_encode(1), _encode(2, msg_type=49, raw_msg=link),
              _encode(3, msg_type=42, raw_msg='<msg username="wxid_card" nickname="n"/>'), _encode(4)]

    left = MessagesBulk().insert(_client(store_settings), str(store_settings.clickhouse_database), values)

    assert left == [1, 2]
    assert [row[3] for row in _rows(store_settings, "messages_store")] == ["event-1", "event-4"]


def test_bulk_takes_only_its_schema_version() -> None:
    bulk = MessagesBulk()

    assert bulk.accepts(_encode(1))
    assert not bulk.accepts(b"\xc3\x01" + bytes(8) + _encode(1)[HEADER_BYTES:])


def _not_utf8(value: bytes, text: bytes) -> bytes:
    start = value.index(text, HEADER_BYTES)
    return value[:start] + b"\xff\xfe" + value[start + 2:]


REJECTED = {
    "empty appid": _encode(1, {"appid": ""}),
    "empty event_id": _encode(2, {"event_id": ""}),
    "negative msg_type": _encode(3, msg_type=-1),
    "text that is not UTF-8": _not_utf8(_encode(4, msg="zzzz"), b"zzzz"),
    "card without a username sign": _encode(5, msg_type=42, raw_msg='<msg nickname="n" alias="a"/>'),
    "truncated record": _encode(6)[:-8],
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_bulk_rejects_batch_with_bad_record(store_settings: Settings, name: str) -> None:
    database = str(store_settings.clickhouse_database)
    client = _client(store_settings)
    bulk = MessagesBulk()
    assert bulk.accepts(REJECTED[name])

    with pytest.raises(StoreError) as raised:
        bulk.insert(client, database, [_encode(10), REJECTED[name], _encode(11)])

    assert not raised.value.retriable
    assert _rows(store_settings, "messages_store") == []


def test_bulk_ignores_bytes_after_record_as_python_does(store_settings: Settings) -> None:
    database = str(store_settings.clickhouse_database)
    client = _client(store_settings)

    MessagesBulk().insert(client, database, [_encode(20) + _encode(21), _encode(22)])

    assert [row[3] for row in _rows(store_settings, "messages_store")] == ["event-20", "event-22"]
    assert CODEC.decode(_encode(20) + _encode(21))[1]["event_id"] == "event-20"


def test_intake_migration_checks_current_schema_frame() -> None:
    frames = [re.search(r"unhex\('([0-9A-F]{20})'\)", path.read_text(encoding="utf-8"))
              for path in sorted(MIGRATIONS.glob("*.sql")) if "messages_intake" in path.read_text(encoding="utf-8")]
    latest = [match.group(1) for match in frames if match][-1]

    assert bytes.fromhex(latest) == b"\xc3\x01" + CODEC.schema(SCHEMA).fingerprint, (
        f"{SCHEMA} changed: add a migration that recreates messages_intake and messages_intake_rows for it")


@pytest.mark.services
async def test_rejected_bulk_batch_dead_letters_poison(service_settings: Settings) -> None:
    settings = service_settings.with_overrides(batch_max_wait_ms=200)
    poison = _encode(30, {"bot_wxid": ""})
    await produce(settings, [FeedRecord("report_new_msg", BOT.encode(), value)
                             for value in (_encode(31), poison, _encode(32))])

    await run_until_drained(settings, ["messages"])

    letters = await read_dead_letters(settings, 1)
    assert [(letter["reason_code"], letter["body"]) for letter in letters] == [("invalid_record", poison)]
    assert [row[3] for row in _rows(settings, "messages_store")] == ["event-31", "event-32"]
