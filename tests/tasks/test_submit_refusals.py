"""Invalid or unauthenticated submissions are refused, naming the field (API 400, CLI non-zero)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway import errors
from schemas import topics
from tests.tasks.conftest import ADMIN_TOKEN, read_topic, running_gateway, send_task
from wehub.settings import Settings

pytestmark = pytest.mark.services

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("unknown_type", {"task_type": 42, "task_dict": {}}, "task_type"),
    ("missing_field", {"task_type": 13, "task_dict": {"v1": "a"}}, "task_dict.v2"),
    ("at_style_mismatch", {"task_type": 1, "task_dict": {
        "wxid_to": "room@chatroom", "at_style": 1, "at_list": ["wxid_a", "wxid_b"],
        "msg_list": [{"msg_type": 1, "msg": "only {$@} here"}]}}, "task_dict.at_list"),
]


@pytest.mark.parametrize(("case", "task", "field"), INVALID, ids=[case for case, _, _ in INVALID])
async def test_api_refuses_invalid_task_naming_field(
    task_settings: Settings, sample_accounts: dict[str, Any], case: str, task: dict[str, Any], field: str
) -> None:
    bot = sample_accounts["wxids"][0]
    async with running_gateway(task_settings) as client:
        valid = send_task(bot, "room@chatroom", "fine")
        answer = await client.post("/api/tasks", json=[valid, {"bot_wxid": bot, **task}], headers=AUTH)
    assert answer.status_code == 400
    assert answer.json()["error_code"] == errors.INVALID_FIELD.number
    assert answer.json()["field"] == field
    assert answer.json()["index"] == 1
    assert field in answer.json()["error_reason"]
    # The valid task of the same request was not written either.
    assert await read_topic(task_settings, topics.TASKS) == []


async def test_api_refuses_send_to_the_bot_itself(task_settings: Settings, sample_accounts: dict[str, Any]) -> None:
    bot = sample_accounts["wxids"][0]
    async with running_gateway(task_settings) as client:
        answer = await client.post("/api/tasks", json=send_task(bot, bot, "echo"), headers=AUTH)
    assert answer.status_code == 400
    assert answer.json()["field"] == "task_dict.wxid_to"


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {ADMIN_TOKEN}"])
async def test_api_refuses_missing_or_wrong_token(
    task_settings: Settings, sample_accounts: dict[str, Any], header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    async with running_gateway(task_settings) as client:
        answer = await client.post("/api/tasks", json=send_task(sample_accounts["wxids"][0], "a", "b"),
                                   headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error_code"] == errors.BAD_ADMIN_TOKEN.number
    assert ADMIN_TOKEN not in answer.text


async def test_api_is_disabled_without_admin_token(
    task_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    async with running_gateway(task_settings.with_overrides(admin_token="")) as client:
        answer = await client.post("/api/tasks", json=send_task(sample_accounts["wxids"][0], "a", "b"),
                                   headers={"Authorization": "Bearer "})
    assert answer.status_code == 403
    assert answer.json()["error_code"] == errors.ADMIN_API_DISABLED.number


async def test_api_answers_in_chinese_when_locale_is_zh_cn(
    task_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    async with running_gateway(task_settings.with_overrides(locale="zh-CN")) as client:
        answer = await client.post("/api/tasks", headers=AUTH,
                                   json={"bot_wxid": sample_accounts["wxids"][0], "task_type": 13,
                                         "task_dict": {"v1": "a"}})
    assert answer.status_code == 400
    assert "缺少字段 task_dict.v2" in answer.json()["error_reason"]


def run_cli(settings: Settings, accounts_file: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """`wehub task send ARGUMENTS` in a child process, on this test's topics."""
    environment = {
        **os.environ, "WEHUB_KAFKA_BOOTSTRAP": str(settings.kafka_bootstrap),
        "WEHUB_TOPIC_PREFIX": str(settings.topic_prefix), "WEHUB_ACCOUNTS": str(accounts_file),
        "WEHUB_LOCALE": "en", "WEHUB_LOG_FORMAT": "text",
    }
    return subprocess.run([sys.executable, "-m", "wehub.cli", "task", "send", *arguments], env=environment,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(("arguments", "field"), [
    (["--type", "42", "--dict", "{}"], "task_type"),
    (["--type", "13", "--dict", '{"v1": "a"}'], "task_dict.v2"),
    (["--type", "1", "--to", "room@chatroom", "--text", "{$@} hi", "--at-style", "1"], "task_dict.at_list"),
    (["--type", "1", "--text", "hi"], "task_dict.wxid_to"),
])
def test_cli_refuses_invalid_task_naming_field(
    task_settings: Settings, accounts_file: Path, sample_accounts: dict[str, Any], arguments: list[str], field: str,
) -> None:
    finished = run_cli(task_settings, accounts_file, "--bot", sample_accounts["wxids"][0], *arguments)
    assert finished.returncode == 2
    assert field in finished.stderr


def test_cli_sends_tasks_from_json_file(
    task_settings: Settings, accounts_file: Path, sample_accounts: dict[str, Any], tmp_path: Path,
) -> None:
    bot = sample_accounts["wxids"][0]
    task_file = tmp_path / "tasks.json"
    tasks = [send_task(bot, "room@chatroom", "a"), {"bot_wxid": bot, "task_type": 14, "task_dict": {}}]
    task_file.write_text(json.dumps(tasks), encoding="utf-8")
    finished = run_cli(task_settings, accounts_file, "--json", str(task_file))
    assert finished.returncode == 0, finished.stderr
    printed_ids = finished.stdout.split()[-2:]

    written = asyncio.run(read_topic(task_settings, topics.TASKS))
    # Records are keyed by task_id, so the two may sit in different partitions.
    assert sorted(key for key, _, _ in written) == sorted(printed_ids)
    assert sorted(record["task_type"] for _, _, record in written if record is not None) == [1, 14]
    assert {record["appid"] for _, _, record in written if record is not None} == {sample_accounts["appid"]}
