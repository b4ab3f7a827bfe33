"""`wehub services install|start|stop|status|logs [kafka|minio]`: the local services from a shell.

Services started here keep running after the command returns; `stop` finds them again through
the pid files in `<data_dir>/kafka/` and `<data_dir>/minio/`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deploy.local import cache, kafka, minio, process
from deploy.local.errors import ServiceError, tail
from wehub.i18n import Catalog
from wehub.settings import Settings

SERVICES = ("kafka", "minio")

MESSAGES = Catalog({
    "installed": {"en": "{name}: installed in {path}", "zh-CN": "{name}：已安装到 {path}"},
    "reused": {"en": "{name}: reusing cached {path}", "zh-CN": "{name}：复用缓存 {path}"},
    "started": {"en": "{name}: running on {address} (pid {pid}), log: {log}",
                "zh-CN": "{name}：已在 {address} 运行（pid {pid}），日志：{log}"},
    "already": {"en": "{name}: already running on {address} (pid {pid})",
                "zh-CN": "{name}：已经在 {address} 运行（pid {pid}）"},
    "stopped": {"en": "{name}: stopped", "zh-CN": "{name}：已停止"},
    "not_running": {"en": "{name}: not running", "zh-CN": "{name}：未运行"},
    "no_log": {"en": "{name}: no log yet at {log}", "zh-CN": "{name}：{log} 还没有日志"},
    "failed": {"en": "{name}: failed: {error}", "zh-CN": "{name}：失败：{error}"},
})


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("services", help="install, start, stop and inspect local Kafka and MinIO")
    actions = parser.add_subparsers(dest="services_action", metavar="ACTION", required=True)
    for name, handler, text in (
        ("install", _install, "install Kafka and MinIO into WEHUB_CACHE_DIR (first run only)"),
        ("start", _start, "start the services in the background, data and logs in WEHUB_DATA_DIR"),
        ("stop", _stop, "stop the services started by `wehub services start`"),
        ("status", _status, "show whether each service runs, its address and pid"),
        ("logs", _logs, "print the end of each service's log"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("service", nargs="?", choices=SERVICES, help="one service (default: both)")
        if name == "logs":
            action.add_argument("-n", "--lines", type=int, default=50, help="lines per log (default 50)")
        action.set_defaults(handler=handler)


def _selected(arguments: argparse.Namespace) -> tuple[str, ...]:
    return (arguments.service,) if arguments.service else SERVICES


def _say(arguments: argparse.Namespace, code: str, **params: Any) -> None:
    print(MESSAGES.render(code, arguments.settings.locale, **params))


def _fail(arguments: argparse.Namespace, name: str, error: ServiceError) -> None:
    print(MESSAGES.render("failed", arguments.settings.locale, name=name, error=error), file=sys.stderr)


def _address(config: Settings, name: str) -> str:
    port = config.kafka_port if name == "kafka" else config.s3_port
    return f"127.0.0.1:{port}"


def _service_dir(config: Settings, name: str) -> Path:
    return config.data_path / name


def _install(arguments: argparse.Namespace) -> int:
    ensure: dict[str, Callable[[Path], cache.Installed]] = {
        "kafka": kafka.ensure_kafka, "minio": minio.ensure_minio}
    status = 0
    for name in _selected(arguments):
        try:
            installed = ensure[name](arguments.settings.cache_path)
        except ServiceError as error:
            _fail(arguments, name, error)
            status = 1
            continue
        _say(arguments, "reused" if installed.reused else "installed", name=name, path=installed.path)
    return status


def _start(arguments: argparse.Namespace) -> int:
    config: Settings = arguments.settings
    start: dict[str, Callable[[Settings, Path], process.RunningService]] = {
        "kafka": kafka.start_kafka, "minio": minio.start_minio}
    status = 0
    for name in _selected(arguments):
        running = process.find_running(name, _service_dir(config, name), _address(config, name))
        if running is not None:
            _say(arguments, "already", name=name, address=running.address, pid=running.pid)
            continue
        try:
            service = start[name](config, config.data_path)
        except ServiceError as error:
            _fail(arguments, name, error)
            status = 1
            continue
        _say(arguments, "started", name=name, address=service.address, pid=service.pid, log=service.log_path)
    return status


def _stop(arguments: argparse.Namespace) -> int:
    config: Settings = arguments.settings
    for name in _selected(arguments):
        running = process.find_running(name, _service_dir(config, name), _address(config, name))
        if running is None:
            _say(arguments, "not_running", name=name)
            continue
        running.stop()
        _say(arguments, "stopped", name=name)
    return 0


def _status(arguments: argparse.Namespace) -> int:
    config: Settings = arguments.settings
    status = 0
    for name in _selected(arguments):
        running = process.find_running(name, _service_dir(config, name), _address(config, name))
        if running is None:
            _say(arguments, "not_running", name=name)
            status = 3  # the LSB exit status of `status` for a service that is not running
            continue
        _say(arguments, "started", name=name, address=running.address, pid=running.pid, log=running.log_path)
    return status


def _logs(arguments: argparse.Namespace) -> int:
    config: Settings = arguments.settings
    for name in _selected(arguments):
        log_path = _service_dir(config, name) / f"{name}.log"
        text = tail(log_path, arguments.lines)
        if not text:
            _say(arguments, "no_log", name=name, log=log_path)
            continue
        print(f"==> {log_path} <==")
        print(text)
    return 0
