"""The one door out of the loop thread: the latest snapshot and a bounded event log.

The producer (the loop thread) replaces the unread snapshot rather than queueing it, so a slow
or absent reader never causes a backlog, and appends events to a log that drops its oldest
entries past a bound, counting them. It wakes the reader's ``Waker`` after each post; the waker
coalesces, so a reader that has not drained yet is woken once, not once per post. The reader
waits on ``fileno()`` (select, or a QSocketNotifier in the window) and calls ``take()``.
"""

from __future__ import annotations

import collections
import select
import threading
from collections.abc import Iterable

from loopmon.snapshot import LoopEvent, Snapshot
from loopmon.waker import Waker


class Mailbox:
    def __init__(self, log_size: int = 10_000) -> None:
        if log_size <= 0:
            raise ValueError("log_size must be positive")
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._events: collections.deque[LoopEvent] = collections.deque()
        self._log_size = log_size
        self._dropped = 0
        self._waker = Waker()

    def fileno(self) -> int:
        """Readable while there is something to take."""
        return self._waker.fileno()

    def post(self, snapshot: Snapshot | None, events: Iterable[LoopEvent] = ()) -> None:
        """Publish (producer side): replace the unread snapshot, log the events, wake."""
        with self._lock:
            if snapshot is not None:
                self._snapshot = snapshot
            log = self._events
            for event in events:
                if len(log) >= self._log_size:
                    log.popleft()
                    self._dropped += 1
                log.append(event)
        self._waker.wake()

    def poke(self) -> None:
        """Wake the reader with nothing new (a command it is waiting on has finished)."""
        self._waker.wake()

    def take(self) -> tuple[Snapshot | None, list[LoopEvent], int]:
        """(latest unread snapshot or None, events since the last take, events dropped since
        the last take). Clears the wake first, so a post racing with this is never missed."""
        self._waker.consume()
        with self._lock:
            snapshot, self._snapshot = self._snapshot, None
            events = list(self._events)
            self._events.clear()
            dropped, self._dropped = self._dropped, 0
        return snapshot, events, dropped

    def wait(self, timeout: float | None = None) -> bool:
        """Block until there is something to take (or ``timeout``); for reader threads."""
        try:
            readable, _, _ = select.select([self.fileno()], [], [], timeout)
        except (OSError, ValueError):
            return False  # closed under us
        return bool(readable)

    @property
    def peek_snapshot(self) -> Snapshot | None:
        with self._lock:
            return self._snapshot

    def close(self) -> None:
        self._waker.close()
