"""Shared pieces for loop tests: a clock the test moves, and one-pass driving."""

from __future__ import annotations

from loopmon import pollers
from loopmon.ioloop import IOLoop

BACKENDS = pollers.available()


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run_one_pass(loop: IOLoop) -> None:
    """Run exactly one pass: the callbacks queued now, the timers due now, and return before
    polling (stop() is queued last, and a stopped pass ends before its poll)."""
    loop.add_callback(loop.stop)
    loop.start()
