"""Tasks through the gateway app with real Kafka: submit, pull, result, tombstone, restart."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import topics
from tests.tasks.conftest import pull, pull_task, read_topic, report, running_gateway, send_task, submit
from wehub.settings import Settings

pytestmark = pytest.mark.services


def statuses(records: list[tuple[str, str | None, dict[str, Any] | None]]) -> list[tuple[str, str]]:
    return [(record["task_id"], record["status"]) for _, name, record in records
            if name == topics.TASK_STATUS_SCHEMA and record is not None]


async def test_task_goes_from_submit_to_tombstone(task_settings: Settings, sample_accounts: dict[str, Any]) -> None:
    appid, bot = sample_accounts["appid"], sample_accounts["wxids"][0]
    async with running_gateway(task_settings) as client:
        [task_id] = await submit(client, [send_task(bot, "room1@chatroom", "hello")])

        data = await pull_task(client, appid, bot)
        assert data["task_id"] == task_id
        assert data["task_data"]["task_type"] == 1
        assert data["task_data"]["task_dict"]["msg_list"] == [{"msg_type": 1, "msg": "hello"}]

        await report(client, appid, bot, task_id, 1)
        assert await pull(client, appid, bot) == {}

    tasks = await read_topic(task_settings, topics.TASKS)
    assert [(key, name) for key, name, _ in tasks] == [(task_id, topics.TASK_SCHEMA), (task_id, None)]
    assert statuses(await read_topic(task_settings, topics.TASK_STATUS)) == [
        (task_id, "dispatched"), (task_id, "succeeded"),
    ]


async def test_gateway_restart_rebuilds_pending_view(
    task_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    appid, bot = sample_accounts["appid"], sample_accounts["wxids"][0]
    async with running_gateway(task_settings) as client:
        first, second, third = await submit(client, [send_task(bot, f"friend{n}", f"text {n}") for n in range(3)])
        assert (await pull_task(client, appid, bot))["task_id"] == first

    async with running_gateway(task_settings) as client:
        # The first task was handed out before the restart: it is never sent again.
        assert (await pull_task(client, appid, bot))["task_id"] == second
        await report(client, appid, bot, first, 0)
        await report(client, appid, bot, second, 1)
        assert (await pull_task(client, appid, bot))["task_id"] == third
        await report(client, appid, bot, third, 1)
        assert await pull(client, appid, bot) == {}

    assert sorted(statuses(await read_topic(task_settings, topics.TASK_STATUS))) == sorted([
        (first, "dispatched"), (second, "dispatched"), (third, "dispatched"),
        (first, "failed"), (second, "succeeded"), (third, "succeeded"),
    ])


async def test_own_message_never_gets_a_send_task_in_common_ack(
    task_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    appid, bot = sample_accounts["appid"], sample_accounts["wxids"][0]
    async with running_gateway(task_settings) as client:
        await submit(client, [send_task(bot, "friend@chatroom", "pending send")])
        message = {"msg_type": 1, "room_wxid": "", "wxid_from": bot, "wxid_to": "wxid_friend", "msg": "hi"}
        answer = await client.post("/wehub", json={"action": "report_new_msg", "appid": appid, "wxid": bot,
                                                   "data": {"msg": message}})
    body = answer.json()
    assert body["ack_type"] == "common_ack"
    assert body["error_code"] == 0
    assert [task for task in body["data"].get("reply_task_list", []) if task.get("task_type") == 1] == []


async def test_result_for_another_bots_task_is_ignored(
    task_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    appid, bot, other_bot = sample_accounts["appid"], sample_accounts["wxids"][0], sample_accounts["wxids"][2]
    async with running_gateway(task_settings) as client:
        [task_id] = await submit(client, [send_task(bot, "room@chatroom", "x")])
        await report(client, appid, other_bot, task_id, 1)
        assert (await pull_task(client, appid, bot))["task_id"] == task_id

    tasks = await read_topic(task_settings, topics.TASKS)
    assert [(key, name) for key, name, _ in tasks] == [(task_id, topics.TASK_SCHEMA)]
