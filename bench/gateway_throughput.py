"""Gateway throughput and latency for report_new_msg, against the ceiling of a bare JSON endpoint.

Each server runs alone as one uvicorn worker; the load comes from a second process on loopback
(bench.gateway_load). Phases, each bounded in time: the ceiling (Starlette + orjson parse only)
as fast as it answers, then at half that rate; the gateway (validate, Avro-encode, produce with
acks=all to real Kafka, answer after the acknowledgement) likewise. Kafka comes from
WEHUB_KAFKA_BOOTSTRAP; the topics get a fresh prefix and are deleted afterwards.

    python -m bench.gateway_throughput [--duration-s 12] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
from aiokafka.admin import AIOKafkaAdminClient

from wehub import kafka
from wehub import settings as settings_module

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
APPID = "bench_app"
BOTS = [f"wxid_bench_bot{index:02d}" for index in range(24)]
STARTUP_TIMEOUT_S = 60.0
TARGET_SHARE = 0.5
TARGET_P99_MS = 20.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def uvicorn_server(target: str, env: dict[str, str], ready_path: str, factory: bool = False) -> Iterator[str]:
    """One uvicorn worker serving `target` on a free loopback port; yields the base URL."""
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    if factory:
        command.append("--factory")
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{target} exited with {process.returncode} before it was ready")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + ready_path, timeout=5).status_code in (200, 405):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{target} not ready within {STARTUP_TIMEOUT_S} s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def _delete_topics(bootstrap: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    await asyncio.wait_for(admin.start(), 30)
    try:
        names = [name for name in await admin.list_topics() if name.startswith(prefix + ".")]
        if names:
            await asyncio.wait_for(admin.delete_topics(names), 30)
    finally:
        await admin.close()


def load(url: str, duration_s: float, connections: int, rate: float | None = None) -> dict[str, float]:
    """Run bench.gateway_load in its own process and return its measurements."""
    command = [
        sys.executable,
        "-m",
        "bench.gateway_load",
        url + "/wehub",
        "--duration-s",
        str(duration_s),
        "--connections",
        str(connections),
        "--appid",
        APPID,
        "--wxids",
        ",".join(BOTS),
    ]
    if rate is not None:
        command += ["--rate", f"{rate:.1f}"]
    finished = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=duration_s + 60, check=True
    )
    result: dict[str, float] = json.loads(finished.stdout.strip().splitlines()[-1])
    return result


def measure(url: str, duration_s: float, connections: int) -> tuple[dict[str, float], dict[str, float]]:
    """The rate as fast as the server answers, then latency at half that rate."""
    at_max = load(url, duration_s, connections)
    at_half = load(url, duration_s, connections, rate=at_max["rate_per_s"] * 0.5)
    return at_max, at_half


def _row(phase: str, result: dict[str, float]) -> str:
    return (
        f"| {phase} | {result['rate_per_s']:,.0f} | {result['p50_ms']:.1f} | {result['p99_ms']:.1f} "
        f"| {int(result['requests']):,} | {int(result['errors'])} |"
    )


def report(results: dict[str, dict[str, float]], duration_s: float, connections: int, partitions: int) -> str:
    share = results["gateway_max"]["rate_per_s"] / results["ceiling_max"]["rate_per_s"]
    p99 = results["gateway_half"]["p99_ms"]
    verdict_share = "met" if share >= TARGET_SHARE else "NOT met"
    verdict_p99 = "met" if p99 < TARGET_P99_MS else "NOT met"
    lines = [
        "## Gateway throughput (report_new_msg)",
        "",
        "| phase | rate (req/s) | p50 (ms) | p99 (ms) | requests | errors |",
        "|---|---|---|---|---|---|",
        _row("ceiling: Starlette + orjson parse, as fast as answered", results["ceiling_max"]),
        _row("ceiling at half its maximum rate", results["ceiling_half"]),
        _row("gateway, acks=all, as fast as answered", results["gateway_max"]),
        _row("gateway at half its maximum rate", results["gateway_half"]),
        "",
        f"- Gateway rate / ceiling rate: **{share:.0%}** (target at least {TARGET_SHARE:.0%}: {verdict_share}).",
        f"- Gateway p99 at half its maximum rate: **{p99:.1f} ms** (target under {TARGET_P99_MS:.0f} ms: "
        f"{verdict_p99}).",
        f"- One uvicorn worker per server, run one after the other; load from a second process on loopback, "
        f"{connections} keep-alive connections, {duration_s:g} s per phase; half-rate phases are open loop "
        f"(latency counted from each request's due time). Kafka: {partitions} partitions per topic, "
        f"{len(BOTS)} bots as keys, idempotent producer, acks=all, linger_ms 2.",
        f"- Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, "
        f"{os.cpu_count()} cores shared with the load generator and whatever else ran.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway_throughput",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration-s", type=float, default=12.0, help="length of each phase")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results-gateway.md")
    arguments = parser.parse_args(argv)
    bootstrap = os.environ.get("WEHUB_KAFKA_BOOTSTRAP", "")
    if not bootstrap:
        print("gateway_throughput: set WEHUB_KAFKA_BOOTSTRAP to a running Kafka broker", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="wehub-bench-gateway-") as work_dir:
        accounts = Path(work_dir) / "accounts.toml"
        accounts.write_text(
            f'[[app]]\nappid = "{APPID}"\nsecret = "bench-secret"\nwxids = {json.dumps(BOTS)}\n',
            encoding="utf-8",
        )
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        env = {
            **os.environ,
            "WEHUB_KAFKA_BOOTSTRAP": bootstrap,
            "WEHUB_TOPIC_PREFIX": prefix,
            "WEHUB_ACCOUNTS": str(accounts),
            "WEHUB_GATEWAY_NAME": "bench",
            "WEHUB_LOG_LEVEL": "WARNING",
        }
        config = settings_module.load(env)
        asyncio.run(kafka.ensure_topics(config, kafka.pipeline_topics(config)))
        results: dict[str, dict[str, float]] = {}
        try:
            with uvicorn_server("bench.gateway_ceiling:app", env, "/wehub") as url:
                results["ceiling_max"], results["ceiling_half"] = measure(
                    url, arguments.duration_s, arguments.connections
                )
            with uvicorn_server("gateway.app:app_from_environment", env, "/readyz", factory=True) as url:
                results["gateway_max"], results["gateway_half"] = measure(
                    url, arguments.duration_s, arguments.connections
                )
        finally:
            asyncio.run(_delete_topics(bootstrap, prefix))

    text = report(results, arguments.duration_s, arguments.connections, int(config.topic_partitions))
    arguments.output.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
