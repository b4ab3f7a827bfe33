"""Two gateway processes in websocket mode: bots spread over both, each task pushed once to its bot."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection

from tests import processes
from tests.ws.conftest import (
    ADMIN_TOKEN,
    EXTRA_BOTS,
    http_login,
    logged_in_bot,
    send_task,
    submit,
    write_accounts,
)
from wehub.settings import Settings

pytestmark = pytest.mark.services

TASKS_PER_BOT = 2
# After the last expected push, how long to keep listening for a duplicate.
QUIET_S = 2.0


@contextlib.contextmanager
def gateway_process(settings: Settings, name: str, port: int, log_path: Path) -> Iterator[str]:
    """`wehub gateway` on 127.0.0.1:`port` in a subprocess; yields its base URL once it is ready."""
    env = {
        **os.environ,
        "WEHUB_ACCOUNTS": str(settings.accounts),
        "WEHUB_KAFKA_BOOTSTRAP": str(settings.kafka_bootstrap),
        "WEHUB_TOPIC_PREFIX": str(settings.topic_prefix),
        "WEHUB_LOCALE": "en",
        "WEHUB_GATEWAY_NAME": name,
        "WEHUB_ADMIN_TOKEN": ADMIN_TOKEN,
        "WEHUB_TASK_MIN_INTERVAL_S": "0",
        "WEHUB_LOG_FORMAT": "json",
    }
    url = f"http://127.0.0.1:{port}"
    with processes.server_process(processes.gateway_command(port), f"{url}/readyz", env=env, name=f"gateway {name}",
                                  log_path=log_path):
        yield url


@contextlib.asynccontextmanager
async def connected_bots(
    client: httpx.AsyncClient, urls: list[str], appid: str, wxids: list[str]
) -> AsyncIterator[dict[str, tuple[str, ClientConnection]]]:
    """Each bot logged in over HTTP (round-robin) and then on the ws_url its login_ack named."""
    async with contextlib.AsyncExitStack() as stack:
        bots = {}
        for index, wxid in enumerate(wxids):
            ws_url = (await http_login(client, urls[index % len(urls)], appid, wxid))["extension_protocol"]
            bot = await stack.enter_async_context(logged_in_bot(ws_url["param"]["ws_url"], appid, wxid))
            bots[wxid] = (ws_url["param"]["ws_url"], bot)
        yield bots


async def _pushes(bot: ClientConnection, expected: int) -> list[dict[str, Any]]:
    """Push frames of one socket: wait for `expected` of them, then listen QUIET_S more."""
    frames: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            while len(frames) < expected:
                frames.append(orjson.loads(await bot.recv()))
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(QUIET_S):
            while True:
                frames.append(orjson.loads(await bot.recv()))
    return frames


async def test_replicas_push_each_task_once(
    ws_settings: Settings, sample_accounts: dict[str, Any], tmp_path: Path
) -> None:
    appid = sample_accounts["appid"]
    wxids = [*sample_accounts["wxids"], *EXTRA_BOTS]
    ports = [processes.free_port(), processes.free_port()]
    ws_urls = [f"ws://127.0.0.1:{port}/wehub/ws" for port in ports]
    extra = f"ws_urls = {orjson.dumps(ws_urls).decode()}\n"
    accounts = write_accounts(tmp_path / "replicas.toml", sample_accounts, extra)
    settings = ws_settings.with_overrides(accounts=str(accounts))

    with (
        gateway_process(settings, "replica-0", ports[0], tmp_path / "replica-0.log") as first,
        gateway_process(settings, "replica-1", ports[1], tmp_path / "replica-1.log") as second,
    ):
        async with (
            httpx.AsyncClient(timeout=35) as client,
            connected_bots(client, [first, second], appid, wxids) as bots,
        ):
            spread = Counter(ws_url for ws_url, _ in bots.values())
            assert set(spread) == set(ws_urls), spread

            tasks = [send_task(wxid, f"task {number} for {wxid}") for number in range(TASKS_PER_BOT) for wxid in wxids]
            task_ids = await submit(client, first, tasks)
            owner = {task_id: task["bot_wxid"] for task_id, task in zip(task_ids, tasks, strict=True)}

            received = await asyncio.gather(*(_pushes(bot, TASKS_PER_BOT) for _, bot in bots.values()))

    delivered: Counter[str] = Counter()
    for wxid, frames in zip(bots, received, strict=True):
        for frame in frames:
            assert frame["ack_type"] == "pull_task_ack"
            task_id = frame["data"]["task_id"]
            assert owner[task_id] == wxid
            delivered[task_id] += 1
    assert delivered == Counter(dict.fromkeys(task_ids, 1))
