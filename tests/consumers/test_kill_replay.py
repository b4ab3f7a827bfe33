"""`wehub consume all` killed with SIGKILL mid-corpus and restarted, with the corpus sent twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumers.clickhouse import StoreError
from consumers.query import QueryError, endpoint_path, run_query
from tests.consumers import truth
from tests.consumers.helpers import ANALYTICS_CONSUMERS, committed_everything
from tests.corpus_feed import feed_corpus
from wehub import settings as settings_module
from wehub.settings import Settings

pytestmark = pytest.mark.services

START_TIMEOUT_S = 90.0


@pytest.fixture
def own_engine(tmp_path: Path, service_settings: Settings) -> Iterator[tuple[Settings, dict[str, str]]]:
    """Settings and environment of a `wehub consume` process with a chdb directory of its own."""
    data_dir = tmp_path / "consumer-data"
    data_dir.mkdir()
    environment = {
        "WEHUB_KAFKA_BOOTSTRAP": service_settings.kafka_bootstrap,
        "WEHUB_TOPIC_PREFIX": service_settings.topic_prefix,
        "WEHUB_TOPIC_PARTITIONS": "2",
        "WEHUB_S3_ENDPOINT": service_settings.s3_endpoint,
        "WEHUB_MEDIA_BUCKET": service_settings.media_bucket,
        "WEHUB_DATA_DIR": str(data_dir),
        "WEHUB_CLICKHOUSE_DSN": f"chdb://{data_dir / 'clickhouse'}",
        "WEHUB_CLICKHOUSE_DATABASE": "wehub",
        "WEHUB_BATCH_MAX_ROWS": "10",
        "WEHUB_BATCH_MAX_WAIT_MS": "100",
        "WEHUB_LOG_FORMAT": "text",
        "WEHUB_LOCALE": "en",
        "WEHUB_ACCOUNTS": str(service_settings.accounts),
    }
    yield settings_module.load(environment), environment


def _start(environment: dict[str, str], log_path: Path, names: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, **environment}
    with log_path.open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "wehub.cli", "consume", *names], env=env,
                                stdout=log, stderr=subprocess.STDOUT)


def _messages_count(settings: Settings) -> int:
    try:
        return int(run_query(settings, "SELECT count() FROM wehub.messages_store").rows[0][0])
    except (QueryError, StoreError, OSError, KeyError):
        return 0


async def _wait_for(condition: object, what: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"wehub consume exited with {process.returncode}:\n{_tail(log_path)}")
        result = condition() if callable(condition) else None
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}:\n{_tail(log_path)}")


def _tail(log_path: Path) -> str:
    return log_path.read_text(encoding="utf-8", errors="replace")[-3000:]


def _endpoint_live(settings: Settings) -> bool:
    path = endpoint_path(settings)
    if not path.exists():
        return False
    return int(json.loads(path.read_text())["pid"]) > 0


async def test_killed_consumer_replays_without_duplicates(own_engine: tuple[Settings, dict[str, str]],
                                                          samples_dir: Path, tmp_path: Path) -> None:
    settings, environment = own_engine
    log_path = tmp_path / "consume.log"
    names = ["all"]
    corpus = samples_dir / "corpus.jsonl"
    await feed_corpus(settings, corpus)
    first = _start(environment, log_path, names)
    try:
        await _wait_for(lambda: _endpoint_live(settings) and _messages_count(settings) > 0,
                        "the first rows", first, log_path)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    await feed_corpus(settings, corpus)

    second = _start(environment, log_path, names)
    try:
        await _wait_for(lambda: committed_everything(settings, ANALYTICS_CONSUMERS), "every record committed",
                        second, log_path)
        expected = truth.expected(json.loads((samples_dir / "truth.json").read_text(encoding="utf-8")))
        found = truth.figures(settings.with_overrides(clickhouse_database="wehub"))
        for name, value in expected.items():
            assert found[name] == value, name
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0, _tail(log_path)

    assert not endpoint_path(settings).exists()
    opened = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "wehub.cli", "sql", "--format", "json", "SELECT count() AS total FROM wehub.messages"],
        env={**os.environ, **environment}, capture_output=True, timeout=120, check=True,
    )
    assert json.loads(opened.stdout) == [{"total": expected["messages"]["total"]}]
