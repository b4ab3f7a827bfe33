"""Run every benchmark and collect their markdown results into bench/README.md.

Each benchmark module has `main(argv) -> int` and writes its results to bench/results-<area>.md.
The services come from WEHUB_KAFKA_BOOTSTRAP / WEHUB_S3_ENDPOINT, or are started locally here.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests import services

BENCH_DIR = Path(__file__).resolve().parent

# Each entry: module name, results file it writes.
BENCHMARKS = (
    ("bench.gateway_throughput", "results-gateway.md"),
    ("bench.consumer_throughput", "results-consumer.md"),
    ("bench.tasks_pull_latency", "results-tasks.md"),
    ("bench.media_upload_memory", "results-media.md"),
    ("bench.ws_connections", "results-ws.md"),
)


@contextlib.contextmanager
def local_services() -> Iterator[None]:
    """Start Kafka and MinIO from deploy/local unless the environment names running ones."""
    if os.environ.get("WEHUB_KAFKA_BOOTSTRAP") and os.environ.get("WEHUB_S3_ENDPOINT"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="wehub-bench-") as work_dir, \
            services.kafka_for_tests(Path(work_dir) / "kafka") as bootstrap, \
            services.minio_for_tests(Path(work_dir) / "minio") as endpoint:
        os.environ["WEHUB_KAFKA_BOOTSTRAP"] = bootstrap
        os.environ["WEHUB_S3_ENDPOINT"] = endpoint
        yield


def collect(header: str) -> str:
    parts = [header]
    targets = BENCH_DIR / "targets.md"
    if targets.exists():
        parts.append(targets.read_text(encoding="utf-8").strip())
    for _, results in BENCHMARKS:
        path = BENCH_DIR / results
        if path.exists():
            parts.append(path.read_text(encoding="utf-8").strip())
    return "\n\n".join(parts) + "\n"


HEADER = """# Benchmarks

Run them all with `make bench` (or `python -m bench`; `python -m bench NAME ...` runs some).
Each starts its own gateway or consumer processes against real Kafka (acks=all), MinIO and the
embedded ClickHouse, loads them from a second process on loopback for a bounded time, and
writes its section below. Numbers depend on the machine and on what else runs on it.

Latest run: {when} on {machine}.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (gateway, consumer, tasks, media, ws); default all")
    arguments = parser.parse_args(argv)
    wanted = set(arguments.names)
    failed = []
    with local_services():
        for module_name, _ in BENCHMARKS:
            short = module_name.split(".")[1].split("_")[0]
            if wanted and short not in wanted:
                continue
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError:
                print(f"skipped {module_name}: not written yet", file=sys.stderr)
                continue
            print(f"running {module_name}", file=sys.stderr)
            if module.main([]) != 0:
                failed.append(module_name)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (BENCH_DIR / "README.md").write_text(collect(HEADER.format(when=when, machine=machine)), encoding="utf-8")
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
