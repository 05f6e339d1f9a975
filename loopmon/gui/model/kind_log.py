"""A log bounded per kind: each kind keeps its own newest ``size`` items, so a churn of connects
and closes can never push out the one listener failure, stall or exception that matters
(shared/DESIGN.md, "rare events"). What each kind lets go is counted. Qt-free.

The window keeps one for what arrived between two frames, and the event log's model keeps its
entries in one.
"""

from __future__ import annotations

import collections
import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class KindLog(Generic[T]):
    def __init__(self, size: int, kind_of: Callable[[T], str]) -> None:
        if size <= 0:
            raise ValueError("size must be positive")
        self._size = size
        self._kind_of = kind_of
        # (arrival number, item): the number restores arrival order across the kinds' logs.
        self._logs: dict[str, collections.deque[tuple[int, T]]] = {}
        self._arrival = itertools.count()
        self._count = 0
        self.let_go: collections.Counter[str] = collections.Counter()  # per kind, ever

    @property
    def size(self) -> int:
        """How many items each kind keeps."""
        return self._size

    @size.setter
    def size(self, size: int) -> None:
        if size <= 0:
            raise ValueError("size must be positive")
        self._size = size
        for log in self._logs.values():
            self._trim(log, [])

    def extend(self, items: Iterable[T]) -> list[T]:
        """Add ``items`` in order; returns those let go to make room (the oldest of their
        kinds, possibly some of ``items`` themselves), in the order they were let go."""
        gone: list[T] = []
        logs = self._logs
        for item in items:
            kind = self._kind_of(item)
            log = logs.get(kind)
            if log is None:
                log = logs[kind] = collections.deque()
            log.append((next(self._arrival), item))
            self._count += 1
            if len(log) > self._size:
                self._trim(log, gone)
        return gone

    def _trim(self, log: collections.deque[tuple[int, T]], gone: list[T]) -> None:
        while len(log) > self._size:
            _, item = log.popleft()
            self._count -= 1
            self.let_go[self._kind_of(item)] += 1
            gone.append(item)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[T]:
        """Every item kept, in arrival order."""
        logs = [log for log in self._logs.values() if log]
        if len(logs) == 1:
            return (item for _, item in logs[0])
        return (item for _, item in heapq.merge(*logs))

    def clear(self) -> None:
        """Forget the items (the counts of what was let go stay)."""
        self._logs.clear()
        self._count = 0
