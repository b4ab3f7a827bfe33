"""Apache Kafka 4.1.1 as a one-node KRaft broker (broker and controller in one JVM) on loopback.

The jars come from Maven Central through `mvn dependency:copy-dependencies` on the pom.xml
beside this file, into `<cache_dir>/kafka-4.1.1/libs`. The broker's data, configuration, log
and pid file live in `<data_dir>/kafka/`; its storage is formatted on the first start.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import string
import uuid
from pathlib import Path

from deploy.local import cache, process
from deploy.local.errors import ServiceError
from wehub.settings import Settings

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
MAVEN_TIMEOUT_S = 900.0
FORMAT_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 120.0
# Logged by KafkaRaftServer once the broker and controller accept requests.
_READY_LINE = b"Kafka Server started"
_RESOURCES = Path(__file__).resolve().parent


def ensure_kafka(cache_dir: Path) -> cache.Installed:
    """Install the broker's jars into the cache unless they are there; `path` is the libs folder.

    Runs Maven only on the first call (or when the cached jars are broken). Raises ServiceError.
    """
    folder = Path(cache_dir) / f"kafka-{KAFKA_VERSION}"
    return cache.ensure(folder, f"Kafka {KAFKA_VERSION}", _install, "libs")


def start_kafka(settings: Settings, data_dir: Path,
                timeout_s: float = READY_TIMEOUT_S) -> process.RunningService:
    """Start the broker on 127.0.0.1:`kafka_port` (controller on the next port) and wait until it serves.

    Installs the jars first if needed. Raises ServiceError with the tail of the broker's log when
    the broker exits or is not ready within `timeout_s`.
    """
    libs = ensure_kafka(settings.cache_path).path
    port = int(settings.kafka_port)
    service_dir = (Path(data_dir) / "kafka").resolve()
    service_dir.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{port}"

    running = process.find_running("kafka", service_dir, address)
    if running is not None:
        raise ServiceError(f"Kafka already runs from {service_dir} (pid {running.pid}): "
                           "stop it first with `wehub services stop kafka`")

    config = _write_config(service_dir, port)
    _format_storage(libs, service_dir, config)
    command = [_java(), "-Xmx512m", f"-Dlog4j2.configurationFile={_RESOURCES / 'log4j2.yaml'}",
               "-cp", f"{libs}/*", "kafka.Kafka", str(config)]
    service = process.launch("kafka", command, service_dir, address)

    def ready() -> bool:
        return process.port_accepts(port) and _READY_LINE in service.log_since_start()

    hint = (f"If the log says 'Address already in use', ports {port} or {port + 1} are taken: "
            "set WEHUB_KAFKA_PORT to a free port (the controller uses the next one) or stop what holds them.")
    process.wait_ready(service, ready, timeout_s, hint)
    return service


def _install(staging: Path) -> None:
    shutil.copy(_RESOURCES / "pom.xml", staging / "pom.xml")
    command = ["mvn", "-B", "-f", str(staging / "pom.xml"), "dependency:copy-dependencies",
               f"-DoutputDirectory={staging / 'libs'}", "-DincludeScope=runtime"]
    log_path = staging.parent / f"kafka-{KAFKA_VERSION}.install.log"
    cache.run_installer(command, cwd=staging, env=os.environ, timeout_s=MAVEN_TIMEOUT_S, log_path=log_path,
                        what_to_do="install Maven 3 and Java 17, and check that Maven Central is reachable")
    (staging / "pom.xml").unlink()
    jars = list((staging / "libs").glob("*.jar"))
    if not any(jar.name == f"kafka_2.13-{KAFKA_VERSION}.jar" for jar in jars):
        raise ServiceError(f"Maven finished without kafka_2.13-{KAFKA_VERSION}.jar", log_path=log_path)


def _write_config(service_dir: Path, port: int) -> Path:
    template = string.Template((_RESOURCES / "kafka-server.properties").read_text(encoding="utf-8"))
    text = template.substitute(port=port, controller_port=port + 1, log_dirs=service_dir / "data")
    config = service_dir / "server.properties"
    config.write_text(text, encoding="utf-8")
    return config


def _format_storage(libs: Path, service_dir: Path, config: Path, cluster_id: str | None = None) -> None:
    if (service_dir / "data" / "meta.properties").exists():
        return
    # Kafka cluster ids are 16 random bytes in URL-safe base64 without padding.
    cluster_id = cluster_id or base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    command = [_java(), "-cp", f"{libs}/*", f"-Dlog4j2.configurationFile={_RESOURCES / 'log4j2.yaml'}",
               # One argument with "=": an id can start with "-", which the parser would take for an option.
               "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(config)]
    log.info("formatting Kafka storage in %s (cluster id %s)", service_dir / "data", cluster_id)
    cache.run_installer(command, cwd=service_dir, env=os.environ, timeout_s=FORMAT_TIMEOUT_S,
                        log_path=service_dir / "format.log",
                        what_to_do=f"delete {service_dir / 'data'} and start again")


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ServiceError("java not found on PATH: install Java 17 (Kafka 4 needs it)")
    return java
