"""The sample corpus through a gateway on a real broker: right answers, one record per request."""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.events import DATA_SCHEMAS
from gateway.handler import ack_type_for
from schemas import topics
from schemas.normalize import to_protocol, to_record
from tests.gateway.conftest import CLIENT_ADDRESS, corpus_bodies, read_records, running_gateway
from wehub.settings import Settings

pytestmark = pytest.mark.services

JSON = {"content-type": "application/json"}


class ScriptedTasks:
    """A task source that hands out one given task and records the results it receives."""

    def __init__(self, task: dict[str, Any]) -> None:
        self.task: dict[str, Any] | None = task
        self.results: list[tuple[str, str, str, int | None, str | None]] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def next_task(self, appid: str, bot_wxid: str) -> dict[str, Any] | None:
        task, self.task = self.task, None
        return task

    async def task_result(
        self, appid: str, bot_wxid: str, task_id: str, task_result: int | None, error_reason: str | None
    ) -> None:
        self.results.append((appid, bot_wxid, task_id, task_result, error_reason))

    def routes(self) -> list[Any]:
        return []


async def test_corpus_requests_acknowledged_and_published_once(
    gateway_settings: Settings, samples_dir: Path, sample_accounts: dict[str, Any]
) -> None:
    bodies = corpus_bodies(samples_dir)
    sent: dict[str, list[tuple[dict[str, Any], int]]] = defaultdict(list)
    async with running_gateway(gateway_settings) as client:
        for body in bodies:
            content = orjson.dumps(body)
            response = await client.post("/wehub", content=content, headers=JSON)
            answer = response.json()
            assert response.status_code == 200, answer
            assert answer["error_code"] == 0, answer
            assert answer["ack_type"] == ack_type_for(body["action"])
            if body["action"] == "login":
                nonce = body["data"]["nonce"]
                digest = f"{body['wxid']}#{nonce}#{sample_accounts['secret']}".encode()
                assert answer["data"]["signature"] == hashlib.md5(digest).hexdigest()
            sent[body["action"]].append((body, len(content)))

    for action, requests in sent.items():
        records = await read_records(gateway_settings, action)
        assert len(records) == len(requests), action
        schema = DATA_SCHEMAS[action]
        for bot in {body["wxid"] for body, _ in requests}:
            mine = [(key, name, record) for key, name, record in records if record["bot_wxid"] == bot]
            theirs = [(body, size) for body, size in requests if body["wxid"] == bot]
            # One bot's records share a partition, so they keep the order the bot sent them in.
            for (key, name, record), (body, size) in zip(mine, theirs, strict=True):
                assert name == topics.EVENT_SCHEMAS[action]
                assert key == bot.encode()
                assert record["appid"] == body["appid"]
                assert record["action"] == action
                assert record["transport"] == "http"
                assert record["gateway"] == "gateway-under-test"
                assert record["client_address"] == CLIENT_ADDRESS[0]
                assert record["body_bytes"] == size
                assert uuid.UUID(record["event_id"])
                expected = to_protocol(schema, to_record(schema, body["data"], "data"))
                assert to_protocol(schema, record["data"]) == expected


async def test_unknown_fields_are_kept(gateway_settings: Settings, samples_dir: Path) -> None:
    body = next(body for body in corpus_bodies(samples_dir) if body["action"] == "report_new_msg")
    body = {**body, "client_session": "s-1", "client_build": 7, "data": {**body["data"], "trace": {"hop": 1}}}
    body["data"]["msg"] = {**body["data"]["msg"], "is_pinned": True}
    async with running_gateway(gateway_settings) as client:
        response = await client.post("/wehub", content=orjson.dumps(body), headers=JSON)
    assert response.json()["error_code"] == 0

    [(_, _, record)] = await read_records(gateway_settings, "report_new_msg")
    assert record["client_session"] == "s-1"
    assert orjson.loads(record["extra"]) == {"client_build": 7}
    data = to_protocol(DATA_SCHEMAS["report_new_msg"], record["data"])
    assert data["trace"] == {"hop": 1}
    assert data["msg"]["is_pinned"] is True


async def test_unknown_action_is_accepted_and_published(
    gateway_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    data = {"room_wxid": "123@chatroom", "notice": "a new kind of event"}
    body = {
        "action": "report_room_notice",
        "appid": sample_accounts["appid"],
        "wxid": sample_accounts["wxids"][0],
        "data": data,
    }
    async with running_gateway(gateway_settings) as client:
        response = await client.post("/wehub", content=orjson.dumps(body), headers=JSON)
    answer = response.json()
    assert (response.status_code, answer["error_code"], answer["ack_type"]) == (200, 0, "common_ack")

    [(key, name, record)] = await read_records(gateway_settings, topics.UNKNOWN_ACTION)
    assert name == topics.UNKNOWN_ACTION_SCHEMA
    assert key == sample_accounts["wxids"][0].encode()
    assert record["action"] == "report_room_notice"
    assert orjson.loads(record["data_json"]) == data


async def test_pull_task_hands_out_task_and_forwards_result(
    gateway_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    task = {
        "task_id": "t-1",
        "task_data": {"task_type": 1, "task_dict": {"wxid_to": "wxid_x", "msg_list": []}},
    }
    tasks = ScriptedTasks(task)
    appid, bot = sample_accounts["appid"], sample_accounts["wxids"][1]
    envelope = {"appid": appid, "wxid": bot}
    async with running_gateway(gateway_settings, tasks) as client:
        first = await client.post("/wehub", json={**envelope, "action": "pull_task", "data": {}})
        second = await client.post("/wehub", json={**envelope, "action": "pull_task", "data": {}})
        result = {"task_id": "t-1", "task_result": "1", "error_reason": ""}
        reported = await client.post(
            "/wehub", json={**envelope, "action": "report_task_result", "data": result}
        )

    assert first.json() == {"error_code": 0, "error_reason": "", "ack_type": "pull_task_ack", "data": task}
    assert second.json()["data"] == {}
    assert reported.json()["ack_type"] == "common_ack"
    assert tasks.results == [(appid, bot, "t-1", 1, "")]
    assert len(await read_records(gateway_settings, "pull_task")) == 2
    [(_, _, record)] = await read_records(gateway_settings, "report_task_result")
    assert record["data"]["task_id"] == "t-1"


async def test_control_characters_inside_texts_are_accepted(
    gateway_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    msg = {
        "msg_type": 1,
        "room_wxid": "",
        "wxid_from": "wxid_x",
        "wxid_to": sample_accounts["wxids"][0],
        "msg": "line\u0001one\ttab\u001f",
        "atuserlist": ["wxid_y"],
    }
    body = {
        "action": "report_new_msg",
        "appid": sample_accounts["appid"],
        "wxid": sample_accounts["wxids"][0],
        "data": {"msg": msg},
    }
    async with running_gateway(gateway_settings) as client:
        response = await client.post("/wehub", content=orjson.dumps(body), headers=JSON)
    assert response.json()["error_code"] == 0

    [(_, _, record)] = await read_records(gateway_settings, "report_new_msg")
    assert record["data"]["msg"]["msg"] == msg["msg"]
    assert record["data"]["msg"]["atUserList"] == ["wxid_y"]
