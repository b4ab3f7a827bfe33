"""With several uvicorn workers, /metrics sums every worker's values, whichever worker serves it."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import processes
from wehub.settings import Settings

REQUESTS = 40
SCRAPES = 8

pytestmark = pytest.mark.services


def _requests_total(text: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name == "wehub_gateway_requests":
            return sum(sample.value for sample in family.samples if sample.name.endswith("_total"))
    return 0.0


def test_metrics_sum_over_workers(service_settings: Settings, tmp_path: Path) -> None:
    port = processes.free_port()
    data_dir = tmp_path / "data"
    environment = {
        **os.environ,
        "WEHUB_ACCOUNTS": str(service_settings.accounts),
        "WEHUB_DATA_DIR": str(data_dir),
        "WEHUB_KAFKA_BOOTSTRAP": str(service_settings.kafka_bootstrap),
        "WEHUB_TOPIC_PREFIX": str(service_settings.topic_prefix),
        "WEHUB_LOG_LEVEL": "WARNING",
    }
    url = f"http://127.0.0.1:{port}"
    command = processes.gateway_command(port, workers=2)
    server = processes.server_process(command, f"{url}/healthz", env=environment, name="gateway with 2 workers",
                                      log_path=tmp_path / "gateway.log")
    # A new connection per request, so the kernel spreads them over both workers.
    client = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=30)
    with server, client:
        answers = [client.post(f"{url}/wehub", content=b"{not json").status_code for _ in range(REQUESTS)]
        scrapes = [_requests_total(client.get(f"{url}/metrics").text) for _ in range(SCRAPES)]

    assert answers == [400] * REQUESTS
    assert scrapes == [REQUESTS] * SCRAPES
    counter_files = list((data_dir / f"gateway-metrics-{port}").glob("counter_*.db"))
    assert len(counter_files) == 2, "both workers should have served requests"
