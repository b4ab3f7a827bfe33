"""`wehub gateway` trusts X-Forwarded-For only from the proxies named in WEHUB_FORWARDED_ALLOW_IPS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.gateway.conftest import gateway_process, read_records
from wehub.settings import Settings

pytestmark = pytest.mark.services

FORWARDED_CLIENT = "203.0.113.7"


async def _client_address(settings: Settings, url: str, sample_accounts: dict[str, Any], marker: str) -> str:
    body = {
        "action": "report_forwarded_probe",
        "appid": sample_accounts["appid"],
        "wxid": sample_accounts["wxids"][0],
        "data": {"marker": marker},
    }
    async with httpx.AsyncClient(timeout=35) as client:
        response = await client.post(f"{url}/wehub", content=orjson.dumps(body),
                                     headers={"x-forwarded-for": FORWARDED_CLIENT})
    assert response.json()["error_code"] == 0
    records = [record for _, _, record in await read_records(settings, "unknown_action")]
    [record] = [record for record in records if marker in record["data_json"]]
    address: str = record["client_address"]
    return address


async def test_forwarded_for_ignored_by_default(
    gateway_settings: Settings, sample_accounts: dict[str, Any], tmp_path: Path
) -> None:
    with gateway_process(gateway_settings, "direct", tmp_path / "gateway.log") as url:
        address = await _client_address(gateway_settings, url, sample_accounts, "direct")

    assert address == "127.0.0.1"


async def test_forwarded_for_trusted_from_named_proxy(
    gateway_settings: Settings, sample_accounts: dict[str, Any], tmp_path: Path
) -> None:
    trusted = {"WEHUB_FORWARDED_ALLOW_IPS": "127.0.0.1"}
    with gateway_process(gateway_settings, "behind-proxy", tmp_path / "gateway.log", trusted) as url:
        address = await _client_address(gateway_settings, url, sample_accounts, "behind-proxy")

    assert address == FORWARDED_CLIENT
