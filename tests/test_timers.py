"""The loop's timers (``loopmon.timers``, through ``IOLoop.call_at`` and friends) and
``PeriodicCallback``: order, cancellation and compaction, periodic grids, on a fake clock."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterator

import pytest

from loopmon.ioloop import IOLoop, PeriodicCallback
from tests.loop_helpers import BACKENDS, FakeClock, RecordingPoller, run_one_pass


@pytest.fixture(params=BACKENDS)
def loop(request: pytest.FixtureRequest) -> Iterator[IOLoop]:
    io_loop = IOLoop(backend=request.param, make_current=False)
    yield io_loop
    io_loop.close(all_fds=True)


# -- timers -------------------------------------------------------------------------------


def test_timers_on_a_fake_clock_run_fifo_on_equal_deadlines() -> None:
    clock = FakeClock()
    loop = IOLoop(make_current=False, time_func=clock)
    got: list[str] = []
    loop.call_later(2, got.append, "c")
    loop.call_later(1, got.append, "a")
    loop.call_later(1, got.append, "b")
    loop.add_timeout(datetime.timedelta(seconds=3), got.append, "d")
    loop.call_at(clock.now + 0.5, got.append, "first")
    run_one_pass(loop)
    assert got == []
    clock.advance(1)
    run_one_pass(loop)
    assert got == ["first", "a", "b"]
    clock.advance(5)
    run_one_pass(loop)
    assert got == ["first", "a", "b", "c", "d"]
    loop.close()


def test_bad_deadline_is_a_type_error(loop: IOLoop) -> None:
    with pytest.raises(TypeError):
        loop.add_timeout("soon", lambda: None)  # type: ignore[arg-type]


def test_remove_timeout_and_compaction() -> None:
    clock = FakeClock()
    loop = IOLoop(make_current=False, time_func=clock)
    got: list[int] = []
    handles = [loop.call_later(1, got.append, i) for i in range(2000)]
    for h in handles[:1900]:
        loop.remove_timeout(h)
        loop.remove_timeout(h)  # twice is harmless
    assert len(loop._timers.heap) < 1000  # compacted, not 2000 dead entries
    assert len(loop._timers) == 100
    clock.advance(1)
    run_one_pass(loop)
    assert got == list(range(1900, 2000))
    loop.close()


@pytest.mark.parametrize("pattern", ["burst", "periodic"])
def test_compaction_while_running_never_leaves_the_loop_spinning(pattern: str) -> None:
    # The running loop holds the timer heap's list: a compaction that rebound it left the loop
    # reading a stale head (a timer that had fired) as due, and polling with timeout 0 forever.
    clock = FakeClock()
    loop = IOLoop(make_current=False, time_func=clock)
    recorder = RecordingPoller(loop, clock)
    compactions: list[float] = []

    def arm_and_cancel(n: int) -> None:
        size = len(loop._timers.heap)
        for h in [loop.call_later(30.0, lambda: None) for _ in range(n)]:
            loop.remove_timeout(h)
        if len(loop._timers.heap) < size + n:
            compactions.append(clock.now)

    if pattern == "burst":
        loop.call_later(0.05, lambda: None)  # live, and the head when the compaction runs
        loop.add_callback(arm_and_cancel, 600)
    else:
        # A server's request timeouts: a periodic callback arms and cancels 60 every 20 ms.
        PeriodicCallback(lambda: arm_and_cancel(60), 20, io_loop=loop).start()
    loop.call_later(3.0, loop.stop)
    loop.start()
    loop.close()
    assert compactions, "the test never compacted the heap"
    after = [p for p in recorder.polls if p[0] > compactions[0]]
    assert after and clock.now >= 3.0 + 1000.0 - 1e-9, "the loop stopped early: it spun"
    for now, timeout, head in after:
        assert timeout is not None and head is not None
        assert timeout > 0, f"polled with timeout 0 at {now} with the next timer at {head}"
        assert timeout == pytest.approx(head - now, abs=1e-9)


def test_a_timer_cancelled_by_one_due_in_the_same_pass_does_not_run() -> None:
    clock = FakeClock()
    loop = IOLoop(make_current=False, time_func=clock)
    got: list[str] = []
    second = loop.call_later(1, got.append, "second")
    loop.call_at(clock.now + 0.5, lambda: loop.remove_timeout(second))
    clock.advance(2)
    run_one_pass(loop)
    assert got == []
    loop.close()


def test_periodic_callback_skips_missed_ticks_and_keeps_its_grid() -> None:
    clock = FakeClock(0.0)
    loop = IOLoop(make_current=False, time_func=clock)
    calls: list[float] = []
    pc = PeriodicCallback(lambda: calls.append(clock.now), 100, io_loop=loop)
    pc.start()
    assert pc.is_running()
    clock.advance(0.1)
    run_one_pass(loop)
    assert calls == [0.1]
    clock.advance(0.35)  # now 0.45: ticks at 0.2, 0.3, 0.4 were missed
    run_one_pass(loop)
    assert calls == pytest.approx([0.1, 0.45])
    assert pc._timeout is not None
    assert pc._timeout.deadline == pytest.approx(0.5)  # back on the 100 ms grid
    pc.stop()
    clock.advance(1)
    run_one_pass(loop)
    assert len(calls) == 2
    loop.close()


def test_periodic_callback_needs_a_positive_period() -> None:
    with pytest.raises(ValueError):
        PeriodicCallback(lambda: None, 0)
    with pytest.raises(ValueError):
        PeriodicCallback(lambda: None, -5)


def test_periodic_callback_survives_a_raising_callback(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(0.0)
    loop = IOLoop(make_current=False, time_func=clock)
    calls = []

    def boom() -> None:
        calls.append(1)
        raise RuntimeError("tick")

    pc = PeriodicCallback(boom, 10, io_loop=loop)
    pc.start()
    with caplog.at_level(logging.ERROR, logger="loopmon"):
        for _ in range(3):
            clock.advance(0.01)
            run_one_pass(loop)
    assert len(calls) == 3
    pc.stop()
    loop.close()
