"""`run_query`, the query endpoint of a running consumer process, and `wehub sql` output."""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from consumers import cli as cli_module
from consumers.cli import format_result
from consumers.query import QueryError, QueryResult, make_app, run_query
from wehub import settings as settings_module
from wehub.settings import Settings

TOKEN = "test-token-0123456789"
# Opens the embedded ClickHouse in argv[1] without a query endpoint, as `wehub consume
# --no-query-endpoint` does, and holds it until killed (at most a minute).
HOLD_FOLDER = """
import sys, time
from consumers import clickhouse
from wehub import settings
clickhouse.make_client(settings.load({"WEHUB_CLICKHOUSE_DSN": "chdb://" + sys.argv[1]})).query("SELECT 1")
print("open", flush=True)
time.sleep(60)
"""


@pytest.fixture
def query_settings(pipeline_settings: Settings, clickhouse_dsn: str, clickhouse_database: str) -> Settings:
    return pipeline_settings.with_overrides(clickhouse_dsn=clickhouse_dsn, clickhouse_database=clickhouse_database)


@pytest.fixture
async def client(query_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(query_settings, TOKEN))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        yield http


def test_run_query_returns_columns_and_rows(query_settings: Settings) -> None:
    result = run_query(query_settings, "SELECT 1 AS one, 'a' AS letter")

    assert result.columns == ["one", "letter"]
    assert result.rows == [[1, "a"]]


def test_run_query_defaults_to_configured_database(query_settings: Settings) -> None:
    result = run_query(query_settings, "SELECT currentDatabase()")

    assert result.rows == [[query_settings.clickhouse_database]]


def test_run_query_reports_bad_sql(query_settings: Settings) -> None:
    with pytest.raises(QueryError):
        run_query(query_settings, "SELEC nothing")


async def test_endpoint_rejects_missing_token(client: httpx.AsyncClient, query_settings: Settings) -> None:
    response = await client.post("/query", json={"sql": "SELECT 1"})

    assert response.status_code == 401


async def test_endpoint_rejects_wrong_token(client: httpx.AsyncClient, query_settings: Settings) -> None:
    response = await client.post("/query", json={"sql": "SELECT 1"}, headers={"Authorization": "Bearer wrong"})

    assert response.status_code == 401


async def test_endpoint_rejects_writes(client: httpx.AsyncClient, query_settings: Settings) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}

    dropped = await client.post("/query", json={"sql": f"DROP DATABASE {query_settings.clickhouse_database}"},
                          headers=headers)
    hidden = await client.post("/query", json={"sql": f"SELECT 1; DROP DATABASE {query_settings.clickhouse_database}"},
                         headers=headers)

    assert dropped.status_code == 403
    assert hidden.status_code == 403
    remaining = run_query(query_settings, "SELECT count() FROM system.databases WHERE name = "
                                          f"'{query_settings.clickhouse_database}'")
    assert remaining.rows == [[1]]


async def test_endpoint_serves_read_query(client: httpx.AsyncClient, query_settings: Settings) -> None:
    response = await client.post("/query", json={"sql": "SELECT toDate('2025-12-03') AS day, 2 AS n"},
                           headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 200
    assert response.json() == {"columns": ["day", "n"], "rows": [["2025-12-03", 2]]}


async def test_endpoint_rejects_malformed_body(client: httpx.AsyncClient, query_settings: Settings) -> None:
    response = await client.post("/query", content=b"SELECT 1", headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 400


def test_format_result_table_csv_json() -> None:
    result = QueryResult(["room_wxid", "messages"], [["1@chatroom", 3], ["2@chatroom", 10]])

    table = format_result(result, "table").splitlines()
    csv_text = format_result(result, "csv")
    json_text = format_result(result, "json")

    assert table[0] == "room_wxid  | messages"
    assert table[2] == "1@chatroom | 3       "
    assert table[-1] == "(2 rows)"
    assert csv_text == "room_wxid,messages\n1@chatroom,3\n2@chatroom,10"
    assert '"room_wxid": "2@chatroom"' in json_text


def test_run_query_fills_parameters_on_the_server(query_settings: Settings) -> None:
    result = run_query(query_settings, "SELECT {bot:String} AS bot, {n:UInt32} + 1 AS next",
                       parameters={"bot": "wxid_a'; DROP TABLE x", "n": 41})

    assert result.rows == [["wxid_a'; DROP TABLE x", 42]]


async def test_endpoint_passes_parameters(client: httpx.AsyncClient) -> None:
    response = await client.post("/query", json={"sql": "SELECT {bots:Array(String)} AS bots",
                                                  "parameters": {"bots": ["wxid_a", "wxid_b"]}},
                                 headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 200
    assert response.json() == {"columns": ["bots"], "rows": [[["wxid_a", "wxid_b"]]]}


async def test_endpoint_rejects_parameters_that_are_not_an_object(client: httpx.AsyncClient) -> None:
    response = await client.post("/query", json={"sql": "SELECT 1", "parameters": ["x"]},
                                 headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 400
    assert "parameters" in response.json()["error"]


def test_format_result_table_aligns_wide_characters() -> None:
    result = QueryResult(["room_name", "n"], [["入群🙏", 1], ["abc", 22]])

    table = format_result(result, "table").splitlines()

    assert table[0] == "room_name | n "
    assert table[2] == "入群🙏    | 1 "
    assert table[3] == "abc       | 22"


def test_format_result_json_marks_datetimes_as_utc() -> None:
    naive = dt.datetime(2026, 12, 4, 20, 42, 46, 546000)
    aware = dt.datetime(2026, 12, 4, 20, 42, 46, tzinfo=dt.UTC)
    result = QueryResult(["naive", "aware", "day"], [[naive, aware, dt.date(2026, 12, 4)]])

    objects = orjson.loads(format_result(result, "json"))

    assert objects[0]["naive"] == "2026-12-04T20:42:46.546000Z"
    assert objects[0]["aware"] == "2026-12-04T20:42:46Z"
    assert objects[0]["day"] == "2026-12-04"


async def test_endpoint_returns_datetimes_as_utc(client: httpx.AsyncClient) -> None:
    sql = "SELECT toDateTime64('2026-12-04 20:42:46.546', 3, 'UTC') AS t"

    response = await client.post("/query", json={"sql": sql}, headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 200
    assert response.json()["rows"] == [["2026-12-04T20:42:46.546000Z"]]


async def test_endpoint_passes_syntax_error_of_clickhouse(client: httpx.AsyncClient) -> None:
    response = await client.post("/query", json={"sql": "SELEC 1"}, headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 400
    assert "Syntax error" in response.json()["error"]
    assert "only one read query" not in response.json()["error"]


async def test_endpoint_hides_readonly_setting_in_errors(client: httpx.AsyncClient) -> None:
    response = await client.post("/query", json={"sql": "SELECT * FROM nosuch"},
                                 headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 400
    assert "nosuch" in response.json()["error"]
    assert "readonly" not in response.json()["error"]


async def test_endpoint_rejects_write_statements(client: httpx.AsyncClient) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}

    for sql in ("INSERT INTO t VALUES (1)", "create table t (x UInt8) ENGINE = Memory", "SET readonly = 0",
                "SYSTEM DROP DNS CACHE", "SELECT 1; SELECT 2"):
        response = await client.post("/query", json={"sql": sql}, headers=headers)

        assert response.status_code == 403, sql
        assert "only one read query" in response.json()["error"], sql


def test_sql_names_other_process_holding_embedded_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "clickhouse"
    settings = settings_module.load({"WEHUB_CLICKHOUSE_DSN": f"chdb://{folder}", "WEHUB_LOCALE": "en",
                                     "WEHUB_DATA_DIR": str(tmp_path / "data")})
    with subprocess.Popen([sys.executable, "-c", HOLD_FOLDER, str(folder)], stdout=subprocess.PIPE,
                          text=True) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "open"

            status = cli_module._sql(argparse.Namespace(settings=settings, query="SELECT 1", format="table"))
        finally:
            holder.kill()

    stderr = capsys.readouterr().err
    assert status == 1
    assert "is open in another process" in stderr
    assert str(folder) in stderr
    assert "code 36" not in stderr


async def test_endpoint_readonly_rejects_hidden_write(client: httpx.AsyncClient, query_settings: Settings) -> None:
    database = query_settings.clickhouse_database
    run_query(query_settings, f"CREATE TABLE IF NOT EXISTS {database}.kept (x UInt8) ENGINE = Memory")

    response = await client.post("/query", json={"sql": f"/* comment */ DROP TABLE {database}.kept"},
                                 headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 400
    assert "readonly" in response.json()["error"]
    remaining = run_query(query_settings, f"EXISTS TABLE {database}.kept")
    assert remaining.rows == [[1]]
