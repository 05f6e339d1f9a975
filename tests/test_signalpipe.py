"""Signals: ``add_callback_from_signal`` and the loop's own signal pipe
(``loopmon.signalpipe``), and a start whose setup fails."""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from loopmon.ioloop import IOLoop
from tests.loop_helpers import BACKENDS


@pytest.fixture(params=BACKENDS)
def loop(request: pytest.FixtureRequest) -> Iterator[IOLoop]:
    io_loop = IOLoop(backend=request.param, make_current=False)
    yield io_loop
    io_loop.close(all_fds=True)


# -- signals -------------------------------------------------------------------------------


def test_add_callback_from_signal_wakes_the_loop_on_the_main_thread() -> None:
    loop = IOLoop(make_current=False)
    old = signal.signal(signal.SIGUSR1, lambda *_: loop.add_callback_from_signal(loop.stop))
    try:
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        started = time.monotonic()
        loop.start()
        assert time.monotonic() - started < 3.0
    finally:
        signal.signal(signal.SIGUSR1, old)
        loop.close()


def test_a_signal_is_not_an_event_and_its_pipe_is_the_loops_own() -> None:
    # The stall watch's SIGALRM ticks made an idle `loopmon serve` report ~40 events/s, and
    # the signal pipe was a handler like any program fd.
    loop = IOLoop(make_current=False)
    seen: dict[str, object] = {}
    count = [0]

    def on_usr1(signum: int, frame: object) -> None:
        count[0] += 1
        if count[0] == 3:
            loop.add_callback_from_signal(loop.stop)

    timers = [
        threading.Timer(delay, os.kill, (os.getpid(), signal.SIGUSR1))
        for delay in (0.05, 0.1, 0.15)
    ]

    def look() -> None:
        assert loop._signal_pipe is not None
        rfd = loop._signal_pipe.read_fd
        seen["internal"] = rfd in loop.internal_fds
        seen["stat"] = loop.fd_stat(rfd)
        for timer in timers:
            timer.start()

    old = signal.signal(signal.SIGUSR1, on_usr1)
    try:
        loop.add_callback(look)
        loop.call_later(5.0, loop.stop)  # a bound, should the signals never stop it
        loop.start()
    finally:
        for timer in timers:
            timer.cancel()
            if timer.is_alive():
                timer.join()
        signal.signal(signal.SIGUSR1, old)
    stats = loop.stats()
    loop.close()
    assert count[0] == 3
    assert seen == {"internal": True, "stat": None}
    assert stats.events == 0  # three signals woke the loop; no handler ran
    assert stats.iterations >= 3


def test_a_signal_pipe_the_poller_cannot_watch_leaves_signals_to_the_waker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # select() cannot watch an fd past FD_SETSIZE: `loopmon load --backend select` with 1,020
    # clients died on it with a traceback. The loop runs on without the pipe.
    loop = IOLoop(make_current=False)

    def refuse(fd: int, events: int) -> None:
        raise ValueError(f"fd {fd} is beyond select()'s FD_SETSIZE")

    monkeypatch.setattr(loop._poller, "register", refuse)
    old = signal.signal(signal.SIGUSR1, lambda *_: loop.add_callback_from_signal(loop.stop))
    timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        timer.start()
        started = time.monotonic()
        loop.start()
        assert time.monotonic() - started < 3.0
        assert loop._signal_pipe is None
        assert signal.set_wakeup_fd(-1) == -1  # nothing left installed
    finally:
        # No SIGUSR1 may land after its handler is gone: that would kill the test run.
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGUSR1, old)
        loop.close()


def assert_left_stopped_and_runs_again(loop: IOLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a start() whose setup failed: the loop is neither running, watched nor current,
    and once the fault is undone it starts, runs and closes like any other."""
    assert not loop.is_running() and loop.watchdog_mode == "off"
    assert IOLoop.current(instance=False) is not loop
    monkeypatch.undo()
    loop.add_callback(loop.stop)
    loop.start()
    loop.close()


def test_a_start_whose_setup_fails_leaves_the_loop_stopped_and_closable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Out of descriptors, the signal pipe cannot be made. start() must raise that, and leave
    # the loop neither "running" nor current, so it can be closed or started again.
    loop = IOLoop(make_current=False)
    loop.set_blocking_log_threshold(1.0)

    def no_fds(*args: object) -> tuple[int, int]:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(os, "pipe2", no_fds)
    monkeypatch.setattr(os, "pipe", no_fds)
    with pytest.raises(OSError, match="Too many open files"):
        loop.start()
    assert_left_stopped_and_runs_again(loop, monkeypatch)  # once descriptors are back


def test_a_watchdog_thread_that_will_not_start_leaves_the_loop_closable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = IOLoop(make_current=False)
    loop.set_blocking_log_threshold(1.0)
    real_start = threading.Thread.start

    def refuse(self: threading.Thread) -> None:
        if self.name == "loopmon-watchdog":
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        loop.start()
    assert signal.set_wakeup_fd(-1) == -1  # the loop's signal pipe is not left installed
    assert_left_stopped_and_runs_again(loop, monkeypatch)
