"""Avro single-object encoding of every record the pipeline writes to Kafka.

A value is `C3 01`, the 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's
parsing canonical form, then the schemaless Avro body. fastavro has no single-object
encoding, so the framing is done here. Fingerprints are computed once, at import.

Decode a record from any topic:

    from schemas.codec import CODEC
    schema_name, record = CODEC.decode(message.value)
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas.writer import NotCompiled, Write, compile_writer

SCHEMA_DIR = Path(__file__).resolve().parent / "avro"
MARKER = b"\xc3\x01"
HEADER_BYTES = 10

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


class CodecError(ValueError):
    """A payload that is not a single-object encoded record of a known schema."""


def _read_named_types(schema_dir: Path) -> dict[str, dict[str, Any]]:
    named: dict[str, dict[str, Any]] = {}
    for path in sorted(schema_dir.glob("*.avsc")):
        named[path.stem] = json.loads(path.read_text(encoding="utf-8"))
    return named


def _full_name(schema: dict[str, Any], namespace: str | None) -> str:
    name = str(schema["name"])
    if "." in name:
        return name
    space = schema.get("namespace", namespace)
    return f"{space}.{name}" if space else name


def _expand(  # noqa: PLR0911 - one return per kind of Avro schema node
    node: Any, named: dict[str, dict[str, Any]], defined: set[str], namespace: str | None
) -> Any:
    """Inline the first use of each named type that lives in its own file; later uses stay references."""
    if isinstance(node, str):
        if node in _PRIMITIVES:
            return node
        full = node if "." in node else f"{namespace}.{node}" if namespace else node
        if full in defined or full not in named:
            return full
        return _expand(named[full], named, defined, namespace)
    if isinstance(node, list):
        return [_expand(branch, named, defined, namespace) for branch in node]
    if not isinstance(node, dict):
        return node
    kind = node.get("type")
    if kind in ("record", "enum", "fixed"):
        full = _full_name(node, namespace)
        defined.add(full)
        expanded = dict(node)
        if kind == "record":
            inner_space = full.rsplit(".", 1)[0] if "." in full else None
            expanded["fields"] = [
                {**field, "type": _expand(field["type"], named, defined, inner_space)} for field in node["fields"]
            ]
        return expanded
    if kind == "array":
        return {**node, "items": _expand(node["items"], named, defined, namespace)}
    if kind == "map":
        return {**node, "values": _expand(node["values"], named, defined, namespace)}
    if isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind not in _PRIMITIVES):
        return {**node, "type": _expand(kind, named, defined, namespace)}
    return node


@dataclass(frozen=True)
class Schema:
    """One top-level schema: its full name, expanded JSON, fastavro form, fingerprint and compiled encoder."""

    name: str
    raw: dict[str, Any]
    parsed: Any
    fingerprint: bytes
    write: Write | None = None


class Codec:
    """Encoder and decoder for every schema in `schemas/avro/`; safe to share between threads."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR) -> None:
        self._named = _read_named_types(schema_dir)
        self._by_name: dict[str, Schema] = {}
        self._by_fingerprint: dict[bytes, Schema] = {}
        for name in self._named:
            raw = _expand(name, self._named, set(), None)
            # The write hint lets schemaless_writer/reader skip parsing the schema again on every
            # call (three times faster for a report_new_msg); the canonical form is the same.
            parsed = fastavro.parse_schema(raw)
            canonical = to_parsing_canonical_form(parsed)
            digest = int(fingerprint(canonical, "CRC-64-AVRO"), 16).to_bytes(8, "little")
            try:
                write: Write | None = compile_writer(raw)
            except NotImplementedError:
                write = None
            schema = Schema(name, raw, parsed, digest, write)
            self._by_name[name] = schema
            self._by_fingerprint[digest] = schema

    def schema(self, name: str) -> Schema:
        try:
            return self._by_name[name]
        except KeyError:
            raise CodecError(f"unknown schema {name!r}: expected one of the files in {SCHEMA_DIR}") from None

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def encode(self, name: str, record: dict[str, Any]) -> bytes:
        """Encode `record` with schema `name`; raises ValueError or TypeError when it does not fit."""
        schema = self.schema(name)
        if schema.write is not None:
            out = bytearray(MARKER + schema.fingerprint)
            try:
                schema.write(out, record)
                return bytes(out)
            except NotCompiled:
                pass
        buffer = io.BytesIO()
        buffer.write(MARKER)
        buffer.write(schema.fingerprint)
        fastavro.schemaless_writer(buffer, schema.parsed, record, strict_allow_default=True)
        return buffer.getvalue()

    def decode(self, payload: bytes) -> tuple[str, dict[str, Any]]:
        """Return the writer schema's name and the record; raises CodecError for anything else."""
        if len(payload) < HEADER_BYTES or payload[:2] != MARKER:
            raise CodecError(f"not an Avro single-object record: {len(payload)} bytes without the C3 01 marker")
        schema = self._by_fingerprint.get(payload[2:HEADER_BYTES])
        if schema is None:
            raise CodecError(f"unknown schema fingerprint {payload[2:HEADER_BYTES].hex()}")
        try:
            record = fastavro.schemaless_reader(io.BytesIO(payload[HEADER_BYTES:]), schema.parsed, None)
        except (EOFError, ValueError, TypeError, IndexError, UnicodeDecodeError) as error:
            raise CodecError(f"record of {schema.name} does not decode: {type(error).__name__}") from None
        if not isinstance(record, dict):
            raise CodecError(f"record of {schema.name} is not a record")
        return schema.name, record


CODEC = Codec()
