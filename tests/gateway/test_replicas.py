"""Two gateway processes behind round-robin answer exactly as one gateway does."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.gateway.conftest import corpus_bodies, gateway_process, read_records, running_gateway
from wehub.settings import Settings

pytestmark = pytest.mark.services


async def test_two_replicas_respond_like_one(
    gateway_settings: Settings, samples_dir: Path, tmp_path: Path
) -> None:
    bodies = [orjson.dumps(body) for body in corpus_bodies(samples_dir)]
    async with running_gateway(gateway_settings) as client:
        alone = [
            (response.status_code, response.json())
            for response in [await client.post("/wehub", content=body) for body in bodies]
        ]

    with (
        gateway_process(gateway_settings, "replica-0", tmp_path / "replica-0.log") as first,
        gateway_process(gateway_settings, "replica-1", tmp_path / "replica-1.log") as second,
    ):
        async with httpx.AsyncClient(timeout=35) as client:
            urls = [first, second]
            behind_balancer: list[tuple[int, Any]] = []
            for index, body in enumerate(bodies):
                response = await client.post(
                    f"{urls[index % 2]}/wehub", content=body, headers={"content-type": "application/json"}
                )
                behind_balancer.append((response.status_code, response.json()))

    assert behind_balancer == alone
    actions = Counter(orjson.loads(body)["action"] for body in bodies)
    by_gateway: Counter[str] = Counter()
    for action, sent in actions.items():
        records = [record for _, _, record in await read_records(gateway_settings, action)]
        assert len(records) == 2 * sent, action
        by_gateway.update(record["gateway"] for record in records)
    assert by_gateway == {
        "gateway-under-test": len(bodies),
        "replica-0": (len(bodies) + 1) // 2,
        "replica-1": len(bodies) // 2,
    }
