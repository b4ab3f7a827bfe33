"""CoalescingTransport: one write per loop turn, bytes in order, nothing lost on close."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from gateway.http_protocol import CoalescingTransport


class _Reader(asyncio.Protocol):
    def __init__(self) -> None:
        self.received = bytearray()
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _CountingTransport(asyncio.Transport):
    """A real socket transport that counts the writes it is given."""

    def __init__(self, inner: asyncio.Transport) -> None:
        super().__init__()
        self.inner = inner
        self.writes: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        self.inner.write(data)

    def write_eof(self) -> None:
        self.inner.write_eof()

    def close(self) -> None:
        self.inner.close()

    def abort(self) -> None:
        self.inner.abort()

    def is_closing(self) -> bool:
        return self.inner.is_closing()

    def get_write_buffer_size(self) -> int:
        return self.inner.get_write_buffer_size()


@pytest.fixture
async def pair() -> AsyncIterator[tuple[_CountingTransport, _Reader]]:
    loop = asyncio.get_running_loop()
    left, right = socket.socketpair()
    writer_transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, left)
    _, reader = await loop.connect_accepted_socket(_Reader, right)
    counting = _CountingTransport(writer_transport)
    yield counting, reader
    writer_transport.abort()


async def _turns(count: int = 3) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_writes_of_one_turn_go_as_one(pair: tuple[_CountingTransport, _Reader]) -> None:
    inner, reader = pair
    transport = CoalescingTransport(inner, asyncio.get_running_loop())

    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"{}")
    await _turns()
    transport.write(b"second")
    await asyncio.sleep(0.05)

    assert inner.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", b"second"]
    assert bytes(reader.received) == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}second"


async def test_close_sends_waiting_bytes_first(pair: tuple[_CountingTransport, _Reader]) -> None:
    inner, reader = pair
    transport = CoalescingTransport(inner, asyncio.get_running_loop())

    transport.write(b"last ")
    transport.writelines([b"words", b"!"])
    transport.close()
    await asyncio.wait_for(reader.closed, 5)

    assert bytes(reader.received) == b"last words!"
    assert transport.is_closing()


async def test_write_eof_sends_waiting_bytes_first(pair: tuple[_CountingTransport, _Reader]) -> None:
    inner, reader = pair
    transport = CoalescingTransport(inner, asyncio.get_running_loop())

    transport.write(b"before eof")
    transport.write_eof()
    await asyncio.sleep(0.05)

    assert bytes(reader.received) == b"before eof"


async def test_abort_drops_waiting_bytes(pair: tuple[_CountingTransport, _Reader]) -> None:
    inner, reader = pair
    transport = CoalescingTransport(inner, asyncio.get_running_loop())

    transport.write(b"never sent")
    assert transport.get_write_buffer_size() == len(b"never sent")
    transport.abort()
    await asyncio.wait_for(reader.closed, 5)
    await _turns()

    assert inner.writes == []
    assert bytes(reader.received) == b""
