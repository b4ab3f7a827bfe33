"""The gateway's Starlette app: the WeHub callback, uploads, health, readiness and metrics.

The app keeps no state that another replica would need: accounts come from the accounts file,
events go to Kafka, tasks come from the task source. Any number of replicas can run behind a
load balancer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as HttpRequest
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Receive, Scope, Send

from gateway import errors, metrics
from gateway.accounts import Accounts
from gateway.handler import COMMON_ACK, CallbackHandler, Request, header_value
from gateway.messages import CATALOG
from gateway.publisher import Publisher
from gateway.task_source import NoTasks, TaskSource
from gateway.ws import websocket_routes
from wehub import heap, logs
from wehub import settings as settings_module
from wehub.settings import Settings

log = logging.getLogger(__name__)

JSON_MEDIA_TYPE = "application/json"
Endpoint = Callable[[HttpRequest], Awaitable[Response]]


def _json(status: int, payload: dict[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, headers=headers, media_type=JSON_MEDIA_TYPE)


def _handler(request: HttpRequest) -> CallbackHandler:
    handler: CallbackHandler = request.app.state.gateway
    return handler


@functools.lru_cache(maxsize=1024)
def _json_headers(length: int) -> list[tuple[bytes, bytes]]:
    """Return the response headers of a JSON body of `length` bytes; uvicorn copies them and leaves them unchanged."""
    return [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]


class CallbackEndpoint:
    """POST /wehub and POST /wehub/<token>: one WeHub request.

    A plain ASGI endpoint rather than a Starlette request handler: it is the hot path, and reading
    the body straight from `receive` lets it stop at the size limit and keep only what a dead
    letter needs.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler: CallbackHandler = scope["app"].state.gateway
        first = await receive()
        body: bytes = first.get("body", b"")
        size = len(body)
        if first.get("more_body", False) or size > handler.largest_body_bytes or first["type"] != "http.request":
            body, size = await self._read_body(scope, first, receive, handler)
        client = scope.get("client")
        request = Request(
            body=body,
            body_bytes=size,
            client_address=client[0] if client else "",
            headers=scope["headers"],
            token=scope.get("path_params", {}).get("token") or self._query_token(scope),
        )
        answer = await handler.handle(request)
        payload = answer.body()
        headers = _json_headers(len(payload))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    @staticmethod
    def _query_token(scope: Scope) -> str | None:
        query: bytes = scope.get("query_string", b"")
        if b"token=" not in query:
            return None
        tokens = parse_qs(query.decode("latin-1")).get("token")
        return tokens[0] if tokens else None

    @staticmethod
    async def _read_body(
        scope: Scope, first: Message, receive: Receive, handler: CallbackHandler
    ) -> tuple[bytes, int]:
        """Read the body and its size, from the `first` message on, when it does not come in one piece.

        Past the largest limit, stop and keep only the dead letter's share.
        """
        limit = handler.largest_body_bytes
        keep = handler.dead_letter_body_cap_bytes
        declared = header_value(scope["headers"], b"content-length") or ""
        declared_size = int(declared) if declared.isdigit() else 0
        chunks: list[bytes] = []
        size = 0
        more = True
        message: Message | None = first
        while more:
            if message is None:
                message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk: bytes = message.get("body", b"")
            more = bool(message.get("more_body", False))
            message = None
            size += len(chunk)
            chunks.append(chunk)
            # NOTE: a streamed body without Content-Length is reported as the bytes read before stopping.
            if size > limit or (declared_size > limit and size >= keep):
                return b"".join(chunks)[:keep], max(size, declared_size)
        if declared_size > limit:
            return b"".join(chunks)[:keep], declared_size
        return chunks[0] if len(chunks) == 1 else b"".join(chunks), size


_upload_endpoint: Endpoint | None = None


async def upload(request: HttpRequest) -> Response:
    """POST /wehub/upload: handled by gateway.upload when that module is installed."""
    global _upload_endpoint  # noqa: PLW0603 - resolved once per process, on the first upload
    if _upload_endpoint is None:
        try:
            module = importlib.import_module("gateway.upload")
        except ModuleNotFoundError as error:
            if error.name != "gateway.upload":
                raise
            handler = _handler(request)
            code = errors.UPLOAD_UNAVAILABLE
            return _json(
                code.status,
                {
                    "error_code": code.number,
                    "ack_type": "upload_file_ack",
                    "error_reason": CATALOG.render(code.name, handler.locale),
                },
            )
        _upload_endpoint = module.upload_endpoint
    assert _upload_endpoint is not None
    return await _upload_endpoint(request)


async def healthz(request: HttpRequest) -> Response:
    return _json(200, {"alive": True})


async def readyz(request: HttpRequest) -> Response:
    ready = await _handler(request).publisher.ready()
    return _json(200 if ready else 503, {"ready": ready, "kafka": "reachable" if ready else "unreachable"})


async def metrics_endpoint(request: HttpRequest) -> Response:
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


async def _http_error(request: HttpRequest, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    code = errors.METHOD_NOT_ALLOWED if error.status_code == 405 else errors.NOT_FOUND
    # Counted like a callback whose action could not be read, so requests_total includes requests
    # that reached no endpoint.
    metrics.REQUESTS.labels("none", code.name).inc()
    reason = CATALOG.render(code.name, _handler(request).locale, path=request.url.path, method=request.method)
    # Starlette's 405 names the allowed methods in an Allow header, which HTTP requires.
    return _json(
        code.status, {"error_code": code.number, "error_reason": reason, "ack_type": COMMON_ACK}, error.headers
    )


async def _server_error(request: HttpRequest, error: Exception) -> Response:
    code = errors.INTERNAL_ERROR
    reason = CATALOG.render(code.name, _handler(request).locale, event_id="-")
    return _json(code.status, {"error_code": code.number, "error_reason": reason, "ack_type": COMMON_ACK})


def default_gateway_name(settings: Settings) -> str:
    return str(settings.gateway_name) or f"{socket.gethostname()}-{os.getpid()}"


def load_task_source(settings: Settings, publisher: Publisher) -> TaskSource:
    """gateway.tasks.build_task_source(settings, publisher) when that module exists, else NoTasks."""
    try:
        module = importlib.import_module("gateway.tasks")
    except ModuleNotFoundError as error:
        if error.name != "gateway.tasks":
            raise
        return NoTasks()
    source: TaskSource = module.build_task_source(settings, publisher)
    return source


class GatewayApp(Starlette):
    """Starlette, except that POST /wehub goes straight to its endpoint.

    Starlette's router and exception middleware cost about 6 µs of the callback's CPU per
    request. The endpoint turns every failure into a response itself, so it needs neither.
    """

    def __init__(self, callback: CallbackEndpoint, **options: Any) -> None:
        super().__init__(**options)
        self._callback = callback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if len(path) > 1 and path.endswith("/"):
            # The callback URL is typed into the WeHub console by hand: a trailing slash reaches the
            # same endpoint instead of a redirect, which WeHub does not follow.
            scope = {**scope, "path": path.rstrip("/") or "/"}
        if scope["type"] == "http" and scope["path"] == "/wehub" and scope["method"] == "POST":
            scope["app"] = self
            await self._callback(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, task_source: TaskSource | None = None) -> Starlette:
    """Build the gateway app. Kafka is connected at startup (lifespan), and an unreachable broker is tolerated.

    Raises AccountsError when the accounts file is missing or invalid.
    """
    accounts = Accounts(Path(settings.accounts))
    publisher = Publisher(settings)
    source = task_source if task_source is not None else load_task_source(settings, publisher)
    handler = CallbackHandler(settings, accounts, publisher, source, default_gateway_name(settings))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await publisher.start()
        await source.start()
        # The pending tasks read at start live as long as the gateway: keep them out of collections.
        heap.settle()
        settler = asyncio.create_task(heap.settle_periodically())
        log.info("gateway started", extra={"gateway": handler.gateway_name})
        try:
            yield
        finally:
            settler.cancel()
            await source.stop()
            await handler.drain()
            await publisher.stop()

    callback = CallbackEndpoint()
    routes: list[BaseRoute] = [
        Route("/wehub/upload", upload, methods=["POST"]),
        Route("/wehub", callback, methods=["POST"]),
        Route("/wehub/{token}", callback, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        *source.routes(),
        *websocket_routes(handler),
    ]
    app = GatewayApp(
        callback,
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: _http_error, 405: _http_error, Exception: _server_error},
    )
    app.state.gateway = handler
    app.router.redirect_slashes = False
    return app


def app_from_environment() -> Starlette:
    """Factory for uvicorn workers: settings and logging from the WEHUB_* environment."""
    settings = settings_module.load()
    logs.configure(settings.log_level, settings.log_format)
    return create_app(settings)
