"""Websocket mode at scale: 2,000 bots connected to one gateway worker, memory and push latency.

One gateway (`wehub gateway`, one uvicorn worker) runs in a subprocess against real Kafka with
websocket mode on. This process opens the sockets in one asyncio loop, logs every bot in over its
socket and sends a heartbeat every `--heartbeat-s` per bot. Phases, each bounded in time:

0. the ceiling: the same number of sockets on a bare Starlette endpoint (bench.ws_ceiling), for
   the memory a connection costs uvicorn and Starlette alone;
1. connect and log in every bot (`--connect-concurrency` at a time);
2. hold: only heartbeats for `--hold-s`; the gateway's resident set is read before the first
   connection and after this phase, and the growth divided by the connections;
3. steady pushes: one task at a time through POST /api/tasks at `--rate` per second for
   `--push-s`, each to a random connected bot; latency is from the start of the POST to the
   pull_task_ack frame on the bot's socket;
4. burst: one POST with one task for every bot, same latency measure.

Kafka comes from WEHUB_KAFKA_BOOTSTRAP; the topics get a fresh prefix and are deleted afterwards.

    python -m bench.ws_connections [--bots 2000] [--hold-s 15] [--push-s 15] [--rate 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests import processes
from tests.services import delete_topics_with_prefix
from wehub import kafka
from wehub import settings as settings_module

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
APPID = "bench_ws_app"
ADMIN_TOKEN = "bench-ws-admin"
STARTUP_TIMEOUT_S = 60.0
CONNECT_PHASE_LIMIT_S = 90.0
TARGET_PUSH_P99_MS = 1000.0


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def raise_fd_limit(needed: int) -> int:
    """Raise the soft limit of open files towards the hard one; the gateway subprocess inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, needed)) if hard != resource.RLIM_INFINITY else max(soft, needed)
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


@contextlib.contextmanager
def gateway(env: dict[str, str], port: int, ceiling: bool = False) -> Iterator[subprocess.Popen[bytes]]:
    """Start the gateway (with `ceiling`, the bare endpoint) on 127.0.0.1:`port` and wait until it responds."""
    command = processes.gateway_command(port)
    if ceiling:
        command = processes.uvicorn_command("bench.ws_ceiling:app", port)
    # The bare endpoint has no /readyz: its 404 means it listens.
    ready = (200, 404) if ceiling else (200,)
    with processes.server_process(command, f"http://127.0.0.1:{port}/readyz", env=env, name="the gateway",
                                  ready_statuses=ready, timeout_s=STARTUP_TIMEOUT_S) as process:
        yield process


@dataclass
class Fleet:
    """The bots' sockets and what arrived on them."""

    heartbeat_s: float
    sockets: dict[str, ClientConnection] = field(default_factory=dict)
    arrivals: dict[str, tuple[str, float]] = field(default_factory=dict)
    heartbeats: int = 0
    closed: int = 0
    stray_frames: int = 0
    duplicates: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    running: list[asyncio.Task[None]] = field(default_factory=list)


async def open_bot(fleet: Fleet, ws_url: str, wxid: str) -> None:
    bot = await connect(ws_url, open_timeout=30, ping_interval=None, max_queue=None)
    await bot.send(orjson.dumps({"action": "login", "appid": APPID, "wxid": wxid, "data": {}}).decode())
    answer = orjson.loads(await asyncio.wait_for(bot.recv(), 30))
    if answer.get("error_code") != 0:
        raise RuntimeError(f"login of a bench bot rejected with error_code {answer.get('error_code')}")
    fleet.sockets[wxid] = bot
    fleet.running.append(asyncio.create_task(listen(fleet, wxid, bot)))
    fleet.running.append(asyncio.create_task(beat(fleet, wxid, bot)))


async def listen(fleet: Fleet, wxid: str, bot: ClientConnection) -> None:
    try:
        async for message in bot:
            frame = orjson.loads(message)
            if frame.get("ack_type") == "pull_task_ack":
                fleet.duplicates += frame["data"]["task_id"] in fleet.arrivals
                fleet.arrivals[frame["data"]["task_id"]] = (wxid, time.perf_counter())
                fleet.arrived.set()
            else:
                fleet.stray_frames += 1
    except ConnectionClosed:
        pass
    fleet.closed += 1


async def beat(fleet: Fleet, wxid: str, bot: ClientConnection) -> None:
    heartbeat = orjson.dumps({"atcion": "heartbeat", "appid": APPID, "wxid": wxid, "data": {}}).decode()
    # A random phase, as real clients started at different times would have.
    await asyncio.sleep(random.uniform(0, fleet.heartbeat_s))
    with contextlib.suppress(ConnectionClosed):
        while True:
            await bot.send(heartbeat)
            fleet.heartbeats += 1
            await asyncio.sleep(fleet.heartbeat_s)


async def connect_all(fleet: Fleet, ws_url: str, wxids: list[str], concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(wxid: str) -> None:
        async with gate:
            await open_bot(fleet, ws_url, wxid)

    started = time.perf_counter()
    async with asyncio.timeout(CONNECT_PHASE_LIMIT_S):
        await asyncio.gather(*(one(wxid) for wxid in wxids))
    return time.perf_counter() - started


def task(wxid: str, text: str) -> dict[str, Any]:
    return {"appid": APPID, "bot_wxid": wxid, "task_type": 1,
            "task_dict": {"wxid_to": "filehelper", "at_list": [], "msg_list": [{"msg_type": 1, "msg": text}]}}


async def submit(client: httpx.AsyncClient, url: str, tasks: list[dict[str, Any]]) -> tuple[float, list[str]]:
    started = time.perf_counter()
    answer = await client.post(f"{url}/api/tasks", content=orjson.dumps(tasks),
                               headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    answer.raise_for_status()
    task_ids: list[str] = answer.json()["task_ids"]
    return started, task_ids


async def wait_for(fleet: Fleet, task_ids: list[str], limit_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit_s):
            while not all(task_id in fleet.arrivals for task_id in task_ids):
                fleet.arrived.clear()
                await fleet.arrived.wait()


def latencies_ms(fleet: Fleet, submitted: dict[str, float]) -> tuple[list[float], int]:
    found = [(fleet.arrivals[task_id][1] - at) * 1000 for task_id, at in submitted.items() if task_id in fleet.arrivals]
    return found, len(submitted) - len(found)


async def ceiling(arguments: argparse.Namespace, ws_url: str, pid: int, wxids: list[str]) -> tuple[int, int]:
    """RSS of the bare endpoint before and after every socket connected and sent one frame."""
    fleet = Fleet(heartbeat_s=arguments.heartbeat_s)
    before = rss_bytes(pid)
    try:
        await connect_all(fleet, ws_url, wxids, arguments.connect_concurrency)
        await asyncio.sleep(min(arguments.hold_s, 5.0))
        return before, rss_bytes(pid)
    finally:
        for running in fleet.running:
            running.cancel()
        await asyncio.gather(*fleet.running, return_exceptions=True)
        await asyncio.gather(*(bot.close() for bot in fleet.sockets.values()), return_exceptions=True)


async def run(arguments: argparse.Namespace, url: str, ws_url: str, pid: int, wxids: list[str]) -> dict[str, Any]:
    fleet = Fleet(heartbeat_s=arguments.heartbeat_s)
    results: dict[str, Any] = {"rss_before": rss_bytes(pid)}
    try:
        results["connect_s"] = await connect_all(fleet, ws_url, wxids, arguments.connect_concurrency)
        await asyncio.sleep(arguments.hold_s)
        results["rss_connected"] = rss_bytes(pid)
        results["heartbeats_hold"] = fleet.heartbeats

        steady: dict[str, float] = {}
        async with httpx.AsyncClient(timeout=30) as client:
            started = time.monotonic()
            count = int(arguments.push_s * arguments.rate)
            for index in range(count):
                await asyncio.sleep(max(0.0, started + index / arguments.rate - time.monotonic()))
                at, [task_id] = await submit(client, url, [task(random.choice(wxids), f"steady {index}")])
                steady[task_id] = at
            await wait_for(fleet, list(steady), 10)
            results["steady"] = latencies_ms(fleet, steady)

            at, burst_ids = await submit(client, url, [task(wxid, "burst") for wxid in wxids])
            await wait_for(fleet, burst_ids, 20)
            results["burst"] = latencies_ms(fleet, dict.fromkeys(burst_ids, at))
        results["rss_end"] = rss_bytes(pid)
        results["heartbeats"] = fleet.heartbeats
        results["closed_early"] = fleet.closed
        results["stray_frames"] = fleet.stray_frames
        results["duplicates"] = fleet.duplicates
        results["connections"] = len(fleet.sockets)
    finally:
        for running in fleet.running:
            running.cancel()
        await asyncio.gather(*fleet.running, return_exceptions=True)
        await asyncio.gather(*(bot.close() for bot in fleet.sockets.values()), return_exceptions=True)
    return results


def _latency_row(name: str, measured: tuple[list[float], int]) -> str:
    values, missing = measured
    return (f"| {name} | {len(values):,} | {percentile(values, 0.5):.1f} | {percentile(values, 0.99):.1f} "
            f"| {max(values, default=float('nan')):.1f} | {missing} |")


def report(results: dict[str, Any], arguments: argparse.Namespace) -> str:
    connections = results["connections"]
    per_connection_kib = (results["rss_connected"] - results["rss_before"]) / max(1, connections) / 1024
    bare_kib = (results["ceiling_connected"] - results["ceiling_before"]) / max(1, connections) / 1024
    p99 = percentile(results["steady"][0], 0.99)
    verdict = "meets" if p99 < TARGET_PUSH_P99_MS else "misses"
    lines = [
        "## Websocket mode: connections, memory and push latency",
        "",
        f"{connections:,} bots on one gateway worker (uvicorn, websockets-sansio), each logged in over its",
        f"socket and sending a heartbeat every {arguments.heartbeat_s:g} s; the clients run in one asyncio",
        f"process on the same 2-core machine. Python {platform.python_version()}, {platform.machine()}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| connect and log in all bots | {results['connect_s']:.2f} s |",
        f"| gateway RSS before / connected / at the end | {results['rss_before'] / 2**20:.0f} / "
        f"{results['rss_connected'] / 2**20:.0f} / {results['rss_end'] / 2**20:.0f} MiB |",
        f"| memory per connection (RSS growth / connections) | {per_connection_kib:.1f} KiB |",
        f"| the same on a bare Starlette websocket endpoint | {bare_kib:.1f} KiB |",
        f"| heartbeats sent (hold phase / whole run) | {results['heartbeats_hold']:,} / {results['heartbeats']:,} |",
        f"| connections closed by the gateway during the run | {results['closed_early']} |",
        f"| tasks pushed twice | {results['duplicates']} |",
        "",
        "Push latency, from the start of POST /api/tasks to the pull_task_ack frame on the bot's socket:",
        "",
        "| phase | tasks | p50 ms | p99 ms | max ms | not arrived |",
        "|---|---|---|---|---|---|",
        _latency_row(f"steady, {arguments.rate:g} single-task POSTs a second", results["steady"]),
        _latency_row(f"burst, one POST of {connections:,} tasks", results["burst"]),
        "",
        f"The steady p99 {verdict} the target of under {TARGET_PUSH_P99_MS:.0f} ms. The memory figure includes",
        "what the gateway allocates for each login (the event published to Kafka) as well as the socket;",
        "the bare endpoint shows the part uvicorn and Starlette take. Each push claims its task through",
        "Kafka (write the claim, read it back) before the frame goes out, so a burst is paced by that",
        "round trip and the machine's CPU, not by the sockets.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ws_connections", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bots", type=int, default=2000)
    parser.add_argument("--heartbeat-s", type=float, default=10.0, help="heartbeat interval of every bot")
    parser.add_argument("--hold-s", type=float, default=15.0, help="heartbeats only, before memory is read")
    parser.add_argument("--push-s", type=float, default=15.0, help="length of the steady push phase")
    parser.add_argument("--rate", type=float, default=20.0, help="single-task submissions a second")
    parser.add_argument("--connect-concurrency", type=int, default=100)
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results-ws.md")
    arguments = parser.parse_args(argv)
    bootstrap = os.environ.get("WEHUB_KAFKA_BOOTSTRAP", "")
    if not bootstrap:
        print("ws_connections: set WEHUB_KAFKA_BOOTSTRAP to a running Kafka broker", file=sys.stderr)
        return 2
    limit = raise_fd_limit(2 * arguments.bots + 512)
    if limit < 2 * arguments.bots + 256:
        print(f"ws_connections: only {limit} open files allowed, {arguments.bots} bots need more", file=sys.stderr)
        return 2

    wxids = [f"wxid_ws_bench_{index:05d}" for index in range(arguments.bots)]
    port = processes.free_port()
    with tempfile.TemporaryDirectory(prefix="wehub-bench-ws-") as work_dir:
        accounts = Path(work_dir) / "accounts.toml"
        accounts.write_text(
            f'[[app]]\nappid = "{APPID}"\nsecret = "bench-secret"\nwxids = {json.dumps(wxids)}\n'
            f"websocket = true\nheartbeat_interval = {max(1, round(arguments.heartbeat_s))}\n",
            encoding="utf-8",
        )
        prefix = f"benchws{uuid.uuid4().hex[:8]}"
        env = {**os.environ, "WEHUB_KAFKA_BOOTSTRAP": bootstrap, "WEHUB_TOPIC_PREFIX": prefix,
               "WEHUB_ACCOUNTS": str(accounts), "WEHUB_GATEWAY_NAME": "bench-ws", "WEHUB_LOG_LEVEL": "WARNING",
               "WEHUB_ADMIN_TOKEN": ADMIN_TOKEN, "WEHUB_TASK_MIN_INTERVAL_S": "0",
               "WEHUB_PUBLIC_URL": f"http://127.0.0.1:{port}"}
        config = settings_module.load(env)
        asyncio.run(kafka.ensure_topics(config, kafka.pipeline_topics(config)))
        ws_url = f"ws://127.0.0.1:{port}/wehub/ws"
        with gateway(env, port, ceiling=True) as process:
            bare = asyncio.run(ceiling(arguments, ws_url, process.pid, wxids))
        try:
            with gateway(env, port) as process:
                results = asyncio.run(run(arguments, f"http://127.0.0.1:{port}", ws_url, process.pid, wxids))
                results["ceiling_before"], results["ceiling_connected"] = bare
        finally:
            asyncio.run(delete_topics_with_prefix(bootstrap, prefix))

    text = report(results, arguments)
    arguments.output.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
