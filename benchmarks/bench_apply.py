"""How long the window takes to apply one snapshot, at 1,000 and 10,000 connections.

A benchmark, not a test: run it by hand and read the figures.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_apply.py [--counts 1000 10000]

For each size it feeds pre-built snapshots (every row a new object with changed numbers, the
worst case: telemetry reuses the rows of idle connections) to a shown window, with two
connections selected, and times:
  apply       record into the histories + status + listeners, then the table and EVERY plot
              (hidden ones forced), i.e. all the Python work one snapshot causes;
  paint       then processEvents(): Qt and pyqtgraph repainting the visible views;
and the same again with connections coming and going every snapshot (1% replaced per
snapshot, on reused fd numbers as the OS does: the histories' reuse path). The pre-built frames are
moved out of the garbage collector's way (gc.freeze), so a full collection of 100 frames of
10,000 rows does not land in one measurement.

Then ``--live`` seconds per tab of snapshots arriving at 25 Hz through ``on_batch`` (as the
bridge delivers them, with the window's own view frame limit), reporting the GUI thread's CPU
time as a share of one core: the time the loop thread may have to wait for the GIL.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The GUI tests' snapshot builders (tests/gui/fakes.py): the benchmark feeds the same records.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "gui"))

from fakes import busy_connections, figures, snapshot
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from loopmon.gui.main_window import MainWindow
from loopmon.gui.settings import open_settings
from loopmon.snapshot import ConnectionRow, Snapshot


def churned(n: int, step: int, t: float) -> tuple[ConnectionRow, ...]:
    """One frame with 1% of the connections replaced by new ones since the last: the OS gives
    a new connection the lowest free fd, so the numbers are reused (with a new created_at)."""
    rows = list(busy_connections(n, step))
    k = max(n // 100, 1)
    first = (step * k) % n
    for i in range(first, min(first + k, n)):
        rows[i] = rows[i]._replace(created_at=t, bytes_in=0, bytes_out=0, messages=0)
    return tuple(rows)


def frames(count: int, n: int, churn: bool) -> list[Snapshot]:
    out = []
    for step in range(count):
        t = 1000.0 + step * 0.04
        rows = churned(n, step, t) if churn else busy_connections(n, step)
        out.append(
            snapshot(
                seq=step + 1,
                taken_at=t,
                connections=rows,
                totals=figures(span_s=t - 900.0),
            )
        )
    return out


def ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[int(len(values) * 0.95) - 1]
    return (
        f"median {statistics.median(values) * 1e3:6.2f} ms  p95 {p95 * 1e3:6.2f} ms  "
        f"max {values[-1] * 1e3:6.2f} ms"
    )


def run(app: QApplication, n: int, churn: bool, count: int, tab: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        window = MainWindow(None, settings=open_settings(Path(tmp) / "bench.ini"))
        window.resize(1600, 1000)
        window.show()
        window.tabs.setCurrentIndex(tab)
        app.processEvents()
        snaps = frames(count + 20, n, churn)
        gc.collect()
        gc.freeze()  # the pre-built frames are not the window's garbage: keep full GCs honest
        for snap in snaps[:20]:  # warm up
            window.record(snap)
            window.apply_views(snap, every_plot=True)
            app.processEvents()
        window.table.select_fds([n // 2 + 10 + (20 if churn else 0), n // 3 + 40])
        apply_t, paint_t = [], []
        for snap in snaps[20:]:
            t0 = time.perf_counter()
            window.record(snap)
            window.apply_views(snap, every_plot=True)
            t1 = time.perf_counter()
            app.processEvents()
            t2 = time.perf_counter()
            apply_t.append(t1 - t0)
            paint_t.append(t2 - t1)
        kind = "churn " if churn else "stable"
        label = f"{n:>6} connections, {kind}, tab {window.tabs.tabText(tab)!r:>14}"
        print(f"{label}  apply: {ms(apply_t)}")
        print(f"{'':>{len(label)}}  paint: {ms(paint_t)}")
        window.close()
        window.deleteLater()
        app.processEvents()
        del snaps
        gc.unfreeze()


def live(app: QApplication, n: int, seconds: float, hz: float, tab: int) -> None:
    """Snapshots arrive at ``hz`` through ``on_batch`` as from the bridge, with the window's
    own frame rate limiting; report the GUI thread's CPU time as a share of one core."""
    from loopmon.gui.bridge import Batch

    with tempfile.TemporaryDirectory() as tmp:
        window = MainWindow(None, settings=open_settings(Path(tmp) / "bench.ini"))
        window.resize(1600, 1000)
        window.show()
        window.tabs.setCurrentIndex(tab)
        warmup = 1.0
        snaps = frames(int((seconds + warmup) * hz) + 10, n, churn=False)
        gc.collect()
        gc.freeze()
        window.table.select_fds([n // 2 + 10])
        feed = iter(snaps)

        def deliver() -> None:
            window.on_batch(Batch(next(feed), [], 0))

        timer = QTimer()
        timer.timeout.connect(deliver)
        timer.start(round(1000 / hz))
        QTimer.singleShot(round(warmup * 1000), app.quit)
        app.exec()
        frames0 = window.frames
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        QTimer.singleShot(round(seconds * 1000), app.quit)
        app.exec()
        timer.stop()
        cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
        shown = window.frames - frames0
        print(
            f"{n:>6} connections, {hz:g} snapshots/s, tab {window.tabs.tabText(tab)!r:>14}: "
            f"GUI thread CPU {cpu / wall:5.1%} of a core, {shown / wall:4.1f} view frames/s"
        )
        window.close()
        window.deleteLater()
        app.processEvents()
        del snaps
        gc.unfreeze()


def soak(app: QApplication, n: int, count: int) -> None:
    """``count`` snapshots (25 a second of loop time: 15,000 is ten minutes) of ``n``
    connections with 1% churn and events, as fast as the window takes them; print the
    process's resident memory along the way."""
    import resource

    from fakes import event

    from loopmon.gui.bridge import Batch

    def rss_mib() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    with tempfile.TemporaryDirectory() as tmp:
        window = MainWindow(None, settings=open_settings(Path(tmp) / "bench.ini"))
        window.view_interval_s = 0.0
        window.resize(1600, 1000)
        window.show()
        k = max(n // 100, 1)
        marks = []
        for step in range(count):
            t = 1000.0 + step * 0.04
            rows = churned(n, step, t)
            first = (step * k) % n
            events = [event("connect", at=t, fd=r.fd) for r in rows[first : first + k]]
            snap = snapshot(seq=step + 1, taken_at=t, connections=rows, totals=figures(t - 900))
            window.on_batch(Batch(snap, events, 0))
            if step % 5 == 0:
                window.tabs.setCurrentIndex((step // 250) % 4)
                app.processEvents()
            if step % (count // 10) == 0 or step == count - 1:
                marks.append(f"{step * 0.04 / 60:4.1f} min {rss_mib():6.1f} MiB")
        print(f"soak, {n} connections, {count} snapshots: " + " | ".join(marks))
        window.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--live", type=float, default=5.0, help="seconds per live run (0: skip)")
    parser.add_argument("--soak", type=int, default=0, help="snapshots for a memory soak run")
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    assert isinstance(app, QApplication)
    print(f"Python {sys.version.split()[0]}, Qt platform {app.platformName()}")
    if args.soak:
        soak(app, args.counts[0], args.soak)
        return
    for n in args.counts:
        for churn in (False, True):
            for tab in (0, 1, 2):
                run(app, n, churn, args.frames, tab)
    if args.live > 0:
        for n in args.counts:
            for tab in (0, 1, 2):
                live(app, n, args.live, 25.0, tab)


if __name__ == "__main__":
    main()
