"""Read queries on the configured ClickHouse, also while the pipeline has the embedded engine open.

Only one process can open a chdb directory. The process that has it open (`wehub consume`) serves
read queries on a loopback port and writes the port and a random token to a 0600 file in the
data directory; `run_query` in another process uses that endpoint when the file names a live
process, and opens the directory itself otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import re
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from clickhouse_connect.driver.exceptions import ClickHouseError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from consumers import clickhouse
from consumers.clickhouse import StoreError
from wehub.settings import Settings

log = logging.getLogger(__name__)

ENDPOINT_FILE = "clickhouse-query.json"
QUERY_TIMEOUT_S = 300.0
# readonly=2 rejects writes and DDL but lets the client send its own query settings.
_READONLY = {"readonly": 2}
# Statements that change data, schema, grants or the session, which the endpoint rejects itself.
# Any other text goes to ClickHouse under readonly=2, so a typo such as `SELEC 1` gets ClickHouse's
# syntax error, and readonly=2 still rejects a write statement that this list misses.
_WRITE_STATEMENT = re.compile(
    r"^\s*(ALTER|ATTACH|BACKUP|CREATE|DELETE|DETACH|DROP|EXCHANGE|GRANT|INSERT|KILL|MOVE|OPTIMIZE|RENAME|"
    r"REPLACE|RESTORE|REVOKE|SET|SYSTEM|TRUNCATE|UNDROP|UPDATE|USE)\b",
    re.IGNORECASE,
)
# The chdb backend of clickhouse-connect sends query settings as a SETTINGS clause appended to the
# SQL text, and ClickHouse echoes that text in its errors.
_READONLY_CLAUSE = re.compile(r"\s*SETTINGS readonly = '?2'?")
# Naive DateTime values are UTC: the analytics tables declare their DateTime columns 'UTC'.
JSON_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z


class QueryError(RuntimeError):
    """A query that failed; the message names the reason without the rows."""


@dataclass(frozen=True)
class QueryResult:
    """Column names and rows. Through the endpoint, dates and times arrive as ISO strings."""

    columns: list[str]
    rows: list[list[Any]]


def endpoint_path(settings: Settings) -> Path:
    return settings.data_path / ENDPOINT_FILE


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _endpoint(settings: Settings) -> dict[str, Any] | None:
    path = endpoint_path(settings)
    try:
        entry: dict[str, Any] = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if entry.get("dsn") != settings.effective_clickhouse_dsn or entry.get("pid") == os.getpid():
        return None
    if not _process_alive(int(entry.get("pid", 0))):
        return None
    return entry


def _run_local(settings: Settings, sql: str, readonly: bool, parameters: dict[str, Any] | None = None) -> QueryResult:
    client = clickhouse.make_client(settings, str(settings.clickhouse_database))
    try:
        result = client.query(sql, parameters=parameters or None, settings=_READONLY if readonly else {})
        return QueryResult(list(result.column_names), [list(row) for row in result.result_rows])
    except (ClickHouseError, OSError) as error:
        raise QueryError(_first_line(error)) from None


def _first_line(error: BaseException) -> str:
    text = _READONLY_CLAUSE.sub("", str(error)).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


def run_query(settings: Settings, sql: str, parameters: dict[str, Any] | None = None) -> QueryResult:
    """Run one read query on the configured ClickHouse. Blocks; raises QueryError or StoreError.

    `parameters` fill the `{name:Type}` placeholders of `sql` on the server side, so values never
    become SQL text. With the embedded engine held by a running `wehub consume`, the query and its
    parameters go to its endpoint.
    """
    if not clickhouse.is_embedded(settings.effective_clickhouse_dsn):
        return _run_local(settings, sql, False, parameters)
    entry = _endpoint(settings)
    if entry is None:
        return _run_local(settings, sql, False, parameters)
    try:
        response = httpx.post(
            f"http://127.0.0.1:{int(entry['port'])}/query",
            content=orjson.dumps({"sql": sql, "parameters": parameters or {}}, default=_json_default),
            headers={"Authorization": f"Bearer {entry['token']}", "Content-Type": "application/json"},
            timeout=QUERY_TIMEOUT_S,
        )
    except httpx.HTTPError as error:
        raise StoreError(f"the query endpoint of process {entry['pid']} failed: {type(error).__name__}",
                         retriable=True) from None
    body: dict[str, Any] = orjson.loads(response.content)
    if response.status_code != 200:
        raise QueryError(str(body.get("error", f"HTTP {response.status_code}")))
    return QueryResult(list(body["columns"]), [list(row) for row in body["rows"]])


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return str(value)


def _query_body(content: bytes) -> tuple[str, dict[str, Any]] | None:
    """Return the SQL and parameters of an endpoint request, or None when the body is not one."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("sql"), str):
        return None
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        return None
    return body["sql"], parameters


def make_app(settings: Settings, token: str) -> Starlette:
    """Build the endpoint: POST /query {"sql": ..., "parameters": {...}} with `Authorization: Bearer <token>`.

    Read queries only; `parameters` (optional) fill the query's `{name:Type}` placeholders.
    """
    expected = f"Bearer {token}".encode()

    async def query(request: Request) -> Response:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return Response(orjson.dumps({"error": "missing or invalid bearer token"}), 401,
                            media_type="application/json")
        request_body = _query_body(await request.body())
        if request_body is None:
            return Response(orjson.dumps({"error": 'body is invalid: expected {"sql": "SELECT ...", '
                                                   '"parameters": {"name": value}}'}), 400,
                            media_type="application/json")
        sql, parameters = request_body
        sql = sql.strip().rstrip(";")
        if ";" in sql or _WRITE_STATEMENT.match(sql):
            return Response(orjson.dumps({"error": "only one read query (SELECT, WITH, SHOW, DESCRIBE, EXISTS, "
                                                   "EXPLAIN) is served while the pipeline runs"}), 403,
                            media_type="application/json")
        try:
            result = await asyncio.to_thread(_run_local, settings, sql, True, parameters)
        except (QueryError, StoreError) as error:
            return Response(orjson.dumps({"error": str(error)}), 400, media_type="application/json")
        payload = orjson.dumps({"columns": result.columns, "rows": result.rows}, default=_json_default,
                               option=JSON_OPTIONS)
        return Response(payload, media_type="application/json")

    return Starlette(routes=[Route("/query", query, methods=["POST"])])


def _write_endpoint_file(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
    os.replace(temporary, path)


async def serve(settings: Settings, stopped: asyncio.Event) -> None:
    """Serve the query endpoint on a random loopback port until `stopped` is set."""
    token = secrets.token_urlsafe(32)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])
    # Listening before the file is written lets a client connect as soon as it reads the file.
    listener.listen(128)
    config = uvicorn.Config(make_app(settings, token), log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    path = endpoint_path(settings)
    entry = {"pid": os.getpid(), "port": port, "token": token, "dsn": settings.effective_clickhouse_dsn}
    _write_endpoint_file(path, orjson.dumps(entry))
    log.info("query endpoint listening on 127.0.0.1:%d", port)
    task = asyncio.ensure_future(server.serve(sockets=[listener]))
    try:
        await stopped.wait()
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, 10)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        listener.close()
