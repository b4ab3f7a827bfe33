"""The compiled Avro encoders write exactly fastavro's bytes, and leave to fastavro what they do not take."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import pytest

from schemas import topics
from schemas.codec import CODEC, HEADER_BYTES, MARKER
from schemas.writer import NotCompiled
from tests.corpus_feed import corpus_records


def _fastavro_bytes(name: str, record: dict[str, Any]) -> bytes:
    schema = CODEC.schema(name)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema.parsed, record, strict_allow_default=True)
    return MARKER + schema.fingerprint + buffer.getvalue()


def _compiled_bytes(name: str, record: dict[str, Any]) -> bytes:
    schema = CODEC.schema(name)
    assert schema.write is not None, f"{name} has no compiled encoder"
    out = bytearray(MARKER + schema.fingerprint)
    schema.write(out, record)
    return bytes(out)


def _with_millis(value: Any) -> Any:
    """The record as the pipeline builds it: timestamps as integer milliseconds, not datetimes."""
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, dict):
        return {key: _with_millis(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_millis(item) for item in value]
    return value


def test_every_schema_has_compiled_encoder() -> None:
    assert [name for name in CODEC.names() if CODEC.schema(name).write is None] == []


def test_corpus_records_encode_to_fastavro_bytes(samples_dir: Path) -> None:
    records = corpus_records(samples_dir / "corpus.jsonl") + corpus_records(samples_dir / "corpus.jsonl",
                                                                            split_contacts=True)
    names = set()
    for feed in records:
        name, decoded = CODEC.decode(feed.value)
        record = _with_millis(decoded)
        names.add(name)

        assert _compiled_bytes(name, record) == _fastavro_bytes(name, record), name
        assert CODEC.encode(name, record) == feed.value, name
    assert len(names) >= 15


CRAFTED: list[tuple[str, dict[str, Any]]] = [
    (topics.DEAD_LETTER_SCHEMA, {
        "dead_letter_id": "d", "at": 1_764_800_000_000, "source": "gateway", "reason_code": "invalid_json",
        "reason": "bad \u4f60\u597d \U0001f30f", "http_status": 400, "appid": None, "bot_wxid": "",
        "action": None, "client_address": "127.0.0.1", "content_type": None, "topic": None,
        "partition": -1, "offset": (1 << 63) - 1, "body": bytes(range(256)) * 20, "body_bytes": 5120,
        "truncated": True,
    }),
    (topics.DEAD_LETTER_SCHEMA, {
        "dead_letter_id": "x" * 5000, "at": -(1 << 63), "source": "", "reason_code": "", "reason": "",
        "http_status": None, "appid": "a", "bot_wxid": None, "action": "a", "client_address": "",
        "content_type": "", "topic": "t", "partition": 4095, "offset": 4096, "body": b"",
        "body_bytes": 0, "truncated": False,
    }),
]


@pytest.mark.parametrize(("name", "record"), CRAFTED)
def test_crafted_records_encode_to_fastavro_bytes(name: str, record: dict[str, Any]) -> None:
    assert _compiled_bytes(name, record) == _fastavro_bytes(name, record)


def test_values_compiled_encoder_leaves_to_fastavro() -> None:
    name, record = CRAFTED[0]
    as_datetime = {**record, "at": datetime(2025, 12, 3, 22, tzinfo=UTC)}
    too_large = {**record, "offset": 1 << 63}
    missing_default = {key: value for key, value in record.items() if key != "http_status"}

    for value in (as_datetime, too_large, missing_default):
        with pytest.raises(NotCompiled):
            _compiled_bytes(name, value)
    assert CODEC.encode(name, as_datetime)[HEADER_BYTES:] == _fastavro_bytes(name, as_datetime)[HEADER_BYTES:]
    assert CODEC.decode(CODEC.encode(name, missing_default))[1]["http_status"] is None
    with pytest.raises((ValueError, TypeError, OverflowError)):
        CODEC.encode(name, {**record, "partition": "not a number"})
