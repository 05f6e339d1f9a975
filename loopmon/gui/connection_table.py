"""The connections table widget: filter field, table, close button; the selection is kept by
connection key (session, id), and closing names the connection's id, never its fd."""

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
    Key,
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
    selection_changed = Signal(list)  # the selected keys (session, id), when they change

    def __init__(self, commands: Commands | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._commands = commands
        self._ghosts_not_shown = 0  # closed connections beyond what the table lists
        self.model = ConnectionModel(self)
        self._selected: list[Key] = []
        self._current: Key | None = None
        self._can_close = True
        self._close_why = ""
        # The producer's session now: a row of an earlier one (the cursor scrubbed back past a
        # restart) is never closed by its id, which in the new session names another.
        self.live_session: str | None = None
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
        self.model.set_state(state.at, state.rows, state.ghosts, listeners, state.session)
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
        # Short: it shares a line with the filter, and at 800 px a longer one widened the
        # window past the screen; the tooltip says the rest.
        tip = "connections open at the time shown, and closed ones still in history"
        if more:
            text = f"{text} · {closed + more:,} closed ({closed:,} listed)"
            tip = (
                f"the table lists the newest {closed:,} closed connections; the mask raster "
                "and the history keep the others"
            )
        elif closed:
            text = f"{text} · {closed:,} closed"
        self.count_label.setText(text)
        self.count_label.setToolTip(tip)

    # -- selection, kept by key (session, id) across resets --------------------------------
    # Never by fd: the kernel reuses one at once, and an open connection and a ghost may show
    # the same fd; selecting one of them must not select the other.
    def selected_keys(self) -> list[Key]:
        return list(self._selected)

    def selected_fds(self) -> list[int]:
        """The fds the selected rows show (for reading; selection is by key)."""
        model = self.model
        rows = (model.row_of(key) for key in self._selected)
        return [model.fd_at(r) for r in rows if r is not None]

    def select_keys(self, keys: list[Key]) -> None:
        current = keys[0] if keys else None
        self._apply_selection(keys, self._current if self._current in keys else current)
        self._on_selection()

    def select_fds(self, fds: list[int]) -> None:
        """Select the row shown with each fd: the open connection's if there is one, else
        the newest ghost's (one row per fd, never both)."""
        model = self.model
        keys = []
        for fd in fds:
            rows = model.rows_with_fd(fd)
            if rows:
                keys.append(model.key_at(rows[0]))
        self.select_keys(keys)

    def set_can_close(self, can: bool, why: str = "") -> None:
        """Whether the source takes close_connection (``why`` not, for the tooltip)."""
        self._can_close = can
        self._close_why = why
        self.close_button.setToolTip("Close the selected connections on the loop" if can else why)
        self._enable_close()

    def _closable(self, key: Key) -> bool:
        if self.live_session is not None and key[0] != self.live_session:
            return False
        return not self.model.is_ghost(key)

    def _enable_close(self) -> None:
        live = any(self._closable(key) for key in self._selected)
        self.close_button.setEnabled(live and self._commands is not None and self._can_close)

    def _on_selection(self, *_: object) -> None:
        if self._restoring:
            return
        rows = sorted({i.row() for i in self.view.selectionModel().selectedRows()})
        keys = [self.model.key_at(r) for r in rows]
        current = self.view.selectionModel().currentIndex()
        self._current = self.model.key_at(current.row()) if current.isValid() else None
        changed = keys != self._selected
        self._selected = keys
        self._enable_close()
        if changed:
            self.selection_changed.emit(list(keys))

    def _before_reset(self) -> None:
        self._scroll = self.view.verticalScrollBar().value()

    def _after_reset(self) -> None:
        wanted = self._selected
        present = [key for key in wanted if self.model.row_of(key) is not None]
        self._apply_selection(present, self._current)
        self._selected = present
        self.view.verticalScrollBar().setValue(self._scroll)
        self._enable_close()  # a selected connection may have become a ghost
        if present != wanted:  # some selected connections are gone (or filtered out)
            self.selection_changed.emit(list(present))

    def _apply_selection(self, keys: list[Key], current_key: Key | None) -> None:
        selection_model = self.view.selectionModel()
        selection = QItemSelection()
        last = self.model.columnCount() - 1
        for row in sorted(r for r in (self.model.row_of(k) for k in keys) if r is not None):
            selection.select(self.model.index(row, 0), self.model.index(row, last))
        self._restoring = True
        try:
            flags = QItemSelectionModel.SelectionFlag.ClearAndSelect
            selection_model.select(selection, flags)
            current = self.model.row_of(current_key) if current_key is not None else None
            if current is not None:
                selection_model.setCurrentIndex(
                    self.model.index(current, 0), QItemSelectionModel.SelectionFlag.NoUpdate
                )
        finally:
            self._restoring = False

    # -- closing connections, by id -----------------------------------------------------
    def close_selected(self) -> None:
        """Close the selected open connections by their ids (ghosts are closed already)."""
        model = self.model
        targets: list[tuple[int, int]] = []  # (id, fd shown)
        for key in self._selected:
            row = model.row_of(key)
            if row is not None and self._closable(key):
                targets.append((key[1], model.fd_at(row)))
        if not targets or self._commands is None or not self._can_close:
            return
        self.message.setStyleSheet("")
        self.message.setText(f"closing {plural(len(targets), 'connection')}…")
        outcome: dict[int, str] = {}  # by fd shown, for the message

        def closed(fd: int) -> Callable[[object, BaseException | None], None]:
            def then(_result: object, error: BaseException | None) -> None:
                outcome[fd] = describe(error) if error is not None else ""
                if len(outcome) == len(targets):
                    self._report_close(outcome)

            return then

        for conn_id, fd in targets:
            self._commands.close_connection(conn_id, closed(fd))

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
        key = self.model.key_at(index.row())
        if key not in self._selected:
            self.select_keys([key])
        menu = QMenu(self)
        action = QAction(f"Close connection{'s' if len(self._selected) > 1 else ''}", menu)
        action.setEnabled(self.close_button.isEnabled())
        if not self._can_close:
            action.setToolTip(self._close_why)
        action.triggered.connect(self.close_selected)
        menu.addAction(action)
        menu.popup(self.view.viewport().mapToGlobal(pos))
