"""Where pull_task finds its task and where report_task_result goes: the `TaskSource` seam.

The tasks module provides `gateway.tasks.build_task_source(settings, publisher)`, called once
when the app is created (before it starts). `publisher` is the gateway's
`gateway.publisher.Publisher`, not yet started at that point and started before
`TaskSource.start()`; write records with `await publisher.publish([Record(topic, key, value)])`,
which waits for Kafka's acknowledgement and raises PublishError instead of blocking past
`kafka_timeout_s`. Without that module the gateway hands out no tasks (`NoTasks`).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from starlette.routing import BaseRoute


@runtime_checkable
class TaskSource(Protocol):
    """Tasks for bots. Every method is called from the gateway's event loop and must not block it."""

    async def start(self) -> None:
        """Called once at app startup, after the publisher started."""

    async def stop(self) -> None:
        """Called once at shutdown, before the publisher stops."""

    async def next_task(self, appid: str, bot_wxid: str) -> dict[str, Any] | None:
        """The next task for this bot, `{"task_id": ..., "task_data": {"task_type": N, "task_dict": {...}}}`.

        None when there is nothing to do. The gateway answers pull_task with the dict as `data`.
        """

    async def task_result(
        self, appid: str, bot_wxid: str, task_id: str, task_result: int | None, error_reason: str | None
    ) -> None:
        """Record the outcome of a task handed out earlier; called after the event was published."""

    def routes(self) -> list[BaseRoute]:
        """Extra routes mounted on the gateway app (e.g. POST /api/tasks)."""


class NoTasks:
    """The task source of a gateway without a tasks module: never a task, results only published."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def next_task(self, appid: str, bot_wxid: str) -> dict[str, Any] | None:
        return None

    async def task_result(
        self, appid: str, bot_wxid: str, task_id: str, task_result: int | None, error_reason: str | None
    ) -> None:
        return None

    def routes(self) -> list[BaseRoute]:
        return []
