"""The Waker: wakes a select() on its fd, coalesces, survives close() and concurrent wakes, and
never loses a wake-up. Every test runs on each transport this machine can build: eventfd, the
pipe fallback (forced with ``use_eventfd=False``) and Windows' socket pair (forced here too)."""

from __future__ import annotations

import os
import select
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopmon import waker as waker_module
from loopmon.waker import Waker

KINDS = ["pipe", "socketpair"] + (["eventfd"] if hasattr(os, "eventfd") else [])
WAIT = 5.0  # generous: only a lost wake-up ever waits this long


@pytest.fixture(params=KINDS)
def waker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Waker]:
    if request.param == "socketpair":
        monkeypatch.setattr(waker_module, "_FORCE_SOCKETS", True)
    made = Waker(use_eventfd=request.param == "eventfd")
    assert made.kind == request.param
    yield made
    made.close()


def readable(waker: Waker, timeout: float = 0.0) -> bool:
    return bool(select.select([waker.fileno()], [], [], timeout)[0])


def writes_pending(waker: Waker) -> int:
    """How many wake() calls reached the fd: bytes queued, or the eventfd's counter."""
    if waker.kind == "eventfd":
        info = Path(f"/proc/self/fdinfo/{waker.fileno()}").read_text()
        for line in info.splitlines():
            if line.startswith("eventfd-count:"):
                return int(line.split()[1], 16)
        pytest.skip("this kernel does not show eventfd-count")
    import fcntl
    import termios

    buf = fcntl.ioctl(waker.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return int.from_bytes(buf, sys.byteorder, signed=True)


def test_default_transport() -> None:
    with_default = Waker()
    try:
        assert with_default.kind == ("eventfd" if hasattr(os, "eventfd") else "pipe")
    finally:
        with_default.close()


def test_wake_wakes_a_select_in_another_thread(waker: Waker) -> None:
    assert not readable(waker)
    result: list[bool] = []
    watcher = threading.Thread(target=lambda: result.append(readable(waker, WAIT)))
    watcher.start()
    waker.wake()
    watcher.join()
    assert result == [True]


def test_wakes_coalesce(waker: Waker) -> None:
    for _ in range(1000):
        waker.wake()
    assert readable(waker)
    assert writes_pending(waker) == 1
    waker.consume()
    assert not readable(waker)
    assert writes_pending(waker) == 0
    waker.wake()  # consume() re-armed it
    assert readable(waker)
    assert writes_pending(waker) == 1


def test_consume_without_a_wake_is_harmless(waker: Waker) -> None:
    waker.consume()
    assert not readable(waker)
    waker.wake()
    assert readable(waker)


def test_wake_on_a_full_fd_does_not_raise(waker: Waker) -> None:
    # Plays a second writer on the fd (the internals are the only way in) until it is full,
    # then checks that wake() shrugs and consume() drains everything.
    if waker.kind == "eventfd":
        os.eventfd_write(waker.fileno(), 0xFFFF_FFFF_FFFF_FFFE)  # the counter's maximum
    else:
        if waker._socks is not None:
            send = waker._socks[1].send
        else:
            wfd = waker._wfd
            send = lambda data: os.write(wfd, data)  # noqa: E731
        try:
            while True:
                send(b"\0" * 65536)
        except BlockingIOError:
            pass
    waker.wake()
    assert readable(waker)
    waker.consume()
    assert not readable(waker)
    waker.wake()
    assert readable(waker)


def test_after_close_everything_is_silent(waker: Waker) -> None:
    waker.wake()
    waker.close()
    assert waker.fileno() == -1
    waker.wake()
    waker.consume()
    waker.close()
    # A wake after close must not write to whatever file now has the old fd number.
    r, w = os.pipe()
    try:
        waker.wake()
        assert not select.select([r], [], [], 0)[0]
    finally:
        os.close(r)
        os.close(w)


def test_wake_landing_inside_consume_is_not_lost(waker: Waker) -> None:
    # Deterministically, the interleaving a signal handler (or a thread, were consume() not
    # locked) can produce: wake() calls arriving inside consume(), before and after its drain.
    # Whatever they do, the next wake() after consume() must make the fd readable: clearing the
    # flag before the drain would let the drain swallow a write and leave the flag set over an
    # empty fd, so that every later wake() is skipped.
    drain = waker._drain

    def wake_around_drain() -> None:
        waker.wake()
        drain()
        waker.wake()

    waker.wake()
    waker._drain = wake_around_drain  # type: ignore[method-assign]
    try:
        waker.consume()
    finally:
        del waker._drain
    waker.wake()
    assert readable(waker)


def test_concurrent_wakes_lose_nothing(waker: Waker) -> None:
    producers, per_producer = 4, 2000
    posted = [0] * producers  # each slot written by one producer only
    total = producers * per_producer
    outcome: list[str] = []

    def produce(slot: int) -> None:
        for _ in range(per_producer):
            posted[slot] += 1  # publish, then wake: the order the Mailbox uses
            waker.wake()

    def consume() -> None:
        seen = 0
        while seen < total:
            if not readable(waker, WAIT):
                outcome.append(f"lost a wake-up: saw {seen} of {total}, then nothing")
                return
            waker.consume()  # before reading the state, as the contract says
            seen = sum(posted)
        outcome.append("ok")

    consumer = threading.Thread(target=consume)
    threads = [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
    consumer.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    consumer.join()
    assert outcome == ["ok"]


def test_close_racing_with_wakes(waker: Waker) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(5)

    def hammer() -> None:
        start.wait()
        try:
            for _ in range(2000):
                waker.wake()
                waker.consume()
        except BaseException as exc:  # pragma: no cover - the failure being tested for
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    start.wait()
    waker.close()
    for thread in threads:
        thread.join()
    assert errors == []
    assert waker.fileno() == -1


@pytest.mark.skipif(hasattr(os, "eventfd"), reason="eventfd exists here")
def test_insisting_on_eventfd_where_there_is_none() -> None:
    with pytest.raises(OSError):
        Waker(use_eventfd=True)
