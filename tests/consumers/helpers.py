"""Running consumers inside a test until they have committed everything on their topics, and reading what they sent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from consumers import registry
from consumers.runner import Runner
from schemas import topics
from schemas.codec import CODEC
from wehub import kafka
from wehub.settings import Settings

# The consumers this package owns; tasks and media have tests of their own.
ANALYTICS_CONSUMERS = ("messages", "contacts", "rooms", "sessions")


async def committed_everything(settings: Settings, names: Sequence[str]) -> bool:
    """True when each named consumer's group has committed the end offset of every partition it reads."""
    bootstrap = kafka.bootstrap_servers(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await probe.start()
    try:
        for name in names:
            processor = registry.factory(name)(settings)
            topic_names = [settings.topic(suffix) for suffix in processor.topic_suffixes()]
            described = await admin.describe_topics(topic_names)
            partitions = [TopicPartition(topic["topic"], partition["partition"])
                          for topic in described for partition in topic["partitions"]]
            if not partitions:
                return False
            ends = await probe.end_offsets(partitions)
            group = f"{settings.topic_prefix}.consumer.{name}"
            try:
                committed = await admin.list_consumer_group_offsets(group)
            except KafkaError:
                return False  # the group's coordinator is still being elected
            for partition, end in ends.items():
                done = committed.get(partition)
                if end > 0 and (done is None or done.offset < end):
                    return False
        return True
    finally:
        await probe.stop()
        await admin.close()


async def run_until_drained(settings: Settings, names: Sequence[str] | None = None, timeout_s: float = 120.0,
                            client: Any = None) -> list[Runner]:
    """Run the consumers until their groups committed every record, then stop them."""
    names = list(names or ANALYTICS_CONSUMERS)
    runners = [Runner(settings, registry.factory(name)(settings), client) for name in names]
    tasks = [asyncio.ensure_future(runner.run()) for runner in runners]
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            await asyncio.sleep(0.5)
            for task in tasks:
                if task.done():
                    task.result()
            if await committed_everything(settings, names):
                return runners
            if time.monotonic() > deadline:
                raise TimeoutError(f"consumers did not commit every record within {timeout_s:.0f} s")
    finally:
        for runner in runners:
            runner.stop()
        await asyncio.gather(*tasks, return_exceptions=True)


async def read_dead_letters(settings: Settings, expected: int) -> list[dict[str, Any]]:
    """Read `expected` records of the dead-letter topic from its start, decoded; fails after 30 s."""
    consumer = AIOKafkaConsumer(settings.topic(topics.DEAD_LETTER), bootstrap_servers=kafka.bootstrap_servers(settings),
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    letters: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(30):
            while len(letters) < expected:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    letters.extend(CODEC.decode(message.value)[1] for message in messages)
    finally:
        await consumer.stop()
    return letters
