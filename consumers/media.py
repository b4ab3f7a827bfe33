"""The media consumer: requests the files of media messages from WeHub and keeps the `media` table.

For each report_new_msg record of an image, voice, video or file message it decides by policy
(WEHUB_MEDIA_POLICY_TYPES, and the size the message declares against
WEHUB_MEDIA_MAX_REQUEST_BYTES) whether to request the file, and if so submits one upload task
(task_type 9) per file_index to `<prefix>.tasks`. Emoji gifs and link thumbnails are URL
media: fetched here into the media bucket when WEHUB_MEDIA_FETCH_HOSTS allows their host.
Records of `<prefix>.media_stored` mark files stored.

A file is requested at most once. The `media_store` table remembers every file_index already
requested, stored, skipped or failed, and the task_id derives from appid, bot and file_index,
so a task submitted again after a crash overwrites the same key of the compacted task topic.
Per batch the order is: fetch URL media, submit tasks (acks=all), insert rows, commit offsets;
the runner retries the batch as a whole, so a failed insert never loses a submitted task's row.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import hashlib
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from consumers import media_fetch
from consumers.clickhouse import Rows, translate
from consumers.rawmsg import parse_xml
from consumers.runner import Event, Intake
from schemas import topics
from schemas.codec import CODEC
from wehub import kafka, logs
from wehub import settings as settings_module
from wehub.media_store import MediaStore, metadata_header
from wehub.settings import Settings
from wehub.task_validation import TaskInvalid, parse_submission

log = logging.getLogger(__name__)

NAME = "media"
SOURCE = "consumer:media"
UPLOAD_TASK_TYPE = 9
TABLE = "media_store"
COLUMNS = (
    "appid",
    "bot_wxid",
    "file_index",
    "message_id",
    "msg_type",
    "origin",
    "source_url",
    "status",
    "reason",
    "declared_size",
    "task_id",
    "bucket",
    "key",
    "sha256",
    "size",
    "content_type",
    "file_name",
    "updated_at",
    "version",
)
UPLOAD_TYPES = (3, 34, 43, 4903)
EMOJI, LINK = 47, 49
AVATAR_ACTIONS = ("login", "report_new_friend")
AVATAR_SCHEMAS = {topics.EVENT_SCHEMAS[action] for action in AVATAR_ACTIONS}
# stored beats failed beats requested/skipped, whatever order the events arrive in.
STATUS_RANK = {"requested": 1, "skipped": 1, "failed": 2, "stored": 3}
FETCH_CONCURRENCY = 8
_LOCAL_PATH = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\|/)")


def upload_task_id(appid: str, bot_wxid: str, file_index: str) -> str:
    """Derive the task_id of a file's upload task, so the same file always gets the same id."""
    digest = hashlib.sha256(f"{appid}\n{bot_wxid}\n{file_index}".encode()).hexdigest()
    return f"media-{digest[:40]}"


def url_file_index(url: str) -> str:
    """Derive the file_index under which URL media is kept in the media table."""
    return "url:" + hashlib.sha256(url.encode()).hexdigest()


def is_local_path(file_index: str) -> bool:
    """True for a Windows (or Unix) path, which is what the bot's own images carry as file_index."""
    return bool(_LOCAL_PATH.match(file_index)) or "\\" in file_index


def declared_size(msg: dict[str, Any]) -> int | None:
    """Read the file size a message declares: file_size, or `length`/`len` of its raw_msg element."""
    msg_type = int(msg.get("msg_type") or 0)
    if msg_type == 4903 and msg.get("file_size") is not None:
        return int(msg["file_size"])
    raw_msg = msg.get("raw_msg") or ""
    if not raw_msg.lstrip().startswith("<"):
        return None
    root = parse_xml(raw_msg)
    if isinstance(root, str):
        return None
    names = {3: ("img",), 34: ("voicemsg",), 43: ("videomsg",), EMOJI: ("emoji",), 4903: ("totallen",)}
    for name in names.get(msg_type, ()):
        node = root if root.tag == name else root.find(f".//{name}")
        if node is None:
            continue
        text = node.get("length") or node.get("len") or (node.text or "")
        if text.strip().isdigit():
            return int(text.strip())
    return None


def media_urls(msg: dict[str, Any]) -> list[str]:
    """URL media of a message: the emoji gif, or the link thumbnail (from raw_msg when the field is empty)."""
    msg_type = int(msg.get("msg_type") or 0)
    if msg_type == EMOJI:
        url = msg.get("emoji_url") or ""
        if not url:
            root = parse_xml(msg.get("raw_msg") or "")
            node = None if isinstance(root, str) else root.find(".//emoji")
            url = node.get("cdnurl", "") if node is not None else ""
        return [url] if url else []
    if msg_type == LINK:
        url = msg.get("link_img_url") or ""
        if not url:
            root = parse_xml(msg.get("raw_msg") or "")
            node = None if isinstance(root, str) else root.find(".//thumburl")
            url = (node.text or "").strip() if node is not None else ""
        return [url] if url else []
    return []


@dataclass
class MediaRow:
    """One row of `media_store`."""

    appid: str
    bot_wxid: str
    file_index: str
    message_id: str = ""
    msg_type: int = 0
    origin: str = "upload"
    source_url: str = ""
    status: str = "requested"
    reason: str = ""
    declared_size: int | None = None
    task_id: str = ""
    bucket: str = ""
    key: str = ""
    sha256: str = ""
    size: int | None = None
    content_type: str = ""
    file_name: str = ""
    updated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def identity(self) -> tuple[str, str, str]:
        return self.appid, self.bot_wxid, self.file_index

    def values(self) -> list[Any]:
        millis = int(self.updated_at.timestamp() * 1000)
        version = STATUS_RANK[self.status] * 2**42 + millis
        return [
            self.appid,
            self.bot_wxid,
            self.file_index,
            self.message_id,
            self.msg_type,
            self.origin,
            self.source_url,
            self.status,
            self.reason,
            self.declared_size,
            self.task_id,
            self.bucket,
            self.key,
            self.sha256,
            self.size,
            self.content_type,
            self.file_name,
            self.updated_at,
            version,
        ]


@dataclass(frozen=True)
class Decision:
    """The action for one file of a message (request it, fetch its URL, or skip it) and its row."""

    row: MediaRow
    action: str  # "request", "fetch" or "skip"


class MediaPolicy:
    """The rules, from the settings, for which files are requested or fetched."""

    def __init__(self, settings: Settings) -> None:
        self.request_types = {int(text) for text in str(settings.media_policy_types).split(",") if text.strip()}
        self.max_request_bytes = int(settings.media_max_request_bytes)
        self.fetch = media_fetch.FetchPolicy.from_settings(settings)
        self.fetch_avatars = bool(settings.media_fetch_avatars)

    def actions(self) -> list[str]:
        """Return the actions whose records carry media under this policy."""
        return ["report_new_msg", *AVATAR_ACTIONS] if self.fetch_avatars else ["report_new_msg"]

    def decide(self, schema_name: str, event: dict[str, Any]) -> list[Decision]:
        """Decide for each file of one event record (no decision for messages without media)."""
        if schema_name in AVATAR_SCHEMAS:
            return self._decide_avatar(event)
        msg = event["data"]["msg"]
        msg_type = int(msg["msg_type"])
        base = {
            "appid": event["appid"],
            "bot_wxid": event["bot_wxid"],
            "message_id": msg.get("msg_id") or event["event_id"],
            "msg_type": msg_type,
        }
        if msg_type in UPLOAD_TYPES:
            return [self._decide_upload(msg, base)]
        return [self._decide_url(url, msg, base) for url in media_urls(msg)]

    def _decide_avatar(self, event: dict[str, Any]) -> list[Decision]:
        url = event["data"].get("head_img") or ""
        if not self.fetch_avatars or not url:
            return []
        base = {"appid": event["appid"], "bot_wxid": event["bot_wxid"], "message_id": event["event_id"]}
        return [self._decide_url(url, {}, {**base, "msg_type": 0})]

    def _decide_upload(self, msg: dict[str, Any], base: dict[str, Any]) -> Decision:
        file_index = str(msg.get("file_index") or "")
        size = declared_size(msg)
        row = MediaRow(file_index=file_index, declared_size=size, file_name=msg.get("file_name") or "", **base)
        if not file_index:
            return Decision(replace(row, status="skipped", reason="no_file_index"), "skip")
        if is_local_path(file_index):
            return Decision(replace(row, status="skipped", reason="local_path"), "skip")
        if base["msg_type"] not in self.request_types:
            return Decision(replace(row, status="skipped", reason="type_not_in_policy"), "skip")
        if size is not None and size > self.max_request_bytes:
            return Decision(replace(row, status="skipped", reason="too_large"), "skip")
        task_id = upload_task_id(row.appid, row.bot_wxid, file_index)
        return Decision(replace(row, status="requested", task_id=task_id), "request")

    def _decide_url(self, url: str, msg: dict[str, Any], base: dict[str, Any]) -> Decision:
        size = declared_size(msg)
        row = MediaRow(file_index=url_file_index(url), origin="url", source_url=url, declared_size=size, **base)
        if not self.fetch.enabled:
            return Decision(replace(row, status="skipped", reason="fetch_disabled"), "skip")
        if size is not None and size > self.fetch.max_bytes:
            return Decision(replace(row, status="skipped", reason="too_large"), "skip")
        return Decision(row, "fetch")


class MediaState:
    """The rows of `media_store` already written, read per batch. Blocking: call through a thread."""

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database

    def lookup(self, identities: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], MediaRow]:
        wanted = set(identities)
        if not wanted:
            return {}
        query = (
            f"SELECT {', '.join(COLUMNS[:-1])} FROM {self.database}.{TABLE} FINAL "
            "WHERE file_index IN {file_indexes:Array(String)}"
        )
        try:
            result = self.client.query(query, parameters={"file_indexes": sorted({item[2] for item in wanted})})
        except (ClickHouseError, OSError) as error:
            raise translate(error, "reading the media table") from None
        found = {}
        for values in result.result_rows:
            row = MediaRow(*values)
            if row.identity in wanted:
                found[row.identity] = row
        return found


@dataclass
class Batch:
    """The rows, tasks and fetches of one batch of records."""

    rows: dict[tuple[str, str, str], MediaRow] = field(default_factory=dict)
    tasks: list[tuple[bytes, bytes]] = field(default_factory=list)
    fetches: list[MediaRow] = field(default_factory=list)

    def table(self) -> Rows:
        return Rows(TABLE, COLUMNS, [row.values() for row in self.rows.values()])


class MediaProcessor:
    """The media consumer as consumer group `<prefix>.consumer.media`, run by `consumers.runner.Runner`.

    `process` decides for each file against what the media table already knows; `before_insert`
    fetches URL media and submits upload tasks (acks=all) before the runner inserts the rows.
    """

    name = NAME
    # Each file's row carries its own version (status rank and time), so arrival order does not matter.
    ordered = False

    def __init__(self, settings: Settings, store: MediaStore | None = None) -> None:
        self.settings = settings
        self.database = str(settings.clickhouse_database)
        self.policy = MediaPolicy(settings)
        self.store = store or MediaStore.from_settings(settings)
        self._tasks_topic = settings.topic(topics.TASKS)
        self._stored_topic = settings.topic(topics.MEDIA_STORED)
        self._submitted: set[str] = set()
        self._batch: Batch | None = None
        self._producer: AIOKafkaProducer | None = None
        self._fetcher: httpx.AsyncClient | None = None

    def topic_suffixes(self) -> Sequence[str]:
        return (*self.policy.actions(), topics.MEDIA_STORED)

    def intake(self, suffix: str) -> Intake:
        if suffix == topics.MEDIA_STORED:
            return Intake(frozenset({topics.MEDIA_STORED_SCHEMA}))
        return Intake(frozenset({topics.EVENT_SCHEMAS[suffix]}))

    def validate(self, action: str, schema_name: str, record: dict[str, Any]) -> None:
        return None

    async def open(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._fetcher = media_fetch.make_client(self.policy.fetch)

    async def close(self) -> None:
        if self._fetcher is not None:
            await self._fetcher.aclose()
            self._fetcher = None

    def reset(self) -> None:
        self._batch = None

    def process(self, client: Client, events: list[Event]) -> list[Rows]:
        """Plan the batch: one row per new file, and the tasks and fetches it needs. Blocks."""
        decisions = [
            decision
            for event in events
            if event.schema_name != topics.MEDIA_STORED_SCHEMA
            for decision in self.policy.decide(event.schema_name, event.record)
        ]
        stored = [event.record for event in events if event.schema_name == topics.MEDIA_STORED_SCHEMA]
        identities = {decision.row.identity for decision in decisions}
        identities |= {(record["appid"], record["bot_wxid"], record["file_index"]) for record in stored}
        known = MediaState(client, self.database).lookup(identities)
        batch = Batch()
        self._plan(batch, decisions, stored, known)
        self._batch = batch
        return [batch.table()]

    async def before_insert(self, events: list[Event], rows: list[Rows]) -> list[Rows]:
        """Fetch the batch's URL media, then submit its upload tasks; returns the rows with the outcomes."""
        batch = self._batch
        if batch is None:
            return rows
        await self._fetch_all(batch)
        await self._submit_tasks(batch.tasks)
        self._submitted.update(key.decode() for key, _ in batch.tasks if key)
        if batch.rows:
            statuses = collections.Counter(row.status for row in batch.rows.values())
            log.debug("consumer %s writes %d media rows", self.name, len(batch.rows), extra=dict(statuses))
        return [batch.table()]

    def _plan(
        self,
        batch: Batch,
        decisions: list[Decision],
        stored: list[dict[str, Any]],
        known: dict[tuple[str, str, str], MediaRow],
    ) -> None:
        for decision in decisions:
            row = decision.row
            if row.identity in known or row.identity in batch.rows:
                continue
            batch.rows[row.identity] = row
            if decision.action == "fetch":
                batch.fetches.append(row)
            elif decision.action == "request":
                batch.tasks.append(self._task(row))
        for record in stored:
            identity = (record["appid"], record["bot_wxid"], record["file_index"])
            previous = batch.rows.get(identity) or known.get(identity)
            batch.rows[identity] = stored_row(record, previous)

    def _task(self, row: MediaRow) -> tuple[bytes, bytes]:
        created_at = time.time_ns() // 1_000_000
        try:
            submission = parse_submission(
                {
                    "task_id": row.task_id,
                    "appid": row.appid,
                    "bot_wxid": row.bot_wxid,
                    "task_type": UPLOAD_TASK_TYPE,
                    "task_dict": {"file_index": row.file_index},
                },
                None,
                created_at,
            )
        except TaskInvalid as error:
            # A file_index that the task validation rejects cannot be requested, and the row records why.
            row.status, row.reason, row.task_id = "skipped", f"invalid_task_{error.field}", ""
            return b"", b""
        value = CODEC.encode(topics.TASK_SCHEMA, submission.record(created_at, SOURCE))
        return submission.task_id.encode(), value

    async def _submit_tasks(self, tasks: list[tuple[bytes, bytes]]) -> None:
        wanted = [(key, value) for key, value in tasks if key and key.decode() not in self._submitted]
        if not wanted:
            return
        producer = self._running_producer()
        timeout_s = float(self.settings.kafka_timeout_s)
        try:
            async with asyncio.timeout(timeout_s * 3):
                sends = [await producer.send(self._tasks_topic, value, key=key) for key, value in wanted]
                await asyncio.gather(*sends)
        except (KafkaError, TimeoutError) as error:
            raise kafka.translate(error, "submitting upload tasks") from None
        log.info("consumer %s submitted %d upload tasks", self.name, len(wanted))

    async def _fetch_all(self, batch: Batch) -> None:
        if not batch.fetches:
            return
        producer, fetcher = self._running_producer(), self._fetcher
        assert fetcher is not None, "open() runs before the first batch"
        slots = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def one(row: MediaRow) -> bytes | None:
            async with slots:
                return await self._fetch_one(row, fetcher)

        events = await asyncio.gather(*(one(row) for row in batch.fetches))
        records = [(row.bot_wxid.encode(), event) for row, event in zip(batch.fetches, events, strict=True) if event]
        if not records:
            return
        try:
            sends = [await producer.send(self._stored_topic, value, key=key) for key, value in records]
            await asyncio.gather(*sends)
        except KafkaError as error:
            raise kafka.translate(error, "publishing media_stored events") from None

    async def _fetch_one(self, row: MediaRow, fetcher: httpx.AsyncClient) -> bytes | None:
        """Download one URL into the bucket and fill `row`; returns its MediaStored record, or None."""
        try:
            fetched = await media_fetch.fetch(fetcher, row.source_url, self.policy.fetch)
        except media_fetch.FetchRefused as refused:
            row.status, row.reason = "failed", refused.reason
            log.info("URL media not fetched (%s)", refused.reason, extra={"file_index": row.file_index})
            return None
        if not fetched.data:
            row.status, row.reason = "failed", "empty"
            return None
        metadata = {"file-index": row.file_index, "source-url": metadata_header(row.source_url)}
        stored = await self.store.put_bytes(
            row.appid, row.bot_wxid, fetched.data, content_type=fetched.content_type, metadata=metadata
        )
        row.status, row.reason = "stored", ""
        row.bucket, row.key, row.sha256 = stored.bucket, stored.key, stored.sha256
        row.size, row.content_type = stored.size, stored.content_type
        return CODEC.encode(
            topics.MEDIA_STORED_SCHEMA,
            {
                "event_id": uuid.uuid4().hex,
                "received_at": int(time.time() * 1000),
                "gateway": SOURCE,
                "appid": row.appid,
                "bot_wxid": row.bot_wxid,
                "file_index": row.file_index,
                "bucket": stored.bucket,
                "key": stored.key,
                "size": stored.size,
                "sha256": stored.sha256,
                "content_type": stored.content_type,
                "file_name": None,
                "origin": "url",
                "source_url": row.source_url,
            },
        )

    def _running_producer(self) -> AIOKafkaProducer:
        assert self._producer is not None, "open() runs before the first batch"
        return self._producer


def stored_row(record: dict[str, Any], previous: MediaRow | None) -> MediaRow:
    """Build the row of a MediaStored record, keeping the message's fields (message_id, task_id ...)."""
    base = previous or MediaRow(record["appid"], record["bot_wxid"], record["file_index"], origin=record["origin"])
    return replace(
        base,
        origin=record.get("origin") or base.origin,
        source_url=record.get("source_url") or base.source_url,
        status="stored",
        reason="",
        bucket=record["bucket"],
        key=record["key"],
        sha256=record["sha256"],
        size=int(record["size"]),
        content_type=record["content_type"],
        file_name=record.get("file_name") or base.file_name,
        updated_at=dt.datetime.now(dt.UTC),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m consumers.media`: `wehub consume media` under its old name."""
    parser = argparse.ArgumentParser(prog="python -m consumers.media", description=__doc__.split("\n")[0])
    parser.parse_args(argv)
    settings = settings_module.load()
    logs.configure(settings.log_level, settings.log_format)
    from consumers.cli import run_consumers  # noqa: PLC0415 (consumers.cli imports the registry of every consumer)

    return asyncio.run(run_consumers(settings, [NAME]))


if __name__ == "__main__":
    sys.exit(main())
