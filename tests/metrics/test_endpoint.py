"""The /metrics endpoint on a loop the test drives pass by pass, with a clock it moves: every
answer, every limit, every drop and its logged reason."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopmon.ioloop import IOLoop
from loopmon.metrics.endpoint import Limits, MetricsEndpoint, _BadRequest
from tests.loop_helpers import FakeClock
from tests.metrics.helpers import pump

BODY = b"loopmon_connections 3\n"
TOKEN = b"s3cret-token"


class Rig:
    def __init__(
        self,
        token: bytes | None = None,
        body: bytes = BODY,
        hooks: dict[str, Any] | None = None,
        **limits: object,
    ) -> None:
        self.clock = FakeClock()
        self.loop = IOLoop(make_current=False, time_func=self.clock)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        sock.setblocking(False)
        self.accepts: list[str] = []
        self.body = body
        self.endpoint = MetricsEndpoint(
            self.loop,
            sock,
            self.render,
            token=token,
            limits=Limits(**limits),  # type: ignore[arg-type]
            **(hooks or {}),
        )
        self.endpoint.start()
        self.clients: list[socket.socket] = []

    def render(self, accept: str) -> tuple[bytes, str]:
        self.accepts.append(accept)
        return self.body, "text/plain; version=0.0.4; charset=utf-8"

    def connect(self) -> socket.socket:
        client = socket.create_connection(("127.0.0.1", self.endpoint.port), timeout=5)
        self.clients.append(client)
        return client

    def exchange(self, request: bytes, passes: int = 3) -> bytes:
        client = self.connect()
        client.sendall(request)
        pump(self.loop, passes)
        return read_all(client)

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.endpoint.close()
        self.loop.close()


def read_all(client: socket.socket) -> bytes:
    chunks = []
    while chunk := client.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.close()


GET = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n"


def test_get_answers_the_rendered_page_and_closes(rig: Rig) -> None:
    response = rig.exchange(GET)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Type: text/plain; version=0.0.4; charset=utf-8" in head
    assert f"Content-Length: {len(BODY)}".encode() in head
    assert b"Connection: close" in head
    assert body == BODY
    assert rig.accepts == ["text/plain"]  # the scraper's Accept reaches the encoder's choice
    assert rig.endpoint.open_connections == 0
    assert rig.endpoint.served == 1


def test_head_answers_the_headers_only(rig: Rig) -> None:
    response = rig.exchange(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = response.partition(b"\r\n\r\n")
    assert status_of(response) == 200
    assert f"Content-Length: {len(BODY)}".encode() in head
    assert body == b""


def test_a_query_string_is_ignored_and_http_1_0_needs_no_host(rig: Rig) -> None:
    assert status_of(rig.exchange(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n")) == 200


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"GET /metrics/ HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # TLS hello-ish
        (b"hello there\r\n\r\n", 400),
        (b"GET /metrics\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET /metrics HTTP/1.1\r\nHost x\r\n\r\n", 400),  # no colon
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 400),
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET /metrics FTP/1.0\r\n\r\n", 400),
    ],
)
def test_bad_requests_get_the_status_that_says_why(
    rig: Rig, request_bytes: bytes, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="loopmon"):
        response = rig.exchange(request_bytes)
    assert status_of(response) == status
    assert rig.accepts == []
    assert rig.endpoint.open_connections == 0
    assert sum(rig.endpoint.dropped.values()) == 1
    assert any(f" {status} " in record.getMessage() for record in caplog.records)


def test_405_says_what_is_allowed(rig: Rig) -> None:
    assert b"Allow: GET, HEAD\r\n" in rig.exchange(b"PUT /metrics HTTP/1.1\r\nHost: x\r\n\r\n")


def test_headers_over_8_kib_are_refused_and_never_buffered_past_the_limit(rig: Rig) -> None:
    client = rig.connect()
    client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Junk: ")
    pump(rig.loop, 2)
    sent = 0
    try:
        # A client that keeps sending: the server reads 8 KiB + 1 at most, then answers 431.
        while sent < 1 << 20:
            client.sendall(b"a" * 4096)
            sent += 4096
            pump(rig.loop)
            for held in rig.endpoint._clients.values():
                assert len(held.buf) <= 8 * 1024 + 1
            if rig.endpoint.open_connections == 0:
                break
    except OSError:
        pass  # reset once the server closed with unread input: it stopped reading
    assert rig.endpoint.dropped["request head over 8192 bytes"] == 1
    assert rig.endpoint.open_connections == 0


def test_exactly_8_kib_of_head_is_still_served() -> None:
    r = Rig()
    try:
        base = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n"
        request = base.replace(b"X-Pad: ", b"X-Pad: " + b"p" * (8 * 1024 - len(base)))
        assert len(request) == 8 * 1024
        assert status_of(r.exchange(request)) == 200
        request = base.replace(b"X-Pad: ", b"X-Pad: " + b"p" * (8 * 1024 - len(base) + 1))
        assert status_of(r.exchange(request)) == 431
    finally:
        r.close()


def test_a_client_sending_one_byte_a_second_is_dropped_at_10_s(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    client = rig.connect()
    pump(rig.loop)
    with caplog.at_level(logging.WARNING, logger="loopmon"):
        for byte in GET[:10]:  # seconds 0 to 9: still within its time
            client.send(bytes([byte]))
            pump(rig.loop)
            assert rig.endpoint.open_connections == 1
            rig.clock.advance(1.0)
        pump(rig.loop)  # 10 s since it connected
    response = read_all(client)
    assert status_of(response) == 408
    assert rig.endpoint.open_connections == 0
    assert rig.endpoint.dropped["request too slow"] == 1
    assert any("no whole request in 10 s" in r.getMessage() for r in caplog.records)


def test_a_response_the_client_never_reads_is_dropped_at_the_deadline() -> None:
    r = Rig(body=b"x" * (32 << 20))  # far more than the socket buffers hold
    try:
        client = r.connect()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.sendall(GET)
        pump(r.loop, 3)
        assert r.endpoint.open_connections == 1  # still sending, not blocking the loop
        r.clock.advance(10.0)
        pump(r.loop, 2)
        assert r.endpoint.open_connections == 0
        assert r.endpoint.dropped["response not read"] == 1
    finally:
        r.close()


def test_a_hundred_connections_at_once_32_are_kept_the_rest_refused(rig: Rig) -> None:
    clients = [rig.connect() for _ in range(100)]
    pump(rig.loop, 10)
    assert rig.endpoint.open_connections == 32
    assert rig.endpoint.refused == 68
    refused = 0
    for client in clients:
        client.settimeout(0.0)
        try:
            data = client.recv(4096)
        except BlockingIOError:
            continue  # one of the 32 kept, waiting for its request
        except ConnectionResetError:
            data = b""
        refused += 1
        if data:
            assert status_of(data) == 503
    assert refused == 68
    # A slot freed is a slot to use again.
    for client in clients:
        client.close()
    pump(rig.loop, 3)
    assert rig.endpoint.open_connections == 0
    assert status_of(rig.exchange(GET)) == 200


def test_a_flood_of_garbage_logs_a_line_per_reason_per_10_s(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="loopmon"):
        for _ in range(20):
            rig.exchange(b"garbage\r\n\r\n")
        rig.clock.advance(11.0)
        rig.exchange(b"garbage\r\n\r\n")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "(19 more like it since)" in lines[1]
    assert rig.endpoint.dropped["not an HTTP request line"] == 21


def test_eof_before_a_request_is_counted_quietly(rig: Rig) -> None:
    client = rig.connect()
    pump(rig.loop)
    client.close()
    pump(rig.loop, 2)
    assert rig.endpoint.open_connections == 0
    assert rig.endpoint.dropped["closed before a full request"] == 1


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        (b"Bearer wrong", 401),
        (b"Basic " + TOKEN, 401),
        (b"Bearer " + TOKEN + b"x", 401),
        (b"Bearer " + TOKEN, 200),
        (b"bearer " + TOKEN, 200),
    ],
)
def test_a_token_is_required_when_set(authorization: bytes | None, status: int) -> None:
    r = Rig(token=TOKEN)
    try:
        header = b"" if authorization is None else b"Authorization: " + authorization + b"\r\n"
        response = r.exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n")
        assert status_of(response) == status
        if status == 401:
            assert b"WWW-Authenticate: Bearer" in response
            assert BODY not in response
        # Without the token, not even which paths exist is told.
        response = r.exchange(b"GET /other HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n")
        assert status_of(response) == (404 if status == 200 else 401)
    finally:
        r.close()


def test_a_render_that_raises_is_a_500_and_the_loop_goes_on(rig: Rig) -> None:
    def broken(accept: str) -> tuple[bytes, str]:
        raise RuntimeError("boom")

    rig.endpoint.render = broken
    assert status_of(rig.exchange(GET)) == 500
    rig.endpoint.render = rig.render
    assert status_of(rig.exchange(GET)) == 200


def test_close_drops_every_connection(rig: Rig) -> None:
    clients = [rig.connect() for _ in range(3)]
    pump(rig.loop, 2)
    assert rig.endpoint.open_connections == 3
    rig.endpoint.close()
    assert rig.endpoint.open_connections == 0
    for client in clients:
        client.settimeout(5)
        assert client.recv(10) == b""


def test_an_fd_the_poller_cannot_watch_is_turned_away(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = rig.loop.add_handler

    def refuse(fd: object, handler: object, events: int) -> None:
        if handler == rig.endpoint._on_client:
            raise ValueError("fd 1500 is beyond select()'s FD_SETSIZE (1024)")
        real(fd, handler, events)  # type: ignore[arg-type]

    monkeypatch.setattr(rig.loop, "add_handler", refuse)
    client = rig.connect()
    pump(rig.loop, 2)
    assert status_of(read_all(client)) == 503
    assert rig.endpoint.refused == 1
    assert rig.endpoint.open_connections == 0
    monkeypatch.undo()
    assert status_of(rig.exchange(GET)) == 200


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_any_head_is_answered_or_refused_never_an_error(head: bytes) -> None:
    endpoint = _PARSER
    try:
        status, _, _, _ = endpoint._answer(head)
    except _BadRequest as bad:
        assert bad.status in (400, 401, 404, 405, 431, 505)
    else:
        assert status == 200


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([b"GET", b"HEAD", b"POST", b"G\x00T"]),
    st.sampled_from([b"/metrics", b"/", b"/metrics?a=b", b"*", b"\xff"]),
    st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.x"]),
    st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=20)), max_size=5),
)
def test_near_requests_are_answered_or_refused_never_an_error(
    method: bytes, target: bytes, version: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    head = b"\r\n".join(
        [b" ".join([method, target, version])] + [k + b": " + v for k, v in headers]
    )
    try:
        _PARSER._answer(head)
    except _BadRequest:
        pass


def _make_parser() -> MetricsEndpoint:
    # _answer touches neither the loop nor the socket: a bare instance will do.
    endpoint = MetricsEndpoint.__new__(MetricsEndpoint)
    endpoint.token = None
    endpoint.render = lambda accept: (BODY, "text/plain")
    return endpoint


_PARSER = _make_parser()


def test_what_a_client_sends_never_makes_a_new_reason(rig: Rig) -> None:
    # Drops are counted and logs throttled per reason: a reason quoting the request would let
    # a client grow both without bound.
    for n in range(50):
        rig.exchange(f"M{n} /metrics HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        rig.exchange(f"GET /metrics HTTP/1.{n}\r\nHost: x\r\n\r\n".encode())
        rig.exchange(f"GET /metrics HTTP/{n + 2}.0\r\nHost: x\r\n\r\n".encode())
    assert len(rig.endpoint.dropped) <= 3, rig.endpoint.dropped
    assert len(rig.endpoint._noted) <= 3


def test_the_caller_hears_of_each_client_socket_and_of_each_drop() -> None:
    # run keeps client sockets from a forked child (opened/closing) and prints drops as
    # loopmon: lines rather than through the program's logging (note).
    opened: list[int] = []
    closing: list[int] = []
    notes: list[str] = []
    rig = Rig(
        hooks={
            "opened": lambda sock: opened.append(sock.fileno()),
            "closing": lambda sock: closing.append(sock.fileno()),
            "note": notes.append,
        }
    )
    try:
        assert status_of(rig.exchange(b"GET /metrics HTTP/1.0\r\n\r\n")) == 200
        assert status_of(rig.exchange(b"garbage\r\n\r\n")) == 400
        assert len(opened) == 2 and closing == opened  # each told before its close
        assert len(notes) == 1 and "not an HTTP request line" in notes[0]
        assert notes[0].startswith(f"metrics {rig.endpoint.address}: ")
    finally:
        rig.close()
