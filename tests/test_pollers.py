"""One contract for every poller that constructs here (CPython's test_selectors.py is the model).

Readiness is real: socket.socketpair() ends are written, read and closed. Where the machine has
no kqueue, KqueuePoller still runs the contract over an emulated select.kqueue (built on poll(2))
so that its Python bookkeeping, the filter diffs and the per-filter merge, is exercised; only
macOS and the BSDs test it against the real kernel.
"""

from __future__ import annotations

import errno
import importlib.util
import math
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from loopmon import pollers
from loopmon.events import ALL, ERROR, NONE, READ, WRITE
from loopmon.pollers import Poller

AVAILABLE = pollers.available()
EMULATE_KQUEUE = "kqueue" not in AVAILABLE and hasattr(select, "poll")
PARAMS = AVAILABLE + (["kqueue-emulated"] if EMULATE_KQUEUE else [])
KERNEL_OBJECT = {"epoll", "kqueue"}  # backends whose fileno() is a real fd
WAIT = 5.0  # generous: a poll that should see readiness returns as soon as it does

Pair = tuple[socket.socket, socket.socket]


# -- an emulated kqueue, for machines without one ----------------------------------------------

# macOS's values (FreeBSD's agree).
KQ = {
    "KQ_FILTER_READ": -1,
    "KQ_FILTER_WRITE": -2,
    "KQ_EV_ADD": 0x1,
    "KQ_EV_DELETE": 0x2,
    "KQ_EV_ERROR": 0x4000,
    "KQ_EV_EOF": 0x8000,
}


class FakeKevent:
    def __init__(
        self, ident: int, filter: int = -1, flags: int = 0x1, fflags: int = 0, data: int = 0
    ) -> None:
        self.ident = ident
        self.filter = filter
        self.flags = flags
        self.fflags = fflags
        self.data = data


class FakeKqueue:
    """select.kqueue's interface over poll(2), with kqueue's rules: a filter per direction,
    EBADF/ENOENT from changes, EV_EOF on every registered filter at hang-up, and a closed fd's
    filters silently gone."""

    def __init__(self) -> None:
        self._filters: set[tuple[int, int]] = set()
        self._fd, self._spare = os.pipe()  # a real fd number to hand out as fileno()
        self.closed = False

    def fileno(self) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed kqueue object")
        return self._fd

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._fd)
            os.close(self._spare)

    def control(
        self, changelist: Iterable[FakeKevent] | None, maxevents: int, timeout: float | None = None
    ) -> list[FakeKevent]:
        if self.closed:
            raise ValueError("I/O operation on closed kqueue object")
        for kev in changelist or ():
            key = (kev.ident, kev.filter)
            os.fstat(kev.ident)  # kevent() fails with EBADF for a closed fd, add or delete
            if kev.flags & KQ["KQ_EV_ADD"]:
                self._filters.add(key)
            elif key in self._filters:
                self._filters.remove(key)
            else:
                raise FileNotFoundError(errno.ENOENT, "no such kevent")
        if maxevents == 0:
            return []
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be positive or None")
        wanted: dict[int, int] = {}
        for fd, filt in self._filters:
            flag = select.POLLIN if filt == KQ["KQ_FILTER_READ"] else select.POLLOUT
            wanted[fd] = wanted.get(fd, 0) | flag
        poll = select.poll()
        for fd, flags in wanted.items():
            poll.register(fd, flags)
        ms = -1 if timeout is None else math.ceil(timeout * 1000)
        out = []
        hangup = select.POLLHUP | select.POLLERR
        for fd, revents in poll.poll(ms):
            if revents & select.POLLNVAL:
                # Closing an fd deletes its kevents.
                self._filters -= {k for k in self._filters if k[0] == fd}
                continue
            eof = KQ["KQ_EV_EOF"] if revents & hangup else 0
            for filt, ready in (
                (KQ["KQ_FILTER_READ"], select.POLLIN | hangup),
                (KQ["KQ_FILTER_WRITE"], select.POLLOUT | hangup),
            ):
                if (fd, filt) in self._filters and revents & ready:
                    out.append(FakeKevent(fd, filt, eof))
        return out[:maxevents]


def load_emulated_kqueue(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import loopmon/pollers/kqueue.py afresh as if on macOS, over the emulation. Not put in
    sys.modules: the real (Linux) module stays the one the registry sees."""
    monkeypatch.setattr(select, "kqueue", FakeKqueue, raising=False)
    monkeypatch.setattr(select, "kevent", FakeKevent, raising=False)
    for name, value in KQ.items():
        monkeypatch.setattr(select, name, value, raising=False)
    path = Path(pollers.__file__).with_name("kqueue.py")
    spec = importlib.util.spec_from_file_location("loopmon_kqueue_emulated", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    real_platform = sys.platform
    sys.platform = "darwin"
    try:
        spec.loader.exec_module(module)
    finally:
        sys.platform = real_platform
    return module


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(params=PARAMS)
def poller(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Poller]:
    made: Poller
    if request.param == "kqueue-emulated":
        made = load_emulated_kqueue(monkeypatch).create()
    else:
        made = pollers.create(request.param)
    yield made
    made.close()


@pytest.fixture
def pair() -> Iterator[Pair]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def polled(poller: Poller, timeout: float | None) -> dict[int, int]:
    """poll() as a dict, checking what every result must be: one pair per fd, loopmon bits only."""
    events = poller.poll(timeout)
    assert isinstance(events, list)
    fds = [fd for fd, _ in events]
    assert len(fds) == len(set(fds)), f"an fd reported twice: {events}"
    for fd, mask in events:
        assert mask and not mask & ~ALL, f"fd {fd}: mask {mask:#x} is not loopmon's"
    return dict(events)


def free_fd_at_least(start: int, stop: int) -> int | None:
    for fd in range(start, stop):
        try:
            os.fstat(fd)
        except OSError:
            return fd
    return None


@pytest.fixture
def high_fd(pair: Pair) -> Iterator[tuple[int, socket.socket]]:
    """An fd numbered >= 1024 (select's FD_SETSIZE) that is a dup of ``pair[0]``, and the peer."""
    try:
        import resource
    except ImportError:
        pytest.skip("no RLIMIT_NOFILE here")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 1200
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    fd = free_fd_at_least(1024, needed)
    if fd is None:
        pytest.skip("no free fd number above 1024")
    os.dup2(pair[0].fileno(), fd, inheritable=False)
    try:
        yield fd, pair[1]
    finally:
        os.close(fd)
        if soft < needed:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- the contract ------------------------------------------------------------------------------


def test_name_and_fileno(poller: Poller) -> None:
    assert poller.name in pollers.BACKENDS
    if poller.name in KERNEL_OBJECT:
        assert poller.fileno() >= 0
        os.fstat(poller.fileno())
    else:
        assert poller.fileno() == -1


def test_read_readiness(poller: Poller, pair: Pair) -> None:
    a, b = pair
    poller.register(a.fileno(), READ)
    assert polled(poller, 0) == {}
    b.send(b"x")
    assert polled(poller, WAIT) == {a.fileno(): READ}
    # Level-triggered: still reported until the data is read.
    assert polled(poller, 0) == {a.fileno(): READ}
    assert a.recv(10) == b"x"
    assert polled(poller, 0) == {}


def test_write_readiness(poller: Poller, pair: Pair) -> None:
    a, _ = pair
    poller.register(a.fileno(), WRITE)
    assert polled(poller, WAIT) == {a.fileno(): WRITE}


def test_both_directions_merge_into_one_pair(poller: Poller, pair: Pair) -> None:
    a, b = pair
    poller.register(a.fileno(), READ | WRITE)
    b.send(b"x")
    assert polled(poller, WAIT) == {a.fileno(): READ | WRITE}


def test_error_bits_in_the_mask_are_accepted(poller: Poller, pair: Pair) -> None:
    # The loop always registers ERROR along with what it wants.
    a, b = pair
    poller.register(a.fileno(), READ | ERROR)
    b.send(b"x")
    assert polled(poller, WAIT) == {a.fileno(): READ}


def test_modify(poller: Poller, pair: Pair) -> None:
    a, b = pair
    fd = a.fileno()
    poller.register(fd, READ | WRITE)
    assert polled(poller, WAIT) == {fd: WRITE}
    poller.modify(fd, READ)
    assert polled(poller, 0) == {}
    b.send(b"x")
    assert polled(poller, WAIT) == {fd: READ}
    poller.modify(fd, WRITE)
    assert polled(poller, WAIT) == {fd: WRITE}
    poller.modify(fd, NONE)
    assert polled(poller, 0) == {}
    poller.modify(fd, READ | WRITE)
    assert polled(poller, WAIT) == {fd: READ | WRITE}


def test_unregister(poller: Poller, pair: Pair) -> None:
    a, b = pair
    b.send(b"x")
    poller.register(a.fileno(), READ)
    assert polled(poller, WAIT) == {a.fileno(): READ}
    poller.unregister(a.fileno())
    assert polled(poller, 0) == {}
    poller.register(a.fileno(), READ)  # and it can come back
    assert polled(poller, WAIT) == {a.fileno(): READ}


def test_double_register_raises(poller: Poller, pair: Pair) -> None:
    a, _ = pair
    poller.register(a.fileno(), READ)
    with pytest.raises(FileExistsError):
        poller.register(a.fileno(), WRITE)
    # The first registration stands, unchanged.
    assert polled(poller, 0) == {}


def test_unknown_fd_raises_key_error(poller: Poller, pair: Pair) -> None:
    a, _ = pair
    with pytest.raises(KeyError):
        poller.modify(a.fileno(), READ)
    with pytest.raises(KeyError):
        poller.unregister(a.fileno())
    poller.register(a.fileno(), READ)
    poller.unregister(a.fileno())
    with pytest.raises(KeyError):
        poller.unregister(a.fileno())
    with pytest.raises(KeyError):
        poller.modify(a.fileno(), READ)


@pytest.mark.parametrize("events", [READ, WRITE, READ | WRITE])
def test_register_invalid_fd_raises_os_error(poller: Poller, events: int) -> None:
    sock = socket.socket()
    closed = sock.fileno()
    sock.close()
    for fd in (closed, -1):
        with pytest.raises(OSError):
            poller.register(fd, events)
        with pytest.raises(KeyError):
            poller.unregister(fd)  # a failed register leaves nothing behind
    assert polled(poller, 0) == {}


def test_peer_close_reaches_the_reader(poller: Poller, pair: Pair) -> None:
    a, b = pair
    poller.register(a.fileno(), READ)
    b.send(b"last")
    b.close()
    mask = polled(poller, WAIT)[a.fileno()]
    assert mask & READ  # READ even where ERROR comes too: the buffered data must be read
    assert a.recv(10) == b"last"
    # Level-triggered EOF: reported until the reader stops watching.
    assert polled(poller, WAIT)[a.fileno()] & (READ | ERROR)
    assert a.recv(10) == b""


def test_peer_close_reaches_a_writer(poller: Poller, pair: Pair) -> None:
    a, b = pair
    poller.register(a.fileno(), WRITE)
    b.close()
    assert polled(poller, WAIT)[a.fileno()] & (WRITE | ERROR)
    with pytest.raises(OSError):
        a.send(b"x")


def test_fd_closed_while_registered(poller: Poller, pair: Pair) -> None:
    # The mistake the loop guards against (remove_handler before close); a poller must survive
    # it. poll and select report the fd as ERROR until it is unregistered; epoll and kqueue drop it.
    a, _ = pair
    fd = a.fileno()
    poller.register(fd, READ)
    a.close()
    result = polled(poller, 0)
    assert result in ({}, {fd: ERROR})
    poller.unregister(fd)
    assert polled(poller, 0) == {}


def test_timeout_zero_does_not_wait_for_readiness(poller: Poller, pair: Pair) -> None:
    a, _ = pair
    poller.register(a.fileno(), READ)
    assert polled(poller, 0) == {}
    assert polled(poller, 0.0) == {}


def test_negative_timeout_means_zero(poller: Poller, pair: Pair) -> None:
    # The loop passes a timer's deadline minus now, which may already be past. Read as
    # "forever" (as epoll_wait and poll would), this would return only when the safety net
    # below fires, with an event: so [] proves it did not block.
    a, b = pair
    poller.register(a.fileno(), READ)
    safety = threading.Timer(WAIT, b.send, (b"x",))
    safety.start()
    try:
        assert polled(poller, -1.0) == {}
        assert polled(poller, -1e-9) == {}
    finally:
        safety.cancel()
        safety.join()


def test_positive_timeout_is_honoured(poller: Poller, pair: Pair) -> None:
    a, _ = pair
    poller.register(a.fileno(), READ)
    for timeout in (0.0005, 0.03):
        start = time.monotonic()
        assert polled(poller, timeout) == {}
        # Lower bound only. Sub-millisecond timeouts must round up, not down to a busy 0.
        assert time.monotonic() - start >= timeout


def test_huge_timeout_is_accepted(poller: Poller, pair: Pair) -> None:
    a, b = pair
    poller.register(a.fileno(), READ)
    b.send(b"x")
    for timeout in (1e9, math.inf):
        assert polled(poller, timeout) == {a.fileno(): READ}


def test_none_waits_for_an_event(poller: Poller, pair: Pair) -> None:
    a, b = pair
    poller.register(a.fileno(), READ)
    # Whether the send lands before or during the poll, poll(None) must return with it.
    sender = threading.Timer(0.02, b.send, (b"x",))
    sender.start()
    try:
        assert polled(poller, None) == {a.fileno(): READ}
    finally:
        sender.join()


def test_empty_poll_sleeps_for_the_timeout(poller: Poller) -> None:
    start = time.monotonic()
    assert polled(poller, 0.03) == {}
    assert time.monotonic() - start >= 0.03


def test_many_fds(poller: Poller) -> None:
    pairs = [socket.socketpair() for _ in range(200)]
    try:
        for a, _ in pairs:
            poller.register(a.fileno(), READ)
        for _, b in pairs[::2]:
            b.send(b"x")
        expected = {a.fileno(): READ for a, _ in pairs[::2]}
        assert polled(poller, WAIT) == expected
        for a, _ in pairs[::2]:
            poller.modify(a.fileno(), WRITE)
        assert polled(poller, WAIT) == {a.fileno(): WRITE for a, _ in pairs[::2]}
        for a, _ in pairs:
            poller.unregister(a.fileno())
        assert polled(poller, 0) == {}
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_close_is_idempotent(poller: Poller, pair: Pair) -> None:
    poller.register(pair[0].fileno(), READ)
    poller.close()
    poller.close()
    assert poller.fileno() == -1


def test_high_fd(poller: Poller, high_fd: tuple[int, socket.socket]) -> None:
    fd, peer = high_fd
    if poller.name == "select":
        with pytest.raises(ValueError, match="FD_SETSIZE"):
            poller.register(fd, READ)
        with pytest.raises(KeyError):
            poller.unregister(fd)
        return
    poller.register(fd, READ)
    peer.send(b"x")
    assert polled(poller, WAIT) == {fd: READ}


# -- select's limit, and the registry ----------------------------------------------------------


@pytest.mark.skipif("select" not in AVAILABLE, reason="no select backend")
def test_select_takes_fds_up_to_fd_setsize(pair: Pair) -> None:
    from loopmon.pollers.select import FD_SETSIZE

    assert FD_SETSIZE == 1024
    fd = 1023
    try:
        os.fstat(fd)
        pytest.skip("fd 1023 is in use")
    except OSError:
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except ImportError:
        pytest.skip("no RLIMIT_NOFILE here")
    if soft <= fd:
        pytest.skip(f"RLIMIT_NOFILE soft limit {soft} is too low")
    os.dup2(pair[0].fileno(), fd, inheritable=False)
    poller = pollers.create("select")
    try:
        poller.register(fd, READ)
        pair[1].send(b"x")
        assert polled(poller, WAIT) == {fd: READ}
    finally:
        poller.close()
        os.close(fd)


def test_create_unknown_names_the_available_ones() -> None:
    with pytest.raises(ValueError, match="nope") as info:
        pollers.create("nope")
    for name in AVAILABLE:
        assert name in str(info.value)


def test_unavailable_backends_refuse_with_value_error() -> None:
    assert AVAILABLE, "no backend works here"
    assert "select" in AVAILABLE  # select() exists everywhere
    for name in pollers.BACKENDS:
        if name in AVAILABLE:
            assert pollers.create(name).name == name
        else:
            with pytest.raises(ValueError, match=name):
                pollers.create(name)


def test_the_native_backend_comes_first() -> None:
    expected: dict[str, Any] = {"linux": "epoll", "darwin": "kqueue"}
    if sys.platform in expected:
        assert AVAILABLE[0] == expected[sys.platform]
