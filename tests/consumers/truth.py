"""The figures of the samples' truth.json, read back from the analytics views."""

from __future__ import annotations

from typing import Any

from consumers.query import run_query
from wehub.settings import Settings


def _pairs(settings: Settings, sql: str) -> dict[str, Any]:
    return {str(row[0]): row[1] for row in run_query(settings, sql).rows}


def figures(settings: Settings) -> dict[str, Any]:
    """What truth.json states, computed with plain queries on the analyst views."""
    db = settings.clickhouse_database
    totals = run_query(settings, f"SELECT count(), countIf(chat_kind = 'private'), countIf(direction = 'sent'), "
                                 f"countIf(room_wxid != '') FROM {db}.messages").rows[0]
    member_events = {
        f"{row[0]}|{row[1]}": {"joined": row[2], "left": row[3]}
        for row in run_query(settings, f"SELECT bot_wxid, room_wxid, countIf(change = 'join'), "
                                        f"countIf(change = 'leave') FROM {db}.room_member_events "
                                        f"GROUP BY bot_wxid, room_wxid").rows
    }
    return {
        "messages": {
            "by_type": _pairs(settings, f"SELECT msg_type, count() FROM {db}.messages GROUP BY msg_type"),
            "by_room": _pairs(settings, f"SELECT room_wxid, count() FROM {db}.messages WHERE room_wxid != '' "
                                        f"GROUP BY room_wxid"),
            "total": totals[0],
            "private": totals[1],
            "self_sent": totals[2],
            "room_messages": totals[3],
        },
        "distinct_senders_by_room": _pairs(
            settings, f"SELECT room_wxid, sum(distinct_senders) FROM {db}.room_daily_activity GROUP BY room_wxid"),
        "member_events": member_events,
        "room_members_final": _pairs(
            settings, f"SELECT room_wxid, uniqExact(member_wxid) FROM {db}.room_members GROUP BY room_wxid"),
        "friends_final": _pairs(
            settings, f"SELECT bot_wxid, countIf(kind = 'user' AND is_friend = 1) FROM {db}.contacts "
                      f"GROUP BY bot_wxid"),
        "groups_reported": _pairs(
            settings, f"SELECT bot_wxid, countIf(kind = 'group' AND in_snapshot = 1) FROM {db}.contacts "
                      f"GROUP BY bot_wxid"),
        "public_accounts_reported": _pairs(
            settings, f"SELECT bot_wxid, countIf(kind = 'public' AND in_snapshot = 1) FROM {db}.contacts "
                      f"GROUP BY bot_wxid"),
        "friend_add_requests": run_query(
            settings, f"SELECT count() FROM {db}.friend_events WHERE event_type = 'add_request'").rows[0][0],
        "growth_members_at_end": _pairs(
            settings, f"SELECT room_wxid, argMax(members_at_end, day) FROM {db}.room_daily_growth "
                      f"GROUP BY room_wxid"),
        "sessions": run_query(settings, f"SELECT count() FROM {db}.bot_sessions").rows[0][0],
    }


def expected(truth: dict[str, Any]) -> dict[str, Any]:
    """truth.json reshaped like `figures` (keys as strings, the counted fields only)."""
    messages = truth["messages"]
    return {
        "messages": {
            "by_type": messages["by_type"],
            "by_room": messages["by_room"],
            "total": messages["total"],
            "private": messages["private"],
            "self_sent": messages["self_sent"],
            "room_messages": messages["room_messages"],
        },
        "distinct_senders_by_room": truth["distinct_senders_by_room"],
        "member_events": truth["member_events"],
        "room_members_final": truth["room_members_final"],
        "friends_final": truth["friends_final"],
        "groups_reported": truth["groups_reported"],
        "public_accounts_reported": truth["public_accounts_reported"],
        "friend_add_requests": truth["friend_add_requests"],
        "growth_members_at_end": truth["room_members_final"],
        "sessions": truth["requests_by_action"]["login"] + truth["requests_by_action"]["logout"],
    }
