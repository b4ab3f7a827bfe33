"""`wehub up`: the whole pipeline on this machine, until Ctrl-C.

It starts local Kafka and MinIO from deploy/local unless WEHUB_KAFKA_BOOTSTRAP and
WEHUB_S3_ENDPOINT name running ones, and ClickHouse is embedded by default. Then it creates the
topics, runs the gateway and every consumer as child processes and prints the URLs to enter in
the WeHub console. Ctrl-C stops the gateway first, so no new request is accepted, then
the consumers, which commit what they inserted, and last the services. What the gateway
acknowledged is already in Kafka with acks=all, so nothing acknowledged is lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from deploy import local
from gateway.accounts import AccountsError, read_apps
from wehub import kafka
from wehub.i18n import Catalog
from wehub.settings import Settings

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0
CHILD_STOP_TIMEOUT_S = 40.0
_POLL_S = 0.5
LOG_TAIL_LINES = 40

MESSAGES = Catalog({
    "starting_kafka": {"en": "starting Kafka on {address} ...", "zh-CN": "正在启动 Kafka（{address}）……"},
    "starting_minio": {"en": "starting MinIO on {address} ...", "zh-CN": "正在启动 MinIO（{address}）……"},
    "using": {"en": "using {what} at {address}", "zh-CN": "使用已配置的 {what}：{address}"},
    "accounts_missing": {
        "en": "accounts file {path} not found: create it with one [[app]] table per appid "
              "(appid, secret, wxids), see README.md, or set WEHUB_ACCOUNTS",
        "zh-CN": "找不到账号文件 {path}：请按 README.md 为每个 appid 写一个 [[app]] 表（appid、secret、wxids），"
                 "或设置 WEHUB_ACCOUNTS",
    },
    "accounts_invalid": {"en": "accounts file is invalid: {reason}", "zh-CN": "账号文件无效：{reason}"},
    "service_failed": {"en": "{what} failed to start: {reason}", "zh-CN": "{what} 启动失败：{reason}"},
    "child_exited": {
        "en": "{what} exited with status {status}; stopping the pipeline (the end of its log {log} is above)",
        "zh-CN": "{what} 已退出（状态 {status}），正在停止流水线（上方是其日志 {log} 的末尾）",
    },
    "not_ready": {
        "en": "the gateway did not become ready within {seconds} s: the ends of the logs follow",
        "zh-CN": "网关在 {seconds} 秒内未就绪：以下是各日志的末尾",
    },
    "ready": {
        "en": """
wehub pipeline is running. Enter these in the WeHub console:
  callback URL    {callback}
  file upload URL {upload}
  websocket URL   {websocket} (handed out at login to appids in websocket mode)
Appids: {appids}
Data:
  Kafka           {kafka} (topics {prefix}.*)
  MinIO           {s3} (bucket {bucket})
  ClickHouse      {clickhouse} (database {database})
  data folder     {data_dir}
  logs            {logs}/gateway.log, {logs}/consumers.log
Query the analytics from another terminal:
  {wehub} sql "SELECT msg_type, count() FROM messages GROUP BY msg_type"
Press Ctrl-C to stop.""",
        "zh-CN": """
wehub 流水线已运行。请在 WeHub 后台填写：
  回调地址        {callback}
  文件上传地址    {upload}
  websocket 地址  {websocket}（登录时下发给启用 websocket 模式的 appid）
Appid：{appids}
数据：
  Kafka           {kafka}（topic {prefix}.*）
  MinIO           {s3}（存储桶 {bucket}）
  ClickHouse      {clickhouse}（数据库 {database}）
  数据目录        {data_dir}
  日志            {logs}/gateway.log、{logs}/consumers.log
在另一个终端查询分析数据：
  {wehub} sql "SELECT msg_type, count() FROM messages GROUP BY msg_type"
按 Ctrl-C 停止。""",
    },
    "stopping": {"en": "stopping ...", "zh-CN": "正在停止……"},
    "stopped": {"en": "stopped", "zh-CN": "已停止"},
})


def add_parser(subparsers: Any) -> None:
    up = subparsers.add_parser(
        "up", help="run the whole pipeline on this machine (local Kafka and MinIO unless configured) until Ctrl-C")
    up.set_defaults(handler=_up)


@dataclass
class Child:
    """A pipeline process started by `wehub up`, writing its log to `log_path`."""

    what: str
    process: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class Pipeline:
    """The services and child processes `wehub up` started, in start order; they stop in reverse."""

    services: list[local.RunningService] = field(default_factory=list)
    children: list[Child] = field(default_factory=list)


def _say(settings: Settings, code: str, **params: Any) -> None:
    print(MESSAGES.render(code, settings.locale, **params), file=sys.stderr, flush=True)


def _start_services(settings: Settings, pipeline: Pipeline) -> Settings:
    """Start local Kafka and MinIO where none is configured; return the settings pointing at them."""
    data_dir = settings.data_path
    overrides: dict[str, Any] = {}
    if str(settings.kafka_bootstrap).strip():
        _say(settings, "using", what="Kafka", address=settings.kafka_bootstrap)
    else:
        _say(settings, "starting_kafka", address=f"127.0.0.1:{settings.kafka_port}")
        broker = local.start_kafka(settings, data_dir)
        pipeline.services.append(broker)
        overrides["kafka_bootstrap"] = broker.address
    if str(settings.s3_endpoint).strip():
        _say(settings, "using", what="MinIO", address=settings.s3_endpoint)
    else:
        _say(settings, "starting_minio", address=f"127.0.0.1:{settings.s3_port}")
        minio = local.start_minio(settings, data_dir)
        pipeline.services.append(minio)
        overrides["s3_endpoint"] = minio.address
    return settings.with_overrides(**overrides)


def child_environment(settings: Settings) -> dict[str, str]:
    """Return the process environment with every setting exported, so children see what `up` resolved."""
    environment = dict(os.environ)
    for name, value in settings.values.items():
        text = str(value)
        if isinstance(value, bool):
            text = "true" if value else "false"
        environment["WEHUB_" + name.upper()] = text
    environment["WEHUB_CLICKHOUSE_DSN"] = settings.effective_clickhouse_dsn
    environment["WEHUB_DATA_DIR"] = str(settings.data_path)
    return environment


def _spawn(what: str, arguments: list[str], environment: dict[str, str], log_dir: Path) -> Child:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{what}.log"
    with log_path.open("ab") as log:
        # A new session keeps the terminal's Ctrl-C away from the children: `up` stops them in order.
        # -P keeps the current folder off sys.path, so a checkout there cannot stand in for ours.
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            [sys.executable, "-P", "-m", "wehub.cli", *arguments], env=environment, start_new_session=True,
            stdout=log, stderr=subprocess.STDOUT)
    return Child(what, process, log_path)


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _wehub_command() -> str:
    """Return the `wehub` command to type in another terminal: the one beside this interpreter, if any."""
    beside = Path(sys.executable).parent / "wehub"
    return str(beside) if beside.exists() else "wehub"


def _wait_ready(settings: Settings, pipeline: Pipeline) -> bool:
    url = f"http://{settings.host}:{settings.port}/readyz"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if _exited_child(pipeline) is not None:
            return False
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return True
        time.sleep(_POLL_S)
    _say(settings, "not_ready", seconds=int(READY_TIMEOUT_S))
    return False


def _print_failed_logs(pipeline: Pipeline) -> None:
    for child in pipeline.children:
        print(f"--- {child.log_path} (last {LOG_TAIL_LINES} lines)", file=sys.stderr)
        print(_log_tail(child.log_path), file=sys.stderr)


def _exited_child(pipeline: Pipeline) -> Child | None:
    return next((child for child in pipeline.children if child.process.poll() is not None), None)


def _stop_child(child: Child) -> None:
    if child.process.poll() is not None:
        return
    child.process.send_signal(signal.SIGTERM)
    try:
        child.process.wait(CHILD_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop within %.0f s after SIGTERM; killing it", child.what, CHILD_STOP_TIMEOUT_S)
        child.process.kill()
        child.process.wait()


def _stop(pipeline: Pipeline) -> None:
    for child in pipeline.children:
        _stop_child(child)
    for service in reversed(pipeline.services):
        service.stop()


@contextlib.contextmanager
def _interrupts_as_flag() -> Iterator[list[int]]:
    """Turn SIGINT and SIGTERM into a recorded signal number, so stopping follows one path."""
    received: list[int] = []

    def record(number: int, _frame: Any) -> None:
        received.append(number)

    previous = {number: signal.signal(number, record) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _urls(settings: Settings, appids: list[str]) -> dict[str, str]:
    base = settings.effective_public_url
    websocket = "ws" + base[len("http"):] if base.startswith("http") else base
    return {
        "callback": f"{base}/wehub",
        "upload": f"{base}/wehub/upload?appid=<appid>&wxid=<bot wxid>",
        "websocket": f"{websocket}/wehub/ws",
        "appids": ", ".join(appids),
    }


def run(settings: Settings) -> int:
    """Start the pipeline, block until a signal or a failed child, then stop everything.

    Returns the exit status: 0 after Ctrl-C, 1 when a service or child failed, 2 for bad accounts.
    """
    if not Path(settings.accounts).exists():
        _say(settings, "accounts_missing", path=settings.accounts)
        return 2
    try:
        apps = read_apps(Path(settings.accounts))
    except AccountsError as error:
        _say(settings, "accounts_invalid", reason=error)
        return 2

    pipeline = Pipeline()
    status = 0
    with _interrupts_as_flag() as received:
        try:
            settings = _start_services(settings, pipeline)
            asyncio.run(kafka.ensure_topics(settings, kafka.pipeline_topics(settings)))
            environment = child_environment(settings)
            log_dir = settings.data_path / "logs"
            pipeline.children.append(_spawn("consumers", ["consume", "all"], environment, log_dir))
            pipeline.children.append(_spawn("gateway", ["gateway"], environment, log_dir))
            if not _wait_ready(settings, pipeline):
                _print_failed_logs(pipeline)
                status = 1
            else:
                _say(settings, "ready", **_urls(settings, sorted(apps)),
                     kafka=kafka.bootstrap_servers(settings), prefix=settings.topic_prefix,
                     s3=settings.s3_endpoint, bucket=settings.media_bucket,
                     clickhouse=settings.effective_clickhouse_dsn, database=settings.clickhouse_database,
                     data_dir=settings.data_path, logs=log_dir, wehub=_wehub_command())
                while not received:
                    failed = _exited_child(pipeline)
                    if failed is not None:
                        print(_log_tail(failed.log_path), file=sys.stderr)
                        _say(settings, "child_exited", what=failed.what, status=failed.process.returncode,
                             log=failed.log_path)
                        status = 1
                        break
                    time.sleep(_POLL_S)
        except local.ServiceError as error:
            _say(settings, "service_failed", what="service", reason=error)
            status = 1
        except kafka.PipelineKafkaError as error:
            _say(settings, "service_failed", what="Kafka", reason=error)
            status = 1
        finally:
            _say(settings, "stopping")
            # Children first: the gateway stops accepting, the consumers commit, then the services go.
            pipeline.children.reverse()
            _stop(pipeline)
            _say(settings, "stopped")
    return status


def _up(arguments: argparse.Namespace) -> int:
    # The terminal is for the lines `up` prints. The INFO records of the services it starts would
    # repeat them as JSON, so only warnings and errors reach it, unless WEHUB_LOG_LEVEL=DEBUG.
    root = logging.getLogger()
    if root.getEffectiveLevel() == logging.INFO:
        root.setLevel(logging.WARNING)
    return run(arguments.settings)
