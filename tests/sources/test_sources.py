"""The window's sources against real producers on loopback: a publisher, an echo server and
telemetry on an IOLoop thread (serve's shape), read through a RemoteSource; and the in-process
source over a LoopRunner. What the window relies on: snapshots arrive in the one mailbox, every
close among them, commands round-trip by connection id, the link's states across a producer's
restart (a new session), and a command in flight when the link drops fails "link lost"."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from producers import TOKEN, Producer, wait_for

from loopmon.runner import LoopRunner
from loopmon.snapshot import ClosedConnection, Snapshot
from loopmon.sources import (
    CONNECTED,
    IN_PROCESS,
    LINKS,
    LOST,
    RECONNECTING,
    Source,
    Unsupported,
)
from loopmon.sources.inprocess import InProcessSource
from loopmon.sources.remote import RemoteSource
from loopmon.stream.client import LINK_LOST, LinkLost
from loopmon.wire.messages import COMMANDS


@pytest.fixture
def producer() -> Iterator[Producer]:
    p = Producer().start()
    yield p
    p.stop()


@pytest.fixture
def source(producer: Producer) -> Iterator[RemoteSource]:
    s = RemoteSource("127.0.0.1", producer.port, TOKEN, backoff=(0.02, 0.1))
    s.start()
    assert s.wait_connected(5)
    yield s
    s.stop()
    s.mailbox.close()


class Reader:
    """What the window's bridge does with a source's mailbox: take everything, in order."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.snapshots: list[Snapshot] = []

    def take(self) -> Snapshot | None:
        snapshot, _, _ = self.source.mailbox.take_by_kind()
        if snapshot is not None:
            self.snapshots.append(snapshot)
        return snapshot

    def until(self, predicate: Any, timeout: float = 10.0) -> Snapshot:
        def seen() -> bool:
            self.take()
            return bool(self.snapshots) and bool(predicate(self.snapshots[-1]))

        wait_for(seen, timeout)
        return self.snapshots[-1]

    @property
    def closed(self) -> list[ClosedConnection]:
        return [c for s in self.snapshots for c in s.closed]


def echo_once(port: int, data: bytes = b"ping") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        got += sock.recv(4096)
    assert got == data
    return sock


def test_the_remote_source_names_the_producer_and_the_link(
    producer: Producer, source: RemoteSource
) -> None:
    assert source.link == CONNECTED and source.link in LINKS
    info = source.producer
    assert info is not None and (info.kind, info.program, info.session) == (
        "serve", "loopmon serve", "s1",
    )  # fmt: skip
    assert source.commands == frozenset(COMMANDS)
    assert not source.can_switch_backend
    assert source.available_backends == [info.backend]
    with pytest.raises(Unsupported, match="does not switch backends"):
        source.restart("poll").result(1)
    reader = Reader(source)
    assert reader.until(lambda s: s.session == "s1").session == "s1"


def test_commands_round_trip_start_stop_close_by_id_and_strategy(
    producer: Producer, source: RemoteSource
) -> None:
    row = source.start_listener("127.0.0.1", 0).result(5)
    assert row is not None and row.state == "listening" and row.port > 0
    reader = Reader(source)
    client = echo_once(row.port)
    snap = reader.until(lambda s: len(s.connections) == 1)
    [conn] = snap.connections
    assert source.close_connection(conn.id).result(5) is None
    client.settimeout(5)
    assert client.recv(1) == b""  # the producer closed it
    reader.until(lambda _s: any(c.row.id == conn.id for c in reader.closed))
    [gone] = [c for c in reader.closed if c.row.id == conn.id]
    assert gone.reason == "closed by user"
    assert source.set_strategy("seed").result(5) is None
    reader.until(lambda s: s.strategy == "seed")
    assert source.stop_listener(row.id).result(5) is None
    reader.until(lambda s: all(lr.state != "listening" for lr in s.listeners))
    client.close()
    kinds = [type(call).__name__ for call in producer.calls]
    assert kinds == ["StartListener", "CloseConnection", "SetStrategy", "StopListener"]


def test_no_close_is_lost_while_the_reader_does_not_take(
    producer: Producer, source: RemoteSource
) -> None:
    """Snapshots replace each other in the mailbox while the window is busy: the closes of
    those it never saw come with the one it takes."""
    row = source.start_listener("127.0.0.1", 0).result(5)
    assert row is not None
    reader = Reader(source)
    clients = [echo_once(row.port) for _ in range(5)]
    snap = reader.until(lambda s: len(s.connections) == 5)
    ids = {c.id for c in snap.connections}
    before = source.client.snapshots
    for client in clients:  # one by one, snapshots apart, none taken meanwhile
        client.close()
        seen = source.client.snapshots
        wait_for(lambda seen=seen: source.client.snapshots >= seen + 2)
    assert source.client.snapshots >= before + 10
    reader.until(lambda _s: {c.row.id for c in reader.closed} >= ids)
    assert sorted(c.row.id for c in reader.closed) == sorted(ids)  # each once


def test_a_restarted_producer_is_a_new_session_and_the_link_says_so() -> None:
    first = Producer(session="s1").start()
    source = RemoteSource("127.0.0.1", first.port, TOKEN, backoff=(0.02, 0.1))
    links: list[str] = []
    source.client.on_status = lambda _status, _error: links.append(source.link)
    source.start()
    reader = Reader(source)
    try:
        assert source.wait_connected(5)
        mailbox = source.mailbox
        reader.until(lambda s: s.session == "s1")
        first.stop()
        wait_for(lambda: source.link == RECONNECTING)
        assert source.commands == frozenset()  # nothing is offered while the link is down
        with pytest.raises(LinkLost, match="not connected"):
            source.start_listener("127.0.0.1", 0).result(1)
        second = Producer(port=first.port, session="s2").start()
        try:
            wait_for(lambda: source.link == CONNECTED)
            assert source.producer is not None and source.producer.session == "s2"
            reader.until(lambda s: s.session == "s2")
            assert source.mailbox is mailbox  # one door across reconnects
            sessions = [s.session for s in reader.snapshots]
            assert sessions == sorted(sessions)  # all of s1's, then s2's
        finally:
            second.stop()
    finally:
        source.stop()
        source.mailbox.close()
    assert links[0] == CONNECTED and RECONNECTING in links and links[-1] == LOST
    assert source.link == LOST  # stopped: given up, and says so


def test_a_command_in_flight_when_the_link_drops_fails_link_lost() -> None:
    def dies(_server: Any, publisher: Any) -> Any:
        def run(_call: Any) -> None:
            publisher.close("the producer died mid-command")

        return run

    producer = Producer(handler=dies).start()
    source = RemoteSource("127.0.0.1", producer.port, TOKEN, backoff=(0.02, 0.1))
    source.start()
    try:
        assert source.wait_connected(5)
        future: Future[Any] = source.start_listener("127.0.0.1", 0)
        with pytest.raises(LinkLost, match=LINK_LOST):
            future.result(5)
        assert str(future.exception()) == "link lost, outcome unknown"
    finally:
        source.stop()
        source.mailbox.close()
        producer.stop()


def test_a_producer_that_takes_no_commands_is_refused_locally() -> None:
    producer = Producer(kind="run", program="app.py", commands=()).start()
    source = RemoteSource("127.0.0.1", producer.port, TOKEN)
    source.start()
    try:
        assert source.wait_connected(5)
        assert source.commands == frozenset()
        for future in (
            source.start_listener("127.0.0.1", 0),
            source.stop_listener(1),
            source.close_connection(1),
            source.set_strategy("seed"),
        ):
            with pytest.raises(Unsupported, match=r"app\.py does not take"):
                future.result(1)
        assert producer.calls == []  # nothing went over the wire
    finally:
        source.stop()
        source.mailbox.close()
        producer.stop()


def test_stopping_the_source_never_stops_the_producer(producer: Producer) -> None:
    source = RemoteSource("127.0.0.1", producer.port, TOKEN)
    source.start()
    assert source.wait_connected(5)
    assert source.stop()
    assert producer.alive
    again = RemoteSource("127.0.0.1", producer.port, TOKEN)
    again.start()
    try:
        assert again.wait_connected(5)
    finally:
        again.stop()
        again.mailbox.close()
        source.mailbox.close()


def test_the_in_process_source_closes_by_connection_id() -> None:
    source = InProcessSource(LoopRunner())
    source.start()
    try:
        assert source.link == IN_PROCESS and source.can_switch_backend
        assert source.commands == frozenset(COMMANDS)
        info = source.producer
        assert info.kind == "window" and info.session == source.runner.session
        row = source.start_listener("127.0.0.1", 0).result(5)
        assert row is not None
        reader = Reader(source)
        client = echo_once(row.port)
        [conn] = reader.until(lambda s: len(s.connections) == 1).connections
        with pytest.raises(KeyError, match="no open connection with id"):
            source.close_connection(conn.id + 1000).result(5)
        source.close_connection(conn.id).result(5)
        client.settimeout(5)
        assert client.recv(1) == b""
        client.close()
    finally:
        assert source.stop()
        source.mailbox.close()
