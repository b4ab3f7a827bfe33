"""A gateway recovers by itself after its broker restarted while sends were in flight."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.local.kafka import start_kafka
from deploy.local.process import RunningService
from gateway import errors
from tests import services
from tests.gateway.conftest import read_records, running_gateway
from wehub.settings import Settings

pytestmark = pytest.mark.services

RECOVERY_TIMEOUT_S = 120.0


def _two_free_ports() -> int:
    """A port whose next port is free too (the throwaway broker's controller listens there)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        with socket.socket() as neighbour:
            try:
                neighbour.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free loopback ports")


@pytest.fixture
def own_broker(pipeline_settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, Path]]:
    """Settings pointing at a broker of this test alone, and the data folder to restart it from."""
    port = _two_free_ports()
    settings = pipeline_settings.with_overrides(
        kafka_port=port,
        kafka_bootstrap=f"127.0.0.1:{port}",
        topic_prefix="restart",
        kafka_timeout_s=5.0,
        cache_dir=os.environ.get("WEHUB_CACHE_DIR", ""),
    )
    broker = start_kafka(settings, tmp_path)
    try:
        yield settings, tmp_path
    finally:
        _kill(broker)


def _kill(broker: RunningService) -> None:
    if broker.is_alive():
        os.kill(broker.pid, signal.SIGKILL)
    broker.stop()


def _message(sample_accounts: dict[str, Any], index: int) -> dict[str, Any]:
    wxid = sample_accounts["wxids"][index % len(sample_accounts["wxids"])]
    msg = {
        "msg_type": 1,
        "room_wxid": "",
        "wxid_from": "wxid_x",
        "wxid_to": wxid,
        "msg": f"m{index}",
        "msg_id": str(index),
    }
    return {"action": "report_new_msg", "appid": sample_accounts["appid"], "wxid": wxid, "data": {"msg": msg}}


async def test_gateway_recovers_after_broker_restart(
    own_broker: tuple[Settings, Path], sample_accounts: dict[str, Any]
) -> None:
    settings, data_dir = own_broker
    await services.create_pipeline_topics(settings)
    async with running_gateway(settings) as client:
        before = await client.post("/wehub", json=_message(sample_accounts, 0))
        assert before.json()["error_code"] == 0

        in_flight = [
            asyncio.ensure_future(client.post("/wehub", json=_message(sample_accounts, index)))
            for index in range(1, 41)
        ]
        await asyncio.sleep(0.01)
        pid = int((data_dir / "kafka" / "kafka.pid").read_text(encoding="utf-8"))
        os.kill(pid, signal.SIGKILL)
        answers = [response.json() for response in await asyncio.gather(*in_flight)]
        assert all("ack_type" in answer for answer in answers)

        down = await client.post("/wehub", json=_message(sample_accounts, 41))
        assert down.json()["error_code"] == errors.KAFKA_UNAVAILABLE.number
        assert (await client.get("/readyz")).status_code == 503

        restarted = await asyncio.to_thread(start_kafka, settings, data_dir)
        try:
            deadline = time.monotonic() + RECOVERY_TIMEOUT_S
            after: httpx.Response | None = None
            while time.monotonic() < deadline:
                after = await client.post("/wehub", json=_message(sample_accounts, 42))
                if after.json()["error_code"] == 0:
                    break
                await asyncio.sleep(1)
            assert after is not None
            assert after.json()["error_code"] == 0, after.json()
            assert (await client.get("/readyz")).status_code == 200
            accepted_in_flight = sum(answer["error_code"] == 0 for answer in answers)

            records = await read_records(settings, "report_new_msg")
            stored = {record["data"]["msg"]["msg_id"] for _, _, record in records}
            assert {"0", "42"} <= stored
            # Sends answered with an error may still have been stored (at least once), never the reverse.
            assert len(stored) >= 2 + accepted_in_flight
        finally:
            _kill(restarted)
