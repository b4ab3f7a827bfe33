"""Two gateway processes behind a simulated round-robin balancer hand each task out exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas import topics
from tests import processes
from tests.tasks.conftest import ADMIN_TOKEN, read_topic, send_task
from wehub.settings import Settings

pytestmark = pytest.mark.services

TASK_COUNT = 1000
STARTUP_WAIT_S = 60.0


@pytest.fixture
def two_gateways(task_settings: Settings, accounts_file: Path, tmp_path: Path) -> Iterator[list[str]]:
    """Base URLs of two `wehub gateway` processes sharing this test's topics."""
    with contextlib.ExitStack() as stack:
        urls = []
        for index in range(2):
            port = processes.free_port()
            environment = {
                **os.environ,
                "WEHUB_KAFKA_BOOTSTRAP": str(task_settings.kafka_bootstrap),
                "WEHUB_TOPIC_PREFIX": str(task_settings.topic_prefix),
                "WEHUB_ACCOUNTS": str(accounts_file),
                "WEHUB_ADMIN_TOKEN": ADMIN_TOKEN,
                "WEHUB_TASK_MIN_INTERVAL_S": "0",
                "WEHUB_DATA_DIR": str(tmp_path),
                "WEHUB_LOCALE": "en",
                "WEHUB_LOG_FORMAT": "text",
                "WEHUB_LOG_LEVEL": "WARNING",
                "WEHUB_GATEWAY_NAME": f"replica{index}",
            }
            url = f"http://127.0.0.1:{port}"
            stack.enter_context(processes.server_process(
                processes.gateway_command(port), f"{url}/healthz", env=environment, name=f"gateway replica{index}",
                log_path=tmp_path / f"gateway{index}.log", timeout_s=STARTUP_WAIT_S))
            urls.append(url)
        yield urls


def test_round_robin_polls_get_each_task_once_in_order(
    two_gateways: list[str], task_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    appid, bot = sample_accounts["appid"], sample_accounts["wxids"][0]
    tasks = [send_task(bot, "room@chatroom", f"message {number}") for number in range(TASK_COUNT)]
    with httpx.Client(timeout=30) as client:
        answer = client.post(f"{two_gateways[0]}/api/tasks", json=tasks,
                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert answer.status_code == 200, answer.text
        submitted = answer.json()["task_ids"]

        received: list[str] = []
        polls = 0
        # Bounded: every task needs at most a few polls once both replicas have read it.
        while len(received) < TASK_COUNT and polls < TASK_COUNT * 20:
            replica = two_gateways[polls % 2]
            polls += 1
            body = {"action": "pull_task", "appid": appid, "wxid": bot, "data": {}}
            data = client.post(f"{replica}/wehub", json=body).json()["data"]
            if not data:
                if polls % 50 == 0:
                    time.sleep(0.01)
                continue
            received.append(data["task_id"])
            result = {"action": "report_task_result", "appid": appid, "wxid": bot,
                      "data": {"task_id": data["task_id"], "task_result": 1, "error_reason": ""}}
            assert client.post(f"{two_gateways[polls % 2]}/wehub", json=result).json()["error_code"] == 0

    print(f"{polls} polls for {TASK_COUNT} tasks")
    assert len(received) == TASK_COUNT
    assert len(set(received)) == TASK_COUNT
    assert received == submitted

    status_records = [record for _, name, record in
                      asyncio.run(read_topic(task_settings, topics.TASK_STATUS))
                      if name == topics.TASK_STATUS_SCHEMA and record is not None]
    dispatched = [record["task_id"] for record in status_records if record["status"] == "dispatched"]
    assert sorted(dispatched) == sorted(submitted)
    succeeded = [record["task_id"] for record in status_records if record["status"] == "succeeded"]
    assert sorted(succeeded) == sorted(submitted)
