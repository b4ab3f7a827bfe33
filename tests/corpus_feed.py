"""Feed the samples corpus to Kafka as the records the gateway produces.

Each http line becomes the action's event record (schemas.normalize.to_record on the data
schema, plus the gateway's envelope), Avro single-object encoded and produced to
`<prefix>.<action>` keyed by the bot's wxid, in corpus order. Event ids and received_at are
derived from `run_id` and the line number, so feeding the same corpus twice with one run_id
produces identical records, which is how a replay looks to the consumers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas import normalize, topics
from schemas.codec import CODEC
from wehub import kafka
from wehub.settings import Settings

_NAMESPACE = uuid.UUID("6f1c7f52-3f57-4a53-9a55-0c5e2b1f1e10")
# 2025-12-03 22:00 UTC, just before the corpus's first msg_timestamp.
DEFAULT_BASE_MS = 1_764_799_200_000
_ENVELOPE_KEYS = {"action", "appid", "wxid", "data"}


@dataclass(frozen=True)
class FeedRecord:
    topic_suffix: str
    key: bytes
    value: bytes


def _envelope(body: dict[str, Any], run_id: str, line_no: int, base_ms: int, body_bytes: int) -> dict[str, Any]:
    unknown = {key: value for key, value in body.items() if key not in _ENVELOPE_KEYS}
    return {
        "event_id": str(uuid.uuid5(_NAMESPACE, f"{run_id}:{line_no}")),
        "received_at": base_ms + line_no * 1000,
        "gateway": "corpus-feed",
        "appid": body["appid"],
        "bot_wxid": body["wxid"],
        "action": body["action"],
        "client_address": "127.0.0.1",
        "body_bytes": body_bytes,
        "transport": "http",
        "client_session": None,
        "extra": json.dumps(unknown) if unknown else None,
    }


def _data_schema(event_schema: str) -> dict[str, Any]:
    fields = CODEC.schema(event_schema).raw["fields"]
    data_type: dict[str, Any] = next(field["type"] for field in fields if field["name"] == "data")
    return data_type


def _contact_parts(envelope: dict[str, Any], data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    entities = [("group", item) for item in data["group_list"]]
    entities += [("friend", item) for item in data["friend_list"]]
    entities += [("public", item) for item in data["public_list"]]
    for index, (kind, item) in enumerate(entities):
        part = {**envelope, "snapshot_id": envelope["event_id"], "part_index": index, "part_count": len(entities),
                "kind": kind, "group": None, "friend": None, "public": None, "data_extra": data.get("extra")}
        part[kind] = item
        yield part


def records_of_line(line: dict[str, Any], line_no: int, run_id: str, base_ms: int,
                    split_contacts: bool) -> Iterator[FeedRecord]:
    """The records the gateway produces for one corpus line (none for uploads)."""
    if line.get("kind") != "http":
        return
    body = line["body"]
    action = body["action"]
    event_schema = topics.EVENT_SCHEMAS[action]
    body_bytes = len(json.dumps(body, ensure_ascii=False).encode())
    envelope = _envelope(body, run_id, line_no, base_ms, body_bytes)
    data = normalize.to_record(_data_schema(event_schema), body.get("data") or {}, "data")
    key = body["wxid"].encode()
    if action == "report_contact" and split_contacts:
        for part in _contact_parts(envelope, data):
            yield FeedRecord(action, key, CODEC.encode(topics.PART_SCHEMAS[action], part))
        return
    yield FeedRecord(action, key, CODEC.encode(event_schema, {**envelope, "data": data}))


def corpus_records(corpus: Path, run_id: str = "corpus", base_ms: int = DEFAULT_BASE_MS,
                   split_contacts: bool = False) -> list[FeedRecord]:
    """Every record of the corpus file, in corpus order."""
    records: list[FeedRecord] = []
    with corpus.open(encoding="utf-8") as lines:
        for line_no, text in enumerate(lines):
            records.extend(records_of_line(json.loads(text), line_no, run_id, base_ms, split_contacts))
    return records


async def produce(settings: Settings, records: list[FeedRecord]) -> int:
    """Produce `records` in order (acks=all) and return how many were sent."""
    producer = kafka.make_producer(settings, max_request_size=16 * 1024 * 1024)
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(settings.topic(record.topic_suffix), record.value, key=record.key)
    finally:
        await producer.stop()
    return len(records)


async def feed_corpus(settings: Settings, corpus: Path, run_id: str = "corpus", split_contacts: bool = False) -> int:
    """Produce the whole corpus to the topics of `settings`; returns the number of records."""
    return await produce(settings, corpus_records(corpus, run_id, split_contacts=split_contacts))
