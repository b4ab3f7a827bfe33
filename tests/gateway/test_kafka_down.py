"""A gateway whose Kafka is unreachable answers promptly with an error and reports itself unready."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from gateway import errors, metrics
from tests.gateway.conftest import running_gateway
from wehub.settings import Settings


@pytest.fixture
def unreachable_settings(pipeline_settings: Settings) -> Settings:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    return pipeline_settings.with_overrides(kafka_bootstrap=f"127.0.0.1:{closed_port}", kafka_timeout_s=2.0)


def _envelope(sample_accounts: dict[str, Any], action: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "action": action,
        "appid": sample_accounts["appid"],
        "wxid": sample_accounts["wxids"][0],
        "data": data,
    }


async def test_unreachable_kafka_gives_error_code(
    unreachable_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    msg = {"msg_type": 1, "room_wxid": "", "wxid_from": "wxid_x", "wxid_to": "wxid_y", "msg": "hi"}
    async with running_gateway(unreachable_settings) as client:
        report = await client.post("/wehub", json=_envelope(sample_accounts, "report_new_msg", {"msg": msg}))
        login = await client.post("/wehub", json=_envelope(sample_accounts, "login", {"nonce": "abc"}))
        ready = await client.get("/readyz")
        alive = await client.get("/healthz")

    assert report.status_code == 503
    assert report.json()["error_code"] == errors.KAFKA_UNAVAILABLE.number
    assert report.json()["ack_type"] == "common_ack"
    assert login.json()["ack_type"] == "login_ack"
    assert login.json()["error_code"] == errors.KAFKA_UNAVAILABLE.number
    assert (ready.status_code, ready.json()["ready"]) == (503, False)
    assert alive.status_code == 200


async def test_poll_served_while_kafka_unreachable(
    unreachable_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    unstored_before = metrics.POLLS_NOT_STORED._value.get()
    async with running_gateway(unreachable_settings) as client:
        poll = await client.post("/wehub", json=_envelope(sample_accounts, "pull_task", {}))

    assert (poll.status_code, poll.json()) == (200, {"error_code": 0, "error_reason": "", "ack_type": "pull_task_ack",
                                                     "data": {}})
    # Stopping the gateway waited for the event's publication, which failed.
    assert metrics.POLLS_NOT_STORED._value.get() == unstored_before + 1


async def test_bad_input_rejected_while_kafka_unreachable(unreachable_settings: Settings) -> None:
    async with running_gateway(unreachable_settings) as client:
        response = await client.post("/wehub", content=b"{not json")
    assert response.status_code == 400
    assert response.json()["error_code"] == errors.INVALID_JSON.number


async def test_metrics_are_exposed_with_units_in_their_names(unreachable_settings: Settings) -> None:
    async with running_gateway(unreachable_settings) as client:
        await client.post("/wehub", content=b"[]")
        response = await client.get("/metrics")
    assert response.status_code == 200
    for name in (
        "wehub_gateway_requests_total",
        "wehub_gateway_request_duration_seconds",
        "wehub_gateway_produce_duration_seconds",
        "wehub_gateway_request_body_bytes",
        "wehub_gateway_dead_letters_total",
    ):
        assert name in response.text
