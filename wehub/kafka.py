"""Kafka clients on the pipeline's settings, and aiokafka errors translated in one place.

Every producer is idempotent with acks=all: aiokafka's defaults (acks=1, no idempotence) could
lose an event that the gateway already acknowledged to WeHub.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner, murmur2

from schemas import topics
from wehub.settings import Settings

log = logging.getLogger(__name__)

LOCAL_KAFKA_HOST = "127.0.0.1"
_DEFAULT_PARTITIONER = DefaultPartitioner()


class PipelineKafkaError(RuntimeError):
    """A Kafka failure; `retriable` is true when the same call may succeed later."""

    def __init__(self, message: str, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


def translate(error: BaseException, doing: str) -> PipelineKafkaError:
    """Map an aiokafka or timeout error to PipelineKafkaError, without its payload."""
    if isinstance(error, (KafkaConnectionError, KafkaTimeoutError, TimeoutError, ConnectionError)):
        return PipelineKafkaError(f"Kafka is unreachable while {doing}: {type(error).__name__}", retriable=True)
    if isinstance(error, KafkaError):
        return PipelineKafkaError(f"Kafka failed while {doing}: {type(error).__name__}", bool(error.retriable))
    return PipelineKafkaError(f"unexpected failure while {doing}: {type(error).__name__}", retriable=False)


def bootstrap_servers(settings: Settings) -> str:
    """Return the configured brokers, or the local broker of `deploy/local` when none is configured."""
    configured = str(settings.kafka_bootstrap).strip()
    return configured or f"{LOCAL_KAFKA_HOST}:{settings.kafka_port}"


class KeyPartitioner:
    """aiokafka's DefaultPartitioner (the Java client's murmur2 of the key), remembering each key's hash.

    The keys are bot wxids, a few per gateway, and pure-Python murmur2 cost about 2 µs a record.
    """

    _MAX_KEYS = 65536

    def __init__(self) -> None:
        self._hashes: dict[bytes, int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return int(_DEFAULT_PARTITIONER(key, all_partitions, available))
        return all_partitions[self._hash(key) % len(all_partitions)]

    def partition(self, key: bytes, partition_count: int) -> int:
        """Return the partition of `key` in a topic of partitions 0 to partition_count - 1, as Kafka numbers them."""
        return self._hash(key) % partition_count

    def _hash(self, key: bytes) -> int:
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self._MAX_KEYS:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return hashed


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """Create an idempotent acks=all producer; start() it inside the running event loop."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(settings),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 2,
        "max_request_size": int(settings.kafka_max_message_bytes) + 64 * 1024,
        "request_timeout_ms": max(1000, int(float(settings.kafka_timeout_s) * 1000)),
        "compression_type": None,
        "partitioner": KeyPartitioner(),
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def make_consumer(settings: Settings, *topic_names: str, group_id: str | None, **overrides: Any) -> AIOKafkaConsumer:
    """Create a consumer that never auto-commits, because callers commit after their write succeeded."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(settings),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": 8 * 1024 * 1024,
        "fetch_max_bytes": 64 * 1024 * 1024,
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topic_names, **options)


@dataclass(frozen=True)
class TopicSpec:
    """A topic to create: name, partitions and its topic-level configs."""

    name: str
    partitions: int
    configs: dict[str, str]


def pipeline_topics(settings: Settings) -> list[TopicSpec]:
    """List every topic of the pipeline with its partitions and configs."""
    prefix = str(settings.topic_prefix)
    partitions = int(settings.topic_partitions)
    max_bytes = str(int(settings.kafka_max_message_bytes) + 64 * 1024)
    specs = []
    for suffix in topics.all_topic_suffixes():
        configs = {"max.message.bytes": max_bytes}
        if suffix in topics.COMPACTED:
            configs.update({"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"})
        specs.append(TopicSpec(topics.topic_name(prefix, suffix), partitions, configs))
    return specs


async def ensure_topics(settings: Settings, specs: Iterable[TopicSpec], timeout_s: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet and return the names created; idempotent.

    Several processes may call it at once: a topic another process created first is not an error.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(settings), request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        existing = set(await asyncio.wait_for(admin.list_topics(), timeout_s))
        wanted = [spec for spec in specs if spec.name not in existing]
        created = []
        for spec in wanted:
            new = NewTopic(spec.name, num_partitions=spec.partitions, replication_factor=1, topic_configs=spec.configs)
            try:
                await asyncio.wait_for(admin.create_topics([new]), timeout_s)
                created.append(spec.name)
            except TopicAlreadyExistsError:
                continue
        if created:
            log.info("created %d topics", len(created), extra={"topics": created})
        return created
    except (TimeoutError, KafkaError, OSError) as error:
        raise translate(error, "creating topics") from None
    finally:
        await admin.close()
