"""`wehub replay` against the real gateway, served by uvicorn on loopback, with Kafka and MinIO."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from tests.cli.loopback import serve_on_loopback
from wehub import cli
from wehub.settings import Settings

pytestmark = pytest.mark.services


@pytest.fixture(autouse=True)
def english(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEHUB_LOCALE", "en")
    monkeypatch.setenv("WEHUB_LOG_FORMAT", "text")


def run_replay(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, dict[str, Any]]:
    status = cli.main(["replay", *arguments, "--json"])
    out, _ = capsys.readouterr()
    return status, json.loads(out)


def test_sample_corpus_is_accepted_by_gateway(service_settings: Settings, samples_dir: Path, capsys):
    corpus = samples_dir / "corpus.jsonl"
    line_count = sum(1 for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip())

    with serve_on_loopback(create_app(service_settings), lifespan="on") as base_url:
        status, summary = run_replay(capsys, str(corpus), "--url", base_url + "/wehub", "--concurrency", "3")

    assert summary["refusals"] == []
    assert status == 0
    assert summary["sent"] == line_count
    assert summary["accepted"] == line_count
    assert summary["sent_by_kind"]["upload"] == 2
    assert summary["transport_errors"] == {}


def test_bad_inputs_are_all_rejected_without_5xx(
    service_settings: Settings, samples_dir: Path, tmp_path: Path, capsys
):
    bad_lines = (samples_dir / "bad.jsonl").read_text(encoding="utf-8").splitlines()
    oversized = b'{"action": "report_new_msg", "data": "' + b"x" * service_settings.body_limit_bytes + b'"}'
    oversized_line = {"kind": "raw", "case": "body_over_limit", "content_type": "application/json",
                      "body_b64": base64.b64encode(oversized).decode()}
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text("\n".join([*bad_lines, json.dumps(oversized_line)]) + "\n", encoding="utf-8")

    with serve_on_loopback(create_app(service_settings), lifespan="on") as base_url:
        status, summary = run_replay(capsys, str(corpus), "--url", base_url + "/wehub")

    assert status == 0
    assert summary["raw"] == {"sent": len(bad_lines) + 1, "refused": len(bad_lines) + 1, "accepted_lines": [],
                              "server_error_lines": []}
    assert summary["transport_errors"] == {}
    assert [response for response in summary["responses"] if response["status"] >= 500] == []
