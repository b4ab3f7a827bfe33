"""Real Kafka and MinIO on a machine without Docker, installed once into a cache folder.

    installed = ensure_kafka(settings.cache_path)   # Maven fetches the jars on the first call only
    installed.reused                                  # True when the cache already held them
    broker = start_kafka(settings, settings.data_path)
    broker.address, broker.pid, broker.log_path      # 127.0.0.1:<kafka_port>, <data_dir>/kafka/kafka.log
    broker.stop()                                     # SIGTERM, then SIGKILL after a timeout

`ensure_minio` / `start_minio` do the same for MinIO, built with `go install`. Both start functions
wait until the service serves and raise ServiceError with the tail of its log when it does not.
ClickHouse needs no server: the default DSN is the embedded engine, `chdb://<data_dir>/clickhouse`.
The `wehub services` command (deploy/local/cli.py) drives the same functions from a shell.
"""

from deploy.local.cache import Installed, check_install
from deploy.local.errors import ServiceError
from deploy.local.kafka import KAFKA_VERSION, ensure_kafka, start_kafka
from deploy.local.minio import MINIO_VERSION, ensure_minio, start_minio
from deploy.local.process import RunningService, find_running, free_port_pair

__all__ = [
    "KAFKA_VERSION",
    "MINIO_VERSION",
    "Installed",
    "RunningService",
    "ServiceError",
    "check_install",
    "ensure_kafka",
    "ensure_minio",
    "find_running",
    "free_port_pair",
    "start_kafka",
    "start_minio",
]
