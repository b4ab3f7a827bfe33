"""Websocket mode: bots send their requests as text frames and get their tasks pushed at once.

Turning it on, per appid in the accounts file (parsed by gateway.accounts):

    [[app]]
    websocket = true                        # every bot of the app, or:
    websocket_wxids = ["wxid_..."]          # only these bots (a gradual switch)
    ws_urls = ["ws://gw-1:8700/wehub/ws", "ws://gw-2:8700/wehub/ws"]   # optional
    heartbeat_interval = 30                 # optional, seconds

(or the same keys in an `[app.websocket]` table: `enabled`, `wxids`, `ws_urls`,
`heartbeat_interval`). For those bots the login_ack carries
`extension_protocol = {"type": "websocket", "param": {"ws_url": ..., "heartbeat_interval": ...}}`.
Without `ws_urls` the url is WEHUB_PUBLIC_URL with ws:// or wss://, path /wehub/ws, plus
/<url_token> when the app has one (so set WEHUB_PUBLIC_URL when the gateway listens on 0.0.0.0);
listed urls are handed out as they are (put the token in them).
A bot always gets the same url of the list (a hash of its wxid), so its reconnects land on the
same replica. `heartbeat_interval` defaults to WEHUB_WS_HEARTBEAT_INTERVAL_S.

On `GET /wehub/ws` (token as ?token= or /wehub/ws/<token>, checked on every frame as over
HTTP) each text frame is one request: CallbackHandler handles it with transport="websocket" and
its response goes back as one frame. A connection must log in (a `login` frame, signature
included) before it may send anything but heartbeats. From then on it belongs to that bot, so
frames naming another bot are rejected and dead-lettered. A newer connection of the same bot
replaces the older one. Heartbeats (`action` or the specification's `atcion`) are not
published. A connection silent for three heartbeat intervals, or not logged in within that
time, is closed.

Pushes: when a task of a connected bot enters the task view, when the bot logs in, when its
pacing interval ends, and on a sweep every second for tasks that became due, the replica holding
the connection asks the task source for the bot's next task, the same claim path pull_task takes,
and queues it as a pull_task_ack frame. Each connection has a bounded send queue drained by its
own sender task, so a slow socket never holds up another bot; a slot is reserved before the claim,
so a task is only handed out when its frame has room, and a connection whose queue overflows is
closed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketState

from gateway import errors, ws_metrics
from gateway.accounts import App
from gateway.handler import Answer, CallbackHandler, Request, ack_type_for
from gateway.tasks_board import PendingTask, TaskBoard
from schemas import topics
from wehub.i18n import Catalog

log = logging.getLogger(__name__)

WS_PATH = "/wehub/ws"
HEARTBEAT = "heartbeat"
SILENT_INTERVALS = 3
SEND_QUEUE_FRAMES = 64
SWEEP_INTERVAL_S = 1.0
# Maximum wait for the close frame to reach a client that stopped reading.
CLOSE_TIMEOUT_S = 5.0

NOT_LOGGED_IN = errors.ErrorCode(1701, "ws_not_logged_in", 403)
OTHER_BOT = errors.ErrorCode(1702, "ws_other_bot", 403)

CATALOG = Catalog(
    {
        NOT_LOGGED_IN.name: {
            "en": "{action} was sent before login on this websocket: send login first",
            "zh-CN": "此 websocket 连接在 login 之前发送了 {action}：请先发送 login",
        },
        OTHER_BOT.name: {
            "en": "this websocket belongs to wxid {bound} of appid {bound_appid}, not to {wxid}: "
            "open one connection per bot",
            "zh-CN": "此 websocket 连接属于 appid {bound_appid} 的 wxid {bound}，而不是 {wxid}："
            "每个机器人使用各自的连接",
        },
    }
)

# Close codes in the private range 4000-4999, with the reason counted in the metrics.
CLOSE_REPLACED = (4001, "replaced")
CLOSE_HEARTBEAT = (4002, "heartbeat_timeout")
CLOSE_NO_LOGIN = (4003, "login_timeout")
CLOSE_QUEUE_FULL = (4004, "send_queue_full")

BotKey = tuple[str, str]


def websocket_url(public_url: str, token: str | None) -> str:
    """Return the default ws_url: the public URL with its scheme swapped, path /wehub/ws[/<token>]."""
    if public_url.startswith("https://"):
        base = "wss://" + public_url.removeprefix("https://")
    else:
        base = "ws://" + public_url.removeprefix("http://")
    return f"{base}{WS_PATH}/{token}" if token else f"{base}{WS_PATH}"


def pick_url(urls: tuple[str, ...], wxid: str) -> str:
    """Return the url of `urls` for `wxid`, the same on every replica and every run."""
    digest = hashlib.sha256(wxid.encode()).digest()
    return urls[int.from_bytes(digest[:8], "big") % len(urls)]


def _frame_action(document: Any) -> str | None:
    if not isinstance(document, dict):
        return None
    action = document.get("action", document.get("atcion"))
    return action if isinstance(action, str) else None


def _metric_action(action: str | None) -> str:
    if action is None:
        return "none"
    return action if action == HEARTBEAT or action in topics.EVENT_SCHEMAS else "other"


class Connection:
    """One websocket: the bot it belongs to and its bounded send queue, drained by `run_sender`."""

    def __init__(self, websocket: WebSocket, token: str | None, client_address: str, heartbeat_s: int) -> None:
        self.websocket = websocket
        self.token = token
        self.client_address = client_address
        self.heartbeat_s = heartbeat_s
        self.opened_at = time.monotonic()
        self.bot: BotKey | None = None
        self.push_waiting = False
        self.closed = asyncio.Event()
        self.close_code = 1000
        self.close_reason = "client_closed"
        self._frames: collections.deque[str] = collections.deque()
        self._reserved = 0
        self._wakeup = asyncio.Event()
        self.on_drained: Callable[[], None] | None = None

    @property
    def silence_limit_s(self) -> float:
        return float(SILENT_INTERVALS * self.heartbeat_s)

    def room(self) -> int:
        return SEND_QUEUE_FRAMES - len(self._frames) - self._reserved

    def send(self, payload: dict[str, Any]) -> bool:
        """Queue a frame. Return False, and close the connection, when the queue is full."""
        if self.closed.is_set():
            return False
        if self.room() <= 0:
            self.close(*CLOSE_QUEUE_FULL)
            return False
        self._frames.append(orjson.dumps(payload).decode())
        self._wakeup.set()
        return True

    def reserve(self) -> bool:
        """Reserve one slot of the queue for a push. Return False when no slot is free."""
        if self.closed.is_set() or self.room() <= 0:
            return False
        self._reserved += 1
        return True

    def send_reserved(self, payload: dict[str, Any] | None) -> bool:
        """Queue a frame into the slot `reserve` held, or only free the slot when `payload` is None."""
        self._reserved -= 1
        if payload is None or self.closed.is_set():
            return False
        self._frames.append(orjson.dumps(payload).decode())
        self._wakeup.set()
        return True

    def close(self, code: int, reason: str) -> None:
        """Ask the sender to close the socket. Only the first reason given is counted."""
        if self.closed.is_set():
            return
        self.close_code, self.close_reason = code, reason
        self.closed.set()
        self._wakeup.set()

    async def run_sender(self) -> None:
        """Send queued frames in order until the connection closes, then send the close frame."""
        websocket = self.websocket
        try:
            while not self.closed.is_set():
                while self._frames and not self.closed.is_set():
                    await websocket.send_text(self._frames.popleft())
                if self.push_waiting and self.on_drained is not None:
                    self.push_waiting = False
                    self.on_drained()
                self._wakeup.clear()
                if not self._frames:
                    await self._wakeup.wait()
        except Exception as error:
            # Any failure to send means that the client is gone.
            self.close(1011, "send_failed")
            log.debug("websocket send failed: %s", type(error).__name__, extra={"close_reason": self.close_reason})
            return
        finally:
            self._frames.clear()
        connected = WebSocketState.CONNECTED
        if websocket.application_state == connected and websocket.client_state == connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(websocket.close(self.close_code, self.close_reason), CLOSE_TIMEOUT_S)


class Hub:
    """The connections of one process by bot, and the pushes of their tasks."""

    def __init__(self, handler: CallbackHandler) -> None:
        self.handler = handler
        self.source = handler.task_source
        board = getattr(self.source, "board", None)
        self.board: TaskBoard | None = board if isinstance(board, TaskBoard) else None
        self.min_interval_s = float(handler.settings.task_min_interval_s)
        self.default_heartbeat_s = int(handler.settings.ws_heartbeat_interval_s)
        self.connections: dict[BotKey, Connection] = {}
        self._pushing: set[BotKey] = set()
        self._again: set[BotKey] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        listeners = getattr(self.source, "task_listeners", None)
        if isinstance(listeners, list):
            listeners.append(self.task_added)

    # The login_ack extension.

    def login_extension(self, app: App, wxid: str) -> dict[str, Any] | None:
        """Return the extension_protocol for a bot in websocket mode, or None for a bot on HTTP."""
        options = app.websocket
        if options is None or not options.covers(wxid):
            return None
        urls = options.ws_urls or (websocket_url(self.handler.settings.effective_public_url, app.url_token),)
        interval = options.heartbeat_interval_s or self.default_heartbeat_s
        return {"type": "websocket", "param": {"ws_url": pick_url(urls, wxid), "heartbeat_interval": interval}}

    # Connections.

    def attach(self, connection: Connection, bot: BotKey) -> None:
        """Make `connection` the one of `bot`, closing the connection it replaces."""
        previous = self.connections.get(bot)
        # NOTE: only a connection on this replica is replaced; one on another replica stays open until it goes silent.
        if previous is not None and previous is not connection:
            previous.bot = None
            previous.close(*CLOSE_REPLACED)
            log.info("websocket of bot replaced by a newer one", extra={"appid": bot[0]})
        connection.bot = bot
        connection.on_drained = lambda: self.mark(bot)
        self.connections[bot] = connection
        ws_metrics.CONNECTED_BOTS.set(len(self.connections))
        if self._sweeper is None and self.board is not None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        self.mark(bot)

    def detach(self, connection: Connection) -> None:
        """Stop pushing to `connection` and release its bot."""
        bot = connection.bot
        connection.bot = None
        if bot is not None and self.connections.get(bot) is connection:
            del self.connections[bot]
            ws_metrics.CONNECTED_BOTS.set(len(self.connections))
        if not self.connections and self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    # Pushes.

    def task_added(self, task: PendingTask) -> None:
        """Schedule a push of a new task of a connected bot, now or at its not_before."""
        bot = (task.appid, task.bot_wxid)
        if bot not in self.connections:
            return
        delay_s = 0.0
        if task.not_before is not None:
            delay_s = max(0.0, task.not_before / 1000 - time.time())
        if delay_s > 0:
            asyncio.get_running_loop().call_later(delay_s, self.mark, bot)
        else:
            self.mark(bot)

    def mark(self, bot: BotKey) -> None:
        """Try a push for `bot` soon; a push already running for it tries once more afterwards."""
        if bot not in self.connections:
            return
        if bot in self._pushing:
            self._again.add(bot)
            return
        self._pushing.add(bot)
        task = asyncio.get_running_loop().create_task(self._push(bot))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _push(self, bot: BotKey) -> None:
        try:
            pushed = await self._push_once(bot)
        except Exception:
            log.exception("push to a connected bot failed", extra={"appid": bot[0]})
            pushed = False
        finally:
            self._pushing.discard(bot)
        loop = asyncio.get_running_loop()
        if pushed:
            # The task source hands out nothing before the pacing interval ends, so try again right after it.
            loop.call_later(self.min_interval_s + 0.01, self.mark, bot)
        if bot in self._again:
            self._again.discard(bot)
            self.mark(bot)

    async def _push_once(self, bot: BotKey) -> bool:
        connection = self.connections.get(bot)
        if connection is None:
            return False
        if not connection.reserve():
            connection.push_waiting = True
            return False
        try:
            task = await self.source.next_task(*bot)
        except Exception:
            connection.send_reserved(None)
            raise
        if task is None:
            connection.send_reserved(None)
            return False
        frame = {"error_code": 0, "error_reason": "", "ack_type": "pull_task_ack", "data": task}
        if self.connections.get(bot) is not connection or not connection.send_reserved(frame):
            # NOTE: a task handed out while its connection closed is not resent, so it expires without a result.
            ws_metrics.PUSHES_LOST.inc()
            log.warning("task %s handed out but its websocket closed before the push", task.get("task_id"))
            return True
        ws_metrics.PUSHES.inc()
        log.debug("task %s pushed", task.get("task_id"))
        return True

    def _due_bots(self) -> Iterator[BotKey]:
        board = self.board
        assert board is not None
        for bot in self.connections:
            state = board.bots.get(bot)
            if state is not None and any(task.task_id not in board.dispatched for task in state.tasks):
                yield bot

    async def _sweep(self) -> None:
        """Mark bots whose task became due without an event: not_before reached, claim released, new day."""
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            for bot in list(self._due_bots()):
                if bot not in self._pushing:
                    self.mark(bot)

    # One connection.

    async def serve(self, websocket: WebSocket) -> None:
        """Serve one websocket from accept to close."""
        await websocket.accept()
        client = websocket.client
        token = websocket.path_params.get("token") or websocket.query_params.get("token")
        connection = Connection(websocket, token, client.host if client else "", self.default_heartbeat_s)
        ws_metrics.CONNECTIONS.inc()
        sender = asyncio.get_running_loop().create_task(connection.run_sender())
        try:
            await self._receive(connection)
        except Exception:
            log.exception("websocket failed unexpectedly")
            connection.close(1011, "internal_error")
        finally:
            self.detach(connection)
            connection.close(1000, "client_closed")
            ws_metrics.CONNECTIONS.dec()
            ws_metrics.DISCONNECTS.labels(connection.close_reason).inc()
            try:
                await asyncio.wait_for(sender, CLOSE_TIMEOUT_S * 2)
            except TimeoutError:
                log.warning("websocket sender did not stop in time")

    async def _receive(self, connection: Connection) -> None:
        closed = asyncio.get_running_loop().create_task(connection.closed.wait())
        try:
            while not connection.closed.is_set():
                timeout_s = self._silence_left_s(connection)
                if timeout_s <= 0:
                    connection.close(*(CLOSE_HEARTBEAT if connection.bot else CLOSE_NO_LOGIN))
                    return
                receiving = asyncio.ensure_future(connection.websocket.receive())
                done, _ = await asyncio.wait({receiving, closed}, timeout=timeout_s,
                                             return_when=asyncio.FIRST_COMPLETED)
                if receiving not in done:
                    receiving.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await receiving
                    if not connection.closed.is_set():
                        connection.close(*(CLOSE_HEARTBEAT if connection.bot else CLOSE_NO_LOGIN))
                    return
                message = receiving.result()
                if message["type"] == "websocket.disconnect":
                    connection.close(1000, "client_closed")
                    return
                await self._frame(connection, message)
        finally:
            closed.cancel()

    def _silence_left_s(self, connection: Connection) -> float:
        if connection.bot is None:
            # Heartbeats alone do not keep a connection that never logs in.
            return connection.opened_at + connection.silence_limit_s - time.monotonic()
        return connection.silence_limit_s

    async def _frame(self, connection: Connection, message: Mapping[str, Any]) -> None:
        text = message.get("text")
        body = text.encode() if isinstance(text, str) else bytes(message.get("bytes") or b"")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            document = None
        action = _frame_action(document)
        ws_metrics.FRAMES.labels(_metric_action(action)).inc()
        if action == HEARTBEAT:
            return
        request = Request(
            body=body,
            body_bytes=len(body),
            client_address=connection.client_address,
            token=connection.token,
            transport="websocket",
        )
        rejection = self._ownership(connection, document, action)
        if rejection is not None:
            connection.send(await self._reject(request, action, *rejection))
            return
        answer = await self.handler.handle(request)
        connection.send(self._after(connection, request, answer))

    def _ownership(self, connection: Connection, document: Any, action: str | None) -> tuple[
            errors.ErrorCode, dict[str, Any]] | None:
        """Return the error code and its parameters when the frame may not use this connection, else None."""
        if not isinstance(document, dict) or action is None:
            # The handler rejects this frame with the precise reason.
            return None
        appid, wxid = document.get("appid"), document.get("wxid")
        if connection.bot is None:
            return None if action == "login" else (NOT_LOGGED_IN, {"action": action[:64]})
        if (appid, wxid) != connection.bot:
            bound_appid, bound = connection.bot
            return OTHER_BOT, {"bound": bound, "bound_appid": bound_appid, "wxid": str(wxid)[:64]}
        return None

    async def _reject(self, request: Request, action: str | None, code: errors.ErrorCode,
                      params: dict[str, Any]) -> dict[str, Any]:
        request.action = action
        locale = self.handler.locale
        await self.handler.dead_letter(request, code, CATALOG.render(code.name, "en", **params), code.status)
        log.info("websocket frame rejected", extra={"event_id": request.event_id, "reason_code": code.name,
                                                   "action": action})
        return {"error_code": code.number, "error_reason": CATALOG.render(code.name, locale, **params),
                "ack_type": ack_type_for(action)}

    def _after(self, connection: Connection, request: Request, answer: Answer) -> dict[str, Any]:
        """Bind the bot after its login, stop pushes after its logout, and return the response frame."""
        payload = answer.payload
        if payload.get("error_code") != 0 or request.appid is None or request.bot_wxid is None:
            return payload
        bot = (request.appid, request.bot_wxid)
        if request.action == "login":
            data = dict(payload.get("data") or {})
            # The client is on the socket already, and it would reconnect in a loop if it got the url again.
            data.pop("extension_protocol", None)
            app = self.handler.accounts.get(request.appid)
            options = app.websocket if app is not None else None
            connection.heartbeat_s = (options.heartbeat_interval_s if options else None) or self.default_heartbeat_s
            self.attach(connection, bot)
            return {**payload, "data": data}
        if request.action == "logout":
            # Pushes stop, but the socket stays the bot's, so that events after a logout are accepted as over HTTP.
            self.detach(connection)
            connection.bot = bot
        return payload


def websocket_routes(handler: CallbackHandler) -> list[BaseRoute]:
    """Return the routes of websocket mode, and set the handler's login_ack extension."""
    hub = Hub(handler)
    handler.login_extension = hub.login_extension

    async def endpoint(websocket: WebSocket) -> None:
        await hub.serve(websocket)

    return [WebSocketRoute(WS_PATH, endpoint), WebSocketRoute(WS_PATH + "/{token}", endpoint)]
