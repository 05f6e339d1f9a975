"""A reactor driven by the test (select on real sockets, a clock the test moves) and a raw
consumer that speaks the protocol frame by frame."""

from __future__ import annotations

import select
import socket
from collections.abc import Callable

from loopmon.snapshot import ConnectionRow, ListenerRow, ProducerInfo, Snapshot
from loopmon.wire import ConsumerHello, encode_message
from loopmon.wire.frames import TO_CONSUMER_MAX, Frame, FrameReader

TOKEN = bytes(range(32))
INFO = ProducerInfo(
    "serve", "loopmon serve", 1, "epoll", "sess-1", 0.0,
    commands=("start_listener", "stop_listener", "close_connection"),
)  # fmt: skip


class _Timer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class PumpReactor:
    def __init__(self) -> None:
        self.now = 0.0
        self.readers: dict[int, Callable[[], None]] = {}
        self.writers: dict[int, Callable[[], None]] = {}
        self.timers: list[_Timer] = []

    def time(self) -> float:
        return self.now

    def add_reader(self, fd: int, cb: Callable[[], None]) -> None:
        self.readers[fd] = cb

    def remove_reader(self, fd: int) -> None:
        self.readers.pop(fd, None)

    def add_writer(self, fd: int, cb: Callable[[], None]) -> None:
        self.writers[fd] = cb

    def remove_writer(self, fd: int) -> None:
        self.writers.pop(fd, None)

    def call_later(self, delay: float, cb: Callable[[], None]) -> _Timer:
        timer = _Timer(self.now + delay, cb)
        self.timers.append(timer)
        return timer

    def pump(self, rounds: int = 3, timeout: float = 0.01) -> None:
        for _ in range(rounds):
            r, w, _ = select.select(list(self.readers), list(self.writers), [], timeout)
            for fd in r:
                cb = self.readers.get(fd)
                if cb is not None:
                    cb()
            for fd in w:
                cb = self.writers.get(fd)
                if cb is not None:
                    cb()
            due = [t for t in self.timers if t.when <= self.now and not t.cancelled]
            self.timers = [t for t in self.timers if t.when > self.now and not t.cancelled]
            for t in due:
                t.callback()

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + 0.5)
            self.pump(1, 0)


class RawConsumer:
    def __init__(self, address: tuple[str, int], rcvbuf: int = 0) -> None:
        """``rcvbuf``: a receive buffer set before connecting, so the window it offers is
        small from the start (a consumer that stops reading fills it at once)."""
        if rcvbuf:
            self.sock = socket.socket()
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(5)
            self.sock.connect(address)
        else:
            self.sock = socket.create_connection(address, timeout=5)
        self.sock.setblocking(False)
        self.reader = FrameReader(TO_CONSUMER_MAX)
        self.frames: list[Frame] = []
        self.eof = False

    def send(self, data: bytes) -> None:
        self.sock.setblocking(True)
        self.sock.sendall(data)
        self.sock.setblocking(False)

    def hello(self, token: bytes = TOKEN) -> None:
        self.send(encode_message(ConsumerHello(token, client="test")))

    def read(self, reactor: PumpReactor, count: int, rounds: int = 200) -> list[Frame]:
        """Pump the publisher and read until ``count`` frames (or EOF, or give up)."""
        for _ in range(rounds):
            if len(self.frames) >= count or self.eof:
                break
            reactor.pump(1, 0.005)
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                self.eof = True
                break
            if not data:
                self.eof = True
                break
            self.frames += self.reader.feed(data)
        taken, self.frames = self.frames[:count], self.frames[count:]
        return taken

    def close(self) -> None:
        self.sock.close()


def row(i: int, **changes: object) -> ConnectionRow:
    base = ConnectionRow(
        fd=i + 5, peer=f"127.0.0.1:{40000 + i}", listener_id=1, state="open", mask=0x19,
        read_fraction=1.0, write_fraction=0.0, id=i, local="127.0.0.1:10000",
    )  # fmt: skip
    return base._replace(**changes)  # type: ignore[arg-type]


def snapshot(seq: int, n: int = 3, session: str = "sess-1", bump: int = 0) -> Snapshot:
    return Snapshot(
        seq, seq / 25, "epoll", "direct", session=session,
        listeners=(ListenerRow(1, "127.0.0.1", 10000, "listening"),),
        connections=tuple(row(i, bytes_in=bump * i) for i in range(1, n + 1)),
    )  # fmt: skip
