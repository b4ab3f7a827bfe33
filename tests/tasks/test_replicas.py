"""Two gateway processes behind a simulated round-robin balancer hand each task out exactly once."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas import topics
from tests.tasks.conftest import ADMIN_TOKEN, read_topic, send_task
from wehub.settings import Settings

pytestmark = pytest.mark.services

TASK_COUNT = 1000
STARTUP_WAIT_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_serving(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_WAIT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gateway exited with {process.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"gateway at {url} did not start:\n{log_path.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def two_gateways(task_settings: Settings, accounts_file: Path, tmp_path: Path) -> Iterator[list[str]]:
    """Base URLs of two `wehub gateway` processes sharing this test's topics."""
    processes: list[tuple[subprocess.Popen[bytes], Path]] = []
    urls = []
    try:
        for index in range(2):
            port = free_port()
            log_path = tmp_path / f"gateway{index}.log"
            environment = {
                **os.environ,
                "WEHUB_KAFKA_BOOTSTRAP": str(task_settings.kafka_bootstrap),
                "WEHUB_TOPIC_PREFIX": str(task_settings.topic_prefix),
                "WEHUB_ACCOUNTS": str(accounts_file),
                "WEHUB_ADMIN_TOKEN": ADMIN_TOKEN,
                "WEHUB_TASK_MIN_INTERVAL_S": "0",
                "WEHUB_HOST": "127.0.0.1",
                "WEHUB_PORT": str(port),
                "WEHUB_WORKERS": "1",
                "WEHUB_DATA_DIR": str(tmp_path),
                "WEHUB_LOCALE": "en",
                "WEHUB_LOG_FORMAT": "text",
                "WEHUB_LOG_LEVEL": "WARNING",
                "WEHUB_GATEWAY_NAME": f"replica{index}",
            }
            with log_path.open("wb") as log_file:
                process = subprocess.Popen([sys.executable, "-m", "wehub.cli", "gateway"], env=environment,
                                           stdout=log_file, stderr=subprocess.STDOUT)
            processes.append((process, log_path))
            urls.append(f"http://127.0.0.1:{port}")
        for url, (process, log_path) in zip(urls, processes, strict=True):
            wait_until_serving(url, process, log_path)
        yield urls
    finally:
        for process, _ in processes:
            process.terminate()
        for process, _ in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


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
