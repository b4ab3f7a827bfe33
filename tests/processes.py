"""Server processes started by tests and benchmarks: a free loopback port, start, wait, stop."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
_POLL_S = 0.2
_LOG_TAIL_CHARS = 8000


class ServerNotReady(RuntimeError):
    """A server process exited, or its ready URL did not respond in time; the message contains its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def gateway_command(port: int, host: str = "127.0.0.1", workers: int = 1) -> list[str]:
    """`wehub gateway` with `workers` uvicorn workers on host:port, run by this interpreter."""
    return [sys.executable, "-m", "wehub.cli", "gateway", "--host", host, "--port", str(port),
            "--workers", str(workers)]


def uvicorn_command(target: str, port: int, factory: bool = False) -> list[str]:
    """A bare uvicorn worker serving `target` (module:attribute) on 127.0.0.1:port."""
    command = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--no-access-log", "--log-level", "warning"]
    if factory:
        command.append("--factory")
    return command


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL when the process has not exited within `timeout_s`."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _log_text(log_path: Path | None) -> str:
    if log_path is None or not log_path.exists():
        return "(no log kept)"
    return log_path.read_text(encoding="utf-8", errors="replace")[-_LOG_TAIL_CHARS:]


@contextlib.contextmanager
def server_process(
    command: Sequence[str],
    ready_url: str,
    *,
    env: Mapping[str, str],
    name: str = "server",
    log_path: Path | None = None,
    ready_statuses: Collection[int] = (200,),
    timeout_s: float = STARTUP_TIMEOUT_S,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `command`, wait until GET `ready_url` returns one of `ready_statuses`, stop it afterwards.

    Output goes to `log_path` when given (and is shown when the server fails to start), else it is
    dropped. Raises ServerNotReady when the process exits or is not ready within `timeout_s`.
    """
    output: IO[bytes] | int = subprocess.DEVNULL
    if log_path is not None:
        output = log_path.open("wb")
    try:
        process = subprocess.Popen(list(command), cwd=REPO_ROOT, env=dict(env), stdout=output,
                                   stderr=subprocess.STDOUT)
    finally:
        if not isinstance(output, int):
            output.close()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise ServerNotReady(f"{name} exited with {process.returncode}:\n{_log_text(log_path)}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(ready_url, timeout=5).status_code in ready_statuses:
                    break
            if time.monotonic() > deadline:
                raise ServerNotReady(f"{name} not ready within {timeout_s} s:\n{_log_text(log_path)}")
            time.sleep(_POLL_S)
        yield process
    finally:
        stop_process(process)
