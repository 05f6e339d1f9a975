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


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """'1 connection', '0 connections', '1,234 connections'."""
    return f"{count:,} {noun if count == 1 else (nouns or noun + 's')}"


def window_title(details: list[str], display_name: str) -> str:
    """The window's title: what runs where (``details``), named loopmon once. Qt appends the
    application's display name to a window's title itself (`` — loopmon``, on X11 and
    Windows) unless the title is that name, so the title names loopmon only when Qt will not."""
    shown = " — ".join(d for d in details if d)
    if display_name == "loopmon":
        return shown or "loopmon"
    return " — ".join(p for p in ("loopmon", shown) if p)


def shown_title(title: str, display_name: str) -> str:
    """What the title bar shows for ``title``: Qt's QPlatformWindow::formatWindowTitle."""
    if not display_name or title == display_name:
        return title
    return f"{title} \u2014 {display_name}"


def replay_position(
    recorded: str, position_s: float, duration_s: float, playing: bool, finished: bool,
    speed: float,
) -> str:  # fmt: skip
    """What the status strip says of a replay instead of a snapshot's age (a replayed snapshot
    is always fresh, and never "live"): the recorded moment, where it is in the file, and
    whether it plays: 'replay 14:02:13.120 · 12.3 s of 60.0 s · playing 4x'."""
    where = f"{position_s:.1f} s of {duration_s:.1f} s"
    if playing:
        how = f"playing {speed:g}x"
    elif finished:
        how = "at the end"
    else:
        how = "paused"
    return " · ".join(p for p in (f"replay {recorded}".strip(), where, how) if p)
