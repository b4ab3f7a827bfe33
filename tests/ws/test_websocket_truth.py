"""The sample corpus sent over websockets gives the analytics figures of truth.json, as over HTTP."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.consumers import truth
from tests.consumers.helpers import run_until_drained
from tests.gateway.conftest import corpus_bodies
from tests.ws.conftest import FRAME_TIMEOUT_S, request, serving
from wehub.settings import Settings

pytestmark = pytest.mark.services


async def test_websocket_corpus_gives_truth_figures(
    ws_settings: Settings, ws_port: int, samples_dir: Path, clickhouse_dsn: str, clickhouse_database: str
) -> None:
    settings = ws_settings.with_overrides(
        clickhouse_dsn=clickhouse_dsn, clickhouse_database=clickhouse_database, batch_max_wait_ms=200)
    bodies = corpus_bodies(samples_dir)
    ws_url = f"ws://127.0.0.1:{ws_port}/wehub/ws"

    # One socket per bot, each request sent in corpus order on its bot's socket.
    async with serving(settings, ws_port), contextlib.AsyncExitStack() as sockets:
        bots: dict[str, ClientConnection] = {}
        for body in bodies:
            wxid = body["wxid"]
            if wxid not in bots:
                bots[wxid] = await sockets.enter_async_context(
                    connect(ws_url, max_size=None, open_timeout=FRAME_TIMEOUT_S))
            answer = await request(bots[wxid], body)
            assert answer["error_code"] == 0, (body["action"], answer)

    await run_until_drained(settings)

    expected = truth.expected(json.loads((samples_dir / "truth.json").read_text(encoding="utf-8")))
    found = truth.figures(settings)
    for name, value in expected.items():
        assert found[name] == value, name
