"""The event log: a bounded tree model, one row per LoopEvent, its detail (a stall's stack, an
exception's traceback) as child rows under it, filtered by kind.

Each kind keeps its own newest ``max_entries`` (``KindLog``): connect/close churn lets go of
older connects and closes, never of the rare listener, loop, stall or exception entries
(shared/DESIGN.md, "rare events"). What each kind let go, here or before reaching the window
(the loop's own log), is counted in ``not_kept``.

Entries carry an absolute sequence number: a top-level row is found by bisecting the sorted
sequence numbers shown, and a child row's internal id is its parent's ``seq + 1``, so entries
can be dropped without renumbering anything.
"""

from __future__ import annotations

import collections
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor, QFont

from loopmon.gui.model import units
from loopmon.gui.model.kind_log import KindLog
from loopmon.snapshot import KINDS, LoopEvent

Index = QModelIndex | QPersistentModelIndex
_ROOT = QModelIndex()

COLUMNS = ("Time", "Kind", "fd", "What")
TIME, KIND, FD, TEXT = range(len(COLUMNS))
MAX_DETAIL_LINES = 400
KIND_COLOURS = {
    "stall": QColor(230, 140, 20),
    "exception": QColor(208, 48, 48),
    "listener_failed": QColor(208, 48, 48),
    "loop": QColor(120, 120, 220),
}
KIND_ROLE = Qt.ItemDataRole.UserRole + 1
# Past this many separate runs of rows to remove at once, one reset is cheaper for the view
# than a removal signal per run (a churn interleaves the connects let go with closes kept).
MAX_REMOVAL_RUNS = 32


class _Entry:
    __slots__ = ("event", "lines", "seq")

    def __init__(self, seq: int, event: LoopEvent) -> None:
        self.seq = seq
        self.event = event
        self.lines: list[str] | None = None

    def detail_lines(self) -> list[str]:
        if self.lines is None:
            lines = self.event.detail.rstrip().splitlines()
            if len(lines) > MAX_DETAIL_LINES:
                cut = len(lines) - MAX_DETAIL_LINES
                lines = [*lines[:MAX_DETAIL_LINES], f"… {cut} more lines"]
            self.lines = lines
        return self.lines


def _kind_of(entry: _Entry) -> str:
    return entry.event.kind


class EventLogModel(QAbstractItemModel):
    def __init__(self, max_entries: int = 5000, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._all: KindLog[_Entry] = KindLog(max_entries, _kind_of)
        self._shown: list[_Entry] = []
        self._shown_seqs: list[int] = []
        self._kinds: frozenset[str] = frozenset(KINDS)
        self._next_seq = 0
        # wall = loop time + this, for a producer whose clock is not this process's (a
        # recording); None: this process's clock (``units.clock_time``).
        self.wall_offset: float | None = None
        # Per kind: let go before reaching the window (the loop's bounded log), and here.
        self.dropped: collections.Counter[str] = collections.Counter()
        self._mono = QFont("monospace")
        self._mono.setStyleHint(QFont.StyleHint.Monospace)

    # -- structure -----------------------------------------------------------------------
    def _entry_at(self, row: int) -> _Entry | None:
        return self._shown[row] if 0 <= row < len(self._shown) else None

    def _row_of_seq(self, seq: int) -> int:
        i = bisect_left(self._shown_seqs, seq)
        return i if i < len(self._shown_seqs) and self._shown_seqs[i] == seq else -1

    def index(self, row: int, column: int, parent: Index = _ROOT) -> QModelIndex:
        if not (0 <= column < len(COLUMNS)) or row < 0:
            return QModelIndex()
        if not parent.isValid():
            if row >= len(self._shown):
                return QModelIndex()
            return self.createIndex(row, column, 0)
        if parent.internalId() != 0 or parent.column() != 0:
            return QModelIndex()
        entry = self._entry_at(parent.row())
        if entry is None or row >= len(entry.detail_lines()):
            return QModelIndex()
        return self.createIndex(row, column, entry.seq + 1)

    def parent(self, child: Index = _ROOT) -> QModelIndex:  # type: ignore[override]
        if not child.isValid():
            return QModelIndex()
        ident = child.internalId()
        if ident == 0:
            return QModelIndex()
        row = self._row_of_seq(ident - 1)
        return self.createIndex(row, 0, 0) if row >= 0 else QModelIndex()

    def rowCount(self, parent: Index = _ROOT) -> int:
        if not parent.isValid():
            return len(self._shown)
        if parent.internalId() != 0 or parent.column() != 0:
            return 0
        entry = self._entry_at(parent.row())
        return len(entry.detail_lines()) if entry is not None and entry.event.detail else 0

    def hasChildren(self, parent: Index = _ROOT) -> bool:
        if not parent.isValid():
            return bool(self._shown)
        if parent.internalId() != 0 or parent.column() != 0:
            return False
        entry = self._entry_at(parent.row())
        return entry is not None and bool(entry.event.detail.strip())

    def columnCount(self, parent: Index = _ROOT) -> int:
        return len(COLUMNS)

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
        if not index.isValid():
            return None
        ident = index.internalId()
        col = index.column()
        if ident != 0:  # a line of a detail
            if role == Qt.ItemDataRole.DisplayRole and col == TEXT:
                row = self._row_of_seq(ident - 1)
                lines = self._shown[row].detail_lines() if row >= 0 else []
                return lines[index.row()] if index.row() < len(lines) else None
            if role == Qt.ItemDataRole.FontRole:
                return self._mono
            return None
        entry = self._entry_at(index.row())
        if entry is None:
            return None
        event = entry.event
        if role == Qt.ItemDataRole.DisplayRole:
            if col == TIME:
                return units.clock_time(event.at, self.wall_offset)
            if col == KIND:
                return event.kind
            if col == FD:
                return str(event.fd) if event.fd >= 0 else ""
            return event.text
        if role == KIND_ROLE:
            return event.kind
        if role == Qt.ItemDataRole.ForegroundRole and col == KIND:
            return KIND_COLOURS.get(event.kind)
        if role == Qt.ItemDataRole.ToolTipRole and col == TEXT and event.detail:
            return "expand the row for the details"
        return None

    # -- feeding it ----------------------------------------------------------------------
    @property
    def max_entries(self) -> int:
        """How many entries each kind keeps."""
        return self._all.size

    @max_entries.setter
    def max_entries(self, size: int) -> None:
        self._all.size = size
        self._reset_shown()

    @property
    def trimmed(self) -> collections.Counter[str]:
        """Per kind, entries let go here to keep each kind's newest ``max_entries``."""
        return self._all.let_go

    @property
    def not_kept(self) -> collections.Counter[str]:
        """Per kind, older entries the log no longer has (dropped on the way, or here)."""
        return self.dropped + self._all.let_go

    def add(self, events: Iterable[LoopEvent], dropped: Mapping[str, int] | None = None) -> None:
        """Append ``events``; ``dropped``: per kind, how many the loop's log let go before
        these reached the window."""
        if dropped:
            self.dropped.update({k: n for k, n in dropped.items() if n > 0})
        first = self._next_seq
        new = []
        for event in events:
            new.append(_Entry(self._next_seq, event))
            self._next_seq += 1
        if not new:
            return
        gone = self._all.extend(new)
        gone_seqs = {e.seq for e in gone}
        kinds = self._kinds
        self._remove_shown(sorted(e.seq for e in gone if e.seq < first and e.event.kind in kinds))
        visible = [e for e in new if e.event.kind in kinds and e.seq not in gone_seqs]
        if visible:
            at = len(self._shown)
            self.beginInsertRows(QModelIndex(), at, at + len(visible) - 1)
            self._shown.extend(visible)
            self._shown_seqs.extend(e.seq for e in visible)
            self.endInsertRows()

    def _remove_shown(self, seqs: list[int]) -> None:
        """Take the rows of these (shown, sorted) sequence numbers out of the view."""
        if not seqs:
            return
        rows = [bisect_left(self._shown_seqs, seq) for seq in seqs]
        runs: list[list[int]] = []  # [first, last] rows, ascending
        for row in rows:
            if runs and runs[-1][1] == row - 1:
                runs[-1][1] = row
            else:
                runs.append([row, row])
        if len(runs) > MAX_REMOVAL_RUNS:
            self._reset_shown()
            return
        for first, last in reversed(runs):
            self.beginRemoveRows(QModelIndex(), first, last)
            del self._shown[first : last + 1]
            del self._shown_seqs[first : last + 1]
            self.endRemoveRows()

    def _reset_shown(self) -> None:
        self.beginResetModel()
        self._shown = [e for e in self._all if e.event.kind in self._kinds]
        self._shown_seqs = [e.seq for e in self._shown]
        self.endResetModel()

    def set_kinds(self, kinds: Iterable[str]) -> None:
        chosen = frozenset(kinds)
        if chosen == self._kinds:
            return
        self._kinds = chosen
        self._reset_shown()

    def clear(self) -> None:
        self.beginResetModel()
        self._all.clear()
        self._shown = []
        self._shown_seqs = []
        self.endResetModel()

    # -- reading it --------------------------------------------------------------------------
    @property
    def kinds(self) -> frozenset[str]:
        return self._kinds

    @property
    def total(self) -> int:
        """Entries held (any kind)."""
        return len(self._all)

    def event_at(self, row: int) -> LoopEvent:
        return self._shown[row].event
