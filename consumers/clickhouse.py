"""ClickHouse clients on the pipeline's settings, and clickhouse-connect errors translated in one place.

`chdb://DIR` runs the embedded engine inside this process (one process per directory);
`http(s)://user:password@host:port` talks to a server. clickhouse-connect is synchronous, so
callers on the event loop run these functions through `asyncio.to_thread`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError, OperationalError

from wehub.settings import Settings

log = logging.getLogger(__name__)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CHDB_CLIENTS: dict[tuple[str, str, int], Client] = {}
_CHDB_LOCK = threading.Lock()

# Server error codes worth retrying: the same insert may succeed once the server recovers.
# 159 TIMEOUT_EXCEEDED, 202 TOO_MANY_SIMULTANEOUS_QUERIES, 209 SOCKET_TIMEOUT, 210 NETWORK_ERROR,
# 252 TOO_MANY_PARTS, 241 MEMORY_LIMIT_EXCEEDED, 242 TABLE_IS_READ_ONLY, 319 UNKNOWN_STATUS_OF_INSERT.
_RETRIABLE_CODES = {159, 202, 209, 210, 241, 242, 252, 319}
_CODE = re.compile(r"Code: (\d+)")


class StoreError(RuntimeError):
    """A ClickHouse failure; `retriable` is True when the same call may succeed later."""

    def __init__(self, message: str, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


def translate(error: BaseException, doing: str) -> StoreError:
    """Map a clickhouse-connect or socket error to StoreError, without the query text or values."""
    if isinstance(error, (OperationalError, ConnectionError, TimeoutError)):
        return StoreError(f"ClickHouse is unreachable while {doing}: {type(error).__name__}", retriable=True)
    if isinstance(error, ClickHouseError):
        match = _CODE.search(str(error))
        code = int(match.group(1)) if match else 0
        retriable = code in _RETRIABLE_CODES
        return StoreError(f"ClickHouse failed while {doing}: code {code or 'unknown'}", retriable)
    return StoreError(f"unexpected failure while {doing}: {type(error).__name__}", retriable=False)


def check_identifier(name: str) -> str:
    """Return `name` when it is a plain SQL identifier; raises ValueError naming it otherwise."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"database name {name!r} is invalid: expected letters, digits and _ only")
    return name


def is_embedded(dsn: str) -> bool:
    return dsn.startswith("chdb://")


def embedded_path(dsn: str) -> str:
    """Return the directory of a chdb:// DSN."""
    return dsn[len("chdb://"):]


def make_client(settings: Settings, database: str | None = None, lane: int = 0) -> Client:
    """Create a client on WEHUB_CLICKHOUSE_DSN (or the embedded default).

    `database` is the default database of unqualified names. Embedded clients are shared per
    directory, database and `lane` inside the process, because chdb allows one process per
    directory and one engine instance inside it. A client runs one statement at a time, so a
    caller that runs statements in parallel uses another lane. Raises StoreError.
    """
    dsn = settings.effective_clickhouse_dsn
    try:
        if is_embedded(dsn):
            with _CHDB_LOCK:
                return _embedded_client(dsn, database or "default", lane)
        parts = urlsplit(dsn)
        if parts.scheme not in ("http", "https"):
            raise StoreError(
                f"WEHUB_CLICKHOUSE_DSN scheme {parts.scheme!r} is invalid: expected chdb://, http:// or https://",
                retriable=False,
            )
        return clickhouse_connect.get_client(
            dsn=dsn,
            database=database or "default",
            connect_timeout=10,
            send_receive_timeout=300,
            autogenerate_session_id=False,
        )
    except StoreError:
        raise
    except (ClickHouseError, OSError) as error:
        raise translate(error, "connecting") from None


def _embedded_client(dsn: str, database: str, lane: int = 0) -> Client:
    client = _CHDB_CLIENTS.get((dsn, database, lane))
    if client is not None:
        return client
    if database != "default":
        # chdb refuses a client whose default database does not exist yet.
        _embedded_client(dsn, "default").command(f"CREATE DATABASE IF NOT EXISTS {check_identifier(database)}")
    client = clickhouse_connect.get_client(dsn=dsn, database=database)
    _CHDB_CLIENTS[(dsn, database, lane)] = client
    return client


@dataclass(frozen=True)
class Rows:
    """Rows for one table: column names and one sequence of values per row."""

    table: str
    columns: Sequence[str]
    rows: list[Sequence[Any]]


def insert(client: Client, database: str, rows: Rows, settings: dict[str, Any] | None = None) -> None:
    """Insert `rows` into `database.table`; blocks, raises StoreError."""
    if not rows.rows:
        return
    try:
        client.insert(rows.table, rows.rows, column_names=list(rows.columns), database=database,
                      settings=settings or {})
    except (ClickHouseError, DatabaseError, OSError) as error:
        raise translate(error, f"inserting {len(rows.rows)} rows into {rows.table}") from None


def insert_encoded(client: Client, database: str, table: str, data: bytes, *, fmt: str,
                   settings: dict[str, Any] | None = None) -> None:
    """Insert `data`, already in ClickHouse input format `fmt`, into `database.table`; blocks, raises StoreError."""
    try:
        client.raw_insert(f"{database}.{table}", None, insert_block=data, fmt=fmt, settings=settings or {})
    except (ClickHouseError, DatabaseError, OSError) as error:
        raise translate(error, f"inserting {len(data)} bytes of {fmt} into {table}") from None


def close_embedded() -> None:
    """Close the shared embedded clients (at process exit; chdb keeps the directory locked until then)."""
    with _CHDB_LOCK:
        for client in _CHDB_CLIENTS.values():
            try:
                client.close()
            except Exception:
                log.debug("closing an embedded ClickHouse client failed", exc_info=True)
        _CHDB_CLIENTS.clear()


# Text of chdb's error when another process holds the folder: older releases failed to start the
# "EmbeddedServer", chdb 4.4 "Cannot lock file" (CANNOT_OPEN_FILE) because "Another server instance" runs.
EMBEDDED_IN_USE_SIGNS = ("EmbeddedServer", "Cannot lock file", "Another server instance")


def embedded_in_use(error: BaseException) -> bool:
    """Tell whether `error`, or an error it was raised from, reports that another process has the chdb folder open."""
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            return False
        if any(sign in str(seen) for sign in EMBEDDED_IN_USE_SIGNS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
