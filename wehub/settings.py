"""Every setting of the pipeline: a `WEHUB_*` environment variable with a default.

The table in README.md and README.zh-CN.md is printed from `SETTINGS` by
`wehub settings --markdown`, so a setting added here is documented by rerunning it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class SettingError(ValueError):
    """A `WEHUB_*` variable contains a value that cannot be used."""


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, default, type and meaning in both languages."""

    name: str
    default: str
    kind: type
    help_en: str
    help_zh: str

    @property
    def env(self) -> str:
        return "WEHUB_" + self.name.upper()


def _home_cache() -> str:
    return str(Path.home() / ".cache" / "wehub")


SETTINGS: tuple[Setting, ...] = (
    Setting("locale", "zh-CN", str,
            "Language of user-facing messages (error_reason, CLI output): zh-CN or en.",
            "面向用户的消息语言（error_reason、命令行输出）：zh-CN 或 en。"),
    Setting("host", "127.0.0.1", str,
            "Address the gateway listens on.",
            "网关监听的地址。"),
    Setting("port", "8700", int,
            "Port the gateway listens on.",
            "网关监听的端口。"),
    Setting("public_url", "", str,
            "Base URL WeHub uses to reach the gateway (for printed URLs and ws_url); empty means http://HOST:PORT.",
            "WeHub 访问网关的基础 URL（用于打印的地址和 ws_url）；为空时使用 http://HOST:PORT。"),
    Setting("gateway_name", "", str,
            "Instance name the gateway writes into every event; empty means HOSTNAME-PID.",
            "网关写入每个事件的实例名；为空时为 主机名-进程号。"),
    Setting("workers", "1", int,
            "Number of uvicorn worker processes of the gateway. With more than one, /metrics sums the "
            "workers' values, kept in files under <data_dir>/gateway-metrics-<port>.",
            "网关的 uvicorn 工作进程数。多于一个时，/metrics 汇总各进程的指标，指标文件位于 "
            "<data_dir>/gateway-metrics-<端口>。"),
    Setting("forwarded_allow_ips", "", str,
            "Proxies or load balancers (comma-separated IPs or networks, * for any) whose X-Forwarded-For "
            "and X-Forwarded-Proto headers the gateway trusts for the client's address. Empty: those headers "
            "are ignored and events carry the connection's peer address.",
            "网关信任其 X-Forwarded-For 与 X-Forwarded-Proto 头的代理或负载均衡器（逗号分隔的 IP 或网段，* 表示任意），"
            "用来得到客户端地址。为空时忽略这些头，事件记录连接对端的地址。"),
    Setting("data_dir", "./wehub-data", str,
            "Folder for local service data, logs and the embedded ClickHouse.",
            "本地服务数据、日志和内嵌 ClickHouse 的目录。"),
    Setting("cache_dir", "", str,
            "Folder where Kafka jars and the MinIO binary are cached; empty means ~/.cache/wehub.",
            "缓存 Kafka jar 包和 MinIO 程序的目录；为空时使用 ~/.cache/wehub。"),
    Setting("accounts", "./accounts.toml", str,
            "TOML file of [[app]] tables: appid, secret, wxids (whitelist), optional url_token and websocket.",
            "[[app]] 表组成的 TOML 文件：appid、secret、wxids（白名单），可选 url_token 和 websocket。"),
    Setting("admin_token", "", str,
            "Bearer token for POST /api/tasks and the gateway's admin endpoints; empty disables them.",
            "POST /api/tasks 及网关管理接口的 Bearer 令牌；为空时这些接口关闭。"),
    Setting("kafka_bootstrap", "", str,
            "Kafka bootstrap servers (host:port,...); empty means the local broker started by `wehub up`.",
            "Kafka 引导服务器（host:port,...）；为空时使用 `wehub up` 启动的本地 broker。"),
    Setting("kafka_port", "9092", int,
            "Port of the local Kafka broker (its controller listens on the next port).",
            "本地 Kafka broker 的端口（控制器监听下一个端口）。"),
    Setting("topic_prefix", "wehub", str,
            "Prefix of every topic: <prefix>.<action>, <prefix>.tasks, <prefix>.dead_letter ...",
            "所有 topic 的前缀：<prefix>.<action>、<prefix>.tasks、<prefix>.dead_letter ……"),
    Setting("topic_partitions", "6", int,
            "Partitions of each topic the pipeline creates.",
            "流水线创建的每个 topic 的分区数。"),
    Setting("kafka_max_message_bytes", "1000000", int,
            "Largest Kafka record the gateway produces; larger report_contact events are split per entity.",
            "网关写入的单条 Kafka 记录上限；更大的 report_contact 事件按实体拆分。"),
    Setting("kafka_timeout_s", "10", float,
            "Time the gateway waits for Kafka to acknowledge before it answers with an error.",
            "网关等待 Kafka 确认的时间，超时后返回错误。"),
    Setting("max_in_flight", "2000", int,
            "Maximum number of produce requests waiting for Kafka at once in one gateway process.",
            "单个网关进程同时等待 Kafka 确认的最大请求数。"),
    Setting("body_limit_bytes", "4194304", int,
            "Largest request body for actions without their own limit.",
            "未单独设置上限的动作的最大请求体。"),
    Setting("contact_body_limit_bytes", "33554432", int,
            "Largest report_contact and report_room_member_info body.",
            "report_contact 与 report_room_member_info 的最大请求体。"),
    Setting("dead_letter_body_cap_bytes", "262144", int,
            "Bytes of a refused body kept in its dead-letter record.",
            "死信记录中保留的被拒请求体字节数。"),
    Setting("s3_endpoint", "", str,
            "S3 endpoint host:port of MinIO; empty means the local MinIO started by `wehub up`.",
            "MinIO 的 S3 地址 host:port；为空时使用 `wehub up` 启动的本地 MinIO。"),
    Setting("s3_port", "9000", int,
            "Port of the local MinIO server (its console listens on the next port).",
            "本地 MinIO 服务的端口（控制台监听下一个端口）。"),
    Setting("s3_access_key", "wehub", str,
            "S3 access key.",
            "S3 访问密钥 ID。"),
    Setting("s3_secret_key", "wehub-secret-key", str,
            "S3 secret key (never logged).",
            "S3 私有密钥（不会写入日志）。"),
    Setting("s3_secure", "false", bool,
            "Use HTTPS for the S3 endpoint.",
            "S3 地址是否使用 HTTPS。"),
    Setting("media_bucket", "wehub-media", str,
            "Bucket where uploads and fetched media are stored.",
            "存放上传文件和抓取媒体的存储桶。"),
    Setting("upload_limit_bytes", "262144000", int,
            "Largest file accepted by POST /wehub/upload.",
            "POST /wehub/upload 接受的最大文件。"),
    Setting("clickhouse_dsn", "", str,
            "chdb://DIR for the embedded engine, or http(s)://user:password@host:port for a server; "
            "empty means chdb://<data_dir>/clickhouse.",
            "chdb://目录 使用内嵌引擎，或 http(s)://用户:密码@主机:端口 使用服务器；为空时为 chdb://<data_dir>/clickhouse。"),
    Setting("clickhouse_database", "wehub", str,
            "ClickHouse database of the analytics tables.",
            "分析表所在的 ClickHouse 数据库。"),
    Setting("batch_max_rows", "50000", int,
            "Rows a consumer collects before it inserts.",
            "消费者攒满多少行后写入。"),
    Setting("batch_max_wait_ms", "1000", int,
            "Longest time a consumer holds rows before it inserts.",
            "消费者最多持有多少毫秒后写入。"),
    Setting("dead_letter_max_per_minute", "100", int,
            "Dead letters per minute above which a consumer stops instead of draining its topic.",
            "每分钟死信超过此数时消费者停止，而不是继续清空 topic。"),
    Setting("task_min_interval_s", "2", float,
            "Minimum time between two tasks handed to the same bot.",
            "同一机器人两次任务下发之间的最小间隔。"),
    Setting("task_daily_accept_cap", "200", int,
            "Friend-request accepts (task_type 13) handed to one bot per day.",
            "每个机器人每天下发的通过好友请求任务（task_type 13）上限。"),
    Setting("task_claim_ahead", "true", bool,
            "Claim a bot's next task when one is handed out, so the next pull_task needs no Kafka round trip.",
            "下发任务时预先认领该机器人的下一个任务，使下一次 pull_task 无需等待 Kafka 往返。"),
    Setting("task_result_timeout_s", "600", float,
            "Time after dispatch without a report_task_result before a task is marked expired.",
            "任务下发后多久未收到 report_task_result 即标记为过期。"),
    Setting("ws_heartbeat_interval_s", "30", int,
            "heartbeat_interval handed to bots in websocket mode.",
            "websocket 模式下发给机器人的 heartbeat_interval。"),
    Setting("media_policy_types", "3,34,43,4903", str,
            "msg_type values whose files the media consumer requests with an upload task.",
            "媒体消费者会发起上传任务的 msg_type。"),
    Setting("media_max_request_bytes", "52428800", int,
            "Files larger than this (as the message reports) are skipped, not requested.",
            "消息中报告的大小超过此值的文件不请求上传。"),
    Setting("media_fetch_hosts", "", str,
            "Comma-separated host suffixes the media consumer may fetch URL media from; empty disables fetching.",
            "媒体消费者可抓取 URL 媒体的主机后缀（逗号分隔）；为空时不抓取。"),
    Setting("media_fetch_allow_private", "false", bool,
            "Allow fetching from private, loopback and link-local addresses (tests only).",
            "允许从私有、回环和链路本地地址抓取（仅用于测试）。"),
    Setting("media_fetch_max_bytes", "10485760", int,
            "Largest URL media file (emoji, link thumbnail) the media consumer downloads.",
            "媒体消费者下载的 URL 媒体文件（表情、链接缩略图）的最大字节数。"),
    Setting("media_fetch_timeout_s", "10", float,
            "Time allowed for one URL media download, redirects included.",
            "单个 URL 媒体下载（含重定向）允许的时间。"),
    Setting("media_fetch_avatars", "false", bool,
            "Also fetch avatars (head_img of login and report_new_friend) into the media bucket.",
            "同时把头像（login 和 report_new_friend 的 head_img）抓取到媒体存储桶。"),
    Setting("log_level", "INFO", str,
            "Log level: DEBUG, INFO, WARNING, ERROR.",
            "日志级别：DEBUG、INFO、WARNING、ERROR。"),
    Setting("log_format", "json", str,
            "Log format: json (one JSON object a line) or text.",
            "日志格式：json（每行一个 JSON 对象）或 text。"),
)

_BY_NAME = {setting.name: setting for setting in SETTINGS}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _convert(setting: Setting, raw: str) -> Any:
    text = raw.strip()
    if setting.kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise SettingError(f"{setting.env}={raw!r} is invalid: expected true or false")
    if setting.kind is int:
        try:
            return int(text)
        except ValueError:
            raise SettingError(f"{setting.env}={raw!r} is invalid: expected an integer") from None
    if setting.kind is float:
        try:
            return float(text)
        except ValueError:
            raise SettingError(f"{setting.env}={raw!r} is invalid: expected a number") from None
    return raw


@dataclass(frozen=True)
class Settings:
    """The resolved settings; `load()` builds it from the environment."""

    values: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def with_overrides(self, **overrides: Any) -> Settings:
        unknown = set(overrides) - set(_BY_NAME)
        if unknown:
            raise SettingError(f"unknown settings: {', '.join(sorted(unknown))}")
        return Settings({**self.values, **overrides})

    @property
    def cache_path(self) -> Path:
        return Path(self.values["cache_dir"] or _home_cache()).expanduser()

    @property
    def data_path(self) -> Path:
        return Path(self.values["data_dir"]).expanduser().resolve()

    @property
    def effective_clickhouse_dsn(self) -> str:
        return str(self.values["clickhouse_dsn"] or f"chdb://{self.data_path / 'clickhouse'}")

    @property
    def effective_public_url(self) -> str:
        url = self.values["public_url"] or f"http://{self.values['host']}:{self.values['port']}"
        return str(url).rstrip("/")

    def topic(self, suffix: str) -> str:
        return f"{self.values['topic_prefix']}.{suffix}"


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read every setting from `environ` (default: the process environment).

    Raises SettingError naming the variable and its value when one cannot be converted.
    """
    source = os.environ if environ is None else environ
    values = {setting.name: _convert(setting, source.get(setting.env, setting.default)) for setting in SETTINGS}
    if values["locale"] not in ("zh-CN", "en"):
        raise SettingError(f"WEHUB_LOCALE={values['locale']!r} is invalid: expected zh-CN or en")
    return Settings(values)


def markdown_table(language: str = "en") -> str:
    """Render the settings as the Markdown table of the README in `language` (en or zh-CN)."""
    if language == "zh-CN":
        lines = ["| 变量 | 默认值 | 说明 |", "|---|---|---|"]
    else:
        lines = ["| variable | default | meaning |", "|---|---|---|"]
    for setting in SETTINGS:
        text = setting.help_zh if language == "zh-CN" else setting.help_en
        empty = "（空）" if language == "zh-CN" else "(empty)"
        default = setting.default or empty
        lines.append(f"| `{setting.env}` | `{default}` | {text.replace('|', '/')} |")
    return "\n".join(lines)
