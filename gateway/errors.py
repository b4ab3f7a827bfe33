"""Stable error codes of the gateway: one place for the number, HTTP status and dead-letter code.

The numbers are part of the protocol as WeHub operators see it (`error_code` in every answer)
and are listed in docs/topics.md; never renumber one, only add.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ErrorCode:
    """A refusal kind: `number` for error_code, `name` for dead letters and logs, `status` for HTTP."""

    number: int
    name: str
    status: int


INVALID_JSON = ErrorCode(1001, "invalid_json", 400)
INVALID_UTF8 = ErrorCode(1002, "invalid_utf8", 400)
NOT_AN_OBJECT = ErrorCode(1003, "not_an_object", 400)
INVALID_ACTION = ErrorCode(1004, "invalid_action", 400)
INVALID_ENVELOPE = ErrorCode(1005, "invalid_envelope", 400)
INVALID_FIELD = ErrorCode(1006, "invalid_field", 400)
BODY_TOO_LARGE = ErrorCode(1101, "body_too_large", 413)
RECORD_TOO_LARGE = ErrorCode(1102, "record_too_large", 413)
UNKNOWN_APPID = ErrorCode(1201, "unknown_appid", 401)
BAD_TOKEN = ErrorCode(1202, "bad_token", 401)
WXID_NOT_WHITELISTED = ErrorCode(1203, "wxid_not_whitelisted", 403)
KAFKA_UNAVAILABLE = ErrorCode(1301, "kafka_unavailable", 503)
OVERLOADED = ErrorCode(1302, "overloaded", 503)
UPLOAD_UNAVAILABLE = ErrorCode(1401, "upload_unavailable", 404)
ADMIN_API_DISABLED = ErrorCode(1204, "admin_api_disabled", 403)
BAD_ADMIN_TOKEN = ErrorCode(1205, "bad_admin_token", 401)
TASK_SOURCE_FAILED = ErrorCode(1501, "task_source_failed", 503)
ACCOUNTS_UNREADABLE = ErrorCode(1502, "accounts_unreadable", 503)
NOT_FOUND = ErrorCode(1601, "not_found", 404)
METHOD_NOT_ALLOWED = ErrorCode(1602, "method_not_allowed", 405)
INTERNAL_ERROR = ErrorCode(1900, "internal_error", 500)

ALL_CODES: tuple[ErrorCode, ...] = (
    INVALID_JSON,
    INVALID_UTF8,
    NOT_AN_OBJECT,
    INVALID_ACTION,
    INVALID_ENVELOPE,
    INVALID_FIELD,
    BODY_TOO_LARGE,
    RECORD_TOO_LARGE,
    UNKNOWN_APPID,
    BAD_TOKEN,
    WXID_NOT_WHITELISTED,
    ADMIN_API_DISABLED,
    BAD_ADMIN_TOKEN,
    KAFKA_UNAVAILABLE,
    OVERLOADED,
    UPLOAD_UNAVAILABLE,
    TASK_SOURCE_FAILED,
    ACCOUNTS_UNREADABLE,
    NOT_FOUND,
    METHOD_NOT_ALLOWED,
    INTERNAL_ERROR,
)

# Refusals whose request is not lost: WeHub sends it again, or it is already in Kafka.
NOT_DEAD_LETTERED = frozenset({KAFKA_UNAVAILABLE, OVERLOADED, TASK_SOURCE_FAILED})


class Refusal(Exception):
    """A request the gateway answers with a non-zero error_code.

    `params` fill the message of `code.name` in the gateway's catalog; they must never hold chat
    text or contact details, only ids, sizes, field paths and short renderings of bad values.
    """

    def __init__(self, code: ErrorCode, ack_type: str = "common_ack", **params: Any) -> None:
        super().__init__(code.name)
        self.code = code
        self.ack_type = ack_type
        self.params = params
