"""Fixtures of the media tests: settings on this test's topics, bucket and database, and upload bodies."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from wehub.settings import Settings


@pytest.fixture
def media_settings(service_settings: Settings) -> Settings:
    """Settings of a gateway and media consumer on the real services of this test."""
    return service_settings.with_overrides(gateway_name="gateway-under-test")


def corpus_uploads(samples_dir: Path) -> list[dict[str, Any]]:
    """The upload lines of the sample corpus, with their bytes decoded into `data`."""
    uploads = []
    for line in (samples_dir / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry["kind"] == "upload":
            entry["data"] = base64.b64decode(entry["data_b64"])
            uploads.append(entry)
    return uploads


def multipart(
    parts: list[tuple[str, bytes, str | None, str | None]], boundary: str = "----WeHubFormBoundary7d93a"
) -> tuple[str, bytes]:
    """A multipart/form-data body as WeHub writes it: `(name, value, filename, content type)` per part.

    The boundary is quoted in the Content-Type and `filename=` follows `;` without a space,
    which is what real WeHub clients send.
    """
    body = bytearray()
    for name, value, filename, content_type in parts:
        body += f"--{boundary}\r\n".encode()
        disposition = f'Content-Disposition: form-data; name="{name}"'
        if filename is not None:
            disposition += f';filename="{filename}"'
        body += disposition.encode() + b"\r\n"
        if content_type is not None:
            body += f"Content-Type: {content_type}\r\n".encode()
        body += b"\r\n" + value + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return f'multipart/form-data; boundary="{boundary}"', bytes(body)


def upload_form(file_index: str, filename: str, content_type: str, data: bytes) -> tuple[str, bytes]:
    return multipart([("file_index", file_index.encode(), None, None), ("file", data, filename, content_type)])
