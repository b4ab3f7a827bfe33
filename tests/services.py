"""Service helpers of the test fixtures: where Kafka, MinIO and ClickHouse come from, and cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import docker
from aiokafka.admin import AIOKafkaAdminClient
from docker.errors import DockerException
from minio import Minio
from testcontainers.community.minio import MinioContainer
from testcontainers.core.container import DockerContainer
from testcontainers.core.waiting_utils import wait_for_logs

from deploy import local
from wehub import kafka
from wehub import settings as settings_module
from wehub.settings import Settings

_CLICKHOUSE_CLIENTS: dict[str, Any] = {}


@contextlib.contextmanager
def kafka_for_tests(work_dir: Path) -> Iterator[str]:
    """Yield the bootstrap address of a real broker for the session.

    WEHUB_KAFKA_BOOTSTRAP when set, else a container when a Docker daemon answers, else the local
    broker of deploy/local on free ports, its data in `work_dir` and its jars in WEHUB_CACHE_DIR.
    """
    configured = os.environ.get("WEHUB_KAFKA_BOOTSTRAP", "")
    if configured:
        yield configured
        return
    if docker_answers():
        with _kafka_container() as bootstrap:
            yield bootstrap
        return
    config = _local_settings(kafka_port=local.free_port_pair())
    with _stopped_at_exit(lambda: local.start_kafka(config, work_dir)) as service:
        yield service.address


@contextlib.contextmanager
def minio_for_tests(work_dir: Path) -> Iterator[str]:
    """Yield host:port of a real MinIO server for the session.

    WEHUB_S3_ENDPOINT when set, else a container when a Docker daemon answers, else the local
    MinIO of deploy/local on free ports, with the WEHUB_S3_ACCESS_KEY / WEHUB_S3_SECRET_KEY credentials.
    """
    configured = os.environ.get("WEHUB_S3_ENDPOINT", "")
    if configured:
        yield configured
        return
    config = _local_settings()
    if docker_answers():
        with _minio_container(config) as endpoint:
            yield endpoint
        return
    config = config.with_overrides(s3_port=local.free_port_pair())
    with _stopped_at_exit(lambda: local.start_minio(config, work_dir)) as service:
        yield service.address


@functools.cache
def docker_answers() -> bool:
    """Whether a Docker daemon answers a ping within a few seconds (asked once per session)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        # A raw ping: the docker library leaves its socket open when the daemon is missing,
        # which fails the session through the ResourceWarning.
        return _unix_socket_pings(host.removeprefix("unix://"))
    try:
        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (DockerException, OSError):
        return False


def _unix_socket_pings(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(3.0)
        try:
            connection.connect(path)
            connection.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = connection.recv(1024).split(b"\r\n", 1)[0]
        except OSError:
            return False
    return b" 200 " in status_line + b" "


def _local_settings(**overrides: Any) -> Settings:
    return settings_module.load().with_overrides(**overrides)


@contextlib.contextmanager
def _stopped_at_exit(start: Callable[[], local.RunningService]) -> Iterator[local.RunningService]:
    try:
        service = start()
    except local.ServiceError as error:
        # The error carries the first errors and the tail of the service log; print it whole too,
        # since pytest shortens long fixture errors.
        print(f"\n{error}", file=sys.stderr)
        raise
    try:
        yield service
    finally:
        service.stop()


# NOTE: the two container paths below have never run: the project's CI has no Docker daemon.
@contextlib.contextmanager
def _kafka_container() -> Iterator[str]:
    port = local.free_port_pair()
    # The host port is fixed before the start because the broker must advertise it to clients.
    container = (
        DockerContainer("apache/kafka:4.1.1")
        .with_bind_ports(9092, port)
        .with_envs(
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_LISTENERS="PLAINTEXT://:9092,CONTROLLER://:9093",
            KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://127.0.0.1:{port}",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
        )
    )
    with container:
        wait_for_logs(container, "Kafka Server started", timeout=120)
        yield f"127.0.0.1:{port}"


@contextlib.contextmanager
def _minio_container(config: Settings) -> Iterator[str]:
    container = MinioContainer("minio/minio:RELEASE.2025-09-07T16-13-09Z",
                               access_key=config.s3_access_key, secret_key=config.s3_secret_key)
    with container:
        yield str(container.get_config()["endpoint"])


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
