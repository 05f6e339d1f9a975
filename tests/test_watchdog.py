"""Stalls: the blocking threshold, the SIGALRM watchdog of a main-thread loop and its thread
fallback (``loopmon.watchdog``)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from types import FrameType

import pytest

from loopmon.ioloop import IOLoop
from loopmon.watchdog import Heartbeat, Watchdog
from tests.loop_helpers import BACKENDS, FakeClock, run_one_pass


@pytest.fixture(params=BACKENDS)
def loop(request: pytest.FixtureRequest) -> Iterator[IOLoop]:
    io_loop = IOLoop(backend=request.param, make_current=False)
    yield io_loop
    io_loop.close(all_fds=True)


# -- stalls --------------------------------------------------------------------------------


def test_blocking_threshold_logs_the_stack_once_and_records_the_stall(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = IOLoop(make_current=False)
    loop.set_blocking_log_threshold(0.05)

    def slow_callback_for_the_watchdog() -> None:
        time.sleep(0.3)

    loop.add_callback(slow_callback_for_the_watchdog)
    loop.add_callback(loop.stop)
    with caplog.at_level(logging.WARNING, logger="loopmon"):
        loop.start()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "slow_callback_for_the_watchdog" in warnings[0].getMessage()
    stall = loop.stats().stalls[-1]
    assert stall.duration_s >= 0.3
    assert "slow_callback_for_the_watchdog" in stall.what
    assert "slow_callback_for_the_watchdog" in stall.stack
    loop.close()


def _run_a_stall(loop: IOLoop, seen: dict[str, object]) -> None:
    def slow_callback_for_the_alarm() -> None:
        seen["mode"] = loop.watchdog_mode
        seen["threads"] = threading.active_count()
        time.sleep(0.3)

    loop.add_callback(slow_callback_for_the_alarm)
    loop.add_callback(loop.stop)
    loop.start()


@pytest.mark.timeout(120, method="thread")  # pytest-timeout's default takes SIGALRM
def test_a_main_thread_loop_can_be_watched_by_sigalrm_with_no_second_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    if not hasattr(signal, "setitimer"):
        pytest.skip("no setitimer here")
    if signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, signal.SIG_IGN, None):
        pytest.skip("SIGALRM is taken in this process (pytest-timeout?)")
    loop = IOLoop(make_current=False)
    loop.set_blocking_log_threshold(0.05, use_signal=True)
    seen: dict[str, object] = {}
    before = threading.active_count()
    with caplog.at_level(logging.WARNING, logger="loopmon"):
        _run_a_stall(loop, seen)
    assert seen == {"mode": "signal", "threads": before}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per stall, though the alarm fired a dozen times
    assert "slow_callback_for_the_alarm" in warnings[0].getMessage()
    stall = loop.stats().stalls[-1]
    assert stall.duration_s >= 0.3
    assert "slow_callback_for_the_alarm" in stall.stack
    # Stopped with the loop: the timer disarmed and SIGALRM given back.
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None)
    assert loop.watchdog_mode == "off"
    loop.close()


def test_the_alarm_watchdog_leaves_a_sigalrm_someone_else_owns_alone() -> None:
    if not hasattr(signal, "setitimer"):
        pytest.skip("no setitimer here")
    theirs = signal.getsignal(signal.SIGALRM)

    def their_handler(signum: int, frame: object) -> None:
        pass

    signal.signal(signal.SIGALRM, their_handler)
    try:
        loop = IOLoop(make_current=False)
        loop.set_blocking_log_threshold(0.05, use_signal=True)
        seen: dict[str, object] = {}
        _run_a_stall(loop, seen)
        assert seen["mode"] == "thread"
        assert signal.getsignal(signal.SIGALRM) is their_handler
        assert loop.stats().stalls[-1].duration_s >= 0.3
        loop.close()
    finally:
        signal.signal(signal.SIGALRM, theirs if theirs is not None else signal.SIG_DFL)


def test_the_alarm_watchdog_falls_back_to_a_thread_off_the_main_thread() -> None:
    loop = IOLoop(make_current=False)
    loop.set_blocking_log_threshold(0.05, use_signal=True)
    seen: dict[str, object] = {}
    worker = threading.Thread(target=_run_a_stall, args=(loop, seen))
    worker.start()
    worker.join(5)
    assert seen["mode"] == "thread"
    assert loop.stats().stalls[-1].duration_s >= 0.3
    loop.close()


def test_blocking_signal_threshold_calls_its_action_after_a_stall() -> None:
    clock = FakeClock()
    loop = IOLoop(make_current=False, time_func=clock)
    calls: list[tuple[int, object, int]] = []
    loop.set_blocking_signal_threshold(
        0.5, lambda signum, frame: calls.append((signum, frame, loop.stats().stall_count))
    )
    assert loop._stall_threshold == 0.5
    loop.add_callback(clock.advance, 0.2)  # quick: no action
    loop.add_callback(clock.advance, 0.7)  # a stall
    run_one_pass(loop)
    # Called once, on the loop thread, after the stall was recorded.
    assert calls == [(signal.SIGALRM, None, 1)]
    loop.set_blocking_signal_threshold(None)
    loop.add_callback(clock.advance, 5.0)
    run_one_pass(loop)
    assert len(calls) == 1
    loop.close()


# -- the SIGALRM handler does not run inside itself ----------------------------------------


def test_an_alarm_during_a_check_does_not_start_another(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [10.0]
    hb = Heartbeat()
    hb.started, hb.what = 0.0, "loop"  # busy for 10 s: a stall
    watchdog = Watchdog(hb, 1, 0.1, clock=lambda: now[0], use_signal=True)
    frame: FrameType | None = sys._getframe()
    calls = []
    real = traceback.format_stack

    def slow_format(f: FrameType | None = None) -> list[str]:
        # The next alarm is due while the stack is being formatted: Python would run the
        # handler again right here.
        calls.append(1)
        if len(calls) < 50:
            watchdog._on_alarm(14, frame)
        return real(f)

    monkeypatch.setattr(traceback, "format_stack", slow_format)
    watchdog._on_alarm(14, frame)
    assert len(calls) == 1
    assert hb.stack and hb.stack_for == 0.0
