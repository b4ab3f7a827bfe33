"""Validation of WeHub tasks, shared by `wehub task send`, `POST /api/tasks` and the consumers.

Every task type of the protocol (1-15, 100, 101) is checked field by field. A refusal is a
TaskInvalid carrying a message code of CATALOG, the field path (`task_dict.msg_list[0].msg`)
and what was expected, so each caller renders it in the operator's language.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from wehub.i18n import Catalog

AT_PLACEHOLDER = "{$@}"
SEND_MESSAGES = 1
ACCEPT_FRIEND_REQUEST = 13

CATALOG = Catalog({
    "not_an_object": {
        "en": "field {field}: expected a JSON object",
        "zh-CN": "字段 {field}：应为 JSON 对象",
    },
    "missing_field": {
        "en": "field {field} is missing: expected {expected}",
        "zh-CN": "缺少字段 {field}：应为{expected}",
    },
    "invalid_field": {
        "en": "field {field}: {value} is invalid, expected {expected}",
        "zh-CN": "字段 {field} 的值 {value} 无效：应为{expected}",
    },
    "unknown_field": {
        "en": "field {field} is not part of task_type {task_type}: expected only {expected}",
        "zh-CN": "字段 {field} 不属于 task_type {task_type}：只允许 {expected}",
    },
    "unknown_task_type": {
        "en": "field task_type: {value} is not a task type of the protocol, expected one of {expected}",
        "zh-CN": "字段 task_type 的值 {value} 不是协议中的任务类型：应为 {expected} 之一",
    },
    "at_count_mismatch": {
        "en": "field task_dict.at_list: has {at_count} entries but the texts contain {placeholders} "
              "{{$@}} placeholders, expected the same number when at_style is 1",
        "zh-CN": "字段 task_dict.at_list 有 {at_count} 项，但文本中有 {placeholders} 个 {{$@}} 占位符："
                 "at_style 为 1 时两者应相等",
    },
    "send_to_own_bot": {
        "en": "field task_dict.wxid_to: {value} is the bot's own wxid, expected another chat "
              "(a bot that answers itself loops)",
        "zh-CN": "字段 task_dict.wxid_to 的值 {value} 是机器人自己的 wxid：应为其他会话（机器人回复自己会形成循环）",
    },
    "unknown_appid": {
        "en": "field appid: {value} is not configured in the accounts file, expected one of {expected}",
        "zh-CN": "字段 appid 的值 {value} 未在账号文件中配置：应为 {expected} 之一",
    },
    "appid_required": {
        "en": "field appid is missing: the accounts file has {count} apps, name one with appid (--appid)",
        "zh-CN": "缺少字段 appid：账号文件中有 {count} 个 app，请用 appid（--appid）指定其一",
    },
    "bot_not_whitelisted": {
        "en": "field bot_wxid: {value} is not on the whitelist of appid {appid}, expected a wxid of its wxids",
        "zh-CN": "字段 bot_wxid 的值 {value} 不在 appid {appid} 的白名单中：应为其 wxids 之一",
    },
    "not_json": {
        "en": "field {field}: not valid JSON ({detail}), expected a task object or an array of them",
        "zh-CN": "字段 {field}：不是合法的 JSON（{detail}）：应为任务对象或任务对象数组",
    },
    "body_too_large": {
        "en": "the body has {size} bytes, more than the limit of {limit} bytes: submit fewer tasks at once",
        "zh-CN": "请求体有 {size} 字节，超过上限 {limit} 字节：请分批提交任务",
    },
    "too_many_tasks": {
        "en": "field {field}: {value} tasks in one request, expected at most {limit}",
        "zh-CN": "字段 {field}：一次请求包含 {value} 个任务，最多允许 {limit} 个",
    },
    "expires_before_start": {
        "en": "field expires_at: {value} is not after not_before {not_before}, expected a later time",
        "zh-CN": "字段 expires_at 的值 {value} 不晚于 not_before {not_before}：应为更晚的时间",
    },
})

# Expected-value descriptions, by kind, for both languages.
_EXPECTED = {
    "text": {"en": "a non-empty string", "zh-CN": "非空字符串"},
    "any_text": {"en": "a string (may be empty)", "zh-CN": "字符串（可为空）"},
    "text_list": {"en": "an array of non-empty strings", "zh-CN": "由非空字符串组成的数组"},
    "nonempty_text_list": {"en": "a non-empty array of non-empty strings", "zh-CN": "由非空字符串组成的非空数组"},
    "at_style": {"en": "0 or 1", "zh-CN": "0 或 1"},
    "op_code": {"en": "1 (add), 2 (remove) or 3 (delete tag)", "zh-CN": "1（添加）、2（移除）或 3（删除标签）"},
    "msg_list": {"en": "a non-empty array of message objects", "zh-CN": "由消息对象组成的非空数组"},
    "msg_type": {"en": "one of 1, 3, 42, 43, 47, 49", "zh-CN": "1、3、42、43、47、49 之一"},
    "timestamp": {"en": "milliseconds since 1970 as an integer", "zh-CN": "自 1970 年起的毫秒数（整数）"},
    "task_type": {"en": "an integer", "zh-CN": "整数"},
}


class TaskInvalid(ValueError):
    """A task refused before it reaches Kafka; `field` is the path of the offending field."""

    def __init__(self, code: str, field: str, **params: Any) -> None:
        super().__init__(f"{code}: {field}")
        self.code = code
        self.field = field
        self.params = params

    def render(self, locale: str) -> str:
        params = dict(self.params)
        expected = params.get("expected")
        if isinstance(expected, str) and expected in _EXPECTED:
            params["expected"] = _EXPECTED[expected].get(locale, _EXPECTED[expected]["en"])
        return CATALOG.render(self.code, locale, field=self.field, **params)


def _show(value: Any) -> str:
    """Render a bad value in at most 40 characters, so a message text never appears whole."""
    text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _text(value: Any, field: str, allow_empty: bool = False) -> None:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise TaskInvalid("invalid_field", field, value=_show(value), expected="any_text" if allow_empty else "text")


def _text_list(value: Any, field: str, allow_empty: bool = True) -> None:
    expected = "text_list" if allow_empty else "nonempty_text_list"
    if not isinstance(value, list) or (not value and not allow_empty):
        raise TaskInvalid("invalid_field", field, value=_show(value), expected=expected)
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise TaskInvalid("invalid_field", f"{field}[{index}]", value=_show(item), expected="text")


def _choice(value: Any, field: str, choices: tuple[int, ...], expected: str) -> None:
    # bool is an int in Python but never a valid protocol number.
    if isinstance(value, bool) or not isinstance(value, int) or value not in choices:
        raise TaskInvalid("invalid_field", field, value=_show(value), expected=expected)


Check = Callable[[Any, str], None]


def _any_text(value: Any, field: str) -> None:
    _text(value, field, allow_empty=True)


def _nonempty_list(value: Any, field: str) -> None:
    _text_list(value, field, allow_empty=False)


# push_msgunit fields by msg_type: (field, check, required).
_PUSH_UNITS: dict[int, tuple[tuple[str, Check, bool], ...]] = {
    1: (("msg", _text, True),),
    3: (("msg", _text, True),),
    47: (("msg", _text, True),),
    49: (("link_url", _text, True), ("link_title", _any_text, False), ("link_desc", _any_text, False),
         ("link_img_url", _any_text, False)),
    43: (("video_url", _text, True),),
    42: (("wxid_card", _text, True),),
}


def _msg_list(value: Any, field: str) -> None:
    if not isinstance(value, list) or not value:
        raise TaskInvalid("invalid_field", field, value=_show(value), expected="msg_list")
    for index, unit in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(unit, dict):
            raise TaskInvalid("not_an_object", where)
        msg_type = unit.get("msg_type")
        if msg_type is None:
            raise TaskInvalid("missing_field", f"{where}.msg_type", expected="msg_type")
        _choice(msg_type, f"{where}.msg_type", tuple(_PUSH_UNITS), "msg_type")
        fields = _PUSH_UNITS[msg_type]
        _check_fields(unit, fields, where, msg_type_of=f"msg_type {msg_type}", extra_allowed=("msg_type",))


def _at_style(value: Any, field: str) -> None:
    _choice(value, field, (0, 1), "at_style")


def _op_code(value: Any, field: str) -> None:
    _choice(value, field, (1, 2, 3), "op_code")


# task_dict fields by task_type: (field, check, required).
_TASK_FIELDS: dict[int, tuple[tuple[str, Check, bool], ...]] = {
    1: (("wxid_to", _text, True), ("at_list", _text_list, False), ("msg_list", _msg_list, True),
        ("at_style", _at_style, False)),
    2: (("room_wxid", _any_text, True), ("wxid", _text, True)),
    3: (("room_wxid", _text, True), ("wxid", _text, True)),
    4: (("room_wxid_list", _nonempty_list, True),),
    5: (("room_wxid", _any_text, True), ("wxid", _text, True), ("msg", _any_text, True)),
    6: (("wxid", _text, True), ("remark_name", _any_text, True)),
    7: (("room_wxid", _text, True), ("room_nickname", _any_text, True)),
    8: (("room_wxid", _text, True),),
    9: (("file_index", _text, True),),
    10: (("room_wxid", _text, True), ("msg", _text, True)),
    11: (("wxid_from", _text, True), ("transferid", _text, True)),
    12: (("wxid_delete", _text, True),),
    13: (("v1", _text, True), ("v2", _text, True)),
    14: (),
    15: (("wxid", _text, True),),
    100: (("tag_name", _text, True), ("wxid_list", _text_list, True), ("op_code", _op_code, True)),
    101: (("old_tag_name", _text, True), ("new_tag_name", _text, True)),
}

TASK_TYPES: tuple[int, ...] = tuple(_TASK_FIELDS)


def _check_fields(
    document: Mapping[str, Any],
    fields: tuple[tuple[str, Check, bool], ...],
    where: str,
    msg_type_of: str,
    extra_allowed: tuple[str, ...] = (),
) -> None:
    known = {entry[0] for entry in fields} | set(extra_allowed)
    for name, check, required in fields:
        path = f"{where}.{name}"
        if name not in document:
            if required:
                raise TaskInvalid("missing_field", path, expected=_expected_of(check))
            continue
        check(document[name], path)
    for name in document:
        if name not in known:
            raise TaskInvalid("unknown_field", f"{where}.{name}", task_type=msg_type_of,
                              expected=", ".join(sorted(known)) or "{}")


def _expected_of(check: Check) -> str:
    expected: dict[Check, str] = {
        _text: "text", _any_text: "any_text", _text_list: "text_list", _nonempty_list: "nonempty_text_list",
        _msg_list: "msg_list", _at_style: "at_style", _op_code: "op_code",
    }
    return expected.get(check, "text")


def validate_task(task_type: Any, task_dict: Any, bot_wxid: str) -> None:
    """Check one task against the protocol; raises TaskInvalid naming the first bad field.

    Besides the fields, it enforces the at_style rule (with at_style 1 the number of `{$@}`
    in the texts equals the length of at_list) and the loop guard: a send task (type 1) to
    the bot's own wxid is refused.
    """
    if isinstance(task_type, bool) or not isinstance(task_type, int):
        raise TaskInvalid("invalid_field", "task_type", value=_show(task_type), expected="task_type")
    if task_type not in _TASK_FIELDS:
        raise TaskInvalid("unknown_task_type", "task_type", value=_show(task_type),
                          expected=", ".join(str(number) for number in TASK_TYPES))
    if not isinstance(task_dict, dict):
        raise TaskInvalid("not_an_object", "task_dict")
    _check_fields(task_dict, _TASK_FIELDS[task_type], "task_dict", msg_type_of=str(task_type))
    if task_type == SEND_MESSAGES:
        _check_send(task_dict, bot_wxid)


def _check_send(task_dict: Mapping[str, Any], bot_wxid: str) -> None:
    if task_dict["wxid_to"] == bot_wxid:
        raise TaskInvalid("send_to_own_bot", "task_dict.wxid_to", value=_show(bot_wxid))
    if task_dict.get("at_style", 0) != 1:
        return
    placeholders = sum(
        unit["msg"].count(AT_PLACEHOLDER) for unit in task_dict["msg_list"] if unit["msg_type"] == 1
    )
    at_count = len(task_dict.get("at_list", []))
    if placeholders != at_count:
        raise TaskInvalid("at_count_mismatch", "task_dict.at_list", at_count=at_count, placeholders=placeholders)


@dataclass(frozen=True)
class Submission:
    """A validated task ready to be produced to the task topic."""

    task_id: str
    appid: str
    bot_wxid: str
    task_type: int
    task_dict: dict[str, Any]
    not_before: int | None
    expires_at: int | None

    def record(self, created_at: int, source: str) -> dict[str, Any]:
        """Build the wehub.task.Task record of this submission."""
        return {
            "task_id": self.task_id,
            "appid": self.appid,
            "bot_wxid": self.bot_wxid,
            "task_type": self.task_type,
            "task_dict": orjson.dumps(self.task_dict).decode(),
            "created_at": created_at,
            "not_before": self.not_before,
            "expires_at": self.expires_at,
            "source": source,
        }


_SUBMISSION_FIELDS = ("task_id", "appid", "bot_wxid", "wxid", "task_type", "task_dict", "not_before", "expires_at")


def new_task_id(created_at: int, index: int = 0) -> str:
    """Make a unique task_id that sorts by creation time, then by position in a batch."""
    return f"{created_at:013d}-{index:05d}-{uuid.uuid4().hex[:12]}"


def _timestamp(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TaskInvalid("invalid_field", field, value=_show(value), expected="timestamp")
    return value


def parse_submission(
    document: Any, default_appid: str | None, created_at: int | None = None, index: int = 0,
) -> Submission:
    """Validate a submitted task object; raises TaskInvalid naming the field.

    The object contains bot_wxid (or wxid), task_type, task_dict and optionally task_id, appid,
    not_before and expires_at (milliseconds since 1970). `default_appid` fills a missing appid.
    """
    if not isinstance(document, dict):
        raise TaskInvalid("not_an_object", "task")
    for name in document:
        if name not in _SUBMISSION_FIELDS:
            raise TaskInvalid("unknown_field", name, task_type="task", expected=", ".join(_SUBMISSION_FIELDS))

    appid = document.get("appid", default_appid)
    if appid is None:
        raise TaskInvalid("missing_field", "appid", expected="text")
    _text(appid, "appid")
    bot_wxid = document.get("bot_wxid", document.get("wxid"))
    if bot_wxid is None:
        raise TaskInvalid("missing_field", "bot_wxid", expected="text")
    _text(bot_wxid, "bot_wxid")
    if "task_type" not in document:
        raise TaskInvalid("missing_field", "task_type", expected="task_type")
    if "task_dict" not in document:
        raise TaskInvalid("missing_field", "task_dict", expected="text")
    validate_task(document["task_type"], document["task_dict"], bot_wxid)

    not_before = _timestamp(document.get("not_before"), "not_before")
    expires_at = _timestamp(document.get("expires_at"), "expires_at")
    if not_before is not None and expires_at is not None and expires_at <= not_before:
        raise TaskInvalid("expires_before_start", "expires_at", value=expires_at, not_before=not_before)

    task_id = document.get("task_id")
    if task_id is None:
        task_id = new_task_id(created_at if created_at is not None else now_ms(), index)
    _text(task_id, "task_id")
    return Submission(task_id, appid, bot_wxid, document["task_type"], document["task_dict"], not_before, expires_at)


def check_account(submission: Submission, apps: Mapping[str, frozenset[str]]) -> None:
    """Refuse a task for an appid that is not configured or a bot not on its whitelist.

    `apps` maps each appid of the accounts file to its whitelisted wxids.
    """
    wxids = apps.get(submission.appid)
    if wxids is None:
        raise TaskInvalid("unknown_appid", "appid", value=_show(submission.appid),
                          expected=", ".join(sorted(apps)) or "-")
    if submission.bot_wxid not in wxids:
        raise TaskInvalid("bot_not_whitelisted", "bot_wxid", value=_show(submission.bot_wxid),
                          appid=submission.appid)


def default_appid(apps: Mapping[str, Collection[str]], document: Any) -> str | None:
    """Return the appid of a task that names none: the only app, else the only one whitelisting its bot_wxid."""
    if len(apps) == 1:
        return next(iter(apps))
    bot_wxid = document.get("bot_wxid") if isinstance(document, dict) else None
    owners = [appid for appid, wxids in apps.items() if bot_wxid in wxids]
    return owners[0] if len(owners) == 1 else None


def now_ms() -> int:
    return time.time_ns() // 1_000_000
