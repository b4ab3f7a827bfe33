"""The tasks consumer: the life of every task (submitted → dispatched → succeeded, failed or
expired) into the ClickHouse table `task_events_store`, read through the view `tasks`.

It reads the compacted task topic (each task record is a `submitted` row) and the task status
topic (dispatched, succeeded, failed, expired). Tombstones and the gateways' claim records
carry nothing for analysts and are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clickhouse_connect.driver.client import Client

from consumers.clickhouse import Rows
from consumers.messages import to_datetime
from consumers.runner import Event, Intake, Poison, Runner, millis
from schemas import topics
from wehub.settings import Settings

CLAIM_SCHEMA = "wehub.task.TaskClaim"
COLUMNS = ("appid", "bot_wxid", "task_id", "task_type", "status", "at", "created_at", "gateway", "source",
           "error_reason")
_INTAKES = {
    topics.TASKS: Intake(frozenset({topics.TASK_SCHEMA}), envelope=False, tombstones=True),
    topics.TASK_STATUS: Intake(frozenset({topics.TASK_STATUS_SCHEMA, CLAIM_SCHEMA}), envelope=False),
}
_ROW_SCHEMAS = {topics.TASK_SCHEMA, topics.TASK_STATUS_SCHEMA}


def task_row(schema_name: str, record: dict[str, Any]) -> list[Any]:
    created_at = millis(record["created_at"]) if record.get("created_at") is not None else 0
    if schema_name == topics.TASK_SCHEMA:
        status, at, gateway, source = "submitted", created_at, "", record.get("source") or ""
    else:
        status, at, gateway, source = record["status"], millis(record["at"]), record.get("gateway") or "", ""
    return [
        record["appid"], record["bot_wxid"], record["task_id"], record["task_type"], status, to_datetime(at),
        to_datetime(created_at), gateway, source, record.get("error_reason") or "",
    ]


class TasksProcessor:
    name = "tasks"
    # Each row is independent of the others, so events need no gateway-time order across partitions.
    ordered = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def topic_suffixes(self) -> Sequence[str]:
        return (topics.TASKS, topics.TASK_STATUS)

    def intake(self, suffix: str) -> Intake:
        return _INTAKES[suffix]

    def validate(self, action: str, schema_name: str, record: dict[str, Any]) -> None:
        if schema_name not in _ROW_SCHEMAS:
            return
        for name in ("task_id", "appid", "bot_wxid"):
            if not record.get(name):
                raise Poison("invalid_record", f"field {name} is empty: expected a non-empty string")

    def process(self, client: Client, events: list[Event]) -> list[Rows]:
        rows: list[Sequence[Any]] = [
            task_row(event.schema_name, event.record) for event in events if event.schema_name in _ROW_SCHEMAS
        ]
        return [Rows("task_events_store", COLUMNS, rows)]

    def reset(self) -> None:
        return None


def make_runner(settings: Settings, client: Client | None = None) -> Runner:
    """Build the tasks consumer alone, ready to `run()` as its group `<prefix>.consumer.tasks`."""
    return Runner(settings, TasksProcessor(settings), client)
