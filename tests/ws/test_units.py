"""Websocket mode without services: accounts keys, the ws_url handed out, and its spread."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from gateway.accounts import Accounts, AccountsError, read_apps
from gateway.handler import CallbackHandler
from gateway.publisher import Publisher
from gateway.task_source import NoTasks
from gateway.ws import Hub, pick_url, websocket_url
from wehub import settings as settings_module


def _accounts(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "accounts.toml"
    path.write_text('[[app]]\nappid = "a1"\nsecret = "s1"\nwxids = ["w1", "w2", "w3"]\n' + text, encoding="utf-8")
    return path


def _hub(path: Path, public_url: str = "https://gw.example.test/") -> Hub:
    settings = settings_module.load({"WEHUB_ACCOUNTS": str(path), "WEHUB_PUBLIC_URL": public_url})
    handler = CallbackHandler(settings, Accounts(path), Publisher(settings), NoTasks(), "unit")
    return Hub(handler)


def test_default_ws_url_from_public_url() -> None:
    assert websocket_url("http://127.0.0.1:8700", None) == "ws://127.0.0.1:8700/wehub/ws"
    assert websocket_url("https://gw.example.test", "t0k") == "wss://gw.example.test/wehub/ws/t0k"


def test_pick_url_stable_and_spread() -> None:
    urls = ("ws://a/wehub/ws", "ws://b/wehub/ws", "ws://c/wehub/ws")
    wxids = [f"wxid_{number}" for number in range(300)]
    assert [pick_url(urls, wxid) for wxid in wxids] == [pick_url(urls, wxid) for wxid in wxids]
    spread = Counter(pick_url(urls, wxid) for wxid in wxids)
    assert set(spread) == set(urls)
    assert min(spread.values()) > 60


def test_websocket_wxids_switch_only_the_listed_bots(tmp_path: Path) -> None:
    path = _accounts(tmp_path, 'websocket_wxids = ["w2"]\nheartbeat_interval = 10\n')
    hub = _hub(path)
    app = read_apps(path)["a1"]
    assert hub.login_extension(app, "w1") is None
    assert hub.login_extension(app, "w2") == {
        "type": "websocket", "param": {"ws_url": "wss://gw.example.test/wehub/ws", "heartbeat_interval": 10}}


def test_listed_ws_urls_kept_verbatim(tmp_path: Path) -> None:
    path = _accounts(tmp_path, 'websocket = true\nws_urls = ["ws://x:1/wehub/ws?token=t"]\nurl_token = "t"\n')
    extension = _hub(path).login_extension(read_apps(path)["a1"], "w3")
    assert extension is not None
    assert extension["param"] == {"ws_url": "ws://x:1/wehub/ws?token=t", "heartbeat_interval": 30}


def test_websocket_table_form_and_off_switch(tmp_path: Path) -> None:
    on = read_apps(_accounts(tmp_path, "[app.websocket]\nwxids = [\"w1\"]\nheartbeat_interval = 5\n"))["a1"]
    assert on.websocket is not None
    assert on.websocket.covers("w1")
    assert not on.websocket.covers("w2")
    off = read_apps(_accounts(tmp_path, "[app.websocket]\nenabled = false\nws_urls = [\"ws://x/wehub/ws\"]\n"))
    assert off["a1"].websocket is None
    assert read_apps(_accounts(tmp_path, ""))["a1"].websocket is None


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('websocket = "yes"\n', "websocket must be true"),
        ('websocket = true\nws_urls = ["http://x/wehub/ws"]\n', "must start with ws://"),
        ("websocket = true\nheartbeat_interval = 0\n", "heartbeat_interval"),
        ("websocket_wxids = [1]\n", "websocket_wxids"),
    ],
)
def test_invalid_websocket_keys_are_named(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(AccountsError, match=named):
        read_apps(_accounts(tmp_path, text))
