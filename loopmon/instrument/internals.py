"""Every private name of asyncio that the instrument touches, in this one module.

The public surface (the event loop policy, ``SelectorEventLoop(selector)``, ``call_at``,
``all_tasks``, ``loop.create_task``) covers the common path: a loop made through the policy
(``asyncio.run``, ``asyncio.Runner``, ``new_event_loop``, Tornado 6) gets a watched selector at
construction. These have no public door, and are used only here, on the versions whose
sources were read (3.11 to 3.13; asyncio's internals move between them):

- ``asyncio.events._set_running_loop``: every ``BaseEventLoop.run_forever`` calls it through
  the module on entry and on exit, which is how loops made outside the policy (a direct
  ``SelectorEventLoop()``, ``Runner(loop_factory=...)``) are found, and how a loop that stopped
  running is told apart from one that stalls;
- ``BaseSelectorEventLoop._selector``: to wrap the selector of such a loop after the fact;
- ``Future._source_traceback`` (debug mode only): where a task was made, from which the frame
  of loopmon's ``create_task`` is dropped, as asyncio drops its own;
- ``BaseEventLoop._ready``: the ready queue, whose length is the callbacks a pass will run, and
  ``BaseEventLoop._scheduled``, the timer heap (``TimerHandle.when()`` is public).

Read against the sources of 3.11.7, 3.12.1 and 3.13.0, each name is there and used the same
way. What moved around them: 3.13 splits ``run_forever`` into ``_run_forever_setup`` and
``_run_forever_cleanup``, which still call ``events._set_running_loop`` through the module;
from 3.12 asyncio's own fork handler calls it with None in a forked child (the hook sees a loop
stop there); 3.13's selector loop finds a key with ``get_map().get(fd)``, not ``get_key``
(the watched selectors pass ``get_map`` through); ``EpollSelector.select`` is the same text in
all three (``epoll_selector`` copies it).

Version facts that are not private names live here too: ``FORK_WARNS_OF_THREADS`` (3.12's
``os.fork`` warning, see ``forks``).

On any other version, or when a name is missing, ``available()`` says why, the instrument prints
one ``loopmon:`` line and keeps to the public path (loop-level figures for loops it cannot see).
"""

from __future__ import annotations

import asyncio
import sys
from asyncio import events as _events
from collections.abc import Callable
from typing import Any

SUPPORTED = ((3, 11), (3, 12), (3, 13))
# From 3.12 os.fork and os.forkpty warn (DeprecationWarning, in the parent) when the process has
# more than one thread: loopmon's own threads must not make them warn (``forks``).
FORK_WARNS_OF_THREADS = sys.version_info >= (3, 12)


def why_unavailable() -> str:
    """Empty when every private name below is usable here, else the reason."""
    if sys.version_info[:2] not in SUPPORTED:
        major, minor = sys.version_info[:2]
        return f"Python {major}.{minor}: its asyncio internals were not read"
    if not callable(getattr(_events, "_set_running_loop", None)):
        return "asyncio.events._set_running_loop is missing"
    return ""


def hook_running_loop(on_change: Callable[[Any], None]) -> Callable[[], None]:
    """Call ``on_change(loop or None)`` after each ``_set_running_loop``; returns an undo."""
    original = _events._set_running_loop

    def set_running_loop(loop: Any) -> None:
        original(loop)
        try:
            on_change(loop)
        except Exception:  # never break the program's loop for a measurement
            pass

    _events._set_running_loop = set_running_loop

    def undo() -> None:
        if _events._set_running_loop is set_running_loop:
            _events._set_running_loop = original

    return undo


def selector_of(loop: asyncio.AbstractEventLoop) -> Any:
    """The selector of a selector loop, or None."""
    if not isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
        return None
    return getattr(loop, "_selector", None)


def replace_selector(loop: asyncio.AbstractEventLoop, selector: Any) -> None:
    loop._selector = selector  # type: ignore[attr-defined]


def ready_queue(loop: asyncio.AbstractEventLoop) -> Any:
    """The loop's ready deque (never rebound in 3.11-3.13), or None."""
    return getattr(loop, "_ready", None) if not why_unavailable() else None


def timer_heap_of(loop: asyncio.AbstractEventLoop) -> Callable[[], list[Any]] | None:
    """A getter of the loop's timer heap (rebound when the loop compacts it), or None."""
    if why_unavailable() or not isinstance(getattr(loop, "_scheduled", None), list):
        return None
    return lambda: loop._scheduled  # type: ignore[attr-defined]


def epoll_selector_ok() -> bool:
    """True when ``selectors.EpollSelector`` is the one ``epoll_selector`` copies: this
    platform has it, the version is one whose ``select`` was read, and its private
    ``_fd_to_key`` and ``_selector`` are there."""
    import selectors

    cls = getattr(selectors, "EpollSelector", None)
    if cls is None or sys.version_info[:2] not in SUPPORTED:
        return False
    probe = cls()
    try:
        return isinstance(getattr(probe, "_fd_to_key", None), dict) and hasattr(
            getattr(probe, "_selector", None), "poll"
        )
    finally:
        probe.close()


def drop_own_frame(task: Any, filename: str) -> None:
    """In debug mode, a task's ``_source_traceback`` (a list of ``FrameSummary``; None
    otherwise) ends at the call that made it: asyncio drops its own ``create_task``'s frame,
    and this drops the frame of loopmon's wrapper in ``filename`` beneath it, so "created at"
    names what it names without loopmon."""
    frames = getattr(task, "_source_traceback", None)
    if frames and frames[-1].filename == filename:
        del frames[-1]
