"""Prometheus metrics of the websocket transport, in the gateway's registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from gateway.metrics import REGISTRY

CONNECTIONS = Gauge(
    "wehub_gateway_ws_connections",
    "Open websocket connections, logged in or not.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
CONNECTED_BOTS = Gauge(
    "wehub_gateway_ws_connected_bots",
    "Bots logged in on a websocket; tasks for them are pushed.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
FRAMES = Counter(
    "wehub_gateway_ws_frames_total",
    "Frames received by action (typed actions and heartbeat; others are 'other', unreadable 'none').",
    ["action"],
    registry=REGISTRY,
)
PUSHES = Counter(
    "wehub_gateway_ws_pushes_total",
    "Tasks pushed to a connected bot as pull_task_ack frames.",
    registry=REGISTRY,
)
PUSHES_LOST = Counter(
    "wehub_gateway_ws_pushes_lost_total",
    "Tasks handed out for a push whose connection closed before the frame was queued; they expire.",
    registry=REGISTRY,
)
DISCONNECTS = Counter(
    "wehub_gateway_ws_disconnects_total",
    "Closed websocket connections by reason.",
    ["reason"],
    registry=REGISTRY,
)
