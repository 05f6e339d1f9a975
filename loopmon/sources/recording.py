"""A recording as the window's source: its snapshots posted into a ``Mailbox`` at the pace they
were recorded (times ``speed``), as the in-process runner's loop thread posts live ones, so the
window reads a replay through the door it reads everything through.

The player is a step function, ``pump(now)``: it posts every snapshot due by ``now`` and says
when the next one is due; ``start`` runs it on a thread of its own that sleeps until then (or
until play, pause, speed or a seek changes the plan). Tests call ``pump`` with a fake clock.

A seek (``seek``, ``jump``) starts decoding again at the keyframe before the moment and bumps
``generation``: history on the other side must be cleared (``Timeline.clear()``) when it
changes, since the snapshots that follow do not continue the ones before. A recording takes no
commands: each fails at once with ``ReadOnly``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

from loopmon.mailbox import Mailbox
from loopmon.snapshot import ListenerRow, ProducerInfo
from loopmon.sources import RECORDING, Unsupported
from loopmon.wire.recording import Moment, RecordingReader, SnapshotAt

JUMP_KINDS: dict[str, frozenset[str]] = {
    "stall": frozenset({"stall"}),
    "exception": frozenset({"exception"}),
    "listener": frozenset(
        {"listener_started", "listener_stopped", "listener_failed", "listener_full"}
    ),
    "close": frozenset({"close"}),
}


class ReadOnly(Unsupported):
    """A command sent to a recording."""


class RecordingSource:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.reader = RecordingReader(path, progress)
        self.path = os.fspath(path)
        self.mailbox = Mailbox()
        self.producer: ProducerInfo = self.reader.producer
        # The Source protocol: a recording is always "recording", from its path, and takes
        # no command (the window greys them all).
        self.link = RECORDING
        self.link_error = ""
        self.where = self.path
        self.commands: frozenset[str] = frozenset()
        self.can_switch_backend = False
        self.clock = clock
        self.speed = speed
        self.playing = False
        self.position = 0.0  # the recording's time of the last snapshot posted
        self.generation = 0
        self.finished = False
        self._cond = threading.Condition()
        self._items: Iterator[SnapshotAt] | None = None
        self._next: SnapshotAt | None = None
        self._anchor = (0.0, 0.0)  # (wall time, recording time) that play is measured from
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- RunnerLike ------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        return self.producer.backend

    @property
    def strategy(self) -> str:
        return "recording"

    @property
    def available_backends(self) -> list[str]:
        return []

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="loopmon replay", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> bool:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            alive = self._thread.is_alive()
        else:
            alive = False
        self.reader.close()
        return not alive

    def _refuse(self) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_exception(ReadOnly("a recording takes no commands"))
        return future

    def start_listener(self, host: str, port: int) -> Future[ListenerRow | None]:
        return self._refuse()

    def stop_listener(self, listener_id: int, close_connections: bool = False) -> Future[None]:
        return self._refuse()

    def close_connection(self, connection_id: int) -> Future[None]:
        return self._refuse()

    def set_strategy(self, name: str) -> Future[None]:
        return self._refuse()

    def restart(self, backend: str) -> Future[None]:
        return self._refuse()

    # -- the controls ----------------------------------------------------------------------
    @property
    def duration(self) -> float:
        return self.reader.duration

    def play(self) -> None:
        with self._cond:
            if self.finished:
                self._seek(0.0)
            self.playing = True
            self._anchor = (self.clock(), self.position)
            self._cond.notify_all()

    def pause(self) -> None:
        with self._cond:
            self.playing = False
            self._cond.notify_all()

    def set_speed(self, speed: float) -> None:
        if not speed > 0:
            raise ValueError(f"a speed must be above 0, not {speed}")
        with self._cond:
            self.speed = speed
            self._anchor = (self.clock(), self.position)
            self._cond.notify_all()

    def seek(self, at: float) -> None:
        """Show the moment ``at`` (the recording's seconds): its snapshot is posted at once."""
        with self._cond:
            self._seek(at)
            self._cond.notify_all()

    def jump(self, what: str) -> Moment | None:
        """Seek to the next ``what`` (a JUMP_KINDS key) after the position; None if none."""
        moment = self.reader.next_moment(self.position, JUMP_KINDS[what])
        if moment is not None:
            self.seek(moment.at)
        return moment

    def _seek(self, at: float) -> None:
        self.generation += 1
        self.finished = False
        self._items = self.reader.snapshots(max(at, 0.0))
        self._next = next(self._items, None)
        self.position = at
        if self._next is not None:
            self._post(self._next)
            self._next = next(self._items, None)
        self._anchor = (self.clock(), self.position)

    # -- the player ------------------------------------------------------------------------
    def _post(self, item: SnapshotAt) -> None:
        self.mailbox.post(item.snapshot, item.snapshot.events)
        self.position = item.at

    def pump(self, now: float) -> float | None:
        """Post what is due by ``now``; when the next is due (None: paused or at the end)."""
        with self._cond:
            if self._items is None:
                self._seek(0.0)
            if not self.playing:
                return None
            wall, rec = self._anchor
            while self._next is not None:
                due = wall + (self._next.at - rec) / self.speed
                if due > now:
                    return due
                self._post(self._next)
                assert self._items is not None
                self._next = next(self._items, None)
            self.playing = False
            self.finished = True
            return None

    def _run(self) -> None:
        # Pumping under the condition's (reentrant) lock, so a control's notify cannot fall
        # between a pump and the wait; the wait releases it.
        with self._cond:
            while not self._stopping:
                due = self.pump(self.clock())
                timeout = None if due is None else max(due - self.clock(), 0.0)
                if timeout is None or timeout > 0:
                    self._cond.wait(timeout)
