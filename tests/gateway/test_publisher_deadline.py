"""A publish that Kafka never acknowledges fails with a timeout; cancelling it from outside still cancels it."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest

from gateway import errors
from gateway.publisher import Publisher, PublishError, Record
from wehub.settings import Settings

RECORD = Record("topic", b"bot", b"value")


class _UnknownTopics:
    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return None


class SilentProducer:
    """A started producer whose sends are never acknowledged."""

    client = SimpleNamespace(cluster=_UnknownTopics())

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None
    ) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()


def _publisher(settings: Settings) -> Publisher:
    return Publisher(settings.with_overrides(kafka_timeout_s=0.3), factory=lambda _: SilentProducer())  # type: ignore[arg-type,return-value]


async def test_unacknowledged_publish_times_out(pipeline_settings: Settings) -> None:
    publisher = _publisher(pipeline_settings)
    started = time.monotonic()

    with pytest.raises(PublishError) as raised:
        await publisher.publish([RECORD])

    assert raised.value.code is errors.KAFKA_UNAVAILABLE
    assert "no acknowledgement within 0.3 s" in raised.value.detail
    assert 0.3 <= time.monotonic() - started < 2.0
    await publisher.stop()


async def test_cancelled_publish_stays_cancelled(pipeline_settings: Settings) -> None:
    publisher = _publisher(pipeline_settings)
    publishing = asyncio.ensure_future(publisher.publish([RECORD]))
    await asyncio.sleep(0.05)

    publishing.cancel()

    with pytest.raises(asyncio.CancelledError):
        await publishing
    await publisher.stop()


class HeldProducer(SilentProducer):
    """A producer whose sends are acknowledged when the test calls acknowledge_first."""

    def __init__(self) -> None:
        self.pending: list[asyncio.Future[Any]] = []

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None
    ) -> asyncio.Future[Any]:
        acknowledgement = asyncio.get_running_loop().create_future()
        self.pending.append(acknowledgement)
        return acknowledgement

    def acknowledge_first(self) -> None:
        self.pending.pop(0).set_result(None)


async def test_publish_past_max_in_flight_waits_for_slot(pipeline_settings: Settings) -> None:
    producer = HeldProducer()
    settings = pipeline_settings.with_overrides(kafka_timeout_s=5, max_in_flight=2)
    publisher = Publisher(settings, factory=lambda _: producer)  # type: ignore[arg-type,return-value]
    first = asyncio.create_task(publisher.publish([RECORD]))
    second = asyncio.create_task(publisher.publish([RECORD]))
    third = asyncio.create_task(publisher.publish([RECORD]))
    await asyncio.sleep(0.05)

    assert len(producer.pending) == 2, "the third publish waits for a slot"
    producer.acknowledge_first()
    await asyncio.wait_for(first, 1)
    await asyncio.sleep(0.05)
    assert len(producer.pending) == 2, "the third publish took the freed slot"
    producer.acknowledge_first()
    producer.acknowledge_first()
    await asyncio.wait_for(asyncio.gather(second, third), 1)
    await publisher.stop()


async def test_publish_waiting_for_slot_times_out_overloaded(pipeline_settings: Settings) -> None:
    producer = HeldProducer()
    settings = pipeline_settings.with_overrides(kafka_timeout_s=0.3, max_in_flight=1)
    publisher = Publisher(settings, factory=lambda _: producer)  # type: ignore[arg-type,return-value]
    # The only slot stays taken for the whole test, as by a publish that Kafka never acknowledges.
    publisher._take_slot()

    with pytest.raises(PublishError) as raised:
        await publisher.publish([RECORD])

    assert raised.value.code is errors.OVERLOADED
    assert producer.pending == []
    publisher._free_slot()
    await publisher.stop()
