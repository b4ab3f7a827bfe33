"""Records a consumer can never take go to the dead-letter topic, up to a rate cap."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from consumers.messages import MessagesProcessor
from consumers.query import run_query
from consumers.runner import DeadLetterRateExceeded, Runner
from tests.consumers.helpers import read_dead_letters, run_until_drained
from tests.corpus_feed import FeedRecord, corpus_records, produce
from wehub import kafka
from wehub.settings import Settings

pytestmark = pytest.mark.services


@pytest.fixture
def consumer_settings(service_settings: Settings) -> Settings:
    return service_settings.with_overrides(batch_max_wait_ms=200)


def _first_messages(samples_dir: Path, count: int) -> list[FeedRecord]:
    found = [record for record in corpus_records(samples_dir / "corpus.jsonl")
             if record.topic_suffix == "report_new_msg"]
    return found[:count]


def _login_on_message_topic(samples_dir: Path) -> FeedRecord:
    login = next(record for record in corpus_records(samples_dir / "corpus.jsonl") if record.topic_suffix == "login")
    return FeedRecord("report_new_msg", login.key, login.value)


async def test_poison_records_dead_lettered_consumer_continues(consumer_settings: Settings,
                                                                      samples_dir: Path) -> None:
    good = _first_messages(samples_dir, 2)
    poison = [FeedRecord("report_new_msg", b"wxid_bot", b"not avro at all"), _login_on_message_topic(samples_dir)]
    await produce(consumer_settings, [good[0], *poison, good[1]])

    await run_until_drained(consumer_settings, ["messages"])

    letters = await read_dead_letters(consumer_settings, 2)
    assert sorted(letter["reason_code"] for letter in letters) == ["undecodable", "unexpected_schema"]
    for letter in letters:
        assert letter["source"] == "consumer:messages"
        assert letter["topic"] == consumer_settings.topic("report_new_msg")
        assert letter["partition"] is not None
        assert letter["offset"] is not None
        assert letter["reason"]
    assert b"not avro at all" in [letter["body"] for letter in letters]
    count = run_query(consumer_settings, f"SELECT count() FROM {consumer_settings.clickhouse_database}.messages")
    assert count.rows[0][0] == 2


async def test_dead_letter_rate_cap_stops_consumer(consumer_settings: Settings) -> None:
    settings = consumer_settings.with_overrides(dead_letter_max_per_minute=2)
    await produce(settings, [FeedRecord("report_new_msg", b"wxid_bot", b"garbage %d" % index) for index in range(3)])
    runner = Runner(settings, MessagesProcessor(settings))

    with pytest.raises(DeadLetterRateExceeded, match="WEHUB_DEAD_LETTER_MAX_PER_MINUTE=2"):
        await asyncio.wait_for(runner.run(), 60)

    assert json.dumps(await _committed(settings)) == "{}"


async def _committed(settings: Settings) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers(settings))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(f"{settings.topic_prefix}.consumer.messages")
    finally:
        await admin.close()
    return {f"{partition.topic}[{partition.partition}]": meta.offset for partition, meta in offsets.items()
            if meta.offset >= 0}
