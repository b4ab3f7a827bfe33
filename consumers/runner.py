"""The chain every ClickHouse consumer runs: decode → validate → batch → rows → side effects → insert → commit.

A `Processor` turns a batch of decoded records into rows; the runner owns Kafka, batching,
retries, the dead-letter topic and offsets. Offsets are committed only after every row of the
batch was inserted, so a crash anywhere replays the batch. Processors give each row a key that
turns a replayed insert into a duplicate, which the analytics views hide.

By default a processor reads gateway events (the schema of each action topic, with the event
envelope). One that reads other records declares them per topic with `intake()`. One that must
act outside ClickHouse (produce tasks, fetch files) does it in `before_insert()`: the runner
calls it after the rows are built and before they are inserted, and retries both together.

A processor may also offer a `bulk` path (see `BulkPath`): records it accepts skip Python
decoding and go into ClickHouse undecoded, one statement a batch. When ClickHouse rejects such a
batch, the runner decodes its records one by one and takes the ordinary path with them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from clickhouse_connect.driver.client import Client

from consumers import migrate
from consumers.clickhouse import Rows, StoreError, insert, make_client
from schemas import topics
from schemas.codec import CODEC, CodecError
from wehub import kafka
from wehub.media_store import MediaStoreError
from wehub.settings import Settings

log = logging.getLogger(__name__)

# Retries of one batch when ClickHouse fails: backoff doubles from 0.5 s up to 30 s, about
# three minutes of waits in all, after which the consumer stops without committing.
INSERT_TRIES = 12
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
DEAD_LETTER_WINDOW_S = 60.0
# An ordered consumer keeps events back until every partition it reads has caught up or passed
# their gateway time, but never longer than this many batch waits.
MAX_HOLD_WAITS = 10
# While a batch is being inserted the consumer keeps polling (reading the next batch, then its
# paused partitions), so it stays within max_poll_interval_ms during a long ClickHouse outage.
KEEPALIVE_POLL_MS = 500
FULL_COLLECTION_INTERVAL_S = 60.0
# The schema name of an Event made from a null value on a topic whose intake takes tombstones.
TOMBSTONE = "tombstone"


class Poison(ValueError):
    """A record this consumer can never take; it goes to the dead-letter topic."""

    def __init__(self, reason_code: str, reason: str) -> None:
        super().__init__(reason)
        self.reason_code = reason_code
        self.reason = reason


# Failures of ClickHouse, Kafka and MinIO. Their `retriable` is True when the same batch may succeed later.
RETRIABLE_ERRORS = (StoreError, kafka.PipelineKafkaError, MediaStoreError)


class DeadLetterRateExceeded(RuntimeError):
    """More dead letters in a minute than dead_letter_max_per_minute allows."""


class Event(NamedTuple):
    """A decoded, validated record with where it came from (a tuple: one is built per record)."""

    topic: str
    partition: int
    offset: int
    schema_name: str
    record: dict[str, Any]

    @property
    def order_key(self) -> tuple[int, str]:
        """Gateway time, then event id: the order in which state-keeping consumers apply events."""
        return int(self.record["received_at_ms"]), str(self.record["event_id"])


@dataclass(frozen=True)
class Intake:
    """The schemas a processor takes from one topic. Anything else on it goes to the dead-letter topic."""

    schemas: frozenset[str]
    # Gateway events carry the envelope (event_id, appid, bot_wxid, received_at) that the runner
    # checks and that ordered consumers sort by; task records do not.
    envelope: bool = True
    # On a compacted topic a null value deletes its key; True hands it on as a TOMBSTONE event.
    tombstones: bool = False


def event_intake(action: str) -> Intake:
    """The intake of a gateway action topic: its event schema (and part schema, if it has one)."""
    names = (topics.EVENT_SCHEMAS.get(action), topics.PART_SCHEMAS.get(action))
    return Intake(frozenset(name for name in names if name))


class BulkPath(Protocol):
    """Records inserted without decoding them in Python; ClickHouse decodes them and builds the rows."""

    def accepts(self, value: bytes) -> bool:
        """Tell whether the record `value` may take this path; must be cheap, it runs for every record."""
        ...

    def insert(self, client: Client, database: str, values: list[bytes]) -> Sequence[int]:
        """Insert the rows of `values` in one statement, but for those it returns the indexes of.

        The runner takes the records left through decoding, `validate` and `process`, and all of
        them after a non-retriable StoreError: ClickHouse rejected the batch. Blocks.
        """
        ...


class Processor(Protocol):
    """The work of one consumer on its events; the runner calls `process` from a worker thread.

    Optional methods, looked up by name:
    - `intake(suffix) -> Intake`: what the topic carries, `event_intake(suffix)` when absent.
    - `async open(producer)` / `async close()`: around the run, with the runner's Kafka producer.
    - `async before_insert(events, rows) -> list[Rows]`: side effects of a batch once its rows are
      built; returns the rows to insert (they may reflect what the side effects found). On a
      failure the runner resets the processor and retries `process` and this step together.
    - `bulk: BulkPath`: an attribute, taken by unordered processors without `before_insert`.
    """

    name: str
    # True for consumers of current state fed by several topics: the runner then hands them
    # events in gateway-time order across partitions (see Runner._release).
    ordered: bool

    def topic_suffixes(self) -> Sequence[str]:
        """Topic suffixes (actions) this consumer reads."""
        ...

    def validate(self, action: str, schema_name: str, record: dict[str, Any]) -> None:
        """Raise Poison when the record cannot be taken; must not block."""
        ...

    def process(self, client: Client, events: list[Event]) -> list[Rows]:
        """Return the rows for `events` (in topic order per partition); may read ClickHouse. Blocks.

        Called again with the same events after a failed insert, once `reset()` ran.
        """
        ...

    def reset(self) -> None:
        """Forget cached state: partitions moved, or an insert of rows built from it failed."""
        ...


def millis(value: Any) -> int:
    """Convert a timestamp-millis field to an int (fastavro decodes it to an aware datetime)."""
    if isinstance(value, int):
        return value
    return int(value.timestamp() * 1000)


def validate_envelope(record: dict[str, Any]) -> None:
    """Raise Poison when the envelope lacks what every row needs."""
    for name in ("event_id", "appid", "bot_wxid"):
        if not record.get(name):
            raise Poison("invalid_record", f"envelope field {name} is empty: expected a non-empty string")


class _CollectorPause:
    """Keeps Python's cyclic garbage collector off while any runner of the process works on a batch.

    A batch holds hundreds of thousands of containers (decoded records, rows) until its insert.
    With the collector on, each of them is traversed by several collections, which costs more
    than building the rows: per report_new_msg, Avro decoding took 17 µs instead of 13 and the
    row 6 µs instead of 2.3. Records and rows have no reference cycles, so reference counting
    frees them. Cycles made meanwhile wait for the collector to be on again, or for a full
    collection once it has been off for FULL_COLLECTION_INTERVAL_S.
    """

    def __init__(self) -> None:
        self._holders = 0
        self._disabled = False
        self._disabled_at = 0.0

    def hold(self) -> None:
        if self._holders == 0 and gc.isenabled():
            gc.disable()
            self._disabled = True
            self._disabled_at = time.monotonic()
        self._holders += 1

    def release(self) -> None:
        self._holders -= 1
        if self._holders == 0 and self._disabled:
            gc.enable()
            self._disabled = False
        elif self._disabled and time.monotonic() - self._disabled_at >= FULL_COLLECTION_INTERVAL_S:
            # Other runners keep the collector off under a steady load, so collect now and then.
            gc.collect()
            self._disabled_at = time.monotonic()


_COLLECTOR = _CollectorPause()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Keep the garbage collector off as a runner does while it holds a batch (for benchmarks)."""
    _COLLECTOR.hold()
    try:
        yield
    finally:
        _COLLECTOR.release()


@dataclass
class _DeadLetter:
    key: bytes | None
    value: bytes


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._runner.drop_partitions(set(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("consumer %s assigned %d partitions", self._runner.name, len(assigned))
        self._runner.processor.reset()


class Runner:
    """Runs one processor as its own consumer group `<prefix>.consumer.<name>`."""

    def __init__(self, settings: Settings, processor: Processor, client: Client | None = None) -> None:
        self.settings = settings
        self.processor = processor
        self.name = processor.name
        self.database = str(settings.clickhouse_database)
        self._client = client
        self._max_rows = max(1, int(settings.batch_max_rows))
        self._max_wait_s = max(0.001, int(settings.batch_max_wait_ms) / 1000)
        self._dead_letter_cap = int(settings.dead_letter_max_per_minute)
        self._pending: list[Event] = []
        self._dead: list[_DeadLetter] = []
        self._offsets: dict[TopicPartition, int] = {}
        self._ordered = bool(getattr(processor, "ordered", False))
        self._held: dict[TopicPartition, collections.deque[tuple[int, int, Event | None]]] = {}
        self._seen_ms: dict[TopicPartition, int] = {}
        self._first_at: float | None = None
        self._collector_held = False
        self._dead_times: collections.deque[float] = collections.deque()
        self._flush_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._topic_actions = {settings.topic(suffix): suffix for suffix in processor.topic_suffixes()}
        intake = getattr(processor, "intake", event_intake)
        self._intakes: dict[str, Intake] = {topic: intake(suffix) for topic, suffix in self._topic_actions.items()}
        self._before_insert: Callable[[list[Event], list[Rows]], Awaitable[list[Rows]]] | None = getattr(
            processor, "before_insert", None)
        bulk: BulkPath | None = getattr(processor, "bulk", None)
        self._bulk = bulk if not self._ordered and self._before_insert is None else None
        # Records for the bulk path, undecoded (aiokafka ConsumerRecords).
        self._raw: list[Any] = []
        # The bulk path's outcome for the batch being inserted: its records and those left to decode.
        self._bulk_done: tuple[list[Any], list[Event]] | None = None
        self._producer: Any = None
        self.inserted_events = 0
        # perf_counter() when the first record arrived, for benchmarks.
        self.first_record_at: float | None = None

    def stop(self) -> None:
        """Ask the loop to flush the batch it has collected and return."""
        self._stop.set()

    @property
    def client(self) -> Client:
        if self._client is None:
            # Every statement of the runner names its database, which may not exist before migrations.
            self._client = make_client(self.settings)
        return self._client

    async def prepare(self) -> None:
        """Apply the migrations, retrying while ClickHouse is unreachable."""
        await self._with_retries(lambda: asyncio.to_thread(migrate.apply, self.client, self.database),
                                 "applying migrations")

    async def run(self) -> None:
        """Consume until stop() or an error; raises DeadLetterRateExceeded or StoreError."""
        await self.prepare()
        group = f"{self.settings.topic_prefix}.consumer.{self.name}"
        consumer = kafka.make_consumer(self.settings, group_id=group, max_poll_interval_ms=300_000)
        consumer.subscribe(list(self._topic_actions), listener=_Rebalance(self))
        producer = self._producer = kafka.make_producer(self.settings)
        opened = False
        await consumer.start()
        try:
            await producer.start()
            log.info("consumer %s started on %d topics as group %s", self.name, len(self._topic_actions), group)
            if hasattr(self.processor, "open"):
                await self.processor.open(producer)
            opened = True
            await self._loop(consumer, producer)
            if self._ordered:
                await self._release(consumer)
            await self._flush(consumer, producer)
        finally:
            self._end_batch()
            if opened and hasattr(self.processor, "close"):
                await self.processor.close()
            await consumer.stop()
            await producer.stop()
            log.info("consumer %s stopped after %d events", self.name, self.inserted_events)

    async def _loop(self, consumer: Any, producer: Any) -> None:
        while not self._stop.is_set():
            # A full batch of an unordered consumer is flushed before reading more, so that it
            # contains batch_max_rows records. An ordered consumer reads on: its flush may keep
            # events back until other partitions catch up.
            if self._ordered or not self._due():
                wait_s = self._max_wait_s
                if self._first_at is not None:
                    wait_s = max(0.0, self._first_at + self._max_wait_s - time.monotonic())
                room = max(1, self._max_rows - self._batched())
                batches = await consumer.getmany(timeout_ms=int(wait_s * 1000), max_records=room)
                self._take_all(batches)
            if self._due():
                if self._ordered:
                    await self._release(consumer)
                await self._flush(consumer, producer)

    def _due(self) -> bool:
        if self._first_at is None:
            return False
        if self._batched() >= self._max_rows:
            return True
        return time.monotonic() - self._first_at >= self._max_wait_s

    def _held_count(self) -> int:
        return sum(len(queue) for queue in self._held.values())

    def _batched(self) -> int:
        """Records of the next batch: decoded, undecoded for the bulk path, and held back for ordering."""
        return len(self._pending) + len(self._raw) + self._held_count()

    def _take_all(self, batches: dict[TopicPartition, list[Any]]) -> None:
        """Add the records of one getmany() to the next batch."""
        if not batches:
            return
        if self.first_record_at is None:
            self.first_record_at = time.perf_counter()
        if self._first_at is None:
            self._first_at = time.monotonic()
        if not self._collector_held:
            _COLLECTOR.hold()
            self._collector_held = True
        for partition, messages in batches.items():
            if not messages:
                continue
            if self._bulk is None:
                for message in messages:
                    self._take(partition, message)
                continue
            # Per record, the bulk path costs one check: this loop runs for every record read.
            accepts = self._bulk.accepts
            take_raw = self._raw.append
            for message in messages:
                value = message.value
                if value is not None and accepts(value):
                    take_raw(message)
                else:
                    self._take(partition, message)
            self._offsets[partition] = messages[-1].offset + 1

    def _take(self, partition: TopicPartition, message: Any) -> None:
        event = self._decode_or_bury(message)
        if not self._ordered:
            self._offsets[partition] = message.offset + 1
            if event is not None:
                self._pending.append(event)
            return
        if event is not None:
            self._seen_ms[partition] = event.order_key[0]
        seen_ms = self._seen_ms.get(partition, 0)
        self._held.setdefault(partition, collections.deque()).append((message.offset, seen_ms, event))

    async def _release(self, consumer: Any) -> None:
        """Move held events to the batch in gateway-time order across partitions.

        An event is released once every other partition has caught up with its end or delivered
        an event at least as recent, so a snapshot on one topic is applied after the member
        changes that came before it on another. Poison records keep their place in their partition.
        """
        # NOTE: after MAX_HOLD_WAITS everything is released, so a partition lagging that long can
        # still deliver older events. State stays right through per-field versions, but the room
        # ledger may then attribute a change to a snapshot instead of the member_change event.
        held_for_s = time.monotonic() - (self._first_at or time.monotonic())
        horizon = None if held_for_s >= self._max_wait_s * MAX_HOLD_WAITS else await self._horizon(consumer)
        for partition, queue in self._held.items():
            while queue and (horizon is None or queue[0][1] <= horizon):
                offset, _, event = queue.popleft()
                self._offsets[partition] = offset + 1
                if event is not None:
                    self._pending.append(event)
        self._pending.sort(key=lambda event: event.order_key)
        if self._held_count():
            self._first_at = time.monotonic()

    async def _horizon(self, consumer: Any) -> int | None:
        """Return the gateway time up to which no partition can deliver an older event; None for no limit."""
        horizon: int | None = None
        for partition in consumer.assignment():
            highwater = consumer.highwater(partition)
            queue = self._held.get(partition)
            next_offset = queue[-1][0] + 1 if queue else await consumer.position(partition)
            if highwater is not None and next_offset >= highwater:
                continue
            seen = self._seen_ms.get(partition, 0)
            horizon = seen if horizon is None else min(horizon, seen)
        return horizon

    def _decode_or_bury(self, message: Any) -> Event | None:
        """Decode `message`; a poison record is queued for the dead-letter topic and gives None."""
        action = self._topic_actions.get(message.topic, "")
        try:
            return self._decode(action, message)
        except Poison as poison:
            log.warning("consumer %s: record %s[%d]@%d is poison (%s)", self.name, message.topic,
                        message.partition, message.offset, poison.reason_code)
            self._dead.append(self._dead_letter(action, message, poison))
            return None

    def _decode(self, action: str, message: Any) -> Event:
        intake = self._intakes[message.topic]
        if message.value is None:
            if intake.tombstones:
                return Event(message.topic, message.partition, message.offset, TOMBSTONE, {})
            raise Poison("undecodable", "record has no value: expected an Avro single-object record")
        try:
            schema_name, record = CODEC.decode(message.value)
        except CodecError as error:
            raise Poison("undecodable", str(error)) from None
        if schema_name not in intake.schemas:
            raise Poison("unexpected_schema", f"schema {schema_name} on topic {message.topic}: "
                         f"expected {' or '.join(sorted(intake.schemas))}")
        if intake.envelope:
            validate_envelope(record)
        self.processor.validate(action, schema_name, record)
        if intake.envelope:
            record["received_at_ms"] = millis(record["received_at"])
        return Event(message.topic, message.partition, message.offset, schema_name, record)

    def _dead_letter(self, action: str, message: Any, poison: Poison) -> _DeadLetter:
        value = bytes(message.value or b"")
        cap = int(self.settings.dead_letter_body_cap_bytes)
        letter = {
            "dead_letter_id": str(uuid.uuid4()),
            "at": int(time.time() * 1000),
            "source": f"consumer:{self.name}",
            "reason_code": poison.reason_code,
            "reason": poison.reason,
            "http_status": None,
            "appid": None,
            "bot_wxid": message.key.decode("utf-8", "replace") if message.key else None,
            "action": action or None,
            "client_address": None,
            "content_type": "application/vnd.wehub.avro",
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "body": value[:cap],
            "body_bytes": len(value),
            "truncated": len(value) > cap,
        }
        return _DeadLetter(message.key, CODEC.encode(topics.DEAD_LETTER_SCHEMA, letter))

    async def drop_partitions(self, revoked: set[TopicPartition]) -> None:
        """Forget uncommitted events of revoked partitions; their next owner reads them again."""
        async with self._flush_lock:
            self._pending = [event for event in self._pending
                             if TopicPartition(event.topic, event.partition) not in revoked]
            self._raw = [message for message in self._raw
                         if TopicPartition(message.topic, message.partition) not in revoked]
            for partition in revoked:
                self._offsets.pop(partition, None)
                self._held.pop(partition, None)
                self._seen_ms.pop(partition, None)
            self.processor.reset()

    async def _flush(self, consumer: Any, producer: Any) -> None:
        async with self._flush_lock:
            if not self._offsets:
                if not self._held_count():
                    self._end_batch()
                return
            await self._send_dead_letters(producer)
            # The next batch starts now: records read during the insert go to it.
            events, raw, offsets = self._pending, self._raw, self._offsets
            self._pending, self._raw, self._offsets = [], [], {}
            self._first_at = time.monotonic() if self._held_count() else None
            count = len(events) + len(raw)
            if count:
                started = time.perf_counter()
                await self._insert_reading_ahead(consumer, events, raw)
                log.debug("consumer %s inserted %d events in %.3f s", self.name, count,
                          time.perf_counter() - started)
            try:
                await consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as error:
                # The partitions moved during the insert; their next owner replays the batch.
                log.warning("consumer %s: commit of %d partitions failed (%s), the batch will be replayed",
                            self.name, len(offsets), type(error).__name__)
                self.processor.reset()
            self.inserted_events += count
            self._bulk_done = None
            log.debug("consumer %s flushed %d events", self.name, count)
            # Freed before the collector may run again, so that it does not traverse the batch.
            del events, raw
            if not self._offsets and not self._held_count():
                self._end_batch()

    def _end_batch(self) -> None:
        self._first_at = None
        if self._collector_held:
            self._collector_held = False
            _COLLECTOR.release()

    async def _send_dead_letters(self, producer: Any) -> None:
        """Send the queued dead letters; those queued meanwhile (by reading ahead) wait for the next call."""
        if not self._dead:
            return
        letters, self._dead = self._dead, []
        now = time.monotonic()
        while self._dead_times and now - self._dead_times[0] > DEAD_LETTER_WINDOW_S:
            self._dead_times.popleft()
        if len(self._dead_times) + len(letters) > self._dead_letter_cap:
            self._dead = letters + self._dead
            raise DeadLetterRateExceeded(
                f"consumer {self.name} stopped: {len(self._dead_times) + len(letters)} dead letters within a "
                f"minute exceed WEHUB_DEAD_LETTER_MAX_PER_MINUTE={self._dead_letter_cap}; check the producer of "
                f"the topics, then restart the consumer")
        topic = self.settings.topic(topics.DEAD_LETTER)
        try:
            sends = [await producer.send(topic, letter.value, key=letter.key) for letter in letters]
            await asyncio.gather(*sends)
        except KafkaError as error:
            # Sent again with the next call: a dead letter may arrive twice, but none is lost.
            self._dead = letters + self._dead
            raise kafka.translate(error, "sending dead letters") from None
        self._dead_times.extend([now] * len(letters))

    async def _insert_reading_ahead(self, consumer: Any, events: list[Event], raw: list[Any]) -> None:
        """Insert `events` and the bulk path's `raw` records while reading the next batch.

        Reading on also keeps the group membership.

        Reading ahead overlaps the fetch and decoding of the next batch with the parts of the
        insert that run without the GIL (ClickHouse itself). Once the next batch is full, the
        partitions are paused and only polled, so a long ClickHouse outage does not cost the
        partitions (max_poll_interval_ms) nor fill memory.
        """
        task = asyncio.ensure_future(self._with_retries(lambda: self._insert(events, raw), "inserting"))
        paused: list[TopicPartition] = []
        try:
            while not task.done():
                room = self._max_rows - self._batched()
                if room <= 0 or self._stop.is_set():
                    if not paused:
                        paused = list(consumer.assignment())
                        consumer.pause(*paused)
                    await asyncio.wait({task}, timeout=KEEPALIVE_POLL_MS / 1000)
                    if not task.done():
                        await consumer.getmany(timeout_ms=0)
                    continue
                fetch = asyncio.ensure_future(consumer.getmany(timeout_ms=KEEPALIVE_POLL_MS, max_records=room))
                await asyncio.wait({task, fetch}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    # aiokafka hands records over only when getmany returns, so none are lost.
                    fetch.cancel()
                    await asyncio.gather(fetch, return_exceptions=True)
                    continue
                self._take_all(fetch.result())
            task.result()
        finally:
            if not task.done():
                task.cancel()
            if paused:
                consumer.resume(*[partition for partition in paused if partition in consumer.assignment()])

    async def _insert(self, events: list[Event], raw: list[Any]) -> None:
        # NOTE: a batch that ClickHouse rejects for good (a non-retriable error) stops the consumer;
        # the offending row is not isolated and sent to the dead-letter topic.
        if raw:
            events = events + await self._insert_bulk(raw)
        try:
            tables = await asyncio.to_thread(self.processor.process, self.client, events)
            if self._before_insert is not None:
                tables = await self._before_insert(events, tables)
            await asyncio.to_thread(self._insert_tables, tables)
        except BaseException:
            self.processor.reset()
            raise

    async def _insert_bulk(self, raw: list[Any]) -> list[Event]:
        """Insert `raw` through the bulk path; return decoded the records it left, or all when ClickHouse rejected them.

        Poison records among them go to the dead-letter topic before the batch is committed.
        """
        assert self._bulk is not None
        if self._bulk_done is None or self._bulk_done[0] is not raw:
            python_path = raw
            try:
                left = await asyncio.to_thread(self._bulk.insert, self.client, self.database,
                                               [message.value for message in raw])
                python_path = [raw[index] for index in left]
            except StoreError as error:
                if error.retriable:
                    raise
                log.warning("consumer %s: ClickHouse rejected %d records on the bulk path (%s), decoding them "
                            "one by one", self.name, len(raw), error)
            # In a thread, so that the event loop keeps reading while a whole batch is decoded.
            decoded = await asyncio.to_thread(lambda: list(map(self._decode_or_bury, python_path)))
            # A retry of the batch repeats neither the bulk insert nor the decoding (nor its dead letters).
            self._bulk_done = (raw, [event for event in decoded if event is not None])
        await self._send_dead_letters(self._producer)
        return self._bulk_done[1]

    def _insert_tables(self, tables: list[Rows]) -> None:
        for rows in tables:
            insert(self.client, self.database, rows)

    async def _with_retries(self, call: Callable[[], Awaitable[Any]], doing: str) -> None:
        delay = BACKOFF_FIRST_S
        for attempt in range(1, INSERT_TRIES + 1):
            try:
                await call()
                return
            except RETRIABLE_ERRORS as error:
                left = INSERT_TRIES - attempt
                if not error.retriable or left == 0:
                    raise
                log.warning("consumer %s: %s, retrying in %.1f s (%d tries left)", self.name, error, delay, left)
                await asyncio.sleep(delay)
                delay = min(BACKOFF_MAX_S, delay * 2)
