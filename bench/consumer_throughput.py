"""Messages per second from Kafka into ClickHouse through one messages consumer process.

Produces a bounded number of report_new_msg records to a fresh topic and measures how fast
aiokafka alone reads them (the raw rate). Then it measures, in the same run, how fast the
messages consumer reads, decodes and inserts them into an embedded ClickHouse (chdb) in batches
and commits their offsets. Writes bench/results-consumer.md.

    WEHUB_KAFKA_BOOTSTRAP=127.0.0.1:9092 python -m bench.consumer_throughput --messages 300000
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from consumers.clickhouse import Rows, insert, make_client
from consumers.messages import COLUMNS, PARSED_RAW_MSG_SIGNS, MessagesBulk, MessagesProcessor, message_row
from consumers.query import run_query
from consumers.runner import Runner, collector_paused, millis
from schemas import topics
from schemas.codec import CODEC
from schemas.container import ContainerWriter
from tests import services
from wehub import kafka
from wehub import settings as settings_module
from wehub.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results-consumer.md"
TARGET_SHARE = 0.40
MAX_MESSAGES = 300_000
PARTITIONS = 6
BOTS = 50
# The heading of the hand-kept notes in the results file, which a new run keeps.
EARLIER_RUNS = "## Earlier runs"


@dataclass(frozen=True)
class Stages:
    """Seconds of each stage alone: the bulk path's two, then the Python path's three."""

    container_s: float
    bulk_insert_s: float
    decode_s: float
    rows_s: float
    insert_s: float

    def scaled(self, factor: float) -> Stages:
        return Stages(*(seconds * factor for seconds in dataclasses.astuple(self)))


@dataclass(frozen=True)
class Measurement:
    messages: int
    produce_s: float
    raw_s: float
    consumer_s: float
    batch_rows: int
    rows_stored: int
    stages: Stages

    @property
    def raw_rate(self) -> float:
        return self.messages / self.raw_s

    @property
    def consumer_rate(self) -> float:
        return self.messages / self.consumer_s


def _record(index: int, base_ms: int) -> tuple[bytes, bytes]:
    bot = f"wxid_bench{index % BOTS:04d}"
    room = f"{10_000_000_000 + index % 500}@chatroom" if index % 3 else ""
    message = {
        "event_id": str(uuid.UUID(int=index + 1)), "received_at": base_ms + index, "gateway": "bench",
        "appid": "wh_bench", "bot_wxid": bot, "action": "report_new_msg", "client_address": "127.0.0.1",
        "body_bytes": 300, "transport": "http", "client_session": None, "extra": None,
        "data": {"msg": {"msg_type": 1, "room_wxid": room, "wxid_from": f"wxid_member{index % 5000}",
                         "wxid_to": room or bot, "msg_id": str(7_000_000_000_000 + index),
                         "msg_timestamp": base_ms + index, "msg": f"benchmark message {index}",
                         "atUserList": []}, "extra": None},
    }
    return bot.encode(), CODEC.encode("wehub.event.ReportNewMsgEvent", message)


async def _produce(settings: Settings, count: int) -> float:
    producer = kafka.make_producer(settings, linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    started = time.perf_counter()
    base_ms = int(time.time() * 1000)
    try:
        topic = settings.topic("report_new_msg")
        pending = []
        for index in range(count):
            key, value = _record(index, base_ms)
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def _read_raw(settings: Settings, count: int) -> float:
    consumer = AIOKafkaConsumer(settings.topic("report_new_msg"), bootstrap_servers=kafka.bootstrap_servers(settings),
                                group_id=None, auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    started = None
    seen = 0
    try:
        while seen < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            if batches and started is None:
                started = time.perf_counter()
            seen += sum(len(messages) for messages in batches.values())
    finally:
        elapsed = time.perf_counter() - (started or time.perf_counter())
        await consumer.stop()
    return elapsed


async def _consume(settings: Settings, count: int, group_name: str = "messages") -> float:
    processor = MessagesProcessor(settings)
    # The consumer group is named after the processor, so a second run reads the topic again.
    processor.name = group_name
    runner = Runner(settings, processor)
    await runner.prepare()
    task = asyncio.ensure_future(runner.run())
    try:
        while runner.inserted_events < count:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        assert runner.first_record_at is not None
        return time.perf_counter() - runner.first_record_at
    finally:
        runner.stop()
        await task


def _stages_alone(settings: Settings, count: int) -> Stages:
    """Seconds of each consumer stage on its own for `count` records (one batch).

    The garbage collector is paused as the runner pauses it while it holds a batch.
    """
    values = [_record(index, 0)[1] for index in range(count)]
    with collector_paused():
        return _time_stages(settings, values)


def _time_stages(settings: Settings, values: list[bytes]) -> Stages:
    database = str(settings.clickhouse_database)
    client = make_client(settings, database)
    bulk = MessagesBulk()
    writer = ContainerWriter(CODEC.schema(topics.EVENT_SCHEMAS["report_new_msg"]))
    started = time.perf_counter()
    accepted = [value for value in values if bulk.accepts(value)]
    container = writer.container(accepted)
    writer.records_holding(container, accepted, PARSED_RAW_MSG_SIGNS)
    container_s = time.perf_counter() - started
    started = time.perf_counter()
    bulk.insert(client, database, accepted)
    bulk_insert_s = time.perf_counter() - started - container_s

    started = time.perf_counter()
    records = [CODEC.decode(value)[1] for value in values]
    decode_s = time.perf_counter() - started
    for record in records:
        record["received_at_ms"] = millis(record["received_at"])
    started = time.perf_counter()
    rows: list[Sequence[Any]] = [message_row(record) for record in records]
    rows_s = time.perf_counter() - started
    client.command(f"CREATE TABLE {database}.messages_insert_probe AS {database}.messages_store")
    started = time.perf_counter()
    insert(client, database, Rows("messages_insert_probe", COLUMNS, rows))
    insert_s = time.perf_counter() - started
    client.command(f"DROP TABLE {database}.messages_insert_probe")
    return Stages(container_s, bulk_insert_s, decode_s, rows_s, insert_s)


async def measure(settings: Settings, count: int) -> Measurement:
    await services.create_pipeline_topics(settings)
    try:
        produce_s = await _produce(settings, count)
        # Each side is timed twice, alternating, and its faster run kept, so that other work on
        # the machine slowing one run changes neither side's figure.
        raw_first_s = await _read_raw(settings, count)
        consumer_first_s = await _consume(settings, count)
        raw_s = min(raw_first_s, await _read_raw(settings, count))
        again = settings.with_overrides(clickhouse_database=f"{settings.clickhouse_database}_again")
        consumer_s = min(consumer_first_s, await _consume(again, count, "messages_again"))
    finally:
        await services.delete_topics_with_prefix(kafka.bootstrap_servers(settings), str(settings.topic_prefix))
    stored = run_query(settings, f"SELECT count() FROM {settings.clickhouse_database}.messages").rows[0][0]
    probe = min(count, int(settings.batch_max_rows))
    stages = _stages_alone(settings, probe).scaled(count / probe)
    return Measurement(count, produce_s, raw_s, consumer_s, int(settings.batch_max_rows), int(stored), stages)


def report(result: Measurement) -> str:
    share = result.consumer_rate / result.raw_rate
    verdict = "met" if share >= TARGET_SHARE else "not met"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    budget_us = 1e6 / (result.raw_rate * TARGET_SHARE)
    per_message_us = result.consumer_s / result.messages * 1e6
    stages = result.stages
    python_s = stages.decode_s + stages.rows_s + stages.insert_s

    def row(stage: str, seconds: float) -> str:
        return f"| {stage} | {seconds:.2f} | {result.messages / seconds:,.0f} | {seconds / result.messages * 1e6:.2f} |"

    return "\n".join([
        "## Consumers: Kafka to ClickHouse throughput",
        "",
        f"{result.messages:,} report_new_msg records (text messages, {BOTS} bots, {PARTITIONS} partitions) "
        f"read by one messages consumer process into an embedded ClickHouse (chdb), batches of "
        f"{result.batch_rows:,} rows, offsets committed after each insert. The raw rate is aiokafka alone "
        "reading the same topic in the same run (getmany, no decoding). Raw read and consumer run twice "
        "each, alternating (the second consumer run as another group, into another database), and each "
        "side's faster run is shown. Both are timed from their first fetched record, so the consumer "
        "group join is not counted.",
        "",
        "| stage | seconds | messages/s | µs per message |",
        "|---|---|---|---|",
        row("produce (acks=all, idempotent)", result.produce_s),
        row("raw aiokafka read", result.raw_s),
        row("**messages consumer: read, bulk insert, commit**", result.consumer_s),
        row("stage alone: bulk path, checking records and building the Avro container (Python)",
            stages.container_s),
        row("stage alone: bulk path, ClickHouse decodes the container and inserts the rows", stages.bulk_insert_s),
        row("stage alone: Python path, fastavro decode (one record a call)", stages.decode_s),
        row("stage alone: Python path, building the rows (consumers.messages.message_row)", stages.rows_s),
        row("stage alone: Python path, ClickHouse insert (clickhouse-connect, one batch)", stages.insert_s),
        "",
        f"- Consumer rate is **{share:.0%} of the raw read rate** (target at least {TARGET_SHARE:.0%}: {verdict}).",
        f"- Rows in `messages` afterwards: {result.rows_stored:,} (one per message).",
        "- Records take the bulk path (`consumers.messages.MessagesBulk`). The consumer checks each record's "
        "frame and looks for raw_msg XML to parse, then hands the whole batch to ClickHouse as one Avro "
        "object container, and the materialized view of migration 070 builds the rows.",
        "- Records with a link, card, mini program or file raw_msg, records of another schema version, and "
        "batches that ClickHouse rejects take the Python path (decode, rows, insert). Timed here on the same "
        f"records for comparison, it takes {python_s / result.messages * 1e6:.1f} µs per message "
        f"({result.messages / python_s:,.0f} messages/s).",
        "- The stages alone were timed on one batch of the same records and scaled to the run. The consumer "
        "reads the next batch while ClickHouse inserts one, so its time can be below their sum.",
        f"- The target allows {budget_us:.1f} µs of consumer time per message; the consumer took "
        f"{per_message_us:.1f} µs.",
        f"- Run {when} on {platform.machine()}, {os.cpu_count()} cores shared with Kafka and other work; "
        "indicative numbers.",
        "",
    ])


def _earlier_runs() -> str:
    """Return the hand-kept section of the results file that follows this run's section."""
    if not RESULTS.exists():
        return ""
    old = RESULTS.read_text(encoding="utf-8")
    start = old.find(EARLIER_RUNS)
    return "\n" + old[start:] if start >= 0 else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.consumer_throughput", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=MAX_MESSAGES,
                        help=f"records to produce and consume (at most {MAX_MESSAGES:,})")
    parser.add_argument("--batch-rows", type=int, default=50_000, help="WEHUB_BATCH_MAX_ROWS of the consumer")
    arguments = parser.parse_args(argv)
    count = min(max(1000, arguments.messages), MAX_MESSAGES)
    bootstrap = os.environ.get("WEHUB_KAFKA_BOOTSTRAP", "")
    if not bootstrap:
        parser.error("WEHUB_KAFKA_BOOTSTRAP is not set: name the Kafka broker to benchmark against")
    with tempfile.TemporaryDirectory(prefix="wehub-consumer-bench-") as work_dir:
        settings = settings_module.load({
            "WEHUB_KAFKA_BOOTSTRAP": bootstrap,
            "WEHUB_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:8]}",
            "WEHUB_TOPIC_PARTITIONS": str(PARTITIONS),
            "WEHUB_DATA_DIR": work_dir,
            "WEHUB_CLICKHOUSE_DSN": f"chdb://{Path(work_dir) / 'clickhouse'}",
            "WEHUB_BATCH_MAX_ROWS": str(arguments.batch_rows),
            "WEHUB_BATCH_MAX_WAIT_MS": "1000",
        })
        result = asyncio.run(measure(settings, count))
    text = report(result)
    RESULTS.write_text(text + _earlier_runs(), encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
