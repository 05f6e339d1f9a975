"""One accepted connection of the echo server: its socket, counters and pending output."""

from __future__ import annotations

import collections
import socket

from loopmon.echo.listener import Listener
from loopmon.events import READ


class Connection:
    """One accepted connection and its pending output (a deque of bytes/memoryview chunks)."""

    # The five the per-event path reads come first, so they share the object's first cache line.
    __slots__ = (  # noqa: RUF023
        "slow",
        "sock",
        "fd",
        "bytes_in",
        "messages",
        "close_reason",
        "created",
        "dropped",
        "eof",
        "id",
        "listener",
        "listener_id",
        "local",
        "mask",
        "paused",
        "peer",
        "queue",
        "queue_bytes",
        "state",
    )

    def __init__(
        self,
        sock: socket.socket,
        peer: str,
        listener: Listener,
        created: float,
        conn_id: int = 0,
        local: str = "",
    ) -> None:
        self.sock = sock
        self.id = conn_id  # unique in the producer's session; the fd is reused at once
        self.fd = sock.fileno()
        self.bytes_in = 0
        self.messages = 0  # reads that returned data
        self.peer = peer
        self.listener = listener
        self.listener_id = listener.id
        self.local = local
        self.state = "open"  # | "paused" | "draining" | "closed"
        self.queue: collections.deque[bytes | memoryview] = collections.deque()
        self.queue_bytes = 0
        self.dropped = 0  # queued output thrown away at close
        self.created = created
        self.mask = READ  # what we registered (without the implicit ERROR)
        self.paused = False  # READ dropped for backpressure
        self.eof = False  # the peer has sent FIN
        self.close_reason = ""
        # False only while the handler's fast path applies (direct strategy, nothing queued):
        # one flag for the hot path to test instead of three.
        self.slow = False

    @property
    def bytes_out(self) -> int:
        """Bytes echoed back so far. Derived, not counted: everything read is either sent,
        still queued, or was dropped at close, so the hot path keeps one counter, not two."""
        return self.bytes_in - self.queue_bytes - self.dropped

    @property
    def queue_chunks(self) -> int:
        return len(self.queue)

    def fileno(self) -> int:
        # The loop hands this object (not the fd number) to the handler: no lookup per event.
        return self.fd

    def close(self) -> None:
        """Close the socket (what ``IOLoop.close(all_fds=True)`` calls)."""
        self.sock.close()

    def __repr__(self) -> str:
        return f"<Connection fd={self.fd} {self.peer} {self.state} queued={self.queue_bytes}>"
