"""Shared pieces for the echo server's tests: a server on a loop thread, and blocking clients.

The loop runs on a thread of its own, as in the window; the test thread talks to the server only
through ``Harness.call`` (which runs a function on the loop thread and waits for its result) and
through sockets, which it uses blocking, with timeouts, like any client would.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from loopmon import pollers
from loopmon.echo import EchoServer
from loopmon.ioloop import IOLoop

BACKENDS = pollers.available()
STRATEGIES = ("direct", "seed")
TIMEOUT = 10.0

_T = TypeVar("_T")


class Harness:
    """An IOLoop with an EchoServer, running on its own thread."""

    def __init__(self, backend: str, **options: Any) -> None:
        self.events: list[tuple[str, str, int]] = []
        self.loop = IOLoop(backend=backend, make_current=False)
        self.server = EchoServer(self.loop, on_event=self._record, **options)
        self._thread = threading.Thread(target=self.loop.start, name=f"echo-{backend}")
        self._thread.start()

    def _record(self, kind: str, text: str, fd: int, subject: int | None = None) -> None:
        self.events.append((kind, text, fd))

    def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(*args)`` on the loop thread; return or raise what it did."""
        future: Future[_T] = Future()

        def run() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.add_callback(run)
        return future.result(TIMEOUT)

    def listen(self, host: str = "127.0.0.1", port: int = 0) -> int:
        return self.call(self.server.start_listener, host, port).port

    def wait_for(self, predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        """Wait until ``predicate()`` (evaluated on the loop thread) holds."""
        deadline = time.monotonic() + timeout
        while not self.call(predicate):
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            time.sleep(0.002)

    def connection_count(self) -> int:
        return self.call(lambda: len(self.server.connections))

    def close(self) -> None:
        if self._thread.is_alive():
            self.call(self.server.close_all)
            self.loop.add_callback(self.loop.stop)
            self._thread.join(TIMEOUT)
        assert not self._thread.is_alive()
        self.loop.close()


def connect(port: int, host: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection((host, port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise AssertionError(f"EOF with {n} bytes still expected")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv_until_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a RST, not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic bytes that differ at every offset often enough to catch reordering."""
    import random

    return random.Random(seed).randbytes(size)


def send_all_then_eof(sock: socket.socket, message: bytes) -> bytes:
    """Send ``message`` and half-close while another thread reads: what came back before EOF
    (reading at the same time, so an echo bigger than the socket buffers cannot deadlock)."""
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(recv_until_eof(sock)))
    reader.start()
    sock.sendall(message)
    sock.shutdown(socket.SHUT_WR)
    reader.join(TIMEOUT)
    return received[0] if received else b""
