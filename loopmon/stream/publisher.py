"""The telemetry publisher: a listening socket on the producer's own loop (no thread) that
streams snapshots to up to ``max_consumers`` consumers and takes their commands.

Each consumer must send a valid hello (the run's token, a version spoken here) within
``hello_timeout``; it then gets the producer's hello, the latest keyframe and a delta per
``publish``. The producer never waits for a consumer and never buffers for one beyond a fixed
bound: a consumer holds at most one snapshot frame (a reference to bytes shared by every
consumer, not a copy) and ``MAX_CONTROL_BYTES`` of replies. A consumer whose socket is still
full at the next ``publish`` loses that snapshot (counted); once its socket drains it is told
how many it lost and gets the latest keyframe. The closes of the snapshots it lost are not lost
with them (shared/DESIGN.md: each close is reported once): the consumer keeps references to
them, the newest ``MAX_MISSED_CLOSES`` (the records are the snapshots' own, shared by every
consumer that lags), and its catch-up keyframe lists them in place of the keyframe's own
(``wire.closes.with_closes``: the shared keyframe's bytes around this consumer's closes
section), those not kept added to its ``closed_omitted``. One that accepts nothing for
``read_timeout`` while data waits, sends garbage, an oversized frame or a hello of another
version is dropped, with the reason logged.

Past 400 lines and still one job: the consumers' lifecycle on one socket each (hello,
streaming, commands, dropping), whose parts share the per-consumer state and its bounds.
"""

from __future__ import annotations

import collections
import errno
import functools
import logging
import socket
from collections.abc import Callable
from typing import Any, Final

from loopmon.mailbox import MAX_CARRIED_CLOSES
from loopmon.netaddr import describe_error, format_address
from loopmon.snapshot import ClosedConnection, ListenerRow, ProducerInfo, Snapshot
from loopmon.stream.reactor import Reactor, Timer
from loopmon.wire import messages as msgs
from loopmon.wire.closes import with_closes
from loopmon.wire.codec import WireError
from loopmon.wire.frames import (
    COMMAND,
    CONSUMER_HELLO,
    FROM_CONSUMER,
    GOODBYE,
    TO_PRODUCER_MAX,
    Frame,
    FrameReader,
)
from loopmon.wire.snapshots import Encoded, SnapshotEncoder

log = logging.getLogger("loopmon.stream")

MAX_CONSUMERS: Final = 32
HELLO_TIMEOUT_S: Final = 5.0
READ_TIMEOUT_S: Final = 10.0
HOUSEKEEPING_S: Final = 0.5
MAX_CONTROL_BYTES: Final = 256 << 10  # replies and notices queued for one consumer
RECV_SIZE: Final = 65536
ACCEPT_BATCH: Final = 16
LOG_EVERY: Final = 100  # a repeated refusal is logged on its 1st, then every Nth
# Closes of lost snapshots kept for one consumer (the newest; the rest are counted), and so
# listed at most in its catch-up keyframe: the bound the window's mailbox carries over a
# reader that falls behind, so the two ends of the path agree. Every lagging consumer's list
# is a suffix of one sequence (the closes since it last got a frame, newest kept), so their
# records are shared: 10,000 held at most (~0.7 KB each, measured: ~7 MB), 8 bytes a
# reference per consumer, and a consumer's encoded list while its keyframe waits (~55 bytes
# a close: ~0.55 MB). docs/protocol.md and the README state the bound.
MAX_MISSED_CLOSES: Final = MAX_CARRIED_CLOSES

# (the call) -> its result (a ListenerRow or None); raises to fail the command.
Commands = Callable[[msgs.Call], "ListenerRow | None"]


class UnsupportedCommand(Exception):
    """A command the producer's hello does not list."""


class _Consumer:
    __slots__ = (
        "address",
        "behind",
        "connected_at",
        "control_bytes",
        "fd",
        "lost",
        "lost_total",
        "missed",
        "missed_omitted",
        "missed_session",
        "out",
        "progress_at",
        "reader",
        "sock",
        "state",
        "writing",
    )

    def __init__(self, sock: socket.socket, address: str, now: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.address = address
        self.state = "hello"  # then "live"
        self.reader = FrameReader(TO_PRODUCER_MAX, FROM_CONSUMER)
        self.out: collections.deque[memoryview] = collections.deque()
        self.control_bytes = 0
        self.connected_at = now
        self.progress_at = now  # the last time it took bytes, or had nothing waiting
        self.lost = 0  # snapshots skipped since the last it got
        self.lost_total = 0
        self.behind = False  # it lost one: a keyframe is due once it drains
        # The closes of the snapshots it lost (the newest MAX_MISSED_CLOSES), those beyond
        # counted, and their session: listed in its catch-up keyframe.
        self.missed: collections.deque[ClosedConnection] = collections.deque(
            maxlen=MAX_MISSED_CLOSES
        )
        self.missed_omitted = 0
        self.missed_session = ""
        self.writing = False


class Publisher:
    def __init__(
        self,
        reactor: Reactor,
        info: ProducerInfo,
        token: bytes,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        sock: socket.socket | None = None,
        commands: Commands | None = None,
        max_consumers: int = MAX_CONSUMERS,
        hello_timeout: float = HELLO_TIMEOUT_S,
        read_timeout: float = READ_TIMEOUT_S,
        opened: Callable[[socket.socket], None] | None = None,
        closing: Callable[[socket.socket], None] | None = None,
    ) -> None:
        """``sock`` is a bound listening socket to use instead of binding ``host:port``.
        ``info.commands`` says which commands ``commands`` takes; the rest are refused.
        ``opened`` and ``closing`` are told of each consumer's socket as it is accepted and
        before it is closed (``loopmon run``: the instrument leaves loopmon's sockets out)."""
        if max_consumers < 0:
            raise ValueError("max_consumers must be >= 0")
        self.reactor = reactor
        self.info = info
        self._token = token
        self._host = host
        self._port = port
        self._sock = sock
        self.commands = commands
        self.max_consumers = max_consumers
        self.hello_timeout = hello_timeout
        self.read_timeout = read_timeout
        self._opened = opened
        self._closing = closing
        self.encoder = SnapshotEncoder()
        self.latest: Encoded | None = None
        # Called with every Encoded the encoder makes, in order (a recorder's
        # ``record_encoded``): with a tap, every snapshot is encoded, consumers or none.
        self.taps: list[Callable[[Encoded], None]] = []
        self._primed = True  # the encoder's state is that of ``latest``
        self._consumers: dict[int, _Consumer] = {}
        self._timer: Timer | None = None
        self._closed = False
        # Counters, for logs and tests.
        self.accepted = 0
        self.refused = 0
        self.dropped: collections.Counter[str] = collections.Counter()
        self.frames_lost = 0
        self.published = 0
        self.closes_not_kept = 0  # closes of lost snapshots past a consumer's MAX_MISSED_CLOSES

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Listen (binding ``host:port`` unless given a socket); raises OSError if it cannot."""
        if self._sock is None:
            family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self._host, self._port))
                sock.listen(128)
            except OSError:
                sock.close()
                raise
            self._sock = sock
        self._sock.setblocking(False)
        self.reactor.add_reader(self._sock.fileno(), self._accept)
        self._timer = self.reactor.call_later(HOUSEKEEPING_S, self._housekeeping)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) it listens on (the real port when asked for 0)."""
        if self._sock is None:
            raise RuntimeError("the publisher is not started")
        name = self._sock.getsockname()
        return str(name[0]), int(name[1])

    @property
    def address_text(self) -> str:
        return format_address(*self.address)

    @property
    def consumers(self) -> int:
        return len(self._consumers)

    def lost_by_consumer(self) -> dict[str, int]:
        return {c.address: c.lost_total for c in self._consumers.values()}

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def sending(self) -> bool:
        """Some consumer has frames queued that its socket has not taken yet."""
        return any(c.out for c in self._consumers.values())

    def close(self, reason: str = "the producer is stopping", *, detach: bool = True) -> None:
        """Say goodbye to every consumer (best effort) and close everything. ``detach=False``:
        the loop is gone (stopped and closed), so leave its handlers alone."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None and detach:
            self._timer.cancel()
        self._timer = None
        goodbye = msgs.encode_message(msgs.Goodbye(reason))
        for consumer in list(self._consumers.values()):
            if consumer.state == "live":
                self._send_now(consumer, goodbye)
            self._drop(consumer, "", log_it=False, detach=detach)
        if self._sock is not None:
            if detach:
                self.reactor.remove_reader(self._sock.fileno())
            self._sock.close()

    # -- publishing -----------------------------------------------------------------------

    def publish(self, snapshot: Snapshot) -> None:
        """Send ``snapshot`` to every consumer (a delta, or a keyframe to those that need
        one: built once, however many). Never blocks, never raises for a consumer's sake."""
        if self._closed:
            return
        self.published += 1
        if not self.taps and not any(c.state == "live" for c in self._consumers.values()):
            # No one to send to: keep the snapshot, encode nothing (its keyframe is built if
            # someone attaches before the next one).
            self.latest = Encoded(snapshot, None)
            self._primed = False
            return
        if not self._primed:
            # A tap came while no one was attached: the encoder's state is stale.
            self.encoder.reset()
            self._primed = True
        try:
            encoded = self.encoder.encode(snapshot)
        except WireError as exc:
            log.error("telemetry: cannot encode snapshot %d: %s", snapshot.seq, exc)
            return
        self.latest = encoded
        for tap in self.taps:
            tap(encoded)
        for consumer in list(self._consumers.values()):
            if consumer.state != "live":
                continue
            if consumer.out or consumer.behind:
                # Its socket has not taken the last frame yet: this one is lost to it.
                consumer.lost += 1
                consumer.lost_total += 1
                self.frames_lost += 1
                consumer.behind = True
                if snapshot.closed or snapshot.closed_omitted:
                    self._keep_closes(consumer, snapshot)
                continue
            frame = encoded.delta if encoded.delta is not None else encoded.keyframe()
            self._queue(consumer, frame)

    def _keep_closes(self, consumer: _Consumer, snapshot: Snapshot) -> None:
        """``snapshot`` is lost to ``consumer``: keep its closes for the catch-up keyframe."""
        missed = consumer.missed
        if snapshot.session != consumer.missed_session:
            if missed or consumer.missed_omitted:
                # Ids of another session mean nothing in this one's keyframe.
                log.info(
                    "telemetry: consumer %s: %d closes of session %s not sent (a new session)",
                    consumer.address,
                    len(missed) + consumer.missed_omitted,
                    consumer.missed_session,
                )
                missed.clear()
                consumer.missed_omitted = 0
            consumer.missed_session = snapshot.session
        closed = snapshot.closed
        # The deque keeps the newest MAX_MISSED_CLOSES by itself; count what it pushes out.
        over = len(missed) + len(closed) - MAX_MISSED_CLOSES
        if over > 0:
            consumer.missed_omitted += over
            self.closes_not_kept += over
        missed.extend(closed)
        consumer.missed_omitted += snapshot.closed_omitted

    def _catch_up(self, consumer: _Consumer) -> None:
        """It drained after losing frames: tell it how many, then the latest keyframe, with
        the closes of the snapshots it lost (the latest among them) in place of its own."""
        latest = self.latest
        consumer.behind = False
        if consumer.lost:
            self._queue(
                consumer, msgs.encode_message(msgs.Lost(consumer.lost, consumer.lost_total))
            )
            consumer.lost = 0
        missed = consumer.missed
        if latest is None:
            return
        if (not missed and not consumer.missed_omitted) or (
            latest.snapshot.session != consumer.missed_session
        ):
            missed.clear()
            consumer.missed_omitted = 0
            self._queue(consumer, latest.keyframe())
            return
        omitted = consumer.missed_omitted
        closes = tuple(missed)
        missed.clear()
        consumer.missed_omitted = 0
        try:
            parts = with_closes(
                latest.keyframe(), latest.keyframe_closes(), closes, omitted, MAX_MISSED_CLOSES
            )
        except WireError as exc:
            log.error(
                "telemetry: cannot list %d closes for %s: %s", len(closes), consumer.address, exc
            )
            self._queue(consumer, latest.keyframe())
            return
        self._queue_parts(consumer, parts)

    # -- sockets --------------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._sock is not None
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = self._sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("telemetry: accept failed: %s; pausing", describe_error(exc))
                    fd = self._sock.fileno()
                    self.reactor.remove_reader(fd)
                    self.reactor.call_later(0.1, functools.partial(self._resume_accepting, fd))
                return
            sock.setblocking(False)
            address = format_address(str(addr[0]), int(addr[1])) if isinstance(addr, tuple) else "?"
            if len(self._consumers) >= self.max_consumers:
                self.refused += 1
                if self.refused == 1 or self.refused % LOG_EVERY == 0:
                    log.warning(
                        "telemetry: refused consumer %s: %d consumers is the most allowed "
                        "(%d refused so far)",
                        address,
                        self.max_consumers,
                        self.refused,
                    )
                error = msgs.ErrorMessage(
                    msgs.BUSY, f"this producer takes at most {self.max_consumers} consumers"
                )
                try:
                    sock.send(msgs.encode_message(error))
                except OSError:
                    pass
                sock.close()
                continue
            if self._opened is not None:
                self._opened(sock)
            consumer = _Consumer(sock, address, self.reactor.time())
            self._consumers[consumer.fd] = consumer
            self.accepted += 1
            self.reactor.add_reader(consumer.fd, functools.partial(self._on_readable, consumer))

    def _resume_accepting(self, fd: int) -> None:
        if not self._closed and self._sock is not None and self._sock.fileno() == fd:
            self.reactor.add_reader(fd, self._accept)

    def _on_readable(self, consumer: _Consumer) -> None:
        if consumer.fd not in self._consumers:
            return
        try:
            data = consumer.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop(consumer, f"connection lost: {describe_error(exc)}", level=logging.INFO)
            return
        if not data:
            self._drop(consumer, "closed by the consumer", level=logging.INFO)
            return
        try:
            frames = consumer.reader.feed(data)
        except WireError as exc:
            self._fail(consumer, msgs.PROTOCOL, str(exc))
            return
        self._on_frames(consumer, frames)
        # Bad bytes after whole frames: those were answered first (a newer hello is told
        # the versions spoken), now the stream cannot go on.
        if consumer.reader.broken and consumer.fd in self._consumers:
            self._fail(consumer, msgs.PROTOCOL, consumer.reader.broken)

    def _on_frames(self, consumer: _Consumer, frames: list[Frame]) -> None:
        for frame in frames:
            if consumer.fd not in self._consumers:
                return
            try:
                message = msgs.decode_message(frame)
            except WireError as exc:
                self._fail(consumer, msgs.PROTOCOL, str(exc))
                return
            if consumer.state == "hello":
                self._on_hello(consumer, message)
            elif frame.type == COMMAND and isinstance(message, msgs.Command):
                self._on_command(consumer, message)
            elif frame.type == GOODBYE:
                self._drop(consumer, "said goodbye", level=logging.INFO)
                return
            elif frame.type == CONSUMER_HELLO:
                self._fail(consumer, msgs.PROTOCOL, "a second hello")
                return

    def _on_hello(self, consumer: _Consumer, hello: msgs.Message) -> None:
        error = msgs.check_consumer_hello(hello, self._token)
        if error is not None:
            self._fail(consumer, error.kind, error.message, error)
            return
        assert isinstance(hello, msgs.ConsumerHello)
        consumer.state = "live"
        log.info("telemetry: consumer %s (%s) attached", consumer.address, hello.client or "?")
        self._queue(consumer, msgs.encode_message(msgs.ProducerHello(self.info)))
        if self.latest is not None and not self._primed:
            # The first consumer after none: the encoder starts again from the latest.
            self.encoder.reset()
            try:
                self.latest = self.encoder.encode(self.latest.snapshot)
            except WireError as exc:
                log.error("telemetry: cannot encode snapshot: %s", exc)
                self.latest = None
            self._primed = True
        if self.latest is not None:
            self._queue(consumer, self.latest.keyframe())

    def _on_command(self, consumer: _Consumer, command: msgs.Command) -> None:
        call = command.call
        name = msgs.CALL_NAMES[type(call)]
        try:
            if self.commands is None or name not in self.info.commands:
                raise UnsupportedCommand(f"this producer does not take {name}")
            result = self.commands(call)
            reply = msgs.Reply(
                command.request_id, result if isinstance(result, ListenerRow) else None
            )
        except Exception as exc:
            text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            reply = msgs.Reply(command.request_id, None, type(exc).__name__, str(text))
        try:
            frame = msgs.encode_message(reply)
        except WireError as exc:
            frame = msgs.encode_message(msgs.Reply(command.request_id, None, "WireError", str(exc)))
        consumer.control_bytes += len(frame)
        if consumer.control_bytes > MAX_CONTROL_BYTES and consumer.out:
            self._drop(consumer, "it sends commands but does not read the replies")
            return
        self._queue(consumer, frame)

    def _queue(self, consumer: _Consumer, frame: bytes) -> None:
        if not consumer.out:
            consumer.progress_at = self.reactor.time()
        consumer.out.append(memoryview(frame))
        self._flush(consumer)

    def _queue_parts(self, consumer: _Consumer, parts: tuple[memoryview, ...]) -> None:
        """One frame sent as consecutive parts (slices of shared bytes, not copies)."""
        if not consumer.out:
            consumer.progress_at = self.reactor.time()
        consumer.out.extend(part for part in parts if part)
        self._flush(consumer)

    def _flush(self, consumer: _Consumer) -> None:
        out = consumer.out
        sock = consumer.sock
        while out:
            head = out[0]
            try:
                sent = sock.send(head)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._drop(consumer, f"connection lost: {describe_error(exc)}", level=logging.INFO)
                return
            consumer.progress_at = self.reactor.time()
            if sent < len(head):
                out[0] = head[sent:]
                break
            out.popleft()
        if out:
            if not consumer.writing:
                consumer.writing = True
                self.reactor.add_writer(consumer.fd, functools.partial(self._on_writable, consumer))
            return
        consumer.control_bytes = 0
        if consumer.writing:
            consumer.writing = False
            self.reactor.remove_writer(consumer.fd)
        if consumer.behind:
            self._catch_up(consumer)

    def _on_writable(self, consumer: _Consumer) -> None:
        if consumer.fd in self._consumers:
            self._flush(consumer)

    def _send_now(self, consumer: _Consumer, frame: bytes) -> None:
        """One best-effort send for a last word: never waits, never queues."""
        if consumer.out:
            return  # mid-frame: a last word now would garble it
        try:
            consumer.sock.send(frame)
        except OSError:
            pass

    def _fail(
        self,
        consumer: _Consumer,
        kind: str,
        message: str,
        error: msgs.ErrorMessage | None = None,
    ) -> None:
        """Send one error frame (best effort) and drop the consumer, logging why."""
        error = error or msgs.ErrorMessage(kind, message)
        self._send_now(consumer, msgs.encode_message(error))
        self._drop(consumer, f"{kind}: {message}")

    def _drop(
        self,
        consumer: _Consumer,
        reason: str,
        *,
        level: int = logging.WARNING,
        log_it: bool = True,
        detach: bool = True,
    ) -> None:
        if self._consumers.pop(consumer.fd, None) is None:
            return
        if log_it:
            log.log(level, "telemetry: dropped consumer %s: %s", consumer.address, reason)
            self.dropped[reason.partition(":")[0]] += 1
        if detach:
            self.reactor.remove_reader(consumer.fd)
            if consumer.writing:
                self.reactor.remove_writer(consumer.fd)
        consumer.out.clear()
        if self._closing is not None:
            self._closing(consumer.sock)
        try:
            consumer.sock.close()
        except OSError:
            pass

    def _housekeeping(self) -> None:
        if self._closed:
            return
        now = self.reactor.time()
        for consumer in list(self._consumers.values()):
            if consumer.state == "hello" and now - consumer.connected_at > self.hello_timeout:
                self._fail(
                    consumer,
                    msgs.TIMEOUT,
                    f"no hello within {self.hello_timeout:g} s of connecting",
                )
            elif consumer.out and now - consumer.progress_at > self.read_timeout:
                self._drop(consumer, f"it has not read for {self.read_timeout:g} s")
        self._timer = self.reactor.call_later(HOUSEKEEPING_S, self._housekeeping)


def echo_commands(server: Any) -> Commands:
    """Commands for an ``echo.EchoServer`` (on the loop's thread, as the publisher is):
    what ``loopmon serve`` passes as ``commands``."""

    def run(call: msgs.Call) -> ListenerRow | None:
        if isinstance(call, msgs.StartListener):
            listener = server.start_listener(call.host, call.port)
            rows: dict[int, ListenerRow] = {row.id: row for row in server.listener_rows()}
            return rows[listener.id]
        if isinstance(call, msgs.StopListener):
            server.stop_listener(call.listener_id, call.close_connections)
        elif isinstance(call, msgs.CloseConnection):
            server.close_connection_id(call.connection_id)
        elif isinstance(call, msgs.SetStrategy):
            server.set_strategy(call.name)
        return None

    return run
