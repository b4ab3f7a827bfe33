"""`run_query`, the query endpoint of a running consumer process, and `wehub sql` output."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from consumers.cli import format_result
from consumers.query import QueryError, QueryResult, make_app, run_query
from wehub.settings import Settings

TOKEN = "test-token-0123456789"


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
