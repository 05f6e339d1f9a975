"""The telemetry client: a consumer of a producer's stream on a thread of its own.

It connects with the token, decodes frames into Snapshots and hands each to ``on_snapshot``
and/or posts it to a ``Mailbox`` (with its events), and sends commands whose replies complete
``concurrent.futures.Future``s, as the in-process runner's do. When the producer goes away it
reconnects with backoff (a restarted producer is a new session: the snapshots say so). A
command in flight when the link drops fails with ``LinkLost("link lost, outcome unknown")``;
one sent while no link is up fails at once. What cannot be fixed by retrying (a wrong token,
a newer protocol, a stream that is not loopmon's) ends the client with ``status`` "failed" and
one line in ``error``, never a traceback.

The token may be given as where to find it (a ``TokenSource``), asked again before each
connection attempt: a restarted producer has a new token (32 random bytes per run) and, on
this machine, a new token file, so a client that kept the first token could never reconnect.
While the source has none (the producer's file is not written yet) the client keeps trying.
"""

from __future__ import annotations

import itertools
import logging
import select
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Final

from loopmon.mailbox import Mailbox
from loopmon.netaddr import describe_error, format_address
from loopmon.snapshot import ListenerRow, ProducerInfo, Snapshot
from loopmon.stream.tokens import TokenError
from loopmon.wire import messages as msgs
from loopmon.wire.codec import WireError
from loopmon.wire.frames import (
    DELTA,
    ERROR,
    FROM_PRODUCER,
    GOODBYE,
    KEYFRAME,
    LOST,
    PRODUCER_HELLO,
    REPLY,
    TO_CONSUMER_MAX,
    FrameReader,
)
from loopmon.wire.snapshots import SnapshotDecoder

log = logging.getLogger("loopmon.stream")

CONNECTING: Final = "connecting"
CONNECTED: Final = "connected"
RECONNECTING: Final = "reconnecting"
FAILED: Final = "failed"
STOPPED: Final = "stopped"

LINK_LOST: Final = "link lost, outcome unknown"
NOT_A_STREAM: Final = "not a loopmon telemetry stream, or a broken one"
_FATAL_KINDS: Final = frozenset({msgs.TOKEN, msgs.VERSION, msgs.PROTOCOL})


# The token, asked for before each connection attempt; raises ``TokenError`` when it has none.
TokenSource = Callable[[], bytes]


class LinkLost(ConnectionError):
    """The link to the producer dropped (or was never up) before a command's reply came."""


class CommandFailed(Exception):
    """The producer ran the command and it failed; ``kind`` is the producer's exception
    type name ("ListenerError", "KeyError", "UnsupportedCommand" ...)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _Fatal(Exception):
    pass


class Client:
    def __init__(
        self,
        host: str,
        port: int,
        token: bytes | TokenSource,
        *,
        mailbox: Mailbox | None = None,
        on_snapshot: Callable[[Snapshot], None] | None = None,
        on_status: Callable[[str, str], None] | None = None,
        client: str = "loopmon attach",
        reconnect: bool = True,
        connect_timeout: float = 5.0,
        backoff: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        """``on_snapshot`` and ``on_status`` (status, error text) run on the client's thread.
        ``backoff`` is (first wait, longest wait) between connection attempts, doubling."""
        self.host = host
        self.port = port
        self._token = token
        self.mailbox = mailbox
        self.on_snapshot = on_snapshot
        self.on_status = on_status
        self.client = client
        self.reconnect = reconnect
        self.connect_timeout = connect_timeout
        self.backoff = backoff
        self.status = CONNECTING
        self.error = ""
        self.producer: ProducerInfo | None = None
        self.dropped_frames = 0  # snapshots the producer said this client lost
        self.snapshots = 0
        self.connections = 0  # links made
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[Any]] = {}
        self._outbox: list[bytes] = []
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="loopmon-telemetry", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._wake_r.close()
        self._wake_w.close()

    def wait_connected(self, timeout: float) -> bool:
        """Block until a link is up (True), or it failed or ``timeout`` passed (False)."""
        deadline = threading.Event()
        end = timeout
        step = 0.01
        while end > 0:
            if self.status == CONNECTED:
                return True
            if self.status in (FAILED, STOPPED):
                return False
            deadline.wait(step)
            end -= step
        return self.status == CONNECTED

    # -- commands -------------------------------------------------------------------------

    def send(self, call: msgs.Call) -> Future[ListenerRow | None]:
        future: Future[ListenerRow | None] = Future()
        with self._lock:
            if self.status != CONNECTED:
                future.set_exception(LinkLost(f"not connected to {self.address}"))
                return future
            request_id = next(self._ids)
            self._pending[request_id] = future
            self._outbox.append(msgs.encode_message(msgs.Command(request_id, call)))
        self._wake()
        return future

    def start_listener(self, host: str, port: int) -> Future[ListenerRow | None]:
        return self.send(msgs.StartListener(host, port))

    def stop_listener(
        self, listener_id: int, close_connections: bool = False
    ) -> Future[ListenerRow | None]:
        return self.send(msgs.StopListener(listener_id, close_connections))

    def close_connection(self, connection_id: int) -> Future[ListenerRow | None]:
        return self.send(msgs.CloseConnection(connection_id))

    def set_strategy(self, name: str) -> Future[ListenerRow | None]:
        return self.send(msgs.SetStrategy(name))

    # -- the thread -----------------------------------------------------------------------

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # full (a wake is pending anyway) or closed

    def _set_status(self, status: str, error: str = "") -> None:
        self.status = status
        if error:
            self.error = error
        if self.on_status is not None:
            try:
                self.on_status(status, error)
            except Exception:
                log.exception("telemetry client: the status callback failed")
        if self.mailbox is not None:
            self.mailbox.poke()

    def _run(self) -> None:
        wait = self.backoff[0]
        while not self._stop.is_set():
            outcome = self._attempt()
            if outcome is None:
                return  # failed for good
            if outcome:
                wait = self.backoff[0]
            if not self.reconnect or self._stop.wait(wait):
                break
            wait = min(wait * 2, self.backoff[1])
        if self.status != FAILED:
            self._set_status(STOPPED)

    def _attempt(self) -> bool | None:
        """One connection attempt: True if a session ran, False if none could start (try
        again), None if it cannot succeed (``status`` is then FAILED)."""
        try:
            token = self._token() if callable(self._token) else self._token
        except TokenError as exc:
            self._set_status(RECONNECTING if self.reconnect else FAILED, str(exc))
            return False
        try:
            sock = socket.create_connection((self.host, self.port), self.connect_timeout)
        except OSError as exc:
            self._set_status(
                RECONNECTING if self.reconnect else FAILED,
                f"cannot connect to {self.address}: {describe_error(exc)}",
            )
            return False
        ran = False
        try:
            self._session(sock, token)
            ran = True
        except _Fatal as fatal:
            self._lose_link()
            self._set_status(FAILED, str(fatal))
            return None
        except OSError:
            pass  # refused for now (busy): self.error says why; try again
        finally:
            sock.close()
        self._lose_link()
        if not self._stop.is_set():
            self._set_status(RECONNECTING if self.reconnect else FAILED, self.error)
        return ran

    def _lose_link(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._outbox.clear()
            if self.status == CONNECTED:
                self.status = RECONNECTING
        for future in pending.values():
            if not future.done():
                future.set_exception(LinkLost(LINK_LOST))

    def _session(self, sock: socket.socket, token: bytes) -> None:
        """One link, until it drops (returns) or cannot go on (``_Fatal``)."""
        sock.settimeout(self.connect_timeout)
        reader = FrameReader(TO_CONSUMER_MAX, FROM_PRODUCER)
        decoder = SnapshotDecoder()
        try:
            sock.sendall(msgs.encode_message(msgs.ConsumerHello(token, client=self.client)))
        except OSError as exc:
            self.error = f"{self.address}: {describe_error(exc)}"
            return
        sock.setblocking(False)
        hello_seen = False
        while not self._stop.is_set():
            try:
                readable, _, _ = select.select([sock, self._wake_r], [], [], 1.0)
            except (OSError, ValueError):
                return
            if self._wake_r in readable:
                try:
                    while self._wake_r.recv(4096):
                        pass
                except (BlockingIOError, OSError):
                    pass
                if not self._send_outbox(sock):
                    return
            if sock not in readable:
                continue
            try:
                data = sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                self.error = f"{self.address}: link lost: {describe_error(exc)}"
                return
            if not data:
                self.error = f"{self.address}: the producer closed the link"
                return
            try:
                frames = reader.feed(data)
                for frame in frames:
                    if not hello_seen:
                        hello_seen = self._first(frame)
                        continue
                    if frame.type in (KEYFRAME, DELTA):
                        self._deliver(decoder.decode(frame))
                    elif not self._control(frame):
                        return
                if reader.broken:
                    raise WireError(reader.broken)
            except WireError as exc:
                said = str(exc)
                if NOT_A_STREAM not in said:  # the frame reader's own words may say it already
                    said = f"{NOT_A_STREAM}: {said}"
                raise _Fatal(f"{self.address}: {said}") from None

    def _first(self, frame: Any) -> bool:
        if frame.type == ERROR:
            error = msgs.decode_message(frame)
            assert isinstance(error, msgs.ErrorMessage)
            text = f"{self.address}: the producer refused this client: {error.message}"
            if error.kind in _FATAL_KINDS:
                raise _Fatal(text)
            self.error = text
            raise ConnectionAbortedError(text)
        if frame.type != PRODUCER_HELLO:
            raise WireError(f"a {frame.type:#x} frame before the producer's hello")
        try:
            hello = msgs.decode_message(frame)
        except WireError as exc:  # a newer version says so
            raise _Fatal(f"{self.address}: {exc}") from None
        assert isinstance(hello, msgs.ProducerHello)
        self.producer = hello.info
        self.connections += 1
        with self._lock:
            self.status = CONNECTED
        self._set_status(CONNECTED)
        return True

    def _control(self, frame: Any) -> bool:
        message = msgs.decode_message(frame)
        if frame.type == REPLY and isinstance(message, msgs.Reply):
            with self._lock:
                future = self._pending.pop(message.request_id, None)
            if future is not None and not future.done():
                if message.ok:
                    future.set_result(message.result)
                else:
                    future.set_exception(CommandFailed(message.error_kind, message.error))
                if self.mailbox is not None:
                    self.mailbox.poke()
        elif frame.type == LOST and isinstance(message, msgs.Lost):
            self.dropped_frames += message.frames
        elif frame.type == GOODBYE and isinstance(message, msgs.Goodbye):
            self.error = f"{self.address}: the producer said goodbye: {message.reason}"
            return False
        elif frame.type == ERROR and isinstance(message, msgs.ErrorMessage):
            self.error = f"{self.address}: the producer dropped this client: {message.message}"
            return False
        return True

    def _send_outbox(self, sock: socket.socket) -> bool:
        with self._lock:
            outbox, self._outbox = self._outbox, []
        if not outbox:
            return True
        try:
            sock.setblocking(True)
            sock.settimeout(self.connect_timeout)
            sock.sendall(b"".join(outbox))
        except OSError as exc:
            self.error = f"{self.address}: link lost: {describe_error(exc)}"
            return False
        finally:
            sock.setblocking(False)
        return True

    def _deliver(self, snapshot: Snapshot) -> None:
        self.snapshots += 1
        if self.mailbox is not None:
            self.mailbox.post(snapshot, snapshot.events)
        if self.on_snapshot is not None:
            self.on_snapshot(snapshot)
