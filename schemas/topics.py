"""Topic names and which schema each action's records use.

Every topic is `<prefix>.<suffix>`, the prefix being WEHUB_TOPIC_PREFIX (default `wehub`).
"""

from __future__ import annotations

# Actions of the WeHub protocol that the gateway types, with the schema of their events.
EVENT_SCHEMAS: dict[str, str] = {
    "login": "wehub.event.LoginEvent",
    "logout": "wehub.event.LogoutEvent",
    "pull_task": "wehub.event.PullTaskEvent",
    "report_contact": "wehub.event.ReportContactEvent",
    "report_contact_update": "wehub.event.ReportContactUpdateEvent",
    "report_new_friend": "wehub.event.ReportNewFriendEvent",
    "report_new_msg": "wehub.event.ReportNewMsgEvent",
    "report_task_result": "wehub.event.ReportTaskResultEvent",
    "report_room_member_info": "wehub.event.ReportRoomMemberInfoEvent",
    "report_room_member_change": "wehub.event.ReportRoomMemberChangeEvent",
    "report_friend_add_request": "wehub.event.ReportFriendAddRequestEvent",
    "report_new_room": "wehub.event.ReportNewRoomEvent",
    "report_friend_removed": "wehub.event.ReportFriendRemovedEvent",
    "report_zoom_check_status": "wehub.event.ReportZoomCheckStatusEvent",
}

# Schemas of the records an oversized event is split into; they go to the action's own topic.
PART_SCHEMAS: dict[str, str] = {
    "report_contact": "wehub.event.ReportContactPartEvent",
    "report_room_member_info": "wehub.event.ReportRoomMemberInfoPartEvent",
}

UNKNOWN_ACTION = "unknown_action"
DEAD_LETTER = "dead_letter"
TASKS = "tasks"
TASK_STATUS = "task_status"
MEDIA_STORED = "media_stored"

UNKNOWN_ACTION_SCHEMA = "wehub.event.UnknownActionEvent"
DEAD_LETTER_SCHEMA = "wehub.event.DeadLetter"
TASK_SCHEMA = "wehub.task.Task"
TASK_STATUS_SCHEMA = "wehub.task.TaskStatus"
MEDIA_STORED_SCHEMA = "wehub.event.MediaStored"

# Topics whose records are keyed by something other than the bot's wxid.
COMPACTED = (TASKS,)


def topic_name(prefix: str, suffix: str) -> str:
    return f"{prefix}.{suffix}"


def all_topic_suffixes() -> list[str]:
    """List the suffix of every topic the pipeline creates: one per typed action, then the shared ones."""
    return [*EVENT_SCHEMAS, UNKNOWN_ACTION, DEAD_LETTER, TASKS, TASK_STATUS, MEDIA_STORED]
