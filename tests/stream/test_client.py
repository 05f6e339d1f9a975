"""The client against real publishers on loopback: loopmon's IOLoop with an echo server on a
thread (as serve will run it), an asyncio loop, and a reactor the test drives."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from concurrent.futures import Future

import pytest
from stream_helpers import INFO, TOKEN, PumpReactor, snapshot

from loopmon.echo import EchoServer
from loopmon.ioloop import IOLoop, PeriodicCallback
from loopmon.mailbox import Mailbox
from loopmon.snapshot import ProducerInfo, Snapshot
from loopmon.stream.client import FAILED, LINK_LOST, Client, CommandFailed, LinkLost
from loopmon.stream.publisher import Publisher, echo_commands
from loopmon.stream.reactor import AsyncioReactor, IOLoopReactor
from loopmon.stream.tokens import TokenError
from loopmon.telemetry import Telemetry
from loopmon.wire import ConsumerHello, encode_message
from loopmon.wire.messages import COMMANDS


def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    # Polls a condition another thread makes true; the deadline is a failure, not a sleep.
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.005)


class Producer:
    """What serve does: an echo server, telemetry and a publisher on one loop thread."""

    def __init__(self, port: int = 0, session: str = "s1", token: bytes = TOKEN) -> None:
        self.port = port
        self.session = session
        self.token = token
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.loop: IOLoop | None = None
        self.publisher: Publisher | None = None

    def _main(self) -> None:
        loop = self.loop = IOLoop(make_current=False)
        server = EchoServer(loop)
        telemetry = Telemetry(loop, server, Mailbox(), session=self.session)
        server.on_close = telemetry.connection_closed
        info = ProducerInfo(
            "serve", "loopmon serve", 1, loop.backend, self.session, time.time(), COMMANDS
        )
        self.publisher = Publisher(
            IOLoopReactor(loop), info, self.token, port=self.port, commands=echo_commands(server)
        )
        self.publisher.start()
        self.port = self.publisher.address[1]
        PeriodicCallback(
            lambda: self.publisher.publish(telemetry.build()), 20, io_loop=loop
        ).start()  # type: ignore[union-attr]
        self.ready.set()
        loop.start()
        server.close_all()
        loop.close(all_fds=False)

    def start(self) -> Producer:
        self.thread.start()
        self.ready.wait(5)
        return self

    def stop(self) -> None:
        assert self.loop is not None and self.publisher is not None
        self.loop.add_callback(self.publisher.close)
        self.loop.add_callback(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def producer():  # type: ignore[no-untyped-def]
    p = Producer().start()
    yield p
    p.stop()


def test_snapshots_reach_the_mailbox_and_commands_come_back(producer: Producer) -> None:
    mailbox = Mailbox()
    every: list[Snapshot] = []
    client = Client("127.0.0.1", producer.port, TOKEN, mailbox=mailbox, on_snapshot=every.append)
    client.start()
    try:
        assert client.wait_connected(5)
        assert client.producer is not None and client.producer.session == "s1"
        row = client.start_listener("127.0.0.1", 0).result(5)
        assert row is not None and row.port > 0 and row.state == "listening"
        echo = socket.create_connection(("127.0.0.1", row.port), timeout=5)
        echo.sendall(b"x" * 1000)
        got = b""
        while len(got) < 1000:
            got += echo.recv(4096)
        assert got == b"x" * 1000
        seen: list[Snapshot] = []

        def echoed() -> bool:
            snap, _, _ = mailbox.take()
            if snap is not None:
                seen.append(snap)
            return bool(seen) and any(c.bytes_in == 1000 for c in seen[-1].connections)

        wait_for(echoed)
        [conn] = seen[-1].connections
        assert client.close_connection(conn.id).result(5) is None
        wait_for(lambda: echo.recv(1) == b"")
        with pytest.raises(CommandFailed, match=f"no open connection with id {conn.id}") as info:
            client.close_connection(conn.id).result(5)
        assert info.value.kind == "KeyError"

        # The mailbox keeps only the latest snapshot; the close is in the one after it.
        wait_for(lambda: any(c.row.id == conn.id for s in list(every) for c in s.closed))
        [gone] = [c for s in every for c in s.closed if c.row.id == conn.id]
        assert gone.reason == "closed by user" and gone.row.bytes_in == 1000
        echo.close()
    finally:
        client.stop()


def test_a_restarted_producer_is_a_new_session() -> None:
    first = Producer(session="s1").start()
    sessions: list[str] = []
    client = Client(
        "127.0.0.1", first.port, TOKEN, on_snapshot=lambda s: sessions.append(s.session),
        backoff=(0.02, 0.1),
    )  # fmt: skip
    client.start()
    try:
        wait_for(lambda: "s1" in sessions)
        first.stop()
        wait_for(lambda: client.status != "connected")
        second = Producer(port=first.port, session="s2").start()
        try:
            wait_for(lambda: "s2" in sessions)
            assert client.connections == 2 and client.producer.session == "s2"  # type: ignore[union-attr]
        finally:
            second.stop()
    finally:
        client.stop()


def test_a_token_source_is_asked_before_each_attempt_until_it_has_one() -> None:
    """A restarted producer has a new token: the client asks where it is each time, and
    keeps trying while there is none yet (its file not written), then uses the new one."""
    first = Producer(session="s1").start()
    sessions: list[str] = []
    asked: list[bytes | None] = []
    current: list[bytes | None] = [TOKEN]

    def token() -> bytes:
        asked.append(current[0])
        if current[0] is None:
            raise TokenError("no token for the port yet")
        return current[0]

    client = Client(
        "127.0.0.1", first.port, token, on_snapshot=lambda s: sessions.append(s.session),
        backoff=(0.02, 0.05),
    )  # fmt: skip
    client.start()
    try:
        wait_for(lambda: "s1" in sessions)
        current[0] = None
        first.stop()
        wait_for(lambda: asked.count(None) >= 2)  # tried, and had none
        assert client.status == "reconnecting" and "no token" in client.error
        new = bytes(range(100, 132))
        second = Producer(port=first.port, session="s2", token=new).start()
        current[0] = new
        try:
            wait_for(lambda: "s2" in sessions)
            assert client.connections == 2
        finally:
            second.stop()
    finally:
        client.stop()


def test_a_command_in_flight_when_the_link_drops_fails_link_lost() -> None:
    reactor = PumpReactor()
    publisher: Publisher

    def dies(call: object) -> None:
        publisher.close("the producer died mid-command")

    publisher = Publisher(reactor, INFO, TOKEN, commands=dies)  # type: ignore[arg-type]
    publisher.start()
    client = Client("127.0.0.1", publisher.address[1], TOKEN, reconnect=False)
    client.start()
    try:
        while client.status != "connected":
            reactor.pump(1, 0.01)
        future: Future[object] = client.stop_listener(1)  # type: ignore[assignment]
        while not future.done():
            reactor.pump(1, 0.01)
        with pytest.raises(LinkLost, match=LINK_LOST):
            future.result()
        wait_for(lambda: client.status == FAILED)
        with pytest.raises(LinkLost, match="not connected"):
            client.stop_listener(1).result(1)
    finally:
        client.stop()


def test_a_wrong_token_is_one_clear_failure() -> None:
    reactor = PumpReactor()
    publisher = Publisher(reactor, INFO, TOKEN)
    publisher.start()
    client = Client("127.0.0.1", publisher.address[1], bytes(32))
    client.start()
    try:
        end = time.monotonic() + 10
        while client.status != FAILED and time.monotonic() < end:
            reactor.pump(1, 0.01)
        assert client.status == FAILED
        assert "token" in client.error and "\n" not in client.error
    finally:
        client.stop()
        publisher.close()


@pytest.mark.parametrize(
    ("sent", "said"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "not a loopmon telemetry stream"),
        (struct.pack(">IB", 2, 0x77) + b"x", "not a loopmon telemetry stream"),
        (struct.pack(">IB", 10, 0x02) + b"LMON\x02hello", "the producer speaks protocol version 2"),
    ],
)
def test_a_stream_it_cannot_read_is_one_clear_failure(sent: bytes, said: str) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        conn.sendall(sent)
        conn.recv(100)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    client = Client("127.0.0.1", port, TOKEN)
    client.start()
    try:
        wait_for(lambda: client.status == FAILED)
        assert said in client.error and "\n" not in client.error
        assert client.error.count("not a loopmon") <= 1  # said once
    finally:
        client.stop()
        listener.close()


def test_the_asyncio_adapter() -> None:
    loop = asyncio.new_event_loop()
    holder: list[Publisher] = []
    ready = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        publisher = Publisher(AsyncioReactor(loop), INFO, TOKEN)
        publisher.start()
        holder.append(publisher)
        seq = iter(range(1, 10**6))

        def tick() -> None:
            publisher.publish(snapshot(next(seq), bump=1))
            loop.call_later(0.02, tick)

        tick()
        ready.set()
        loop.run_forever()
        publisher.close()
        loop.close()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    ready.wait(5)
    got: list[Snapshot] = []
    client = Client("127.0.0.1", holder[0].address[1], TOKEN, on_snapshot=got.append)
    client.start()
    try:
        wait_for(lambda: len(got) >= 5)
        assert [s.seq for s in got] == list(range(got[0].seq, got[0].seq + len(got)))
        assert got[-1].connections == snapshot(got[-1].seq, bump=1).connections
    finally:
        client.stop()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def test_bad_consumers_while_the_echo_goes_on(producer: Producer) -> None:
    """Garbage, a gigabyte prefix, a wrong token and a consumer that never reads, thrown at
    the telemetry port while a client echoes: every byte comes back, and a good consumer
    still attaches."""
    good = Client("127.0.0.1", producer.port, TOKEN)
    good.start()
    try:
        assert good.wait_connected(5)
        row = good.start_listener("127.0.0.1", 0).result(5)
        assert row is not None
        echo = socket.create_connection(("127.0.0.1", row.port), timeout=5)
        never_reads = socket.create_connection(("127.0.0.1", producer.port), timeout=5)
        never_reads.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        never_reads.sendall(encode_message(ConsumerHello(TOKEN)))
        bad = [
            b"GET / HTTP/1.1\r\n\r\n",
            struct.pack(">IB", 1 << 30, 1),
            encode_message(ConsumerHello(bytes(32))),
        ]
        for i in range(300):
            if i % 30 == 0:
                attacker = socket.create_connection(("127.0.0.1", producer.port), timeout=5)
                attacker.sendall(bad[(i // 30) % len(bad)])
                attacker.close()
            payload = bytes([i % 256]) * 512
            echo.sendall(payload)
            got = b""
            while len(got) < len(payload):
                got += echo.recv(65536)
            assert got == payload
        late = Client("127.0.0.1", producer.port, TOKEN)
        late.start()
        assert late.wait_connected(5)
        late.stop()
        echo.close()
        never_reads.close()
    finally:
        good.stop()
