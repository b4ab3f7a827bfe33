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
Per batch the order is: submit tasks (acks=all), insert rows, commit offsets.

It runs its own loop instead of `consumers.runner.Runner`, because it produces tasks, fetches
URLs and reads the MediaStored records of `<prefix>.media_stored`, none of which fits the
runner's pure "events to rows" processors.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import hashlib
import logging
import re
import signal
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from consumers import media_fetch, migrate
from consumers.clickhouse import Rows, StoreError, insert, make_client, translate
from consumers.rawmsg import parse_xml
from schemas import topics
from schemas.codec import CODEC, CodecError
from wehub import kafka, logs
from wehub import settings as settings_module
from wehub.media_store import MediaStore, MediaStoreError, metadata_header
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
MAX_RECORDS_PER_BATCH = 200
FETCH_CONCURRENCY = 8
BATCH_TRIES = 8
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
DEAD_LETTER_WINDOW_S = 60.0
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
    """The rows, tasks, fetches and dead letters of one batch of records."""

    rows: dict[tuple[str, str, str], MediaRow] = field(default_factory=dict)
    tasks: list[tuple[bytes, bytes]] = field(default_factory=list)
    fetches: list[MediaRow] = field(default_factory=list)
    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)


class MediaConsumer:
    """The media consumer as consumer group `<prefix>.consumer.media`; `run()` until `stop()`."""

    name = NAME

    def __init__(self, settings: Settings, client: Client | None = None, store: MediaStore | None = None) -> None:
        self.settings = settings
        self.database = str(settings.clickhouse_database)
        self.policy = MediaPolicy(settings)
        self.store = store or MediaStore.from_settings(settings)
        self._client = client
        self._stored_topic = settings.topic(topics.MEDIA_STORED)
        # The schema each subscribed topic carries.
        self._schemas = {settings.topic(action): topics.EVENT_SCHEMAS[action] for action in self.policy.actions()}
        self._schemas[self._stored_topic] = topics.MEDIA_STORED_SCHEMA
        self._tasks_topic = settings.topic(topics.TASKS)
        self._stop = asyncio.Event()
        self._submitted: set[str] = set()
        self._dead_times: collections.deque[float] = collections.deque()
        self.handled_records = 0

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = make_client(self.settings, self.database)
        return self._client

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Consume until stop(); raises StoreError, MediaStoreError or PipelineKafkaError after retries."""
        await asyncio.to_thread(migrate.apply, self.client, self.database)
        group = f"{self.settings.topic_prefix}.consumer.{self.name}"
        consumer = kafka.make_consumer(
            self.settings,
            *self._schemas,
            group_id=group,
            max_poll_interval_ms=300_000,
        )
        producer = kafka.make_producer(self.settings)
        fetcher = media_fetch.make_client(self.policy.fetch)
        await consumer.start()
        try:
            await producer.start()
            log.info("consumer %s started as group %s", self.name, group)
            await self._loop(consumer, producer, fetcher)
        finally:
            await consumer.stop()
            await producer.stop()
            await fetcher.aclose()
            log.info("consumer %s stopped after %d records", self.name, self.handled_records)

    async def _loop(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, fetcher: httpx.AsyncClient) -> None:
        wait_ms = max(1, int(self.settings.batch_max_wait_ms))
        while not self._stop.is_set():
            batches = await consumer.getmany(timeout_ms=wait_ms, max_records=MAX_RECORDS_PER_BATCH)
            messages = [message for records in batches.values() for message in records]
            if not messages:
                continue
            await self._with_retries(lambda batch=messages: self.handle(batch, producer, fetcher))
            offsets = {partition: records[-1].offset + 1 for partition, records in batches.items()}
            try:
                await consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as error:
                # The partitions moved meanwhile; their next owner sees the rows and submits nothing twice.
                log.warning(
                    "consumer %s: commit failed (%s), the batch will be read again",
                    self.name,
                    type(error).__name__,
                )
            self.handled_records += len(messages)

    async def _with_retries(self, call: Any) -> None:
        delay = BACKOFF_FIRST_S
        for attempt in range(1, BATCH_TRIES + 1):
            try:
                await call()
                return
            except (StoreError, MediaStoreError, kafka.PipelineKafkaError) as error:
                left = BATCH_TRIES - attempt
                if not error.retriable or left == 0:
                    raise
                log.warning(
                    "consumer %s: %s, retrying the batch in %.1f s (%d tries left)",
                    self.name,
                    error,
                    delay,
                    left,
                )
                await asyncio.sleep(delay)
                delay = min(BACKOFF_MAX_S, delay * 2)

    async def handle(self, messages: Sequence[Any], producer: AIOKafkaProducer, fetcher: httpx.AsyncClient) -> None:
        """Take one batch of Kafka records: decide, submit tasks, fetch URLs, insert rows. Idempotent."""
        decoded = [(message, self._decode(message)) for message in messages]
        batch = Batch()
        for message, result in decoded:
            if isinstance(result, str):
                batch.dead_letters.append((message.key, self._dead_letter(message, result)))
        events = [result for _, result in decoded if not isinstance(result, str)]

        decisions = [
            decision
            for name, record in events
            if name != topics.MEDIA_STORED_SCHEMA
            for decision in self.policy.decide(name, record)
        ]
        stored = [record for name, record in events if name == topics.MEDIA_STORED_SCHEMA]
        identities = {decision.row.identity for decision in decisions}
        identities |= {(record["appid"], record["bot_wxid"], record["file_index"]) for record in stored}
        known = await asyncio.to_thread(MediaState(self.client, self.database).lookup, identities)

        self._plan(batch, decisions, stored, known)
        await self._send_dead_letters(producer, batch.dead_letters)
        await self._fetch_all(batch, producer, fetcher)
        await self._submit_tasks(producer, batch.tasks)
        self._submitted.update(key.decode() for key, _ in batch.tasks if key)
        rows = Rows(TABLE, COLUMNS, [row.values() for row in batch.rows.values()])
        await asyncio.to_thread(insert, self.client, self.database, rows)
        if batch.rows:
            statuses = collections.Counter(row.status for row in batch.rows.values())
            log.debug("consumer %s wrote %d media rows", self.name, len(batch.rows), extra=dict(statuses))

    def _decode(self, message: Any) -> tuple[str, dict[str, Any]] | str:
        """Decode a record to its schema name and fields, or return why it is poison."""
        if message.value is None:
            return "record has no value: expected an Avro single-object record"
        try:
            name, record = CODEC.decode(message.value)
        except CodecError as error:
            return str(error)
        expected = self._schemas.get(message.topic)
        if name != expected:
            return f"schema {name} on topic {message.topic}: expected {expected}"
        for key in ("event_id", "appid", "bot_wxid"):
            if not record.get(key):
                return f"field {key} is empty: expected a non-empty string"
        return name, record

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

    async def _submit_tasks(self, producer: AIOKafkaProducer, tasks: list[tuple[bytes, bytes]]) -> None:
        wanted = [(key, value) for key, value in tasks if key and key.decode() not in self._submitted]
        if not wanted:
            return
        timeout_s = float(self.settings.kafka_timeout_s)
        try:
            async with asyncio.timeout(timeout_s * 3):
                sends = [await producer.send(self._tasks_topic, value, key=key) for key, value in wanted]
                await asyncio.gather(*sends)
        except (KafkaError, TimeoutError) as error:
            raise kafka.translate(error, "submitting upload tasks") from None
        log.info("consumer %s submitted %d upload tasks", self.name, len(wanted))

    async def _fetch_all(self, batch: Batch, producer: AIOKafkaProducer, fetcher: httpx.AsyncClient) -> None:
        if not batch.fetches:
            return
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

    def _dead_letter(self, message: Any, reason: str) -> bytes:
        value = bytes(message.value or b"")
        cap = int(self.settings.dead_letter_body_cap_bytes)
        log.warning(
            "consumer %s: record %s[%d]@%d is poison",
            self.name,
            message.topic,
            message.partition,
            message.offset,
        )
        return CODEC.encode(
            topics.DEAD_LETTER_SCHEMA,
            {
                "dead_letter_id": uuid.uuid4().hex,
                "at": int(time.time() * 1000),
                "source": SOURCE,
                "reason_code": "undecodable",
                "reason": reason,
                "http_status": None,
                "appid": None,
                "bot_wxid": message.key.decode("utf-8", "replace") if message.key else None,
                "action": None,
                "client_address": None,
                "content_type": "application/vnd.wehub.avro",
                "topic": message.topic,
                "partition": message.partition,
                "offset": message.offset,
                "body": value[:cap],
                "body_bytes": len(value),
                "truncated": len(value) > cap,
            },
        )

    async def _send_dead_letters(self, producer: AIOKafkaProducer, letters: list[tuple[bytes | None, bytes]]) -> None:
        if not letters:
            return
        now = time.monotonic()
        while self._dead_times and now - self._dead_times[0] > DEAD_LETTER_WINDOW_S:
            self._dead_times.popleft()
        cap = int(self.settings.dead_letter_max_per_minute)
        if len(self._dead_times) + len(letters) > cap:
            raise kafka.PipelineKafkaError(
                f"consumer {self.name} stopped: more than {cap} dead letters within a minute "
                "(WEHUB_DEAD_LETTER_MAX_PER_MINUTE); check what writes the topics, then restart it",
                retriable=False,
            )
        topic = self.settings.topic(topics.DEAD_LETTER)
        try:
            sends = [await producer.send(topic, value, key=key) for key, value in letters]
            await asyncio.gather(*sends)
        except KafkaError as error:
            raise kafka.translate(error, "sending dead letters") from None
        self._dead_times.extend([now] * len(letters))


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


async def run(settings: Settings) -> int:
    """Run the media consumer until SIGINT/SIGTERM; returns the exit status."""
    consumer = MediaConsumer(settings)
    await kafka.ensure_topics(settings, kafka.pipeline_topics(settings))
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, consumer.stop)
    try:
        await consumer.run()
    except (StoreError, MediaStoreError, kafka.PipelineKafkaError) as error:
        print(f"consumer media stopped: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m consumers.media`: the media consumer on the WEHUB_* settings."""
    parser = argparse.ArgumentParser(prog="python -m consumers.media", description=__doc__.split("\n")[0])
    parser.parse_args(argv)
    settings = settings_module.load()
    logs.configure(settings.log_level, settings.log_format)
    return asyncio.run(run(settings))


if __name__ == "__main__":
    sys.exit(main())
