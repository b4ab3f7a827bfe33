"""Fixtures shared by every test: real services, and a fresh topic set, bucket and database per test.

Tests marked `services` get a real Kafka broker and a real MinIO server: the ones named by
WEHUB_KAFKA_BOOTSTRAP / WEHUB_S3_ENDPOINT when set, otherwise containers when a Docker daemon
answers, otherwise the local services of `deploy/local` started for the session.
ClickHouse is the embedded engine (chdb) in a folder of the session, one per test process.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import services
from wehub import settings as settings_module

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = Path(os.environ.get("WEHUB_SAMPLES_DIR", REPO_ROOT.parent / "shared" / "samples"))


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """Folder of the sample corpus (corpus.jsonl, bad.jsonl, truth.json, accounts.json)."""
    if not (SAMPLES_DIR / "corpus.jsonl").exists():
        pytest.fail(f"sample corpus not found in {SAMPLES_DIR}: set WEHUB_SAMPLES_DIR to its folder")
    return SAMPLES_DIR


@pytest.fixture(scope="session")
def sample_accounts(samples_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((samples_dir / "accounts.json").read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a real Kafka broker for the whole session."""
    with services.kafka_for_tests(tmp_path_factory.mktemp("kafka")) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a real MinIO server for the whole session (credentials: `s3_credentials`)."""
    with services.minio_for_tests(tmp_path_factory.mktemp("minio")) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def s3_credentials() -> tuple[str, str]:
    defaults = settings_module.load({})
    return (
        os.environ.get("WEHUB_S3_ACCESS_KEY", defaults.s3_access_key),
        os.environ.get("WEHUB_S3_SECRET_KEY", defaults.s3_secret_key),
    )


@pytest.fixture(scope="session")
def clickhouse_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The embedded ClickHouse of this test process, or WEHUB_CLICKHOUSE_DSN when set."""
    configured = os.environ.get("WEHUB_CLICKHOUSE_DSN", "")
    return configured or f"chdb://{tmp_path_factory.mktemp('clickhouse')}"


@pytest.fixture
def topic_prefix(kafka_bootstrap: str) -> Iterator[str]:
    """A prefix of this test alone; every pipeline topic under it exists, and is deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    config = settings_module.load({"WEHUB_KAFKA_BOOTSTRAP": kafka_bootstrap, "WEHUB_TOPIC_PREFIX": prefix,
                                   "WEHUB_TOPIC_PARTITIONS": "2"})
    asyncio.run(services.create_pipeline_topics(config))
    try:
        yield prefix
    finally:
        asyncio.run(services.delete_topics_with_prefix(kafka_bootstrap, prefix))


@pytest.fixture
def bucket(s3_endpoint: str, s3_credentials: tuple[str, str]) -> Iterator[str]:
    """A fresh bucket, removed with its objects afterwards."""
    client = services.minio_client(s3_endpoint, s3_credentials)
    name = f"t{uuid.uuid4().hex[:12]}"
    client.make_bucket(name)
    try:
        yield name
    finally:
        services.remove_bucket(client, name)


@pytest.fixture
def clickhouse_database(clickhouse_dsn: str) -> Iterator[str]:
    """A fresh ClickHouse database, dropped afterwards."""
    name = f"t{uuid.uuid4().hex[:12]}"
    client = services.clickhouse_client(clickhouse_dsn)
    client.command(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        client.command(f"DROP DATABASE IF EXISTS {name} SYNC")


@pytest.fixture
def accounts_file(tmp_path: Path, sample_accounts: dict[str, Any]) -> Path:
    """An accounts TOML holding the sample appid, its secret and whitelist."""
    path = tmp_path / "accounts.toml"
    wxids = ", ".join(json.dumps(wxid) for wxid in sample_accounts["wxids"])
    path.write_text(
        f'[[app]]\nappid = "{sample_accounts["appid"]}"\nsecret = "{sample_accounts["secret"]}"\nwxids = [{wxids}]\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture
def pipeline_settings(tmp_path: Path, accounts_file: Path) -> settings_module.Settings:
    """Settings of a pipeline isolated to this test; services are added by `service_settings`."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    return settings_module.load({
        "WEHUB_DATA_DIR": str(data_dir),
        "WEHUB_ACCOUNTS": str(accounts_file),
        "WEHUB_LOCALE": "en",
        "WEHUB_LOG_FORMAT": "text",
        "WEHUB_TOPIC_PARTITIONS": "2",
    })


@pytest.fixture
def service_settings(
    pipeline_settings: settings_module.Settings,
    kafka_bootstrap: str,
    topic_prefix: str,
    s3_endpoint: str,
    bucket: str,
    clickhouse_dsn: str,
    clickhouse_database: str,
) -> settings_module.Settings:
    """`pipeline_settings` pointed at the real services, with this test's topics, bucket and database."""
    return pipeline_settings.with_overrides(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topic_prefix,
        s3_endpoint=s3_endpoint,
        media_bucket=bucket,
        clickhouse_dsn=clickhouse_dsn,
        clickhouse_database=clickhouse_database,
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leftover = REPO_ROOT / "wehub-data-test"
    if leftover.exists():
        shutil.rmtree(leftover, ignore_errors=True)
