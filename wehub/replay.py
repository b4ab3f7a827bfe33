"""`wehub replay`: send a recorded corpus of WeHub requests to a gateway in order and count the responses.

A corpus is JSON lines of three kinds: `http` (a request body POSTed as UTF-8 JSON to the callback
URL), `upload` (a multipart upload of one file to the upload URL) and `raw` (bytes POSTed as they
are, inputs a gateway must reject). Each bot's lines are sent in file order, also when several
connections are used, because the gateway sees a bot's events in the order WeHub sent them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from wehub.i18n import Catalog

# WeHub gives up on a response after 30 s, so a slower response is lost for the client too.
WEHUB_TIMEOUT_S = 30.0
MAX_REFUSALS_LISTED = 10
KINDS = ("http", "upload", "raw")

MESSAGES = Catalog({
    "corpus_not_found": {
        "en": "corpus file not found: {path}",
        "zh-CN": "找不到语料文件：{path}",
    },
    "corpus_invalid": {
        "en": "{path}, line {line}: {problem}",
        "zh-CN": "{path} 第 {line} 行：{problem}",
    },
    "invalid_url": {
        "en": "invalid {option} {url!r}: expected an http:// or https:// URL with a host",
        "zh-CN": "{option} 的值 {url!r} 无效：需要带主机名的 http:// 或 https:// 地址",
    },
    "no_appid": {
        "en": "the corpus has upload lines but no http line with an appid, so the upload URL cannot name "
              "the appid: add ?appid=...&wxid=... to --upload-url",
        "zh-CN": "语料中有上传行，但没有带 appid 的 http 行，无法为上传地址确定 appid："
                 "请在 --upload-url 中加上 ?appid=...&wxid=...",
    },
    "unreachable": {
        "en": "cannot reach {url}: {error}. Is the gateway running? Start the pipeline with `wehub up` "
              "(or `make up`), or the gateway alone with `wehub gateway`, or check the URL.",
        "zh-CN": "无法连接 {url}：{error}。网关是否在运行？请用 `wehub up`（或 `make up`）启动整条流水线，"
                 "或用 `wehub gateway` 只启动网关，或检查地址。",
    },
    "progress": {
        "en": "{done}/{total} sent, {refused} refused, {errors} transport errors",
        "zh-CN": "已发送 {done}/{total}，被拒 {refused}，传输错误 {errors}",
    },
    "summary_title": {
        "en": "Replay of {path} to {url}",
        "zh-CN": "回放 {path} 到 {url}",
    },
    "summary_sent": {
        "en": "sent: {sent} of {lines} lines (http {http}, upload {upload}, raw {raw})",
        "zh-CN": "已发送：{sent} / {lines} 行（http {http}，上传 {upload}，raw {raw}）",
    },
    "summary_not_sent": {
        "en": "not sent: {count} (the replay stopped when the gateway could not be reached)",
        "zh-CN": "未发送：{count}（无法连接网关，回放已停止）",
    },
    "summary_responses": {
        "en": "responses, by HTTP status and error_code:",
        "zh-CN": "应答（按 HTTP 状态码和 error_code）：",
    },
    "summary_response_row": {
        "en": "  HTTP {status}, error_code {error_code}: {count}",
        "zh-CN": "  HTTP {status}，error_code {error_code}：{count}",
    },
    "error_code_missing": {
        "en": "(none)",
        "zh-CN": "（无）",
    },
    "error_code_not_json": {
        "en": "(response is not a JSON object)",
        "zh-CN": "（应答不是 JSON 对象）",
    },
    "summary_accepted": {
        "en": "accepted (http and upload): {count}",
        "zh-CN": "已接受（http 和上传）：{count}",
    },
    "summary_refused": {
        "en": "refused (http and upload): {count}",
        "zh-CN": "被拒（http 和上传）：{count}",
    },
    "summary_refusal_row": {
        "en": "  line {line} ({kind} {label}): {response}",
        "zh-CN": "  第 {line} 行（{kind} {label}）：{response}",
    },
    "summary_refusals_more": {
        "en": "  ... and {count} more",
        "zh-CN": "  ……另有 {count} 行",
    },
    "response_http": {
        "en": "HTTP {status}, error_code {error_code} {error_reason}",
        "zh-CN": "HTTP {status}，error_code {error_code} {error_reason}",
    },
    "summary_raw": {
        "en": "raw lines refused as expected: {refused} of {sent}",
        "zh-CN": "raw 行按预期被拒：{refused} / {sent}",
    },
    "summary_raw_accepted": {
        "en": "raw lines accepted although they should be rejected: lines {lines}",
        "zh-CN": "本应被拒却被接受的 raw 行：第 {lines} 行",
    },
    "summary_raw_server_error": {
        "en": "raw lines that got a server error (5xx) instead of a rejection: lines {lines}",
        "zh-CN": "收到服务器错误（5xx）而不是拒绝的 raw 行：第 {lines} 行",
    },
    "summary_transport": {
        "en": "transport errors: {count}",
        "zh-CN": "传输错误：{count}",
    },
    "summary_transport_stopped": {
        "en": "transport errors: {count} among the lines sent, and a failed connection that stopped the replay "
              "(the gateway is unreachable)",
        "zh-CN": "传输错误：已发送的行中 {count} 个，另有一次连接失败使回放停止（无法连接网关）",
    },
    "summary_transport_row": {
        "en": "  {error}: {count}",
        "zh-CN": "  {error}：{count}",
    },
})


class CorpusError(ValueError):
    """A corpus file or line that cannot be replayed; the message is ready for the user."""


@dataclass(frozen=True)
class CorpusLine:
    """One request of the corpus, decoded and ready to send."""

    number: int
    kind: str
    bot: str
    label: str
    body: bytes
    content_type: str
    file_index: str = ""
    filename: str = ""


@dataclass(frozen=True)
class Corpus:
    lines: list[CorpusLine]
    appid_by_bot: dict[str, str]
    first_appid: str

    def appid_for(self, bot: str) -> str:
        return self.appid_by_bot.get(bot) or self.first_appid


@dataclass(frozen=True)
class Target:
    url: str
    upload_url: str
    timeout_s: float


@dataclass(frozen=True)
class Outcome:
    """The result of one request: an HTTP response or a transport error."""

    status: int | None = None
    response_is_json_object: bool = False
    error_code: Any = None
    error_reason: str = ""
    transport_error: str = ""
    unreachable: bool = False

    @property
    def accepted(self) -> bool:
        if self.status is None or not 200 <= self.status < 300 or not self.response_is_json_object:
            return False
        # WeHub allows `{}` as the response to an action the server ignores: no error_code is success.
        return self.error_code in (None, 0, "0")


@dataclass(frozen=True)
class Refusal:
    line: int
    kind: str
    label: str
    outcome: Outcome


@dataclass
class Summary:
    """Counts of a replay; `exit_status` is non-zero when an http or upload line was not accepted."""

    path: str
    url: str
    lines: int
    sent_by_kind: Counter[str] = field(default_factory=Counter)
    responses: Counter[tuple[int, str]] = field(default_factory=Counter)
    accepted: int = 0
    refusals: list[Refusal] = field(default_factory=list)
    raw_refused: int = 0
    raw_accepted_lines: list[int] = field(default_factory=list)
    raw_server_error_lines: list[int] = field(default_factory=list)
    transport_errors: Counter[str] = field(default_factory=Counter)
    unreachable: str = ""
    unreachable_url: str = ""

    @property
    def sent(self) -> int:
        return sum(self.sent_by_kind.values())

    @property
    def not_sent(self) -> int:
        return self.lines - self.sent

    def record(self, line: CorpusLine, outcome: Outcome) -> None:
        self.sent_by_kind[line.kind] += 1
        if outcome.status is None:
            self.transport_errors[outcome.transport_error] += 1
        else:
            self.responses[(outcome.status, _error_code_key(outcome))] += 1

        if line.kind == "raw":
            if outcome.accepted:
                self.raw_accepted_lines.append(line.number)
            elif outcome.status is not None and outcome.status >= 500:
                # A gateway must reject bad input with a 4xx that says why; a 5xx is its own failure.
                self.raw_server_error_lines.append(line.number)
            elif outcome.status is not None:
                self.raw_refused += 1
            return
        if outcome.accepted:
            self.accepted += 1
        else:
            self.refusals.append(Refusal(line.number, line.kind, line.label, outcome))

    def exit_status(self) -> int:
        return 1 if self.refusals or self.unreachable or self.not_sent else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "url": self.url,
            "lines": self.lines,
            "sent": self.sent,
            "not_sent": self.not_sent,
            "sent_by_kind": {kind: self.sent_by_kind[kind] for kind in KINDS},
            "responses": [
                {"status": status, "error_code": code, "count": count}
                for (status, code), count in sorted(self.responses.items())
            ],
            "accepted": self.accepted,
            "refused": len(self.refusals),
            "refusals": [
                {
                    "line": refusal.line,
                    "kind": refusal.kind,
                    "label": refusal.label,
                    "status": refusal.outcome.status,
                    "error_code": _error_code_key(refusal.outcome) if refusal.outcome.status else None,
                    "error_reason": refusal.outcome.error_reason,
                    "transport_error": refusal.outcome.transport_error,
                }
                for refusal in self.refusals
            ],
            "raw": {
                "sent": self.sent_by_kind["raw"],
                "refused": self.raw_refused,
                "accepted_lines": self.raw_accepted_lines,
                "server_error_lines": self.raw_server_error_lines,
            },
            "transport_errors": dict(self.transport_errors),
            "unreachable": self.unreachable or None,
            "exit_status": self.exit_status(),
        }


# Responses are keyed by their error_code as text because servers send it as a number or a string.
# These two keys are for responses without one.
ERROR_CODE_MISSING = "-"
ERROR_CODE_NOT_JSON = "not-json"


def _error_code_key(outcome: Outcome) -> str:
    if not outcome.response_is_json_object:
        return ERROR_CODE_NOT_JSON
    if outcome.error_code is None:
        return ERROR_CODE_MISSING
    return str(outcome.error_code)


# --- reading the corpus -------------------------------------------------------------------------


def read_corpus(path: Path, locale: str) -> Corpus:
    """Parse a corpus file; raises CorpusError naming the line and the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CorpusError(MESSAGES.render("corpus_not_found", locale, path=path)) from None
    except (OSError, UnicodeDecodeError) as error:
        message = MESSAGES.render("corpus_invalid", locale, path=path, line=0, problem=str(error))
        raise CorpusError(message) from None

    lines: list[CorpusLine] = []
    appid_by_bot: dict[str, str] = {}
    first_appid = ""
    for number, raw_line in enumerate(text.splitlines(), start=1):
        if not raw_line.strip():
            continue
        try:
            line, appid = _parse_line(number, raw_line)
        except (ValueError, KeyError, TypeError, binascii.Error) as error:
            problem = f"missing field {error}" if isinstance(error, KeyError) else str(error)
            raise CorpusError(
                MESSAGES.render("corpus_invalid", locale, path=path, line=number, problem=problem)
            ) from None
        lines.append(line)
        if appid:
            appid_by_bot.setdefault(line.bot, appid)
            first_appid = first_appid or appid
    return Corpus(lines, appid_by_bot, first_appid)


def _parse_line(number: int, raw_line: str) -> tuple[CorpusLine, str]:
    """Decode one corpus line; returns it with the appid of its body ("" when it has none)."""
    entry = json.loads(raw_line)
    if not isinstance(entry, dict):
        raise ValueError(f"expected a JSON object, got {type(entry).__name__}")
    kind = entry.get("kind")

    if kind == "http":
        body = entry["body"]
        if not isinstance(body, dict):
            raise ValueError(f"body: expected a JSON object, got {type(body).__name__}")
        bot = body.get("wxid")
        action = body.get("action")
        appid = body.get("appid")
        line = CorpusLine(
            number=number,
            kind="http",
            bot=bot if isinstance(bot, str) else "",
            label=action if isinstance(action, str) else "?",
            body=json.dumps(body, ensure_ascii=False).encode("utf-8"),
            content_type="application/json; charset=utf-8",
        )
        return line, appid if isinstance(appid, str) else ""

    if kind == "upload":
        line = CorpusLine(
            number=number,
            kind="upload",
            bot=_text_field(entry, "bot"),
            label="upload",
            body=base64.b64decode(_text_field(entry, "data_b64"), validate=True),
            content_type=_text_field(entry, "content_type"),
            file_index=_text_field(entry, "file_index"),
            filename=_text_field(entry, "filename"),
        )
        return line, ""

    if kind == "raw":
        line = CorpusLine(
            number=number,
            kind="raw",
            bot="",
            label=str(entry.get("case", "")),
            body=base64.b64decode(_text_field(entry, "body_b64"), validate=True),
            content_type=_text_field(entry, "content_type"),
        )
        return line, ""

    raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")


def _text_field(entry: dict[str, Any], name: str) -> str:
    value = entry[name]
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {type(value).__name__}")
    return value


# --- scheduling ---------------------------------------------------------------------------------


def assign_workers(lines: Sequence[CorpusLine], concurrency: int) -> list[list[CorpusLine]]:
    """Split the lines among `concurrency` workers; all lines of one bot go to one worker, in file order.

    Bots are placed largest first on the worker with the fewest lines so far. Raw lines form one
    queue of their own.
    """
    count_by_bot = Counter(line.bot for line in lines)
    load = [0] * concurrency
    worker_of_bot: dict[str, int] = {}
    for bot, count in sorted(count_by_bot.items(), key=lambda item: (-item[1], item[0])):
        worker = load.index(min(load))
        worker_of_bot[bot] = worker
        load[worker] += count

    queues: list[list[CorpusLine]] = [[] for _ in range(concurrency)]
    for line in lines:
        queues[worker_of_bot[line.bot]].append(line)
    return [queue for queue in queues if queue]


class Pacer:
    """Spaces request starts 1/rate seconds apart across all workers.

    A slot is never earlier than now, so after a slow stretch the replay does not burst to catch up.
    """

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval_s = 1.0 / rate if rate else 0.0
        self._clock = clock
        self._next_slot: float | None = None

    def delay(self) -> float:
        """Reserve the next slot and return the seconds to wait for it."""
        if not self._interval_s:
            return 0.0
        now = self._clock()
        slot = now if self._next_slot is None else max(now, self._next_slot)
        self._next_slot = slot + self._interval_s
        return slot - now


# --- sending ------------------------------------------------------------------------------------


def upload_url_for(upload_url: str, appid: str, bot: str) -> str:
    """Add the `appid` and `wxid` query parameters the upload URL lacks, which name the uploading bot."""
    url = httpx.URL(upload_url)
    params = url.params
    if "appid" not in params and appid:
        params = params.set("appid", appid)
    if "wxid" not in params and bot:
        params = params.set("wxid", bot)
    return str(url.copy_with(params=params))


async def send_line(client: httpx.AsyncClient, line: CorpusLine, target: Target, corpus: Corpus) -> Outcome:
    """POST one line and classify the response; a transport failure becomes an Outcome, never an exception."""
    try:
        async with asyncio.timeout(target.timeout_s):
            response = await _post(client, line, target, corpus)
    except (httpx.ConnectError, httpx.ConnectTimeout) as error:
        return Outcome(transport_error=type(error).__name__, unreachable=True, error_reason=str(error))
    except (TimeoutError, httpx.TimeoutException):
        return Outcome(transport_error="timeout")
    except httpx.TransportError as error:
        return Outcome(transport_error=type(error).__name__)
    return classify_response(response.status_code, response.content)


async def _post(
    client: httpx.AsyncClient, line: CorpusLine, target: Target, corpus: Corpus
) -> httpx.Response:
    if line.kind == "upload":
        url = upload_url_for(target.upload_url, corpus.appid_for(line.bot), line.bot)
        files = {"file": (line.filename, line.body, line.content_type)}
        return await client.post(url, data={"file_index": line.file_index}, files=files)
    return await client.post(target.url, content=line.body, headers={"content-type": line.content_type})


def classify_response(status: int, content: bytes) -> Outcome:
    try:
        document = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return Outcome(status=status)
    if not isinstance(document, dict):
        return Outcome(status=status)
    reason = document.get("error_reason")
    return Outcome(
        status=status,
        response_is_json_object=True,
        error_code=document.get("error_code"),
        error_reason=reason if isinstance(reason, str) else "",
    )


class Progress:
    """One status line on stderr, redrawn at most ten times a second; silent unless stderr is a terminal."""

    def __init__(self, total: int, locale: str, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._enabled = self._stream.isatty()
        self._total = total
        self._locale = locale
        self._drawn_at = 0.0

    def update(self, summary: Summary, force: bool = False) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < 0.1:
            return
        self._drawn_at = now
        width = 30
        filled = width * summary.sent // max(self._total, 1)
        text = MESSAGES.render(
            "progress", self._locale, done=summary.sent, total=self._total,
            refused=len(summary.refusals), errors=sum(summary.transport_errors.values()),
        )
        self._stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {text}\x1b[K")
        self._stream.flush()

    def close(self, summary: Summary) -> None:
        if self._enabled:
            self.update(summary, force=True)
            self._stream.write("\n")
            self._stream.flush()


async def replay(
    corpus: Corpus,
    target: Target,
    summary: Summary,
    *,
    concurrency: int = 1,
    rate: float | None = None,
    progress: Progress | None = None,
) -> Summary:
    """Send every line of `corpus`; fills and returns `summary`.

    Stops early, leaving lines unsent, when the gateway cannot be reached.
    """
    pacer = Pacer(rate)
    stop = asyncio.Event()

    async def run_worker(queue: list[CorpusLine]) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(timeout=target.timeout_s, limits=limits) as client:
            for line in queue:
                if stop.is_set():
                    return
                await asyncio.sleep(pacer.delay())
                outcome = await send_line(client, line, target, corpus)
                if outcome.unreachable:
                    stop.set()
                    if not summary.unreachable:
                        summary.unreachable = outcome.error_reason or outcome.transport_error
                        summary.unreachable_url = target.upload_url if line.kind == "upload" else target.url
                    return
                summary.record(line, outcome)
                if progress:
                    progress.update(summary)

    async with asyncio.TaskGroup() as group:
        for queue in assign_workers(corpus.lines, concurrency):
            group.create_task(run_worker(queue))
    if progress:
        progress.close(summary)
    return summary


# --- output -------------------------------------------------------------------------------------


def render_summary(summary: Summary, locale: str) -> str:
    def message(code: str, **params: Any) -> str:
        return MESSAGES.render(code, locale, **params)

    out = [
        message("summary_title", path=summary.path, url=summary.url),
        message("summary_sent", sent=summary.sent, lines=summary.lines, **{
            kind: summary.sent_by_kind[kind] for kind in KINDS
        }),
    ]
    if summary.not_sent:
        out.append(message("summary_not_sent", count=summary.not_sent))

    if summary.responses:
        out.append(message("summary_responses"))
        for (status, code), count in sorted(summary.responses.items()):
            out.append(message("summary_response_row", status=status, error_code=_shown_code(code, locale),
                               count=count))

    out.append(message("summary_accepted", count=summary.accepted))
    out.append(message("summary_refused", count=len(summary.refusals)))
    for refusal in summary.refusals[:MAX_REFUSALS_LISTED]:
        out.append(message("summary_refusal_row", line=refusal.line, kind=refusal.kind, label=refusal.label,
                           response=_shown_response(refusal.outcome, locale)))
    if len(summary.refusals) > MAX_REFUSALS_LISTED:
        out.append(message("summary_refusals_more", count=len(summary.refusals) - MAX_REFUSALS_LISTED))

    if summary.sent_by_kind["raw"]:
        out.append(message("summary_raw", refused=summary.raw_refused, sent=summary.sent_by_kind["raw"]))
    if summary.raw_accepted_lines:
        out.append(message("summary_raw_accepted", lines=", ".join(map(str, summary.raw_accepted_lines))))
    if summary.raw_server_error_lines:
        lines = ", ".join(map(str, summary.raw_server_error_lines))
        out.append(message("summary_raw_server_error", lines=lines))

    transport_code = "summary_transport_stopped" if summary.unreachable else "summary_transport"
    out.append(message(transport_code, count=sum(summary.transport_errors.values())))
    for error, count in sorted(summary.transport_errors.items()):
        out.append(message("summary_transport_row", error=error, count=count))
    return "\n".join(out)


def _shown_code(code: str, locale: str) -> str:
    if code == ERROR_CODE_MISSING:
        return MESSAGES.render("error_code_missing", locale)
    if code == ERROR_CODE_NOT_JSON:
        return MESSAGES.render("error_code_not_json", locale)
    return code


def _shown_response(outcome: Outcome, locale: str) -> str:
    if outcome.status is None:
        return outcome.transport_error
    code = _shown_code(_error_code_key(outcome), locale)
    return MESSAGES.render("response_http", locale, status=outcome.status, error_code=code,
                           error_reason=outcome.error_reason).rstrip()


# --- command line -------------------------------------------------------------------------------


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}: expected a number above 0") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number above 0")
    return value


def _positive_integer(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}: expected 1 or more") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected 1 or more")
    return value


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="send a recorded corpus of WeHub requests to a gateway and count the responses",
        description="Send a corpus (JSON lines of kind http, upload or raw) to a gateway, each bot's lines "
                    "in file order, and print how the gateway responded. Exits with 1 when an http or upload "
                    "line was not accepted (non-2xx or non-zero error_code) or not sent, and with 2 when "
                    "the arguments or the corpus are invalid; raw lines are expected to be rejected and "
                    "only counted.",
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="corpus file, one JSON request a line")
    parser.add_argument("--url", required=True, help="callback URL, e.g. http://127.0.0.1:8700/wehub")
    parser.add_argument("--upload-url", help="upload URL (default: the callback URL followed by /upload); "
                                             "give it when the callback URL ends in a url_token")
    parser.add_argument("--rate", type=_positive_number, metavar="N",
                        help="requests per second over all connections (default: as fast as responses come)")
    parser.add_argument("--concurrency", type=_positive_integer, default=1, metavar="N",
                        help="number of connections; bots are spread over them and each bot's lines "
                             "stay in order (default 1)")
    parser.add_argument("--timeout", type=_positive_number, default=WEHUB_TIMEOUT_S, metavar="S",
                        help="seconds to wait for each response (default 30, as WeHub waits)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.set_defaults(handler=run)


def _check_url(option: str, url: str, locale: str) -> str | None:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        return MESSAGES.render("invalid_url", locale, option=option, url=url)
    return None


async def run(arguments: argparse.Namespace) -> int:
    locale = arguments.settings.locale
    # httpx logs each request at INFO: that would break the progress line and print URL tokens.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    upload_url = arguments.upload_url or arguments.url.rstrip("/") + "/upload"
    for option, url in (("--url", arguments.url), ("--upload-url", upload_url)):
        problem = _check_url(option, url, locale)
        if problem:
            print(f"wehub replay: {problem}", file=sys.stderr)
            return 2

    try:
        corpus = read_corpus(arguments.file, locale)
    except CorpusError as error:
        print(f"wehub replay: {error}", file=sys.stderr)
        return 2
    has_uploads = any(line.kind == "upload" for line in corpus.lines)
    if has_uploads and not corpus.first_appid and "appid=" not in upload_url:
        print(f"wehub replay: {MESSAGES.render('no_appid', locale)}", file=sys.stderr)
        return 2

    target = Target(arguments.url, upload_url, arguments.timeout)
    summary = Summary(path=str(arguments.file), url=arguments.url, lines=len(corpus.lines))
    progress = Progress(len(corpus.lines), locale)
    await replay(corpus, target, summary, concurrency=arguments.concurrency, rate=arguments.rate,
                 progress=progress)

    if summary.unreachable:
        print("wehub replay: " + MESSAGES.render("unreachable", locale, url=summary.unreachable_url,
                                                 error=summary.unreachable), file=sys.stderr)
    if arguments.json:
        print(json.dumps(summary.to_json(), ensure_ascii=False))
    else:
        print(render_summary(summary, locale))
    return summary.exit_status()
