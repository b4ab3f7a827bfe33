"""`wehub task send` options checked before any task is validated or produced."""

from __future__ import annotations

import argparse

import pytest

from wehub import settings as settings_module
from wehub import task_cli


def _arguments(locale: str, *options: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    task_cli.add_parser(parser.add_subparsers())
    arguments = parser.parse_args(["task", "send", *options])
    arguments.settings = settings_module.load({"WEHUB_LOCALE": locale})
    return arguments


async def test_send_text_without_to_names_flag(capsys: pytest.CaptureFixture[str]) -> None:
    status = await task_cli.send_tasks(_arguments("en", "--bot", "wxid_bot", "--type", "1", "--text", "hello"))

    stderr = capsys.readouterr().err
    assert status == 2
    assert stderr.startswith("missing --to (task_dict.wxid_to):")


async def test_send_without_to_and_text_names_both(capsys: pytest.CaptureFixture[str]) -> None:
    status = await task_cli.send_tasks(_arguments("zh-CN", "--bot", "wxid_bot", "--type", "1"))

    stderr = capsys.readouterr().err
    assert status == 2
    assert stderr.startswith("缺少 --to (task_dict.wxid_to), --text (task_dict.msg_list)：")


async def test_send_with_dict_needs_no_to(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = _arguments("en", "--bot", "wxid_bot", "--type", "1", "--dict", '{"msg_list": []}')
    arguments.settings = arguments.settings.with_overrides(accounts="/nonexistent/accounts.json")

    status = await task_cli.send_tasks(arguments)

    stderr = capsys.readouterr().err
    assert status == 2
    assert "missing --to" not in stderr
    assert stderr.startswith("accounts file:")
