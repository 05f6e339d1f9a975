"""``serve``'s status line: a line a second about the last second, made from the telemetry
snapshots the window shows (so both report the same numbers), printed from the loop thread
without ever blocking it."""

from __future__ import annotations

import select
from typing import TextIO

from loopmon.events import READ
from loopmon.ioloop import IOLoop
from loopmon.mailbox import Mailbox
from loopmon.snapshot import LagWindow, LoopFigures, Snapshot
from loopmon.units import byte_rate, byte_size

__all__ = ["STATUS_S", "StatusPrinter", "status_line", "turned_away"]

STATUS_S = 1.0


def status_line(
    interval: LoopFigures,
    connections: int,
    queue_bytes: int,
    bytes_in: int,
    bytes_out: int,
    turned_away: int = 0,
    lag: LagWindow | None = None,
) -> str:
    """One compact line for the last interval: ``bytes_in``/``bytes_out`` were moved during
    ``interval.span_s``; ``connections`` and ``queue_bytes`` are as of now; ``turned_away``
    connections were closed at once (over --max-connections, or an fd the poller cannot
    watch) during the interval, and are mentioned only when there were some; ``lag`` is the
    loop's lag over the window it names (n/a before a sample falls in it)."""
    span = interval.span_s
    rate_in = bytes_in / span if span > 0 else 0.0
    rate_out = bytes_out / span if span > 0 else 0.0
    if lag is None or lag.p99_s is None:
        lag_text = "lag p99 n/a"
    else:
        lag_text = f"lag p99 {lag.p99_s * 1000:.2f} ms (last {lag.window_s:.0f} s)"
    return (
        f"{connections} conns | {interval.events_per_s:,.0f} events/s | "
        f"in {byte_rate(rate_in)} out {byte_rate(rate_out)} | "
        f"queued {byte_size(queue_bytes)} | busy {interval.utilization:.0%} | "
        + lag_text
        + (f" | {turned_away:,} turned away" if turned_away > 0 else "")
    )


def turned_away(snapshot: Snapshot) -> int:
    """Connections the listeners closed at once or could not take, since they started."""
    return sum(row.refused + row.errors for row in snapshot.listeners)


class StatusPrinter:
    """Reads the telemetry mailbox and prints ``status_line`` about once a second: the same
    snapshots the window shows, so both report the same numbers.

    It reads on the loop thread, as a handler of the mailbox's fd, rather than on a thread of
    its own: a second thread, even one asleep in ``select``, costs a single-threaded server
    about 5 % per round trip (see ``loopmon.watchdog``). So that a stuck terminal or a full
    pipe can never block the loop, a line is written only when ``out`` is writable at once;
    otherwise it is skipped (``skipped`` counts them) and the next line covers the longer
    interval."""

    def __init__(self, mailbox: Mailbox, out: TextIO, every_s: float = STATUS_S) -> None:
        self.mailbox = mailbox
        self.out = out
        self.every_s = every_s
        self.skipped = 0
        self._printed: Snapshot | None = None
        # Counted from the start, not from the first snapshot: connections turned away before
        # the first line are reported on it.
        self._turned_away = 0
        self._loop: IOLoop | None = None

    def attach(self, loop: IOLoop) -> None:
        """Start reading; call on the loop's thread."""
        self._loop = loop
        loop.add_handler(self.mailbox.fileno(), self._on_mail, READ)

    def detach(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.remove_handler(self.mailbox.fileno())

    def _on_mail(self, fd: int, events: int) -> None:
        snapshot, _, _ = self.mailbox.take()
        if snapshot is None or not snapshot.alive:
            return
        printed = self._printed
        if printed is None:
            self._printed = snapshot  # the baseline: the first line covers a full second
            return
        if snapshot.taken_at - printed.taken_at < self.every_s * 0.98:
            return
        if not self._writable():
            self.skipped += 1
            return
        line = status_line(
            snapshot.totals.minus(printed.totals),
            len(snapshot.connections),
            snapshot.queue_bytes,
            snapshot.bytes_in - printed.bytes_in,
            snapshot.bytes_out - printed.bytes_out,
            turned_away(snapshot) - self._turned_away,
            snapshot.lag,
        )
        self._printed = snapshot
        self._turned_away = turned_away(snapshot)
        try:
            print(line, file=self.out, flush=True)
        except (OSError, ValueError):
            self.detach()  # stdout went away (a closed pipe): keep serving, stop printing

    def _writable(self) -> bool:
        try:
            fd = self.out.fileno()
        except (AttributeError, OSError, ValueError):
            return True  # not a file (a StringIO): writing cannot block
        try:
            # select(), which every OS supports on a terminal (macOS's poll() does not), as
            # long as the number fits in FD_SETSIZE; poll() past it.
            if fd < 1024:
                return bool(select.select([], [fd], [], 0)[1])
            probe = select.poll()
            probe.register(fd, select.POLLOUT)
            return any(mask & select.POLLOUT for _, mask in probe.poll(0))
        except (OSError, ValueError):
            return False
