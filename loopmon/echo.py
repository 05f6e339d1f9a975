"""The echo server that runs on the IOLoop: the article's demo grown into one you can trust.

Listeners accept in batches; each connection echoes every byte it receives, in order, or is
closed with its reason recorded. Two strategies, switchable while running:

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

Everything here runs on the loop thread; nothing is locked. The per-fd mask, time in each mask
and readiness counts are the loop's own accounting (``IOLoop.fd_stat``), not repeated here.
"""

from __future__ import annotations

import collections
import errno
import itertools
import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Final

from loopmon.events import ERROR, NONE, READ, WRITE
from loopmon.ioloop import IOLoop
from loopmon.loopstats import FdStat
from loopmon.netaddr import describe_error, format_address, is_loopback
from loopmon.snapshot import ListenerRow
from loopmon.timers import Timeout

__all__ = [
    "STRATEGIES",
    "Connection",
    "EchoServer",
    "Listener",
    "ListenerError",
    "format_address",
]

log = logging.getLogger("loopmon")

STRATEGIES: Final = ("seed", "direct")
RECV_SIZE: Final = 65536  # one read at most; also the most a queue can overshoot high_water
ACCEPT_BATCH: Final = 64  # accepts per readiness event, so one busy listener cannot hog a pass
ACCEPT_BACKOFF_S: Final = 0.1  # pause after EMFILE/ENFILE before accepting again
BACKLOG: Final = 1024  # the kernel caps it at net.core.somaxconn
MAX_IOV: Final = 64  # chunks handed to one sendmsg()
KEEP_STOPPED: Final = 32  # stopped listeners still shown in listener_rows()
# Under a poller that cannot watch fds from some number up (select's FD_SETSIZE), accepting
# stops this many fds short of it: the loop, its consumers and the program keep some for
# themselves, and a connection accepted past the limit could only be closed at once.
FD_RESERVE: Final = 16
FULL_RETRY_S: Final = 1.0  # a full listener looks again this often, and whenever one closes
FULL_STATE: Final = "full: select's FD_SETSIZE"
NOTE_EVERY: Final = 1000  # a repeated refusal reaches the event log on its 1st, then every Nth
# accept() failures that mean "out of descriptors or memory": back off rather than spin.
_RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

# (kind, text, fd or -1, the id of the listener or connection it is about, or None)
OnEvent = Callable[[str, str, int, "int | None"], None]
# (the connection just closed, its loop counters as of the close): for its final figures
OnClose = Callable[["Connection", "FdStat | None"], None]

# memoryview slices of the read buffer, made once per size: the send of a read of n bytes then
# allocates nothing. Bigger reads slice afresh; their copy dwarfs one small object.
_CACHED_VIEWS: Final = 16384

# On POSIX the common case sends with os.write on the fd: an Argument Clinic call, where
# socket.send builds an argument tuple and parses a format string on every call (about 400 of
# the ~3,000 user-space instructions an echoed message costs here, counted with callgrind).
# Errors are the same OSErrors. Windows cannot write() a socket, so it keeps socket.send.
_WRITE_FD: Final = os.name == "posix"


class ListenerError(OSError):
    """A listener could not be started: the one exception type for every such failure.

    ``str()`` is one line naming the address and the OS's reason
    (``127.0.0.1:10000: address already in use``); ``errno`` is the OS's (or getaddrinfo's).
    """

    def __init__(self, host: str, port: int, err: int | None, reason: str) -> None:
        super().__init__(err if err is not None else 0, reason)
        self.host = host
        self.port = port
        self.reason = reason

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    def __str__(self) -> str:
        return f"{self.address}: {self.reason}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.host, self.port, self.errno, self.reason))


class Listener:
    """One listening socket. ``host`` and ``port`` are what it really bound (port 0 resolved)."""

    __slots__ = (
        "_backoff",
        "accepted",
        "connections",
        "error",
        "errors",
        "family",
        "fd",
        "full_pauses",
        "host",
        "id",
        "port",
        "refused",
        "sock",
        "state",
    )

    def __init__(self, listener_id: int, sock: socket.socket) -> None:
        bound = sock.getsockname()
        self.id = listener_id
        self.sock = sock
        self.fd = sock.fileno()
        self.family = sock.family
        self.host: str = bound[0]
        self.port: int = bound[1]
        self.state = "listening"  # | "stopped" | FULL_STATE (paused at the fd limit)
        self.full_pauses = 0
        self.accepted = 0
        self.refused = 0  # accepted and closed at once: over max_connections
        self.errors = 0  # accept() failures
        self.connections = 0  # open now
        self.error = ""  # the last accept() failure
        self._backoff: Timeout | None = None

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    def row(self) -> ListenerRow:
        return ListenerRow(
            id=self.id,
            host=self.host,
            port=self.port,
            state=self.state,
            accepted=self.accepted,
            refused=self.refused,
            errors=self.errors,
            connections=self.connections,
            error=self.error,
        )

    def __repr__(self) -> str:
        return f"<Listener {self.id} {self.address} {self.state}>"


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


class EchoServer:
    """Echo servers on ``loop``: any number of listeners, one strategy for all connections.

    Every method must be called on the loop's thread (from another thread, go through
    ``loop.add_callback``).
    """

    def __init__(
        self,
        loop: IOLoop,
        strategy: str = "direct",
        max_connections: int = 10_000,
        high_water: int = 1 << 20,
        low_water: int = 256 << 10,
        on_event: OnEvent | None = None,
        listener_ids: Iterator[int] | None = None,
        connection_ids: Iterator[int] | None = None,
        on_close: OnClose | None = None,
    ) -> None:
        """``listener_ids`` and ``connection_ids`` number listeners and connections; a
        producer whose session outlives this server (the window's runner, across a backend
        switch) passes the same iterators to each, so an id is never given twice in its
        session (shared/DESIGN.md, "Identity"). ``on_close`` hears of every connection that
        closes, with its loop counters, for its final figures."""
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
        if max_connections < 0:
            raise ValueError("max_connections must be >= 0")
        if high_water <= 0 or low_water < 0 or low_water > high_water:
            raise ValueError("need 0 <= low_water <= high_water and high_water > 0")
        self.loop = loop
        self.strategy = strategy
        self._direct = strategy == "direct"
        self.max_connections = max_connections
        self.high_water = high_water
        self.low_water = low_water
        self.on_event = on_event
        # Bytes of connections already closed; the live ones are summed on demand, so the hot
        # path does not count everything twice.
        self.closed_bytes_in = 0  # of connections already closed
        self.closed_bytes_out = 0
        self.closed_connections = 0
        self._ids = listener_ids if listener_ids is not None else itertools.count(1)
        self._connection_ids = connection_ids if connection_ids is not None else itertools.count(1)
        self.on_close = on_close
        self._listeners: dict[int, Listener] = {}
        self._by_fd: dict[int, Listener] = {}
        self._stopped: collections.deque[Listener] = collections.deque(maxlen=KEEP_STOPPED)
        self._connections: dict[int, Connection] = {}
        self._rows: tuple[ListenerRow, ...] | None = None
        self._buffer = bytearray(RECV_SIZE)
        self._on_connection = self._make_connection_handler()
        fd_limit = getattr(loop, "fd_limit", None)
        # Accept only while the next fd is below this (None: no limit to keep to).
        self._accept_below = None if fd_limit is None else fd_limit - FD_RESERVE
        self._full: set[Listener] = set()

    @property
    def bytes_in(self) -> int:
        """Bytes read over the server's life."""
        return self.closed_bytes_in + sum(conn.bytes_in for conn in self._connections.values())

    @property
    def bytes_out(self) -> int:
        """Bytes echoed over the server's life."""
        live = self._connections.values()
        return self.closed_bytes_out + sum(conn.bytes_out for conn in live)

    # -- views ----------------------------------------------------------------------------

    @property
    def listeners(self) -> Mapping[int, Listener]:
        """Listening now, by id."""
        return MappingProxyType(self._listeners)

    @property
    def connections(self) -> Mapping[int, Connection]:
        """Open now, by fd."""
        return MappingProxyType(self._connections)

    def listener_rows(self) -> tuple[ListenerRow, ...]:
        """The listening and the recently stopped listeners, by id. The same tuple object is
        returned until something in it changes."""
        rows = self._rows
        if rows is None:
            listeners = sorted(
                itertools.chain(self._listeners.values(), self._stopped), key=lambda lst: lst.id
            )
            rows = self._rows = tuple(lst.row() for lst in listeners)
        return rows

    @property
    def queue_bytes(self) -> int:
        return sum(conn.queue_bytes for conn in self._connections.values())

    # -- listeners ------------------------------------------------------------------------

    def start_listener(self, host: str = "127.0.0.1", port: int = 0) -> Listener:
        """Listen on ``host:port`` (port 0: an ephemeral one) and return the Listener with its
        real address. Raises ``ListenerError`` and leaves nothing behind if it cannot."""
        if not 0 <= port <= 65535:
            raise self._failed(host, port, errno.EINVAL, f"port out of range 0-65535: {port}")
        try:
            infos = socket.getaddrinfo(
                host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
            )
        except socket.gaierror as exc:
            raise self._failed(host, port, exc.errno, f"unknown host ({exc.strerror})") from None
        except UnicodeError as exc:
            raise self._failed(host, port, errno.EINVAL, f"bad host name ({exc})") from None
        # A name with both kinds of address binds the IPv4 one, which every client can reach.
        infos.sort(key=lambda info: info[0] != socket.AF_INET)
        family, _, proto, _, sockaddr = infos[0]
        sock = None
        try:
            sock = socket.socket(family, socket.SOCK_STREAM, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(BACKLOG)
            sock.setblocking(False)
            listener = Listener(next(self._ids), sock)
            self.loop.add_handler(listener.fd, self._on_accept, READ)
        except (OSError, ValueError) as exc:
            if sock is not None:
                sock.close()
            err = exc.errno if isinstance(exc, OSError) else errno.EINVAL
            raise self._failed(host, port, err, describe_error(exc)) from None
        self._listeners[listener.id] = listener
        self._by_fd[listener.fd] = listener
        self._rows = None
        if not is_loopback(listener.host):
            log.warning(
                "listening on %s, which is not a loopback address: other machines can connect",
                listener.address,
            )
        self._emit("listener_started", f"listening on {listener.address}", listener.fd, listener.id)
        return listener

    def _failed(self, host: str, port: int, err: int | None, reason: str) -> ListenerError:
        error = ListenerError(host, port, err, reason)
        self._emit("listener_failed", str(error), -1)
        return error

    def stop_listener(self, listener_id: int, close_connections: bool = False) -> None:
        """Close the listening socket now; its connections keep running unless
        ``close_connections``. ``KeyError`` for an id that is not listening."""
        listener = self._listeners.pop(listener_id, None)
        if listener is None:
            raise KeyError(f"no listener with id {listener_id}")
        del self._by_fd[listener.fd]
        if listener._backoff is not None:
            self.loop.remove_timeout(listener._backoff)
            listener._backoff = None
        self.loop.remove_handler(listener.fd)
        listener.sock.close()
        listener.state = "stopped"
        self._full.discard(listener)
        self._stopped.append(listener)
        self._rows = None
        closed = 0
        if close_connections:
            for conn in [c for c in self._connections.values() if c.listener is listener]:
                self._close(conn, "listener stopped")
                closed += 1
        text = f"stopped listening on {listener.address}"
        if close_connections:
            text += f", closed {closed} connection{'' if closed == 1 else 's'}"
        self._emit("listener_stopped", text, listener.fd, listener.id)

    def close_connection(self, fd: int, reason: str = "closed by user") -> None:
        """Close one connection now (queued output is dropped). ``KeyError`` if none is open
        on ``fd``."""
        conn = self._connections.get(fd)
        if conn is None:
            raise KeyError(f"no connection on fd {fd}")
        self._close(conn, reason)

    def close_all(self, reason: str = "server closing") -> None:
        """Stop every listener and close every connection."""
        for listener_id in list(self._listeners):
            self.stop_listener(listener_id, close_connections=False)
        for conn in list(self._connections.values()):
            self._close(conn, reason)

    def set_strategy(self, name: str) -> None:
        """Switch every connection to strategy ``name`` ("seed" or "direct") now."""
        if name not in STRATEGIES:
            raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
        self.strategy = name
        self._direct = name == "direct"
        for conn in list(self._connections.values()):
            self._settle(conn)

    # -- accepting ------------------------------------------------------------------------

    def _on_accept(self, fd: int, events: int) -> None:
        listener = self._by_fd.get(fd)
        if listener is None:
            return
        accept = listener.sock.accept
        connections = self._connections
        below = self._accept_below
        for _ in range(ACCEPT_BATCH):
            if below is not None and not self._room_below(listener, below):
                break
            try:
                sock, addr = accept()
            except BlockingIOError:
                break
            except OSError as exc:
                listener.errors += 1
                listener.error = describe_error(exc)
                self._rows = None
                if exc.errno in _RESOURCE_ERRNOS:
                    self._back_off(listener)
                    break
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue  # that one connection is gone; the next may be fine
                log.warning("accept() on %s failed: %s", listener.address, listener.error)
                break
            if len(connections) >= self.max_connections:
                sock.close()
                listener.refused += 1
                self._rows = None
                if listener.refused == 1 or listener.refused % NOTE_EVERY == 0:
                    text = (
                        f"{listener.address}: {listener.refused:,} connection"
                        f"{'' if listener.refused == 1 else 's'} closed at once: "
                        f"{self.max_connections:,} open is the most allowed (max_connections)"
                    )
                    log.warning("%s", text)
                    self._emit("refusal", text, listener.fd, listener.id)
                continue
            self._add_connection(listener, sock, addr)

    def _room_below(self, listener: Listener, below: int) -> bool:
        """Whether the next accept would get an fd the poller can watch. The kernel hands out
        the lowest free number, which a dup shows (two syscalls, under select only). If not,
        the listener pauses as full: clients wait in the backlog instead of being accepted
        and dropped, until a connection closes."""
        try:
            probe = os.dup(listener.fd)
        except OSError:
            return True  # out of fds altogether: accept() says so and backs off
        os.close(probe)
        if probe < below:
            return True
        self._pause_full(listener, below)
        return False

    def _pause_full(self, listener: Listener, below: int) -> None:
        if listener._backoff is not None:
            return
        listener.state = FULL_STATE
        listener.full_pauses += 1
        self._full.add(listener)
        self._rows = None
        if listener.full_pauses == 1 or listener.full_pauses % NOTE_EVERY == 0:
            limit = below + FD_RESERVE
            text = (
                f"{listener.address} is full: {self.loop.backend} cannot watch fds from "
                f"{limit} up (FD_SETSIZE), so accepting stops at {below:,} open fds; new "
                "connections wait in the backlog until one closes"
            )
            if listener.full_pauses > 1:
                text += f" (full {listener.full_pauses:,} times so far)"
            log.warning("%s", text)
            self._emit("listener_full", text, listener.fd, listener.id)
        self.loop.update_handler(listener.fd, NONE)
        listener._backoff = self.loop.call_later(FULL_RETRY_S, self._resume_accepting, listener)

    def _resume_full(self) -> None:
        """A connection closed: a full listener may take the next one from its backlog."""
        for listener in list(self._full):
            if listener._backoff is not None:
                self.loop.remove_timeout(listener._backoff)
            self._resume_accepting(listener)

    def _back_off(self, listener: Listener) -> None:
        """Out of descriptors: stop watching the listener for a while instead of spinning on a
        backlog we cannot accept."""
        if listener._backoff is not None:
            return
        if listener.errors == 1 or listener.errors % 100 == 0:
            log.warning(
                "accept() on %s: %s; pausing accepts for %.0f ms",
                listener.address,
                listener.error,
                ACCEPT_BACKOFF_S * 1000,
            )
        self.loop.update_handler(listener.fd, NONE)
        listener._backoff = self.loop.call_later(ACCEPT_BACKOFF_S, self._resume_accepting, listener)

    def _resume_accepting(self, listener: Listener) -> None:
        listener._backoff = None
        if listener in self._full:
            self._full.discard(listener)
            if listener.state == FULL_STATE:
                listener.state = "listening"
                self._rows = None
        if self._listeners.get(listener.id) is listener:
            self.loop.update_handler(listener.fd, READ)

    def _add_connection(self, listener: Listener, sock: socket.socket, addr: Any) -> None:
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Urgent data arrives inline (and is echoed) instead of standing out of band.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        except OSError:
            pass  # the peer may already be gone; the first read will say so
        peer = format_address(str(addr[0]), int(addr[1])) if isinstance(addr, tuple) else str(addr)
        conn = Connection(
            sock,
            peer,
            listener,
            self.loop.time(),
            next(self._connection_ids),
            listener.address,  # what it bound; a wildcard listener's real address may differ
        )
        conn.slow = not self._direct
        try:
            self.loop.add_handler(conn, self._on_connection, READ)
        except (OSError, ValueError) as exc:
            # e.g. select() cannot watch an fd >= FD_SETSIZE (kept from happening by the
            # reserve, unless something else of the process took the fds below it)
            sock.close()
            listener.errors += 1
            listener.error = f"cannot watch {peer}: {describe_error(exc)}"
            self._rows = None
            if listener.errors == 1 or listener.errors % NOTE_EVERY == 0:
                self._emit(
                    "refusal",
                    f"{listener.address}: closed {peer} at once ({listener.errors:,} so far): "
                    f"{describe_error(exc)}",
                    listener.fd,
                    listener.id,
                )
            return
        self._connections[conn.fd] = conn
        listener.accepted += 1
        listener.connections += 1
        self._rows = None
        if self.on_event is not None:
            self._emit("connect", f"{peer} connected to {listener.address}", conn.fd, conn.id)

    # -- echoing --------------------------------------------------------------------------

    def _make_connection_handler(self) -> Callable[[Connection, int], None]:
        """The per-event handler. Its common case (direct strategy, a READ, nothing queued)
        is one recv_into, one write and two counters, with everything it touches bound to
        closure variables; the loop hands it the Connection itself."""
        buffer = self._buffer
        view = memoryview(buffer)
        views: list[memoryview | None] = [None] * _CACHED_VIEWS
        service = self._service
        fail = self._fail
        on_eof = self._on_eof
        settle = self._settle
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

    def _service(self, conn: Connection, events: int) -> None:
        """Every case but the common one: errors, writes, the seed strategy, a read while
        output is already queued."""
        if events & ERROR:
            try:
                err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            except OSError as exc:
                self._fail(conn, exc)
                return
            if err:
                self._close(conn, describe_error(OSError(err, os.strerror(err))))
                return
            if conn.eof:
                # A hang-up after the peer's FIN: nothing more can be delivered.
                self._close(conn, "hung up")
                return
            # Otherwise let a read find out what happened (EOF, data, or the error).
            events |= READ
        if events & WRITE and conn.queue and not self._flush(conn):
            return
        if events & READ and not conn.eof:
            try:
                if self._direct and not conn.queue:
                    n = conn.sock.recv_into(self._buffer)
                    data: bytes | memoryview = memoryview(self._buffer)[:n]
                else:
                    data = conn.sock.recv(RECV_SIZE)
                    n = len(data)
            except BlockingIOError:
                n = -1
            except OSError as exc:
                self._fail(conn, exc)
                return
            if n == 0:
                self._on_eof(conn)
                return
            if n > 0:
                conn.bytes_in += n
                conn.messages += 1
                sent = 0
                if self._direct and not conn.queue:
                    try:
                        sent = conn.sock.send(data)
                    except BlockingIOError:
                        pass
                    except OSError as exc:
                        self._fail(conn, exc)
                        return
                if sent != n:
                    chunk = data[sent:] if sent else data
                    conn.queue.append(bytes(chunk) if isinstance(chunk, memoryview) else chunk)
                    conn.queue_bytes += n - sent
        self._settle(conn)

    def _flush(self, conn: Connection) -> bool:
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
                self._fail(conn, exc)
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

    def _on_eof(self, conn: Connection) -> None:
        conn.eof = True
        self._settle(conn)

    def _settle(self, conn: Connection) -> None:
        """Bring a connection's state, fast-path flag and registered mask in line with its
        queue and the strategy."""
        queued = conn.queue_bytes
        conn.slow = bool(conn.queue) or not self._direct
        if conn.eof:
            if not conn.queue:
                self._close(conn, "closed by peer")
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
            if self._direct:
                want = read | (WRITE if conn.queue else NONE)
            else:
                want = WRITE if conn.queue else read
            conn.state = "paused" if conn.paused else "open"
        if want != conn.mask:
            conn.mask = want
            self.loop.update_handler(conn.fd, want)

    def _fail(self, conn: Connection, exc: OSError) -> None:
        self._close(conn, describe_error(exc))

    def _close(self, conn: Connection, reason: str) -> None:
        if self._connections.get(conn.fd) is not conn:
            return
        del self._connections[conn.fd]
        # Taken before the loop forgets it: removal accounts its mask up to now, which makes
        # the counters final.
        stat = self.loop.fd_stat(conn.fd) if self.on_close is not None else None
        self.loop.remove_handler(conn.fd)
        try:
            conn.sock.close()
        except OSError:
            pass
        conn.state = "closed"
        conn.close_reason = reason
        conn.queue.clear()
        conn.dropped += conn.queue_bytes
        conn.queue_bytes = 0
        self.closed_bytes_in += conn.bytes_in
        self.closed_bytes_out += conn.bytes_out
        conn.listener.connections -= 1
        self.closed_connections += 1
        self._rows = None
        if self.on_close is not None:
            try:
                self.on_close(conn, stat)
            except Exception:
                log.exception("the echo server's on_close hook failed")
        if self._full:
            self._resume_full()
        if self.on_event is not None:
            self._emit("close", f"{conn.peer} closed: {reason}", conn.fd, conn.id)

    def _emit(self, kind: str, text: str, fd: int, subject: int | None = None) -> None:
        on_event = self.on_event
        if on_event is None:
            return
        try:
            on_event(kind, text, fd, subject)
        except Exception:
            log.exception("the echo server's on_event hook failed")
