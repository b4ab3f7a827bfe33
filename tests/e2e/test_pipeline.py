"""The whole pipeline as a user runs it: `wehub up`, `wehub replay`, then the figures of truth.json.

`wehub up` starts fresh local Kafka and MinIO of its own (from the shared cache) on free ports,
so this test needs no fixture service. It takes a minute or two.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from consumers import registry
from deploy import local
from schemas import topics
from schemas.codec import CODEC
from tests import services
from tests.consumers import truth as truth_figures
from tests.consumers.helpers import committed_everything
from wehub import settings as settings_module

pytestmark = pytest.mark.e2e

START_TIMEOUT_S = 240.0
CATCH_UP_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 90.0


class Pipeline:
    """A `wehub up` child process with its environment and the settings a client uses."""

    def __init__(self, environment: dict[str, str], log_path: Path) -> None:
        self.environment = environment
        self.log_path = log_path
        self.settings = settings_module.load(environment)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.settings.kafka_port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "wehub.cli", "up"], env=self.environment, stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"wehub up exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.base_url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        pytest.fail(f"wehub up was not ready within {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def stop(self) -> int:
        """Send Ctrl-C (SIGINT) and return the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                pytest.fail(f"wehub up did not stop within {STOP_TIMEOUT_S} s:\n{self.log_tail()}")
        return self.process.returncode

    def log_tail(self, lines: int = 60) -> str:
        """The end of `wehub up`'s output and of each child's log in the data folder."""
        parts = []
        for path in [self.log_path, *sorted((self.settings.data_path / "logs").glob("*.log"))]:
            text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
            parts.append(f"--- {path}\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts)

    def wehub(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "wehub.cli", *arguments], env=self.environment,
            capture_output=True, text=True, timeout=300, check=False)


def distinct_port_pairs(count: int) -> list[int]:
    """`count` ports whose next port is free too, no two pairs overlapping."""
    taken: set[int] = set()
    ports: list[int] = []
    while len(ports) < count:
        port = local.free_port_pair()
        if {port, port + 1} & taken:
            continue
        taken |= {port, port + 1}
        ports.append(port)
    return ports


@pytest.fixture
def pipeline(tmp_path: Path, accounts_file: Path) -> Iterator[Pipeline]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("WEHUB_")}
    kafka_port, s3_port, gateway_port = distinct_port_pairs(3)
    environment.update({
        "WEHUB_DATA_DIR": str(tmp_path / "data"),
        "WEHUB_ACCOUNTS": str(accounts_file),
        "WEHUB_KAFKA_PORT": str(kafka_port),
        "WEHUB_S3_PORT": str(s3_port),
        "WEHUB_PORT": str(gateway_port),
        "WEHUB_LOCALE": "en",
        "WEHUB_LOG_LEVEL": "WARNING",
        "WEHUB_TOPIC_PARTITIONS": "2",
        "WEHUB_BATCH_MAX_WAIT_MS": "200",
    })
    if "WEHUB_CACHE_DIR" in os.environ:
        environment["WEHUB_CACHE_DIR"] = os.environ["WEHUB_CACHE_DIR"]
    running = Pipeline(environment, tmp_path / "wehub-up.log")
    try:
        yield running
    finally:
        if running.process is not None and running.process.poll() is None:
            running.stop()


async def _partitions(admin: AIOKafkaAdminClient, names: list[str]) -> list[TopicPartition]:
    described = await admin.describe_topics(names)
    return [TopicPartition(topic["topic"], partition["partition"])
            for topic in described for partition in topic["partitions"]]


def wait_until_caught_up(pipeline: Pipeline) -> None:
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    while time.monotonic() < deadline:
        if asyncio.run(committed_everything(pipeline.settings, registry.names())):
            return
        time.sleep(1)
    pytest.fail(f"consumers did not catch up within {CATCH_UP_TIMEOUT_S} s:\n{pipeline.log_tail()}")


async def _gateway_dead_letters(bootstrap: str, prefix: str) -> list[dict[str, Any]]:
    topic = topics.topic_name(prefix, topics.DEAD_LETTER)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        partitions = await _partitions(admin, [topic])
    finally:
        await admin.close()
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await reader.start()
    try:
        reader.assign(partitions)
        ends = await reader.end_offsets(partitions)
        records = []
        while [partition for partition in partitions if await reader.position(partition) < ends[partition]]:
            batches = await reader.getmany(timeout_ms=1000)
            for messages in batches.values():
                for message in messages:
                    _, record = CODEC.decode(message.value or b"")
                    if record["source"] == "gateway":
                        records.append(record)
        return records
    finally:
        await reader.stop()


def _stored_uploads(pipeline: Pipeline) -> dict[str, tuple[int, str]]:
    """sha256 -> (size, sha256 of the bytes read back) of every object in the media bucket."""
    endpoint = f"127.0.0.1:{pipeline.settings.s3_port}"
    client = services.minio_client(endpoint, (pipeline.settings.s3_access_key, pipeline.settings.s3_secret_key))
    stored = {}
    for item in client.list_objects(pipeline.settings.media_bucket, recursive=True):
        response = client.get_object(pipeline.settings.media_bucket, item.object_name or "")
        try:
            content = response.read()
        finally:
            response.close()
            response.release_conn()
        digest = hashlib.sha256(content).hexdigest()
        stored[digest] = (len(content), digest)
    return stored


def test_corpus_through_pipeline_matches_truth(pipeline: Pipeline, samples_dir: Path) -> None:
    truth = json.loads((samples_dir / "truth.json").read_text(encoding="utf-8"))
    pipeline.start()

    replay = pipeline.wehub("replay", str(samples_dir / "corpus.jsonl"), "--url", pipeline.base_url + "/wehub",
                            "--upload-url", pipeline.base_url + "/wehub/upload", "--json")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    summary = json.loads(replay.stdout)
    assert summary["accepted"] == summary["lines"]
    assert summary["transport_errors"] == {}

    wait_until_caught_up(pipeline)
    figures = truth_figures.figures(pipeline.settings)
    expected = truth_figures.expected(truth)
    for name, value in expected.items():
        assert figures[name] == value, f"{name} differs from truth.json"

    stored = _stored_uploads(pipeline)
    for file_index, upload in truth["uploads"].items():
        assert upload["sha256"] in stored, f"upload {file_index} is not in the media bucket"
        assert stored[upload["sha256"]][0] == upload["size"]

    bad = pipeline.wehub("replay", str(samples_dir / "bad.jsonl"), "--url", pipeline.base_url + "/wehub", "--json")
    bad_summary = json.loads(bad.stdout)
    bad_lines = sum(1 for line in (samples_dir / "bad.jsonl").read_text(encoding="utf-8").splitlines() if line)
    assert bad_summary["raw"]["sent"] == bad_lines
    assert bad_summary["raw"]["refused"] == bad_lines
    assert bad_summary["raw"]["server_error_lines"] == []
    dead_letters = asyncio.run(_gateway_dead_letters(pipeline.kafka_bootstrap, pipeline.settings.topic_prefix))
    assert len(dead_letters) >= bad_lines
    assert httpx.get(pipeline.base_url + "/healthz", timeout=5).status_code == 200

    assert pipeline.stop() == 0
    pipeline.start()
    wait_until_caught_up(pipeline)
    assert truth_figures.figures(pipeline.settings) == figures
    assert pipeline.stop() == 0
