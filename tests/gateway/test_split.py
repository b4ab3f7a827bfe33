"""Events above the Kafka record limit become per-entity parts that a consumer can reassemble."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.events import DATA_SCHEMAS
from schemas import topics
from schemas.normalize import to_record
from tests.gateway.conftest import read_records, running_gateway
from wehub.settings import Settings

pytestmark = pytest.mark.services


def _friend(index: int) -> dict[str, Any]:
    return {
        "wxid": f"wxid_{index:012d}",
        "wx_alias": f"alias{index}",
        "nickname": f"朋友{index}",
        "remark_name": "",
        "head_img": f"http://wx.qlogo.cn/mmhead/ver_1/{index:040d}/132",
        "sex": index % 2,
        "country": "CN",
        "province": "Guangdong",
        "city": "Shenzhen",
    }


def _group(index: int, members: int) -> dict[str, Any]:
    return {
        "wxid": f"{index:011d}@chatroom",
        "name": f"群{index}",
        "owner_wxid": "wxid_owner",
        "member_count": members,
        "head_img": f"http://wx.qlogo.cn/mmhead/ver_1/{index:040d}/0",
        "member_wxid_list": [f"wxid_{index:06d}{member:06d}" for member in range(members)],
    }


def _contact_report(
    sample_accounts: dict[str, Any], groups: int, members: int, friends: int
) -> dict[str, Any]:
    data = {
        "group_list": [_group(index, members) for index in range(groups)],
        "friend_list": [_friend(index) for index in range(friends)],
        "public_list": [{"wxid": "gh_0001", "nickname": "公众号", "head_img": ""}],
        "report_build": "x1",
    }
    return {
        "action": "report_contact",
        "appid": sample_accounts["appid"],
        "wxid": sample_accounts["wxids"][0],
        "data": data,
    }


def _assert_whole_snapshot(records: list[tuple[bytes | None, str, dict[str, Any]]], schema_name: str) -> str:
    assert records
    assert {name for _, name, _ in records} == {schema_name}
    assert len({record["snapshot_id"] for _, _, record in records}) == 1
    assert [record["part_index"] for _, _, record in records] == list(range(len(records)))
    assert {record["part_count"] for _, _, record in records} == {len(records)}
    snapshot_id: str = records[0][2]["snapshot_id"]
    assert snapshot_id == records[0][2]["event_id"]
    return snapshot_id


async def test_oversized_contact_report_is_split(
    gateway_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    settings = gateway_settings.with_overrides(kafka_max_message_bytes=200_000)
    body = _contact_report(sample_accounts, groups=40, members=300, friends=1500)
    assert len(orjson.dumps(body)) > 400_000
    async with running_gateway(settings) as client:
        response = await client.post("/wehub", content=orjson.dumps(body))
    assert response.json() == {
        "error_code": 0,
        "error_reason": "",
        "ack_type": "common_ack",
        "data": {"reply_task_list": []},
    }

    records = await read_records(settings, "report_contact")
    _assert_whole_snapshot(records, topics.PART_SCHEMAS["report_contact"])
    expected = to_record(DATA_SCHEMAS["report_contact"], body["data"], "data")
    parts = [record for _, _, record in records]
    assert [part["group"] for part in parts if part["kind"] == "group"] == expected["group_list"]
    assert [part["friend"] for part in parts if part["kind"] == "friend"] == expected["friend_list"]
    assert [part["public"] for part in parts if part["kind"] == "public"] == expected["public_list"]
    assert {part["data_extra"] for part in parts} == {'{"report_build":"x1"}'}
    assert {key for key, _, _ in records} == {sample_accounts["wxids"][0].encode()}


async def test_oversized_room_member_report_is_split(
    gateway_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    settings = gateway_settings.with_overrides(kafka_max_message_bytes=200_000)
    rooms = [
        {
            "room_wxid": f"{room:011d}@im.chatroom",
            "name": f"r{room}",
            "owner_wxid": "wxid_owner",
            "member_count": 500,
            "memberInfo_list": [
                {
                    "wxid": f"wxid_{room:04d}{member:06d}",
                    "room_nickname": f"m{member}",
                    "nickname": f"成员{member}",
                    "head_img": "http://wx.qlogo.cn/x/132",
                }
                for member in range(500)
            ],
        }
        for room in range(8)
    ]
    body = {
        "action": "report_room_member_info",
        "appid": sample_accounts["appid"],
        "wxid": sample_accounts["wxids"][0],
        "data": {"room_data_list": rooms},
    }
    async with running_gateway(settings) as client:
        response = await client.post("/wehub", content=orjson.dumps(body))
    assert response.json()["error_code"] == 0

    records = await read_records(settings, "report_room_member_info")
    _assert_whole_snapshot(records, topics.PART_SCHEMAS["report_room_member_info"])
    expected = to_record(DATA_SCHEMAS["report_room_member_info"], body["data"], "data")
    assert [record["room"] for _, _, record in records] == expected["room_data_list"]


async def test_twelve_megabyte_contact_report_is_stored(
    gateway_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    body = orjson.dumps(_contact_report(sample_accounts, groups=2000, members=260, friends=8000))
    assert len(body) > 12_000_000
    async with running_gateway(gateway_settings) as client:
        response = await client.post("/wehub", content=body)
    assert response.json()["error_code"] == 0

    records = await read_records(gateway_settings, "report_contact")
    _assert_whole_snapshot(records, topics.PART_SCHEMAS["report_contact"])
    assert len(records) == 2000 + 8000 + 1
    assert all(record["body_bytes"] == len(body) for _, _, record in records)
