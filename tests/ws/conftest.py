"""Fixtures of the websocket tests: a real uvicorn server on a free loopback port, and bot clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from gateway.app import create_app
from tests import processes
from wehub.settings import Settings

ADMIN_TOKEN = "ws-test-admin-token"
EXTRA_BOTS = [f"ws_bot_{number}" for number in range(5)]
STARTUP_TIMEOUT_S = 60.0
FRAME_TIMEOUT_S = 10.0


free_port = processes.free_port


def write_accounts(path: Path, sample_accounts: dict[str, Any], extra: str = "") -> Path:
    """The sample appid with websocket mode on, its bots plus EXTRA_BOTS whitelisted."""
    wxids = ", ".join(json.dumps(wxid) for wxid in [*sample_accounts["wxids"], *EXTRA_BOTS])
    path.write_text(
        f'[[app]]\nappid = "{sample_accounts["appid"]}"\nsecret = "{sample_accounts["secret"]}"\n'
        f"wxids = [{wxids}]\nwebsocket = true\n{extra}",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def ws_port() -> int:
    return free_port()


@pytest.fixture
def ws_settings(
    pipeline_settings: Settings, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path,
    sample_accounts: dict[str, Any], ws_port: int,
) -> Settings:
    """Gateway settings on this test's topics, websocket mode on for the sample appid, no pacing."""
    accounts = write_accounts(tmp_path / "ws-accounts.toml", sample_accounts)
    return pipeline_settings.with_overrides(
        kafka_bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, accounts=str(accounts),
        public_url=f"http://127.0.0.1:{ws_port}", gateway_name="ws-gateway", admin_token=ADMIN_TOKEN,
        task_min_interval_s=0.0,
    )


@contextlib.asynccontextmanager
async def serving(settings: Settings, port: int) -> AsyncIterator[str]:
    """The gateway app under uvicorn on 127.0.0.1:`port` in this event loop; yields its http URL."""
    app = create_app(settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on",
        ws_max_size=max(int(settings.body_limit_bytes), int(settings.contact_body_limit_bytes)),
    )
    server = uvicorn.Server(config)
    running = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            while not server.started:
                if running.done():
                    running.result()
                    pytest.fail("uvicorn stopped before it started")
                await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(running, 30)


async def http_login(client: httpx.AsyncClient, url: str, appid: str, wxid: str) -> dict[str, Any]:
    """POST a login; the login_ack's data."""
    body = {"action": "login", "appid": appid, "wxid": wxid, "data": {"nonce": "abc123"}}
    answer = await client.post(f"{url}/wehub", json=body)
    assert answer.status_code == 200, answer.text
    payload: dict[str, Any] = answer.json()
    assert payload["error_code"] == 0, payload
    data: dict[str, Any] = payload["data"]
    return data


async def request(bot: ClientConnection, body: dict[str, Any]) -> dict[str, Any]:
    """Send one request frame and return the next frame that is not a push."""
    await bot.send(orjson.dumps(body).decode())
    while True:
        frame = orjson.loads(await asyncio.wait_for(bot.recv(), FRAME_TIMEOUT_S))
        if frame.get("ack_type") != "pull_task_ack" or body.get("action") == "pull_task":
            answer: dict[str, Any] = frame
            return answer


@contextlib.asynccontextmanager
async def logged_in_bot(ws_url: str, appid: str, wxid: str) -> AsyncIterator[ClientConnection]:
    """A websocket of `wxid`, logged in over the socket."""
    async with connect(ws_url, max_size=None, open_timeout=FRAME_TIMEOUT_S) as bot:
        answer = await request(bot, {"action": "login", "appid": appid, "wxid": wxid, "data": {"nonce": "n1"}})
        assert answer["error_code"] == 0, answer
        assert "extension_protocol" not in answer["data"]
        yield bot


def send_task(bot_wxid: str, text: str) -> dict[str, Any]:
    return {"bot_wxid": bot_wxid, "task_type": 1,
            "task_dict": {"wxid_to": "filehelper", "at_list": [], "msg_list": [{"msg_type": 1, "msg": text}]}}


async def submit(client: httpx.AsyncClient, url: str, tasks: list[dict[str, Any]]) -> list[str]:
    answer = await client.post(f"{url}/api/tasks", json=tasks, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert answer.status_code == 200, answer.text
    task_ids: list[str] = answer.json()["task_ids"]
    return task_ids
