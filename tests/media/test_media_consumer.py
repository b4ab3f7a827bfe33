"""The media consumer on real Kafka, MinIO and embedded ClickHouse: tasks, rows, URL media."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.server
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from consumers.media import MediaProcessor, upload_task_id, url_file_index
from consumers.runner import Runner
from schemas import topics
from tests import services
from tests.gateway.conftest import corpus_bodies, read_records, running_gateway
from tests.media.conftest import corpus_uploads, upload_form
from wehub.kafka import bootstrap_servers
from wehub.media_store import MediaStore
from wehub.settings import Settings

pytestmark = pytest.mark.services

MEDIA_COLUMNS = "file_index, message_id, status, reason, bucket, key, sha256, size, content_type, task_id, origin"
WAIT_S = 90.0


def media_rows(settings: Settings) -> dict[str, dict[str, Any]]:
    client = services.clickhouse_client(settings.clickhouse_dsn)
    result = client.query(f"SELECT {MEDIA_COLUMNS} FROM {settings.clickhouse_database}.media")
    names = [name.strip() for name in MEDIA_COLUMNS.split(",")]
    return {row[0]: dict(zip(names, row, strict=True)) for row in result.result_rows}


def table_exists(settings: Settings) -> bool:
    client = services.clickhouse_client(settings.clickhouse_dsn)
    return bool(client.command(f"EXISTS TABLE {settings.clickhouse_database}.media_store"))


async def consume_until(settings: Settings, done: Callable[[], Awaitable[bool]]) -> None:
    """Run a media consumer until `done()` returns true or WAIT_S passed, then stop it."""
    consumer = Runner(settings, MediaProcessor(settings))
    task = asyncio.ensure_future(consumer.run())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while loop.time() < deadline and not task.done():
            if table_exists(settings) and await done():
                break
            await asyncio.sleep(0.5)
    finally:
        consumer.stop()
        await task


def rows_cover(settings: Settings, file_indexes: set[str]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return file_indexes <= set(media_rows(settings))

    return check


def group_caught_up(settings: Settings) -> Callable[[], Awaitable[bool]]:
    """True once the media consumer group committed every record of report_new_msg."""

    async def check() -> bool:
        topic = settings.topic("report_new_msg")
        partitions = [TopicPartition(topic, number) for number in range(int(settings.topic_partitions))]
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(settings))
        reader = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(settings))
        await admin.start()
        await reader.start()
        try:
            committed = await admin.list_consumer_group_offsets(f"{settings.topic_prefix}.consumer.media")
            ends = await reader.end_offsets(partitions)
        finally:
            await admin.close()
            await reader.stop()
        return all(
            end == 0 or (partition in committed and committed[partition].offset >= end)
            for partition, end in ends.items()
        )

    return check


async def upload_tasks(settings: Settings) -> list[dict[str, Any]]:
    found = []
    for _, _, record in await read_records(settings, topics.TASKS):
        if record["task_type"] == 9:
            found.append({**record, "task_dict": orjson.loads(record["task_dict"])})
    return found


def message(sample_accounts: dict[str, Any], msg: dict[str, Any], bot: int = 0) -> dict[str, Any]:
    unit = {"room_wxid": "", "wxid_from": "wxid_sender0001", "wxid_to": sample_accounts["wxids"][bot], **msg}
    return {
        "action": "report_new_msg",
        "appid": sample_accounts["appid"],
        "wxid": sample_accounts["wxids"][bot],
        "data": {"msg": unit},
    }


async def send(settings: Settings, bodies: list[dict[str, Any]]) -> None:
    async with running_gateway(settings) as client:
        for body in bodies:
            response = await client.post("/wehub", json=body)
            assert response.status_code == 200, response.text


async def test_corpus_media_rows_and_tasks(
    media_settings: Settings, samples_dir: Path, sample_accounts: dict[str, Any]
) -> None:
    truth = json.loads((samples_dir / "truth.json").read_text(encoding="utf-8"))["uploads"]
    bodies = corpus_bodies(samples_dir)
    media = [
        body["data"]["msg"]
        for body in bodies
        if body["action"] == "report_new_msg" and int(body["data"]["msg"]["msg_type"]) in (3, 34, 43, 4903)
    ]
    async with running_gateway(media_settings) as client:
        for body in bodies:
            response = await client.post("/wehub", json=body)
            assert response.status_code == 200, response.text
        for upload in corpus_uploads(samples_dir):
            content_type, data = upload_form(
                upload["file_index"], upload["filename"], upload["content_type"], upload["data"]
            )
            url = f"/wehub/upload?appid={sample_accounts['appid']}&wxid={upload['bot']}"
            response = await client.post(url, content=data, headers={"Content-Type": content_type})
            assert response.status_code == 200, response.text

    expected_indexes = set(truth) | {msg["file_index"] for msg in media}
    await consume_until(media_settings, rows_cover(media_settings, expected_indexes))

    rows = media_rows(media_settings)
    for file_index, expected in truth.items():
        row = rows[file_index]
        assert row["status"] == "stored"
        assert row["sha256"] == expected["sha256"]
        assert row["size"] == expected["size"]
        assert row["bucket"] == media_settings.media_bucket
    store = MediaStore.from_settings(media_settings)
    for file_index, expected in truth.items():
        data, _ = await store.read(rows[file_index]["key"])
        assert hashlib.sha256(data).hexdigest() == expected["sha256"]

    limit = int(media_settings.media_max_request_bytes)
    for msg in media:
        row = rows[msg["file_index"]]
        if msg.get("file_size") is not None and int(msg["file_size"]) > limit:
            assert (row["status"], row["reason"]) == ("skipped", "too_large")
        else:
            assert row["status"] == "requested", msg["file_index"]
    requested = {msg["file_index"] for msg in media if rows[msg["file_index"]]["status"] == "requested"}
    tasks = await upload_tasks(media_settings)
    assert sorted(task["task_dict"]["file_index"] for task in tasks) == sorted(requested)


async def test_redelivery_and_restart_give_one_task(media_settings: Settings, sample_accounts: dict[str, Any]) -> None:
    file_index = "3053020100044c304a0201000204aa11bb22cc33dd44ee55ff66"
    body = message(
        sample_accounts,
        {
            "msg_type": 3,
            "msg_id": "7001",
            "file_index": file_index,
            "raw_msg": '<msg><img length="120000"/></msg>',
        },
    )

    await send(media_settings, [body, body])
    await consume_until(media_settings, group_caught_up(media_settings))
    assert file_index in media_rows(media_settings)
    await send(media_settings, [body])
    # A new consumer of the same group reads only the third delivery.
    await consume_until(media_settings, group_caught_up(media_settings))

    tasks = [task for task in await upload_tasks(media_settings) if task["task_dict"]["file_index"] == file_index]
    assert len(tasks) == 1
    task = tasks[0]
    assert task["task_id"] == upload_task_id(sample_accounts["appid"], sample_accounts["wxids"][0], file_index)
    assert task["bot_wxid"] == sample_accounts["wxids"][0]
    assert task["source"] == "consumer:media"
    row = media_rows(media_settings)[file_index]
    assert (row["status"], row["message_id"], row["task_id"]) == ("requested", "7001", task["task_id"])


async def test_local_path_and_oversized_files_skipped(
    media_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    local = "C:\\Users\\bot\\Documents\\WeChat Files\\wxid_x\\FileStorage\\Image\\2026-12\\a1.dat"
    too_large = "40230a12b8f72cc01783ff9d7b9b5c40637cd983030e5550"
    voice = "b7afde82a3d89ae969f75a5ee4884858cea2394372e0fcc1da"
    bodies = [
        message(
            sample_accounts,
            {
                "msg_type": 3,
                "msg_id": "8001",
                "wxid_from": sample_accounts["wxids"][0],
                "wxid_to": "wxid_friend01",
                "file_index": local,
            },
        ),
        message(
            sample_accounts,
            {
                "msg_type": 4903,
                "msg_id": "8002",
                "file_index": too_large,
                "file_name": "big.zip",
                "file_size": 90_000_000,
            },
        ),
        message(
            sample_accounts,
            {
                "msg_type": 34,
                "msg_id": "8003",
                "file_index": voice,
                "raw_msg": '<msg><voicemsg length="90000000" playlength="3"/></msg>',
            },
        ),
    ]
    await send(media_settings, bodies)
    await consume_until(media_settings, rows_cover(media_settings, {local, too_large, voice}))

    rows = media_rows(media_settings)
    assert (rows[local]["status"], rows[local]["reason"]) == ("skipped", "local_path")
    assert (rows[too_large]["status"], rows[too_large]["reason"]) == ("skipped", "too_large")
    assert (rows[voice]["status"], rows[voice]["reason"]) == ("skipped", "too_large")
    assert await upload_tasks(media_settings) == []


class _MediaHandler(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, tuple[bytes, str]]] = {}

    def do_GET(self) -> None:
        entry = self.files.get(self.path)
        if entry is None:
            self.send_error(404)
            return
        data, content_type = entry
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextlib.contextmanager
def media_server(files: dict[str, tuple[bytes, str]]) -> Iterator[str]:
    """A tiny HTTP server on 127.0.0.1 serving `files` by path; yields its base URL."""
    handler = type("Handler", (_MediaHandler,), {"files": files})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


async def test_url_media_fetch_allowlist_and_cap(media_settings: Settings, sample_accounts: dict[str, Any]) -> None:
    gif = b"GIF89a" + bytes(range(200)) * 10
    thumb = b"\xff\xd8\xff" + b"j" * 3000
    files = {"/emoji/a.gif": (gif, "image/gif"), "/thumb/b.jpg": (thumb, "image/jpeg")}
    settings = media_settings.with_overrides(
        media_fetch_hosts="127.0.0.1", media_fetch_allow_private=True, media_fetch_max_bytes=2500
    )
    with media_server(files) as base:
        urls = {
            "emoji": f"{base}/emoji/a.gif",
            "thumb_too_large": f"{base}/thumb/b.jpg",
            "missing": f"{base}/emoji/none.gif",
            "other_host": "http://emoji.example.invalid/x.gif",
        }
        bodies = [
            message(sample_accounts, {"msg_type": 47, "msg_id": "9001", "emoji_url": urls["emoji"]}),
            message(
                sample_accounts,
                {
                    "msg_type": 49,
                    "msg_id": "9002",
                    "link_title": "t",
                    "link_url": "https://example.invalid/a",
                    "link_img_url": urls["thumb_too_large"],
                },
            ),
            message(sample_accounts, {"msg_type": 47, "msg_id": "9003", "emoji_url": urls["missing"]}),
            message(sample_accounts, {"msg_type": 47, "msg_id": "9004", "emoji_url": urls["other_host"]}),
            # The same emoji again: fetched once.
            message(sample_accounts, {"msg_type": 47, "msg_id": "9005", "emoji_url": urls["emoji"]}),
        ]
        await send(settings, bodies)
        indexes = {name: url_file_index(url) for name, url in urls.items()}
        await consume_until(settings, rows_cover(settings, set(indexes.values())))

    rows = media_rows(settings)
    emoji = rows[indexes["emoji"]]
    assert (emoji["status"], emoji["origin"]) == ("stored", "url")
    assert emoji["sha256"] == hashlib.sha256(gif).hexdigest()
    assert emoji["size"] == len(gif)
    assert emoji["content_type"] == "image/gif"
    assert emoji["message_id"] == "9001"
    data, _ = await MediaStore.from_settings(settings).read(emoji["key"])
    assert data == gif
    assert (rows[indexes["thumb_too_large"]]["status"], rows[indexes["thumb_too_large"]]["reason"]) == (
        "failed",
        "too_large",
    )
    assert (rows[indexes["missing"]]["status"], rows[indexes["missing"]]["reason"]) == ("failed", "http_404")
    assert (rows[indexes["other_host"]]["status"], rows[indexes["other_host"]]["reason"]) == (
        "failed",
        "host_not_allowed",
    )
    stored_events = [record for _, _, record in await read_records(settings, topics.MEDIA_STORED)]
    assert [event["file_index"] for event in stored_events] == [indexes["emoji"]]


async def test_loopback_url_rejected_without_allow_private(
    media_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    requested: list[str] = []

    class Recorder(_MediaHandler):
        def do_GET(self) -> None:
            requested.append(self.path)
            super().do_GET()

    settings = media_settings.with_overrides(media_fetch_hosts="127.0.0.1", media_fetch_allow_private=False)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/emoji/a.gif"
        await send(settings, [message(sample_accounts, {"msg_type": 47, "msg_id": "9101", "emoji_url": url})])
        await consume_until(settings, rows_cover(settings, {url_file_index(url)}))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

    row = media_rows(settings)[url_file_index(url)]
    assert (row["status"], row["reason"]) == ("failed", "private_address")
    assert requested == []


async def test_new_friend_avatar_fetched_when_enabled(
    media_settings: Settings, sample_accounts: dict[str, Any]
) -> None:
    avatar = b"\xff\xd8\xff" + b"a" * 500
    settings = media_settings.with_overrides(
        media_fetch_hosts="127.0.0.1", media_fetch_allow_private=True, media_fetch_avatars=True
    )
    with media_server({"/mmhead/132": (avatar, "image/jpeg")}) as base:
        url = f"{base}/mmhead/132"
        body = {
            "action": "report_new_friend",
            "appid": sample_accounts["appid"],
            "wxid": sample_accounts["wxids"][0],
            "data": {"fans_wxid": "wxid_newfriend01", "nickname": "n", "head_img": url},
        }
        await send(settings, [body])
        await consume_until(settings, rows_cover(settings, {url_file_index(url)}))

    row = media_rows(settings)[url_file_index(url)]
    assert (row["status"], row["origin"], row["size"]) == ("stored", "url", len(avatar))
    assert row["sha256"] == hashlib.sha256(avatar).hexdigest()
