"""The load generator: ``clients`` checked connections to an echo server on one IOLoop.

Every byte that comes back is compared with the byte sent at that position (a slice of the
pattern, so checking is linear); a chunk that differs, or bytes beyond what was sent, count as
mismatches and are never hidden. Connections that fail are counted and replaced after a short
pause; the summary is a JSON-able dict of raw numbers.

Past 400 lines, and still one job: the connection state machine (connect, send, receive and
check, fail, retry) of every mode, which share their bookkeeping. Its per-event handler
(``_make_handler``) is one closure with the hot attributes bound to locals, because a lookup per
event costs what a Python client can least afford: one client core must outrun the server it
measures.
"""

from __future__ import annotations

import collections
import errno
import os
import socket
import time
from collections.abc import Callable
from typing import Any, Final

from loopmon.events import ERROR, NONE, READ, WRITE
from loopmon.histogram import Histogram
from loopmon.ioloop import IOLoop, PeriodicCallback
from loopmon.load.patterns import PATTERN_SIZE, expected_bytes, pattern, stream_start
from loopmon.netaddr import describe_error

__all__ = [
    "MODES",
    "LoadGenerator",
]

MODES: Final = ("rr", "flood", "slow", "idle", "churn")
# A message larger than this is a typo, not a workload: the client holds one per connection.
MAX_SIZE: Final = 64 << 20
DEFAULT_INFLIGHT: Final = 65536
DEFAULT_READ_RATE: Final = 65536
RECV_SIZE: Final = 65536
RETRY_S: Final = 0.1  # pause before replacing a failed connection
SLOW_TICK_S: Final = 0.05  # how often slow clients read their ration
PROGRESS_S: Final = 1.0


class Client:
    """One connection's stream: what was sent, what came back and was checked."""

    __slots__ = (
        "fd",
        "index",
        "limit",
        "marks",
        "mask",
        "received",
        "recv",
        "send",
        "sent",
        "slot",
        "sock",
        "start",
        "t_connect",
        "up",
    )

    def __init__(self, slot: int, index: int, sock: socket.socket) -> None:
        self.slot = slot  # which of the N clients this is
        self.index = index  # which connection overall: chooses the stream
        self.sock = sock
        self.fd = sock.fileno()
        self.recv = sock.recv
        self.send = sock.send
        self.start = stream_start(index)
        self.sent = 0  # stream offset sent so far
        self.received = 0  # stream offset received and checked
        self.limit = 0  # send up to this offset
        self.marks: collections.deque[tuple[int, float]] = collections.deque()
        self.mask = WRITE  # while connecting
        self.up = False  # connected
        self.t_connect = 0.0


class LoadGenerator:
    """Drives ``clients`` connections at ``address`` on ``loop`` in ``mode``."""

    def __init__(
        self,
        loop: IOLoop,
        family: int,
        address: Any,
        mode: str = "rr",
        clients: int = 10,
        size: int = 1024,
        duration: float = 5.0,
        inflight: int = 65536,
        read_rate: int = 65536,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        if clients < 1 or size < 1 or inflight < 1 or read_rate < 1 or duration <= 0:
            raise ValueError("clients, size, inflight and read rate must be >= 1, duration > 0")
        self.loop = loop
        self.family = family
        self.address = address
        self.mode = mode
        self.clients = clients
        self.size = size
        self.duration = duration
        self.inflight = inflight
        self.read_rate = read_rate
        self.on_progress = on_progress
        self.clock = clock
        self.running = False
        self.finished = False
        self.exit_reason = ""
        self.round_trips = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        # Received in a chunk that had a wrong byte: not echoed (MB/s counts the rest). Kept
        # apart so the fast path updates one counter.
        self.bytes_wrong = 0
        self.errors = 0
        self.mismatches = 0
        self.connect_failures = 0
        self.connections_made = 0
        self.held_at_end = 0  # connections open when the run ended, before they were closed
        self.reasons: collections.Counter[str] = collections.Counter()
        self.first_mismatch = ""
        self.latency = Histogram()
        self.t_start = 0.0
        self.t_end = 0.0
        self._pattern = pattern()
        self._by_fd: dict[int, Client] = {}
        self._next_index = 0
        self._failed_first = 0  # initial connects that failed before any succeeded
        self._timers: list[Any] = []
        self._slow_timer: PeriodicCallback | None = None
        self._progress_timer: PeriodicCallback | None = None
        self._last_progress = (0.0, 0, 0)
        self._handler = self._make_handler()

    # -- running --------------------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        return sum(1 for c in self._by_fd.values() if c.up)

    @property
    def elapsed(self) -> float:
        end = self.t_end if self.finished else self.clock()
        return max(end - self.t_start, 0.0) if self.t_start else 0.0

    def start(self) -> None:
        """Open the connections and arm the end of the run (call on the loop, or before
        ``loop.start()``)."""
        self.running = True
        self.t_start = self.clock()
        self._last_progress = (self.t_start, 0, 0)
        for slot in range(self.clients):
            self._connect(slot)
        if self.finished:
            return  # every connection was refused at once
        self._timers.append(self.loop.call_later(self.duration, self.finish, "duration"))
        if self.mode == "slow":
            self._slow_timer = PeriodicCallback(
                self._slow_read, SLOW_TICK_S * 1000, io_loop=self.loop
            )
            self._slow_timer.start()
        if self.on_progress is not None:
            self._progress_timer = PeriodicCallback(
                self._progress, PROGRESS_S * 1000, io_loop=self.loop
            )
            self._progress_timer.start()

    def finish(self, reason: str = "stopped") -> None:
        """End the run now: close every connection and stop the loop."""
        if self.finished:
            return
        self.running = False
        self.finished = True
        self.exit_reason = reason
        self.t_end = self.clock()
        self.held_at_end = self.open_connections
        for timer in (self._slow_timer, self._progress_timer):
            if timer is not None:
                timer.stop()
        for handle in self._timers:
            self.loop.remove_timeout(handle)
        self._timers.clear()
        for client in list(self._by_fd.values()):
            self._drop(client)
        self.loop.stop()

    def summary(self) -> dict[str, Any]:
        """The run's figures. A latency nothing measured (no round trip completed) is None,
        not a zero that reads as infinitely fast."""
        elapsed = self.elapsed
        timed = self.latency.total > 0

        def ms(seconds: float | None) -> float | None:
            return round(seconds * 1000, 3) if timed and seconds is not None else None

        return {
            "mode": self.mode,
            "clients": self.clients,
            "size": self.size,
            "duration_s": round(elapsed, 3),
            "round_trips": self.round_trips,
            "round_trips_per_s": round(self.round_trips / elapsed, 1) if elapsed else 0.0,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "mb_per_s": (
                round((self.bytes_received - self.bytes_wrong) / elapsed / 1e6, 3)
                if elapsed
                else 0.0
            ),
            "latency_p50_ms": ms(self.latency.quantile(0.5)),
            "latency_p99_ms": ms(self.latency.quantile(0.99)),
            "latency_max_ms": ms(self.latency.max_s),
            "connections_held": self.held_at_end if self.finished else self.open_connections,
            "errors": self.errors,
            "mismatches": self.mismatches,
            "connect_failures": self.connect_failures,
            "backend": self.loop.backend,
        }

    def _progress(self) -> None:
        now = self.clock()
        then, trips, received = self._last_progress
        span = now - then
        self._last_progress = (now, self.round_trips, self.bytes_received)
        assert self.on_progress is not None
        self.on_progress(
            {
                "elapsed_s": round(now - self.t_start, 3),
                "round_trips": self.round_trips,
                "round_trips_per_s": round((self.round_trips - trips) / span, 1) if span else 0,
                "mb_per_s": round((self.bytes_received - received) / span / 1e6, 3) if span else 0,
                "errors": self.errors,
                "mismatches": self.mismatches,
                "open_connections": self.open_connections,
            }
        )

    # -- connections ----------------------------------------------------------------------

    def _connect(self, slot: int) -> None:
        if not self.running:
            return
        index = self._next_index
        self._next_index += 1
        try:
            sock = socket.socket(self.family, socket.SOCK_STREAM)
        except OSError as exc:
            self._connect_failed(slot, describe_error(exc))
            return
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        err = sock.connect_ex(self.address)
        if err not in (0, errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
            sock.close()
            self._connect_failed(slot, describe_error(OSError(err, os.strerror(err))))
            return
        client = Client(slot, index, sock)
        client.t_connect = self.clock()
        try:
            self.loop.add_handler(client.fd, self._handler, WRITE)
        except (OSError, ValueError) as exc:
            sock.close()
            self._connect_failed(slot, describe_error(exc))
            return
        self._by_fd[client.fd] = client

    def _connect_failed(self, slot: int, reason: str) -> None:
        self.connect_failures += 1
        self.reasons[f"connect: {reason}"] += 1
        if self.connections_made == 0:
            self._failed_first += 1
            if self._failed_first >= self.clients:
                # Not one connection could be made: no point waiting out the duration.
                self.finish(f"cannot connect: {reason}")
                return
        self._retry(slot)

    def _retry(self, slot: int) -> None:
        if self.running:
            handle = self.loop.call_later(RETRY_S, self._connect, slot)
            self._timers.append(handle)
            if len(self._timers) > 4 * self.clients:
                self._timers = [t for t in self._timers if not t.fired and t.callback]

    def _connected(self, client: Client) -> None:
        err = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._drop(client)
            self._connect_failed(client.slot, describe_error(OSError(err, os.strerror(err))))
            return
        client.up = True
        self.connections_made += 1
        mode = self.mode
        if mode == "idle":
            self._set_mask(client, READ)
            return
        if mode == "slow":
            client.limit = 1 << 62  # as much as the kernel takes
        elif mode == "flood":
            client.limit = self.inflight
        else:
            client.limit = self.size
        self._set_mask(client, NONE if mode == "slow" else READ)
        self._send_more(client)

    def _set_mask(self, client: Client, mask: int) -> None:
        if mask != client.mask:
            client.mask = mask
            self.loop.update_handler(client.fd, mask)

    def _drop(self, client: Client) -> None:
        if self._by_fd.pop(client.fd, None) is not client:
            return
        self.loop.remove_handler(client.fd)
        client.sock.close()
        client.up = False

    def _fail(self, client: Client, reason: str) -> None:
        """A connection broke mid-run: count it, replace it."""
        if self.running:
            self.errors += 1
            self.reasons[reason] += 1
        self._drop(client)
        self._retry(client.slot)

    # -- the traffic ----------------------------------------------------------------------

    def _make_handler(self) -> Callable[[int, int], None]:  # noqa: PLR0915 - the hot path
        """The per-event handler. In rr mode a readable event that completes a message as
        expected (the common case) is handled here, inline: one recv, one compare, one send.
        Everything else goes through the general methods."""
        by_fd = self._by_fd
        readable = self._readable
        received_ = self._received
        send_more = self._send_more
        connected = self._connected
        fail = self._fail
        fast = self.mode == "rr" and self.size <= PATTERN_SIZE
        pat = self._pattern
        view = memoryview(pat)
        size = self.size
        clock = self.clock
        # The shared histogram's own record(), not an inlined copy of it: the call costs
        # ~60 ns of a round trip's ~10 us of client work, and one place holds the buckets.
        record = self.latency.record
        gen = self

        def on_event(fd: int, events: int) -> None:  # noqa: PLR0912 - per event, inline
            client = by_fd.get(fd)
            if client is None:
                return
            if fast and events == READ:
                try:
                    data = client.recv(RECV_SIZE)
                except BlockingIOError:
                    return
                except OSError as exc:
                    fail(client, describe_error(exc))
                    return
                n = len(data)
                received = client.received
                end = received + n
                pos = (client.start + received) % PATTERN_SIZE
                if not n or end > client.sent or pat[pos : pos + n] != data:
                    received_(client, data)  # EOF, or a mismatch to count
                    return
                client.received = end
                gen.bytes_received += n
                if end != client.limit:
                    return  # more of this message to come
                now = clock()
                record(now - client.marks.popleft()[1])
                gen.round_trips += 1
                if not gen.running:
                    return
                client.limit = end + size
                pos = (client.start + end) % PATTERN_SIZE
                try:
                    k = client.send(view[pos : pos + size])
                except OSError:
                    k = 0  # send_more tries again and handles it
                if k:
                    client.sent = end + k
                    gen.bytes_sent += k
                    client.marks.append((end + size, now))
                if k != size:
                    send_more(client)
                return
            if not client.up:
                connected(client)
                return
            if events & (READ | ERROR):
                readable(client)
                if by_fd.get(fd) is not client:
                    return
            if events & WRITE:
                send_more(client)

        return on_event

    def _send_more(self, client: Client) -> None:
        """Send from the stream up to ``client.limit``; WRITE stays registered while the
        kernel will not take more."""
        pat = self._pattern
        size = self.size
        marks = client.marks
        while client.sent < client.limit:
            old = client.sent
            pos = (client.start + old) % PATTERN_SIZE
            length = min(client.limit - old, PATTERN_SIZE)
            try:
                n = client.send(memoryview(pat)[pos : pos + length])
            except BlockingIOError:
                n = 0
            except OSError as exc:
                self._fail(client, describe_error(exc))
                return
            if n:
                new = client.sent = old + n
                self.bytes_sent += n
                first = -(-old // size)
                last = -(-new // size)
                if last > first:
                    t = client.t_connect if self.mode == "churn" else self.clock()
                    for k in range(first, last):
                        marks.append(((k + 1) * size, t))
            if n < length:
                self._set_mask(client, client.mask | WRITE)
                return
        if client.mask & WRITE:
            self._set_mask(client, client.mask & ~WRITE)

    def _readable(self, client: Client, budget: int = RECV_SIZE) -> int:
        """Read once (at most ``budget`` bytes) and check it. Returns bytes read, -1 if the
        connection went away."""
        try:
            data = client.recv(budget)
        except BlockingIOError:
            return 0
        except OSError as exc:
            self._fail(client, describe_error(exc))
            return -1
        return self._received(client, data)

    def _received(self, client: Client, data: bytes) -> int:  # noqa: PLR0912 - per read
        """Check and account what ``client`` just read; act on it as its mode says. Returns
        len(data), or -1 if the connection went away."""
        n = len(data)
        if not n:
            self._fail(client, "closed by server")
            return -1
        self.bytes_received += n
        received = client.received
        bad = False
        if received + n > client.sent:
            # Say where it first went wrong: a wrong byte among those that were sent, if any.
            extra = received + n - client.sent
            head = data[: n - extra]
            wrong = head and expected_bytes(client.index, received, len(head)) != head
            what = self._where(client, received, head) if wrong else f"{extra:,} bytes never sent"
            self._mismatch(client, received, what)
            bad = True
        else:
            pos = (client.start + received) % PATTERN_SIZE
            if n <= PATTERN_SIZE:
                bad = self._pattern[pos : pos + n] != data
            else:
                bad = expected_bytes(client.index, received, n) != data
            if bad:
                self._mismatch(client, received, self._where(client, received, data))
        if bad:
            self.bytes_wrong += n
        received = client.received = received + n
        marks = client.marks
        if marks and marks[0][0] <= received:
            now = self.clock()
            record = self.latency.record
            while marks and marks[0][0] <= received:
                sent_at = marks.popleft()[1]
                if bad:
                    continue  # completed by wrong bytes: a mismatch, not a round trip
                record(now - sent_at)
                self.round_trips += 1
        if not self.running:
            return n
        mode = self.mode
        if mode == "rr":
            if received >= client.limit:
                client.limit = received + self.size
                self._send_more(client)
        elif mode == "flood":
            client.limit = received + self.inflight
            if not client.mask & WRITE:
                self._send_more(client)
        elif mode == "churn" and received >= client.limit:
            self._drop(client)
            self._connect(client.slot)
        return n

    def _where(self, client: Client, offset: int, data: bytes) -> str:
        want = expected_bytes(client.index, offset, len(data))
        at = next((i for i, (a, b) in enumerate(zip(want, data, strict=True)) if a != b), 0)
        return f"byte {offset + at}: expected 0x{want[at]:02x}, got 0x{data[at]:02x}"

    def _mismatch(self, client: Client, offset: int, what: str) -> None:
        self.mismatches += 1
        if not self.first_mismatch:
            self.first_mismatch = f"connection {client.index} (client {client.slot}): {what}"

    def _slow_read(self) -> None:
        """Each slow client reads its ration for this tick."""
        ration = max(int(self.read_rate * SLOW_TICK_S), 1)
        for client in list(self._by_fd.values()):
            if not client.up:
                continue
            left = ration
            while left > 0 and self._by_fd.get(client.fd) is client:
                n = self._readable(client, min(left, RECV_SIZE))
                if n <= 0:
                    break
                left -= n
