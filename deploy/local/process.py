"""A service process started by deploy.local: launch, readiness wait, pid file and stop."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from deploy.local.errors import ServiceError, tail

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30.0
_POLL_S = 0.25


@dataclass
class RunningService:
    """A service process: its pid, the address clients use and the log it writes.

    `process` is set in the process that started the service; a service found through its
    pid file (`wehub services stop` in another shell) has only the pid.
    """

    name: str
    pid: int
    address: str
    log_path: Path
    pid_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log_start: int = 0  # byte offset in log_path where this run's output begins

    def log_since_start(self) -> bytes:
        """Return what this run wrote to its log so far (the log file keeps earlier runs too)."""
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(self.log_start)
                return handle.read()
        except FileNotFoundError:
            return b""

    def is_alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return _pid_runs_command(self.pid, str(self.pid_path.parent))

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Send SIGTERM, wait up to `timeout_s` for a clean shutdown, then SIGKILL. Idempotent."""
        if self.is_alive():
            log.info("stopping %s (pid %d)", self.name, self.pid)
            self._signal(signal.SIGTERM)
            if not self._wait_exit(timeout_s):
                log.warning("%s (pid %d) still runs %.0f s after SIGTERM, sending SIGKILL",
                            self.name, self.pid, timeout_s)
                self._signal(signal.SIGKILL)
                self._wait_exit(10.0)
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()

    def _signal(self, number: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, number)

    def _wait_exit(self, timeout_s: float) -> bool:
        if self.process is not None:
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.is_alive():
                return True
            time.sleep(_POLL_S)
        return False


def launch(name: str, command: list[str], service_dir: Path, address: str,
           env: Mapping[str, str] | None = None) -> RunningService:
    """Start `command` in its own session with stdout and stderr appended to `<service_dir>/<name>.log`."""
    log_path = service_dir / f"{name}.log"
    pid_path = service_dir / f"{name}.pid"
    with log_path.open("ab") as output:
        output.write(f"\n===== starting {name} at {time.strftime('%Y-%m-%dT%H:%M:%S')} =====\n".encode())
        output.flush()
        log_start = output.tell()
        # A session of its own keeps Ctrl-C in the starting shell from reaching the service;
        # stop() is how it ends.
        # The command is built by this package from constants and cache paths (S603).
        process = subprocess.Popen(  # noqa: S603
            command, cwd=service_dir, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            env=None if env is None else dict(env), start_new_session=True,
        )
    pid_path.write_text(str(process.pid), encoding="utf-8")
    log.info("started %s (pid %d) on %s, log in %s", name, process.pid, address, log_path)
    return RunningService(name, process.pid, address, log_path, pid_path, process, log_start)


def wait_ready(service: RunningService, is_ready: Callable[[], bool], timeout_s: float, hint: str) -> None:
    """Poll `is_ready` until it holds; on exit or timeout stop the service and raise ServiceError.

    `hint`, appended to the error, is the operator's next step.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not service.is_alive():
            problem = f"{service.name} exited during startup on {service.address}."
            raise ServiceError(_with_errors(problem, service, hint), service.log_path, tail(service.log_path))
        if is_ready():
            log.info("%s is ready on %s", service.name, service.address)
            return
        time.sleep(_POLL_S)
    service.stop()
    problem = f"{service.name} was not ready on {service.address} after {timeout_s:.0f} s."
    raise ServiceError(_with_errors(problem, service, hint), service.log_path, tail(service.log_path))


def _with_errors(problem: str, service: RunningService, hint: str, limit: int = 5) -> str:
    """Add the first ERROR lines of this run to `problem`: the cause is often far above the tail."""
    lines = service.log_since_start().decode("utf-8", "replace").splitlines()
    errors = [line for line in lines if " ERROR " in line or " FATAL " in line or "Error:" in line][:limit]
    if errors:
        problem += "\nfirst errors in the log:\n" + "\n".join(errors)
    return f"{problem}\n{hint}"


def find_running(name: str, service_dir: Path, address: str) -> RunningService | None:
    """Return the service recorded in `<service_dir>/<name>.pid` when that process still runs."""
    pid_path = service_dir / f"{name}.pid"
    try:
        pid = int(pid_path.read_text(encoding="utf-8").strip())
    except (FileNotFoundError, ValueError):
        return None
    service = RunningService(name, pid, address, service_dir / f"{name}.log", pid_path)
    return service if service.is_alive() else None


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port_pair(host: str = "127.0.0.1", attempts: int = 50) -> int:
    """Return a port P such that P and P+1 are both free (a service and its controller or console)."""
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            port: int = probe.getsockname()[1]
        if port < 65535 and port_is_free(port + 1, host):
            return port
    raise ServiceError(f"found no two consecutive free ports on {host} in {attempts} attempts")


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _pid_runs_command(pid: int, needle: str) -> bool:
    """Return whether `pid` exists and its command line contains `needle` (a reused pid does not)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return needle.encode() in cmdline
