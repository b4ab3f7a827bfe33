"""`wehub consume all` runs every consumer that writes ClickHouse."""

from __future__ import annotations

from consumers import registry
from consumers.runner import Intake, Runner, event_intake
from schemas import topics
from wehub.settings import Settings


def test_all_includes_the_tasks_and_media_consumers() -> None:
    assert {"messages", "contacts", "rooms", "sessions", "tasks", "media"} <= set(registry.names())


def test_every_registered_consumer_builds_a_runner(pipeline_settings: Settings) -> None:
    for name in registry.names():
        runner = Runner(pipeline_settings, registry.factory(name)(pipeline_settings))

        assert runner.name == name


def test_task_topic_takes_tombstones_and_status_topic_takes_claims(pipeline_settings: Settings) -> None:
    processor = registry.factory("tasks")(pipeline_settings)
    intake = processor.intake  # type: ignore[attr-defined]

    assert intake(topics.TASKS) == Intake(frozenset({topics.TASK_SCHEMA}), envelope=False, tombstones=True)
    assert "wehub.task.TaskClaim" in intake(topics.TASK_STATUS).schemas


def test_gateway_topics_take_their_event_and_part_schemas() -> None:
    assert event_intake("report_contact").schemas == {topics.EVENT_SCHEMAS["report_contact"],
                                                      topics.PART_SCHEMAS["report_contact"]}
    assert event_intake("report_new_msg") == Intake(frozenset({topics.EVENT_SCHEMAS["report_new_msg"]}))
