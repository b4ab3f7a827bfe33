"""The ceiling of the gateway benchmark: a bare Starlette endpoint that only parses the JSON body."""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_ANSWER = orjson.dumps(
    {"error_code": 0, "error_reason": "", "ack_type": "common_ack", "data": {"reply_task_list": []}}
)


async def parse_only(request: Request) -> Response:
    document = orjson.loads(await request.body())
    status = 200 if isinstance(document, dict) else 400
    return Response(_ANSWER, status_code=status, media_type="application/json")


app = Starlette(routes=[Route("/wehub", parse_only, methods=["POST"])])
