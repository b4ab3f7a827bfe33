"""The cache folder of local services: installs built once, checked on every reuse.

Each tool lives in `<cache_dir>/<name>-<version>/` with a `manifest.json` listing its files and
their sizes. The manifest is written last, so a folder without one is an interrupted install.
A missing file or a file of another size makes the install broken, and it is installed again.
Installs run under an exclusive file lock, so two processes never build into the same folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from deploy.local.errors import ServiceError, tail

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Installed:
    """A tool in the cache: `path` is what callers use (a folder of jars, a binary)."""

    path: Path
    reused: bool


def check_install(folder: Path) -> str | None:
    """Return why the install in `folder` cannot be used, or None when every file is intact."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return f"{manifest} is missing (an install that did not finish)"
    try:
        sizes: dict[str, int] = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError) as error:
        return f"{manifest} is unreadable: {error}"
    for relative, size in sizes.items():
        path = folder / relative
        if not path.is_file():
            return f"{path} is missing"
        actual = path.stat().st_size
        if actual != size:
            return f"{path} has {actual} bytes, expected {size}"
    return None


def ensure(folder: Path, label: str, install: Callable[[Path], None], entry: str) -> Installed:
    """Install `label` into `folder` unless an intact install is there already.

    `install(staging)` fills a fresh staging folder, which is moved into place only when it returns.
    The returned `Installed.path` is `entry` inside the folder. Blocks while another process
    installs the same tool. Raises ServiceError when the install fails.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _locked(folder.with_name(folder.name + ".lock")):
        _remove_stale_staging(folder)
        problem = check_install(folder)
        if problem is None:
            log.info("reusing cached %s in %s", label, folder)
            return Installed(folder / entry, reused=True)
        if folder.exists():
            log.warning("cached %s is broken, installing it again: %s", label, problem)
            shutil.rmtree(folder)

        log.info("installing %s into %s (first run only)", label, folder)
        staging = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
        try:
            install(staging)
            _write_manifest(staging)
            staging.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return Installed(folder / entry, reused=False)


def run_installer(command: list[str], *, cwd: Path, env: Mapping[str, str], timeout_s: float,
                  log_path: Path, what_to_do: str) -> None:
    """Run an install command with its output in `log_path`; raise ServiceError with the tail on failure."""
    with log_path.open("wb") as output:
        try:
            # The commands are built from constants of this package and paths of the cache (S603).
            completed = subprocess.run(  # noqa: S603
                command, cwd=cwd, env=dict(env), stdout=output, stderr=subprocess.STDOUT,
                timeout=timeout_s, check=False,
            )
        except FileNotFoundError:
            raise ServiceError(f"{command[0]} not found on PATH: {what_to_do}") from None
        except subprocess.TimeoutExpired:
            raise ServiceError(f"{' '.join(command)} timed out after {timeout_s:.0f} s",
                               log_path=log_path, log_tail=tail(log_path)) from None
    if completed.returncode != 0:
        raise ServiceError(
            f"{' '.join(command)} failed with exit status {completed.returncode}: {what_to_do}",
            log_path=log_path, log_tail=tail(log_path),
        )


def _remove_stale_staging(folder: Path) -> None:
    # Staging folders left by an install that was killed; the lock guarantees none is in use.
    for stale in folder.parent.glob(folder.name + ".*"):
        if stale.is_dir():
            log.info("removing %s, left by an interrupted install", stale)
            shutil.rmtree(stale, ignore_errors=True)


def _write_manifest(folder: Path) -> None:
    files = {str(path.relative_to(folder)): path.stat().st_size
             for path in sorted(folder.rglob("*")) if path.is_file()}
    (folder / MANIFEST).write_text(json.dumps({"files": files}, indent=1), encoding="utf-8")


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        # No timeout: the holder is another install of the same tool, which has its own timeout.
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
