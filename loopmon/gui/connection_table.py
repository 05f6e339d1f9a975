"""The connections table widget: filter field, table, close button, selection kept by fd."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QItemSelection, QItemSelectionModel, QPoint, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from loopmon.gui.commands import Commands, describe
from loopmon.gui.connection_model import (
    AGE,
    BYTES_IN,
    BYTES_OUT,
    FD,
    LISTENER,
    MASK,
    PEER,
    QUEUE,
    STATE,
    ConnectionModel,
)
from loopmon.gui.mask_delegate import MaskChipDelegate
from loopmon.gui.model.timeline import State
from loopmon.gui.model.wording import plural, wrappable
from loopmon.snapshot import ListenerRow, Snapshot

COLUMN_WIDTHS = {
    FD: 50,
    PEER: 150,
    LISTENER: 130,
    STATE: 110,  # room for a ghost's reason
    MASK: 75,
    QUEUE: 75,
    BYTES_IN: 85,
    BYTES_OUT: 85,
    AGE: 60,
}


class ConnectionTable(QWidget):
    selection_changed = Signal(list)  # the selected fds, when the set of them changes

    def __init__(self, commands: Commands | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._commands = commands
        self._ghosts_not_shown = 0  # closed connections beyond what the table lists
        self.model = ConnectionModel(self)
        self._selected: list[int] = []
        self._current_fd: int | None = None
        self._restoring = False
        self._scroll = 0

        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText(
            "Filter: peer, state, mask, listener, fd (fd:N for one fd)…"
        )
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self._filter_changed)
        self.count_label = QLabel("no connections")
        self.close_button = QPushButton("Close selected")
        self.close_button.setEnabled(False)
        self.close_button.setToolTip("Close the selected connections on the loop")
        self.close_button.clicked.connect(self.close_selected)
        self.message = QLabel()
        self.message.setObjectName("closeMessage")
        self.message.setWordWrap(True)

        view = QTableView()
        view.setModel(self.model)
        view.setSortingEnabled(True)
        view.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        view.setAlternatingRowColors(True)
        view.setWordWrap(False)
        view.verticalHeader().setVisible(False)
        view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        view.verticalHeader().setDefaultSectionSize(22)
        header = view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        # Together about 740 px: the table opens without a horizontal scroll bar beside the
        # controls on a 1,280 px screen (the last column stretches into what is left).
        for col, width in COLUMN_WIDTHS.items():
            view.setColumnWidth(col, width)
        view.setItemDelegateForColumn(MASK, MaskChipDelegate(view))
        view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        view.customContextMenuRequested.connect(self._context_menu)
        self.view = view
        view.selectionModel().selectionChanged.connect(self._on_selection)
        self.model.modelAboutToBeReset.connect(self._before_reset)
        self.model.modelReset.connect(self._after_reset)

        top = QHBoxLayout()
        top.addWidget(self.filter_edit, 1)
        top.addWidget(self.count_label)
        bottom = QHBoxLayout()
        bottom.addWidget(self.close_button)
        bottom.addWidget(self.message, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(view, 1)
        layout.addLayout(bottom)

    # -- data in -------------------------------------------------------------------------
    def set_snapshot(self, snapshot: Snapshot) -> None:
        self.model.set_snapshot(snapshot)
        self._count()

    def set_state(self, state: State, listeners: tuple[ListenerRow, ...]) -> None:
        """The connections at the time cursor, and the ghosts of those closed by then."""
        self.model.set_state(state.at, state.rows, state.ghosts, listeners)
        self._count()

    def set_ghosts_not_shown(self, count: int) -> None:
        if count != self._ghosts_not_shown:
            self._ghosts_not_shown = count
            self._count()

    def _filter_changed(self, text: str) -> None:
        self.model.set_filter(text)
        self._count()

    def _count(self) -> None:
        closed = self.model.ghost_count
        shown, total = self.model.rowCount(), self.model.total - closed
        shown -= self.model.shown_ghosts
        text = (
            plural(total, "connection")
            if shown == total
            else f"{shown:,} of {plural(total, 'connection')}"
        )
        more = self._ghosts_not_shown
        if more:
            text = f"{text} · {closed + more:,} closed (the newest {closed:,} listed)"
        elif closed:
            text = f"{text} · {closed:,} closed"
        self.count_label.setText(text)

    # -- selection, kept by fd across resets ----------------------------------------------
    def selected_fds(self) -> list[int]:
        return list(self._selected)

    def select_fds(self, fds: list[int]) -> None:
        current = fds[0] if fds else None
        self._apply_selection(fds, self._current_fd if self._current_fd in fds else current)
        self._on_selection()

    def _on_selection(self, *_: object) -> None:
        if self._restoring:
            return
        rows = sorted({i.row() for i in self.view.selectionModel().selectedRows()})
        fds = [self.model.fd_at(r) for r in rows]
        current = self.view.selectionModel().currentIndex()
        self._current_fd = self.model.fd_at(current.row()) if current.isValid() else None
        self.close_button.setEnabled(bool(fds) and self._commands is not None)
        if fds != self._selected:
            self._selected = fds
            self.selection_changed.emit(list(fds))

    def _before_reset(self) -> None:
        self._scroll = self.view.verticalScrollBar().value()

    def _after_reset(self) -> None:
        wanted = self._selected
        present = [fd for fd in wanted if self.model.row_of(fd) is not None]
        self._apply_selection(present, self._current_fd)
        self._selected = present
        self.view.verticalScrollBar().setValue(self._scroll)
        if present != wanted:  # some selected connections are gone (or filtered out)
            self.close_button.setEnabled(bool(present) and self._commands is not None)
            self.selection_changed.emit(list(present))

    def _apply_selection(self, fds: list[int], current_fd: int | None) -> None:
        selection_model = self.view.selectionModel()
        selection = QItemSelection()
        last = self.model.columnCount() - 1
        for row in sorted(r for r in (self.model.row_of(fd) for fd in fds) if r is not None):
            selection.select(self.model.index(row, 0), self.model.index(row, last))
        self._restoring = True
        try:
            flags = QItemSelectionModel.SelectionFlag.ClearAndSelect
            selection_model.select(selection, flags)
            current = self.model.row_of(current_fd) if current_fd is not None else None
            if current is not None:
                selection_model.setCurrentIndex(
                    self.model.index(current, 0), QItemSelectionModel.SelectionFlag.NoUpdate
                )
        finally:
            self._restoring = False

    # -- closing connections -------------------------------------------------------------
    def close_selected(self) -> None:
        fds = self.selected_fds()
        if not fds or self._commands is None:
            return
        self.message.setStyleSheet("")
        self.message.setText(f"closing {plural(len(fds), 'connection')}…")
        outcome: dict[int, str] = {}

        def closed(fd: int) -> Callable[[object, BaseException | None], None]:
            def then(_result: object, error: BaseException | None) -> None:
                outcome[fd] = describe(error) if error is not None else ""
                if len(outcome) == len(fds):
                    self._report_close(outcome)

            return then

        for fd in fds:
            self._commands.close_connection(fd, closed(fd))

    def _report_close(self, outcome: dict[int, str]) -> None:
        failed = {fd: why for fd, why in outcome.items() if why}
        if failed:
            first = next(iter(failed.items()))
            self.message.setStyleSheet("color: #d03030")
            self.message.setText(
                wrappable(
                    f"could not close {len(failed)} of {len(outcome)}: fd {first[0]}: {first[1]}"
                )
            )
        else:
            self.message.setStyleSheet("")
            fds = ", ".join(str(fd) for fd in sorted(outcome))
            self.message.setText(f"closed fd {fds}")

    def _context_menu(self, pos: QPoint) -> None:
        index = self.view.indexAt(pos)
        if not index.isValid():
            return
        fd = self.model.fd_at(index.row())
        if fd not in self._selected:
            self.select_fds([fd])
        menu = QMenu(self)
        action = QAction(f"Close connection{'s' if len(self._selected) > 1 else ''}", menu)
        action.setEnabled(self._commands is not None)
        action.triggered.connect(self.close_selected)
        menu.addAction(action)
        menu.popup(self.view.viewport().mapToGlobal(pos))
