"""The SIGALRM watchdog's handler does not run inside itself."""

from __future__ import annotations

import sys
import traceback
from types import FrameType

import pytest

from loopmon.watchdog import Heartbeat, Watchdog


def test_an_alarm_during_a_check_does_not_start_another(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [10.0]
    hb = Heartbeat()
    hb.started, hb.what = 0.0, "loop"  # busy for 10 s: a stall
    watchdog = Watchdog(hb, 1, 0.1, clock=lambda: now[0], use_signal=True)
    frame: FrameType | None = sys._getframe()
    calls = []
    real = traceback.format_stack

    def slow_format(f: FrameType | None = None) -> list[str]:
        # The next alarm is due while the stack is being formatted: Python would run the
        # handler again right here.
        calls.append(1)
        if len(calls) < 50:
            watchdog._on_alarm(14, frame)
        return real(f)

    monkeypatch.setattr(traceback, "format_stack", slow_format)
    watchdog._on_alarm(14, frame)
    assert len(calls) == 1
    assert hb.stack and hb.stack_for == 0.0
