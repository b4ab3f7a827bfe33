"""Avro object container files made of single-object records as they are, for ClickHouse to decode.

A reader that understands object containers (ClickHouse's `Avro` format) can decode a whole
batch of records in one call, much faster than one Python call per record. The records keep
their single-object frame: the container's schema is the writer schema with a leading field
`frame`, fixed(10), which contains the C3 01 marker and the fingerprint. So nothing is copied out of
a record, and the reader can check that every record it decoded starts where a frame starts.

Every record is a block of its own, followed by the sync marker. A reader checks the marker
after each block, so a record that has bytes left over cannot shift the records after it. The
leftover bytes are skipped, as the single-object decoder skips them.
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
from collections.abc import Sequence

from schemas.codec import HEADER_BYTES, MARKER, Schema
from schemas.writer import zigzag_varint

FRAME_FIELD = "frame"
SYNC_BYTES = 16
# Block prefixes (object count 1, then the byte size) are made ahead for sizes below this.
_TABLE_SIZES = 1 << 16


def _avro_bytes(value: bytes) -> bytes:
    return zigzag_varint(len(value)) + value


def framed_schema(schema: Schema) -> dict[str, object]:
    """Return the writer schema of `schema` with the single-object frame as its first field."""
    frame = {"name": FRAME_FIELD, "type": {"type": "fixed", "name": "SingleObjectFrame", "size": HEADER_BYTES}}
    return {**schema.raw, "fields": [frame, *schema.raw["fields"]]}


class ContainerWriter:
    """Builds object containers of one schema's single-object records."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.frame = MARKER + schema.fingerprint
        self._sync = os.urandom(SYNC_BYTES)
        metadata = (zigzag_varint(2)
                    + _avro_bytes(b"avro.schema") + _avro_bytes(json.dumps(framed_schema(schema)).encode())
                    + _avro_bytes(b"avro.codec") + _avro_bytes(b"null")
                    + zigzag_varint(0))
        self._header = b"Obj\x01" + metadata + self._sync
        self._prefixes = [_block_prefix(size) for size in range(_TABLE_SIZES)]

    def accepts(self, value: bytes) -> bool:
        """Tell whether `value` is a single-object record of this writer's schema."""
        return value.startswith(self.frame)

    def container(self, values: Sequence[bytes]) -> bytes:
        """Return one container holding `values`, each a single-object record that `accepts`."""
        # Slices and map() keep the per-record work in C: this runs for every record consumed.
        count = len(values)
        sizes = list(map(len, values))
        if count and max(sizes) >= _TABLE_SIZES:
            prefixes = [_block_prefix(size) for size in sizes]
        else:
            prefixes = list(map(self._prefixes.__getitem__, sizes))
        parts = [self._header] * (3 * count + 1)
        parts[1::3] = prefixes
        parts[2::3] = values
        parts[3::3] = [self._sync] * count
        return b"".join(parts)


    def records_holding(self, container: bytes, values: Sequence[bytes], signs: Sequence[bytes]) -> list[int]:
        """Return the indexes of the records of `container` (made from `values`) that contain one of `signs`.

        One search of the whole container per sign, instead of one per record. A sign that
        straddles two blocks counts for the record it starts in, which can only add records.
        """
        found = set()
        for sign in signs:
            at = container.find(sign, len(self._header))
            while at >= 0:
                found.add(at)
                at = container.find(sign, at + 1)
        if not found:
            return []
        block_ends = list(itertools.accumulate(
            (len(_block_prefix(len(value))) + len(value) + SYNC_BYTES for value in values), initial=len(self._header)))
        return sorted({bisect.bisect_right(block_ends, at) - 1 for at in found})


def _block_prefix(size: int) -> bytes:
    """Return the start of a block of one record of `size` bytes: the object count 1, then the size."""
    return zigzag_varint(1) + zigzag_varint(size)
