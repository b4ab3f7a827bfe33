"""Peak memory of the gateway while it streams one large upload into MinIO.

Starts the gateway as one uvicorn worker on a free loopback port (real Kafka from
WEHUB_KAFKA_BOOTSTRAP, real MinIO from WEHUB_S3_ENDPOINT), streams `--size-mb` of generated
bytes to POST /wehub/upload as multipart with httpx from a generator (chunked, so the gateway
cannot know the size in advance), and samples the gateway's VmRSS from /proc/PID/status every
`--sample-ms` during the upload. Passes when the peak stays under `--limit-mb`. The stored
object's size and sha256 are checked against what was sent; the bucket and topics it used are
deleted afterwards.

    python -m bench.media_upload_memory [--size-mb 200] [--limit-mb 150]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests import processes, services
from wehub import kafka
from wehub import settings as settings_module
from wehub.media_store import MediaStore

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results-media.md"
APPID = "bench_media_app"
BOT = "wxid_bench_media_bot"
BOUNDARY = "----WeHubBenchBoundary"
CHUNK_BYTES = 256 * 1024
STARTUP_TIMEOUT_S = 60.0
UPLOAD_TIMEOUT_S = 600.0
MIB = 1024 * 1024


@dataclass
class Result:
    size_bytes: int
    baseline_rss_bytes: int
    peak_rss_bytes: int
    duration_s: float
    status: int
    stored_size: int
    sha256_matches: bool


def rss_bytes(pid: int) -> int:
    """VmRSS of process `pid`, or 0 once it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


class RssSampler:
    """Samples a process's RSS in a thread until stopped; `peak` is the largest sample."""

    def __init__(self, pid: int, interval_s: float) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            self.samples += 1
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak = max(self.peak, rss_bytes(self.pid))


@contextlib.contextmanager
def gateway(env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """Run the gateway as one uvicorn worker on a free loopback port; yields its URL and PID."""
    port = processes.free_port()
    url = f"http://127.0.0.1:{port}"
    command = processes.uvicorn_command("gateway.app:app_from_environment", port, factory=True)
    with processes.server_process(command, url + "/healthz", env=env, name="the gateway",
                                  timeout_s=STARTUP_TIMEOUT_S) as process:
        yield url, process.pid


def generated_body(size_bytes: int, digest: hashlib._Hash) -> Iterator[bytes]:
    """Generate a multipart body with `size_bytes` of file bytes, hashed into `digest` as it goes."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file_index"\r\n\r\n'
        f"bench-{uuid.uuid4().hex}\r\n--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file";filename="bench.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    block = os.urandom(CHUNK_BYTES)
    sent = 0
    counter = 0
    while sent < size_bytes:
        # A counter in every chunk keeps the bytes from repeating.
        chunk = counter.to_bytes(8, "little") + block[8:]
        chunk = chunk[: size_bytes - sent]
        digest.update(chunk)
        sent += len(chunk)
        counter += 1
        yield chunk
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def run_once(size_bytes: int, sample_interval_s: float) -> Result:
    bootstrap = os.environ.get("WEHUB_KAFKA_BOOTSTRAP", "")
    endpoint = os.environ.get("WEHUB_S3_ENDPOINT", "")
    if not bootstrap or not endpoint:
        raise RuntimeError("set WEHUB_KAFKA_BOOTSTRAP and WEHUB_S3_ENDPOINT (or run `python -m bench media`)")
    prefix = f"benchmedia{uuid.uuid4().hex[:8]}"
    bucket = f"bench-media-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="wehub-bench-media-") as work_dir:
        accounts = Path(work_dir) / "accounts.toml"
        accounts.write_text(
            f'[[app]]\nappid = "{APPID}"\nsecret = "bench-secret"\nwxids = ["{BOT}"]\n', encoding="utf-8"
        )
        env = {
            **os.environ,
            "WEHUB_ACCOUNTS": str(accounts),
            "WEHUB_TOPIC_PREFIX": prefix,
            "WEHUB_MEDIA_BUCKET": bucket,
            "WEHUB_DATA_DIR": work_dir,
            "WEHUB_LOG_LEVEL": "WARNING",
            "WEHUB_UPLOAD_LIMIT_BYTES": str(size_bytes + MIB),
            "WEHUB_TOPIC_PARTITIONS": "1",
        }
        settings = settings_module.load(env)
        asyncio.run(kafka.ensure_topics(settings, kafka.pipeline_topics(settings)))
        store = MediaStore.from_settings(settings)
        try:
            return _upload(settings, env, store, size_bytes, sample_interval_s)
        finally:
            _remove_bucket(store)
            asyncio.run(_delete_topics(settings))


def _upload(
    settings: settings_module.Settings,
    env: dict[str, str],
    store: MediaStore,
    size_bytes: int,
    sample_interval_s: float,
) -> Result:
    digest = hashlib.sha256()
    with gateway(env) as (url, pid):
        baseline = rss_bytes(pid)
        with RssSampler(pid, sample_interval_s) as sampler:
            started = time.perf_counter()
            response = httpx.post(
                f"{url}/wehub/upload?appid={APPID}&wxid={BOT}",
                content=generated_body(size_bytes, digest),
                # Quoted boundary and a Host ending in a dot, as real WeHub clients send them.
                headers={"Content-Type": f'multipart/form-data; boundary="{BOUNDARY}"', "Host": "wehub.example."},
                timeout=UPLOAD_TIMEOUT_S,
            )
            duration = time.perf_counter() - started
        stored_size, matches = 0, False
        if response.status_code == 200:
            objects = [item for item in store.client.list_objects(store.bucket, recursive=True)]
            if len(objects) == 1 and objects[0].object_name:
                stored_size = int(objects[0].size or 0)
                matches = objects[0].object_name.endswith("/" + digest.hexdigest())
        return Result(size_bytes, baseline, sampler.peak, duration, response.status_code, stored_size, matches)


def _remove_bucket(store: MediaStore) -> None:
    with contextlib.suppress(Exception):
        for item in store.client.list_objects(store.bucket, recursive=True):
            store.client.remove_object(store.bucket, item.object_name or "")
        store.client.remove_bucket(store.bucket)


async def _delete_topics(settings: settings_module.Settings) -> None:
    await services.delete_topics_with_prefix(kafka.bootstrap_servers(settings), str(settings.topic_prefix))


def render(result: Result, limit_bytes: int, sample_ms: int) -> str:
    passed = result.status == 200 and result.sha256_matches and result.peak_rss_bytes < limit_bytes
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    rate = result.size_bytes / MIB / result.duration_s if result.duration_s else 0.0
    return "\n".join(
        [
            "## Media upload memory",
            "",
            f"One {result.size_bytes // MIB} MiB upload streamed (chunked multipart from an httpx generator) "
            "to "
            "POST /wehub/upload of one uvicorn worker, stored in MinIO; the worker's VmRSS sampled every "
            f"{sample_ms} ms from /proc. `python -m bench.media_upload_memory` on {machine}, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
            "",
            "| file | RSS before | peak RSS | limit | upload time | rate | answer | stored size | sha256 key |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {result.size_bytes // MIB} MiB | {result.baseline_rss_bytes / MIB:.1f} MiB | "
            f"{result.peak_rss_bytes / MIB:.1f} MiB | {limit_bytes / MIB:.0f} MiB | "
            f"{result.duration_s:.1f} s | "
            f"{rate:.1f} MiB/s | {result.status} | {result.stored_size // MIB} MiB | "
            f"{'matches' if result.sha256_matches else 'differs'} |",
            "",
            f"Result: {'pass' if passed else 'FAIL'} (peak RSS under the limit, file stored whole).",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.media_upload_memory", description=__doc__)
    parser.add_argument("--size-mb", type=int, default=200, help="size of the uploaded file in MiB")
    parser.add_argument("--limit-mb", type=int, default=150, help="largest acceptable peak RSS of the gateway in MiB")
    parser.add_argument("--sample-ms", type=int, default=20, help="interval between RSS samples in milliseconds")
    arguments = parser.parse_args(argv)
    limit_bytes = arguments.limit_mb * MIB
    result = run_once(arguments.size_mb * MIB, arguments.sample_ms / 1000)
    text = render(result, limit_bytes, arguments.sample_ms)
    RESULTS.write_text(text, encoding="utf-8")
    print(text)
    ok = result.status == 200 and result.sha256_matches and result.peak_rss_bytes < limit_bytes
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
