"""SIGALRM is the program's the moment it asks for it.

The stall watch of a loop on the main thread may hold SIGALRM (``watch`` says why). A program
that took SIGALRM while it did (``signal.signal``, ``setitimer(ITIMER_REAL)``, ``alarm``, or
asyncio's ``loop.add_signal_handler``, which calls ``signal.signal``) got loopmon's ticks: its
handler ran 40 times a second until the next lag probe noticed, or the alarm it set never
reached it. These three functions of the ``signal`` module are wrapped so that, before the
program's call, the watch stops its timer, puts back the handler it found, and moves to a
thread; the program's call then does what it does without loopmon (and returns what it would).
Code that took ``from signal import signal`` before loopmon came keeps the old functions: the lag
probe's check (``AsyncioWatch._check_alarm``) is still there for it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

_busy = threading.local()  # set while a hand-over runs: loopmon's own calls pass through


def install(hand_over: Callable[[bool], Any]) -> Callable[[], None]:
    """Wrap ``signal.signal``, ``signal.setitimer`` and ``signal.alarm``; ``hand_over(restore)``
    gives SIGALRM back (``restore``: put the earlier handler back too) and returns that earlier
    handler, or None when loopmon held no SIGALRM. Returns an undo."""
    original_signal = signal.signal
    original_setitimer = getattr(signal, "setitimer", None)
    original_alarm = getattr(signal, "alarm", None)

    def give_back(restore: bool) -> Any:
        if getattr(_busy, "on", False) or threading.current_thread() is not threading.main_thread():
            return None
        _busy.on = True
        try:
            return hand_over(restore)
        finally:
            _busy.on = False

    def signal_(signalnum: int, handler: Any) -> Any:
        earlier = give_back(False) if signalnum == signal.SIGALRM else None
        previous = original_signal(signalnum, handler)
        return previous if earlier is None else earlier

    wrappers: dict[str, tuple[Any, Any]] = {"signal": (original_signal, signal_)}
    if original_setitimer is not None:

        def setitimer(which: int, seconds: float, interval: float = 0.0) -> Any:
            if which == signal.ITIMER_REAL:
                give_back(True)
            return original_setitimer(which, seconds, interval)

        wrappers["setitimer"] = (original_setitimer, setitimer)
    if original_alarm is not None:

        def alarm(seconds: int) -> int:
            give_back(True)
            return original_alarm(seconds)  # type: ignore[no-any-return]

        wrappers["alarm"] = (original_alarm, alarm)
    for name, (original, wrapper) in wrappers.items():
        wrapper.__wrapped__ = original
        wrapper.__name__ = wrapper.__qualname__ = name
        wrapper.__doc__ = original.__doc__
        setattr(signal, name, wrapper)

    def undo() -> None:
        for name, (original, wrapper) in wrappers.items():
            if getattr(signal, name) is wrapper:
                setattr(signal, name, original)

    return undo
