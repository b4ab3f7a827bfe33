"""Load generator of the gateway benchmark: keep-alive HTTP/1.1 POSTs on loopback, for a bounded time.

Run as a separate process (`python -m bench.gateway_load ...`) so the server under test has its
own core. Closed loop (each connection sends its next request when the previous one is answered)
measures the maximum rate; `--rate` switches to an open loop where request i is due at
start + i / rate and its latency counts from that due time, so a stalled server cannot hide its
queueing delay. Prints one JSON object: requests, errors, rate and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from urllib.parse import urlsplit

import orjson
import uvloop

_OK_MARKER = b'"error_code":0'


def bodies(count: int, appid: str, wxids: list[str]) -> list[bytes]:
    """Distinct report_new_msg bodies shaped like real group text messages, from several bots."""
    result = []
    for index in range(count):
        msg = {
            "msg_type": 1,
            "room_wxid": f"{index % 50:011d}@chatroom",
            "wxid_from": f"wxid_sender{index % 300:05d}",
            "wxid_to": f"{index % 50:011d}@chatroom",
            "msg_id": str(7_000_000_000_000_000_000 + index),
            "msg_timestamp": 1_764_800_000_000 + index,
            "msg": f"message number {index} with a little text like people write, 你好，今天开会吗？",
            "atUserList": [],
        }
        body = {
            "action": "report_new_msg",
            "appid": appid,
            "wxid": wxids[index % len(wxids)],
            "data": {"msg": msg},
        }
        result.append(orjson.dumps(body))
    return result


def request_bytes(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    body = await reader.readexactly(length)
    return head.startswith(b"HTTP/1.1 200") and _OK_MARKER in body


async def run(
    url: str, duration_s: float, connections: int, rate: float | None, appid: str, wxids: list[str]
) -> dict[str, float]:
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    requests = [request_bytes(host, port, path, body) for body in bodies(512, appid, wxids)]
    latencies: list[float] = []
    errors = 0
    issued = 0
    start = time.perf_counter() + 0.2
    stop_at = start + duration_s

    async def worker() -> None:
        nonlocal errors, issued
        reader, writer = await asyncio.open_connection(host, port)
        try:
            await asyncio.sleep(max(0.0, start - time.perf_counter()))
            while True:
                index = issued
                issued += 1
                due = start + index / rate if rate else time.perf_counter()
                if due >= stop_at:
                    return
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                try:
                    ok = await _exchange(reader, writer, requests[index % len(requests)])
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                latencies.append(time.perf_counter() - due)
                if not ok:
                    errors += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = max(time.perf_counter(), stop_at) - start
    latencies.sort()

    def percentile(fraction: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "errors": errors,
        "rate_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_load", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--rate", type=float, help="requests per second (open loop); default: as fast as answered"
    )
    parser.add_argument("--appid", default="bench_app")
    parser.add_argument("--wxids", default="wxid_bench_bot", help="comma-separated bot wxids to send as")
    arguments = parser.parse_args(argv)
    load = run(
        arguments.url,
        arguments.duration_s,
        arguments.connections,
        arguments.rate,
        arguments.appid,
        arguments.wxids.split(","),
    )
    result = uvloop.run(load)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
