"""The listeners list: address, state, accepted, open connections (refused and accept errors
in the tooltip).

Rows come from snapshots; a listener a Start command just returned is shown at once (before a
snapshot carries it), and one a Stop command just removed stays gone.

A listener is known by (session, id): ids are unique within a producer's session, across its
loop restarts, but a restarted producer (a new session) numbers from 1 again, so what the model
remembers about stopped or announced listeners belongs to the session it saw them in
(shared/DESIGN.md, "Identity").
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor

from loopmon.snapshot import ListenerRow

Index = QModelIndex | QPersistentModelIndex
_ROOT = QModelIndex()

COLUMNS = ("Address", "State", "Accepted", "Open", "")
ADDRESS, STATE, ACCEPTED, OPEN, ACTION = range(len(COLUMNS))
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
_STATE_COLOURS = {"failed": QColor(208, 48, 48), "listening": QColor(40, 160, 70)}
ID_ROLE = Qt.ItemDataRole.UserRole + 1


class ListenerModel(QAbstractTableModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[ListenerRow] = []
        self._from_snapshot: tuple[ListenerRow, ...] = ()
        self._session = ""  # the producer session the rows and the ids below belong to
        self._announced: dict[int, ListenerRow] = {}  # started, not yet in a snapshot
        self._removed: set[int] = set()  # stopped by us: never shown again (in this session)

    def rowCount(self, parent: Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if (
            orientation == Qt.Orientation.Horizontal
            and role == Qt.ItemDataRole.DisplayRole
            and 0 <= section < len(COLUMNS)
        ):
            return COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row, col = self._rows[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return (row.address, row.state, str(row.accepted), str(row.connections), "")[col]
        if role == ID_ROLE:
            return row.id
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (ACCEPTED, OPEN):
            return _RIGHT
        if role == Qt.ItemDataRole.ForegroundRole and col == STATE:
            return _STATE_COLOURS.get(row.state)
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = (
                f"{row.address}: {row.state}\naccepted {row.accepted}, open now "
                f"{row.connections}\nrefused {row.refused} (over max connections), "
                f"accept errors {row.errors}"
            )
            return f"{tip}\nlast error: {row.error}" if row.error else tip
        return None

    # -- feeding it --------------------------------------------------------------------------
    def set_listeners(self, rows: tuple[ListenerRow, ...], session: str = "") -> None:
        """The listeners of a snapshot of producer session ``session``."""
        self._enter(session)
        self._from_snapshot = rows
        present = {r.id for r in rows}
        for listener_id in list(self._announced):
            if listener_id in present:
                del self._announced[listener_id]
        self._rebuild()

    def announce(self, row: ListenerRow, session: str | None = None) -> None:
        """A listener a command reported started (a snapshot will confirm it); ``session``:
        the one the command went to, None for the current one."""
        if session and session != self._session:
            return  # a command answered by a producer that has been replaced since
        self._announced[row.id] = row
        self._rebuild()

    def forget(self, listener_id: int, session: str | None = None) -> None:
        """A listener a command reported stopped (in ``session``; None: the current one)."""
        if session and session != self._session:
            return  # that producer is gone, and its ids with it
        self._removed.add(listener_id)
        self._announced.pop(listener_id, None)
        self._rebuild()

    def _enter(self, session: str) -> None:
        """Another producer session: the ids remembered belong to the old one. The first
        session seen is no change: what was announced before it (a listener the window asked
        for at launch, before any snapshot) belongs to it."""
        if session != self._session:
            if self._session:
                self._removed.clear()
                self._announced.clear()
            self._session = session

    def _rebuild(self) -> None:
        shown = [
            r for r in self._from_snapshot if r.id not in self._removed and r.state != "stopped"
        ]
        known = {r.id for r in shown}
        shown.extend(r for r in self._announced.values() if r.id not in known)
        if [r.id for r in shown] == [r.id for r in self._rows]:
            if shown != self._rows:
                self._rows = shown
                self.dataChanged.emit(
                    self.index(0, 0), self.index(len(shown) - 1, len(COLUMNS) - 1)
                )
            return
        self.beginResetModel()
        self._rows = shown
        self.endResetModel()

    # -- reading it --------------------------------------------------------------------------
    @property
    def session(self) -> str:
        return self._session

    @property
    def rows(self) -> list[ListenerRow]:
        return list(self._rows)

    def listener_at(self, row: int) -> ListenerRow:
        return self._rows[row]
