"""Tasks that run out of time: no result after dispatch, expires_at passed, not_before ahead."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from schemas import topics
from tests.tasks.conftest import pull, pull_task, read_topic, running_gateway, send_task, submit
from wehub.settings import Settings

pytestmark = pytest.mark.services

WAIT_S = 30.0


async def wait_for_status(settings: Settings, task_id: str, status: str) -> dict[str, Any]:
    """The first status record `status` of `task_id`; fails after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while True:
        for _, name, record in await read_topic(settings, topics.TASK_STATUS):
            if name != topics.TASK_STATUS_SCHEMA or record is None:
                continue
            if (record["task_id"], record["status"]) == (task_id, status):
                return record
        assert time.monotonic() < deadline, f"no {status} status for {task_id} within {WAIT_S:.0f} s"
        await asyncio.sleep(0.5)


async def test_dispatched_task_without_result_expires_and_is_not_resent(
    task_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    appid, bot = sample_accounts["appid"], sample_accounts["wxids"][0]
    async with running_gateway(task_settings.with_overrides(task_result_timeout_s=0.2)) as client:
        [task_id] = await submit(client, [send_task(bot, "room@chatroom", "x")])
        assert (await pull_task(client, appid, bot))["task_id"] == task_id

        expired = await wait_for_status(task_settings, task_id, "expired")
        assert expired["error_reason"] == "no report_task_result in time"
        assert await pull(client, appid, bot) == {}

    tasks = await read_topic(task_settings, topics.TASKS)
    assert [(key, name) for key, name, _ in tasks] == [(task_id, topics.TASK_SCHEMA), (task_id, None)]


async def test_task_past_expires_at_is_never_sent(task_settings: Settings, sample_accounts: dict[str, Any]) -> None:
    appid, bot = sample_accounts["appid"], sample_accounts["wxids"][0]
    soon = int(time.time() * 1000) + 300
    async with running_gateway(task_settings) as client:
        [task_id] = await submit(client, [send_task(bot, "room@chatroom", "x", not_before=soon, expires_at=soon + 1)])
        await wait_for_status(task_settings, task_id, "expired")
        assert await pull(client, appid, bot) == {}

    statuses = [record["status"] for _, name, record in await read_topic(task_settings, topics.TASK_STATUS)
                if name == topics.TASK_STATUS_SCHEMA and record]
    assert "dispatched" not in statuses


async def test_task_is_held_until_not_before(task_settings: Settings, sample_accounts: dict[str, Any]) -> None:
    appid, bot = sample_accounts["appid"], sample_accounts["wxids"][0]
    not_before = int(time.time() * 1000) + 1500
    async with running_gateway(task_settings) as client:
        [task_id] = await submit(client, [send_task(bot, "room@chatroom", "x", not_before=not_before)])
        assert await pull(client, appid, bot) == {}
        await asyncio.sleep(max(0.0, not_before / 1000 - time.time()))
        data = {}
        for _ in range(50):
            data = await pull(client, appid, bot)
            if data:
                break
            await asyncio.sleep(0.1)
        assert data["task_id"] == task_id


async def test_two_replicas_without_claim_ahead_hand_out_each_task_once(
    task_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    appid, bot = sample_accounts["appid"], sample_accounts["wxids"][0]
    settings = task_settings.with_overrides(task_claim_ahead=False)
    async with running_gateway(settings) as first, running_gateway(settings) as second:
        submitted = await submit(first, [send_task(bot, "room@chatroom", f"m{n}") for n in range(40)])
        received: list[str] = []
        polls = 0
        deadline = time.monotonic() + WAIT_S
        # The gateway responds to polls at once, so they pause as WeHub's do while the tasks reach both views.
        while len(received) < len(submitted) and time.monotonic() < deadline:
            data = await pull((first, second)[polls % 2], appid, bot)
            polls += 1
            if data:
                received.append(data["task_id"])
            await asyncio.sleep(0.01)
    assert received == submitted
