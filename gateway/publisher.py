"""The gateway's Kafka producer: bounded in-flight sends, a deadline on every publish, self-repair.

aiokafka has no buffer.memory or max.block.ms, so `max_in_flight` bounds the requests waiting for
Kafka (more wait for a slot until their deadline), and every publish runs under `kafka_timeout_s`
so WeHub (which waits 30 s) always gets an answer. An idempotent aiokafka producer can keep failing with
OutOfOrderSequenceNumber after a broker restart until it is recreated. Any fatal producer error,
or several timeouts in a row, therefore drops the producer, and the next publish starts a fresh
one.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    IllegalStateError,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    KafkaError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    ProducerFenced,
    RecordTooLargeError,
    UnknownProducerId,
)

from gateway import errors, metrics
from wehub.kafka import KeyPartitioner, make_producer
from wehub.settings import Settings

log = logging.getLogger(__name__)

_FATAL_PRODUCER_ERRORS = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    ProducerFenced,
    ProducerClosed,
    IllegalStateError,
)
_TIMEOUTS_BEFORE_RESTART = 3
# After a failed start, requests fail at once for this long instead of each dialling Kafka again.
_START_RETRY_INTERVAL_S = 0.5
_STOP_TIMEOUT_S = 5.0
# How often publishes past their deadline are looked for, so a timeout fires up to this late.
_DEADLINE_CHECK_S = 0.1


class _Deadline:
    """When one publish times out, and whether it finished first; one per publish."""

    __slots__ = ("at", "expired", "finished", "task")

    def __init__(self, at: float, task: asyncio.Task[Any]) -> None:
        self.at = at
        self.task = task
        self.finished = False
        self.expired = False


def _gateway_producer(settings: Settings) -> AIOKafkaProducer:
    # Every answer waits for its record's acknowledgement, so lingering to fill a batch delays
    # every answer; under load batches form anyway while the previous request to the broker is
    # in flight (aiokafka sends one at a time per broker).
    return make_producer(settings, linger_ms=0)


class Record(NamedTuple):
    """One Kafka record to write: topic, key (the bot's wxid) and the encoded value."""

    topic: str
    key: bytes
    value: bytes


class PublishError(Exception):
    """Kafka did not acknowledge; `code` is KAFKA_UNAVAILABLE, OVERLOADED or RECORD_TOO_LARGE."""

    def __init__(self, code: errors.ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class Publisher:
    """Writes records with acks=all and waits for the acknowledgement; one per process.

    `publish` never blocks longer than `kafka_timeout_s` and raises PublishError instead.
    A record whose send timed out may still reach Kafka later: delivery is at least once.
    """

    def __init__(
        self, settings: Settings, factory: Callable[[Settings], AIOKafkaProducer] = _gateway_producer
    ) -> None:
        self._settings = settings
        self._factory = factory
        self.timeout_s = float(settings.kafka_timeout_s)
        self.max_in_flight = int(settings.max_in_flight)
        self._in_flight = 0
        # Publishes waiting for one of the max_in_flight slots, first come first served.
        self._slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        # Read at scrape time instead of a gauge updated twice per request on the hot path. With
        # several workers /metrics reads every worker's file, so the gauge is written as it changes.
        self._write_in_flight = metrics.MULTIPROCESS
        if not self._write_in_flight:
            metrics.IN_FLIGHT.set_function(lambda: self._in_flight)
        self._producer: AIOKafkaProducer | None = None
        self._starting: asyncio.Lock | None = None
        self._start_failed_at = -_START_RETRY_INTERVAL_S
        self._start_failure = ""
        self._timeouts_in_a_row = 0
        self._closing: set[asyncio.Task[None]] = set()
        # Deadlines in the order they fall due (every publish gets the same timeout), checked by
        # one watcher task: asyncio.timeout per request cost 6-8 µs of the gateway's ~73.
        self._deadlines: collections.deque[_Deadline] = collections.deque()
        self._watcher: asyncio.Task[None] | None = None
        self._partitioner = KeyPartitioner()

    @property
    def producer(self) -> AIOKafkaProducer | None:
        """The started producer, or None while Kafka is unreachable; it may be replaced at any time."""
        return self._producer

    async def start(self) -> None:
        """Try to connect; an unreachable Kafka is logged and retried by later publishes."""
        try:
            await asyncio.wait_for(self._ensure_producer(), self.timeout_s)
        except (TimeoutError, PublishError) as error:
            log.warning(
                "Kafka is not reachable at start, the gateway answers with errors until it is: %s",
                error or "timeout",
            )

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        producer, self._producer = self._producer, None
        if producer is not None:
            await self._stop_quietly(producer)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def publish(self, records: Sequence[Record]) -> None:
        """Send `records` and wait until Kafka acknowledged all of them; raises PublishError."""
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        if self._in_flight >= self.max_in_flight or self._slot_waiters:
            await self._wait_for_slot(deadline)
        self._take_slot()
        started = time.perf_counter()
        watched = self._watch(deadline)
        try:
            producer = self._producer or await self._ensure_producer()
            if len(records) == 1:
                record = records[0]
                # Naming the partition skips aiokafka's partitioner call, which builds two sets and
                # two lists of the topic's partitions for every record.
                partitions = producer.client.cluster.partitions_for_topic(record.topic)
                partition = self._partitioner.partition(record.key, len(partitions)) if partitions else None
                await (await producer.send(record.topic, record.value, key=record.key, partition=partition))
            else:
                await self._send_all(producer, records)
        except asyncio.CancelledError:
            # Another cancellation (the server stopping) goes on; only the watcher's becomes a timeout.
            if not watched.expired or watched.task.uncancel() > 0:
                raise
            self._note_timeout()
            raise PublishError(
                errors.KAFKA_UNAVAILABLE, f"no acknowledgement within {self.timeout_s:g} s"
            ) from None
        except (MessageSizeTooLargeError, RecordTooLargeError) as error:
            raise PublishError(errors.RECORD_TOO_LARGE, type(error).__name__) from None
        except KafkaError as error:
            if isinstance(error, _FATAL_PRODUCER_ERRORS) or not error.retriable:
                self._discard_producer(type(error).__name__)
            raise PublishError(errors.KAFKA_UNAVAILABLE, type(error).__name__) from None
        finally:
            watched.finished = True
            self._free_slot()
        metrics.PRODUCE_DURATION.observe(time.perf_counter() - started)
        self._timeouts_in_a_row = 0

    async def _wait_for_slot(self, deadline: float) -> None:
        """Wait, in turn, until fewer than `max_in_flight` publishes wait for Kafka; PublishError at `deadline`."""
        loop = asyncio.get_running_loop()
        while self._in_flight >= self.max_in_flight:
            waiter: asyncio.Future[None] = loop.create_future()
            self._slot_waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException as error:
                if waiter.done() and not waiter.cancelled():
                    # Woken, then cancelled or timed out before taking the slot: pass the turn on.
                    self._wake_next_waiter()
                waiter.cancel()
                if isinstance(error, TimeoutError):
                    raise PublishError(errors.OVERLOADED, f"{self.max_in_flight} requests in flight") from None
                raise

    def _take_slot(self) -> None:
        self._in_flight += 1
        if self._write_in_flight:
            metrics.IN_FLIGHT.inc()

    def _free_slot(self) -> None:
        self._in_flight -= 1
        if self._write_in_flight:
            metrics.IN_FLIGHT.dec()
        if self._slot_waiters:
            self._wake_next_waiter()

    def _wake_next_waiter(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _watch(self, deadline: float) -> _Deadline:
        """Register the running publish, to be cancelled when it is still running at `deadline` (loop time)."""
        task = asyncio.current_task()
        assert task is not None
        watched = _Deadline(deadline, task)
        self._deadlines.append(watched)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._expire_deadlines())
        return watched

    async def _expire_deadlines(self) -> None:
        loop = asyncio.get_running_loop()
        deadlines = self._deadlines
        while True:
            await asyncio.sleep(_DEADLINE_CHECK_S)
            now = loop.time()
            while deadlines and (deadlines[0].finished or deadlines[0].at <= now):
                watched = deadlines.popleft()
                if not watched.finished:
                    watched.expired = True
                    watched.task.cancel()

    async def ready(self) -> bool:
        """True when a metadata request reached a broker within the timeout."""
        try:
            async with asyncio.timeout(min(self.timeout_s, 5.0)):
                producer = await self._ensure_producer()
                await producer.client.fetch_all_metadata()
        except (TimeoutError, PublishError, KafkaError, OSError):
            metrics.KAFKA_READY.set(0)
            return False
        metrics.KAFKA_READY.set(1)
        return True

    @staticmethod
    async def _send_all(producer: AIOKafkaProducer, records: Sequence[Record]) -> None:
        acknowledgements = [
            await producer.send(record.topic, record.value, key=record.key) for record in records
        ]
        await asyncio.gather(*acknowledgements)

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._producer is not None:
                return self._producer
            if time.monotonic() - self._start_failed_at < _START_RETRY_INTERVAL_S:
                raise PublishError(errors.KAFKA_UNAVAILABLE, self._start_failure)
            producer = self._factory(self._settings)
            try:
                await producer.start()
            except KafkaError as error:
                self._start_failed_at = time.monotonic()
                metrics.KAFKA_READY.set(0)
                self._start_failure = type(error).__name__
                self._close_in_background(producer)
                raise PublishError(errors.KAFKA_UNAVAILABLE, self._start_failure) from None
            except BaseException:
                # Cancelled by the caller's deadline: the half-started producer must not leak.
                self._start_failed_at = time.monotonic()
                metrics.KAFKA_READY.set(0)
                self._start_failure = "timeout while connecting"
                self._close_in_background(producer)
                raise
            self._producer = producer
            metrics.KAFKA_READY.set(1)
            log.info("Kafka producer started")
            return producer

    def _note_timeout(self) -> None:
        self._timeouts_in_a_row += 1
        if self._timeouts_in_a_row >= _TIMEOUTS_BEFORE_RESTART:
            self._discard_producer(f"{self._timeouts_in_a_row} timeouts in a row")

    def _discard_producer(self, why: str) -> None:
        producer, self._producer = self._producer, None
        self._timeouts_in_a_row = 0
        if producer is None:
            return
        metrics.PRODUCER_RESTARTS.inc()
        metrics.KAFKA_READY.set(0)
        log.warning("Kafka producer dropped, the next request starts a new one: %s", why)
        self._close_in_background(producer)

    def _close_in_background(self, producer: AIOKafkaProducer) -> None:
        task = asyncio.get_running_loop().create_task(self._stop_quietly(producer))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _stop_quietly(producer: AIOKafkaProducer) -> None:
        try:
            await asyncio.wait_for(producer.stop(), _STOP_TIMEOUT_S)
        except Exception as error:
            # Undelivered batches of a dropped producer fail their own futures; nothing else to do.
            log.debug("closing a Kafka producer failed: %s", type(error).__name__)

    def describe(self) -> dict[str, Any]:
        return {"producer_started": self._producer is not None, "max_in_flight": self.max_in_flight}
