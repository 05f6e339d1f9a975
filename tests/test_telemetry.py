"""Telemetry's numbers are exact: a scripted scenario on a fake clock, with real fds."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from loopmon.events import ERROR, READ, WRITE
from loopmon.ioloop import IOLoop, PeriodicCallback
from loopmon.mailbox import Mailbox
from loopmon.snapshot import ListenerRow
from loopmon.telemetry import Telemetry
from tests.loop_helpers import FakeClock, run_one_pass


@dataclass
class FakeConn:
    fd: int
    peer: str = "127.0.0.1:5000"
    listener_id: int = 1
    state: str = "open"
    queue_bytes: int = 0
    queue_chunks: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    messages: int = 0
    created: float = 0.0
    id: int = 0
    local: str = "127.0.0.1:10000"


@dataclass
class FakeServer:
    strategy: str = "seed"
    closed_bytes_in: int = 0
    closed_bytes_out: int = 0
    connections: dict[int, FakeConn] = field(default_factory=dict)

    def listener_rows(self) -> tuple[ListenerRow, ...]:
        return (ListenerRow(1, "127.0.0.1", 10000, "listening", accepted=len(self.connections)),)


@pytest.fixture
def world() -> Iterator[tuple[IOLoop, FakeClock, FakeServer, Telemetry, list[socket.socket]]]:
    clock = FakeClock(0.0)
    loop = IOLoop(make_current=False, time_func=clock)
    server = FakeServer()
    box = Mailbox()
    telemetry = Telemetry(loop, server, box, hz=1.0, cost_clock=clock)
    socks: list[socket.socket] = []
    yield loop, clock, server, telemetry, socks
    loop.close()
    box.close()
    for s in socks:
        s.close()


def connect(
    loop: IOLoop, clock: FakeClock, server: FakeServer, socks: list[socket.socket], mask: int
) -> int:
    a, b = socket.socketpair()
    socks += [a, b]
    loop.add_handler(a.fileno(), lambda fd, ev: None, mask)
    server.connections[a.fileno()] = FakeConn(a.fileno(), created=clock.now)
    return a.fileno()


def test_time_in_mask_fractions_are_exact(world) -> None:  # type: ignore[no-untyped-def]
    loop, clock, server, telemetry, socks = world
    fd = connect(loop, clock, server, socks, READ)
    clock.advance(0.25)
    loop.update_handler(fd, READ | WRITE)
    clock.advance(0.5)
    loop.update_handler(fd, READ)
    clock.advance(0.25)
    snap = telemetry.build()
    (row,) = snap.connections
    assert row.read_fraction == pytest.approx(1.0)
    assert row.write_fraction == pytest.approx(0.5)
    assert row.mask == READ | ERROR

    # A quiet interval: constant mask, exact 1 and 0.
    clock.advance(1.0)
    (row2,) = telemetry.build().connections
    assert (row2.read_fraction, row2.write_fraction) == (pytest.approx(1.0), 0.0)

    # Another quiet one: the very same row object is reused.
    clock.advance(1.0)
    (row3,) = telemetry.build().connections
    assert row3 is row2

    # Quiet for several intervals, then a flip: the base carried over the quiet ones is right.
    clock.advance(3.0)
    telemetry.build()
    clock.advance(0.1)
    loop.update_handler(fd, WRITE)
    clock.advance(0.9)
    (row4,) = telemetry.build().connections
    assert row4.read_fraction == pytest.approx(0.1)
    assert row4.write_fraction == pytest.approx(0.9)


def test_only_touched_rows_are_rebuilt_and_the_server_order_is_kept(world) -> None:  # type: ignore[no-untyped-def]
    loop, clock, server, telemetry, socks = world
    fds = [connect(loop, clock, server, socks, READ) for _ in range(3)]
    clock.advance(1.0)
    telemetry.build()
    clock.advance(1.0)
    before = telemetry.build().connections  # all quiet now
    clock.advance(0.5)
    loop.update_handler(fds[1], READ | WRITE)
    clock.advance(0.5)
    after = telemetry.build().connections
    assert [row.fd for row in after] == fds
    assert after[0] is before[0] and after[2] is before[2]
    assert after[1] is not before[1] and after[1].write_fraction == pytest.approx(0.5)
    # A connection that closed and one that opened on the same build are both seen.
    loop.remove_handler(fds[0])
    del server.connections[fds[0]]
    fresh = connect(loop, clock, server, socks, READ)
    clock.advance(1.0)
    rows = telemetry.build().connections
    assert [row.fd for row in rows] == [fds[1], fds[2], fresh]


def test_events_alone_make_a_quiet_row_be_rebuilt(world) -> None:  # type: ignore[no-untyped-def]
    # No mask change, no registration: only readiness. The loop marks the fd in its counters,
    # and telemetry must see it (a set-based version once lost these after the first build).
    loop, clock, server, telemetry, socks = world
    a, b = socket.socketpair()
    socks += [a, b]

    def on_read(fd: int, events: int) -> None:
        a.recv(100)
        loop.stop()

    loop.add_handler(a.fileno(), on_read, READ)
    server.connections[a.fileno()] = FakeConn(a.fileno(), created=clock.now)
    for _ in range(3):
        clock.advance(1.0)
        quiet = telemetry.build().connections
    assert telemetry.build().connections[0] is quiet[0]
    for _ in range(2):
        b.send(b"x")
        loop.start()
        clock.advance(1.0)
        (row,) = telemetry.build().connections
        assert row is not quiet[0]
        quiet = (row,)
    assert row.ready_read == 2


def test_a_50_microsecond_flip_still_counts(world) -> None:  # type: ignore[no-untyped-def]
    loop, clock, server, telemetry, socks = world
    fd = connect(loop, clock, server, socks, READ)
    clock.advance(0.5)
    loop.update_handler(fd, READ | WRITE)
    clock.advance(50e-6)
    loop.update_handler(fd, READ)
    clock.advance(0.5 - 50e-6)
    (row,) = telemetry.build().connections
    assert row.write_fraction == pytest.approx(50e-6)


def test_a_connection_born_mid_interval_counts_only_its_life(world) -> None:  # type: ignore[no-untyped-def]
    loop, clock, server, telemetry, socks = world
    clock.advance(0.5)
    connect(loop, clock, server, socks, READ)
    clock.advance(0.5)
    (row,) = telemetry.build().connections
    assert row.read_fraction == pytest.approx(0.5)
    assert telemetry.last is not None
    assert telemetry.last.age_of(row) == pytest.approx(0.5)


def test_closed_connections_leave_and_fd_reuse_is_not_confused(world) -> None:  # type: ignore[no-untyped-def]
    loop, clock, server, telemetry, socks = world
    fd = connect(loop, clock, server, socks, READ)
    clock.advance(1)
    telemetry.build()
    clock.advance(1)
    telemetry.build()
    loop.remove_handler(fd)
    del server.connections[fd]
    assert telemetry.build().connections == ()
    # A new connection object on the same fd number gets a fresh row.
    loop.add_handler(fd, lambda fd, ev: None, WRITE)
    server.connections[fd] = FakeConn(fd, peer="127.0.0.1:6000", created=clock.now)
    clock.advance(1)
    (row,) = telemetry.build().connections
    assert row.peer == "127.0.0.1:6000"
    assert row.write_fraction == pytest.approx(1.0)


def test_readiness_counts_and_loop_figures(world) -> None:  # type: ignore[no-untyped-def]
    loop, clock, server, telemetry, socks = world
    got: list[int] = []
    a, b = socket.socketpair()
    socks += [a, b]

    def on_read(fd: int, events: int) -> None:
        got.append(events)
        a.recv(100)
        loop.stop()

    loop.add_handler(a.fileno(), on_read, READ)
    server.connections[a.fileno()] = FakeConn(a.fileno())
    for _ in range(3):
        b.send(b"x")
        loop.start()
    assert len(got) == 3
    clock.advance(1.0)
    snap = telemetry.build()
    (row,) = snap.connections
    assert (row.ready_read, row.ready_write, row.ready_error) == (3, 0, 0)
    assert snap.interval.events >= 3
    assert snap.interval.span_s == pytest.approx(1.0)
    assert snap.totals.events == snap.interval.events
    assert snap.listeners[0].port == 10000


def test_tick_posts_snapshot_and_events(world) -> None:  # type: ignore[no-untyped-def]
    _loop, _clock, _server, telemetry, _socks = world
    telemetry.record("connect", "hello", 7)
    telemetry.tick()
    snap, events, dropped = telemetry.mailbox.take()
    assert snap is not None and snap.seq == 1
    assert [e.text for e in events] == ["hello"]
    assert snap.events[0].text == "hello"
    assert dropped == 0
    telemetry.tick()
    snap, events, _ = telemetry.mailbox.take()
    assert snap is not None and snap.seq == 2 and events == []


def test_periodic_cadence_on_the_fake_clock(world) -> None:  # type: ignore[no-untyped-def]
    loop, clock, _server, telemetry, _socks = world
    telemetry.start()
    for _ in range(5):
        clock.advance(1.0)
        run_one_pass(loop)
    telemetry.stop()
    seqs = []
    snap, _, _ = telemetry.mailbox.take()
    assert snap is not None
    seqs.append(snap.seq)
    assert seqs == [5]


def test_telemetry_skips_ticks_to_bound_its_share(world) -> None:  # type: ignore[no-untyped-def]
    _loop, clock, _server, telemetry, _socks = world
    telemetry.max_share = 0.05
    telemetry.tick_seconds = telemetry._tick_before = 0.1  # as if the last ticks took 100 ms
    telemetry.tick()  # 0 s since the last build: skipped
    assert telemetry.skipped == 1
    clock.advance(1.0)  # 1 s < 0.1 / 0.05 = 2 s: still skipped
    telemetry.tick()
    assert telemetry.skipped == 2
    clock.advance(1.5)
    telemetry.tick()
    assert telemetry.skipped == 2
    snap, _, _ = telemetry.mailbox.take()
    assert snap is not None and snap.interval.span_s == pytest.approx(2.5)


def test_the_share_counts_the_observers_too(world) -> None:  # type: ignore[no-untyped-def]
    # The publisher's encoding and sends run as an observer of the tick: they are telemetry's
    # cost to the loop as much as the build is, so the throttle counts them (on its cost
    # clock, the thread's CPU time unless told: here the fake clock).
    _loop, clock, _server, telemetry, _socks = world
    telemetry.observers.append(lambda snap: clock.advance(0.2))  # an observer taking 200 ms
    clock.advance(1.0)
    telemetry.tick()
    assert telemetry.tick_seconds == pytest.approx(0.2)
    assert telemetry.build_seconds == 0.0
    clock.advance(1.0)  # one slow tick alone skips nothing (a GC, a preemption)
    telemetry.tick()
    assert telemetry.skipped == 0
    clock.advance(1.0)  # two: 1 s < 0.2 / 0.1 = 2 s since the last tick: skipped
    telemetry.tick()
    assert telemetry.skipped == 1


def test_lag_is_the_quantile_of_the_last_ten_seconds_of_probe_samples() -> None:
    # The loop's own probe, on a fake clock whose polls oversleep by a scripted amount: the
    # snapshot's lag must be the samples' quantile over the window it names, not a bucket bound.
    import random

    from loopmon.loopstats import LagRecorder
    from tests.loop_helpers import RecordingPoller
    from tests.test_histogram import true_quantile

    clock = FakeClock(0.0)
    loop = IOLoop(make_current=False, time_func=clock)
    box = Mailbox()
    telemetry = Telemetry(loop, None, box, hz=25.0)
    rng = random.Random(7)
    recorder = RecordingPoller(loop, clock, max_polls=10**6)
    real_poll = recorder.poll

    def oversleeping_poll(timeout: float | None) -> list[tuple[int, int]]:
        events = real_poll(timeout)
        if timeout:
            clock.advance(rng.choice((0.00002, 0.0003, 0.0011, 0.0042, 0.02)) * rng.random())
        return events

    loop._poller.poll = oversleeping_poll  # type: ignore[method-assign]
    samples: list[tuple[float, float]] = []

    class Spy(LagRecorder):  # the probe's own samples, kept to compare
        def record(self, lateness: float) -> None:
            samples.append((clock.now, lateness))
            super().record(lateness)

    loop._lag = Spy()
    snaps = []
    box_take = box.take

    def collect() -> None:
        snap, _, _ = box_take()
        if snap is not None:
            snaps.append(snap)

    telemetry.start()
    PeriodicCallback(collect, 1000, io_loop=loop).start()
    loop.call_later(25.0, loop.stop)
    loop.start()
    telemetry.stop()
    assert len(snaps) >= 20
    for snap in snaps[12:]:
        lag = snap.lag
        window = [s for t, s in samples if snap.taken_at - lag.window_s < t <= snap.taken_at]
        assert 9.4 <= lag.window_s <= 10.0
        assert abs(lag.samples - len(window)) <= 1
        for q, got in ((0.5, lag.p50_s), (0.99, lag.p99_s)):
            want = true_quantile(window, q)
            assert got is not None
            assert abs(got - want) <= max(0.1 * want, 10e-6), (q, got, want)
    loop.close()
    box.close()


def test_an_idle_snapshot_reuses_the_rows_tuple_whole(world) -> None:  # type: ignore[no-untyped-def]
    # 10,000 idle connections must cost a snapshot what 100 do: nothing per row.
    loop, clock, server, telemetry, socks = world
    for _ in range(5):
        connect(loop, clock, server, socks, READ)
    clock.advance(1)
    telemetry.build()
    clock.advance(1)
    quiet = telemetry.build().connections
    clock.advance(1)
    assert telemetry.build().connections is quiet
    loop.update_handler(next(iter(server.connections)), READ | WRITE)
    clock.advance(1)
    assert telemetry.build().connections is not quiet


def test_the_byte_sums_kept_as_rows_change_equal_the_rows_sums(world) -> None:  # type: ignore[no-untyped-def]
    import random

    loop, clock, server, telemetry, socks = world
    rng = random.Random(7)
    for _step in range(300):
        action = rng.random()
        if action < 0.3 or not server.connections:
            connect(loop, clock, server, socks, READ)
        elif action < 0.8:
            fd = rng.choice(list(server.connections))
            conn = server.connections[fd]
            conn.bytes_in += rng.randrange(1, 5000)
            conn.bytes_out += rng.randrange(0, 5000)
            conn.queue_bytes = rng.randrange(0, 1 << 16)
            loop.update_handler(fd, rng.choice((READ, READ | WRITE)))  # the fd is touched
        else:
            fd = rng.choice(list(server.connections))
            gone = server.connections.pop(fd)
            server.closed_bytes_in += gone.bytes_in
            server.closed_bytes_out += gone.bytes_out
            loop.remove_handler(fd)
        clock.advance(rng.choice((0.0, 0.04, 1.0)))
        if rng.random() < 0.5:
            snap = telemetry.build()
            rows = snap.connections
            assert snap.queue_bytes == sum(r.queue_bytes for r in rows)
            open_in = sum(r.bytes_in for r in rows)
            assert snap.bytes_in == server.closed_bytes_in + open_in
            assert snap.bytes_out == server.closed_bytes_out + sum(r.bytes_out for r in rows)


def test_the_row_fast_path_keeps_the_entry_times_and_stays_exact(world) -> None:  # type: ignore[no-untyped-def]
    # ROW FAST PATH: a connection busy under a constant mask gets fractions of exactly 1 and
    # 0 by its mask, its entry keeps the times of the build that last did the arithmetic, and
    # a flip after several such intervals is still measured from the right base.
    loop, clock, server, telemetry, socks = world
    a, b = socket.socketpair()
    socks += [a, b]

    def on_read(fd: int, events: int) -> None:
        a.recv(100)
        loop.stop()

    loop.add_handler(a.fileno(), on_read, READ)
    conn = FakeConn(a.fileno(), created=clock.now)
    server.connections[a.fileno()] = conn
    clock.advance(1.0)
    telemetry.build()  # built with the arithmetic: its entry's times are taken now
    times = list(telemetry._tracked[a.fileno()][2:])
    rows = []
    for _ in range(3):
        b.send(b"x")
        loop.start()
        conn.bytes_in += 1
        clock.advance(1.0)
        (row,) = telemetry.build().connections
        rows.append(row)
        assert (row.read_fraction, row.write_fraction) == (1.0, 0.0)
    assert telemetry._tracked[a.fileno()][2:] == times  # the fast path: untouched times
    assert [r.ready_read for r in rows] == [1, 2, 3]
    assert telemetry.last is not None and telemetry.last.bytes_in == 3
    # Busy last time, quiet now: nothing moved, the same row object stands.
    clock.advance(1.0)
    assert telemetry.build().connections[0] is rows[-1]
    clock.advance(0.25)
    loop.update_handler(a.fileno(), READ | WRITE)
    clock.advance(0.75)
    (flipped,) = telemetry.build().connections
    assert flipped.read_fraction == pytest.approx(1.0)
    assert flipped.write_fraction == pytest.approx(0.75)


def test_gc_headroom_raises_the_gen0_threshold_and_never_lowers_it() -> None:
    # GC HEADROOM: serve's frames leave nothing behind but their peak of young objects (one
    # per changed row) must not trip the collector every frame.
    import gc

    from loopmon.telemetry import GC_GEN0_THRESHOLD, give_gc_headroom

    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 11, 12)
        give_gc_headroom()
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, 11, 12)
        gc.set_threshold(GC_GEN0_THRESHOLD * 2, 10, 10)
        give_gc_headroom()
        assert gc.get_threshold()[0] == GC_GEN0_THRESHOLD * 2
        gc.set_threshold(0)  # turned off: stays off
        give_gc_headroom()
        assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*saved)
