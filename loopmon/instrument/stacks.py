"""Naming what a stalled loop was running, from the stack the watchdog took."""

from __future__ import annotations

import asyncio
import os
import re
import selectors

_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>.+)$', re.M)
_MACHINERY = (
    os.path.dirname(asyncio.__file__) + os.sep,
    selectors.__file__,
    os.path.dirname(os.path.dirname(__file__)) + os.sep,  # loopmon itself
)


def culprit(stack: str) -> str:
    """The innermost frame of the program's own code in a formatted stack
    (``func (file.py:12)``), else the innermost frame, else ""."""
    frames = list(_FRAME.finditer(stack))
    for match in reversed(frames):
        if not match["file"].startswith(_MACHINERY):
            return f"{match['func']} ({os.path.basename(match['file'])}:{match['line']})"
    if frames:
        last = frames[-1]
        return f"{last['func']} ({os.path.basename(last['file'])}:{last['line']})"
    return ""


def trim(stack: str) -> str:
    """The stack from the program's own first frame: without the frames of ``loopmon run``
    and runpy that start it."""
    frames = list(_FRAME.finditer(stack))
    start = 0
    for index, match in enumerate(frames):
        if match["file"] == "<frozen runpy>" or match["file"].endswith(
            (
                os.sep + "runpy.py",
                os.path.join("", "loopmon", "cli", "run.py"),
                os.path.join("", "loopmon", "cli", "run_program.py"),
            )
        ):
            start = index + 1
    if start == 0 or start >= len(frames):
        return stack
    return stack[frames[start].start() :]
