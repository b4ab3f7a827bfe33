"""Applying the analytics migrations from several consumers of one process."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

from consumers import clickhouse, migrate
from wehub.settings import Settings


@pytest.fixture
def migrate_settings(pipeline_settings: Settings, clickhouse_dsn: str, clickhouse_database: str) -> Settings:
    return pipeline_settings.with_overrides(clickhouse_dsn=clickhouse_dsn, clickhouse_database=clickhouse_database)


def test_concurrent_apply_logs_each_migration_once(migrate_settings: Settings,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    database = str(migrate_settings.clickhouse_database)
    client = clickhouse.make_client(migrate_settings)
    consumers = 6

    with caplog.at_level(logging.INFO, logger="consumers.migrate"), ThreadPoolExecutor(consumers) as pool:
        results = list(pool.map(lambda _: migrate.apply(client, database), range(consumers)))

    versions = [migration.version for migration in migrate.available()]
    applied_lines = [record for record in caplog.records if record.getMessage().startswith("applied migration")]
    assert sorted(version for result in results for version in result) == versions
    assert len(applied_lines) == len(versions)
    assert migrate.apply(client, database) == []
