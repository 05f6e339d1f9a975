"""The event log widget: kind toggles, a tree of events (a stall's stack or an exception's
traceback expands under it), and what was dropped on the way."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from loopmon.gui.event_model import FD, KIND, TEXT, TIME, EventLogModel
from loopmon.snapshot import KINDS, LoopEvent


class EventLog(QWidget):
    def __init__(self, max_entries: int = 5000, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = EventLogModel(max_entries, self)
        self.kind_buttons: dict[str, QToolButton] = {}
        toggles = QHBoxLayout()
        toggles.addWidget(QLabel("Show:"))
        for kind in KINDS:
            button = QToolButton()
            button.setText(kind.replace("_", " "))
            button.setCheckable(True)
            button.setChecked(True)
            button.toggled.connect(self._kinds_changed)
            self.kind_buttons[kind] = button
            toggles.addWidget(button)
        toggles.addStretch(1)
        self.dropped_label = QLabel()
        self.dropped_label.setObjectName("droppedLabel")
        toggles.addWidget(self.dropped_label)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear)
        toggles.addWidget(self.clear_button)

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
        layout.addWidget(tree, 1)
        self._text_column = TEXT

    def add(self, events: list[LoopEvent], dropped: int = 0) -> None:
        bar = self.tree.verticalScrollBar()
        following = bar.value() >= bar.maximum() - 2
        self.model.add(events, dropped)
        if dropped or self.model.trimmed:
            parts = []
            if self.model.dropped:
                parts.append(f"{self.model.dropped} dropped by the loop's log")
            if self.model.trimmed:
                parts.append(f"{self.model.trimmed} oldest trimmed here")
            self.dropped_label.setText("; ".join(parts))
        if following and events:
            self.tree.scrollToBottom()

    def set_kinds(self, kinds: set[str]) -> None:
        for kind, button in self.kind_buttons.items():
            button.blockSignals(True)
            button.setChecked(kind in kinds)
            button.blockSignals(False)
        self._kinds_changed()

    def _kinds_changed(self, *_: object) -> None:
        self.model.set_kinds(k for k, b in self.kind_buttons.items() if b.isChecked())

    def clear(self) -> None:
        self.model.clear()
