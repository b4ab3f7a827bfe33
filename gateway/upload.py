"""POST /wehub/upload: WeHub's file upload, streamed into the media bucket.

WeHub sends `multipart/form-data` with a text part `file_index` and a file part `file`. The
protocol's form does not name the appid or bot that uploads, so the upload URL
configured in WeHub must carry them: `/wehub/upload?appid=APPID&wxid=BOT_WXID&token=URL_TOKEN`
(`token` only when the appid has a url_token). Parts named appid, wxid and token are accepted
too, when they come before the file part. The same rules as the callback apply: a known appid,
its url_token when it has one, a bot on its whitelist.

The body is read with `request.stream()` and parsed by streaming-form-data, because Starlette's
`request.form()` would buffer the whole file. The file's bytes go to a `MediaSink` as they
arrive (see wehub/media_store.py for how a file too large for memory reaches its sha256 key).
Once stored, a wehub.event.MediaStored record goes to `<prefix>.media_stored`, keyed by the
bot's wxid. Every refusal answers a 4xx `upload_file_ack` with a non-zero error_code and goes
to the dead-letter topic with the first `dead_letter_body_cap_bytes` of the body.
"""

from __future__ import annotations

import hmac
import logging
import mimetypes
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from streaming_form_data import StreamingFormDataParser
from streaming_form_data.parser import ParseFailedException
from streaming_form_data.targets import BaseTarget

from gateway import errors, metrics
from gateway import media_messages as codes
from gateway.accounts import App
from gateway.errors import ErrorCode, Refusal
from gateway.messages import CATALOG as GATEWAY_CATALOG
from gateway.publisher import PublishError, Record
from schemas import topics
from schemas.codec import CODEC
from schemas.normalize import shown_value
from wehub.media_store import MediaSink, MediaStore, MediaStoreError, StoredObject, metadata_header
from wehub.settings import Settings

log = logging.getLogger(__name__)

ACK_TYPE = "upload_file_ack"
ACTION = "upload"
MAX_TEXT_PART_BYTES = 512
# Room for the part headers and boundaries around a file of exactly upload_limit_bytes.
_MULTIPART_OVERHEAD_BYTES = 64 * 1024
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")
_DISPOSITION = re.compile(rb"(?im)^content-disposition:[ \t]*form-data[ \t]*;([^\r\n]*)")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


class AccountsLookup(Protocol):
    def get(self, appid: str) -> App | None: ...


class RecordPublisher(Protocol):
    async def publish(self, records: Sequence[Record]) -> None: ...


@dataclass
class UploadServices:
    """The services the endpoint uses, built once per app from `app.state`."""

    settings: Settings
    accounts: AccountsLookup
    publisher: RecordPublisher
    store: MediaStore
    gateway_id: str


def upload_services(app: Starlette) -> UploadServices:
    """The app's UploadServices: `app.state.media_upload`, else built from the callback handler's."""
    state = app.state
    services: UploadServices | None = getattr(state, "media_upload", None)
    if services is None:
        gateway = state.gateway
        services = UploadServices(
            settings=gateway.settings,
            accounts=gateway.accounts,
            publisher=gateway.publisher,
            store=MediaStore.from_settings(gateway.settings),
            gateway_id=str(gateway.gateway_name),
        )
        state.media_upload = services
    return services


def parse_disposition(params: str) -> dict[str, str]:
    """Parameters of a Content-Disposition header after `form-data;`, with values kept raw.

    Backslashes stay as sent: WeHub runs on Windows, and a name such as `..\\a.jpg` must reach
    the filename check as it was written (the multipart parser would drop them as escapes).
    """
    result: dict[str, str] = {}
    for match in re.finditer(r'\s*([A-Za-z0-9_*-]+)\s*=\s*("([^"]*)"|[^;]*)\s*;?', params):
        name = match.group(1).lower()
        value = match.group(3) if match.group(3) is not None else match.group(2).strip()
        if name == "filename*" and "''" in value:
            result["filename"] = unquote(value.split("''", 1)[1])
            continue
        result.setdefault(name, value)
    return result


def check_filename(name: str) -> str | None:
    """Return why `name` could leave its folder or is not a plain file name, or None when it is safe."""
    if "/" in name or "\\" in name:
        return "contains a folder separator"
    if _WINDOWS_DRIVE.match(name):
        return "is an absolute Windows path"
    if name in (".", "..") or ".." in name.split("."):
        return "refers to a parent folder"
    if not name.isprintable():
        return "contains control characters"
    return None


class _TextPart(BaseTarget):  # type: ignore[misc]
    """A small text part, kept up to MAX_TEXT_PART_BYTES; longer values are flagged, not kept."""

    def __init__(self) -> None:
        super().__init__()
        self.value = bytearray()
        self.too_long = False
        self.seen = False

    async def on_start_async(self) -> None:
        self.seen = True

    async def on_data_received_async(self, chunk: bytes) -> None:
        if len(self.value) + len(chunk) > MAX_TEXT_PART_BYTES:
            self.too_long = True
            return
        self.value += chunk


class _FilePart(BaseTarget):  # type: ignore[misc]
    """The `file` part: streamed into the session's sink as it arrives."""

    def __init__(self, session: _UploadSession) -> None:
        super().__init__()
        self.session = session
        self.started = False
        self.finished = False

    async def on_start_async(self) -> None:
        self.started = True
        await self.session.open_file()

    async def on_data_received_async(self, chunk: bytes) -> None:
        await self.session.write_file(chunk)

    async def on_finish_async(self) -> None:
        self.finished = True


class _UploadSession:
    """One upload request from its headers to the stored object; raises Refusal for bad input."""

    def __init__(self, request: Request, services: UploadServices) -> None:
        self.request = request
        self.services = services
        self.settings = services.settings
        self.limit_bytes = int(self.settings.upload_limit_bytes)
        self.cap_bytes = int(self.settings.dead_letter_body_cap_bytes)
        self.prefix = bytearray()
        self.body_bytes = 0
        self.file_bytes = 0
        self.parts = {name: _TextPart() for name in ("file_index", "appid", "wxid", "token")}
        self.file = _FilePart(self)
        self.sink: MediaSink | None = None
        self.app: App | None = None
        self.appid = request.query_params.get("appid", "")
        self.wxid = request.query_params.get("wxid", "")
        self.token = request.query_params.get("token", "")
        self.file_name: str | None = None
        self.file_parts = 0

    @property
    def file_index(self) -> str:
        part = self.parts["file_index"]
        return part.value.decode("utf-8", "replace") if part.seen and not part.too_long else ""

    def declared_length(self) -> int | None:
        text = self.request.headers.get("content-length", "")
        return int(text) if text.isdigit() else None

    async def receive(self) -> StoredObject:
        content_type = self.request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            raise Refusal(codes.NOT_MULTIPART, ACK_TYPE, value=shown_value(content_type or None))
        declared = self.declared_length()
        if declared is not None and declared > self.limit_bytes + _MULTIPART_OVERHEAD_BYTES:
            raise Refusal(codes.FILE_TOO_LARGE, ACK_TYPE, limit=self.limit_bytes)
        if self.appid:
            self.authenticate()
        try:
            parser = StreamingFormDataParser(headers={"Content-Type": content_type})
        except ParseFailedException:
            raise Refusal(codes.NOT_MULTIPART, ACK_TYPE, value=shown_value(content_type)) from None
        for name, part in self.parts.items():
            parser.register(name, part)
        parser.register("file", self.file)

        async for chunk in self.request.stream():
            self.body_bytes += len(chunk)
            if len(self.prefix) < self.cap_bytes:
                self.prefix += chunk[: self.cap_bytes - len(self.prefix)]
            try:
                await parser.adata_received(chunk)
            except ParseFailedException as error:
                raise Refusal(codes.MALFORMED_MULTIPART, ACK_TYPE, detail=str(error)) from None

        return await self.complete()

    async def complete(self) -> StoredObject:
        file_index_part = self.parts["file_index"]
        if not file_index_part.seen:
            raise Refusal(codes.MISSING_PART, ACK_TYPE, part="file_index")
        if not self.file.started:
            raise Refusal(codes.MISSING_PART, ACK_TYPE, part="file")
        if not self.file.finished:
            raise Refusal(codes.MALFORMED_MULTIPART, ACK_TYPE,
                          detail="the body ends before the closing boundary")
        self.check_file_index()
        if self.file_bytes == 0:
            raise Refusal(codes.EMPTY_FILE, ACK_TYPE, file_index=self.file_index)
        assert self.sink is not None
        # The file_index part may follow the file part, so it joins the metadata only now.
        self.sink.metadata["file-index"] = metadata_header(self.file_index)
        return await self.sink.finish(self.appid, self.wxid)

    def check_file_index(self) -> None:
        part = self.parts["file_index"]
        if part.too_long:
            raise Refusal(codes.INVALID_PART, ACK_TYPE, part="file_index", value="too long",
                          expected=f"at most {MAX_TEXT_PART_BYTES} bytes")
        try:
            text = bytes(part.value).decode("utf-8")
        except UnicodeDecodeError:
            raise Refusal(codes.INVALID_PART, ACK_TYPE, part="file_index", value="not UTF-8",
                          expected="UTF-8 text") from None
        if not text.strip() or not text.isprintable():
            raise Refusal(codes.INVALID_PART, ACK_TYPE, part="file_index", value=shown_value(text),
                          expected="a non-empty id without control characters")

    def text_part(self, name: str) -> str:
        part = self.parts[name]
        if not part.seen or part.too_long:
            return ""
        return bytes(part.value).decode("utf-8", "replace").strip()

    def authenticate(self) -> None:
        """Tie the upload to a known appid and whitelisted bot, with the appid's url_token."""
        self.appid = self.appid or self.text_part("appid")
        self.wxid = self.wxid or self.text_part("wxid")
        self.token = self.token or self.text_part("token")
        for field, value in (("appid", self.appid), ("wxid", self.wxid)):
            if not value:
                raise Refusal(codes.MISSING_IDENTITY, ACK_TYPE, field=field)
        app = self.services.accounts.get(self.appid)
        if app is None:
            raise Refusal(errors.UNKNOWN_APPID, ACK_TYPE, value=shown_value(self.appid))
        if app.url_token is not None and not hmac.compare_digest(self.token.encode(), app.url_token.encode()):
            raise Refusal(errors.BAD_TOKEN, ACK_TYPE, appid=self.appid)
        if self.wxid not in app.wxids:
            raise Refusal(errors.WXID_NOT_WHITELISTED, ACK_TYPE,
                          wxid=shown_value(self.wxid), appid=self.appid)
        self.app = app

    async def open_file(self) -> None:
        self.file_parts += 1
        if self.file_parts > 1:
            raise Refusal(codes.INVALID_PART, ACK_TYPE, part="file", value="a second file part",
                          expected="exactly one file part")
        if self.app is None:
            self.authenticate()
        self.file_name = self.raw_filename()
        if self.file_name is not None:
            problem = check_filename(self.file_name)
            if problem is not None:
                raise Refusal(codes.UNSAFE_FILENAME, ACK_TYPE, value=shown_value(self.file_name))

    def raw_filename(self) -> str | None:
        """Read the file part's filename as sent from the part headers kept in `prefix`."""
        for match in reversed(list(_DISPOSITION.finditer(bytes(self.prefix)))):
            params = parse_disposition(match.group(1).decode("utf-8", "replace"))
            if params.get("name") == "file":
                return params.get("filename")
        # The headers lie beyond the kept prefix: fall back on the parser's reading.
        name = self.file.multipart_filename
        return str(name) if name is not None else None

    def content_type(self) -> str:
        declared = str(self.file.multipart_content_type or "").split(";")[0].strip().lower()
        if _CONTENT_TYPE.match(declared) and declared != "application/octet-stream":
            return declared
        guessed = mimetypes.guess_type(self.file_name or "")[0]
        return guessed or declared or "application/octet-stream"

    async def write_file(self, chunk: bytes) -> None:
        self.file_bytes += len(chunk)
        if self.file_bytes > self.limit_bytes:
            raise Refusal(codes.FILE_TOO_LARGE, ACK_TYPE, limit=self.limit_bytes)
        if self.sink is None:
            metadata = {"appid": self.appid, "bot-wxid": self.wxid}
            if self.file_name:
                metadata["file-name"] = metadata_header(self.file_name)
            self.sink = self.services.store.sink(self.content_type(), metadata)
        await self.sink.write(chunk)

    async def read_prefix(self) -> None:
        """Keep the start of a body refused before it was read, for its dead letter."""
        if self.body_bytes or self.prefix:
            return
        try:
            async for chunk in self.request.stream():
                self.body_bytes += len(chunk)
                self.prefix += chunk[: self.cap_bytes - len(self.prefix)]
                if len(self.prefix) >= self.cap_bytes:
                    break
        except ClientDisconnect:
            return

    async def abort(self) -> None:
        if self.sink is not None:
            await self.sink.abort()


async def upload_endpoint(request: Request) -> Response:
    """Store one uploaded file and return `upload_file_ack`; never raises for bad input."""
    services = upload_services(request.app)
    session = _UploadSession(request, services)
    try:
        stored = await session.receive()
    except Refusal as refusal:
        await session.abort()
        return await _refuse(session, refusal)
    except MediaStoreError as error:
        await session.abort()
        log.warning("upload not stored: %s", error, extra={"appid": session.appid, "bot_wxid": session.wxid})
        return _answer(session, codes.STORAGE_UNAVAILABLE, detail=str(error))
    except ClientDisconnect:
        await session.abort()
        log.info("upload abandoned by the client",
                 extra={"appid": session.appid, "body_bytes": session.body_bytes})
        return Response(status_code=400)
    except BaseException:
        await session.abort()
        raise

    try:
        await services.publisher.publish([_stored_record(session, stored)])
    except PublishError as error:
        log.warning("media_stored event not published: %s", error.detail, extra={"key": stored.key})
        metrics.REQUESTS.labels(ACTION, error.code.name).inc()
        return _answer(session, error.code, detail=error.detail, limit=int(services.settings.max_in_flight),
                       action=ACTION, size=0)

    metrics.REQUESTS.labels(ACTION, "ok").inc()
    log.info("upload stored", extra={
        "appid": session.appid, "bot_wxid": session.wxid, "file_index": session.file_index,
        "key": stored.key, "size": stored.size, "duplicate": stored.duplicate,
    })
    answer = {"error_code": 0, "error_reason": "", "ack_type": ACK_TYPE, "file_index": session.file_index}
    return JSONResponse(answer)


def _stored_record(session: _UploadSession, stored: StoredObject) -> Record:
    value = CODEC.encode(topics.MEDIA_STORED_SCHEMA, {
        "event_id": uuid.uuid4().hex,
        "received_at": int(time.time() * 1000),
        "gateway": session.services.gateway_id,
        "appid": session.appid,
        "bot_wxid": session.wxid,
        "file_index": session.file_index,
        "bucket": stored.bucket,
        "key": stored.key,
        "size": stored.size,
        "sha256": stored.sha256,
        "content_type": stored.content_type,
        "file_name": session.file_name,
        "origin": "upload",
        "source_url": None,
    })
    return Record(session.settings.topic(topics.MEDIA_STORED), session.wxid.encode(), value)


def _message(code: ErrorCode, locale: str, params: dict[str, Any]) -> str:
    catalog = codes.CATALOG if code in codes.UPLOAD_CODES else GATEWAY_CATALOG
    return catalog.render(code.name, locale, **params)


def _answer(session: _UploadSession, code: ErrorCode, **params: Any) -> JSONResponse:
    reason = _message(code, str(session.settings.locale), params)
    answer = {"error_code": code.number, "error_reason": reason, "ack_type": ACK_TYPE,
              "file_index": session.file_index}
    return JSONResponse(answer, status_code=code.status)


async def _refuse(session: _UploadSession, refusal: Refusal) -> JSONResponse:
    code = refusal.code
    metrics.REQUESTS.labels(ACTION, code.name).inc()
    log.info("upload refused",
             extra={"reason_code": code.name, "appid": session.appid, "body_bytes": session.body_bytes})
    await session.read_prefix()
    declared = session.declared_length()
    body = bytes(session.prefix)
    whole = max(declared or 0, session.body_bytes)
    record = CODEC.encode(topics.DEAD_LETTER_SCHEMA, {
        "dead_letter_id": uuid.uuid4().hex,
        "at": int(time.time() * 1000),
        "source": "gateway",
        "reason_code": code.name,
        "reason": _message(code, "en", refusal.params),
        "http_status": code.status,
        "appid": session.appid or None,
        "bot_wxid": session.wxid or None,
        "action": ACTION,
        "client_address": session.request.client.host if session.request.client else None,
        "content_type": session.request.headers.get("content-type"),
        "topic": None,
        "partition": None,
        "offset": None,
        "body": body,
        "body_bytes": whole,
        "truncated": whole > len(body),
    })
    try:
        key = (session.wxid or session.appid).encode()
        topic = session.settings.topic(topics.DEAD_LETTER)
        await session.services.publisher.publish([Record(topic, key, record)])
        metrics.DEAD_LETTERS.labels(code.name).inc()
    except PublishError as error:
        metrics.DEAD_LETTERS_LOST.inc()
        log.warning("dead letter of a refused upload not published: %s", error.detail)
    return _answer(session, code, **refusal.params)
