"""How a connection echoes: the per-event handler, the two strategies and backpressure.

- ``direct`` (the default): a readable event does one ``recv_into`` a preallocated buffer and one
  send (``os.write`` on POSIX) of what came in. Only what the kernel would not take is copied,
  queued, and WRITE registered until the queue drains, so a connection whose peer keeps up never
  has WRITE in its mask.
- ``seed``: the article's dance. Every read queues the data and switches the fd to WRITE; once
  the queue drains it switches back to READ. Every message flips the mask, which makes the
  monitor's mask raster worth watching.

Backpressure: once a connection's queue reaches ``high_water`` bytes its READ is dropped (it is
"paused"); it is resumed when the queue falls to ``low_water``. A queue therefore never holds
more than ``high_water`` plus one read (``RECV_SIZE``), whatever the peer does.

After the peer's EOF the connection is "draining": what is queued is flushed, then it is closed.
A reset, EPIPE or any other socket error closes that one connection with the OS's reason.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Callable
from typing import Final

from loopmon.echo.connection import Connection
from loopmon.events import ERROR, NONE, READ, WRITE
from loopmon.ioloop import IOLoop
from loopmon.netaddr import describe_error

STRATEGIES: Final = ("seed", "direct")
RECV_SIZE: Final = 65536  # one read at most; also the most a queue can overshoot high_water
MAX_IOV: Final = 64  # chunks handed to one sendmsg()

# memoryview slices of the read buffer, made once per size: the send of a read of n bytes then
# allocates nothing. Bigger reads slice afresh; their copy dwarfs one small object.
_CACHED_VIEWS: Final = 16384

# On POSIX the common case sends with os.write on the fd: an Argument Clinic call, where
# socket.send builds an argument tuple and parses a format string on every call (about 400 of
# the ~3,000 user-space instructions an echoed message costs here, counted with callgrind).
# Errors are the same OSErrors. Windows cannot write() a socket, so it keeps socket.send.
_WRITE_FD: Final = os.name == "posix"


def check_strategy(name: str) -> None:
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")


class Echo:
    """The echo of every connection of one server: one strategy and one pair of watermarks
    for all. ``close(conn, reason)`` is the server's, which forgets the connection."""

    def __init__(
        self,
        loop: IOLoop,
        strategy: str,
        high_water: int,
        low_water: int,
        close: Callable[[Connection, str], None],
    ) -> None:
        check_strategy(strategy)
        if high_water <= 0 or low_water < 0 or low_water > high_water:
            raise ValueError("need 0 <= low_water <= high_water and high_water > 0")
        self.loop = loop
        self.strategy = strategy
        self.direct = strategy == "direct"
        self.high_water = high_water
        self.low_water = low_water
        self.close = close
        self.buffer = bytearray(RECV_SIZE)

    def set_strategy(self, name: str) -> None:
        check_strategy(name)
        self.strategy = name
        self.direct = name == "direct"

    def handler(self) -> Callable[[Connection, int], None]:
        """The per-event handler. Its common case (direct strategy, a READ, nothing queued)
        is one recv_into, one write and two counters, with everything it touches bound to
        closure variables; the loop hands it the Connection itself."""
        buffer = self.buffer
        view = memoryview(buffer)
        views: list[memoryview | None] = [None] * _CACHED_VIEWS
        service = self.service
        fail = self.fail
        on_eof = self.on_eof
        settle = self.settle
        write = os.write
        write_fd = _WRITE_FD

        def on_connection(conn: Connection, events: int) -> None:
            if events != READ or conn.slow:
                service(conn, events)
                return
            try:
                n = conn.sock.recv_into(buffer)
            except BlockingIOError:
                return
            except OSError as exc:
                fail(conn, exc)
                return
            if not n:
                on_eof(conn)
                return
            conn.bytes_in += n
            conn.messages += 1
            if n < _CACHED_VIEWS:
                data = views[n]
                if data is None:
                    data = views[n] = view[:n]
            else:
                data = view[:n]
            try:
                sent = write(conn.fd, data) if write_fd else conn.sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                fail(conn, exc)
                return
            if sent != n:
                conn.queue.append(bytes(view[sent:n]))
                conn.queue_bytes += n - sent
                settle(conn)

        return on_connection

    def service(self, conn: Connection, events: int) -> None:  # noqa: PLR0912 - per event
        """Every case but the common one: errors, writes, the seed strategy, a read while
        output is already queued."""
        if events & ERROR:
            try:
                err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            except OSError as exc:
                self.fail(conn, exc)
                return
            if err:
                self.close(conn, describe_error(OSError(err, os.strerror(err))))
                return
            if conn.eof:
                # A hang-up after the peer's FIN: nothing more can be delivered.
                self.close(conn, "hung up")
                return
            # Otherwise let a read find out what happened (EOF, data, or the error).
            events |= READ
        if events & WRITE and conn.queue and not self.flush(conn):
            return
        if events & READ and not conn.eof:
            try:
                if self.direct and not conn.queue:
                    n = conn.sock.recv_into(self.buffer)
                    data: bytes | memoryview = memoryview(self.buffer)[:n]
                else:
                    data = conn.sock.recv(RECV_SIZE)
                    n = len(data)
            except BlockingIOError:
                n = -1
            except OSError as exc:
                self.fail(conn, exc)
                return
            if n == 0:
                self.on_eof(conn)
                return
            if n > 0:
                conn.bytes_in += n
                conn.messages += 1
                sent = 0
                if self.direct and not conn.queue:
                    try:
                        sent = conn.sock.send(data)
                    except BlockingIOError:
                        pass
                    except OSError as exc:
                        self.fail(conn, exc)
                        return
                if sent != n:
                    chunk = data[sent:] if sent else data
                    conn.queue.append(bytes(chunk) if isinstance(chunk, memoryview) else chunk)
                    conn.queue_bytes += n - sent
        self.settle(conn)

    def flush(self, conn: Connection) -> bool:
        """Send as much of the queue as the kernel takes. False if that closed the
        connection."""
        queue = conn.queue
        while queue:
            try:
                if len(queue) == 1:
                    sent = conn.sock.send(queue[0])
                else:
                    sent = conn.sock.sendmsg(list(itertools.islice(queue, MAX_IOV)))
            except BlockingIOError:
                return True
            except OSError as exc:
                self.fail(conn, exc)
                return False
            conn.queue_bytes -= sent
            while sent:
                head = queue[0]
                size = len(head)
                if sent < size:
                    queue[0] = memoryview(head)[sent:]
                    return True  # the kernel took part of it: its buffer is full
                queue.popleft()
                sent -= size
        return True

    def on_eof(self, conn: Connection) -> None:
        conn.eof = True
        self.settle(conn)

    def settle(self, conn: Connection) -> None:
        """Bring a connection's state, fast-path flag and registered mask in line with its
        queue and the strategy."""
        queued = conn.queue_bytes
        conn.slow = bool(conn.queue) or not self.direct
        if conn.eof:
            if not conn.queue:
                self.close(conn, "closed by peer")
                return
            want = WRITE
            conn.state = "draining"
        else:
            if conn.paused:
                if queued <= self.low_water:
                    conn.paused = False
            elif queued >= self.high_water:
                conn.paused = True
            read = NONE if conn.paused else READ
            if self.direct:
                want = read | (WRITE if conn.queue else NONE)
            else:
                want = WRITE if conn.queue else read
            conn.state = "paused" if conn.paused else "open"
        if want != conn.mask:
            conn.mask = want
            self.loop.update_handler(conn.fd, want)

    def fail(self, conn: Connection, exc: OSError) -> None:
        self.close(conn, describe_error(exc))
