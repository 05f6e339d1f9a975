"""The publisher for ``loopmon run``: on a loopmon IOLoop on a thread of its own.

Why a thread, where ``serve`` has none (the same choice as ``run --metrics``, for the same
reasons): ``serve`` owns its loop, but ``run``'s loops are the program's. They do not exist
before the program makes one, may come and go (one ``asyncio.run`` after another) and may be
several, on several threads; a publisher on one of them would accept nothing before it starts
or between two, would lose its consumers when it stops, and would put loopmon's fds in the
program's selector. A loop of loopmon's own takes consumers from before the program starts to
after its last loop closed. Its cost to the program is the thread's wakeups at the snapshot
rate (one ``add_callback`` per snapshot) plus the encoding, which runs here, not on the
program's loop.

Threads, and what crosses between them:
- ``publish(snapshot)`` runs on the program's loop thread that builds snapshots (the
  instrument's tick): it only queues the frozen snapshot with ``IOLoop.add_callback`` (the one
  thread-safe method), and the publisher encodes and sends it on this thread.
- Every publisher method (accepting, hellos, encoding, sending) runs on this thread.
- ``start`` and ``close`` run on the thread that made the object (``run``'s main thread), while
  this thread's loop is not running yet, or after it stopped and was joined.

The thread is invisible to the program where it can be: a daemon named ``loopmon-telemetry``
that blocks every signal (the kernel delivers the process's signals to the program's threads);
its loop is never current on any thread of the program's nor ``IOLoop.instance()``;
``own_loop`` keeps the instrument from watching it; the listening socket and each consumer's
socket are ``own``ed (no row, closed in a forked child).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from loopmon.ioloop import IOLoop
from loopmon.sideloop import SideLoop
from loopmon.snapshot import ProducerInfo, Snapshot
from loopmon.stream.publisher import MAX_CONSUMERS, Publisher
from loopmon.stream.reactor import IOLoopReactor

DRAIN_S = 0.5


class PublisherThread(SideLoop):
    def __init__(
        self,
        sock: socket.socket,
        info: ProducerInfo,
        token: bytes,
        *,
        max_consumers: int = MAX_CONSUMERS,
        note: Callable[[str], None] | None = None,
        own: Callable[[Any], None],
        disown: Callable[[Any], None],
        own_loop: Callable[[IOLoop], None],
        name: str = "loopmon-telemetry",
    ) -> None:
        super().__init__(sock, own=own, disown=disown, own_loop=own_loop, note=note, name=name)
        self.publisher = Publisher(
            IOLoopReactor(self.loop),
            info,
            token,
            sock=sock,
            max_consumers=max_consumers,
            opened=own,
            closing=disown,
        )

    @property
    def address_text(self) -> str:
        return self.publisher.address_text

    def start(self) -> None:
        """Listen (the loop is not running yet: handlers can be added from here), then the
        thread."""
        self.publisher.start()
        self.start_thread()

    def publish(self, snapshot: Snapshot) -> None:
        """Any thread: hand ``snapshot`` to the publisher's thread."""
        self.loop.add_callback(self.publisher.publish, snapshot)

    def stopped_text(self, exc: BaseException) -> str:
        return f"loopmon: telemetry: the stream's thread stopped: {exc!r}"

    def close(self, reason: str = "the program exited") -> None:
        """Send what was published, say goodbye, stop the loop, wait for the thread, close
        the port, its connections and the loop."""
        deadline = self.loop.time() + DRAIN_S

        def finish() -> None:
            # The last snapshots first (a goodbye would cut a frame half sent), for a moment:
            # a consumer that does not read is not waited for.
            if self.publisher.sending and self.loop.time() < deadline:
                self.loop.call_later(0.01, finish)
                return
            self.publisher.close(reason)
            self.loop.stop()

        if not self.stop_thread(finish):
            return  # stuck past every deadline: nothing is closed under it
        self.publisher.close(reason, detach=False)
        self.loop.close()
