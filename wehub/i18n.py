"""User-facing messages in zh-CN and English, chosen by WEHUB_LOCALE.

Each area keeps its own `Catalog` (gateway refusals, CLI output ...). A message is looked up by
a stable code and formatted with named parameters, so logs and tests can rely on the code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LOCALES = ("zh-CN", "en")


class Catalog:
    """Messages of one area: code -> {"en": template, "zh-CN": template}."""

    def __init__(self, messages: Mapping[str, Mapping[str, str]]) -> None:
        for code, texts in messages.items():
            missing = [locale for locale in LOCALES if locale not in texts]
            if missing:
                raise ValueError(f"message {code!r} has no text for {', '.join(missing)}")
        self._messages = dict(messages)

    def codes(self) -> list[str]:
        return sorted(self._messages)

    def render(self, code: str, locale: str, **params: Any) -> str:
        """Format message `code` in `locale`; an unknown locale falls back to English."""
        texts = self._messages[code]
        template = texts.get(locale) or texts["en"]
        return template.format(**params)
