"""The tasks consumer: the life of every task (submitted → dispatched → succeeded, failed or
expired) into the ClickHouse table `task_events_store`, read through the view `tasks`.

It reads the compacted task topic (each task record is a `submitted` row) and the task status
topic (dispatched, succeeded, failed, expired). Tombstones and the gateways' claim records
carry nothing for analysts and are skipped.

The shared runner decodes only gateway events (one schema per action topic, with an event id),
so this consumer runs the same chain through `TasksRunner`, which decodes task records instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from clickhouse_connect.driver.client import Client

from consumers.clickhouse import Rows
from consumers.messages import to_datetime
from consumers.runner import Event, Poison, Runner, millis
from schemas import topics
from schemas.codec import CODEC, CodecError
from wehub.settings import Settings

CLAIM_SCHEMA = "wehub.task.TaskClaim"
SKIPPED = "skipped"
COLUMNS = ("appid", "bot_wxid", "task_id", "task_type", "status", "at", "created_at", "gateway", "source",
           "error_reason")
_EXPECTED = {
    topics.TASKS: {topics.TASK_SCHEMA},
    topics.TASK_STATUS: {topics.TASK_STATUS_SCHEMA, CLAIM_SCHEMA},
}


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
    # The runner this processor needs; the plain Runner rejects task records as poison.
    runner_class: ClassVar[type[Runner]]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def topic_suffixes(self) -> Sequence[str]:
        return (topics.TASKS, topics.TASK_STATUS)

    def validate(self, action: str, schema_name: str, record: dict[str, Any]) -> None:
        if schema_name == SKIPPED:
            return
        for name in ("task_id", "appid", "bot_wxid"):
            if not record.get(name):
                raise Poison("invalid_record", f"field {name} is empty: expected a non-empty string")

    def process(self, client: Client, events: list[Event]) -> list[Rows]:
        rows: list[Sequence[Any]] = [
            task_row(event.schema_name, event.record) for event in events if event.schema_name != SKIPPED
        ]
        return [Rows("task_events_store", COLUMNS, rows)]

    def reset(self) -> None:
        return None


class TasksRunner(Runner):
    """The consumer chain of `consumers.runner` with the decoding of task and status records."""

    def _decode(self, action: str, message: Any) -> Event:
        if message.value is None:
            return Event(message.topic, message.partition, message.offset, SKIPPED, {})
        try:
            schema_name, record = CODEC.decode(message.value)
        except CodecError as error:
            raise Poison("undecodable", str(error)) from None
        expected = _EXPECTED.get(action, set())
        if schema_name not in expected:
            raise Poison("unexpected_schema", f"schema {schema_name} on topic {message.topic}: "
                         f"expected {' or '.join(sorted(expected))}")
        if schema_name == CLAIM_SCHEMA:
            return Event(message.topic, message.partition, message.offset, SKIPPED, {})
        self.processor.validate(action, schema_name, record)
        return Event(message.topic, message.partition, message.offset, schema_name, record)


TasksProcessor.runner_class = TasksRunner


def make_runner(settings: Settings, client: Client | None = None) -> TasksRunner:
    """Build the tasks consumer, ready to `run()` as its own consumer group like the others.

    NOTE: not in consumers.registry yet. `wehub consume` builds a plain Runner for every
    processor, so it must build `processor.runner_class` first; until then `wehub task consume`
    runs this consumer alone.
    """
    return TasksRunner(settings, TasksProcessor(settings), client)
