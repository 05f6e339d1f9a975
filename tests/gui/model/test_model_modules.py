"""The window's models stay Qt-free: no PySide6, pyqtgraph or numpy in ``loopmon.gui.model``
(shared/DESIGN.md, layers), checked in a fresh interpreter; and each model's own behaviour."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import loopmon.gui.model
from loopmon.gui.model.kind_log import KindLog
from loopmon.gui.model.rates import RateWindow
from loopmon.gui.model.units import byte_size, iec_unit, mib_per_s
from loopmon.gui.model.wording import plural, shown_title, window_title, wrappable
from loopmon.snapshot import LoopFigures, Snapshot

FORBIDDEN = ("PySide6", "shiboken6", "pyqtgraph", "numpy")


def test_the_models_import_no_qt_and_no_numpy() -> None:
    names = [
        f"loopmon.gui.model.{m.name}" for m in pkgutil.iter_modules(loopmon.gui.model.__path__)
    ]
    assert {"loopmon.gui.model.units", "loopmon.gui.model.kind_log"} <= set(names)
    code = (
        "import importlib, json, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_kind_log_keeps_each_kinds_newest_in_arrival_order() -> None:
    log: KindLog[tuple[str, int]] = KindLog(2, lambda item: item[0])
    gone = log.extend([("stall", 0), ("connect", 1), ("connect", 2), ("connect", 3)])
    assert gone == [("connect", 1)]
    assert list(log) == [("stall", 0), ("connect", 2), ("connect", 3)]
    assert log.let_go == {"connect": 1}
    log.size = 1
    assert list(log) == [("stall", 0), ("connect", 3)] and len(log) == 2
    log.clear()
    assert list(log) == [] and log.let_go == {"connect": 2}
    with pytest.raises(ValueError):
        KindLog(0, str)


def snap(t: float, events: int, span: float | None = None) -> Snapshot:
    totals = LoopFigures(span_s=t if span is None else span, events=events, iterations=int(t * 100))
    return Snapshot(seq=int(t * 100), taken_at=t, backend="epoll", strategy="direct", totals=totals)


def test_rate_window_is_at_least_a_second_once_it_has_one() -> None:
    window = RateWindow(1.0)
    rates = [window.update(snap(1 + i * 0.04, events=int(i >= 30))) for i in range(80)]
    assert max(r.events_per_s for r in rates) == pytest.approx(1.0)
    assert all(r.window_s >= 1.0 - 1e-9 for r in rates[25:])
    # a restarted loop (totals start again): the window starts again
    again = window.update(snap(5.0, events=0, span=0.04))
    assert again.window_s == 0.0 and again.events_per_s == 0.0


def test_units_are_iec() -> None:
    assert byte_size(1536) == "1.5 KiB"
    assert iec_unit(3 << 20) == (1 << 20, "MiB")
    assert iec_unit(10) == (1.0, "B")
    assert mib_per_s({"mb_per_s": 1.048576}) == pytest.approx(1.0)


def test_wording() -> None:
    assert plural(1, "connection") == "1 connection"
    assert plural(1234, "connection") == "1,234 connections"
    assert "\u200b" in wrappable("x" * 60) and wrappable("short words stay") == "short words stay"
    assert wrappable("x" * 60).replace("\u200b", "") == "x" * 60
    for name in ("loopmon", "python3", ""):
        shown = shown_title(window_title(["epoll", "127.0.0.1:10000"], name), name)
        assert shown.count("loopmon") == 1, shown
