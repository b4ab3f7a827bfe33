"""The gateway's compiled converters give exactly what schemas.normalize.to_record gives."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from gateway.converters import compile_record
from gateway.events import DATA_SCHEMAS
from schemas.normalize import FieldError, to_record
from tests.gateway.conftest import corpus_bodies

MSG = {"msg_type": 1, "room_wxid": "", "wxid_from": "wxid_a", "wxid_to": "wxid_b", "msg": "hi"}

# (action, data) pairs that stress coercions, aliases, absent values and refusals.
CRAFTED: list[tuple[str, Any]] = [
    ("report_new_msg", {"msg": {**MSG, "msg_type": "49"}}),
    ("report_new_msg", {"msg": {**MSG, "msg_type": " +3 "}}),
    ("report_new_msg", {"msg": {**MSG, "msg_type": 3.0}}),
    ("report_new_msg", {"msg": {**MSG, "msg_type": 3.5}}),
    ("report_new_msg", {"msg": {**MSG, "msg_type": True}}),
    ("report_new_msg", {"msg": {**MSG, "msg_type": 2**40}}),
    ("report_new_msg", {"msg": {**MSG, "msg_type": -5}}),
    ("report_new_msg", {"msg": {**MSG, "msg_type": "-1"}}),
    ("report_new_msg", {"msg": {**MSG, "msg_type": 0}}),
    ("report_new_msg", {"msg": {**MSG, "msg_type": ""}}),
    ("report_new_msg", {"msg": {**MSG, "msg_type": None}}),
    ("report_new_msg", {"msg": {key: value for key, value in MSG.items() if key != "msg_type"}}),
    (
        "report_new_msg",
        {"msg": {**MSG, "file_size": "", "paysubtype": None, "msg_timestamp": "1764800000000"}},
    ),
    ("report_new_msg", {"msg": {**MSG, "msg_timestamp": 2**70}}),
    ("report_new_msg", {"msg": {**MSG, "wxid_from": "wxid_\u0000x"}}),
    ("report_new_msg", {"msg": {**MSG, "msg": "text\u0001with\ncontrol"}}),
    ("report_new_msg", {"msg": {**MSG, "msg": 12}}),
    ("report_new_msg", {"msg": {**MSG, "msg": 1.5}}),
    ("report_new_msg", {"msg": {**MSG, "msg": False}}),
    ("report_new_msg", {"msg": {**MSG, "msg": ["a"]}}),
    ("report_new_msg", {"msg": {**MSG, "atuserlist": ["wxid_c"]}}),
    ("report_new_msg", {"msg": {**MSG, "atUserList": ["x"], "atuserlist": ["y"]}}),
    ("report_new_msg", {"msg": {**MSG, "atUserList": ""}}),
    ("report_new_msg", {"msg": {**MSG, "atUserList": "wxid_c"}}),
    ("report_new_msg", {"msg": {**MSG, "atUserList": [1, None]}}),
    ("report_new_msg", {"msg": {**MSG, "new_field": {"a": [1]}}, "outer": 1}),
    ("report_new_msg", {"msg": "not an object"}),
    ("report_new_msg", {}),
    ("report_contact", {"friend_list": [{"wxid": "w", "sex": "1", "extra_key": None}], "group_list": None}),
    ("report_contact", {"group_list": [{"wxid": "g@chatroom", "member_wxid_list": ["a", 2]}]}),
    ("report_contact", {"friend_list": [{"wxid": "w", "sex": "female"}]}),
    ("report_room_member_info", {"room_data_list": [{"room_wxid": "", "memberinfo_list": []}]}),
    (
        "report_room_member_info",
        {"room_data_list": [{"room_wxid": "r@im.chatroom", "memberinfo_list": [{}]}]},
    ),
    ("report_task_result", {"task_id": "", "task_result": "1"}),
    ("report_task_result", {"task_id": 17, "task_result": "x"}),
    ("login", {"nonce": "n", "client_version": 4.6, "local_ip": None}),
    ("pull_task", {"anything": "kept"}),
]


def _outcome(convert: Any, data: Any) -> Any:
    try:
        return ("record", convert(copy.deepcopy(data)))
    except FieldError as error:
        return ("error", error.path, repr(error.value), error.expected)


def _both(action: str, data: Any) -> tuple[Any, Any]:
    schema = DATA_SCHEMAS[action]
    compiled = compile_record(schema)
    expected = _outcome(lambda value: to_record(schema, value, "data"), data)
    return _outcome(lambda value: compiled(value, "data"), data), expected


@pytest.mark.parametrize(("action", "data"), CRAFTED)
def test_compiled_converter_matches_normalizer_crafted(action: str, data: Any) -> None:
    compiled, expected = _both(action, data)
    assert compiled == expected


def test_compiled_converter_matches_normalizer_corpus(samples_dir: Path) -> None:
    for body in corpus_bodies(samples_dir):
        compiled, expected = _both(body["action"], body["data"])
        assert compiled == expected
        assert compiled[0] == "record"
