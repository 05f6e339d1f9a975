"""``/metrics`` for ``loopmon run``: the exporter on a loopmon IOLoop on a thread of its own.

Why a thread, where ``serve`` has none: ``serve`` owns its loop, but ``run``'s loops are the
program's. They are asyncio loops that do not exist before the program makes one, may come and
go (one ``asyncio.run`` after another) and may be several, on several threads; an endpoint on
one of them would answer nothing before it starts or between two, would move when it stops, and
would put loopmon's fds in the program's selector. A loop of loopmon's own answers from before
the program starts to after its last loop closed, whatever the program's loops do. What it
costs the program is measured by ``benchmarks/bench_run.py`` (README, "Prometheus metrics").

Threads, and what crosses between them:
- ``update(snapshot)`` runs on the program's loop thread that builds snapshots (the
  instrument's tick): it hands the snapshot to the collector, whose lock is the one thing the
  two threads share (``SnapshotCollector``: ``update`` folds the snapshot in under it,
  ``collect`` builds the families under it; snapshots are frozen records, read by both).
  Every snapshot is folded in, in the order it was built, however rarely it is scraped.
- Every endpoint method (accepting, parsing, rendering the page) runs on this thread.
- ``start`` and ``close`` run on the thread that made the object (``run``'s main thread), while
  this thread's loop is not running: before it starts, and after it stopped and was joined.

The thread is invisible to the program where it can be: a daemon named ``loopmon-metrics``
that blocks every signal (so the kernel delivers a process's signals to the program's threads,
and a program blocked in a system call is interrupted as it would be without loopmon); its loop
is never current on any thread of the program's nor ``IOLoop.instance()``; ``own_loop`` keeps
the instrument from watching it; the listening socket and each client's socket are ``own``ed
(no row, closed in a forked child). The loop's poller and waker fds are close-on-exec and not
``own``ed: the objects holding them would close their numbers again in the child.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from loopmon.ioloop import IOLoop
from loopmon.metrics.endpoint import Limits
from loopmon.metrics.exporter import Exporter
from loopmon.sideloop import SideLoop
from loopmon.snapshot import ProducerInfo, Snapshot


class ExporterThread(SideLoop):
    def __init__(
        self,
        sock: socket.socket,
        producer: ProducerInfo,
        *,
        token: bytes | None = None,
        limits: Limits | None = None,
        note: Callable[[str], None] | None = None,
        own: Callable[[Any], None],
        disown: Callable[[Any], None],
        own_loop: Callable[[IOLoop], None],
        name: str = "loopmon-metrics",
    ) -> None:
        super().__init__(sock, own=own, disown=disown, own_loop=own_loop, note=note, name=name)
        self.exporter = Exporter(
            self.loop,
            sock,
            producer,
            token=token,
            limits=limits,
            note=note,
            opened=own,
            closing=disown,
        )

    @property
    def address(self) -> str:
        return self.exporter.address

    def start(self) -> None:
        """Listen (the loop is not running yet: its handlers can be added from here), then
        the thread."""
        self.exporter.start()
        self.start_thread()

    def update(self, snapshot: Snapshot) -> None:
        """The program's loop thread: fold ``snapshot`` in (the collector's lock only)."""
        self.exporter.update(snapshot)

    def stopped_text(self, exc: BaseException) -> str:
        return f"metrics {self.address}: the metrics thread stopped: {exc!r}"

    def close(self) -> None:
        """Stop the loop, wait for the thread, close the port, its connections and the loop."""
        if not self.stop_thread(self.loop.stop):
            return  # a scrape stuck past every deadline: nothing is closed under it
        self.exporter.close()  # the loop stopped, not closed: its handlers go with the port
        self.loop.close()
