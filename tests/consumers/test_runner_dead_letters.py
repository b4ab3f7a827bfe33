"""The runner's dead letters while it reads ahead and retries: none dropped, none sent twice by a retry."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

import pytest
from aiokafka.errors import KafkaConnectionError

from consumers.clickhouse import StoreError
from consumers.messages import MessagesProcessor
from consumers.runner import Runner, _DeadLetter
from wehub import kafka
from wehub.settings import Settings

POISON = b"\xc3\x01" + bytes(8) + b"not a record"


class Message(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class RejectingBulk:
    """A bulk path that takes every record, then rejects every batch as ClickHouse would."""

    def __init__(self) -> None:
        self.inserts = 0

    def accepts(self, value: bytes) -> bool:
        return True

    def insert(self, client: Any, database: str, values: list[bytes]) -> list[int]:
        self.inserts += 1
        raise StoreError("ClickHouse failed while inserting: code 117", retriable=False)


class Producer:
    """Records what it sends; fails the first `failures` sends, and runs `during_send` on each."""

    def __init__(self, failures: int = 0, during_send: Any = None) -> None:
        self.failures = failures
        self.during_send = during_send
        self.sent: list[bytes] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[None]:
        if self.during_send is not None:
            self.during_send()
        if self.failures:
            self.failures -= 1
            raise KafkaConnectionError("broker unreachable")
        self.sent.append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _runner(settings: Settings, bulk: RejectingBulk | None = None) -> Runner:
    processor = MessagesProcessor(settings)
    if bulk is not None:
        processor.bulk = bulk  # type: ignore[assignment]
    return Runner(settings, processor, client=object())  # type: ignore[arg-type]


async def test_letters_queued_during_send_stay_queued(pipeline_settings: Settings) -> None:
    runner = _runner(pipeline_settings)
    runner._dead = [_DeadLetter(b"bot", b"first")]
    producer = Producer(during_send=lambda: runner._dead.append(_DeadLetter(b"bot", b"read ahead")))

    await runner._send_dead_letters(producer)

    assert producer.sent == [b"first"]
    assert [letter.value for letter in runner._dead] == [b"read ahead"]


async def test_failed_send_keeps_letters_for_next_call(pipeline_settings: Settings) -> None:
    runner = _runner(pipeline_settings)
    runner._dead = [_DeadLetter(b"bot", b"first")]
    producer = Producer(failures=1)

    with pytest.raises(kafka.PipelineKafkaError):
        await runner._send_dead_letters(producer)
    await runner._send_dead_letters(producer)

    assert producer.sent == [b"first"]
    assert runner._dead == []


async def test_retried_bulk_batch_repeats_neither_insert_nor_letter(pipeline_settings: Settings) -> None:
    bulk = RejectingBulk()
    runner = _runner(pipeline_settings, bulk)
    producer = Producer(failures=1)
    runner._producer = producer
    raw = [Message(pipeline_settings.topic("report_new_msg"), 0, 5, b"bot", POISON)]

    with pytest.raises(kafka.PipelineKafkaError):
        await runner._insert_bulk(raw)
    events = await runner._insert_bulk(raw)

    assert events == []
    assert bulk.inserts == 1
    assert len(producer.sent) == 1
