"""The READMEs stay true to the code they describe."""

from __future__ import annotations

from pathlib import Path

import pytest

from wehub import settings

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("readme", "language"), [("README.md", "en"), ("README.zh-CN.md", "zh-CN")])
def test_readme_settings_table_matches_settings(readme: str, language: str) -> None:
    text = (REPO_ROOT / readme).read_text(encoding="utf-8")
    assert settings.markdown_table(language) in text, f"regenerate it with `wehub settings --markdown {language}`"


def test_every_setting_has_a_zh_cn_help_text() -> None:
    for setting in settings.SETTINGS:
        assert setting.help_zh.strip(), setting.env
