"""`wehub replay` against a small Starlette app on loopback that responds like a WeHub callback server."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from streaming_form_data import StreamingFormDataParser
from streaming_form_data.targets import ValueTarget

from tests.cli.loopback import free_loopback_port, serve_on_loopback
from wehub import cli
from wehub.replay import CorpusLine, Outcome, Pacer, Progress, Summary, assign_workers

APPID = "wh_test_app"
WHITELIST = {"bot_a", "bot_b", "bot_c", "bot_d"}
SLOW_ACTION = "slow_action"


@dataclass
class Received:
    """What the test server got, in arrival order."""

    callbacks: list[dict[str, Any]] = field(default_factory=list)
    client_ports: set[int] = field(default_factory=set)
    uploads: list[dict[str, Any]] = field(default_factory=list)


def refusal(error_code: int, reason: str) -> Response:
    return JSONResponse({"error_code": error_code, "error_reason": reason, "ack_type": "common_ack"},
                        status_code=400)


def wehub_like_app(received: Received) -> Starlette:
    """Respond as a WeHub callback server would: common_ack, a login_ack refusal, 400 for bad bodies."""

    async def callback(request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return refusal(1001, "body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("action"), str):
            return refusal(1002, "action missing")

        received.callbacks.append(body)
        assert request.client is not None
        received.client_ports.add(request.client.port)
        sequence = body.get("data", {}).get("seq", 0)
        # Responses take different times, so requests of different connections overtake each other.
        await asyncio.sleep(0.001 * (sequence % 4))

        if body["action"] == "crash":
            return Response("Internal Server Error", status_code=500)
        if body["action"] == SLOW_ACTION:
            await asyncio.sleep(3)
        if body["action"] == "login" and body.get("wxid") not in WHITELIST:
            return JSONResponse({"error_code": 2001, "error_reason": "wxid not on the whitelist",
                                 "ack_type": "login_ack"})
        if body["action"] == "ignored_action":
            return JSONResponse({})
        return JSONResponse({"error_code": 0, "error_reason": "", "ack_type": "common_ack",
                             "data": {"reply_task_list": []}})

    async def upload(request: Request) -> Response:
        parser = StreamingFormDataParser(headers=request.headers)
        file_index, file = ValueTarget(), ValueTarget()
        parser.register("file_index", file_index)
        parser.register("file", file)
        async for chunk in request.stream():
            parser.data_received(chunk)
        received.uploads.append({
            "query": dict(request.query_params),
            "file_index": file_index.value.decode(),
            "filename": file.multipart_filename,
            "content_type": file.multipart_content_type,
            "data": file.value,
        })
        return JSONResponse({"error_code": 0, "error_reason": "", "ack_type": "upload_file_ack",
                             "file_index": file_index.value.decode()})

    return Starlette(routes=[Route("/wehub/upload", upload, methods=["POST"]),
                             Route("/wehub", callback, methods=["POST"])])


@pytest.fixture
def server() -> Iterator[tuple[str, Received]]:
    received = Received()
    with serve_on_loopback(wehub_like_app(received)) as base_url:
        yield base_url + "/wehub", received


@pytest.fixture(autouse=True)
def english(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEHUB_LOCALE", "en")
    monkeypatch.setenv("WEHUB_LOG_FORMAT", "text")


def http_line(bot: str, action: str, sequence: int, appid: str = APPID) -> dict[str, Any]:
    body = {"action": action, "appid": appid, "wxid": bot, "data": {"seq": sequence}}
    return {"kind": "http", "body": body}


def upload_line(bot: str, file_index: str, data: bytes) -> dict[str, Any]:
    return {"kind": "upload", "bot": bot, "file_index": file_index, "filename": f"{file_index}.jpg",
            "content_type": "image/jpeg", "data_b64": base64.b64encode(data).decode()}


def raw_line(case: str, body: bytes) -> dict[str, Any]:
    return {"kind": "raw", "case": case, "content_type": "application/json",
            "body_b64": base64.b64encode(body).decode()}


def write_corpus(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    return path


def run_replay(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, dict[str, Any], str]:
    """Run `wehub replay ... --json`; returns the exit status, the summary and stderr."""
    status = cli.main(["replay", *arguments, "--json"])
    out, err = capsys.readouterr()
    return status, json.loads(out), err


def interleaved_bots(bots: list[str], per_bot: int) -> list[dict[str, Any]]:
    return [http_line(bot, "report_new_msg", sequence) for sequence in range(per_bot) for bot in bots]


# --- ordering and counts ------------------------------------------------------------------------


def test_replay_keeps_each_bots_order_under_concurrency(server, tmp_path, capsys):
    url, received = server
    bots = sorted(WHITELIST)
    corpus = write_corpus(tmp_path / "corpus.jsonl", interleaved_bots(bots, per_bot=12))

    status, summary, _ = run_replay(capsys, str(corpus), "--url", url, "--concurrency", "3")

    assert status == 0
    assert summary["accepted"] == 48
    for bot in bots:
        sequences = [body["data"]["seq"] for body in received.callbacks if body["wxid"] == bot]
        assert sequences == list(range(12)), bot
    assert len(received.client_ports) == 3


def test_replay_without_concurrency_sends_file_order(server, tmp_path, capsys):
    url, received = server
    lines = interleaved_bots(["bot_a", "bot_b"], per_bot=5)
    corpus = write_corpus(tmp_path / "corpus.jsonl", lines)

    status, _, _ = run_replay(capsys, str(corpus), "--url", url)

    assert status == 0
    assert [body for body in received.callbacks] == [line["body"] for line in lines]
    assert len(received.client_ports) == 1


def test_summary_counts_responses_by_error_code(server, tmp_path, capsys):
    url, _ = server
    lines = [
        http_line("bot_a", "login", 0),
        http_line("bot_a", "report_new_msg", 1),
        http_line("bot_a", "ignored_action", 2),
        raw_line("not_json", b"{action: report_new_msg"),
        raw_line("json_array", b"[1,2,3]"),
    ]
    corpus = write_corpus(tmp_path / "corpus.jsonl", lines)

    status, summary, _ = run_replay(capsys, str(corpus), "--url", url)

    assert status == 0
    assert summary["sent"] == 5
    assert summary["sent_by_kind"] == {"http": 3, "upload": 0, "raw": 2}
    assert summary["accepted"] == 3
    assert summary["refused"] == 0
    assert summary["responses"] == [
        {"status": 200, "error_code": "-", "count": 1},
        {"status": 200, "error_code": "0", "count": 2},
        {"status": 400, "error_code": "1001", "count": 1},
        {"status": 400, "error_code": "1002", "count": 1},
    ]
    assert summary["raw"] == {"sent": 2, "refused": 2, "accepted_lines": [], "server_error_lines": []}
    assert summary["transport_errors"] == {}


def test_refused_http_line_makes_exit_status_non_zero(server, tmp_path, capsys):
    url, _ = server
    lines = [
        http_line("bot_a", "login", 0),
        http_line("intruder", "login", 1),
        http_line("bot_a", "logout", 2),
    ]
    corpus = write_corpus(tmp_path / "corpus.jsonl", lines)

    status, summary, _ = run_replay(capsys, str(corpus), "--url", url)

    assert status == 1
    assert summary["accepted"] == 2
    assert summary["refused"] == 1
    refusal = summary["refusals"][0]
    assert refusal["line"] == 2
    assert refusal["label"] == "login"
    assert refusal["status"] == 200
    assert refusal["error_code"] == "2001"
    assert refusal["error_reason"] == "wxid not on the whitelist"


def test_raw_line_accepted_is_listed_but_not_fatal(server, tmp_path, capsys):
    url, _ = server
    harmless = json.dumps(http_line("bot_a", "report_new_msg", 0)["body"]).encode()
    corpus = write_corpus(tmp_path / "corpus.jsonl", [raw_line("accepted_by_mistake", harmless)])

    status, summary, _ = run_replay(capsys, str(corpus), "--url", url)

    assert status == 0
    assert summary["raw"] == {"sent": 1, "refused": 0, "accepted_lines": [1], "server_error_lines": []}


def test_upload_is_multipart_naming_bot_and_appid(server, tmp_path, capsys):
    url, received = server
    data = bytes(range(256)) * 40
    lines = [http_line("bot_b", "login", 0), upload_line("bot_b", "index-1", data)]
    corpus = write_corpus(tmp_path / "corpus.jsonl", lines)

    status, summary, _ = run_replay(capsys, str(corpus), "--url", url)

    assert status == 0
    assert summary["sent_by_kind"]["upload"] == 1
    upload = received.uploads[0]
    assert upload["query"] == {"appid": APPID, "wxid": "bot_b"}
    assert upload["file_index"] == "index-1"
    assert upload["filename"] == "index-1.jpg"
    assert upload["content_type"] == "image/jpeg"
    assert upload["data"] == data


def test_upload_url_parameters_given_are_kept(server, tmp_path, capsys):
    url, received = server
    corpus = write_corpus(tmp_path / "corpus.jsonl", [upload_line("bot_c", "index-2", b"\xff\xd8")])

    status, _, _ = run_replay(capsys, str(corpus), "--url", url,
                              "--upload-url", url + "/upload?appid=other_app&token=t1")

    assert status == 0
    assert received.uploads[0]["query"] == {"appid": "other_app", "token": "t1", "wxid": "bot_c"}


def test_replay_with_rate_sends_everything_in_order(server, tmp_path, capsys):
    url, received = server
    lines = interleaved_bots(["bot_a", "bot_b"], per_bot=4)
    corpus = write_corpus(tmp_path / "corpus.jsonl", lines)

    status, summary, _ = run_replay(capsys, str(corpus), "--url", url, "--rate", "200", "--concurrency", "2")

    assert status == 0
    assert summary["accepted"] == 8
    for bot in ("bot_a", "bot_b"):
        assert [body["data"]["seq"] for body in received.callbacks if body["wxid"] == bot] == [0, 1, 2, 3]


def test_raw_line_with_server_error_is_listed_apart(server, tmp_path, capsys):
    url, _ = server
    lines = [raw_line("crashes_the_server", b'{"action": "crash"}'), raw_line("not_json", b"{")]
    corpus = write_corpus(tmp_path / "corpus.jsonl", lines)

    status = cli.main(["replay", str(corpus), "--url", url])

    out, _ = capsys.readouterr()
    assert status == 0
    assert "raw lines refused as expected: 1 of 2" in out
    assert "raw lines that got a server error (5xx) instead of a rejection: lines 1" in out


# --- transport failures -------------------------------------------------------------------------


def test_unreachable_url_is_reported_and_stops_the_replay(tmp_path, capsys):
    url = f"http://127.0.0.1:{free_loopback_port()}/wehub"
    corpus = write_corpus(tmp_path / "corpus.jsonl", interleaved_bots(["bot_a"], per_bot=3))

    status, summary, err = run_replay(capsys, str(corpus), "--url", url)

    assert status == 1
    assert summary["sent"] == 0
    assert summary["not_sent"] == 3
    assert f"cannot reach {url}" in err
    assert "wehub gateway" in err


def test_unreachable_gateway_summary_counts_stop(tmp_path, capsys):
    url = f"http://127.0.0.1:{free_loopback_port()}/wehub"
    corpus = write_corpus(tmp_path / "corpus.jsonl", interleaved_bots(["bot_a"], per_bot=3))

    status = cli.main(["replay", str(corpus), "--url", url])

    out, err = capsys.readouterr()
    assert status == 1
    assert "not sent: 3" in out
    assert "transport errors: 0 among the lines sent, and a failed connection that stopped the replay" in out
    assert "\ntransport errors: 0\n" not in out + "\n"
    assert "`wehub up`" in err
    assert err.index("wehub up") < err.index("wehub gateway")


def test_response_slower_than_timeout_is_transport_error(server, tmp_path, capsys):
    url, _ = server
    lines = [http_line("bot_a", SLOW_ACTION, 0), http_line("bot_a", "report_new_msg", 1)]
    corpus = write_corpus(tmp_path / "corpus.jsonl", lines)

    status, summary, _ = run_replay(capsys, str(corpus), "--url", url, "--timeout", "0.3")

    assert status == 1
    assert summary["transport_errors"] == {"timeout": 1}
    assert summary["refusals"][0]["transport_error"] == "timeout"
    assert summary["accepted"] == 1


# --- input checks and output --------------------------------------------------------------------


def test_invalid_corpus_line_is_named(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps(http_line("bot_a", "login", 0)) + "\n" + '{"kind": "upload", "bot": "x"}\n',
                      encoding="utf-8")

    status = cli.main(["replay", str(corpus), "--url", "http://127.0.0.1:9/wehub"])

    _, err = capsys.readouterr()
    assert status == 2
    assert "line 2" in err
    assert "data_b64" in err


def test_missing_corpus_file_is_reported(tmp_path, capsys):
    status = cli.main(["replay", str(tmp_path / "absent.jsonl"), "--url", "http://127.0.0.1:9/wehub"])

    _, err = capsys.readouterr()
    assert status == 2
    assert "corpus file not found" in err


def test_url_without_http_scheme_is_rejected(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus.jsonl", [http_line("bot_a", "login", 0)])

    status = cli.main(["replay", str(corpus), "--url", "127.0.0.1:8700/wehub"])

    _, err = capsys.readouterr()
    assert status == 2
    assert "invalid --url" in err


def test_summary_text_is_in_chinese_by_default(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WEHUB_LOCALE", "zh-CN")
    url, _ = server
    lines = [http_line("bot_a", "login", 0), http_line("intruder", "login", 1)]
    corpus = write_corpus(tmp_path / "corpus.jsonl", lines)

    status = cli.main(["replay", str(corpus), "--url", url])

    out, _ = capsys.readouterr()
    assert status == 1
    assert "已发送：2 / 2 行" in out
    assert "被拒（http 和上传）：1" in out
    assert "第 2 行（http login）：HTTP 200，error_code 2001 wxid not on the whitelist" in out


def test_summary_text_in_english(server, tmp_path, capsys):
    url, _ = server
    corpus = write_corpus(tmp_path / "corpus.jsonl", [http_line("bot_a", "login", 0)])

    status = cli.main(["replay", str(corpus), "--url", url])

    out, _ = capsys.readouterr()
    assert status == 0
    assert "sent: 1 of 1 lines (http 1, upload 0, raw 0)" in out
    assert "HTTP 200, error_code 0: 1" in out
    assert "transport errors: 0" in out


# --- scheduling, pacing and progress ------------------------------------------------------------


def corpus_line(number: int, bot: str) -> CorpusLine:
    return CorpusLine(number=number, kind="http", bot=bot, label="report_new_msg", body=b"{}",
                      content_type="application/json")


def test_workers_get_whole_bots_in_file_order():
    bots = ["a", "b", "c", "a", "a", "b", "d", "a", "c"]
    lines = [corpus_line(number, bot) for number, bot in enumerate(bots, start=1)]

    queues = assign_workers(lines, concurrency=2)

    assert len(queues) == 2
    for queue in queues:
        assert [line.number for line in queue] == sorted(line.number for line in queue)
    bots_per_queue = [{line.bot for line in queue} for queue in queues]
    assert not bots_per_queue[0] & bots_per_queue[1]
    assert sorted(len(queue) for queue in queues) == [4, 5]


def test_more_workers_than_bots_leaves_none_empty():
    lines = [corpus_line(1, "a"), corpus_line(2, "b")]

    queues = assign_workers(lines, concurrency=8)

    assert [[line.number for line in queue] for queue in queues] == [[1], [2]]


def test_pacer_spaces_slots_by_the_rate():
    pacer = Pacer(rate=4, clock=lambda: 100.0)

    delays = [pacer.delay() for _ in range(5)]

    assert delays == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_pacer_does_not_burst_after_a_slow_stretch():
    now = [0.0]
    pacer = Pacer(rate=10, clock=lambda: now[0])
    assert pacer.delay() == 0.0

    now[0] = 5.0
    delays = [pacer.delay() for _ in range(3)]

    assert delays == pytest.approx([0.0, 0.1, 0.2])


def test_pacer_without_rate_never_waits():
    pacer = Pacer(rate=None, clock=lambda: 0.0)

    assert [pacer.delay() for _ in range(3)] == [0.0, 0.0, 0.0]


ACCEPTED = Outcome(status=200, response_is_json_object=True, error_code=0)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_silent_without_terminal():
    stream = io.StringIO()
    progress = Progress(total=3, locale="en", stream=stream)
    summary = Summary(path="c.jsonl", url="http://127.0.0.1:1/wehub", lines=3)
    summary.record(corpus_line(1, "a"), ACCEPTED)

    progress.update(summary, force=True)
    progress.close(summary)

    assert stream.getvalue() == ""


def test_progress_redraws_one_line_on_a_terminal():
    stream = FakeTerminal()
    progress = Progress(total=4, locale="en", stream=stream)
    summary = Summary(path="c.jsonl", url="http://127.0.0.1:1/wehub", lines=4)
    summary.record(corpus_line(1, "a"), ACCEPTED)
    summary.record(corpus_line(2, "a"), ACCEPTED)

    progress.close(summary)

    text = stream.getvalue()
    assert text.startswith("\r[" + "#" * 15 + "." * 15 + "] 2/4 sent, 0 refused, 0 transport errors")
    assert text.endswith("\n")
