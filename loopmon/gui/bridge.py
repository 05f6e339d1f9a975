"""The loop-to-window door: one Qt signal per mailbox wake, and command results.

A ``QSocketNotifier`` watches the mailbox's waker fd. Each time it fires the bridge takes
everything waiting (the latest snapshot, the events since the last take, per kind the count the
bounded log dropped) and emits ``batch`` once, never once per event.

Runner commands return ``concurrent.futures.Future`` objects that complete on the loop thread,
where Qt must not be touched. The bridge keeps them and checks them in the GUI thread on every
wake (the runner wakes the mailbox after each command completes) and, as a safety net while any
are outstanding, on a slow timer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from typing import Any, Protocol

from PySide6.QtCore import QObject, QSocketNotifier, QTimer, Signal

from loopmon.snapshot import LoopEvent, Snapshot

log = logging.getLogger(__name__)

# (result, error): exactly one of them is meaningful.
Done = Callable[[Any, BaseException | None], None]

FALLBACK_CHECK_MS = 250


class MailboxLike(Protocol):
    def fileno(self) -> int: ...
    def take_by_kind(self) -> tuple[Snapshot | None, list[LoopEvent], dict[str, int]]: ...


@dataclass(frozen=True, slots=True)
class Batch:
    snapshot: Snapshot | None
    events: list[LoopEvent]
    dropped: dict[str, int]  # per kind, let go by the mailbox's log since the last batch


class MailboxBridge(QObject):
    batch = Signal(object)  # Batch

    def __init__(self, mailbox: MailboxLike, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._mailbox = mailbox
        self._notifier: QSocketNotifier | None = None
        self._pending: list[tuple[Future[Any], Done]] = []
        self._fallback = QTimer(self)
        self._fallback.setInterval(FALLBACK_CHECK_MS)
        self._fallback.timeout.connect(self._collect)
        notifier = QSocketNotifier(mailbox.fileno(), QSocketNotifier.Type.Read, self)
        notifier.activated.connect(self._on_readable)
        self._notifier = notifier

    @property
    def mailbox(self) -> MailboxLike:
        return self._mailbox

    def close(self) -> None:
        """Stop watching (before the mailbox's fd is closed) and drop what is pending."""
        if self._notifier is not None:
            self._notifier.setEnabled(False)
            self._notifier.activated.disconnect(self._on_readable)
            self._notifier.deleteLater()
            self._notifier = None
        self._fallback.stop()
        self._pending.clear()

    def track(self, future: Future[Any], done: Done) -> None:
        """Call ``done(result, error)`` in the GUI thread once ``future`` completes."""
        self._pending.append((future, done))
        if not self._fallback.isActive():
            self._fallback.start()
        if future.done():
            QTimer.singleShot(0, self._collect)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _on_readable(self, *_: object) -> None:
        snapshot, events, dropped = self._mailbox.take_by_kind()
        self._collect()
        if snapshot is not None or events or dropped:
            self.batch.emit(Batch(snapshot, events, dropped))

    def poll(self) -> None:
        """Take and dispatch now, as a wake would (for tests and for a final drain)."""
        self._on_readable()

    def _collect(self) -> None:
        if not self._pending:
            self._fallback.stop()
            return
        finished = [item for item in self._pending if item[0].done()]
        if not finished:
            return
        self._pending = [item for item in self._pending if not item[0].done()]
        if not self._pending:
            self._fallback.stop()
        for future, done in finished:
            try:
                error: BaseException | None = future.exception()
            except CancelledError as exc:
                error = exc
            try:
                done(None if error is not None else future.result(), error)
            except Exception:
                log.exception("handling the result of a loop command failed")
