"""One small class per OS readiness mechanism, all behind the same five calls.

Every poller speaks loopmon.events bits (epoll's) on the way in and out, raises
``FileExistsError`` when an fd is registered twice, ``KeyError`` when an unknown fd is modified
or unregistered, and ``ValueError`` for an fd it cannot watch (select's FD_SETSIZE).
"""

from __future__ import annotations

import importlib
from typing import Protocol

# Best first: the order IOLoop() tries them in.
BACKENDS: tuple[str, ...] = ("epoll", "kqueue", "poll", "select")


class Poller(Protocol):
    name: str
    # The lowest fd number it cannot watch (select's FD_SETSIZE), or None when there is none.
    fd_limit: int | None

    def register(self, fd: int, events: int) -> None: ...
    def modify(self, fd: int, events: int) -> None: ...
    def unregister(self, fd: int) -> None: ...
    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        """Wait up to ``timeout`` seconds (None: forever, 0: not at all)."""
        ...

    def close(self) -> None: ...
    def fileno(self) -> int:
        """The kernel object's fd, or -1 where there is none (poll, select)."""
        ...


def create(name: str) -> Poller:
    """Construct the named poller; ``ValueError`` naming the available ones if it cannot be."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available here: {', '.join(available())}")
    try:
        module = importlib.import_module(f"loopmon.pollers.{name}")
        poller: Poller = module.create()
    except (ImportError, AttributeError, OSError) as exc:
        raise ValueError(
            f"backend {name!r} is not available here ({exc}); available: {', '.join(available())}"
        ) from None
    return poller


def available() -> list[str]:
    """The backends that really construct on this machine, best first."""
    names = []
    for name in BACKENDS:
        try:
            module = importlib.import_module(f"loopmon.pollers.{name}")
            module.create().close()
        except (ImportError, AttributeError, OSError):
            continue
        names.append(name)
    return names
