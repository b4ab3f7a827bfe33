"""Fixtures of the gateway tests: a gateway app in-process, and a reader of what it wrote to Kafka."""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway.app import create_app
from gateway.task_source import NoTasks, TaskSource
from schemas.codec import CODEC
from tests import processes
from wehub.kafka import bootstrap_servers
from wehub.settings import Settings

CLIENT_ADDRESS = ("127.0.0.1", 50123)


@contextlib.contextmanager
def gateway_process(
    settings: Settings, name: str, log_path: Path, extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    """`wehub gateway` in a subprocess on a free loopback port; yields its base URL."""
    port = processes.free_port()
    env = {
        **os.environ,
        "WEHUB_ACCOUNTS": str(settings.accounts),
        "WEHUB_KAFKA_BOOTSTRAP": str(settings.kafka_bootstrap),
        "WEHUB_TOPIC_PREFIX": str(settings.topic_prefix),
        "WEHUB_LOCALE": str(settings.locale),
        "WEHUB_GATEWAY_NAME": name,
        "WEHUB_LOG_FORMAT": "json",
        **(extra_env or {}),
    }
    url = f"http://127.0.0.1:{port}"
    with processes.server_process(processes.gateway_command(port), f"{url}/readyz", env=env, name=f"gateway {name}",
                                  log_path=log_path):
        yield url


@pytest.fixture
def gateway_settings(pipeline_settings: Settings, kafka_bootstrap: str, topic_prefix: str) -> Settings:
    """Settings of a gateway writing to this test's topics on the real broker."""
    return pipeline_settings.with_overrides(
        kafka_bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, gateway_name="gateway-under-test"
    )


@contextlib.asynccontextmanager
async def running_gateway(
    settings: Settings, task_source: TaskSource | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to a started gateway app in this process; no tasks unless given a source."""
    app = create_app(settings, task_source or NoTasks())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=CLIENT_ADDRESS)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=60) as client:
            yield client


def corpus_bodies(samples_dir: Path) -> list[dict[str, Any]]:
    lines = (
        json.loads(line) for line in (samples_dir / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    )
    return [line["body"] for line in lines if line["kind"] == "http"]


def bad_cases(samples_dir: Path) -> list[dict[str, Any]]:
    cases = []
    for line in (samples_dir / "bad.jsonl").read_text(encoding="utf-8").splitlines():
        case = json.loads(line)
        case["body"] = base64.b64decode(case["body_b64"])
        cases.append(case)
    return cases


async def read_records(settings: Settings, suffix: str) -> list[tuple[bytes | None, str, dict[str, Any]]]:
    """Every record on `<prefix>.<suffix>` so far, decoded: (key, schema name, record), in offset order."""
    topic = settings.topic(suffix)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(settings),
        enable_auto_commit=False,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    try:
        # The test topics are created with settings.topic_partitions partitions.
        partitions = [TopicPartition(topic, number) for number in range(int(settings.topic_partitions))]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        found: list[tuple[int, int, bytes | None, str, dict[str, Any]]] = []
        while [partition for partition in partitions if await consumer.position(partition) < end[partition]]:
            batches = await consumer.getmany(timeout_ms=1000)
            for partition, messages in batches.items():
                for message in messages:
                    assert message.value is not None
                    name, record = CODEC.decode(message.value)
                    found.append((partition.partition, message.offset, message.key, name, record))
        found.sort(key=lambda item: (item[0], item[1]))
        return [(key, name, record) for _, _, key, name, record in found]
    finally:
        await consumer.stop()
