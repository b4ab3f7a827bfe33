"""The accounts file: one `[[app]]` table per appid, re-read when its modification time changes.

    [[app]]
    appid = "wh_..."
    secret = "..."
    wxids = ["wxid_...", "..."]     # the bots allowed to log in (billing is per wxid)
    url_token = "..."               # optional: required as ?token= or /wehub/<token>
    websocket = true                # optional: login_ack switches every bot of the app to websocket mode
    websocket_wxids = ["wxid_..."]  # optional: only these bots (for a gradual switch)
    ws_urls = ["ws://host:port/wehub/ws"]  # optional: default <WEHUB_PUBLIC_URL>/wehub/ws; each bot
                                    # always gets the same one of the list (a hash of its wxid)
    heartbeat_interval = 30         # optional: seconds, default WEHUB_WS_HEARTBEAT_INTERVAL_S

The websocket keys may also sit in an `[app.websocket]` table as `enabled`, `wxids`, `ws_urls`
and `heartbeat_interval`.

Keys this module does not know are left to their owners.
"""

from __future__ import annotations

import logging
import os
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_RECHECK_INTERVAL_S = 1.0


class AccountsError(ValueError):
    """The accounts file is missing or does not hold valid `[[app]]` tables."""


@dataclass(frozen=True)
class WebsocketOptions:
    """Websocket mode of an app: the bots it covers, their ws_urls and their heartbeat interval.

    `wxids` None means every bot of the app; empty `ws_urls` and None `heartbeat_interval_s`
    mean the gateway's defaults.
    """

    wxids: frozenset[str] | None
    ws_urls: tuple[str, ...]
    heartbeat_interval_s: int | None

    def covers(self, wxid: str) -> bool:
        return self.wxids is None or wxid in self.wxids


@dataclass(frozen=True)
class App:
    """One appid: its secret, whitelist and optional URL token; `raw` keeps the whole table."""

    appid: str
    # Kept out of repr so that logging an App never writes a secret.
    secret: str = field(repr=False)
    wxids: frozenset[str] = frozenset()
    url_token: str | None = field(default=None, repr=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    websocket: WebsocketOptions | None = None


def _text(table: Mapping[str, Any], key: str, where: str, required: bool = True) -> str | None:
    value = table.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise AccountsError(f"{where}: {key} must be a non-empty string")
    return value


def _strings(table: Mapping[str, Any], key: str, where: str) -> list[str] | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise AccountsError(f"{where}: {key} must be an array of non-empty strings")
    return value


def parse_websocket(table: Mapping[str, Any], where: str) -> WebsocketOptions | None:
    """Parse the websocket keys of one `[[app]]` table. Return None when websocket mode is off for every bot.

    The keys sit in the app table (`websocket = true`, `websocket_wxids`, `ws_urls`,
    `heartbeat_interval`) or in an `[app.websocket]` table (`enabled`, `wxids`, `ws_urls`,
    `heartbeat_interval`).
    """
    section = table.get("websocket", False)
    keys: Mapping[str, Any]
    if isinstance(section, dict):
        enabled = section.get("enabled", True)
        keys, wxids_key, where = section, "wxids", f"{where} [app.websocket]"
    else:
        enabled = section
        keys, wxids_key = table, "websocket_wxids"
    if not isinstance(enabled, bool):
        raise AccountsError(f"{where}: websocket must be true, false or a table")
    wxids = _strings(keys, wxids_key, where)
    urls = _strings(keys, "ws_urls", where) or []
    for url in urls:
        if not url.startswith(("ws://", "wss://")):
            raise AccountsError(f"{where}: ws_urls entry {url!r} must start with ws:// or wss://")
    interval = keys.get("heartbeat_interval")
    if interval is not None and (isinstance(interval, bool) or not isinstance(interval, int) or interval < 1):
        raise AccountsError(f"{where}: heartbeat_interval must be a whole number of seconds, at least 1")
    if isinstance(section, dict) and not enabled:
        return None
    if wxids is not None:
        # A list of bots is the gradual switch: only they get websocket mode.
        return WebsocketOptions(frozenset(wxids), tuple(urls), interval)
    return WebsocketOptions(None, tuple(urls), interval) if enabled else None


def parse_apps(document: Mapping[str, Any], source: str) -> dict[str, App]:
    """Validate the `[[app]]` tables of a parsed TOML document; raises AccountsError naming the table."""
    tables = document.get("app", [])
    if not isinstance(tables, list):
        raise AccountsError(f"{source}: app must be an array of tables ([[app]])")
    apps: dict[str, App] = {}
    for index, table in enumerate(tables):
        where = f"{source}: [[app]] #{index + 1}"
        if not isinstance(table, dict):
            raise AccountsError(f"{where} is not a table")
        appid = _text(table, "appid", where)
        secret = _text(table, "secret", where)
        wxids = table.get("wxids", [])
        if not isinstance(wxids, list) or not all(isinstance(wxid, str) and wxid for wxid in wxids):
            raise AccountsError(f"{where}: wxids must be an array of non-empty strings")
        assert appid is not None and secret is not None
        if appid in apps:
            raise AccountsError(f"{where}: appid {appid!r} appears twice")
        url_token = _text(table, "url_token", where, required=False)
        apps[appid] = App(appid, secret, frozenset(wxids), url_token, table, parse_websocket(table, where))
    return apps


def read_apps(path: Path) -> dict[str, App]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AccountsError(f"accounts file {path} does not exist: set WEHUB_ACCOUNTS to its path") from None
    except (OSError, UnicodeDecodeError) as error:
        raise AccountsError(f"accounts file {path} cannot be read: {type(error).__name__}") from None
    except tomllib.TOMLDecodeError as error:
        raise AccountsError(f"accounts file {path} is not valid TOML: {error}") from None
    return parse_apps(document, str(path))


class Accounts:
    """The apps of the accounts file; `get` re-reads the file at most once a second when it changed.

    A file that turns invalid after start keeps the last good apps in use, with a warning.
    """

    def __init__(self, path: Path, recheck_interval_s: float = _RECHECK_INTERVAL_S) -> None:
        self.path = path
        self.recheck_interval_s = recheck_interval_s
        self._mtime_ns = self._stat()
        self._apps = read_apps(path)
        self._checked_at = time.monotonic()

    def _stat(self) -> int:
        try:
            return os.stat(self.path).st_mtime_ns
        except OSError:
            return -1

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self.recheck_interval_s:
            return
        self._checked_at = now
        mtime_ns = self._stat()
        if mtime_ns == self._mtime_ns:
            return
        self._mtime_ns = mtime_ns
        try:
            self._apps = read_apps(self.path)
        except AccountsError as error:
            log.warning("accounts file not reloaded, the previous apps stay in use: %s", error)
            return
        log.info("accounts file reloaded", extra={"apps": len(self._apps)})

    def get(self, appid: str) -> App | None:
        self._refresh()
        return self._apps.get(appid)
