"""The local services of deploy/local: the cache is reused, and failures say what happened."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy import local
from deploy.local import kafka as kafka_module
from tests.conftest import REPO_ROOT
from wehub import settings as settings_module

pytestmark = pytest.mark.services

# Run in a child process whose PATH is an empty folder: neither mvn nor go nor java can run there.
_ENSURE_SCRIPT = """
import json, sys
from pathlib import Path
from deploy.local import ensure_kafka, ensure_minio
cache = Path(sys.argv[1])
print(json.dumps({"kafka": ensure_kafka(cache).reused, "minio": ensure_minio(cache).reused}))
"""


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """The shared cache (WEHUB_CACHE_DIR), holding both tools; the first use installs them."""
    path = settings_module.load().cache_path
    local.ensure_kafka(path)
    local.ensure_minio(path)
    return path


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder


def test_second_ensure_reuses_cache_without_tools(cache_dir: Path, tmp_path: Path) -> None:
    empty_path = tmp_path / "empty-bin"
    empty_path.mkdir()
    manifests = sorted(cache_dir.glob("*/manifest.json"))
    mtimes_before = [path.stat().st_mtime_ns for path in manifests]

    completed = subprocess.run(
        [sys.executable, "-c", _ENSURE_SCRIPT, str(cache_dir)],
        env={"PATH": str(empty_path), "PYTHONPATH": str(REPO_ROOT), "HOME": os.environ.get("HOME", "/")},
        capture_output=True, text=True, timeout=60, check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == {"kafka": True, "minio": True}
    assert [path.stat().st_mtime_ns for path in manifests] == mtimes_before


def test_kafka_on_taken_port_fails_with_log(cache_dir: Path, tmp_path: Path,
                                             listening_socket: socket.socket) -> None:
    port = listening_socket.getsockname()[1]
    config = settings_module.load().with_overrides(cache_dir=str(cache_dir), kafka_port=port)

    with pytest.raises(local.ServiceError) as caught:
        local.start_kafka(config, tmp_path)

    message = str(caught.value)
    assert "exited during startup" in message
    assert "Address already in use" in message
    assert "WEHUB_KAFKA_PORT" in message
    assert caught.value.log_path == tmp_path / "kafka" / "kafka.log"
    assert local.find_running("kafka", tmp_path / "kafka", f"127.0.0.1:{port}") is None


def test_minio_on_taken_port_is_rejected(cache_dir: Path, tmp_path: Path,
                                         listening_socket: socket.socket) -> None:
    port = listening_socket.getsockname()[1]
    config = settings_module.load().with_overrides(cache_dir=str(cache_dir), s3_port=port)

    expected = f"port {port} on 127.0.0.1 is already in use.*WEHUB_S3_PORT"
    with pytest.raises(local.ServiceError, match=expected):
        local.start_minio(config, tmp_path)


def test_truncated_kafka_jar_is_reinstalled(cache_dir: Path, tmp_path: Path) -> None:
    folder_name = f"kafka-{local.KAFKA_VERSION}"
    shutil.copytree(cache_dir / folder_name, tmp_path / folder_name)
    jar = tmp_path / folder_name / "libs" / f"kafka-clients-{local.KAFKA_VERSION}.jar"
    size = jar.stat().st_size
    with jar.open("r+b") as handle:
        handle.truncate(size // 2)

    problem = local.check_install(tmp_path / folder_name)
    installed = local.ensure_kafka(tmp_path)

    assert problem == f"{jar} has {size // 2} bytes, expected {size}"
    assert installed.reused is False
    assert jar.stat().st_size == size
    assert local.check_install(tmp_path / folder_name) is None


def test_missing_minio_binary_is_detected(cache_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / f"minio-{local.MINIO_VERSION}"
    folder.mkdir()
    shutil.copy(cache_dir / folder.name / "manifest.json", folder / "manifest.json")

    assert local.check_install(folder) == f"{folder / 'minio'} is missing"


def test_interrupted_install_is_detected(tmp_path: Path) -> None:
    folder = tmp_path / f"kafka-{local.KAFKA_VERSION}"
    (folder / "libs").mkdir(parents=True)

    problem = local.check_install(folder)

    assert problem == f"{folder / 'manifest.json'} is missing (an install that did not finish)"


def test_storage_format_accepts_dash_cluster_id(cache_dir: Path, tmp_path: Path) -> None:
    # A random URL-safe base64 id starts with "-" about once in 64 starts.
    libs = local.ensure_kafka(cache_dir).path
    config = kafka_module._write_config(tmp_path, local.free_port_pair())

    kafka_module._format_storage(libs, tmp_path, config, cluster_id="-AbCdEfGhIjKlMnOpQrStUv")

    assert (tmp_path / "data" / "meta.properties").exists()
