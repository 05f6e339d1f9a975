"""The IOLoop's contract on every backend: handlers, callbacks, running and stopping,
failures, and the classic singleton API. Timers, stalls and signals have files of their own
(test_timers, test_watchdog, test_signalpipe)."""

from __future__ import annotations

import contextvars
import errno
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future

import pytest

from loopmon.ioloop import IOLoop
from loopmon.loopstats import PassStats
from loopmon.snapshot import LoopFigures
from tests.loop_helpers import BACKENDS, FakeClock, run_one_pass


@pytest.fixture(params=BACKENDS)
def loop(request: pytest.FixtureRequest) -> Iterator[IOLoop]:
    io_loop = IOLoop(backend=request.param, make_current=False)
    yield io_loop
    io_loop.close(all_fds=True)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def run_until(loop: IOLoop, predicate: object, timeout: float = 5.0) -> None:
    """Run the loop until ``predicate()`` holds, checking after every pass."""
    deadline = time.monotonic() + timeout

    def check() -> None:
        if predicate() or time.monotonic() > deadline:  # type: ignore[operator]
            loop.stop()
        else:
            loop.call_later(0.001, check)

    loop.add_callback(check)
    loop.start()
    assert predicate(), "condition not reached in time"  # type: ignore[operator]


# -- constants and construction -----------------------------------------------------------


def test_event_constants_are_epolls() -> None:
    assert (IOLoop.NONE, IOLoop.READ, IOLoop.WRITE, IOLoop.ERROR) == (0, 0x001, 0x004, 0x018)


def test_default_backend_is_the_best_available() -> None:
    loop = IOLoop(make_current=False)
    try:
        assert loop.backend == BACKENDS[0]
    finally:
        loop.close()


def test_unknown_backend_lists_the_available_ones() -> None:
    with pytest.raises(ValueError, match=BACKENDS[0]):
        IOLoop(backend="io_uring", make_current=False)


def test_unavailable_backend_is_a_value_error() -> None:
    missing = [b for b in ("epoll", "kqueue", "poll", "select") if b not in BACKENDS]
    if not missing:
        pytest.skip("every backend works here")
    with pytest.raises(ValueError, match="available"):
        IOLoop(backend=missing[0], make_current=False)


def test_backend_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPMON_BACKEND", "select")
    loop = IOLoop(make_current=False)
    try:
        assert loop.backend == "select"
    finally:
        loop.close()


# -- handlers -----------------------------------------------------------------------------


def test_handler_gets_the_object_it_was_registered_with(
    loop: IOLoop, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    seen: list[tuple[object, int]] = []

    def on_ready(obj: object, events: int) -> None:
        seen.append((obj, events))
        loop.remove_handler(a)
        loop.stop()

    loop.add_handler(a, on_ready, IOLoop.READ)
    b.send(b"x")
    loop.start()
    assert seen == [(a, IOLoop.READ)]


def test_handler_with_int_fd(loop: IOLoop, pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    seen: list[object] = []

    def on_ready(fd: object, events: int) -> None:
        seen.append(fd)
        loop.stop()

    loop.add_handler(a.fileno(), on_ready, IOLoop.READ)
    b.send(b"x")
    loop.start()
    assert seen == [a.fileno()]
    loop.remove_handler(a.fileno())


def test_write_readiness_and_update(
    loop: IOLoop, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, _ = pair
    seen: list[int] = []

    def on_ready(fd: object, events: int) -> None:
        seen.append(events)
        if len(seen) == 1:
            loop.update_handler(a, IOLoop.READ)  # nothing to read: no more events
            loop.call_later(0.05, loop.stop)

    loop.add_handler(a, on_ready, IOLoop.WRITE)
    loop.start()
    assert seen == [IOLoop.WRITE]


def test_error_is_always_registered(
    loop: IOLoop, pair: tuple[socket.socket, socket.socket]
) -> None:
    if loop.backend == "select":
        pytest.skip("select() reports a hang-up only as readability, never unasked")
    a, b = pair
    seen: list[int] = []

    def on_ready(fd: object, events: int) -> None:
        seen.append(events)
        loop.remove_handler(a)
        loop.stop()

    # Registered for nothing: a hang-up still wakes it, as ERROR (or READ with EOF).
    loop.add_handler(a, on_ready, IOLoop.NONE)
    a.shutdown(socket.SHUT_WR)
    b.close()
    loop.start()
    assert seen and seen[0] & (IOLoop.ERROR | IOLoop.READ)


def test_registering_twice_raises(loop: IOLoop, pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    loop.add_handler(a, lambda fd, ev: None, IOLoop.READ)
    with pytest.raises(FileExistsError):
        loop.add_handler(a.fileno(), lambda fd, ev: None, IOLoop.READ)
    loop.remove_handler(a)


def test_removing_an_unknown_fd_changes_nothing(
    loop: IOLoop, pair: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    got: list[int] = []
    loop.add_handler(a.fileno(), lambda fd, ev: (got.append(ev), loop.stop()), IOLoop.READ)
    b.send(b"x")
    with caplog.at_level(logging.DEBUG, logger="loopmon"):
        loop.remove_handler(12345)
        loop.remove_handler(a.fileno() + 1000)
    assert not caplog.records  # nothing logged, nothing raised
    loop.start()
    assert got == [IOLoop.READ]  # the registered fd is still watched
    assert loop.stats().fds[0].fd == a.fileno()


def test_removing_another_fd_drops_its_pending_events(loop: IOLoop) -> None:
    pairs = [socket.socketpair() for _ in range(2)]
    try:
        calls: list[int] = []
        fds = [p[0].fileno() for p in pairs]

        def on_ready(fd: int, events: int) -> None:
            calls.append(fd)
            for other in fds:
                loop.remove_handler(other)
            loop.call_later(0.02, loop.stop)

        for fd in fds:
            loop.add_handler(fd, on_ready, IOLoop.READ)
        for _, w in pairs:
            w.send(b"x")
        loop.start()
        assert len(calls) == 1
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_an_fd_registered_after_the_poll_does_not_get_its_stale_event(loop: IOLoop) -> None:
    (a1, b1), (a2, b2) = socket.socketpair(), socket.socketpair()
    fds = [a1.fileno(), a2.fileno()]
    calls: list[object] = []
    try:

        def first(fd: int, events: int) -> None:
            # Replace the other fd's registration within the pass: the new handler must wait
            # for a poll of its own, not receive the event polled for the old one.
            calls.append(fd)
            other = fds[1] if fd == fds[0] else fds[0]
            loop.remove_handler(other)
            loop.add_handler(other, lambda fd, ev: calls.append("new"), IOLoop.READ)
            loop.remove_handler(fd)
            loop.stop()

        for fd in fds:
            loop.add_handler(fd, first, IOLoop.READ)
        b1.send(b"x")
        b2.send(b"x")
        loop.start()
        assert len(calls) == 1 and calls[0] in fds
    finally:
        for fd in fds:
            loop.remove_handler(fd)
        for s in (a1, b1, a2, b2):
            s.close()


def test_the_poll_count_goes_on_across_restarts(loop: IOLoop) -> None:
    def run_one_poll() -> int:
        loop.add_callback(lambda: loop.add_callback(loop.stop))  # one poll between the two
        loop.start()
        return loop.stats().iterations

    assert run_one_poll() == 1
    assert run_one_poll() == 2


def test_many_handlers(loop: IOLoop) -> None:
    pairs = [socket.socketpair() for _ in range(100)]
    try:
        got: set[int] = set()

        def on_ready(fd: int, events: int) -> None:
            got.add(fd)
            loop.remove_handler(fd)

        for a, b in pairs:
            loop.add_handler(a.fileno(), on_ready, IOLoop.READ)
            b.send(b"x")
        run_until(loop, lambda: len(got) == len(pairs))
    finally:
        for a, b in pairs:
            a.close()
            b.close()


# -- callbacks ----------------------------------------------------------------------------


def test_callbacks_run_in_order_with_args(loop: IOLoop) -> None:
    got: list[object] = []
    loop.add_callback(got.append, 1)
    loop.add_callback(lambda x, y=0: got.append((x, y)), 2, y=3)
    run_one_pass(loop)
    assert got == [1, (2, 3)]


def test_a_pass_runs_only_the_callbacks_queued_when_it_began() -> None:
    loop = IOLoop(backend=BACKENDS[0], make_current=False, time_func=FakeClock())
    got: list[int] = []

    def again(n: int) -> None:
        got.append(n)
        loop.add_callback(again, n + 1)

    loop.add_callback(again, 0)
    run_one_pass(loop)
    assert got == [0]
    run_one_pass(loop)
    assert got == [0, 1]
    loop.close()


def test_callbacks_run_in_the_context_they_were_scheduled_in(loop: IOLoop) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="none")
    got: list[str] = []
    var.set("scheduler")
    loop.add_callback(lambda: got.append(var.get()))
    loop.call_later(0, lambda: got.append(var.get()))
    loop.spawn_callback(lambda: got.append(var.get()))
    var.set("later")
    run_until(loop, lambda: len(got) == 3)
    assert sorted(got) == ["none", "scheduler", "scheduler"]


def test_add_callback_from_4_threads_runs_each_exactly_once() -> None:
    loop = IOLoop(make_current=False)
    per_thread = 250_000
    counts = [0, 0, 0, 0]

    def bump(i: int) -> None:
        counts[i] += 1

    def produce(i: int) -> None:
        add = loop.add_callback
        for _ in range(per_thread):
            add(bump, i)

    def watch() -> None:
        if all(threads_done) and not loop._callbacks:
            loop.stop()
        else:
            loop.call_later(0.01, watch)

    threads_done = [False] * 4

    def runner(i: int) -> None:
        produce(i)
        threads_done[i] = True

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(4)]
    loop.add_callback(watch)
    for t in threads:
        t.start()
    loop.start()
    for t in threads:
        t.join()
    # Anything appended after the last check still runs on a final pass.
    run_one_pass(loop)
    loop.close()
    assert counts == [per_thread] * 4
    assert sum(counts) == 1_000_000


def test_add_callback_wakes_a_sleeping_poll() -> None:
    loop = IOLoop(make_current=False)
    woke = threading.Event()
    thread = threading.Thread(target=loop.start)
    thread.start()
    try:
        time.sleep(0.05)  # let it block in poll; the assertion below does not depend on it
        loop.add_callback(woke.set)
        assert woke.wait(2.0)
    finally:
        loop.add_callback(loop.stop)
        thread.join(2.0)
        loop.close()
    assert not thread.is_alive()


def test_add_callback_after_close_is_dropped(loop: IOLoop) -> None:
    ran: list[str] = []
    loop.add_callback(ran.append, "queued before close")
    loop.close()
    loop.add_callback(ran.append, "after")
    loop.add_callback_from_signal(ran.append, "after, from a signal")
    loop.spawn_callback(ran.append, "spawned after")
    # Nothing is queued to run (close dropped what was waiting), and nothing ran.
    assert len(loop._callbacks) == 0
    assert ran == []
    with pytest.raises(RuntimeError, match="closed"):
        loop.start()


def test_add_future_runs_in_the_context_captured_at_add_future(loop: IOLoop) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    future: Future[int] = Future()
    seen: list[str] = []
    var.set("at add_future")
    loop.add_future(future, lambda f: (seen.append(var.get()), loop.stop()))
    var.set("later")

    def complete() -> None:
        var.set("completing thread")
        future.set_result(1)

    threading.Timer(0.01, complete).start()
    loop.start()
    assert seen == ["at add_future"]


@pytest.mark.parametrize(
    "error",
    [OSError(errno.EPIPE, "Broken pipe"), BrokenPipeError(), OSError(errno.EPIPE)],
    ids=["oserror", "brokenpipe", "one-arg"],
)
def test_a_handler_raising_epipe_is_not_an_error(
    loop: IOLoop,
    pair: tuple[socket.socket, socket.socket],
    error: OSError,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Tornado 4.5 ignores EPIPE from a handler: the client went away.
    a, b = pair
    calls: list[int] = []

    def handler(fd: int, events: int) -> None:
        calls.append(fd)
        loop.remove_handler(fd)
        loop.stop()
        raise error

    loop.add_handler(a.fileno(), handler, IOLoop.READ)
    b.send(b"x")
    with caplog.at_level(logging.ERROR, logger="loopmon"):
        loop.start()
    assert calls == [a.fileno()]
    assert loop.stats().error_count == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_add_future(loop: IOLoop) -> None:
    future: Future[int] = Future()
    got: list[int] = []
    loop.add_future(future, lambda f: (got.append(f.result()), loop.stop()))
    threading.Timer(0.01, future.set_result, (7,)).start()
    loop.start()
    assert got == [7]
    with pytest.raises(TypeError):
        loop.add_future(42, lambda f: None)  # type: ignore[arg-type]


# -- start, stop, run_sync, close ---------------------------------------------------------


def test_stop_before_start_makes_the_next_start_return_at_once(loop: IOLoop) -> None:
    loop.stop()
    started = time.monotonic()
    loop.start()
    assert time.monotonic() - started < 1.0
    got: list[int] = []
    loop.add_callback(got.append, 1)
    loop.add_callback(loop.stop)
    loop.start()
    assert got == [1]


def test_start_while_running_raises(loop: IOLoop) -> None:
    errors: list[BaseException] = []

    def again() -> None:
        try:
            loop.start()
        except RuntimeError as exc:
            errors.append(exc)
        loop.stop()

    loop.add_callback(again)
    loop.start()
    assert len(errors) == 1


def test_run_sync_returns_and_raises(loop: IOLoop) -> None:
    assert loop.run_sync(lambda: 42) == 42

    def fail() -> None:
        raise KeyError("nope")

    with pytest.raises(KeyError):
        loop.run_sync(fail)
    future: Future[str] = Future()
    loop.call_later(0.01, future.set_result, "later")
    assert loop.run_sync(lambda: future) == "later"

    async def coro() -> int:
        return 5

    assert loop.run_sync(coro) == 5


def test_run_sync_timeout(loop: IOLoop) -> None:
    never: Future[None] = Future()
    with pytest.raises(TimeoutError):
        loop.run_sync(lambda: never, timeout=0.05)


def test_close_all_fds_closes_registered_sockets(pair: tuple[socket.socket, socket.socket]) -> None:
    loop = IOLoop(make_current=False)
    a, _ = pair
    loop.add_handler(a, lambda fd, ev: None, IOLoop.READ)
    loop.close(all_fds=True)
    assert a.fileno() == -1
    loop.close()  # twice is harmless


def test_close_leaves_fds_open_by_default(pair: tuple[socket.socket, socket.socket]) -> None:
    loop = IOLoop(make_current=False)
    a, _ = pair
    loop.add_handler(a, lambda fd, ev: None, IOLoop.READ)
    loop.close()
    assert a.fileno() != -1


def test_closed_loop_refuses_to_start() -> None:
    loop = IOLoop(make_current=False)
    loop.close()
    with pytest.raises(RuntimeError):
        loop.start()


# -- failures ------------------------------------------------------------------------------


def test_raising_handler_is_logged_with_its_fd_and_the_loop_goes_on(
    loop: IOLoop, pair: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair

    def bad(fd: object, events: int) -> None:
        loop.remove_handler(a)
        loop.call_later(0.01, loop.stop)
        raise ValueError("handler broke")

    loop.add_handler(a, bad, IOLoop.READ)
    b.send(b"x")
    with caplog.at_level(logging.ERROR, logger="loopmon"):
        loop.start()
    assert any(f"fd {a.fileno()}" in r.getMessage() and r.exc_info for r in caplog.records), (
        caplog.text
    )
    errors = loop.stats().errors
    assert errors[-1].fd == a.fileno() and "handler broke" in errors[-1].traceback


def test_handle_callback_exception_is_looked_up_on_the_instance(loop: IOLoop) -> None:
    seen: list[tuple[object, object]] = []

    def mine(callback: object) -> None:
        import sys

        seen.append((callback, sys.exc_info()[1]))

    loop.handle_callback_exception = mine  # type: ignore[method-assign]

    def boom() -> None:
        raise ZeroDivisionError

    loop.add_callback(boom)
    loop.call_later(0, boom)
    run_until(loop, lambda: len(seen) == 2)
    assert seen[0][0] is boom and isinstance(seen[0][1], ZeroDivisionError)


def test_a_failed_future_returned_by_a_callback_is_reported(loop: IOLoop) -> None:
    seen: list[object] = []
    loop.handle_callback_exception = seen.append  # type: ignore[method-assign]
    failed: Future[None] = Future()
    failed.set_exception(RuntimeError("late"))
    loop.add_callback(lambda: failed)
    run_until(loop, lambda: len(seen) == 1)


def test_a_coroutine_returned_by_a_callback_runs_and_its_failure_is_reported(
    loop: IOLoop,
) -> None:
    seen: list[object] = []
    ran: list[str] = []
    loop.handle_callback_exception = seen.append  # type: ignore[method-assign]

    async def fine() -> None:
        ran.append("fine")

    async def broken() -> None:
        ran.append("broken")
        raise ValueError("in a coroutine")

    loop.add_callback(fine)
    loop.add_callback(broken)
    run_until(loop, lambda: len(seen) == 1)
    assert ran == ["fine", "broken"]


# -- singletons ----------------------------------------------------------------------------


@pytest.fixture
def clean_singletons() -> Iterator[None]:
    IOLoop.clear_instance()
    IOLoop.clear_current()
    yield
    if IOLoop._instance is not None:
        IOLoop._instance.close()
    IOLoop.clear_instance()
    IOLoop.clear_current()


@pytest.mark.usefixtures("clean_singletons")
def test_instance_is_lazy_and_shared_across_threads() -> None:
    assert not IOLoop.initialized()
    seen: list[IOLoop] = []
    threads = [threading.Thread(target=lambda: seen.append(IOLoop.instance())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert IOLoop.initialized()
    assert len({id(x) for x in seen}) == 1


@pytest.mark.usefixtures("clean_singletons")
def test_install_raises_when_one_exists() -> None:
    loop = IOLoop(make_current=False)
    loop.install()
    assert IOLoop.instance() is loop
    other = IOLoop(make_current=False)
    with pytest.raises(RuntimeError):
        other.install()
    other.close()


@pytest.mark.usefixtures("clean_singletons")
def test_current_and_make_current() -> None:
    assert IOLoop.current(instance=False) is None
    first = IOLoop()  # make_current=None: becomes current when there is none
    assert IOLoop.current() is first
    second = IOLoop()  # there is one: stays out of the way
    assert IOLoop.current() is first
    with pytest.raises(RuntimeError):
        IOLoop(make_current=True)
    second.make_current()
    assert IOLoop.current() is second
    IOLoop.clear_current()
    assert IOLoop.current(instance=False) is None
    assert IOLoop.current() is IOLoop.instance()
    assert IOLoop.current(instance=False) is IOLoop.instance()  # it became current (4.5)
    IOLoop.clear_current()
    seen: list[IOLoop | None] = []
    first.add_callback(lambda: (seen.append(IOLoop.current()), first.stop()))
    first.start()
    assert seen == [first]
    assert IOLoop.current(instance=False) is None
    first.close()
    second.close()


def test_an_idle_loop_sleeps_again_after_a_cross_thread_wake() -> None:
    # The waker is drained a pass after the callback it announced has run; if that drain were
    # lost, the level-triggered waker would stay readable and the loop would spin.
    loop = IOLoop(make_current=False)
    ran = threading.Event()
    thread = threading.Thread(target=loop.start)
    thread.start()
    try:
        for _ in range(3):
            ran.clear()
            loop.add_callback(ran.set)
            assert ran.wait(2.0)

        def passes() -> int:
            got: list[int] = []
            ran.clear()
            loop.add_callback(lambda: (got.append(loop.stats().iterations), ran.set()))
            assert ran.wait(2.0)
            return got[0]

        before = passes()
        time.sleep(0.3)  # three lag probes at most, so a few passes; a spin makes thousands
        assert passes() - before < 20
    finally:
        loop.add_callback(loop.stop)
        thread.join(2.0)
        loop.close()


def test_the_waker_is_internal_not_a_handler(loop: IOLoop) -> None:
    waker_fd = loop._waker.fileno()
    assert waker_fd in loop.internal_fds
    assert loop.fd_stat(waker_fd) is None
    assert all(stat.fd != waker_fd for stat in loop.stats().fds)
    # Its number is taken: registering it is the same error as any fd registered twice.
    with pytest.raises(FileExistsError):
        loop.add_handler(waker_fd, lambda fd, ev: None, IOLoop.READ)


def test_take_touched_sees_events_while_the_loop_keeps_running() -> None:
    # Telemetry takes the touched set 25 times a second from a loop that never restarts; an
    # event after a take must show up in the next one (a hot-path alias of the old set once
    # swallowed them).
    loop = IOLoop(make_current=False)
    a, b = socket.socketpair()
    got = threading.Event()

    def on_read(fd: object, events: int) -> None:
        a.recv(100)
        got.set()

    def take() -> set[int]:
        box: list[set[int]] = []
        done = threading.Event()
        loop.add_callback(lambda: (box.append(loop.take_touched()), done.set()))
        assert done.wait(2.0)
        return box[0]

    loop.add_handler(a, on_read, IOLoop.READ)
    thread = threading.Thread(target=loop.start)
    thread.start()
    try:
        take()
        for _ in range(3):
            got.clear()
            b.send(b"x")
            assert got.wait(2.0)
            assert a.fileno() in take()
        assert a.fileno() not in take()  # nothing since
    finally:
        loop.add_callback(loop.stop)
        thread.join(2.0)
        loop.close()
        a.close()
        b.close()


def test_pass_totals_are_exact_where_callbacks_and_timers_read_them() -> None:
    # The loop keeps its running totals in locals and publishes them before any callback or
    # timer runs, and when it stops: a reader there (telemetry is a timer) sees every pass.
    clock = FakeClock()
    loop = IOLoop(make_current=False, time_func=clock)
    a, b = socket.socketpair()
    dispatched: list[int] = []
    during: list[LoopFigures] = []
    last: list[PassStats] = []

    def check() -> None:
        during.append(loop.figures())
        last.append(loop.stats().last_pass)
        loop.stop()

    def handler(fd: int, events: int) -> None:
        a.recv(1)  # one byte a pass
        clock.advance(0.01)  # the only busy time the fake clock sees
        dispatched.append(events)
        if len(dispatched) == 3:
            loop.remove_handler(a.fileno())
            loop.call_at(clock.now, check)  # due at the start of the next pass

    try:
        loop.add_handler(a.fileno(), handler, IOLoop.READ)
        b.send(b"xyz")
        loop.start()
        (seen,) = during
        assert (seen.iterations, seen.events, seen.callbacks) == (3, 3, 0)
        assert seen.busy_s == pytest.approx(0.03)
        assert seen.poll_s == 0.0
        assert (last[0].events, last[0].callbacks, last[0].timers) == (1, 0, 0)
        assert last[0].busy_s == pytest.approx(0.01)
        after = loop.figures()
        assert (after.iterations, after.events, after.busy_s) == (3, 3, pytest.approx(0.03))
    finally:
        loop.close()
        a.close()
        b.close()
