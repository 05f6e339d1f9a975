"""The event log widget: kind toggles (wrapping onto more lines rather than widening the window),
a tree of events (a stall's stack or an exception's traceback expands under it), and which older
entries are no longer kept.

The view follows new entries while it is scrolled to the bottom, also across a change of the
kinds shown (which rebuilds the rows)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QPushButton,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from loopmon.gui.event_model import FD, KIND, TEXT, TIME, EventLogModel
from loopmon.gui.flow_layout import FlowLayout
from loopmon.snapshot import KINDS, LoopEvent


def describe_not_kept(not_kept: Mapping[str, int]) -> str:
    """'1,234 older connect and 56 older close entries not kept' ('' for none)."""
    parts = [f"{n:,} older {kind.replace('_', ' ')}" for kind, n in not_kept.items() if n > 0]
    if not parts:
        return ""
    listed = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
    one = len(parts) == 1 and sum(not_kept.values()) == 1
    return f"{listed} {'entry' if one else 'entries'} not kept"


class EventLog(QWidget):
    def __init__(self, max_entries: int = 5000, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = EventLogModel(max_entries, self)
        self.kind_buttons: dict[str, QToolButton] = {}
        toggles = FlowLayout()
        toggles.addWidget(QLabel("Show:"))
        for kind in KINDS:
            button = QToolButton()
            button.setText(kind.replace("_", " "))
            button.setCheckable(True)
            button.setChecked(True)
            button.toggled.connect(self._kinds_changed)
            self.kind_buttons[kind] = button
            toggles.addWidget(button)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear)
        toggles.addWidget(self.clear_button)
        self.dropped_label = QLabel()
        self.dropped_label.setObjectName("droppedLabel")
        self.dropped_label.setWordWrap(True)
        self.dropped_label.setVisible(False)

        tree = QTreeView()
        tree.setModel(self.model)
        tree.setUniformRowHeights(True)
        tree.setAlternatingRowColors(True)
        tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        tree.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        header = tree.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        tree.setColumnWidth(TIME, 130)
        tree.setColumnWidth(KIND, 110)
        tree.setColumnWidth(FD, 50)
        self.tree = tree
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(toggles)
        layout.addWidget(self.dropped_label)
        layout.addWidget(tree, 1)
        self._text_column = TEXT
        # The log as of a time cursor, not yet built because the log is hidden (``show_at``).
        self._due: Callable[[], list[LoopEvent]] | None = None

    def following(self) -> bool:
        """Scrolled to the bottom: new entries keep coming into view."""
        bar = self.tree.verticalScrollBar()
        return bar.value() >= bar.maximum() - 2

    def add(self, events: list[LoopEvent], dropped: Mapping[str, int] | None = None) -> None:
        self._catch_up()
        following = self.following()
        self.model.add(events, dropped)
        self._show_not_kept()
        if following and events:
            self.tree.scrollToBottom()

    def _show_not_kept(self) -> None:
        model = self.model
        text = describe_not_kept(model.not_kept)
        if text == self.dropped_label.text():
            return
        self.dropped_label.setText(text)
        self.dropped_label.setVisible(bool(text))
        on_the_way = sum(model.dropped.values())
        self.dropped_label.setToolTip(
            f"Each kind keeps its newest {model.max_entries:,} entries, so frequent kinds "
            "(connect, close) never push out rare ones (listener, loop, stall, exception)."
            + (
                f" {on_the_way:,} of these were let go before reaching the window "
                "(the loop's own log keeps each kind's newest too)."
                if on_the_way
                else ""
            )
        )

    def set_kinds(self, kinds: set[str]) -> None:
        for kind, button in self.kind_buttons.items():
            button.blockSignals(True)
            button.setChecked(kind in kinds)
            button.blockSignals(False)
        self._kinds_changed()

    def _kinds_changed(self, *_: object) -> None:
        following = self.following()
        self.model.set_kinds(k for k, b in self.kind_buttons.items() if b.isChecked())
        if following:  # the rows were rebuilt: stay at the newest
            self.tree.scrollToBottom()

    def clear(self) -> None:
        self.model.clear()
        self._show_not_kept()

    def show_at(self, events: Callable[[], list[LoopEvent]]) -> None:
        """Show ``events()`` instead (the log as of the time cursor), now if the log is shown,
        else when it is. Rebuilt at every cursor move while hidden behind a plot tab, it was
        the largest share of a move: ~19 ms at 1,300 events (clear, add, scrollToBottom
        asking every row for children), for a view nobody saw."""
        if self.isVisible():
            self.show_events(events())
        else:
            self._due = events

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._catch_up()

    def _catch_up(self) -> None:
        due, self._due = self._due, None
        if due is not None:
            self.show_events(due())

    def show_events(self, events: list[LoopEvent]) -> None:
        """Show these instead (the log as of the time cursor), newest in view."""
        self._due = None
        self.model.clear()
        self.model.add(events)
        self._show_not_kept()
        self.tree.scrollToBottom()
