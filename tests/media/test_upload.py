"""POST /wehub/upload against real Kafka and MinIO: stored bytes, responses, refusals, dead letters."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas import topics
from tests.gateway.conftest import read_records, running_gateway
from tests.media.conftest import corpus_uploads, multipart, upload_form
from wehub.media_store import MediaStore
from wehub.settings import Settings

pytestmark = pytest.mark.services

# Real WeHub clients send a Host header ending in a dot.
WEHUB_HEADERS = {"Host": "gateway."}


def upload_url(appid: str, wxid: str, token: str | None = None) -> str:
    url = f"/wehub/upload?appid={appid}&wxid={wxid}"
    return url + (f"&token={token}" if token is not None else "")


async def post_form(client: httpx.AsyncClient, url: str, form: tuple[str, bytes]) -> httpx.Response:
    content_type, body = form
    return await client.post(url, content=body, headers={**WEHUB_HEADERS, "Content-Type": content_type})


async def test_corpus_uploads_store_the_bytes_of_truth(
    media_settings: Settings, samples_dir: Path, sample_accounts: dict[str, Any]
) -> None:
    truth = json.loads((samples_dir / "truth.json").read_text(encoding="utf-8"))["uploads"]
    uploads = corpus_uploads(samples_dir)
    assert {upload["file_index"] for upload in uploads} == set(truth)
    store = MediaStore.from_settings(media_settings)

    async with running_gateway(media_settings) as client:
        for upload in uploads:
            form = upload_form(upload["file_index"], upload["filename"], upload["content_type"], upload["data"])
            response = await post_form(client, upload_url(sample_accounts["appid"], upload["bot"]), form)
            assert response.status_code == 200, response.text
            assert response.json() == {
                "error_code": 0,
                "error_reason": "",
                "ack_type": "upload_file_ack",
                "file_index": upload["file_index"],
            }

    events = await read_records(media_settings, topics.MEDIA_STORED)
    assert len(events) == len(uploads)
    for key, schema_name, event in events:
        expected = truth[event["file_index"]]
        assert schema_name == topics.MEDIA_STORED_SCHEMA
        assert key == event["bot_wxid"].encode()
        assert event["sha256"] == expected["sha256"]
        assert event["size"] == expected["size"]
        assert event["bucket"] == media_settings.media_bucket
        assert event["key"].endswith("/" + expected["sha256"])
        data, headers = await store.read(event["key"])
        assert hashlib.sha256(data).hexdigest() == expected["sha256"]
        assert len(data) == expected["size"]
        upload = next(item for item in uploads if item["file_index"] == event["file_index"])
        assert headers["Content-Type"] == upload["content_type"]
        assert headers["x-amz-meta-file-index"] == upload["file_index"]
        assert headers["x-amz-meta-file-name"] == upload["filename"]


async def test_same_file_twice_is_stored_once(
    media_settings: Settings, samples_dir: Path, sample_accounts: dict[str, Any]
) -> None:
    upload = corpus_uploads(samples_dir)[0]
    form = upload_form(upload["file_index"], upload["filename"], upload["content_type"], upload["data"])
    store = MediaStore.from_settings(media_settings)

    async with running_gateway(media_settings) as client:
        for _ in range(2):
            response = await post_form(client, upload_url(sample_accounts["appid"], upload["bot"]), form)
            assert response.status_code == 200, response.text

    events = await read_records(media_settings, topics.MEDIA_STORED)
    assert len(events) == 2
    assert events[0][2]["key"] == events[1][2]["key"]
    objects = list(store.client.list_objects(media_settings.media_bucket, recursive=True))
    assert [item.object_name for item in objects] == [events[0][2]["key"]]


async def test_large_file_streams_to_its_key(media_settings: Settings, sample_accounts: dict[str, Any]) -> None:
    data = bytes(range(256)) * (20 * 1024 * 1024 // 256) + b"tail"
    form = upload_form("big-video-index", "clip.mp4", "video/mp4", data)
    store = MediaStore.from_settings(media_settings)

    async with running_gateway(media_settings) as client:
        response = await post_form(client, upload_url(sample_accounts["appid"], sample_accounts["wxids"][0]), form)
    assert response.status_code == 200, response.text

    [(_, _, event)] = await read_records(media_settings, topics.MEDIA_STORED)
    assert event["sha256"] == hashlib.sha256(data).hexdigest()
    assert event["size"] == len(data)
    stored, headers = await store.read(event["key"])
    assert stored == data
    assert headers["Content-Type"] == "video/mp4"
    names = [item.object_name for item in store.client.list_objects(media_settings.media_bucket, recursive=True)]
    assert names == [event["key"]], "the temporary object of the stream must be removed"


async def test_identity_in_form_parts_is_accepted(media_settings: Settings, sample_accounts: dict[str, Any]) -> None:
    form = multipart(
        [
            ("appid", sample_accounts["appid"].encode(), None, None),
            ("wxid", sample_accounts["wxids"][1].encode(), None, None),
            ("file_index", b"index-from-parts", None, None),
            ("file", b"voice bytes", "a.mp3", "audio/mpeg"),
        ]
    )
    async with running_gateway(media_settings) as client:
        response = await post_form(client, "/wehub/upload", form)
    assert response.status_code == 200, response.text
    [(_, _, event)] = await read_records(media_settings, topics.MEDIA_STORED)
    assert event["bot_wxid"] == sample_accounts["wxids"][1]


REFUSALS = [
    pytest.param(
        multipart([("file", b"abc", "a.jpg", "image/jpeg")]),
        400,
        "upload_missing_part",
        "file_index",
        id="missing_file_index",
    ),
    pytest.param(
        multipart([("file_index", b"idx", None, None)]),
        400,
        "upload_missing_part",
        "no file part",
        id="missing_file_part",
    ),
    pytest.param(upload_form("idx", "a.jpg", "image/jpeg", b""), 400, "upload_empty_file", "empty", id="empty_file"),
    pytest.param(
        upload_form("idx", "../../etc/cron.d/x.jpg", "image/jpeg", b"abc"),
        400,
        "upload_unsafe_filename",
        "file name",
        id="dot_dot_slash",
    ),
    pytest.param(
        upload_form("idx", "/etc/passwd", "image/jpeg", b"abc"),
        400,
        "upload_unsafe_filename",
        "file name",
        id="absolute_path",
    ),
    pytest.param(
        upload_form("idx", "..\\..\\windows\\a.jpg", "image/jpeg", b"abc"),
        400,
        "upload_unsafe_filename",
        "file name",
        id="backslashes",
    ),
    pytest.param(
        upload_form("idx", "C:\\Users\\a.jpg", "image/jpeg", b"abc"),
        400,
        "upload_unsafe_filename",
        "file name",
        id="windows_drive",
    ),
    pytest.param(("application/json", b"{}"), 400, "upload_not_multipart", "multipart/form-data", id="not_multipart"),
]


@pytest.mark.parametrize(("form", "status", "reason_code", "reason_text"), REFUSALS)
async def test_bad_upload_is_refused_and_dead_lettered(
    media_settings: Settings,
    sample_accounts: dict[str, Any],
    form: tuple[str, bytes],
    status: int,
    reason_code: str,
    reason_text: str,
) -> None:
    async with running_gateway(media_settings) as client:
        response = await post_form(client, upload_url(sample_accounts["appid"], sample_accounts["wxids"][0]), form)

    assert response.status_code == status
    answer = response.json()
    assert answer["ack_type"] == "upload_file_ack"
    assert answer["error_code"] != 0
    assert reason_text in answer["error_reason"]
    [(_, _, dead_letter)] = await read_records(media_settings, topics.DEAD_LETTER)
    assert dead_letter["reason_code"] == reason_code
    assert dead_letter["action"] == "upload"
    assert dead_letter["http_status"] == status
    assert dead_letter["body"] == form[1][: media_settings.dead_letter_body_cap_bytes]
    assert await read_records(media_settings, topics.MEDIA_STORED) == []


async def test_file_over_the_limit_is_refused_with_413(
    media_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    settings = media_settings.with_overrides(upload_limit_bytes=100_000, dead_letter_body_cap_bytes=1000)
    form = upload_form("idx", "big.jpg", "image/jpeg", b"x" * 300_000)
    store = MediaStore.from_settings(settings)

    async with running_gateway(settings) as client:
        response = await post_form(client, upload_url(sample_accounts["appid"], sample_accounts["wxids"][0]), form)
        # Without Content-Length the limit is enforced while the file streams in.
        content_type, body = form
        chunks = (body[offset : offset + 65536] for offset in range(0, len(body), 65536))
        streamed = await client.post(
            upload_url(sample_accounts["appid"], sample_accounts["wxids"][0]),
            content=_aiter(chunks),
            headers={"Content-Type": content_type},
        )

    for answer in (response, streamed):
        assert answer.status_code == 413
        assert "100000 bytes" in answer.json()["error_reason"]
    dead_letters = await read_records(settings, topics.DEAD_LETTER)
    assert [record["reason_code"] for _, _, record in dead_letters] == ["upload_file_too_large"] * 2
    assert all(len(record["body"]) <= 1000 and record["truncated"] for _, _, record in dead_letters)
    assert list(store.client.list_objects(settings.media_bucket, recursive=True)) == []


async def _aiter(chunks: Any) -> Any:
    for chunk in chunks:
        yield chunk


async def test_upload_without_a_known_identity_is_refused(
    media_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    form = upload_form("idx", "a.jpg", "image/jpeg", b"abc")
    cases = [
        ("/wehub/upload", 401, "appid"),
        (upload_url("wh_unknown", sample_accounts["wxids"][0]), 401, "wh_unknown"),
        (upload_url(sample_accounts["appid"], "wxid_not_listed"), 403, "wxid_not_listed"),
    ]
    async with running_gateway(media_settings) as client:
        for url, status, mentioned in cases:
            response = await post_form(client, url, form)
            assert response.status_code == status, url
            assert mentioned in response.json()["error_reason"]


async def test_upload_needs_the_url_token_of_its_appid(
    media_settings: Settings, sample_accounts: dict[str, Any], tmp_path: Path
) -> None:
    accounts = tmp_path / "accounts-with-token.toml"
    wxids = ", ".join(json.dumps(wxid) for wxid in sample_accounts["wxids"])
    accounts.write_text(
        f'[[app]]\nappid = "{sample_accounts["appid"]}"\nsecret = "s"\nwxids = [{wxids}]\n'
        'url_token = "upload-token-1"\n',
        encoding="utf-8",
    )
    settings = media_settings.with_overrides(accounts=str(accounts))
    form = upload_form("idx", "a.jpg", "image/jpeg", b"abc")
    appid, wxid = sample_accounts["appid"], sample_accounts["wxids"][0]

    async with running_gateway(settings) as client:
        missing = await post_form(client, upload_url(appid, wxid), form)
        wrong = await post_form(client, upload_url(appid, wxid, "other"), form)
        right = await post_form(client, upload_url(appid, wxid, "upload-token-1"), form)

    assert missing.status_code == 401
    assert wrong.status_code == 401
    assert right.status_code == 200, right.text


async def test_second_file_part_is_refused(media_settings: Settings, sample_accounts: dict[str, Any]) -> None:
    form = multipart(
        [
            ("file_index", b"idx", None, None),
            ("file", b"first", "a.jpg", "image/jpeg"),
            ("file", b"second", "b.jpg", "image/jpeg"),
        ]
    )
    async with running_gateway(media_settings) as client:
        response = await post_form(client, upload_url(sample_accounts["appid"], sample_accounts["wxids"][0]), form)

    assert response.status_code == 400
    assert "exactly one file part" in response.json()["error_reason"]
    assert await read_records(media_settings, topics.MEDIA_STORED) == []


async def test_limit_hit_mid_stream_leaves_no_object(media_settings: Settings, sample_accounts: dict[str, Any]) -> None:
    settings = media_settings.with_overrides(upload_limit_bytes=10 * 1024 * 1024)
    content_type, body = upload_form("idx", "big.mp4", "video/mp4", b"v" * (14 * 1024 * 1024))
    chunks = (body[offset : offset + 256 * 1024] for offset in range(0, len(body), 256 * 1024))
    store = MediaStore.from_settings(settings)

    async with running_gateway(settings) as client:
        response = await client.post(
            upload_url(sample_accounts["appid"], sample_accounts["wxids"][0]),
            content=_aiter(chunks),
            headers={"Content-Type": content_type},
        )

    assert response.status_code == 413
    assert list(store.client.list_objects(settings.media_bucket, recursive=True)) == []
    incomplete = list(store.client._list_multipart_uploads(settings.media_bucket).uploads)
    assert incomplete == [], "the multipart upload of the temporary object must be aborted"
