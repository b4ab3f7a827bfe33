"""MinIO, the real S3 server, built from source with `go install` and run on loopback.

The binary is built once into `<cache_dir>/minio-<version>/minio` (Go's own module and build
caches stay where `go env` puts them). The server's data, log and pid file live in
`<data_dir>/minio/`; the root credentials are the s3_access_key and s3_secret_key settings.
"""

from __future__ import annotations

import http.client
import logging
import os
from pathlib import Path

from deploy.local import cache, process
from deploy.local.errors import ServiceError
from wehub.settings import Settings

log = logging.getLogger(__name__)

# MinIO's release tags are not valid Go module versions, so the module proxy only serves
# pseudo-versions; this one is the commit of 2026-02-12.
MINIO_MODULE = "github.com/minio/minio"
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
GO_BUILD_TIMEOUT_S = 1800.0
READY_TIMEOUT_S = 60.0


def ensure_minio(cache_dir: Path) -> cache.Installed:
    """Build the MinIO server into the cache unless it is there; `path` is the binary.

    Runs `go install` only on the first call (or when the cached binary is broken). Raises ServiceError.
    """
    folder = Path(cache_dir) / f"minio-{MINIO_VERSION}"
    return cache.ensure(folder, f"MinIO {MINIO_VERSION}", _install, "minio")


def start_minio(settings: Settings, data_dir: Path,
                timeout_s: float = READY_TIMEOUT_S) -> process.RunningService:
    """Start MinIO on 127.0.0.1:`s3_port` (console on the next port) and wait until it is live.

    Builds the binary first if needed. Raises ServiceError when a port is taken, or with the tail of
    the server's log when it exits or is not live within `timeout_s`.
    """
    binary = ensure_minio(settings.cache_path).path
    port = int(settings.s3_port)
    service_dir = (Path(data_dir) / "minio").resolve()
    service_dir.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{port}"

    running = process.find_running("minio", service_dir, address)
    if running is not None:
        raise ServiceError(f"MinIO already runs from {service_dir} (pid {running.pid}): "
                           "stop it first with `wehub services stop minio`")
    # Checked before the start because another server on the port would answer the health check.
    for needed_port in (port, port + 1):
        if not process.port_is_free(needed_port):
            raise ServiceError(f"port {needed_port} on 127.0.0.1 is already in use: set WEHUB_S3_PORT to a "
                               "free port (the console uses the next one) or stop what holds it")

    command = [str(binary), "server", str(service_dir / "data"), "--address", address,
               "--console-address", f"127.0.0.1:{port + 1}"]
    env = {**os.environ, "MINIO_ROOT_USER": settings.s3_access_key,
           "MINIO_ROOT_PASSWORD": settings.s3_secret_key, "MINIO_UPDATE": "off"}
    service = process.launch("minio", command, service_dir, address, env)
    hint = ("Check that WEHUB_S3_SECRET_KEY has at least 8 characters and WEHUB_S3_ACCESS_KEY at least 3, "
            f"and that {service_dir / 'data'} is writable.")
    process.wait_ready(service, lambda: _is_live(port), timeout_s, hint)
    return service


def _install(staging: Path) -> None:
    env = {**os.environ, "GOBIN": str(staging)}
    log_path = staging.parent / f"minio-{MINIO_VERSION}.install.log"
    cache.run_installer(["go", "install", f"{MINIO_MODULE}@{MINIO_VERSION}"], cwd=staging, env=env,
                        timeout_s=GO_BUILD_TIMEOUT_S, log_path=log_path,
                        what_to_do="install Go and check that the Go module proxy is reachable")
    if not (staging / "minio").is_file():
        raise ServiceError(f"go install finished without a minio binary in {staging}", log_path=log_path)


def _is_live(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
    try:
        connection.request("GET", "/minio/health/live")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()
