"""A bot in websocket mode: the same records as over HTTP, tasks pushed, refusals and closes."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.gateway.conftest import corpus_bodies, read_records
from tests.ws.conftest import (
    EXTRA_BOTS,
    FRAME_TIMEOUT_S,
    http_login,
    logged_in_bot,
    request,
    send_task,
    serving,
    submit,
    write_accounts,
)
from wehub.settings import Settings

pytestmark = pytest.mark.services

# Fields that differ between two deliveries of the same request.
PER_DELIVERY = frozenset({"event_id", "received_at", "received_at_ms", "transport"})


def _comparable(record: dict[str, Any]) -> bytes:
    stable = {key: value for key, value in record.items() if key not in PER_DELIVERY}
    return orjson.dumps(stable, option=orjson.OPT_SORT_KEYS, default=str)


async def test_websocket_corpus_matches_http_records(
    ws_settings: Settings, ws_port: int, samples_dir: Path, sample_accounts: dict[str, Any]
) -> None:
    bodies = corpus_bodies(samples_dir)
    by_bot: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for body in bodies:
        by_bot[body["wxid"]].append(body)

    async with serving(ws_settings, ws_port) as url, httpx.AsyncClient(timeout=35) as client:
        over_http: dict[str, list[dict[str, Any]]] = {}
        for wxid, lines in by_bot.items():
            answers = [(await client.post(f"{url}/wehub", content=orjson.dumps(body))).json() for body in lines]
            assert answers[0]["ack_type"] == "login_ack"
            extension = answers[0]["data"].pop("extension_protocol")
            assert extension == {"type": "websocket", "param": {
                "ws_url": f"ws://127.0.0.1:{ws_port}/wehub/ws", "heartbeat_interval": 30}}
            over_http[wxid] = answers

        over_websocket: dict[str, list[dict[str, Any]]] = {}
        for wxid, lines in by_bot.items():
            async with connect(f"ws://127.0.0.1:{ws_port}/wehub/ws", max_size=None) as bot:
                over_websocket[wxid] = [await request(bot, body) for body in lines]
            assert over_websocket[wxid] == over_http[wxid], wxid
        assert set(over_http) == set(sample_accounts["wxids"])

    for action, sent in Counter(body["action"] for body in bodies).items():
        records = [record for _, _, record in await read_records(ws_settings, action)]
        by_transport: dict[str, list[bytes]] = defaultdict(list)
        for record in records:
            by_transport[record["transport"]].append(_comparable(record))
        assert len(by_transport["websocket"]) >= sent, action
        assert sorted(by_transport["websocket"]) == sorted(by_transport["http"]), action


async def test_task_pushed_to_connected_bot(
    ws_settings: Settings, ws_port: int, sample_accounts: dict[str, Any]
) -> None:
    appid, wxid = sample_accounts["appid"], sample_accounts["wxids"][0]
    async with serving(ws_settings, ws_port) as url, httpx.AsyncClient(timeout=35) as client:
        ws_url = (await http_login(client, url, appid, wxid))["extension_protocol"]["param"]["ws_url"]
        async with logged_in_bot(ws_url, appid, wxid) as bot:
            submitted = time.perf_counter()
            [task_id] = await submit(client, url, [send_task(wxid, "pushed")])
            frame = orjson.loads(await asyncio.wait_for(bot.recv(), 5.0))
            latency_s = time.perf_counter() - submitted
            assert frame["ack_type"] == "pull_task_ack"
            assert frame["data"]["task_id"] == task_id
            assert frame["data"]["task_data"]["task_dict"]["msg_list"][0]["msg"] == "pushed"
            print(f"push latency {latency_s * 1000:.1f} ms")

            result = {"action": "report_task_result", "appid": appid, "wxid": wxid,
                      "data": {"task_id": task_id, "task_result": 1, "error_reason": ""}}
            assert (await request(bot, result))["error_code"] == 0

    statuses = [record["status"] for _, name, record in await read_records(ws_settings, "task_status")
                if name == "wehub.task.TaskStatus" and record["task_id"] == task_id]
    assert statuses == ["dispatched", "succeeded"]


async def test_pushes_wait_for_pacing_interval(
    ws_settings: Settings, ws_port: int, sample_accounts: dict[str, Any]
) -> None:
    appid, wxid = sample_accounts["appid"], sample_accounts["wxids"][1]
    paced = ws_settings.with_overrides(task_min_interval_s=1.0)
    async with (
        serving(paced, ws_port) as url,
        httpx.AsyncClient(timeout=35) as client,
        logged_in_bot(f"ws://127.0.0.1:{ws_port}/wehub/ws", appid, wxid) as bot,
    ):
        task_ids = await submit(client, url, [send_task(wxid, "first"), send_task(wxid, "second")])
        arrivals = []
        for _ in task_ids:
            frame = orjson.loads(await asyncio.wait_for(bot.recv(), 10.0))
            arrivals.append((frame["data"]["task_id"], time.monotonic()))
    assert [task_id for task_id, _ in arrivals] == task_ids
    assert arrivals[1][1] - arrivals[0][1] >= 0.9


async def test_early_and_foreign_frames_rejected(
    ws_settings: Settings, ws_port: int, sample_accounts: dict[str, Any]
) -> None:
    appid, wxid, other = sample_accounts["appid"], sample_accounts["wxids"][0], sample_accounts["wxids"][1]
    message = {"action": "report_new_msg", "appid": appid, "wxid": wxid,
               "data": {"msg": {"msg_type": 1, "room_wxid": "", "wxid_from": "a", "wxid_to": wxid, "msg": "hi"}}}
    async with serving(ws_settings, ws_port), connect(f"ws://127.0.0.1:{ws_port}/wehub/ws") as bot:
        early = await request(bot, message)
        assert (early["error_code"], early["ack_type"]) == (1701, "common_ack")
        assert "send login first" in early["error_reason"]

        await bot.send(orjson.dumps({"atcion": "heartbeat", "appid": appid, "wxid": wxid, "data": {}}).decode())
        login = await request(bot, {"action": "login", "appid": appid, "wxid": wxid, "data": {}})
        assert login["error_code"] == 0, login

        foreign = await request(bot, {**message, "wxid": other})
        assert foreign["error_code"] == 1702
        assert (await request(bot, message))["error_code"] == 0

    reasons = [record["reason_code"] for _, _, record in await read_records(ws_settings, "dead_letter")]
    assert sorted(reasons) == ["ws_not_logged_in", "ws_other_bot"]


async def test_new_connection_replaces_old_one(
    ws_settings: Settings, ws_port: int, sample_accounts: dict[str, Any]
) -> None:
    appid, wxid = sample_accounts["appid"], EXTRA_BOTS[0]
    ws_url = f"ws://127.0.0.1:{ws_port}/wehub/ws"
    async with (
        serving(ws_settings, ws_port) as url,
        httpx.AsyncClient(timeout=35) as client,
        logged_in_bot(ws_url, appid, wxid) as old,
        logged_in_bot(ws_url, appid, wxid) as new,
    ):
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(old.recv(), FRAME_TIMEOUT_S)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "replaced")
        heartbeat = {"action": "heartbeat", "appid": appid, "wxid": wxid, "data": {}}
        await new.send(orjson.dumps(heartbeat).decode())
        pull = await request(new, {"action": "pull_task", "appid": appid, "wxid": wxid, "data": {}})
        assert pull == {"error_code": 0, "error_reason": "", "ack_type": "pull_task_ack", "data": {}}

        exposed = (await client.get(f"{url}/metrics")).text
        assert 'wehub_gateway_ws_disconnects_total{reason="replaced"}' in exposed
        assert 'wehub_gateway_ws_frames_total{action="heartbeat"}' in exposed
        assert "wehub_gateway_ws_connected_bots 1.0" in exposed


async def test_silent_connection_closed_after_three_intervals(
    ws_settings: Settings, ws_port: int, sample_accounts: dict[str, Any], tmp_path: Path
) -> None:
    accounts = write_accounts(tmp_path / "fast.toml", sample_accounts, "heartbeat_interval = 1\n")
    settings = ws_settings.with_overrides(accounts=str(accounts))
    appid, wxid = sample_accounts["appid"], EXTRA_BOTS[1]
    async with serving(settings, ws_port) as url, httpx.AsyncClient(timeout=35) as client:
        extension = (await http_login(client, url, appid, wxid))["extension_protocol"]
        assert extension["param"]["heartbeat_interval"] == 1
        async with logged_in_bot(extension["param"]["ws_url"], appid, wxid) as bot:
            heartbeat = orjson.dumps({"atcion": "heartbeat", "appid": appid, "wxid": wxid, "data": {}}).decode()
            for _ in range(4):
                await bot.send(heartbeat)
                await asyncio.sleep(1.0)
            assert bot.state.name == "OPEN"
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(bot.recv(), FRAME_TIMEOUT_S)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.reason == "heartbeat_timeout"


async def test_wrong_url_token_rejected(
    ws_settings: Settings, ws_port: int, sample_accounts: dict[str, Any], tmp_path: Path
) -> None:
    accounts = write_accounts(tmp_path / "token.toml", sample_accounts, 'url_token = "s3cret"\n')
    settings = ws_settings.with_overrides(accounts=str(accounts))
    appid, wxid = sample_accounts["appid"], EXTRA_BOTS[2]
    login = {"action": "login", "appid": appid, "wxid": wxid, "data": {}}
    async with serving(settings, ws_port) as url, httpx.AsyncClient(timeout=35) as client:
        answer = await client.post(f"{url}/wehub/s3cret", json=login)
        ws_url = answer.json()["data"]["extension_protocol"]["param"]["ws_url"]
        assert ws_url == f"ws://127.0.0.1:{ws_port}/wehub/ws/s3cret"
        async with connect(f"ws://127.0.0.1:{ws_port}/wehub/ws?token=wrong") as bot:
            assert (await request(bot, login))["error_code"] == 1202
        async with logged_in_bot(ws_url, appid, wxid) as bot:
            assert bot.state.name == "OPEN"


async def test_oversized_frames_rejected_or_closed(
    ws_settings: Settings, ws_port: int, sample_accounts: dict[str, Any]
) -> None:
    settings = ws_settings.with_overrides(body_limit_bytes=2048, contact_body_limit_bytes=8192)
    appid, wxid = sample_accounts["appid"], EXTRA_BOTS[3]
    message = {"action": "report_new_msg", "appid": appid, "wxid": wxid,
               "data": {"msg": {"msg_type": 1, "room_wxid": "", "wxid_from": "a", "wxid_to": wxid, "msg": "x" * 3000}}}
    async with serving(settings, ws_port), logged_in_bot(f"ws://127.0.0.1:{ws_port}/wehub/ws", appid, wxid) as bot:
        too_large = await request(bot, message)
        assert too_large["error_code"] == 1101
        assert "limit of 2048 bytes" in too_large["error_reason"]

        message["data"]["msg"]["msg"] = "x" * 9000
        await bot.send(orjson.dumps(message).decode())
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(bot.recv(), FRAME_TIMEOUT_S)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009

    reasons = [record["reason_code"] for _, _, record in await read_records(settings, "dead_letter")]
    assert reasons == ["body_too_large"]
