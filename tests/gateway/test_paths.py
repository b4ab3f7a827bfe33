"""Callback URLs as operators type them: trailing slashes, other methods, and an empty login nonce."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import orjson
import pytest

from gateway import errors
from gateway.cli import invalid_forwarded_entry
from gateway.handler import login_signature
from tests.gateway.conftest import running_gateway
from wehub.settings import Settings

pytestmark = pytest.mark.services


def _message(sample_accounts: dict[str, Any]) -> bytes:
    wxid = sample_accounts["wxids"][0]
    msg = {"msg_type": 1, "room_wxid": "", "wxid_from": "wxid_x", "wxid_to": wxid, "msg": "hi"}
    return orjson.dumps(
        {"action": "report_new_msg", "appid": sample_accounts["appid"], "wxid": wxid, "data": {"msg": msg}}
    )


async def test_trailing_slash_reaches_callback(gateway_settings: Settings, sample_accounts: dict[str, Any]) -> None:
    async with running_gateway(gateway_settings) as client:
        response = await client.post("/wehub/", content=_message(sample_accounts))

    assert response.status_code == 200
    assert response.json()["error_code"] == 0


async def test_other_method_gets_405_with_allow(gateway_settings: Settings) -> None:
    async with running_gateway(gateway_settings) as client:
        on_callback = await client.get("/wehub")
        with_slash = await client.get("/wehub/")

    for response in (on_callback, with_slash):
        assert response.status_code == 405
        assert response.json()["error_code"] == errors.METHOD_NOT_ALLOWED.number
        assert "POST" in response.headers["allow"]


async def test_empty_nonce_is_signed(gateway_settings: Settings, sample_accounts: dict[str, Any]) -> None:
    wxid = sample_accounts["wxids"][0]
    login = {"action": "login", "appid": sample_accounts["appid"], "wxid": wxid, "data": {"nonce": ""}}
    async with running_gateway(gateway_settings) as client:
        response = await client.post("/wehub", content=orjson.dumps(login))

    answer = response.json()
    assert answer["ack_type"] == "login_ack"
    assert answer["data"]["signature"] == login_signature(wxid, "", sample_accounts["secret"])


@pytest.mark.parametrize(
    ("value", "invalid"),
    [
        ("", None),
        ("*", None),
        ("127.0.0.1, 10.0.0.0/8,::1", None),
        ("10.0.0.1,bogus", "bogus"),
        ("10.0.0.300", "10.0.0.300"),
    ],
)
def test_forwarded_allow_ips_entries_checked(value: str, invalid: str | None) -> None:
    assert invalid_forwarded_entry(value) == invalid


def test_gateway_refuses_mistyped_forwarded_ips(gateway_settings: Settings) -> None:
    environment = {
        "WEHUB_ACCOUNTS": str(gateway_settings.accounts),
        "WEHUB_LOCALE": "en",
        "WEHUB_FORWARDED_ALLOW_IPS": "10.0.0.1,bogus",
        "PATH": "/usr/bin:/bin",
    }
    finished = subprocess.run(
        [sys.executable, "-m", "wehub.cli", "gateway", "--port", "1"],
        env=environment, capture_output=True, text=True, timeout=60, check=False,
    )

    assert finished.returncode == 2
    assert "WEHUB_FORWARDED_ALLOW_IPS: 'bogus' is not an IP address" in finished.stderr


async def test_wrong_path_and_method_counted(gateway_settings: Settings) -> None:
    async with running_gateway(gateway_settings) as client:
        before = await client.get("/metrics")
        await client.get("/wehub")
        await client.post("/nowhere", content=b"{}")
        after = await client.get("/metrics")

    def count(text: str, outcome: str) -> float:
        prefix = f'wehub_gateway_requests_total{{action="none",outcome="{outcome}"}} '
        values = [float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix)]
        return values[0] if values else 0.0

    assert count(after.text, "method_not_allowed") == count(before.text, "method_not_allowed") + 1
    assert count(after.text, "not_found") == count(before.text, "not_found") + 1
