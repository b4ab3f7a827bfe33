"""Pieces of the gateway that need no service: accounts, signature, error codes and messages."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from aiokafka.partitioner import DefaultPartitioner

from gateway import errors
from gateway.accounts import Accounts, AccountsError, read_apps
from gateway.handler import login_signature, new_event_id
from gateway.messages import CATALOG
from wehub.i18n import LOCALES
from wehub.kafka import KeyPartitioner


def _write(path: Path, text: str, mtime_ns: int) -> None:
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_login_signature_is_lower_case_md5() -> None:
    assert login_signature("fangqing_hust", "helloworld", "112233") == "4b8d798f8b34a7bd2cd3b4cbfa309d9c"


def test_error_codes_unique_with_messages() -> None:
    numbers = [code.number for code in errors.ALL_CODES]
    names = [code.name for code in errors.ALL_CODES]
    assert len(set(numbers)) == len(numbers)
    assert len(set(names)) == len(names)
    assert 0 not in numbers
    assert set(names) <= set(CATALOG.codes())
    assert all(code.status != 500 or code is errors.INTERNAL_ERROR for code in errors.ALL_CODES)
    assert LOCALES == ("zh-CN", "en")


def test_accounts_read_url_token_and_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(
        '[[app]]\nappid = "a1"\nsecret = "s1"\nwxids = ["w1", "w2"]\nurl_token = "t"\n'
        "[app.websocket]\nenabled = true\n"
        '[[app]]\nappid = "a2"\nsecret = "s2"\nwxids = []\nplan = "free"\n',
        encoding="utf-8",
    )
    apps = read_apps(path)
    assert apps["a1"].wxids == frozenset({"w1", "w2"})
    assert apps["a1"].url_token == "t"
    assert apps["a1"].raw["websocket"] == {"enabled": True}
    assert apps["a2"].url_token is None


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[[app]]\nsecret = "s"\nwxids = []\n', "appid"),
        ('[[app]]\nappid = "a"\nsecret = "s"\nwxids = "w1"\n', "wxids"),
        ('[[app]]\nappid = "a"\nsecret = ""\n', "secret"),
        ('[[app]]\nappid = "a"\nsecret = "s"\n[[app]]\nappid = "a"\nsecret = "t"\n', "twice"),
        ("[[app]\n", "not valid TOML"),
    ],
)
def test_invalid_accounts_file_names_problem(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(AccountsError, match=named):
        read_apps(path)


def test_missing_accounts_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(AccountsError, match="WEHUB_ACCOUNTS"):
        read_apps(tmp_path / "absent.toml")


def test_accounts_change_applies_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    _write(path, '[[app]]\nappid = "a1"\nsecret = "s"\nwxids = ["w1"]\n', 1_000_000_000_000_000_000)
    accounts = Accounts(path, recheck_interval_s=0)
    assert accounts.get("a2") is None

    _write(path, '[[app]]\nappid = "a2"\nsecret = "s"\nwxids = ["w9"]\n', 1_000_000_001_000_000_000)
    app = accounts.get("a2")
    assert app is not None
    assert app.wxids == frozenset({"w9"})
    assert accounts.get("a1") is None


def test_invalid_accounts_reload_keeps_last_apps(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    _write(path, '[[app]]\nappid = "a1"\nsecret = "s"\nwxids = ["w1"]\n', 1_000_000_000_000_000_000)
    accounts = Accounts(path, recheck_interval_s=0)

    _write(path, "[[app]\n", 1_000_000_001_000_000_000)
    assert accounts.get("a1") is not None


def test_event_ids_are_random_version_4_uuids() -> None:
    ids = [new_event_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_event_ids_differ_in_forked_child() -> None:
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(writer, new_event_id().encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    in_child = os.read(reader, 100).decode()
    os.close(reader)

    assert uuid.UUID(in_child).version == 4
    assert in_child != new_event_id()


def test_key_partitioner_matches_aiokafka_default() -> None:
    remembering = KeyPartitioner()
    default = DefaultPartitioner()
    keys = [f"wxid_bot{index}".encode() for index in range(300)] + [b"", b"\x00\xff" * 40]
    for partition_count in (1, 3, 6, 7, 64):
        partitions = list(range(partition_count))
        for key in keys:
            expected = default(key, partitions, partitions)
            assert remembering(key, partitions, partitions) == expected
            assert remembering(key, partitions, partitions) == expected, "second call, from memory"
            assert remembering.partition(key, partition_count) == expected


def test_key_partitioner_without_key_picks_available() -> None:
    assert KeyPartitioner()(None, [0, 1, 2], [2]) == 2
