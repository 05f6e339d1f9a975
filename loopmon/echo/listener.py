"""A listening socket of the echo server: binding it, and what it has accepted or refused.

A listener that cannot be started is one ``ListenerError`` whatever the cause (a port in use, a
bad host, a port out of range), naming the address and the OS's reason in one line.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from typing import Any, Final

from loopmon.events import NONE
from loopmon.ioloop import IOLoop
from loopmon.netaddr import describe_error, format_address
from loopmon.snapshot import ListenerRow
from loopmon.timers import Timeout

BACKLOG: Final = 1024  # the kernel caps it at net.core.somaxconn
FULL_STATE: Final = "full: select's FD_SETSIZE"


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


def next_fd(fd: int) -> int:
    """The number the next new fd will get: the kernel hands out the lowest free one, which a
    dup shows (two syscalls; used only under a poller with an fd limit). -1 when no fd is
    free at all: accept() then says so itself, and backs off."""
    try:
        probe = os.dup(fd)
    except OSError:
        return -1
    os.close(probe)
    return probe


def bind(host: str, port: int) -> socket.socket:
    """A non-blocking socket listening on ``host:port`` (port 0: an ephemeral one), or
    ``ListenerError``, leaving nothing open behind."""
    if not 0 <= port <= 65535:
        raise ListenerError(host, port, errno.EINVAL, f"port out of range 0-65535: {port}")
    try:
        infos = socket.getaddrinfo(
            host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenerError(host, port, exc.errno, f"unknown host ({exc.strerror})") from None
    except UnicodeError as exc:
        raise ListenerError(host, port, errno.EINVAL, f"bad host name ({exc})") from None
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
    except (OSError, ValueError) as exc:
        if sock is not None:
            sock.close()
        err = exc.errno if isinstance(exc, OSError) else errno.EINVAL
        raise ListenerError(host, port, err, describe_error(exc)) from None
    return sock


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

    def pause(self, loop: IOLoop, seconds: float, resume: Callable[[Listener], None]) -> None:
        """Stop watching for ``seconds``, then ``resume(self)`` (which watches again)."""
        loop.update_handler(self.fd, NONE)
        self._backoff = loop.call_later(seconds, resume, self)

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
