"""The ``/metrics`` endpoint: a small HTTP/1.1 server on the producer's own loop. Past 400
lines it is still one job, one request per connection under its limits: the parser, the
deadlines and the drop accounting only mean something together.

It runs as handlers on the IOLoop that it reports on, so a single-threaded producer stays
single-threaded (prometheus_client's own server would start a thread). It answers exactly one
thing: ``GET`` or ``HEAD`` of ``/metrics`` (a query string is ignored), one request per
connection (``Connection: close``, which Prometheus's client handles as any server's). Anything
else gets the status that says why (400, 401, 404, 405, 408, 431, 503, 505) and the connection
is closed; nothing a client sends can grow memory past ``Limits``:

- a request's head must arrive whole within ``max_header_bytes`` (8 KiB) and
  ``request_timeout_s`` (10 s from the connection, however slowly it trickles in);
- at most ``max_connections`` (32) are open at once; more are accepted and closed at once;
- a response the client does not read is dropped at the same deadline;
- no request body is accepted.

Every drop is counted by reason (``dropped``) and logged, at most once per reason every
``NOTE_EVERY_S`` with the number since, so a flood of garbage cannot flood the log either. A
bearer token, when one is set, is compared in constant time (``hmac.compare_digest``).

The page itself comes from ``render(accept_header) -> (body, content type)``, so this module
knows nothing of Prometheus and needs only the standard library.
"""

from __future__ import annotations

import collections
import errno
import hmac
import logging
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from loopmon.events import READ, WRITE
from loopmon.ioloop import IOLoop, Timeout
from loopmon.netaddr import describe_error, format_address

log = logging.getLogger("loopmon")

Render = Callable[[str], tuple[bytes, str]]
SocketHook = Callable[[socket.socket], None]


def no_hook(sock: socket.socket) -> None:
    pass


PATH: Final = "/metrics"
NOTE_EVERY_S: Final = 10.0
ACCEPT_BATCH: Final = 16  # accepts per readiness event, so a flood cannot hog a pass
ACCEPT_BACKOFF_S: Final = 0.1  # pause after EMFILE/ENFILE before accepting again
_RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_TOKEN_CHARS = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 token (method, names)
_VERSION = re.compile(rb"^HTTP/(\d)\.(\d)$")
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


@dataclass(frozen=True, slots=True)
class Limits:
    max_header_bytes: int = 8 * 1024
    request_timeout_s: float = 10.0
    max_connections: int = 32


class _Client:
    __slots__ = ("buf", "deadline", "fd", "out", "peer", "sock")

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.buf = bytearray()
        self.out: memoryview | None = None  # the response not yet sent, once there is one
        self.deadline: Timeout | None = None


class _BadRequest(Exception):
    """``reason`` is one of a fixed few (drops are counted and logs throttled by it, so what a
    client sends must never make a new one); ``detail`` may quote the request."""

    def __init__(
        self, status: int, reason: str, headers: tuple[str, ...] = (), detail: str = ""
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers
        self.detail = detail


class MetricsEndpoint:
    """Serves ``render``'s page on ``sock`` (bound, listening, non-blocking) from ``loop``.
    Every method runs on the loop's thread."""

    def __init__(
        self,
        loop: IOLoop,
        sock: socket.socket,
        render: Render,
        *,
        token: bytes | None = None,
        limits: Limits | None = None,
        note: Callable[[str], None] | None = None,
        opened: SocketHook = no_hook,
        closing: SocketHook = no_hook,
    ) -> None:
        """``note`` writes a drop's line (default: a warning on loopmon's logger; ``run``
        prints ``loopmon:`` lines instead, so the program's logging never sees them);
        ``opened`` and ``closing`` are told of each client's socket when it is taken on and
        just before it is closed (``run`` keeps them from a forked child)."""
        self.loop = loop
        self.sock = sock
        self.render = render
        self.token = token
        self.limits = limits or Limits()
        self._say = note
        self._opened = opened
        self._closing = closing
        host, port = sock.getsockname()[:2]
        self.host: str = host
        self.port: int = port
        self._clients: dict[int, _Client] = {}
        self._started = False
        self._backoff: Timeout | None = None
        self.served = 0
        self.refused = 0  # turned away at accept: over max_connections
        self.dropped: collections.Counter[str] = collections.Counter()
        self._noted: dict[str, tuple[float, int]] = {}  # reason -> (last logged at, since)

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    @property
    def open_connections(self) -> int:
        return len(self._clients)

    def start(self) -> None:
        self.loop.add_handler(self.sock.fileno(), self._on_accept, READ)
        self._started = True

    def close(self, *, detach: bool = True) -> None:
        """Stop listening and drop every connection. ``detach=False``: the loop is already
        closed (its handlers and timers went with it), so only the sockets are closed."""
        if detach:
            if self._started:
                self.loop.remove_handler(self.sock.fileno())
            if self._backoff is not None:
                self.loop.remove_timeout(self._backoff)
            for client in list(self._clients.values()):
                self._close(client)
        else:
            for client in self._clients.values():
                self._closing(client.sock)
                client.sock.close()
            self._clients.clear()
        self._started = False
        self._backoff = None
        self.sock.close()

    # -- accepting ------------------------------------------------------------------------

    def _on_accept(self, fd: int, events: int) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRNOS:
                    self._note("accept", f"accept() failed: {describe_error(exc)}; pausing")
                    self._pause_accepting()
                # ECONNABORTED and friends: that client is gone; the next may not be.
                return
            peer = _peer(addr)
            if len(self._clients) >= self.limits.max_connections:
                self.refused += 1
                self._reject_at_once(sock)
                self._note(
                    "over the connection limit",
                    f"{peer}: refused, {self.limits.max_connections} connections already open",
                )
                continue
            sock.setblocking(False)
            client = _Client(sock, peer)
            try:
                self.loop.add_handler(client.fd, self._on_client, READ)
            except (OSError, ValueError) as exc:
                # An fd the poller cannot watch (past select's FD_SETSIZE): turn it away.
                self.refused += 1
                self._reject_at_once(sock)
                self._note("cannot watch", f"{peer}: refused: {exc}")
                continue
            self._clients[client.fd] = client
            self._opened(sock)
            client.deadline = self.loop.call_later(
                self.limits.request_timeout_s, self._expire, client
            )

    def _pause_accepting(self) -> None:
        if self._backoff is not None or not self._started:
            return
        self.loop.update_handler(self.sock.fileno(), 0)

        def resume() -> None:
            self._backoff = None
            if self._started:
                self.loop.update_handler(self.sock.fileno(), READ)

        self._backoff = self.loop.call_later(ACCEPT_BACKOFF_S, resume)

    def _reject_at_once(self, sock: socket.socket) -> None:
        # One non-blocking try at a 503, so a client learns why rather than seeing a reset.
        try:
            sock.setblocking(False)
            sock.send(_response(503, b"too many connections\n", ("Retry-After: 1",)))
        except OSError:
            pass
        sock.close()

    # -- one connection -------------------------------------------------------------------

    def _on_client(self, fd: int, events: int) -> None:
        client = self._clients.get(fd)
        if client is None:
            return
        if client.out is not None:
            self._send(client)
            return
        room = self.limits.max_header_bytes + 1 - len(client.buf)
        try:
            data = client.sock.recv(min(room, 65536))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop(client, "connection error", f"{client.peer}: {describe_error(exc)}")
            return
        if not data:
            # Closed before a whole request: nothing to answer, and nothing alarming.
            self.dropped["closed before a full request"] += 1
            self._close(client)
            return
        buf = client.buf
        start = max(len(buf) - 3, 0)
        buf += data
        end = buf.find(b"\r\n\r\n", start)
        limit = self.limits.max_header_bytes
        if (end < 0 and len(buf) > limit) or end + 4 > limit:
            self._refuse(client, _BadRequest(431, f"request head over {limit} bytes"))
            return
        if end < 0:
            return
        try:
            status, body, content_type, head_only = self._answer(bytes(buf[:end]))
        except _BadRequest as bad:
            self._refuse(client, bad)
            return
        response = _response(status, body, (f"Content-Type: {content_type}",), head_only)
        self.served += 1
        self._start_sending(client, response)

    def _answer(self, head: bytes) -> tuple[int, bytes, str, bool]:
        """(status, body, content type, HEAD) for a request's head, or ``_BadRequest``."""
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not _TOKEN_CHARS.match(parts[0]) or not parts[1]:
            raise _BadRequest(400, "not an HTTP request line")
        method, target, version = parts
        match = _VERSION.match(version)
        if match is None:
            raise _BadRequest(400, "not an HTTP version")
        if match.group(1) != b"1":
            raise _BadRequest(
                505, "an HTTP version not spoken here", detail=version[:16].decode("latin-1")
            )
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN_CHARS.match(name):
                raise _BadRequest(400, "a malformed header line")
            headers[name.lower()] = value.strip(b" \t")
        if version == b"HTTP/1.1" and b"host" not in headers:
            raise _BadRequest(400, "HTTP/1.1 without a Host header")
        if headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers:
            raise _BadRequest(400, "a request with a body")
        if method not in (b"GET", b"HEAD"):
            raise _BadRequest(
                405,
                "a method other than GET or HEAD",
                ("Allow: GET, HEAD",),
                detail=method[:16].decode("latin-1"),
            )
        if self.token is not None and not self._authorized(headers.get(b"authorization", b"")):
            raise _BadRequest(
                401, "no valid bearer token", ('WWW-Authenticate: Bearer realm="loopmon"',)
            )
        if target.split(b"?", 1)[0] != PATH.encode():
            raise _BadRequest(404, "not /metrics")
        body, content_type = self._render(headers.get(b"accept", b"").decode("latin-1"))
        return 200, body, content_type, method == b"HEAD"

    def _render(self, accept: str) -> tuple[bytes, str]:
        try:
            return self.render(accept)
        except Exception as exc:
            if self._say is not None:
                self._say(f"metrics {self.address}: rendering /metrics failed: {exc!r}")
            else:
                log.exception("rendering /metrics failed")
            raise _BadRequest(500, "rendering failed") from None

    def _authorized(self, value: bytes) -> bool:
        scheme, _, presented = value.partition(b" ")
        assert self.token is not None
        # compare_digest on every request, a right scheme or not, so timing tells nothing.
        good = hmac.compare_digest(presented.strip(), self.token)
        return good and scheme.lower() == b"bearer"

    def _refuse(self, client: _Client, bad: _BadRequest) -> None:
        detail = f" ({bad.detail!r})" if bad.detail else ""
        self._note(bad.reason, f"{client.peer}: {bad.status} {bad.reason}{detail}")
        self.dropped[bad.reason] += 1
        body = f"{bad.status} {_REASONS[bad.status]}: {bad.reason}\n".encode()
        self._start_sending(client, _response(bad.status, body, bad.headers))

    def _start_sending(self, client: _Client, response: bytes) -> None:
        client.buf = bytearray()  # the request is read: its memory can go
        client.out = memoryview(response)
        self._send(client)
        if client.out is not None and client.fd in self._clients:
            self.loop.update_handler(client.fd, WRITE)

    def _send(self, client: _Client) -> None:
        out = client.out
        assert out is not None
        try:
            sent = client.sock.send(out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop(client, "connection error", f"{client.peer}: {describe_error(exc)}")
            return
        if sent < len(out):
            client.out = out[sent:]
            return
        self._close(client)

    def _expire(self, client: _Client) -> None:
        client.deadline = None
        if client.fd not in self._clients or self._clients[client.fd] is not client:
            return
        seconds = f"{self.limits.request_timeout_s:g} s"
        if client.out is None:
            try:
                client.sock.send(_response(408, b"request not received in time\n"))
            except OSError:
                pass
            self._drop(client, "request too slow", f"{client.peer}: no whole request in {seconds}")
        else:
            self._drop(client, "response not read", f"{client.peer}: response unread in {seconds}")

    def _drop(self, client: _Client, reason: str, text: str) -> None:
        self.dropped[reason] += 1
        self._note(reason, text)
        self._close(client)

    def _close(self, client: _Client) -> None:
        if self._clients.get(client.fd) is client:
            del self._clients[client.fd]
            self.loop.remove_handler(client.fd)
            self._closing(client.sock)
        if client.deadline is not None:
            self.loop.remove_timeout(client.deadline)
            client.deadline = None
        client.out = None
        client.sock.close()

    def _note(self, reason: str, text: str) -> None:
        """Log a drop: the first of a reason, then one line per ``NOTE_EVERY_S`` with a count."""
        now = self.loop.time()
        last = self._noted.get(reason)
        if last is not None and now - last[0] < NOTE_EVERY_S:
            self._noted[reason] = (last[0], last[1] + 1)
            return
        more = f" ({last[1]:,} more like it since)" if last is not None and last[1] else ""
        if self._say is not None:
            self._say(f"metrics {self.address}: {text}{more}")
        else:
            log.warning("metrics %s: %s%s", self.address, text, more)
        self._noted[reason] = (now, 0)


def _response(
    status: int, body: bytes, headers: tuple[str, ...] = (), head_only: bool = False
) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        *headers,
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if not any(h.lower().startswith("content-type:") for h in headers):
        lines.append("Content-Type: text/plain; charset=utf-8")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


def _peer(addr: object) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return format_address(str(addr[0]), int(addr[1]))
    return str(addr)
