"""``os.fork`` (and ``os.forkpty``) warning of the program's threads only, not loopmon's.

From Python 3.12, ``os.fork`` counts the threads of the process (on Linux the kernel's count,
``/proc/self/stat``) and, in the parent, gives a ``DeprecationWarning`` attributed to its caller
when there is more than one. Under ``loopmon run --telemetry`` the publisher's thread alone made
a single-threaded program that forks print "This process ... is multi-threaded" on its stderr,
which it never does without loopmon. The wrapper forks with that warning ignored and gives it
again, worded and attributed as Python would (to the wrapper's caller), when the process has
more than one thread besides loopmon's own (threads named ``loopmon-``: the telemetry and
metrics side loops, a stall watch thread). The filter is set with ``warnings.catch_warnings``
around the fork only: not thread-safe, as that API is not, for the time of one fork.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable
from typing import Any

from loopmon.instrument import internals

OWN_THREAD_PREFIX = "loopmon-"
_IGNORED = r"This process \(pid=\d+\) is multi-threaded, use of (fork|forkpty)\(\)"


def process_threads() -> int:
    """The threads of this process, as os.fork counts them."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            # Field 20 is num_threads; the fields after the command's ")" start at 3.
            return int(stat.read().rpartition(b")")[2].split()[17])
    except (OSError, ValueError, IndexError):
        return threading.active_count()


def own_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith(OWN_THREAD_PREFIX))


def _wrap(original: Callable[[], Any], name: str) -> Callable[[], Any]:
    def fork() -> Any:
        theirs = process_threads() - own_threads()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_IGNORED, category=DeprecationWarning)
            result = original()
        child = result == 0 if name == "fork" else result[0] == 0
        if not child and theirs > 1:
            warnings.warn(
                f"This process (pid={os.getpid()}) is multi-threaded, use of {name}() may "
                "lead to deadlocks in the child.",
                DeprecationWarning,
                stacklevel=2,
            )
        return result

    fork.__wrapped__ = original  # type: ignore[attr-defined]
    fork.__name__ = fork.__qualname__ = name
    fork.__doc__ = original.__doc__
    return fork


def install() -> Callable[[], None]:
    """Wrap ``os.fork`` and ``os.forkpty`` where they warn of threads; returns an undo."""
    if not internals.FORK_WARNS_OF_THREADS:
        return lambda: None
    wrapped: dict[str, tuple[Any, Any]] = {}
    for name in ("fork", "forkpty"):
        original = getattr(os, name, None)
        if original is not None:
            wrapper = _wrap(original, name)
            setattr(os, name, wrapper)
            wrapped[name] = (original, wrapper)

    def undo() -> None:
        for name, (original, wrapper) in wrapped.items():
            if getattr(os, name, None) is wrapper:
                setattr(os, name, original)

    return undo
