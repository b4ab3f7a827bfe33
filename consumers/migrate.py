"""Versioned DDL of the analytics tables, applied when a consumer starts.

Each file `migrations/NNN_name.sql` is applied once per database and recorded in
`schema_migrations`. The consumers of one process (`wehub consume all`) apply them one after
another, so only the first applies and logs each file. Every statement is `CREATE ... IF NOT
EXISTS`, so several processes starting at once may apply the same file together without harm.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from importlib import resources

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from consumers.clickhouse import check_identifier, translate

log = logging.getLogger(__name__)

_FILE_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_APPLY_LOCK = threading.Lock()


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self, database: str) -> list[str]:
        return [part.replace("{database}", database) for part in split_statements(self.sql)]


def split_statements(sql: str) -> list[str]:
    """Split a script at the semicolons outside quotes, dropping `--` comments."""
    statements: list[str] = []
    current: list[str] = []
    quote = ""
    index = 0
    while index < len(sql):
        char = sql[index]
        if quote:
            current.append(char)
            if char == "\\" and index + 1 < len(sql):
                current.append(sql[index + 1])
                index += 1
            elif char == quote:
                quote = ""
        elif char in "'`\"":
            quote = char
            current.append(char)
        elif sql.startswith("--", index):
            end = sql.find("\n", index)
            index = len(sql) if end < 0 else end
            continue
        elif char == ";":
            statements.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        index += 1
    statements.append("".join(current).strip())
    return [statement for statement in statements if statement]


def available() -> list[Migration]:
    """Every packaged migration, in version order."""
    found = []
    for entry in resources.files("consumers.migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda migration: migration.version)


def apply(client: Client, database: str) -> list[int]:
    """Create `database` and apply the migrations it lacks; returns the versions applied. Blocks.

    Raises StoreError when ClickHouse fails (retriable when it is unreachable).
    """
    check_identifier(database)
    with _APPLY_LOCK:
        return _apply(client, database)


def _apply(client: Client, database: str) -> list[int]:
    try:
        client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        client.command(
            f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
            "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
            "ENGINE = ReplacingMergeTree ORDER BY version"
        )
        done = {int(row[0]) for row in client.query(f"SELECT version FROM {database}.schema_migrations").result_rows}
        applied = []
        for migration in available():
            if migration.version in done:
                continue
            for statement in migration.statements(database):
                client.command(statement)
            client.insert("schema_migrations", [[migration.version, migration.name]],
                          column_names=["version", "name"], database=database)
            applied.append(migration.version)
            log.info("applied migration %03d_%s to %s", migration.version, migration.name, database)
        return applied
    except (ClickHouseError, OSError) as error:
        raise translate(error, "applying migrations") from None

