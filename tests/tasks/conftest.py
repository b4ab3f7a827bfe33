"""Fixtures of the task tests: gateway settings with an admin token and no pacing, and helpers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway.app import create_app
from schemas.codec import CODEC
from wehub.kafka import bootstrap_servers
from wehub.settings import Settings

ADMIN_TOKEN = "task-test-admin-token"


@pytest.fixture
def task_settings(pipeline_settings: Settings, kafka_bootstrap: str, topic_prefix: str) -> Settings:
    """Gateway settings on this test's topics: admin token set, no minimum interval between tasks."""
    return pipeline_settings.with_overrides(
        kafka_bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, admin_token=ADMIN_TOKEN,
        task_min_interval_s=0.0,
    )


def send_task(bot_wxid: str, to: str, text: str, **extra: Any) -> dict[str, Any]:
    """A task_type 1 submission sending one text."""
    return {"bot_wxid": bot_wxid, "task_type": 1,
            "task_dict": {"wxid_to": to, "at_list": [], "msg_list": [{"msg_type": 1, "msg": text}]}, **extra}


async def submit(client: httpx.AsyncClient, tasks: list[dict[str, Any]]) -> list[str]:
    answer = await client.post("/api/tasks", json=tasks, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert answer.status_code == 200, answer.text
    task_ids: list[str] = answer.json()["task_ids"]
    return task_ids


async def pull(client: httpx.AsyncClient, appid: str, bot_wxid: str) -> dict[str, Any]:
    answer = await client.post("/wehub", json={"action": "pull_task", "appid": appid, "wxid": bot_wxid, "data": {}})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["ack_type"] == "pull_task_ack"
    assert body["error_code"] == 0
    data: dict[str, Any] = body["data"]
    return data


async def pull_task(client: httpx.AsyncClient, appid: str, bot_wxid: str, attempts: int = 200) -> dict[str, Any]:
    """Poll like WeHub does until a task comes; a task just submitted reaches the view a moment later."""
    for _ in range(attempts):
        data = await pull(client, appid, bot_wxid)
        if data:
            return data
        await asyncio.sleep(0.05)
    raise AssertionError(f"no task for {bot_wxid} after {attempts} polls")


async def report(client: httpx.AsyncClient, appid: str, bot_wxid: str, task_id: str, result: int) -> None:
    body = {"action": "report_task_result", "appid": appid, "wxid": bot_wxid,
            "data": {"task_id": task_id, "task_result": result, "error_reason": "" if result else "not a friend"}}
    answer = await client.post("/wehub", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["error_code"] == 0


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to a started gateway app, with its own task source, in this process."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50124))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=60) as client:
            yield client


async def read_topic(settings: Settings, suffix: str) -> list[tuple[str, str | None, dict[str, Any] | None]]:
    """Every record of `<prefix>.<suffix>` so far as (key, schema name, record); None for tombstones.

    Records are in offset order within each partition, partitions one after the other.
    """
    topic = settings.topic(suffix)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        partitions = [TopicPartition(topic, number) for number in sorted(cluster.partitions_for_topic(topic))]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        found: list[tuple[int, int, str, str | None, dict[str, Any] | None]] = []
        while [partition for partition in partitions if await consumer.position(partition) < end[partition]]:
            for partition, messages in (await consumer.getmany(timeout_ms=1000)).items():
                for message in messages:
                    key = (message.key or b"").decode()
                    if message.value is None:
                        found.append((partition.partition, message.offset, key, None, None))
                        continue
                    name, record = CODEC.decode(message.value)
                    found.append((partition.partition, message.offset, key, name, record))
        found.sort(key=lambda item: (item[0], item[1]))
        return [(key, name, record) for _, _, key, name, record in found]
    finally:
        await consumer.stop()

