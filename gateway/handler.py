"""One WeHub request from body bytes to its answer: parse, check, type, publish, acknowledge.

The handler knows nothing of HTTP beyond the status it suggests, so the websocket transport can
reuse it with transport="websocket". Its order of checks is deliberate: the envelope's shape,
then who is asking (appid, URL token, whitelist), and only then the data, so that callers who
are not authenticated learn nothing about the schemas.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from random import getrandbits
from typing import Any, TypeGuard

import orjson

from gateway import errors, events, metrics
from gateway.accounts import Accounts, App
from gateway.errors import Refusal
from gateway.messages import CATALOG
from gateway.publisher import Publisher, PublishError, Record
from gateway.task_source import TaskSource
from schemas import topics
from schemas.codec import CODEC
from schemas.normalize import FieldError, has_control_character, shown_value
from wehub.settings import Settings

log = logging.getLogger(__name__)

ACK_TYPES = {"login": "login_ack", "logout": "logout_ack", "pull_task": "pull_task_ack"}
COMMON_ACK = "common_ack"
CONTACT_ACTIONS = frozenset({"report_contact", "report_room_member_info"})
ENVELOPE_KEYS = frozenset({"action", "appid", "wxid", "data", "client_session"})
_ID_EXPECTED = "a non-empty string without control characters"


# The version (4) and variant (RFC 4122) bits of a UUID, as uuid.UUID(int=..., version=4) sets them.
_UUID4_KEEP = ~((0xC000 << 48) | (0xF000 << 64))
_UUID4_SET = (0x8000 << 48) | (4 << 76)


def new_event_id() -> str:
    """Return a random (version 4) UUID as text.

    The bits come from the `random` module, which is seeded from os.urandom and seeded again in
    a forked child: an event id must be unique, not unpredictable, and os.urandom made a system
    call for every request.
    """
    text = f"{getrandbits(128) & _UUID4_KEEP | _UUID4_SET:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@dataclass(frozen=True)
class Answer:
    """The response to WeHub: the suggested HTTP status and the JSON body, encoded once when shared."""

    status: int
    payload: dict[str, Any]
    encoded: bytes | None = None

    def body(self) -> bytes:
        return self.encoded if self.encoded is not None else orjson.dumps(self.payload)


def header_value(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    """Return the value of the first header called `name` (lower case, as ASGI gives names), or None."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


@dataclass(slots=True)
class Request:
    """One request as the transport received it; the handler fills in what it learns.

    `headers` are the HTTP request's headers as ASGI gives them, read only for a dead letter.
    """

    body: bytes
    body_bytes: int
    client_address: str
    headers: Sequence[tuple[bytes, bytes]] = ()
    token: str | None = None
    transport: str = "http"
    action: str | None = None
    appid: str | None = None
    bot_wxid: str | None = None
    event_id: str = field(default_factory=new_event_id)

    @property
    def content_type(self) -> str | None:
        return header_value(self.headers, b"content-type")


def ack_type_for(action: str | None) -> str:
    return ACK_TYPES.get(action or "", COMMON_ACK)


def login_signature(wxid: str, nonce: str, secret: str) -> str:
    """md5 of `wxid#nonce#secret` as 32 lower-case hex digits, as every official demo sends it."""
    return hashlib.md5(f"{wxid}#{nonce}#{secret}".encode(), usedforsecurity=False).hexdigest()


def _ok(ack_type: str, data: dict[str, Any]) -> Answer:
    return Answer(200, {"error_code": 0, "error_reason": "", "ack_type": ack_type, "data": data})


def _encoded_once(answer: Answer) -> Answer:
    return Answer(answer.status, answer.payload, orjson.dumps(answer.payload))


# The response to every report_* action, encoded once. Callers copy a payload before changing it.
_REPORT_ACK = _encoded_once(_ok(COMMON_ACK, {"reply_task_list": []}))


def _is_identifier(value: Any) -> TypeGuard[str]:
    if not isinstance(value, str) or value == "":
        return False
    # An ASCII string is printable exactly when it contains no control character, and the regex is slower.
    return value.isprintable() if value.isascii() else not has_control_character(value)


def _metric_action(action: str | None) -> str:
    if action is None:
        return "none"
    return action if action in topics.EVENT_SCHEMAS else "other"


# The actions that _acknowledge treats apiece: their ack carries data (a signature, a task) or
# reports to the task source. Every other action gets _REPORT_ACK without awaiting it.
_ANSWERED_WITH_DATA = frozenset({"login", "logout", "pull_task", "report_task_result"})


@dataclass(slots=True)
class _Event:
    """A checked request: its account, envelope, typed data (None for an unknown action) and records."""

    app: App
    envelope: events.Envelope
    record: dict[str, Any] | None
    ack_type: str
    values: list[bytes]
    topic: str

    def records(self) -> list[Record]:
        key = self.envelope.bot_wxid.encode()
        return [Record(self.topic, key, value) for value in self.values]


class CallbackHandler:
    """Handler of WeHub requests: checks, publishes and acknowledges them; one per process."""

    def __init__(
        self,
        settings: Settings,
        accounts: Accounts,
        publisher: Publisher,
        task_source: TaskSource,
        gateway_name: str,
    ) -> None:
        self.settings = settings
        self.accounts = accounts
        self.publisher = publisher
        self.task_source = task_source
        self.gateway_name = gateway_name
        self.locale = str(settings.locale)
        self.body_limit_bytes = int(settings.body_limit_bytes)
        self.contact_body_limit_bytes = int(settings.contact_body_limit_bytes)
        self.kafka_max_message_bytes = int(settings.kafka_max_message_bytes)
        self.dead_letter_body_cap_bytes = int(settings.dead_letter_body_cap_bytes)
        # No request of any action may be larger; transports stop reading beyond it.
        self.largest_body_bytes = max(self.body_limit_bytes, self.contact_body_limit_bytes)
        self.dead_letter_topic = settings.topic(topics.DEAD_LETTER)
        self._topics = {action: settings.topic(action) for action in topics.EVENT_SCHEMAS}
        self._unknown_topic = settings.topic(topics.UNKNOWN_ACTION)
        self._metric_children: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        self._polls_in_flight: set[asyncio.Task[None]] = set()
        # At most a quarter of the publisher's slots go to pull_task events, which no client waits for.
        self._max_polls_in_flight = max(1, publisher.max_in_flight // 4)
        # The websocket transport sets this to add `extension_protocol` to login_ack data.
        self.login_extension: Callable[[App, str], dict[str, Any] | None] | None = None

    async def handle(self, request: Request) -> Answer:
        """Handle one request and return the response; never raises for anything a client can send."""
        started = time.perf_counter()
        # One coroutine from here to the publisher: every awaited level costs CPU time when the
        # request suspends and again when it resumes.
        try:
            event = self._check(request)
            if event.envelope.action == "pull_task":
                # The one event the gateway responds to before Kafka acknowledges it: a poll carries
                # no data, and a task it hands out was claimed through Kafka before. Waiting for the
                # acknowledgement had put the pull_task benchmark's p99 near 10 ms.
                self._publish_poll(event)
            else:
                try:
                    await self.publisher.publish(event.records())
                except PublishError as error:
                    raise self._not_stored(event, error) from None
            if event.record is None or event.envelope.action not in _ANSWERED_WITH_DATA:
                answer = _REPORT_ACK
            else:
                answer = await self._acknowledge(event.app, event.envelope, event.record, event.ack_type)
            outcome = "ok" if answer.payload.get("error_code") == 0 else "error"
        except Refusal as refusal:
            answer = await self.refuse(request, refusal)
            outcome = refusal.code.name
        except Exception:
            log.exception(
                "unexpected failure", extra={"event_id": request.event_id, "action": request.action}
            )
            answer = await self.refuse(request, Refusal(errors.INTERNAL_ERROR, ack_type_for(request.action)))
            outcome = errors.INTERNAL_ERROR.name
        self._observe(_metric_action(request.action), outcome, time.perf_counter() - started, request.body_bytes)
        return answer

    def _observe(self, action: str, outcome: str, duration_s: float, body_bytes: int) -> None:
        # Looking up labelled children costs more than the observation itself: keep them.
        children = self._metric_children.get((action, outcome))
        if children is None:
            children = (
                metrics.REQUESTS.labels(action, outcome),
                metrics.REQUEST_DURATION.labels(action),
                metrics.BODY_SIZE.labels(action),
            )
            self._metric_children[(action, outcome)] = children
        requests, duration, size = children
        requests.inc()
        duration.observe(duration_s)
        size.observe(body_bytes)

    def _check(self, request: Request) -> _Event:
        """Check, type and encode the event of a request; raises Refusal."""
        if request.body_bytes > self.largest_body_bytes:
            raise Refusal(
                errors.BODY_TOO_LARGE,
                action="request",
                size=request.body_bytes,
                limit=self.largest_body_bytes,
            )
        document = self._parse(request.body)
        action = document.get("action")
        if not _is_identifier(action):
            raise Refusal(errors.INVALID_ACTION, value=shown_value(action))
        request.action = action
        ack_type = ack_type_for(action)
        limit = self.contact_body_limit_bytes if action in CONTACT_ACTIONS else self.body_limit_bytes
        if request.body_bytes > limit:
            raise Refusal(
                errors.BODY_TOO_LARGE, ack_type, action=action, size=request.body_bytes, limit=limit
            )

        app = self._authenticate(request, document, ack_type)
        data = document.get("data")
        if data is None:
            data = {}
        elif not isinstance(data, dict):
            raise Refusal(
                errors.INVALID_ENVELOPE,
                ack_type,
                field="data",
                value=shown_value(data),
                expected="a JSON object",
            )
        envelope = self._envelope(request, document)

        if action not in topics.EVENT_SCHEMAS:
            values = [events.encode_unknown_action(envelope, data)]
            return _Event(app, envelope, None, ack_type, values, self._unknown_topic)
        try:
            record = events.typed_data(action, data)
        except FieldError as error:
            raise Refusal(
                errors.INVALID_FIELD,
                ack_type,
                field=error.path,
                value=shown_value(error.value),
                expected=error.expected,
            ) from None
        values = self._encode(envelope, record, ack_type)
        return _Event(app, envelope, record, ack_type, values, self._topics[action])

    def _parse(self, body: bytes) -> dict[str, Any]:
        # NOTE: orjson reads integers beyond 64 bits as floats, so such a number in a string field
        # (an id sent unquoted) is stored rounded, e.g. "1e+40".
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as bad_bytes:
                raise Refusal(errors.INVALID_UTF8, position=bad_bytes.start) from None
            raise Refusal(errors.INVALID_JSON, detail=error.msg if body else "empty body") from None
        if not isinstance(document, dict):
            raise Refusal(errors.NOT_AN_OBJECT, value=shown_value(document))
        return document

    def _authenticate(self, request: Request, document: dict[str, Any], ack_type: str) -> App:
        appid = document.get("appid")
        if not _is_identifier(appid):
            raise Refusal(
                errors.INVALID_ENVELOPE,
                ack_type,
                field="appid",
                value=shown_value(appid),
                expected=_ID_EXPECTED,
            )
        request.appid = appid
        wxid = document.get("wxid")
        if not _is_identifier(wxid):
            raise Refusal(
                errors.INVALID_ENVELOPE,
                ack_type,
                field="wxid",
                value=shown_value(wxid),
                expected=_ID_EXPECTED,
            )
        request.bot_wxid = wxid
        app = self.accounts.get(appid)
        if app is None:
            raise Refusal(errors.UNKNOWN_APPID, ack_type, value=shown_value(appid))
        if app.url_token is not None and not hmac.compare_digest(
            (request.token or "").encode(), app.url_token.encode()
        ):
            raise Refusal(errors.BAD_TOKEN, ack_type, appid=appid)
        if wxid not in app.wxids:
            raise Refusal(errors.WXID_NOT_WHITELISTED, ack_type, appid=appid, wxid=wxid)
        return app

    def _envelope(self, request: Request, document: dict[str, Any]) -> events.Envelope:
        assert request.action is not None
        assert request.appid is not None
        assert request.bot_wxid is not None
        session = document.get("client_session")
        if session is not None and not isinstance(session, str):
            if isinstance(session, bool) or not isinstance(session, (int, float)):
                raise Refusal(
                    errors.INVALID_ENVELOPE,
                    ack_type_for(request.action),
                    field="client_session",
                    value=shown_value(session),
                    expected="a string",
                )
            session = str(session)
        unknown = None
        if not document.keys() <= ENVELOPE_KEYS:
            unknown = {key: value for key, value in document.items() if key not in ENVELOPE_KEYS}
        return events.Envelope(
            event_id=request.event_id,
            received_at_ms=time.time_ns() // 1_000_000,
            gateway=self.gateway_name,
            appid=request.appid,
            bot_wxid=request.bot_wxid,
            action=request.action,
            client_address=request.client_address,
            body_bytes=request.body_bytes,
            transport=request.transport,
            client_session=session,
            extra=orjson.dumps(unknown).decode() if unknown else None,
        )

    def _encode(self, envelope: events.Envelope, record: dict[str, Any], ack_type: str) -> list[bytes]:
        try:
            value = events.encode_event(envelope, record)
        except (ValueError, TypeError) as error:
            raise Refusal(
                errors.INVALID_FIELD,
                ack_type,
                field="data",
                value=type(error).__name__,
                expected=f"a value that fits {topics.EVENT_SCHEMAS[envelope.action]}",
            ) from None
        limit = self.kafka_max_message_bytes
        if len(value) <= limit:
            return [value]
        if not events.can_split(envelope.action):
            raise Refusal(
                errors.RECORD_TOO_LARGE, ack_type, action=envelope.action, size=len(value), limit=limit
            )
        parts = events.encode_parts(envelope, record)
        largest = max((len(part) for part in parts), default=len(value))
        if not parts or largest > limit:
            raise Refusal(
                errors.RECORD_TOO_LARGE, ack_type, action=envelope.action, size=largest, limit=limit
            )
        metrics.SPLIT_PARTS.labels(envelope.action).inc(len(parts))
        log.info(
            "event split into parts",
            extra={
                "event_id": envelope.event_id,
                "action": envelope.action,
                "parts": len(parts),
                "encoded_bytes": len(value),
            },
        )
        return parts

    def _not_stored(self, event: _Event, error: PublishError) -> Refusal:
        """Log an event that Kafka did not acknowledge and return the refusal to respond with."""
        envelope = event.envelope
        log.warning(
            "event not stored, Kafka did not acknowledge",
            extra={"event_id": envelope.event_id, "action": envelope.action, "reason": error.detail},
        )
        limit = self.kafka_max_message_bytes if error.code is errors.RECORD_TOO_LARGE else self.publisher.max_in_flight
        return Refusal(
            error.code,
            event.ack_type,
            detail=error.detail,
            limit=limit,
            action=envelope.action,
            size=max(map(len, event.values)),
        )

    def _publish_poll(self, event: _Event) -> None:
        envelope = event.envelope
        if len(self._polls_in_flight) >= self._max_polls_in_flight:
            # Kafka is slow: polls must not take the publisher's slots that other events wait for.
            metrics.POLLS_NOT_STORED.inc()
            log.debug("pull_task event not stored, too many polls in flight", extra={"event_id": envelope.event_id})
            return
        publishing = asyncio.create_task(self.publisher.publish(event.records()))
        self._polls_in_flight.add(publishing)

        def done(task: asyncio.Task[None]) -> None:
            self._polls_in_flight.discard(task)
            error = None if task.cancelled() else task.exception()
            if task.cancelled() or error is not None:
                metrics.POLLS_NOT_STORED.inc()
                reason = "cancelled" if error is None else getattr(error, "detail", type(error).__name__)
                log.warning("pull_task event not stored, Kafka did not acknowledge",
                            extra={"event_id": envelope.event_id, "reason": reason})

        publishing.add_done_callback(done)

    async def drain(self) -> None:
        """Wait for the pull_task events still being published (at shutdown, before the producer stops)."""
        if self._polls_in_flight:
            await asyncio.gather(*self._polls_in_flight, return_exceptions=True)

    async def _acknowledge(
        self, app: App, envelope: events.Envelope, record: dict[str, Any], ack_type: str
    ) -> Answer:
        action = envelope.action
        if action == "login":
            data: dict[str, Any] = {}
            nonce = record.get("nonce")
            # Signed whenever the request carries a nonce, an empty one included.
            if nonce is not None:
                data["signature"] = login_signature(envelope.bot_wxid, nonce, app.secret)
            if self.login_extension is not None:
                extension = self.login_extension(app, envelope.bot_wxid)
                if extension is not None:
                    data["extension_protocol"] = extension
            return _ok(ack_type, data)
        if action == "logout":
            return _ok(ack_type, {})
        if action == "pull_task":
            return await self._pull_task(envelope, ack_type)
        if action == "report_task_result":
            await self._task_result(envelope, record)
        return _REPORT_ACK

    async def _pull_task(self, envelope: events.Envelope, ack_type: str) -> Answer:
        try:
            task = await self.task_source.next_task(envelope.appid, envelope.bot_wxid)
        except Exception as error:
            log.exception("the task source failed on pull_task", extra={"event_id": envelope.event_id})
            raise Refusal(errors.TASK_SOURCE_FAILED, ack_type, detail=type(error).__name__) from None
        return _ok(ack_type, task or {})

    async def _task_result(self, envelope: events.Envelope, record: dict[str, Any]) -> None:
        # The event is in Kafka already: a failing task source is logged, not answered as an error,
        # because WeHub would send the result again and it would be stored twice.
        try:
            await self.task_source.task_result(
                envelope.appid,
                envelope.bot_wxid,
                record["task_id"],
                record.get("task_result"),
                record.get("error_reason"),
            )
        except Exception:
            log.exception(
                "the task source failed on report_task_result", extra={"event_id": envelope.event_id}
            )

    async def refuse(self, request: Request, refusal: Refusal) -> Answer:
        """Answer a refusal, after writing the refused body to the dead-letter topic when Kafka allows."""
        # NOTE: dead letters are not rate-limited here: a client flooding bad requests fills the topic.
        code = refusal.code
        params = {"event_id": request.event_id, **refusal.params}
        reason = CATALOG.render(code.name, self.locale, **params)
        status = code.status
        if code is errors.WXID_NOT_WHITELISTED and request.action == "login":
            # The operator only sees the reason when login_ack comes back as a normal answer.
            status = 200
        log.info(
            "request refused",
            extra={
                "event_id": request.event_id,
                "error_code": code.number,
                "reason_code": code.name,
                "action": request.action,
                "appid": request.appid,
                "body_bytes": request.body_bytes,
            },
        )
        if code not in errors.NOT_DEAD_LETTERED:
            await self._dead_letter(request, code, CATALOG.render(code.name, "en", **params), status)
        return Answer(
            status, {"error_code": code.number, "error_reason": reason, "ack_type": refusal.ack_type}
        )

    async def dead_letter(self, request: Request, code: errors.ErrorCode, reason: str, status: int) -> None:
        """Write a refused body to the dead-letter topic, for transports with refusals of their own."""
        await self._dead_letter(request, code, reason, status)

    async def _dead_letter(self, request: Request, code: errors.ErrorCode, reason: str, status: int) -> None:
        body = request.body[: self.dead_letter_body_cap_bytes]
        record = {
            "dead_letter_id": request.event_id,
            "at": time.time_ns() // 1_000_000,
            "source": "gateway",
            "reason_code": code.name,
            "reason": reason,
            "http_status": status,
            "appid": request.appid,
            "bot_wxid": request.bot_wxid,
            "action": request.action,
            "client_address": request.client_address,
            "content_type": request.content_type,
            "topic": None,
            "partition": None,
            "offset": None,
            "body": body,
            "body_bytes": request.body_bytes,
            "truncated": len(body) < request.body_bytes,
        }
        value = CODEC.encode(topics.DEAD_LETTER_SCHEMA, record)
        key = (request.bot_wxid or request.client_address).encode()
        try:
            await self.publisher.publish([Record(self.dead_letter_topic, key, value)])
        except PublishError as error:
            metrics.DEAD_LETTERS_LOST.inc()
            log.warning(
                "dead letter not stored", extra={"event_id": request.event_id, "reason": error.detail}
            )
            return
        metrics.DEAD_LETTERS.labels(code.name).inc()
