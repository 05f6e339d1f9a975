"""Words the window shows, Qt-free: plurals, and long messages made wrappable."""

from __future__ import annotations

import re

ZERO_WIDTH_SPACE = "\u200b"
# A run longer than this with no space (a mistyped host, a path) gets break opportunities, so
# a word-wrapped label can wrap it instead of widening the panel it sits in.
LONGEST_UNBROKEN = 24
_LONG_RUN = re.compile(rf"\S{{{LONGEST_UNBROKEN + 1},}}")


def wrappable(text: str) -> str:
    """``text`` with a zero-width space every ``LONGEST_UNBROKEN`` characters of any longer
    unbroken run (what a label shows; its tooltip keeps the original)."""

    def split(match: re.Match[str]) -> str:
        run = match.group(0)
        step = LONGEST_UNBROKEN
        return ZERO_WIDTH_SPACE.join(run[i : i + step] for i in range(0, len(run), step))

    return _LONG_RUN.sub(split, text)
