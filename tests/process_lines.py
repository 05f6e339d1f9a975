"""What the tests that run loopmon as a subprocess share: its command line, and its output read
line by line on a thread, so a test waits for a line with a timeout instead of sleeping."""

from __future__ import annotations

import queue
import re
import sys
import threading
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"^listening on (\S+):(\d+) \(backend (\w+)\)$")
TIMEOUT = 20.0


class Lines:
    """A subprocess's stream, read line by line on a thread so a test can wait with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next(self, timeout: float = TIMEOUT) -> str | None:
        line = self.lines.get(timeout=timeout)
        if line is not None:
            self.seen.append(line)
        return line

    def rest(self, timeout: float = TIMEOUT) -> list[str]:
        out = []
        while (line := self.next(timeout)) is not None:
            out.append(line)
        return out


def loopmon_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "loopmon", *args]
