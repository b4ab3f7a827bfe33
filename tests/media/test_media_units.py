"""Media logic without services: filenames, multipart headers, keys, policy decisions, URL checks."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from consumers.media import MediaPolicy, declared_size, is_local_path, upload_task_id, url_file_index
from consumers.media_fetch import FetchPolicy, is_public
from gateway.upload import check_filename, parse_disposition
from wehub.media_store import object_key
from wehub.settings import Settings


@pytest.mark.parametrize("name", ["a.jpg", "551f92095f58.mp3", "合同 final(2).pdf", "report..v2.xlsx"])
def test_plain_filename_is_accepted(name: str) -> None:
    assert check_filename(name) is None


@pytest.mark.parametrize(
    "name",
    [
        "../a.jpg",
        "a/../../b.jpg",
        "/etc/passwd",
        "..\\a.jpg",
        "C:\\Users\\a.jpg",
        "c:a.jpg",
        "..",
        "a\x00.jpg",
    ],
)
def test_filename_leaving_its_folder_is_rejected(name: str) -> None:
    assert check_filename(name) is not None


def test_disposition_keeps_backslashes_and_reads_unspaced_filename() -> None:
    params = parse_disposition(' name="file";filename="..\\x\\a.jpg"')
    assert params == {"name": "file", "filename": "..\\x\\a.jpg"}


def test_disposition_reads_rfc5987_filename() -> None:
    params = parse_disposition(" name=\"file\"; filename*=UTF-8''%E5%90%88%E5%90%8C.pdf")
    assert params["filename"] == "合同.pdf"


def test_object_key_is_appid_bot_day_and_sha256() -> None:
    key = object_key("wh_app", "wxid_bot", dt.date(2026, 12, 4), "ab" * 32)
    assert key == "wh_app/wxid_bot/2026-12-04/" + "ab" * 32


@pytest.mark.parametrize("wxid", ["", "a/b", "..", "a\nb"])
def test_object_key_rejects_ids_that_are_not_segments(wxid: str) -> None:
    with pytest.raises(ValueError, match="object key segment"):
        object_key("wh_app", wxid, dt.date(2026, 12, 4), "ab" * 32)


def test_upload_task_id_is_stable_per_file() -> None:
    first = upload_task_id("wh_app", "wxid_bot", "idx1")
    assert first == upload_task_id("wh_app", "wxid_bot", "idx1")
    assert first != upload_task_id("wh_app", "wxid_bot", "idx2")
    assert first != upload_task_id("wh_app", "wxid_other", "idx1")


@pytest.mark.parametrize(
    ("file_index", "local"),
    [
        ("C:\\Users\\bot\\a.jpg", True),
        ("D:/WeChat Files/a.dat", True),
        ("\\\\server\\share\\a.jpg", True),
        ("3053020100044c304a0201000204cbd1926bc1ed3646", False),
    ],
)
def test_local_path_is_recognised(file_index: str, local: bool) -> None:
    assert is_local_path(file_index) is local


def _sample_messages(samples_dir: Path) -> list[dict[str, Any]]:
    bodies = [json.loads(line) for line in (samples_dir / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    return [
        line["body"]["data"]["msg"]
        for line in bodies
        if line["kind"] == "http" and line["body"]["action"] == "report_new_msg"
    ]


def test_declared_size_from_raw_msg_and_file_size(samples_dir: Path) -> None:
    sizes = {int(msg["msg_type"]): declared_size(msg) for msg in _sample_messages(samples_dir)}
    assert all(isinstance(sizes[msg_type], int) for msg_type in (3, 34, 4903, 47))
    assert declared_size({"msg_type": 43, "raw_msg": '<msg><videomsg length="4096" playlength="3"/></msg>'}) == 4096
    assert declared_size({"msg_type": 3, "raw_msg": "<msg><img/></msg>"}) is None
    assert declared_size({"msg_type": 3, "raw_msg": "<msg><img length="}) is None


MESSAGE_SCHEMA = "wehub.event.ReportNewMsgEvent"


def _event(msg: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": "e1", "appid": "wh_app", "bot_wxid": "wxid_bot", "data": {"msg": msg}}


def test_policy_requests_allowed_types_under_cap(pipeline_settings: Settings) -> None:
    policy = MediaPolicy(pipeline_settings.with_overrides(media_policy_types="3,43", media_max_request_bytes=1000))
    image = policy.decide(
        MESSAGE_SCHEMA, _event({"msg_type": 3, "file_index": "i1", "raw_msg": '<msg><img length="999"/></msg>'})
    )
    big = policy.decide(
        MESSAGE_SCHEMA, _event({"msg_type": 3, "file_index": "i2", "raw_msg": '<msg><img length="1001"/></msg>'})
    )
    voice = policy.decide(MESSAGE_SCHEMA, _event({"msg_type": 34, "file_index": "v1", "msg_id": "m3"}))
    text = policy.decide(MESSAGE_SCHEMA, _event({"msg_type": 1, "msg": "hello"}))

    assert [(d.action, d.row.status, d.row.reason) for d in image] == [("request", "requested", "")]
    assert image[0].row.task_id == upload_task_id("wh_app", "wxid_bot", "i1")
    assert image[0].row.message_id == "e1"
    assert [(d.action, d.row.reason) for d in big] == [("skip", "too_large")]
    assert [(d.action, d.row.reason, d.row.message_id) for d in voice] == [("skip", "type_not_in_policy", "m3")]
    assert text == []


def test_url_media_skipped_when_fetching_off(pipeline_settings: Settings) -> None:
    policy = MediaPolicy(pipeline_settings)
    url = "http://emoji.qpic.cn/wx_emoji/abc/"
    [decision] = policy.decide(MESSAGE_SCHEMA, _event({"msg_type": 47, "emoji_url": url}))
    assert (decision.action, decision.row.reason, decision.row.file_index) == (
        "skip",
        "fetch_disabled",
        url_file_index(url),
    )


def test_link_thumbnail_falls_back_to_raw_msg(pipeline_settings: Settings) -> None:
    policy = MediaPolicy(pipeline_settings.with_overrides(media_fetch_hosts="qpic.cn"))
    raw = "<msg><appmsg><title>t</title><thumburl>http://mmbiz.qpic.cn/abc</thumburl></appmsg></msg>"
    [decision] = policy.decide(MESSAGE_SCHEMA, _event({"msg_type": 49, "link_img_url": "", "raw_msg": raw}))
    assert (decision.action, decision.row.source_url) == ("fetch", "http://mmbiz.qpic.cn/abc")


def test_fetch_allowlist_matches_hosts_and_subdomains_only() -> None:
    policy = FetchPolicy(hosts=("qpic.cn", "127.0.0.1"), allow_private=False, max_bytes=10, timeout_s=1)
    assert policy.host_allowed("emoji.qpic.cn")
    assert policy.host_allowed("qpic.cn.")
    assert policy.host_allowed("127.0.0.1")
    assert not policy.host_allowed("evilqpic.cn")
    assert not policy.host_allowed("qpic.cn.evil.example")


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("::1", False),
        ("fe80::1", False),
        ("::ffff:10.0.0.1", False),
        ("0.0.0.0", False),
        ("93.184.216.34", True),
    ],
)
def test_non_public_addresses_detected(address: str, public: bool) -> None:
    assert is_public(address) is public


def test_avatars_are_fetched_only_when_enabled(pipeline_settings: Settings) -> None:
    event = {
        "event_id": "e9",
        "appid": "wh_app",
        "bot_wxid": "wxid_bot",
        "data": {"head_img": "http://wx.qlogo.cn/a/132"},
    }
    enabled = MediaPolicy(pipeline_settings.with_overrides(media_fetch_hosts="qlogo.cn", media_fetch_avatars=True))
    disabled = MediaPolicy(pipeline_settings.with_overrides(media_fetch_hosts="qlogo.cn"))

    [decision] = enabled.decide("wehub.event.ReportNewFriendEvent", event)
    assert (decision.action, decision.row.source_url, decision.row.message_id) == (
        "fetch",
        "http://wx.qlogo.cn/a/132",
        "e9",
    )
    assert enabled.actions() == ["report_new_msg", "login", "report_new_friend"]
    assert disabled.decide("wehub.event.ReportNewFriendEvent", event) == []
    assert disabled.actions() == ["report_new_msg"]
