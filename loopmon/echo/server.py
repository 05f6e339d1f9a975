"""The echo server on an IOLoop: listeners started and stopped at run time, connections
accepted in batches and echoed, each closed with its reason recorded.

Everything here runs on the loop thread; nothing is locked. The per-fd mask, time in each mask
and readiness counts are the loop's own accounting (``IOLoop.fd_stat``), not repeated here.
Under a poller that cannot watch fds from some number up (select's FD_SETSIZE), a listener
pauses "full" short of it, so clients wait in the backlog instead of being accepted and dropped.

Past 400 lines and still one job: the server's registry of listeners and connections, their
accepting (with its three ways to pause) and closing. The sockets and the echo itself live
beside it (``listener``, ``connection``, ``echoing``).
"""

from __future__ import annotations

import collections
import errno
import itertools
import logging
import socket
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Final

from loopmon.echo.connection import Connection
from loopmon.echo.echoing import Echo
from loopmon.echo.listener import FULL_STATE, Listener, ListenerError, bind, next_fd
from loopmon.events import READ
from loopmon.ioloop import IOLoop
from loopmon.loopstats import FdStat
from loopmon.netaddr import describe_error, format_address, is_loopback
from loopmon.snapshot import ListenerRow

log = logging.getLogger("loopmon")

ACCEPT_BATCH: Final = 64  # accepts per readiness event, so one busy listener cannot hog a pass
ACCEPT_BACKOFF_S: Final = 0.1  # pause after EMFILE/ENFILE before accepting again
KEEP_STOPPED: Final = 32  # stopped listeners still shown in listener_rows()
# Under a poller that cannot watch fds from some number up (select's FD_SETSIZE), accepting
# stops this many fds short of it: the loop, its consumers and the program keep some for
# themselves, and a connection accepted past the limit could only be closed at once.
FD_RESERVE: Final = 16
FULL_RETRY_S: Final = 1.0  # a full listener looks again this often, and whenever one closes
NOTE_EVERY: Final = 1000  # a repeated refusal reaches the event log on its 1st, then every Nth
# accept() failures that mean "out of descriptors or memory": back off rather than spin.
_RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

# (kind, text, fd or -1, the id of the listener or connection it is about, or None)
OnEvent = Callable[[str, str, int, "int | None"], None]
# (the connection just closed, its loop counters as of the close): for its final figures
OnClose = Callable[["Connection", "FdStat | None"], None]


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
        if max_connections < 0:
            raise ValueError("max_connections must be >= 0")
        self.loop = loop
        self._echo = Echo(loop, strategy, high_water, low_water, self._close)
        self.max_connections = max_connections
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
        self._by_id: dict[int, Connection] = {}
        self._rows: tuple[ListenerRow, ...] | None = None
        self._on_connection = self._echo.handler()
        fd_limit = getattr(loop, "fd_limit", None)
        # Accept only while the next fd is below this (None: no limit to keep to).
        self._accept_below = None if fd_limit is None else fd_limit - FD_RESERVE
        self._full: set[Listener] = set()

    @property
    def strategy(self) -> str:
        return self._echo.strategy

    @property
    def high_water(self) -> int:
        return self._echo.high_water

    @high_water.setter
    def high_water(self, value: int) -> None:
        self._echo.high_water = value

    @property
    def low_water(self) -> int:
        return self._echo.low_water

    @low_water.setter
    def low_water(self, value: int) -> None:
        self._echo.low_water = value

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
        try:
            sock = bind(host, port)
        except ListenerError as failed:
            self._emit("listener_failed", str(failed), -1)
            raise
        try:
            listener = Listener(next(self._ids), sock)
            self.loop.add_handler(listener.fd, self._on_accept, READ)
        except (OSError, ValueError) as exc:
            sock.close()
            err = exc.errno if isinstance(exc, OSError) else errno.EINVAL
            error = ListenerError(host, port, err, describe_error(exc))
            self._emit("listener_failed", str(error), -1)
            raise error from None
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
        """Close the connection on ``fd`` now (queued output is dropped). ``KeyError`` if none
        is open on it. A command from elsewhere names the connection's id instead
        (``close_connection_id``): by the time it arrives, the fd may be another's."""
        conn = self._connections.get(fd)
        if conn is None:
            raise KeyError(f"no connection on fd {fd}")
        self._close(conn, reason)

    def close_connection_id(self, conn_id: int, reason: str = "closed by user") -> None:
        """Close the connection with id ``conn_id`` now. ``KeyError`` if it is not open."""
        conn = self._by_id.get(conn_id)
        if conn is None:
            raise KeyError(f"no open connection with id {conn_id}")
        self._close(conn, reason)

    def close_all(self, reason: str = "server closing") -> None:
        """Stop every listener and close every connection."""
        for listener_id in list(self._listeners):
            self.stop_listener(listener_id, close_connections=False)
        for conn in list(self._connections.values()):
            self._close(conn, reason)

    def set_strategy(self, name: str) -> None:
        """Switch every connection to strategy ``name`` ("seed" or "direct") now."""
        self._echo.set_strategy(name)
        settle = self._echo.settle
        for conn in list(self._connections.values()):
            settle(conn)

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
        """Whether the next accept would get an fd the poller can watch; if not, the listener
        pauses as full: clients wait in the backlog instead of being accepted and dropped,
        until a connection closes."""
        if next_fd(listener.fd) < below:
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
        listener.pause(self.loop, FULL_RETRY_S, self._resume_accepting)

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
        listener.pause(self.loop, ACCEPT_BACKOFF_S, self._resume_accepting)

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
        conn.slow = not self._echo.direct
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
        self._by_id[conn.id] = conn
        listener.accepted += 1
        listener.connections += 1
        self._rows = None
        if self.on_event is not None:
            self._emit("connect", f"{peer} connected to {listener.address}", conn.fd, conn.id)

    def _close(self, conn: Connection, reason: str) -> None:
        if self._connections.get(conn.fd) is not conn:
            return
        del self._connections[conn.fd]
        del self._by_id[conn.id]
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
