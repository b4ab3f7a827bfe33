"""Refused requests: a clear answer with ack_type and error_code, a dead letter, and service goes on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway import errors
from schemas import topics
from tests.gateway.conftest import bad_cases, read_records, running_gateway
from wehub.settings import Settings

pytestmark = pytest.mark.services

# case of bad.jsonl -> (HTTP status, error code, ack_type)
EXPECTED = {
    "not_json": (400, errors.INVALID_JSON, "common_ack"),
    "empty_body": (400, errors.INVALID_JSON, "common_ack"),
    "json_array": (400, errors.NOT_AN_OBJECT, "common_ack"),
    "json_string": (400, errors.NOT_AN_OBJECT, "common_ack"),
    "missing_action": (400, errors.INVALID_ACTION, "common_ack"),
    "action_not_string": (400, errors.INVALID_ACTION, "common_ack"),
    "data_not_object": (400, errors.INVALID_ENVELOPE, "common_ack"),
    "unknown_appid": (401, errors.UNKNOWN_APPID, "common_ack"),
    "login_not_whitelisted": (200, errors.WXID_NOT_WHITELISTED, "login_ack"),
    "msg_type_wrong_type": (400, errors.INVALID_FIELD, "common_ack"),
    "invalid_utf8": (400, errors.INVALID_UTF8, "common_ack"),
    "deep_nesting": (400, errors.INVALID_JSON, "common_ack"),
    "huge_number": (400, errors.INVALID_FIELD, "common_ack"),
    "nul_in_wxid": (400, errors.INVALID_ENVELOPE, "common_ack"),
}


def _message(sample_accounts: dict[str, Any], text: str = "hi", bot: int = 0) -> dict[str, Any]:
    wxid = sample_accounts["wxids"][bot]
    msg = {"msg_type": 1, "room_wxid": "", "wxid_from": "wxid_x", "wxid_to": wxid, "msg": text}
    return {"action": "report_new_msg", "appid": sample_accounts["appid"], "wxid": wxid, "data": {"msg": msg}}


async def test_every_bad_sample_is_refused_and_dead_lettered(
    gateway_settings: Settings, samples_dir: Path, sample_accounts: dict[str, Any]
) -> None:
    cases = bad_cases(samples_dir)
    assert {case["case"] for case in cases} == set(EXPECTED)
    async with running_gateway(gateway_settings) as client:
        for case in cases:
            response = await client.post(
                "/wehub", content=case["body"], headers={"content-type": case["content_type"]}
            )
            status, code, ack_type = EXPECTED[case["case"]]
            answer = response.json()
            assert (response.status_code, answer["error_code"], answer["ack_type"]) == (
                status,
                code.number,
                ack_type,
            ), (case["case"], answer)
            assert answer["error_reason"]

        still_serving = await client.post("/wehub", json=_message(sample_accounts))
        assert still_serving.json()["error_code"] == 0

    letters = [record for _, _, record in await read_records(gateway_settings, topics.DEAD_LETTER)]
    assert sorted(letter["reason_code"] for letter in letters) == sorted(
        code.name for _, code, _ in EXPECTED.values()
    )
    bodies = {case["body"] for case in cases}
    for letter in letters:
        assert letter["body"] in bodies
        assert letter["body_bytes"] == len(letter["body"])
        assert letter["truncated"] is False
        assert letter["source"] == "gateway"
        assert letter["reason"]


async def test_invalid_field_reason_names_field_value_expected(
    gateway_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    body = _message(sample_accounts)
    body["data"]["msg"]["msg_type"] = "abc"
    async with running_gateway(gateway_settings) as client:
        response = await client.post("/wehub", json=body)
    reason = response.json()["error_reason"]
    assert "data.msg.msg_type" in reason
    assert "'abc'" in reason
    assert "integer" in reason


async def test_negative_msg_type_is_refused(gateway_settings: Settings, sample_accounts: dict[str, Any]) -> None:
    body = _message(sample_accounts)
    body["data"]["msg"]["msg_type"] = -5
    async with running_gateway(gateway_settings) as client:
        response = await client.post("/wehub", json=body)

    assert response.status_code == 400
    assert response.json()["error_code"] == errors.INVALID_FIELD.number
    assert "data.msg.msg_type" in response.json()["error_reason"]
    assert "at least 0" in response.json()["error_reason"]


async def test_login_from_unlisted_wxid_is_refused(
    gateway_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    body = {
        "action": "login",
        "appid": sample_accounts["appid"],
        "wxid": "wxid_stranger",
        "data": {"nonce": "n"},
    }
    async with running_gateway(gateway_settings.with_overrides(locale="zh-CN")) as client:
        response = await client.post("/wehub", json=body)
    answer = response.json()
    assert response.status_code == 200
    assert answer["ack_type"] == "login_ack"
    assert answer["error_code"] == errors.WXID_NOT_WHITELISTED.number
    assert "wxid_stranger" in answer["error_reason"]
    assert "白名单" in answer["error_reason"]
    assert "signature" not in answer.get("data", {})


async def test_report_from_unlisted_wxid_is_forbidden(
    gateway_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    body = {**_message(sample_accounts), "wxid": "wxid_stranger"}
    async with running_gateway(gateway_settings) as client:
        response = await client.post("/wehub", json=body)
    assert response.status_code == 403
    assert response.json()["error_code"] == errors.WXID_NOT_WHITELISTED.number


async def test_oversized_body_is_refused_and_dead_lettered(
    gateway_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    settings = gateway_settings.with_overrides(body_limit_bytes=64 * 1024, dead_letter_body_cap_bytes=1024)
    body = orjson.dumps(_message(sample_accounts, "x" * 100_000))
    async with running_gateway(settings) as client:
        response = await client.post("/wehub", content=body)
        answer = response.json()
        assert (response.status_code, answer["error_code"]) == (413, errors.BODY_TOO_LARGE.number)
        assert str(len(body)) in answer["error_reason"]
        assert (await client.post("/wehub", json=_message(sample_accounts))).json()["error_code"] == 0

    [(_, _, letter)] = await read_records(settings, topics.DEAD_LETTER)
    assert letter["reason_code"] == "body_too_large"
    assert letter["body"] == body[:1024]
    assert (letter["body_bytes"], letter["truncated"], letter["action"]) == (
        len(body),
        True,
        "report_new_msg",
    )


async def test_streamed_body_over_every_limit_is_cut_short(
    gateway_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    settings = gateway_settings.with_overrides(
        body_limit_bytes=16 * 1024, contact_body_limit_bytes=64 * 1024, dead_letter_body_cap_bytes=1024
    )
    body = orjson.dumps(_message(sample_accounts, "y" * 300_000))

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    async with running_gateway(settings) as client:
        response = await client.post("/wehub", content=chunks())
    answer = response.json()
    assert "content-length" not in response.request.headers
    assert (response.status_code, answer["error_code"]) == (413, errors.BODY_TOO_LARGE.number)
    assert answer["ack_type"] == "common_ack"

    [(_, _, letter)] = await read_records(settings, topics.DEAD_LETTER)
    assert letter["body"] == body[:1024]
    assert letter["truncated"] is True
    assert 64 * 1024 < letter["body_bytes"] <= len(body)


async def test_upload_path_is_not_taken_for_a_url_token(gateway_settings: Settings) -> None:
    async with running_gateway(gateway_settings) as client:
        response = await client.post(
            "/wehub/upload", content=b"not multipart", headers={"content-type": "text/plain"}
        )
    assert response.status_code < 500
    assert response.json()["ack_type"] == "upload_file_ack"
    assert response.json()["error_code"] != 0


async def test_contact_report_over_its_own_limit_is_refused(
    gateway_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    settings = gateway_settings.with_overrides(
        contact_body_limit_bytes=128 * 1024, body_limit_bytes=16 * 1024
    )
    friends = [{"wxid": f"wxid_{index:08d}", "nickname": "n" * 20} for index in range(4000)]
    body = {
        "action": "report_contact",
        "appid": sample_accounts["appid"],
        "wxid": sample_accounts["wxids"][0],
        "data": {"friend_list": friends},
    }
    async with running_gateway(settings) as client:
        response = await client.post("/wehub", json=body)
    assert (response.status_code, response.json()["error_code"]) == (413, errors.BODY_TOO_LARGE.number)


async def test_unsplittable_oversized_event_is_refused(
    gateway_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    settings = gateway_settings.with_overrides(kafka_max_message_bytes=4096)
    async with running_gateway(settings) as client:
        response = await client.post("/wehub", json=_message(sample_accounts, "x" * 8000))
    answer = response.json()
    assert (response.status_code, answer["error_code"]) == (413, errors.RECORD_TOO_LARGE.number)
    [(_, _, letter)] = await read_records(settings, topics.DEAD_LETTER)
    assert letter["reason_code"] == "record_too_large"
    assert await read_records(settings, "report_new_msg") == []


async def test_url_token_required_when_configured(
    gateway_settings: Settings, sample_accounts: dict[str, Any], tmp_path: Path
) -> None:
    accounts = tmp_path / "with-token.toml"
    accounts.write_text(
        f'[[app]]\nappid = "{sample_accounts["appid"]}"\nsecret = "s"\n'
        f'wxids = ["{sample_accounts["wxids"][0]}"]\n'
        'url_token = "tok-123"\n[app.websocket]\nenabled = true\n',
        encoding="utf-8",
    )
    body = _message(sample_accounts)
    async with running_gateway(gateway_settings.with_overrides(accounts=str(accounts))) as client:
        missing = await client.post("/wehub", json=body)
        wrong = await client.post("/wehub?token=nope", json=body)
        in_query = await client.post("/wehub?token=tok-123", json=body)
        in_path = await client.post("/wehub/tok-123", json=body)
    assert [missing.status_code, wrong.status_code] == [401, 401]
    assert missing.json()["error_code"] == errors.BAD_TOKEN.number
    assert "tok-123" not in missing.text
    assert [in_query.json()["error_code"], in_path.json()["error_code"]] == [0, 0]


async def test_unknown_path_and_method_get_json(gateway_settings: Settings) -> None:
    async with running_gateway(gateway_settings) as client:
        wrong_method = await client.get("/wehub")
        wrong_path = await client.post("/elsewhere", content=b"{}")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["ack_type"] == "common_ack"
    assert wrong_path.status_code == 404
    assert wrong_path.json()["error_code"] == errors.NOT_FOUND.number
