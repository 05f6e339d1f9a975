"""Instruments the asyncio loops of a program it does not own (``loopmon run``), and
loopmon's own IOLoop in such a program.

For code that starts its own loops, one call, before the first loop is made::

    import loopmon.instrument
    instrument = loopmon.instrument.install(stall_threshold=0.1)
    ...
    snapshot = instrument.snapshot()   # any thread; or instrument.start_periodic(sink, hz)

What is measured, and how: see ``instrument`` (finding loops), ``selector`` (per fd and per
pass), ``watch`` (lag, stalls and the stall-watch mechanism), ``tasks`` and ``internals`` (the
private names of asyncio it relies on, and what happens without them).
"""

from __future__ import annotations

from collections.abc import Callable

from loopmon.instrument.instrument import MEASURES, Instrument

__all__ = ["MEASURES", "Instrument", "current", "install"]

_installed: list[Instrument] = []


def current() -> Instrument | None:
    """The instrument installed in this process (by ``install`` or ``loopmon run``), if any."""
    return _installed[-1] if _installed else None


def install(
    *,
    stall_threshold: float = 0.1,
    stall_watch: str = "signal",
    say: Callable[[str], None] | None = None,
) -> Instrument:
    """Watch every loop the process makes from now on; returns the instrument."""
    instrument = Instrument(stall_threshold=stall_threshold, stall_watch=stall_watch)
    if say is not None:
        instrument.say = instrument.settings.say = say
    instrument.install()
    _installed.append(instrument)
    return instrument
