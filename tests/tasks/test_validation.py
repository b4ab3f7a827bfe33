"""Validation of every task type before it reaches Kafka (no services needed)."""

from __future__ import annotations

from typing import Any

import pytest

from wehub.task_validation import (
    TASK_TYPES,
    TaskInvalid,
    check_account,
    default_appid,
    parse_submission,
    validate_task,
)

BOT = "wxid_bot"

VALID: dict[int, dict[str, Any]] = {
    1: {"wxid_to": "room@chatroom", "at_list": ["wxid_a", "wxid_b"], "at_style": 1,
        "msg_list": [{"msg_type": 1, "msg": "{$@} and {$@}: hello"}, {"msg_type": 3, "msg": "https://x/i.jpg"},
                     {"msg_type": 47, "msg": "https://x/a.gif"},
                     {"msg_type": 49, "link_url": "https://x", "link_title": "t", "link_desc": "", "link_img_url": ""},
                     {"msg_type": 43, "video_url": "https://x/v.mp4"}, {"msg_type": 42, "wxid_card": "wxid_c"}]},
    2: {"room_wxid": "", "wxid": "wxid_a"},
    3: {"room_wxid": "room@chatroom", "wxid": "wxid_a"},
    4: {"room_wxid_list": ["room@chatroom"]},
    5: {"room_wxid": "", "wxid": "wxid_a", "msg": "hi"},
    6: {"wxid": "wxid_a", "remark_name": "Alice"},
    7: {"room_wxid": "room@chatroom", "room_nickname": "bot"},
    8: {"room_wxid": "room@chatroom"},
    9: {"file_index": "f-123"},
    10: {"room_wxid": "room@chatroom", "msg": "notice"},
    11: {"wxid_from": "wxid_a", "transferid": "1000"},
    12: {"wxid_delete": "wxid_a"},
    13: {"v1": "v1-value", "v2": "v2-value"},
    14: {},
    15: {"wxid": "wxid_a"},
    100: {"tag_name": "vip", "wxid_list": ["wxid_a"], "op_code": 1},
    101: {"old_tag_name": "vip", "new_tag_name": "gold"},
}

OPTIONAL = {"at_list", "at_style"}


def refusal(task_type: Any, task_dict: Any) -> TaskInvalid:
    with pytest.raises(TaskInvalid) as caught:
        validate_task(task_type, task_dict, BOT)
    return caught.value


def test_every_protocol_task_type_has_a_valid_example() -> None:
    assert sorted(VALID) == sorted(TASK_TYPES)


@pytest.mark.parametrize("task_type", sorted(VALID))
def test_valid_task_passes(task_type: int) -> None:
    validate_task(task_type, VALID[task_type], BOT)


@pytest.mark.parametrize("task_type", sorted(task for task in VALID if VALID[task]))
def test_each_missing_field_is_named(task_type: int) -> None:
    for name in VALID[task_type]:
        if name in OPTIONAL:
            continue
        task_dict = {key: value for key, value in VALID[task_type].items() if key != name}
        error = refusal(task_type, task_dict)
        assert error.code == "missing_field"
        assert error.field == f"task_dict.{name}"


def test_at_list_and_at_style_are_optional() -> None:
    validate_task(1, {"wxid_to": "wxid_a", "msg_list": [{"msg_type": 1, "msg": "hi"}]}, BOT)


@pytest.mark.parametrize("task_type", [0, 16, 99, 102, -1])
def test_unknown_task_type_is_refused(task_type: int) -> None:
    error = refusal(task_type, {})
    assert error.code == "unknown_task_type"
    assert error.field == "task_type"


@pytest.mark.parametrize("task_type", ["1", 1.0, True, None])
def test_task_type_of_wrong_kind_is_refused(task_type: Any) -> None:
    assert refusal(task_type, VALID[1]).field == "task_type"


def test_at_style_mismatch_names_at_list() -> None:
    task_dict = {**VALID[1], "at_list": ["wxid_a"]}
    error = refusal(1, task_dict)
    assert error.code == "at_count_mismatch"
    assert error.field == "task_dict.at_list"
    assert "at_list" in error.render("en")
    assert "at_list" in error.render("zh-CN")


def test_at_style_zero_ignores_placeholders() -> None:
    validate_task(1, {**VALID[1], "at_style": 0, "at_list": []}, BOT)


def test_send_to_own_bot_is_refused() -> None:
    error = refusal(1, {**VALID[1], "wxid_to": BOT})
    assert error.code == "send_to_own_bot"
    assert error.field == "task_dict.wxid_to"


@pytest.mark.parametrize(("task_dict", "field"), [
    ({**VALID[1], "msg_list": []}, "task_dict.msg_list"),
    ({**VALID[1], "msg_list": [{"msg_type": 2, "msg": "x"}]}, "task_dict.msg_list[0].msg_type"),
    ({**VALID[1], "msg_list": [{"msg_type": 1}]}, "task_dict.msg_list[0].msg"),
    ({**VALID[1], "msg_list": [{"msg_type": 43, "msg": "x"}]}, "task_dict.msg_list[0].video_url"),
    ({**VALID[1], "msg_list": ["text"]}, "task_dict.msg_list[0]"),
    ({**VALID[1], "at_list": ["wxid_a", 7]}, "task_dict.at_list[1]"),
    ({**VALID[1], "at_style": 2}, "task_dict.at_style"),
    ({**VALID[1], "colour": "red"}, "task_dict.colour"),
])
def test_bad_send_field_is_named(task_dict: dict[str, Any], field: str) -> None:
    assert refusal(1, task_dict).field == field


@pytest.mark.parametrize(("task_type", "task_dict", "field"), [
    (3, {"room_wxid": "", "wxid": "wxid_a"}, "task_dict.room_wxid"),
    (4, {"room_wxid_list": []}, "task_dict.room_wxid_list"),
    (9, {"file_index": 12}, "task_dict.file_index"),
    (13, {"v1": "a", "v2": ""}, "task_dict.v2"),
    (14, {"anything": 1}, "task_dict.anything"),
    (100, {"tag_name": "vip", "wxid_list": ["wxid_a"], "op_code": 4}, "task_dict.op_code"),
    (101, {"old_tag_name": "vip"}, "task_dict.new_tag_name"),
    (6, "not an object", "task_dict"),
])
def test_bad_field_of_other_types_is_named(task_type: int, task_dict: Any, field: str) -> None:
    assert refusal(task_type, task_dict).field == field


def test_submission_takes_default_appid_and_generates_sortable_ids() -> None:
    first = parse_submission({"bot_wxid": BOT, "task_type": 14, "task_dict": {}}, "wh_app", 1_000, 0)
    second = parse_submission({"wxid": BOT, "task_type": 14, "task_dict": {}}, "wh_app", 1_000, 1)
    assert first.appid == "wh_app"
    assert second.bot_wxid == BOT
    assert first.task_id < second.task_id


@pytest.mark.parametrize(("document", "field"), [
    ({"task_type": 14, "task_dict": {}}, "bot_wxid"),
    ({"bot_wxid": BOT, "task_dict": {}}, "task_type"),
    ({"bot_wxid": BOT, "task_type": 14}, "task_dict"),
    ({"bot_wxid": BOT, "task_type": 14, "task_dict": {}, "expires_at": "soon"}, "expires_at"),
    ({"bot_wxid": BOT, "task_type": 14, "task_dict": {}, "not_before": 5, "expires_at": 5}, "expires_at"),
    ({"bot_wxid": BOT, "task_type": 14, "task_dict": {}, "priority": 1}, "priority"),
])
def test_bad_submission_field_is_named(document: dict[str, Any], field: str) -> None:
    with pytest.raises(TaskInvalid) as caught:
        parse_submission(document, "wh_app")
    assert caught.value.field == field


def test_submission_without_appid_needs_one() -> None:
    with pytest.raises(TaskInvalid) as caught:
        parse_submission({"bot_wxid": BOT, "task_type": 14, "task_dict": {}}, None)
    assert caught.value.field == "appid"


def test_account_checks_appid_and_whitelist() -> None:
    submission = parse_submission({"bot_wxid": "wxid_x", "task_type": 14, "task_dict": {}}, "wh_app")
    with pytest.raises(TaskInvalid) as unknown:
        check_account(submission, {"wh_other": frozenset({"wxid_x"})})
    assert unknown.value.field == "appid"
    with pytest.raises(TaskInvalid) as unlisted:
        check_account(submission, {"wh_app": frozenset({BOT})})
    assert unlisted.value.field == "bot_wxid"


def test_default_appid_from_only_app_or_bot() -> None:
    apps = {"app_a": frozenset({"wxid_a1", "wxid_shared"}), "app_b": frozenset({"wxid_b1", "wxid_shared"})}

    assert default_appid({"app_a": frozenset()}, {"bot_wxid": "wxid_anyone"}) == "app_a"
    assert default_appid(apps, {"bot_wxid": "wxid_b1"}) == "app_b"
    assert default_appid(apps, {"bot_wxid": "wxid_shared"}) is None, "two apps list the bot"
    assert default_appid(apps, {"bot_wxid": "wxid_nobody"}) is None
    assert default_appid(apps, ["not", "an", "object"]) is None
