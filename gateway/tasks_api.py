"""`POST /api/tasks`: submit tasks over HTTP, authenticated by the admin token.

The body is one task object or an array of them (fields as `wehub task send --json` takes them).
Every task is validated before any is produced, so a request is written whole or not at all.
An invalid task gets HTTP 400 naming the field and the index of the offending task.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from gateway import errors
from gateway.accounts import AccountsError, read_apps
from gateway.messages import CATALOG as MESSAGES
from gateway.publisher import Publisher, PublishError, Record
from schemas import topics
from schemas.codec import CODEC
from wehub.i18n import Catalog
from wehub.settings import Settings
from wehub.task_validation import CATALOG, TaskInvalid, check_account, default_appid, now_ms, parse_submission

log = logging.getLogger(__name__)

MAX_TASKS_PER_REQUEST = 10_000
SOURCE = "api"

# Why Kafka did not take a submission, by whether a record was too large or Kafka unavailable.
_PUBLISH_FAILURES = Catalog({
    "unavailable": {"en": "the tasks could not be stored ({detail}): nothing was submitted, try again",
                    "zh-CN": "任务未能保存（{detail}）：没有任何任务被提交，请重试"},
    "too_large": {"en": "a task is larger than a Kafka record may be ({detail}): nothing was submitted, "
                        "make its task_dict smaller",
                  "zh-CN": "有任务超过 Kafka 单条记录的上限（{detail}）：没有任何任务被提交，请减小其 task_dict"},
})


def _refusal(code: errors.ErrorCode, reason: str, **extra: Any) -> JSONResponse:
    """Build the response to a rejected submission: the error code, its HTTP status and the reason."""
    headers = {"WWW-Authenticate": "Bearer"} if code.status == 401 else None
    body = {"error_code": code.number, "error_reason": reason, **extra}
    return JSONResponse(body, status_code=code.status, headers=headers)


class _Refused(Exception):
    def __init__(self, response: JSONResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


class _InvalidItem(Exception):
    def __init__(self, index: int, error: TaskInvalid) -> None:
        super().__init__(error.code)
        self.index = index
        self.error = error


def _task_records(items: list[Any], apps: dict[str, frozenset[str]], tasks_topic: str) -> list[Record]:
    """Validate every item, then encode them all; raises _InvalidItem at the first invalid one."""
    created_at = now_ms()
    records = []
    for index, item in enumerate(items):
        try:
            submission = parse_submission(item, default_appid(apps, item), created_at, index)
            check_account(submission, apps)
        except TaskInvalid as error:
            raise _InvalidItem(index, error) from None
        value = CODEC.encode(topics.TASK_SCHEMA, submission.record(created_at, SOURCE))
        records.append(Record(tasks_topic, submission.task_id.encode(), value))
    return records


def task_routes(settings: Settings, publisher: Publisher) -> list[BaseRoute]:
    """Build the route of POST /api/tasks, which writes through the gateway's publisher."""
    locale = str(settings.locale)
    tasks_topic = settings.topic(topics.TASKS)
    body_limit = int(settings.body_limit_bytes)

    def authorized(request: Request) -> JSONResponse | None:
        token = str(settings.admin_token)
        if not token:
            return _refusal(errors.ADMIN_API_DISABLED, MESSAGES.render("admin_api_disabled", locale))
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return _refusal(errors.BAD_ADMIN_TOKEN, MESSAGES.render("bad_admin_token", locale))
        return None

    async def read_items(request: Request) -> list[Any]:
        body = await request.body()
        if len(body) > body_limit:
            raise _Refused(_refusal(errors.BODY_TOO_LARGE,
                                    CATALOG.render("body_too_large", locale, size=len(body), limit=body_limit)))
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            reason = CATALOG.render("not_json", locale, field="body", detail=str(error)[:60])
            raise _Refused(_refusal(errors.INVALID_JSON, reason, field="body")) from None
        items = document if isinstance(document, list) else [document]
        if len(items) > MAX_TASKS_PER_REQUEST:
            reason = CATALOG.render("too_many_tasks", locale, field="body", value=len(items),
                                    limit=MAX_TASKS_PER_REQUEST)
            raise _Refused(_refusal(errors.INVALID_FIELD, reason, field="body"))
        return items

    async def submit(request: Request) -> JSONResponse:
        refused = authorized(request)
        if refused is not None:
            return refused
        try:
            items = await read_items(request)
            apps = {app.appid: app.wxids for app in read_apps(Path(settings.accounts)).values()}
            records = _task_records(items, apps, tasks_topic)
        except _Refused as refusal:
            return refusal.response
        except AccountsError:
            log.exception("POST /api/tasks cannot read the accounts file")
            return _refusal(errors.ACCOUNTS_UNREADABLE, MESSAGES.render("accounts_unreadable", locale))
        except _InvalidItem as invalid:
            reason = invalid.error.render(locale)
            return _refusal(errors.INVALID_FIELD, reason, field=invalid.error.field, index=invalid.index)

        try:
            await publisher.publish(records)
        except PublishError as error:
            failure = "too_large" if error.code is errors.RECORD_TOO_LARGE else "unavailable"
            return _refusal(error.code, _PUBLISH_FAILURES.render(failure, locale, detail=error.detail))
        log.info("%d tasks submitted through the API", len(records))
        return JSONResponse({"task_ids": [record.key.decode() for record in records]})

    return [Route("/api/tasks", submit, methods=["POST"])]
