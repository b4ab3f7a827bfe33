"""The one error of deploy.local, carrying the tail of the log that explains it."""

from __future__ import annotations

from pathlib import Path

TAIL_LINES = 40


class ServiceError(RuntimeError):
    """A local service could not be installed or started; the message includes the next step."""

    def __init__(self, message: str, log_path: Path | None = None, log_tail: str = "") -> None:
        text = message
        if log_path is not None:
            text += f"\nfull log: {log_path}"
        if log_tail:
            text += f"\nlast lines of the log:\n{log_tail}"
        super().__init__(text)
        self.log_path = log_path
        self.log_tail = log_tail


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    """Return the last `lines` lines of a log file, or an empty string when it does not exist."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])
