"""Text layout for terminal output: the columns a string takes."""

from __future__ import annotations

import unicodedata

ZERO_WIDTH_JOINER = "\u200d"


def display_width(text: str) -> int:
    """Count the terminal columns of `text`: wide (CJK, emoji) characters take two, marks take none.

    A character joined to the previous one by U+200D (as in family emoji) draws inside it.
    """
    width = 0
    joined = False
    for char in text:
        if char == ZERO_WIDTH_JOINER:
            joined = True
            continue
        if joined or unicodedata.category(char) in ("Mn", "Me", "Cf"):
            joined = False
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width
