"""The media bucket in MinIO: object keys, content-addressed writes and MinIO errors in one place.

An object's key is `<appid>/<bot wxid>/<YYYY-MM-DD>/<sha256>`, so the same bytes from the same
bot on the same UTC day always land on the same key, and a key that exists is never rewritten.

The sha256 of a stream is known only at its end. `MediaSink` keeps a file of up to
`part_size_bytes` in memory and writes it straight to its key. A larger file is streamed to a
temporary object under `incoming/` while it arrives, one part at a time, and once the last
byte is in, it is copied server-side to its final key and the temporary object is removed. So
memory stays near two parts per upload, the gateway needs no local disk, and the copy of a
finished file costs MinIO a server-side copy, not a second network transfer.

The minio client is synchronous: every call here runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import io
import logging
import queue
import uuid
from dataclasses import dataclass
from typing import Any, BinaryIO, cast
from urllib.parse import quote

import urllib3
from minio import Minio
from minio.commonconfig import REPLACE, CopySource
from minio.error import MinioException, S3Error

from wehub.settings import Settings

log = logging.getLogger(__name__)

LOCAL_S3_HOST = "127.0.0.1"
INCOMING_PREFIX = "incoming/"
# S3's smallest multipart part (5 MiB) rounded up; a file below this size is never multipart.
DEFAULT_PART_SIZE_BYTES = 8 * 1024 * 1024
_PIPE_BLOCK_BYTES = 1024 * 1024
_PIPE_MAX_BLOCKS = 4
# A stalled client or MinIO must not pin a worker thread forever.
_PIPE_TIMEOUT_S = 120.0
_CONNECT_TIMEOUT_S = 5.0
_READ_TIMEOUT_S = 120.0
_NOT_FOUND_CODES = {"NoSuchKey", "NoSuchObject", "ResourceNotFound"}


class MediaStoreError(RuntimeError):
    """A MinIO failure; `retriable` is true when the same call may succeed later."""

    def __init__(self, message: str, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


def translate(error: BaseException, doing: str) -> MediaStoreError:
    """Map a minio or urllib3 error to MediaStoreError, without object contents."""
    if isinstance(error, S3Error):
        retriable = error.code in {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout"}
        return MediaStoreError(f"MinIO failed while {doing}: {error.code}", retriable)
    if isinstance(error, (urllib3.exceptions.HTTPError, OSError, TimeoutError)):
        return MediaStoreError(f"MinIO is unreachable while {doing}: {type(error).__name__}", retriable=True)
    if isinstance(error, MinioException):
        return MediaStoreError(f"MinIO failed while {doing}: {type(error).__name__}", retriable=False)
    return MediaStoreError(f"unexpected failure while {doing}: {type(error).__name__}", retriable=False)


def object_key(appid: str, bot_wxid: str, day: dt.date, sha256: str) -> str:
    """Build the key of a file's bytes; raises ValueError when an id cannot be a path segment.

    NOTE: the upload day is part of the key, so the same bytes uploaded on two days are stored twice.
    """
    for name, value in (("appid", appid), ("bot wxid", bot_wxid)):
        if not value or "/" in value or "\\" in value or value in (".", "..") or not value.isprintable():
            raise ValueError(
                f"{name} {value!r} is invalid as an object key segment: expected a printable id without /"
            )
    return f"{appid}/{bot_wxid}/{day.isoformat()}/{sha256}"


@dataclass(frozen=True)
class StoredObject:
    """A file in the media bucket; `duplicate` is true when the key existed and was left as it was."""

    bucket: str
    key: str
    size: int
    sha256: str
    content_type: str
    duplicate: bool


def make_client(settings: Settings) -> Minio:
    """Create a minio client on WEHUB_S3_ENDPOINT (or the local MinIO) with bounded timeouts."""
    endpoint = str(settings.s3_endpoint).strip() or f"{LOCAL_S3_HOST}:{settings.s3_port}"
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=_CONNECT_TIMEOUT_S, read=_READ_TIMEOUT_S),
        retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        maxsize=16,
    )
    return Minio(
        endpoint,
        access_key=str(settings.s3_access_key),
        secret_key=str(settings.s3_secret_key),
        secure=bool(settings.s3_secure),
        http_client=http,
    )


def metadata_header(value: str) -> str:
    """`value` percent-encoded, because S3 metadata travels as ASCII HTTP headers."""
    return quote(value, safe=" ._-()[]@")


class MediaStore:
    """The media bucket: created on first use; every method is safe to call from the event loop."""

    def __init__(self, client: Minio, bucket: str, part_size_bytes: int = DEFAULT_PART_SIZE_BYTES) -> None:
        self.client = client
        self.bucket = bucket
        self.part_size_bytes = part_size_bytes
        self._bucket_ready = False
        self._bucket_lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> MediaStore:
        return cls(make_client(settings), str(settings.media_bucket))

    async def ensure_bucket(self) -> None:
        """Create the bucket when it is missing; idempotent, raises MediaStoreError."""
        if self._bucket_ready:
            return
        async with self._bucket_lock:
            if self._bucket_ready:
                return
            await asyncio.to_thread(self._ensure_bucket_blocking)
            self._bucket_ready = True

    def _ensure_bucket_blocking(self) -> None:
        try:
            if not self.client.bucket_exists(self.bucket):
                self.client.make_bucket(self.bucket)
                log.info("created media bucket", extra={"bucket": self.bucket})
        except S3Error as error:
            # Another process creating it at the same moment is not a failure.
            if error.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise translate(error, f"creating bucket {self.bucket}") from None
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as error:
            raise translate(error, f"creating bucket {self.bucket}") from None

    def exists_blocking(self, key: str) -> bool:
        try:
            self.client.stat_object(self.bucket, key)
            return True
        except S3Error as error:
            if error.code in _NOT_FOUND_CODES:
                return False
            raise translate(error, "checking an object") from None
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as error:
            raise translate(error, "checking an object") from None

    async def read(self, key: str) -> tuple[bytes, dict[str, Any]]:
        """Read an object's bytes and headers whole into memory (for tests and tools)."""
        def _read() -> tuple[bytes, dict[str, Any]]:
            response = self.client.get_object(self.bucket, key)
            try:
                return response.read(), dict(response.headers)
            finally:
                response.close()
                response.release_conn()

        try:
            return await asyncio.to_thread(_read)
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as error:
            raise translate(error, "reading an object") from None

    def sink(self, content_type: str, metadata: dict[str, str]) -> MediaSink:
        """Start writing one file; call `finish` with the key's ids, or `abort`."""
        return MediaSink(self, content_type, metadata)

    async def put_bytes(self, appid: str, bot_wxid: str, data: bytes, *, content_type: str,
                        metadata: dict[str, str], day: dt.date | None = None) -> StoredObject:
        """Store a small file held in memory; the same bytes twice store one object."""
        sink = self.sink(content_type, metadata)
        await sink.write(data)
        return await sink.finish(appid, bot_wxid, day)


class _BlockPipe:
    """Blocks handed from the event loop to the thread running minio's put_object, with backpressure.

    `write` waits on the loop while `_PIPE_MAX_BLOCKS` blocks are pending; `read` blocks the
    thread until a block arrives. Both give up after `_PIPE_TIMEOUT_S`.
    """

    _END = b""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._blocks: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=_PIPE_MAX_BLOCKS)
        self._space = asyncio.Event()
        self._current = memoryview(b"")
        self._ended = False

    async def write(self, block: bytes) -> None:
        while True:
            try:
                self._blocks.put_nowait(block)
                return
            except queue.Full:
                self._space.clear()
                if not self._blocks.full():
                    continue
                await asyncio.wait_for(self._space.wait(), _PIPE_TIMEOUT_S)

    async def close(self) -> None:
        await self.write(self._END)

    def fail(self, error: BaseException) -> None:
        """Make the reading thread raise `error` at its next read (drops pending blocks)."""
        while True:
            try:
                self._blocks.get_nowait()
            except queue.Empty:
                break
        with contextlib.suppress(queue.Full):
            self._blocks.put_nowait(error)

    def read(self, size: int = -1) -> bytes:
        if self._ended:
            return b""
        if not self._current:
            item = self._blocks.get(timeout=_PIPE_TIMEOUT_S)
            self._loop.call_soon_threadsafe(self._space.set)
            if isinstance(item, BaseException):
                raise item
            if item == self._END:
                self._ended = True
                return b""
            self._current = memoryview(item)
        count = len(self._current) if size < 0 else min(size, len(self._current))
        chunk = bytes(self._current[:count])
        self._current = self._current[count:]
        return chunk


class UploadAborted(Exception):
    """Raised inside the streaming thread when the upload was abandoned."""


class MediaSink:
    """One file written in chunks: hashed as it arrives, stored under its sha256 key at `finish`.

    Memory: up to one part in a buffer, plus the blocks in flight to MinIO and minio's own
    part buffer (about two parts) once the file is larger than one part.
    """

    def __init__(self, store: MediaStore, content_type: str, metadata: dict[str, str]) -> None:
        self.store = store
        self.content_type = content_type or "application/octet-stream"
        self.metadata = metadata
        self.size = 0
        self._hash = hashlib.sha256()
        self._buffer = bytearray()
        self._pipe: _BlockPipe | None = None
        self._upload: asyncio.Future[Any] | None = None
        self._temporary_key: str | None = None

    async def write(self, chunk: bytes) -> None:
        """Add bytes; may wait while MinIO catches up; raises MediaStoreError."""
        if not chunk:
            return
        self.size += len(chunk)
        self._hash.update(chunk)
        self._buffer += chunk
        if self._pipe is None and len(self._buffer) <= self.store.part_size_bytes:
            return
        if self._pipe is None:
            await self._start_streaming()
        while len(self._buffer) >= _PIPE_BLOCK_BYTES:
            await self._hand_over(bytes(self._buffer[:_PIPE_BLOCK_BYTES]))
            del self._buffer[:_PIPE_BLOCK_BYTES]

    async def _start_streaming(self) -> None:
        await self.store.ensure_bucket()
        loop = asyncio.get_running_loop()
        self._pipe = _BlockPipe(loop)
        self._temporary_key = f"{INCOMING_PREFIX}{uuid.uuid4().hex}"
        pipe, key = self._pipe, self._temporary_key

        def _put() -> Any:
            # One part in flight at a time: minio's parallel uploads queue parts without a bound.
            return self.store.client.put_object(
                self.store.bucket, key, cast(BinaryIO, pipe), length=-1, content_type=self.content_type,
                part_size=self.store.part_size_bytes, num_parallel_uploads=1,
            )

        self._upload = loop.run_in_executor(None, _put)

    async def _hand_over(self, block: bytes) -> None:
        assert self._pipe is not None and self._upload is not None
        if self._upload.done():
            await self._raise_upload_failure()
        try:
            await self._pipe.write(block)
        except TimeoutError:
            raise MediaStoreError("MinIO did not take a part in time while streaming an upload",
                                  retriable=True) from None

    async def _raise_upload_failure(self) -> None:
        assert self._upload is not None
        try:
            await self._upload
        except (MinioException, urllib3.exceptions.HTTPError, OSError, queue.Empty) as error:
            raise translate(error, "streaming an upload") from None
        raise MediaStoreError("MinIO ended the upload stream early", retriable=True)

    async def abort(self) -> None:
        """Abandon the file: the streaming thread stops and the temporary object is removed."""
        if self._pipe is None or self._upload is None:
            self._buffer.clear()
            return
        self._pipe.fail(UploadAborted())
        try:
            await self._upload
        except Exception:  # the upload failing is the point of aborting it
            log.debug("aborted upload stream ended", exc_info=True)
        await asyncio.to_thread(self._remove_temporary)

    def _remove_temporary(self) -> None:
        if self._temporary_key is None:
            return
        try:
            self.store.client.remove_object(self.store.bucket, self._temporary_key)
        except (MinioException, urllib3.exceptions.HTTPError, OSError):
            log.warning("temporary upload object not removed", extra={"key": self._temporary_key})

    async def finish(self, appid: str, bot_wxid: str, day: dt.date | None = None) -> StoredObject:
        """Store the file under its final key and return where; raises MediaStoreError.

        Idempotent per content: when the key exists, nothing is written and `duplicate` is true.
        """
        sha256 = self._hash.hexdigest()
        key = object_key(appid, bot_wxid, day or dt.datetime.now(dt.UTC).date(), sha256)
        metadata = {**self.metadata, "sha256": sha256}
        await self.store.ensure_bucket()
        if self._pipe is None:
            duplicate = await asyncio.to_thread(self._put_small_blocking, key, metadata)
        else:
            duplicate = await self._finish_streaming(key, metadata)
        return StoredObject(self.store.bucket, key, self.size, sha256, self.content_type, duplicate)

    def _put_small_blocking(self, key: str, metadata: dict[str, str]) -> bool:
        if self.store.exists_blocking(key):
            return True
        data = bytes(self._buffer)
        self._buffer.clear()
        try:
            self.store.client.put_object(
                self.store.bucket, key, io.BytesIO(data), length=len(data),
                content_type=self.content_type, metadata=dict(metadata),
            )
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as error:
            raise translate(error, "storing an upload") from None
        return False

    async def _finish_streaming(self, key: str, metadata: dict[str, str]) -> bool:
        assert self._pipe is not None and self._upload is not None
        if self._buffer:
            await self._hand_over(bytes(self._buffer))
            self._buffer.clear()
        try:
            await self._pipe.close()
        except TimeoutError:
            raise MediaStoreError("MinIO did not take the last part in time", retriable=True) from None
        try:
            await self._upload
        except (MinioException, urllib3.exceptions.HTTPError, OSError, queue.Empty) as error:
            await asyncio.to_thread(self._remove_temporary)
            raise translate(error, "streaming an upload") from None
        try:
            return await asyncio.to_thread(self._move_blocking, key, metadata)
        finally:
            await asyncio.to_thread(self._remove_temporary)

    def _move_blocking(self, key: str, metadata: dict[str, str]) -> bool:
        assert self._temporary_key is not None
        if self.store.exists_blocking(key):
            return True
        headers: dict[str, Any] = {**metadata, "Content-Type": self.content_type}
        # NOTE: S3 copies at most 5 GiB in one CopyObject, so a larger upload limit would need compose.
        try:
            self.store.client.copy_object(
                self.store.bucket, key, CopySource(self.store.bucket, self._temporary_key),
                metadata=headers, metadata_directive=REPLACE,
            )
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as error:
            raise translate(error, "copying an upload to its key") from None
        return False
