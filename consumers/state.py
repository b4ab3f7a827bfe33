"""Current-state rows kept in memory per bot, loaded from ClickHouse on first use.

Consumers of current state (contacts, rooms) apply events last-writer-wins on `version`
(the gateway's received_at in ms), so an event older than the row it would change is ignored
and a replayed event leaves the row as it was. The cache is dropped whenever partitions move
or an insert fails, and reloaded from the `*_store` table, which is the truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from consumers.clickhouse import translate

Row = dict[str, Any]


def load_rows(client: Client, database: str, table: str, columns: Sequence[str], *, appid: str,
              bot_wxid: str) -> list[Row]:
    """Load every current row of one bot from `table` (a ReplacingMergeTree read with FINAL). Blocks."""
    query = (f"SELECT {', '.join(columns)} FROM {database}.{table} FINAL "
             "WHERE appid = %(appid)s AND bot_wxid = %(bot_wxid)s")
    try:
        result = client.query(query, parameters={"appid": appid, "bot_wxid": bot_wxid})
    except (ClickHouseError, OSError) as error:
        raise translate(error, f"loading the state of a bot from {table}") from None
    return [dict(zip(columns, values, strict=True)) for values in result.result_rows]


def ordered(rows: dict[Any, Row], columns: Sequence[str]) -> list[Sequence[Any]]:
    return [[row[name] for name in columns] for row in rows.values()]
