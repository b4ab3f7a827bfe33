"""The tasks consumer writes each task's life and latencies to ClickHouse."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from consumers import clickhouse
from consumers.tasks import CLAIM_SCHEMA, make_runner
from schemas import topics
from schemas.codec import CODEC
from tests.consumers.helpers import run_until_drained
from tests.tasks.conftest import pull_task, report, running_gateway, send_task, submit
from wehub import kafka
from wehub.kafka import bootstrap_servers
from wehub.settings import Settings

pytestmark = pytest.mark.services


async def committed_all(settings: Settings) -> bool:
    """True when the tasks consumer group committed the end offset of both its topics."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(settings))
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(settings))
    await admin.start()
    await probe.start()
    try:
        cluster = await probe._client.fetch_all_metadata()
        partitions = [TopicPartition(settings.topic(suffix), number) for suffix in (topics.TASKS, topics.TASK_STATUS)
                      for number in sorted(cluster.partitions_for_topic(settings.topic(suffix)) or ())]
        ends = await probe.end_offsets(partitions)
        try:
            committed = await admin.list_consumer_group_offsets(f"{settings.topic_prefix}.consumer.tasks")
        except KafkaError:
            return False
        return all(end == 0 or (partition in committed and committed[partition].offset >= end)
                   for partition, end in ends.items())
    finally:
        await probe.stop()
        await admin.close()


async def test_consumer_records_each_status_with_latencies(
    task_settings: Settings, clickhouse_dsn: str, clickhouse_database: str, sample_accounts: dict[str, Any]
) -> None:
    settings = task_settings.with_overrides(clickhouse_dsn=clickhouse_dsn, clickhouse_database=clickhouse_database,
                                            batch_max_wait_ms=200)
    appid, bot = sample_accounts["appid"], sample_accounts["wxids"][0]
    async with running_gateway(settings) as client:
        succeeded, failed, waiting = await submit(client, [send_task(bot, f"friend{n}", "x") for n in range(3)])
        assert (await pull_task(client, appid, bot))["task_id"] == succeeded
        await report(client, appid, bot, succeeded, 1)
        assert (await pull_task(client, appid, bot))["task_id"] == failed
        await report(client, appid, bot, failed, 0)

    runner = make_runner(settings)
    running = asyncio.ensure_future(runner.run())
    deadline = time.monotonic() + 120
    try:
        while not await committed_all(settings):
            assert not running.done(), running.exception()
            assert time.monotonic() < deadline, "the tasks consumer did not commit every record in 120 s"
            await asyncio.sleep(0.5)
    finally:
        runner.stop()
        await running

    store = clickhouse.make_client(settings, clickhouse_database)
    rows = store.query(
        "SELECT task_id, status, source, dispatch_latency_ms, result_latency_ms, error_reason "
        f"FROM {clickhouse_database}.tasks ORDER BY task_id").result_rows
    by_id = {row[0]: row[1:] for row in rows}
    assert set(by_id) == {succeeded, failed, waiting}
    assert by_id[succeeded][0] == "succeeded"
    assert by_id[failed][0] == "failed"
    assert by_id[waiting][0] == "submitted"
    assert {row[1] for row in by_id.values()} == {"api"}
    assert by_id[succeeded][2] is not None and by_id[succeeded][2] >= 0
    assert by_id[succeeded][3] is not None and by_id[succeeded][3] >= 0
    assert by_id[waiting][2] is None
    assert by_id[failed][4] == "not a friend"


async def dead_letters(settings: Settings) -> list[dict[str, Any]]:
    reader = AIOKafkaConsumer(settings.topic(topics.DEAD_LETTER), bootstrap_servers=bootstrap_servers(settings),
                              auto_offset_reset="earliest", group_id=None)
    await reader.start()
    try:
        batches = await reader.getmany(timeout_ms=3000)
    finally:
        await reader.stop()
    return [CODEC.decode(message.value)[1] for messages in batches.values() for message in messages]


async def test_tombstone_and_claim_skipped_poison_dead_lettered(
    task_settings: Settings, clickhouse_dsn: str, clickhouse_database: str
) -> None:
    settings = task_settings.with_overrides(clickhouse_dsn=clickhouse_dsn, clickhouse_database=clickhouse_database,
                                            batch_max_wait_ms=200)
    now_ms = int(time.time() * 1000)
    task_ids = {"appid": "app0001", "bot_wxid": "wxid_bot0001", "task_id": "t-consumer-1"}
    task = CODEC.encode(topics.TASK_SCHEMA, {**task_ids, "task_type": 1, "task_dict": "{}", "created_at": now_ms,
                                             "source": "cli"})
    claim = CODEC.encode(CLAIM_SCHEMA, {**task_ids, "claim_id": "c1", "gateway": "g1", "op": "claim", "at": now_ms})
    dispatched = CODEC.encode(topics.TASK_STATUS_SCHEMA, {**task_ids, "task_type": 1, "status": "dispatched",
                                                          "at": now_ms + 5, "gateway": "g1", "created_at": now_ms})
    await kafka.ensure_topics(settings, kafka.pipeline_topics(settings))
    producer = kafka.make_producer(settings)
    await producer.start()
    try:
        key = task_ids["task_id"].encode()
        for topic, value in ((topics.TASKS, task), (topics.TASKS, None), (topics.TASKS, b"not avro"),
                             (topics.TASK_STATUS, claim), (topics.TASK_STATUS, dispatched)):
            await producer.send_and_wait(settings.topic(topic), value, key=key)
    finally:
        await producer.stop()

    await run_until_drained(settings, ["tasks"])

    store = clickhouse.make_client(settings, clickhouse_database)
    rows = store.query(f"SELECT status FROM {clickhouse_database}.task_events_store ORDER BY at").result_rows
    assert [row[0] for row in rows] == ["submitted", "dispatched"]
    letters = await dead_letters(settings)
    assert [(letter["source"], letter["reason_code"], letter["body"]) for letter in letters] == [
        ("consumer:tasks", "undecodable", b"not avro")]
