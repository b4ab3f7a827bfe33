"""A bare websocket endpoint: the memory a connection costs in uvicorn and Starlette alone.

bench.ws_connections opens the same number of sockets here as on the gateway, to tell the
transport's share of memory per connection from the gateway's.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

ANSWER = '{"error_code":0,"error_reason":"","ack_type":"login_ack","data":{}}'


async def endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        await websocket.send_text(ANSWER)


app = Starlette(routes=[WebSocketRoute("/wehub/ws", endpoint)])
