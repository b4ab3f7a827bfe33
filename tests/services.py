"""Service helpers of the test fixtures: where Kafka, MinIO and ClickHouse come from, and cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
from aiokafka.admin import AIOKafkaAdminClient
from minio import Minio

from wehub import kafka
from wehub.settings import Settings

_CLICKHOUSE_CLIENTS: dict[str, Any] = {}


@contextlib.contextmanager
def kafka_for_tests(work_dir: Path) -> Iterator[str]:
    """Yield the bootstrap address of a real broker: WEHUB_KAFKA_BOOTSTRAP when set."""
    configured = os.environ.get("WEHUB_KAFKA_BOOTSTRAP", "")
    if configured:
        yield configured
        return
    # TODO: start the local broker of deploy/local (or a container) when nothing is configured.
    raise RuntimeError("no Kafka broker: set WEHUB_KAFKA_BOOTSTRAP")


@contextlib.contextmanager
def minio_for_tests(work_dir: Path) -> Iterator[str]:
    """Yield host:port of a real MinIO server: WEHUB_S3_ENDPOINT when set."""
    configured = os.environ.get("WEHUB_S3_ENDPOINT", "")
    if configured:
        yield configured
        return
    # TODO: start the local MinIO of deploy/local (or a container) when nothing is configured.
    raise RuntimeError("no MinIO server: set WEHUB_S3_ENDPOINT")


async def create_pipeline_topics(config: Settings) -> None:
    await kafka.ensure_topics(config, kafka.pipeline_topics(config))


async def delete_topics_with_prefix(bootstrap: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    await asyncio.wait_for(admin.start(), 30)
    try:
        names = [name for name in await admin.list_topics() if name.startswith(prefix + ".")]
        if names:
            await asyncio.wait_for(admin.delete_topics(names), 30)
    finally:
        await admin.close()


def minio_client(endpoint: str, credentials: tuple[str, str]) -> Minio:
    access_key, secret_key = credentials
    return Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=False)


def remove_bucket(client: Minio, name: str) -> None:
    for item in client.list_objects(name, recursive=True):
        client.remove_object(name, item.object_name or "")
    client.remove_bucket(name)


def clickhouse_client(dsn: str) -> Any:
    """One clickhouse-connect client per DSN for the test process (chdb allows one process per folder)."""
    client = _CLICKHOUSE_CLIENTS.get(dsn)
    if client is None:
        client = clickhouse_connect.get_client(dsn=dsn)
        _CLICKHOUSE_CLIENTS[dsn] = client
    return client
