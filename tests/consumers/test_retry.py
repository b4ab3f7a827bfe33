"""An insert that fails because ClickHouse is unreachable is retried; nothing is lost or committed early."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from consumers import runner as runner_module
from consumers.clickhouse import Rows, StoreError
from consumers.messages import MessagesProcessor
from consumers.query import run_query
from consumers.runner import Event, Runner
from tests.consumers.helpers import committed_everything
from tests.corpus_feed import corpus_records, produce
from wehub.settings import Settings

pytestmark = pytest.mark.services


class FlakyMessages(MessagesProcessor):
    """The messages consumer, with ClickHouse unreachable for its first `failures` batches."""

    def __init__(self, settings: Settings, failures: int) -> None:
        super().__init__(settings)
        self.failures = failures
        self.attempts = 0

    def process(self, client: Client, events: list[Event]) -> list[Rows]:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise StoreError("ClickHouse is unreachable while inserting: OperationalError", retriable=True)
        return super().process(client, events)


async def test_unreachable_clickhouse_is_retried(service_settings: Settings, samples_dir: Path,
                                                 caplog: pytest.LogCaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "BACKOFF_FIRST_S", 0.05)
    settings = service_settings.with_overrides(batch_max_wait_ms=200)
    records = [record for record in corpus_records(samples_dir / "corpus.jsonl")
               if record.topic_suffix == "report_new_msg"]
    await produce(settings, records)
    processor = FlakyMessages(settings, failures=2)
    consumer = Runner(settings, processor)
    caplog.set_level(logging.WARNING, logger="consumers.runner")

    task = asyncio.ensure_future(consumer.run())
    try:
        async with asyncio.timeout(60):
            while not await committed_everything(settings, ["messages"]):
                assert not task.done(), task
                await asyncio.sleep(0.2)
    finally:
        consumer.stop()
        await task

    retries = [record.getMessage() for record in caplog.records if "retrying" in record.getMessage()]
    assert len(retries) == 2
    assert "11 tries left" in retries[0]
    assert "10 tries left" in retries[1]
    total = run_query(settings, f"SELECT count() FROM {settings.clickhouse_database}.messages").rows[0][0]
    assert total == 73
