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


class RecordingPoller:
    """Wraps a loop's poller: records every poll's timeout and, on a fake clock, sleeps by
    advancing it, so a loop that spins shows as polls with timeout 0 that never end."""

    def __init__(self, loop: IOLoop, clock: FakeClock, max_polls: int = 200) -> None:
        self.loop = loop
        self.clock = clock
        self.real = loop._poller.poll
        self.polls: list[tuple[float, float | None, float | None]] = []
        self.max_polls = max_polls
        loop._poller.poll = self.poll  # type: ignore[method-assign]

    def live_head(self) -> float | None:
        live = [t.deadline for _, _, t in self.loop._timers.heap if t.callback is not None]
        return min(live) if live else None

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        self.polls.append((self.clock.now, timeout, self.live_head()))
        if len(self.polls) >= self.max_polls:
            self.loop.stop()
        events = self.real(0)
        if timeout and not events:
            self.clock.advance(timeout)
        return events
