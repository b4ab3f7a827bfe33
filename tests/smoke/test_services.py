"""Smoke tests of the real services every other test relies on: Kafka, MinIO and embedded ClickHouse."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests import services

TIMEOUT_S = 30
# Kafka error code of a topic the broker has not learned about yet (a metadata race after create).
UNKNOWN_TOPIC_OR_PARTITION = 3


@pytest.fixture
async def kafka_admin(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=TIMEOUT_S * 1000)
    await asyncio.wait_for(admin.start(), TIMEOUT_S)
    try:
        yield admin
    finally:
        await admin.close()


async def _create_topic(admin: AIOKafkaAdminClient, configs: dict[str, str] | None = None) -> str:
    name = f"smoke.{uuid.uuid4().hex[:12]}"
    topic = NewTopic(name, num_partitions=1, replication_factor=1, topic_configs=configs or {})
    await asyncio.wait_for(admin.create_topics([topic]), TIMEOUT_S)
    return name


@pytest.mark.services
async def test_kafka_record_round_trips_with_acks_all(kafka_bootstrap: str,
                                                      kafka_admin: AIOKafkaAdminClient) -> None:
    topic = await _create_topic(kafka_admin)
    try:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True,
                                    request_timeout_ms=TIMEOUT_S * 1000)
        await asyncio.wait_for(producer.start(), TIMEOUT_S)
        try:
            sent = await asyncio.wait_for(producer.send_and_wait(topic, b"value-1", key=b"key-1"), TIMEOUT_S)
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await asyncio.wait_for(consumer.start(), TIMEOUT_S)
        try:
            received = await _first_record(consumer)
        finally:
            await consumer.stop()
    finally:
        await asyncio.wait_for(kafka_admin.delete_topics([topic]), TIMEOUT_S)

    assert received.key == b"key-1"
    assert received.value == b"value-1"
    assert received.offset == sent.offset


async def _first_record(consumer: AIOKafkaConsumer) -> Any:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=1000)
        for records in batches.values():
            if records:
                return records[0]
    raise AssertionError(f"no record consumed within {TIMEOUT_S} s")


@pytest.mark.services
async def test_compacted_topic_config_reads_back(kafka_admin: AIOKafkaAdminClient) -> None:
    topic = await _create_topic(kafka_admin, {"cleanup.policy": "compact"})
    try:
        error_code, name, entries = await _describe_topic_config(kafka_admin, topic, "cleanup.policy")
    finally:
        await asyncio.wait_for(kafka_admin.delete_topics([topic]), TIMEOUT_S)

    assert error_code == 0
    assert name == topic
    assert {entry[0]: entry[1] for entry in entries}["cleanup.policy"] == "compact"


async def _describe_topic_config(admin: AIOKafkaAdminClient, topic: str, key: str) -> tuple[int, str, Any]:
    """Describe one config of a topic, retrying while the broker does not know the new topic yet."""
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs={key: None})
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        responses = await asyncio.wait_for(admin.describe_configs([resource]), TIMEOUT_S)
        # DescribeConfigsResponse: resources of (error_code, error_message, type, name, config_entries),
        # each entry starting with (name, value, ...).
        error_code, _, _, name, entries = responses[0].resources[0]
        if error_code != UNKNOWN_TOPIC_OR_PARTITION or time.monotonic() > deadline:
            return error_code, name, entries
        await asyncio.sleep(0.2)


@pytest.mark.services
def test_minio_object_round_trips(s3_endpoint: str, s3_credentials: tuple[str, str], bucket: str) -> None:
    client = services.minio_client(s3_endpoint, s3_credentials)
    data = b"smoke test object\n" * 100

    client.put_object(bucket, "smoke/object.bin", io.BytesIO(data), length=len(data))
    response = client.get_object(bucket, "smoke/object.bin")
    try:
        read_back = response.read()
    finally:
        response.close()
        response.release_conn()

    assert read_back == data


def test_clickhouse_merge_tree_round_trips(clickhouse_dsn: str, clickhouse_database: str) -> None:
    client = services.clickhouse_client(clickhouse_dsn)
    table = f"{clickhouse_database}.smoke"
    client.command(f"CREATE TABLE {table} (id UInt64, name String) ENGINE = MergeTree ORDER BY id")

    client.insert(table, [[2, "b"], [1, "a"]], column_names=["id", "name"])
    rows = client.query(f"SELECT id, name FROM {table} ORDER BY id").result_rows

    assert [tuple(row) for row in rows] == [(1, "a"), (2, "b")]
