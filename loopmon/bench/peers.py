"""The servers ``loopmon bench`` measures loopmon against.

Each peer is an echo server that a user might pick instead of loopmon, written the way its own
documentation teaches, run in its own process:

    python -m loopmon.bench.children NAME [--host H] [--port P] [--backlog B]

prints ``listening on HOST:PORT (peer NAME)`` once it accepts connections and runs until SIGTERM
or SIGINT. Every peer sets TCP_NODELAY on its connections (asyncio and uvloop do it by
themselves) and listens with the same backlog, so none is helped or hurt by its defaults, and
starts with its allocator in a long-running server's state (``settle_allocator``).

- ``asyncio-protocol``: ``asyncio.Protocol``, ``transport.write(data)`` in ``data_received``:
  the baseline every ratio is taken against.
- ``asyncio-streams``: ``asyncio.start_server`` with ``read`` / ``write`` / ``await drain()``.
- ``bare-epoll``: the pure-Python limit, one page: level-triggered epoll, ``recv`` then ``send``
  straight back, WRITE registered only while the kernel's buffer is full. No instrumentation,
  no queue objects, no callbacks: the reference for "server CPU per round trip".
- ``uvloop``: the asyncio Protocol server on uvloop (only when uvloop is installed).
- ``tornado``: Tornado's ``TCPServer`` with ``read_bytes(partial=True)`` / ``await write``
  (only when Tornado is installed).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import select
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from loopmon.fdlimit import raise_fd_limit

BACKLOG = 1024  # the same as loopmon.echo.listener.BACKLOG (tests check it)


_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    description: str
    requires: str | None  # an optional module it needs; None: the standard library suffices


PEERS: tuple[Peer, ...] = (
    Peer("asyncio-protocol", "asyncio Protocol echo (the baseline)", None),
    Peer("asyncio-streams", "asyncio streams echo (read/write/drain)", None),
    Peer("bare-epoll", "bare pure-Python epoll loop (the reference)", None),
    Peer("uvloop", "asyncio Protocol echo on uvloop", "uvloop"),
    Peer("tornado", "Tornado TCPServer / IOStream echo", "tornado"),
)


PEER_NAMES = tuple(p.name for p in PEERS)


def installed(module: str) -> bool:
    """True when ``module`` can be imported here (found, not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def discover(
    peers: tuple[Peer, ...] = PEERS, has: Callable[[str], bool] = installed
) -> tuple[list[str], list[str]]:
    """(names of the peers that can run here, a note for each that cannot)."""
    names: list[str] = []
    notes: list[str] = []
    for peer in peers:
        if peer.requires is not None and not has(peer.requires):
            notes.append(f"{peer.name}: skipped, {peer.requires} is not installed")
            continue
        if peer.name == "bare-epoll" and not hasattr(select, "epoll"):
            notes.append(f"{peer.name}: skipped, epoll does not exist on {sys.platform}")
            continue
        names.append(peer.name)
    return names, notes


def _nodelay(sock: socket.socket) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _listen_socket(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def _announce(name: str, sock: socket.socket) -> None:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"listening on {shown}:{port} (peer {name})", flush=True)


def serve_bare_epoll(sock: socket.socket) -> None:  # noqa: PLR0912, PLR0915
    """The pure-Python reference: one loop, one page, every event handled inline. A helper
    per event would be a call per event, which is what the reference exists to leave out:
    it stays one function."""
    epoll = select.epoll()
    lfd = sock.fileno()
    epoll.register(lfd, select.EPOLLIN)
    conns: dict[int, socket.socket] = {}
    pending: dict[int, memoryview] = {}
    IN, OUT = select.EPOLLIN, select.EPOLLOUT  # noqa: N806 (the kernel's names)

    def close(fd: int) -> None:
        epoll.unregister(fd)
        pending.pop(fd, None)
        conns.pop(fd).close()

    while True:
        for fd, _events in epoll.poll():
            if fd == lfd:
                while True:
                    try:
                        conn, _ = sock.accept()
                    except BlockingIOError:
                        break
                    except OSError:  # EMFILE and friends: try again on the next event
                        break
                    conn.setblocking(False)
                    _nodelay(conn)
                    conns[conn.fileno()] = conn
                    epoll.register(conn.fileno(), IN)
                continue
            conn = conns[fd]
            if fd in pending:  # registered for OUT: the kernel has room again
                try:
                    n = conn.send(pending[fd])
                except BlockingIOError:
                    continue
                except OSError:
                    close(fd)
                    continue
                rest = pending[fd][n:]
                if rest:
                    pending[fd] = rest
                else:
                    del pending[fd]
                    epoll.modify(fd, IN)
                continue
            try:
                data = conn.recv(_CHUNK)
            except BlockingIOError:
                continue
            except OSError:
                close(fd)
                continue
            if not data:
                close(fd)
                continue
            try:
                n = conn.send(data)
            except BlockingIOError:
                n = 0
            except OSError:
                close(fd)
                continue
            if n < len(data):
                pending[fd] = memoryview(data)[n:]
                epoll.modify(fd, OUT)


class EchoProtocol(asyncio.Protocol):
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        return False  # close once what was written is flushed


async def _echo_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _serve_asyncio(name: str, sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    server: asyncio.Server
    if name == "asyncio-streams":
        server = await asyncio.start_server(_echo_stream, sock=sock, backlog=BACKLOG)
    else:
        server = await loop.create_server(EchoProtocol, sock=sock, backlog=BACKLOG)
    _announce(name, sock)
    async with server:
        await server.serve_forever()


def serve_tornado(sock: socket.socket) -> None:
    tcpserver = importlib.import_module("tornado.tcpserver")
    iostream = importlib.import_module("tornado.iostream")
    ioloop = importlib.import_module("tornado.ioloop")

    async def handle_stream(stream: Any, address: Any) -> None:
        stream.set_nodelay(True)
        try:
            while True:
                data = await stream.read_bytes(_CHUNK, partial=True)
                await stream.write(data)
        except iostream.StreamClosedError:
            pass

    server = tcpserver.TCPServer()
    server.handle_stream = handle_stream
    server.add_sockets([sock])
    _announce("tornado", sock)
    ioloop.IOLoop.current().start()


def settle_allocator() -> None:
    """Put the process's malloc where a long-running server's is.

    glibc serves a block above its mmap threshold (128 KiB at start) with its own mmap(), and
    raises the threshold to the size of such a block when one is freed. asyncio reads with
    ``recv(256 KiB)`` and CPython shrinks the result in place, which for an mmapped block is an
    mremap() to one page, so the block freed is small and the threshold never moves: every read
    costs mmap + a page fault + mremap + munmap, and the server 3-4x the CPU per round trip of
    the same server after its first full 256 KiB read, when the threshold has moved and reads
    come from the heap. Which of the two states a bench met depended on what ran before (a
    64 KiB workload can move it); freeing one large block at start puts every peer in the
    steady state, the one a server that has run for a while is in. Peers that never allocate
    that much per read are unaffected."""
    bytes(1 << 20)  # allocated with mmap, freed with munmap: the threshold becomes 1 MiB


def serve(name: str, host: str, port: int, backlog: int) -> int:
    if name not in PEER_NAMES:
        print(f"unknown peer {name!r}; peers: {', '.join(PEER_NAMES)}", file=sys.stderr)
        return 2
    available, notes = discover()
    if name not in available:
        print(next(n for n in notes if n.startswith(name + ":")), file=sys.stderr)
        return 3
    raise_fd_limit()
    settle_allocator()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        sock = _listen_socket(host, port, backlog)
    except OSError as exc:
        print(f"cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        if name == "bare-epoll":
            _announce(name, sock)
            serve_bare_epoll(sock)
        elif name == "tornado":
            serve_tornado(sock)
        elif name == "uvloop":
            uvloop = importlib.import_module("uvloop")
            loop = uvloop.new_event_loop()
            asyncio.set_event_loop(loop)
            loop.run_until_complete(_serve_asyncio(name, sock))
        else:
            asyncio.run(_serve_asyncio(name, sock))
    except KeyboardInterrupt:
        pass
    return 0
