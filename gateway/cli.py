"""`wehub gateway`: serve the gateway with uvicorn on the configured host, port and workers."""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import uvicorn

from gateway.accounts import AccountsError, read_apps
from gateway.http_protocol import CoalescingHttpProtocol
from gateway.metrics import MULTIPROCESS_DIR_VARIABLE
from wehub.i18n import Catalog

MESSAGES = Catalog(
    {
        "invalid_forwarded_allow_ips": {
            "en": "WEHUB_FORWARDED_ALLOW_IPS: {entry!r} is not an IP address, a network or *: "
            "list the addresses of the proxies in front of the gateway, separated by commas",
            "zh-CN": "WEHUB_FORWARDED_ALLOW_IPS：{entry!r} 不是 IP 地址、网段或 *："
            "请列出网关前面代理的地址，用逗号分隔",
        },
    }
)


def add_parser(subparsers: Any) -> None:
    serve = subparsers.add_parser("gateway", help="serve the WeHub callback gateway (POST /wehub)")
    serve.add_argument("--host", help="address to listen on (default: WEHUB_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (default: WEHUB_PORT)")
    serve.add_argument("--workers", type=int, help="uvicorn worker processes (default: WEHUB_WORKERS)")
    serve.set_defaults(handler=_serve)


def _fresh_metrics_dir(data_dir: Path, port: int) -> Path:
    """Return an empty folder for the workers' metric files, emptied of an earlier run's."""
    # NOTE: the gauges of a worker that dies stay in its file until the next start.
    folder = data_dir / f"gateway-metrics-{port}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def invalid_forwarded_entry(value: str) -> str | None:
    """Return the first entry of a WEHUB_FORWARDED_ALLOW_IPS value that is no IP, network or *; None if all are."""
    for entry in (part.strip() for part in value.split(",")):
        if not entry or entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return entry
    return None


def _serve(arguments: argparse.Namespace) -> int:
    config = arguments.settings
    host = arguments.host or config.host
    port = arguments.port or config.port
    workers = arguments.workers or config.workers
    try:
        apps = read_apps(Path(config.accounts))
    except AccountsError as error:
        print(f"wehub gateway: {error}", file=sys.stderr)
        return 2
    forwarded_allow_ips = str(config.forwarded_allow_ips).strip()
    # uvicorn would take a mistyped address as a host name and trust no proxy, silently.
    bad_entry = invalid_forwarded_entry(forwarded_allow_ips)
    if bad_entry is not None:
        print(f"wehub gateway: {MESSAGES.render('invalid_forwarded_allow_ips', str(config.locale), entry=bad_entry)}",
              file=sys.stderr)
        return 2
    # Workers rebuild the settings from the environment, so the command-line overrides go there.
    os.environ.update({"WEHUB_HOST": str(host), "WEHUB_PORT": str(port), "WEHUB_WORKERS": str(workers)})
    if workers > 1:
        os.environ[MULTIPROCESS_DIR_VARIABLE] = str(_fresh_metrics_dir(Path(config.data_dir), port))
    print(
        f"wehub gateway: {len(apps)} appids, listening on http://{host}:{port}/wehub, uvicorn workers: {workers}",
        file=sys.stderr,
    )
    uvicorn.run(
        "gateway.app:app_from_environment",
        factory=True,
        http=CoalescingHttpProtocol,
        # Off unless proxies are named: reading forwarded headers costs every request about 2 µs.
        proxy_headers=bool(forwarded_allow_ips),
        forwarded_allow_ips=forwarded_allow_ips or None,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(float(config.kafka_timeout_s)) + 5,
        # A websocket frame is one request: the largest any action may send (report_contact).
        ws_max_size=max(int(config.body_limit_bytes), int(config.contact_body_limit_bytes)),
    )
    return 0
