"""The status strip: backend, uptime, connections, events/s, utilization, lag, and beside the
snapshot age the producer (program, pid, kind) and the link to it, when it is another process's.

Its figures flow onto a second line when the window is too narrow for one (a 1,070 px window
cut the lag and history texts), so no figure is cut; the strip grows by a line rather than
shrinking back and forth while a figure's text changes length, and takes its height again when
the window is resized.

The age is checked by a timer, not on arrival: a hung loop sends nothing, and the strip has to
say so by itself. It turns red once the last snapshot is older than ``STALE_AFTER_S``. While the
views are paused it never says "live" (beside "PAUSED at ..." that read as the views being live):
it says how old the newest snapshot is, which still tells a stream that stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QEvent, QSize, QTimer
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

from loopmon.gui.flow_layout import FlowLayout
from loopmon.gui.model import units
from loopmon.gui.model.rates import Rates
from loopmon.gui.model.wording import plural
from loopmon.snapshot import ProducerInfo, Snapshot
from loopmon.sources import CONNECTED, CONNECTING, IN_PROCESS, LOST, RECONNECTING, RECORDING

STALE_AFTER_S = 1.0
CHECK_MS = 250
RED = "color: white; background: #c62828; border-radius: 3px; padding: 0 4px;"
PAUSED_STYLE = "color: #ffb74d; font-weight: bold;"
AMBER = "color: black; background: #ffb74d; border-radius: 3px; padding: 0 4px;"
_LINK_WORDS = {
    CONNECTING: ("connecting…", AMBER),
    CONNECTED: ("connected", "color: #2e9d4f;"),
    RECONNECTING: ("reconnecting…", AMBER),
    LOST: ("link lost", RED),
    # Not "recording": beside the Record button that read as a recording being made.
    RECORDING: ("from a recording", ""),
}


class StatusStrip(QWidget):
    def __init__(
        self, clock: Callable[[], float] = time.monotonic, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        # The strip takes the width the status bar has and never asks for more: its texts
        # lengthen as figures grow, and a window must not widen itself to follow them (what
        # does not fit on a line goes to the next; each label's tooltip says what it is). Its
        # height is the lines its width needs, given as its size hint: QStatusBar ignores
        # height-for-width.
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self._height = 0
        self._clock = clock
        self._received_at: float | None = None
        self._replay = ""  # a replay's position, said where a live source's age is
        self.paused = False  # the views show a past moment: the age never says "live"
        self.stale = False
        self.labels: dict[str, QLabel] = {}
        # The labels sit on a child the strip places itself, with no layout of the strip's
        # own: a figure whose text changes length rearranges the labels and nothing else. Laid
        # out by the strip's layout, each change laid out the status bar and the window
        # (QLayout.activate always tells the parent), at every snapshot and cursor move.
        self.lines = QWidget(self)
        layout = self.flow = FlowLayout(self.lines, spacing=14)
        layout.setContentsMargins(6, 2, 6, 2)
        layout.setSizeConstraint(FlowLayout.SizeConstraint.SetNoConstraint)
        for name, tip in (
            ("backend", "poller backend and echo strategy"),
            ("uptime", "time since the loop started"),
            ("connections", "open connections"),
            ("events", "events dispatched per second, over the last second"),
            (
                "utilization",
                "share of time the loop was busy rather than waiting in poll, over the last second",
            ),
            (
                "lag",
                "lateness of the loop's probe timer (ten samples a second), median and 99th "
                "percentile over the window shown",
            ),
            ("producer", "the process whose loop this is: program, pid, kind"),
            ("link", "the link to the producer's telemetry stream"),
            ("age", "how old the last snapshot from the loop is"),
            ("history", "memory the window's history uses, of what --history-mb allows"),
            (
                "paused",
                "the views show the time cursor's moment; the loop runs on "
                "(Space: pause, End: live, arrows and dragging: move, wheel and +/-: zoom)",
            ),
        ):
            label = QLabel("-")
            label.setToolTip(tip)
            label.setObjectName(f"status_{name}")
            self.labels[name] = label
            layout.addWidget(label)
        self.labels["paused"].setText("")
        self.link = IN_PROCESS
        for name in ("producer", "link"):  # the loop in this process: nothing to name
            self.labels[name].setVisible(False)
        self.timer = QTimer(self)
        self.timer.setInterval(CHECK_MS)
        self.timer.timeout.connect(self.check_age)
        self.timer.start()
        self.check_age()

    # -- the lines it takes ------------------------------------------------------------------
    def _lines_height(self) -> int:
        return self.flow.heightForWidth(max(self.width(), 1))

    def hasHeightForWidth(self) -> bool:
        return False  # its size hint says the height (QStatusBar would ask for the narrowest)

    def sizeHint(self) -> QSize:
        return QSize(0, self._height or self._lines_height())

    def minimumSizeHint(self) -> QSize:
        return self.sizeHint()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.lines.setGeometry(self.rect())
        self._refit(self._lines_height())

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.LayoutRequest:  # a text changed length: more lines?
            self._refit(max(self._height, self._lines_height()))
        return super().event(event)

    def _refit(self, height: int) -> None:
        if height != self._height:
            self._height = height
            self.updateGeometry()

    def show_snapshot(self, snapshot: Snapshot, rates: Rates) -> None:
        self._received_at = self._clock()
        lb = self.labels
        lb["backend"].setText(f"{snapshot.backend} · {snapshot.strategy}")
        lb["uptime"].setText(f"up {units.duration(snapshot.uptime_s)}")
        lb["connections"].setText(plural(len(snapshot.connections), "connection"))
        lb["events"].setText(f"{units.rate(rates.events_per_s)} ev/s")
        lb["utilization"].setText(f"util {rates.utilization:.0%}")
        if rates.lag_p50_s is None or rates.lag_p99_s is None:
            lb["lag"].setText("lag n/a")
        else:
            lb["lag"].setText(
                f"lag p50 {units.lag(rates.lag_p50_s)} / p99 {units.lag(rates.lag_p99_s)}"
                f" (last {rates.lag_window_s:.0f} s)"
            )
        if not snapshot.alive:
            lb["backend"].setText(f"loop died: {snapshot.error or 'unknown reason'}")
            self._style(lb["backend"], RED)
        else:
            self._style(lb["backend"], "")
        self.check_age()

    def set_paused(self, paused: bool) -> None:
        label = self.labels["paused"]
        label.setText("PAUSED" if paused else "")
        self._style(label, PAUSED_STYLE if paused else "")
        if paused != self.paused:
            self.paused = paused
            self.check_age()

    @staticmethod
    def _style(label: QLabel, style: str) -> None:
        """A style sheet set only when it changes: setting one restyles, relays out and
        repaints the label even when it is the same (a scrub set it at every cursor move)."""
        if label.styleSheet() != style:
            label.setStyleSheet(style)

    def show_time(self, behind_s: float | None, clock: str = "", session: int = 1) -> None:
        """The moment the views show: None for live, else how far behind now it is."""
        label = self.labels["paused"]
        if behind_s is None:
            self.set_paused(False)
            return
        where = f"session {session}, " if session > 1 else ""
        label.setText(f"PAUSED at {clock} ({where}{units.duration(behind_s)} ago)")
        self._style(label, PAUSED_STYLE)
        if not self.paused:
            self.paused = True
            self.check_age()

    def show_history(self, used: int, budget: int) -> None:
        self.labels["history"].setText(
            f"history {units.byte_size(used)} of {units.byte_size(budget)}"
        )

    def show_source(
        self, producer: ProducerInfo | None, link: str, error: str = "", address: str = ""
    ) -> None:
        """Name the producer and the link (hidden for a loop in this process)."""
        self.link = link
        remote = link != IN_PROCESS
        producer_label, link_label = self.labels["producer"], self.labels["link"]
        producer_label.setVisible(remote)
        link_label.setVisible(remote)
        if not remote:
            return
        if producer is not None:
            producer_label.setText(f"{producer.program} · pid {producer.pid} · {producer.kind}")
            producer_label.setToolTip(
                f"{producer.program}, pid {producer.pid} ({producer.kind}), on "
                f"{producer.backend}; session {producer.session}"
                + (f" at {address}" if address else "")
            )
        else:
            producer_label.setText(address or "no producer yet")
        text, style = _LINK_WORDS.get(link, (link, RED))
        link_label.setText(text)
        self._style(link_label, style)
        where = f" ({address})" if address else ""
        link_label.setToolTip(
            f"{text}{where}: {error}" if error and link != CONNECTED else f"{text}{where}"
        )

    def show_replay(self, text: str) -> None:
        """A replay's position (``wording.replay_position``), in place of the snapshot age: a
        replayed snapshot is fresh however old its moment, and a paused replay is not stale."""
        self._replay = text
        self.check_age()

    def age(self) -> float | None:
        if self._received_at is None:
            return None
        return max(self._clock() - self._received_at, 0.0)

    def check_age(self) -> None:
        age = self.age()
        label = self.labels["age"]
        if self.link == RECORDING:
            label.setText(self._replay or "replay")
            if self.stale:
                label.setStyleSheet("")
            label.setToolTip("the recorded moment the replay has reached, and whether it plays")
            self.stale = False
            return
        who = "the loop" if self.link == IN_PROCESS else "the producer"
        if age is None:
            label.setText("no snapshot yet")
            stale = True
        elif self.paused:
            label.setText(f"paused · newest snapshot {units.duration(age)} old")
            stale = age > STALE_AFTER_S
        else:
            label.setText(f"snapshot {units.duration(age)} old" if age >= 0.1 else "live")
            stale = age > STALE_AFTER_S
        if stale:
            label.setToolTip(f"{who} has sent nothing for a while: it may be blocked or dead")
        elif self.paused:
            label.setToolTip(
                f"the views show the time cursor's moment, not now; {who} goes on sending, "
                "and this is how old its newest snapshot is (End: back to live)"
            )
        else:
            label.setToolTip(f"how old the last snapshot from {who} is")
        if stale != self.stale:
            label.setStyleSheet(RED if stale else "")
        self.stale = stale
