"""The little a publisher needs of an event loop, and adapters for the two loops it runs on.

A ``Reactor`` calls back when an fd is readable or writable and after a delay, and tells the
time. ``IOLoopReactor`` maps it onto loopmon's IOLoop (one handler per fd, whose mask is the
union of reader and writer); ``AsyncioReactor`` onto an asyncio loop's own add_reader and
add_writer (a selector loop: the proactor loop of Windows has neither).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from loopmon.events import ERROR, READ, WRITE
from loopmon.ioloop import IOLoop

Callback = Callable[[], None]


class Timer(Protocol):
    def cancel(self) -> None: ...


class Reactor(Protocol):
    def time(self) -> float: ...

    def add_reader(self, fd: int, callback: Callback) -> None: ...

    def remove_reader(self, fd: int) -> None: ...

    def add_writer(self, fd: int, callback: Callback) -> None: ...

    def remove_writer(self, fd: int) -> None: ...

    def call_later(self, delay: float, callback: Callback) -> Timer: ...


class _IOLoopTimer:
    __slots__ = ("_loop", "_timeout")

    def __init__(self, loop: IOLoop, timeout: Any) -> None:
        self._loop = loop
        self._timeout = timeout

    def cancel(self) -> None:
        self._loop.remove_timeout(self._timeout)


class IOLoopReactor:
    """A Reactor on loopmon's IOLoop (call it on the loop's thread only)."""

    def __init__(self, loop: IOLoop) -> None:
        self.loop = loop
        self._readers: dict[int, Callback] = {}
        self._writers: dict[int, Callback] = {}

    def time(self) -> float:
        return self.loop.time()

    def _update(self, fd: int, had: bool) -> None:
        mask = (READ if fd in self._readers else 0) | (WRITE if fd in self._writers else 0)
        if not mask:
            self.loop.remove_handler(fd)
        elif had:
            self.loop.update_handler(fd, mask)
        else:
            self.loop.add_handler(fd, self._ready, mask)

    def _ready(self, fd: int, events: int) -> None:
        # A readable fd that also failed (ERROR) goes to the reader, whose recv says why;
        # the writer runs only if the reader left it registered.
        if events & (READ | ERROR):
            reader = self._readers.get(fd)
            if reader is not None:
                reader()
        if events & (WRITE | ERROR):
            writer = self._writers.get(fd)
            if writer is not None:
                writer()

    def add_reader(self, fd: int, callback: Callback) -> None:
        had = fd in self._readers or fd in self._writers
        self._readers[fd] = callback
        self._update(fd, had)

    def remove_reader(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None:
            self._update(fd, True)

    def add_writer(self, fd: int, callback: Callback) -> None:
        had = fd in self._readers or fd in self._writers
        self._writers[fd] = callback
        self._update(fd, had)

    def remove_writer(self, fd: int) -> None:
        if self._writers.pop(fd, None) is not None:
            self._update(fd, True)

    def call_later(self, delay: float, callback: Callback) -> Timer:
        return _IOLoopTimer(self.loop, self.loop.call_later(delay, callback))


class AsyncioReactor:
    """A Reactor on an asyncio event loop (a selector loop; call it on the loop's thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def time(self) -> float:
        return self.loop.time()

    def add_reader(self, fd: int, callback: Callback) -> None:
        self.loop.add_reader(fd, callback)

    def remove_reader(self, fd: int) -> None:
        self.loop.remove_reader(fd)

    def add_writer(self, fd: int, callback: Callback) -> None:
        self.loop.add_writer(fd, callback)

    def remove_writer(self, fd: int) -> None:
        self.loop.remove_writer(fd)

    def call_later(self, delay: float, callback: Callback) -> Timer:
        return self.loop.call_later(delay, callback)
