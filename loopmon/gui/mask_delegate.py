"""Paints an event mask as coloured chips: READ, WRITE, ERROR.

ERROR is always registered (epoll reports errors and hang-ups whether asked or not), so its chip
is quiet on a healthy connection and turns red only once an error or hang-up was reported on
that fd (the row's ``ready_error``): red means something happened, never just "registered"."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from loopmon.events import ERROR, READ, WRITE
from loopmon.gui.connection_model import ERRORS_SEEN_ROLE, MASK_ROLE

# Shared with the raster's legend, so a colour means one thing across the window.
READ_COLOUR = QColor(52, 120, 235)
WRITE_COLOUR = QColor(245, 145, 30)
ERROR_COLOUR = QColor(200, 60, 60)
CHIPS: tuple[tuple[int, str, QColor], ...] = (
    (READ, "R", READ_COLOUR),
    (WRITE, "W", WRITE_COLOUR),
    (ERROR, "E", ERROR_COLOUR),
)
QUIET_COLOUR = QColor(128, 128, 128, 70)  # registered, nothing to say
_CHIP_W = 18
_GAP = 3


def chip_look(bit: int, mask: int, errors_seen: int) -> str:
    """How a chip shows: 'on' (its colour), 'quiet' (ERROR registered, nothing reported),
    'off' (not registered)."""
    if not mask & bit:
        return "off"
    if bit == ERROR and errors_seen <= 0:
        return "quiet"
    return "on"


class MaskChipDelegate(QStyledItemDelegate):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        mask = index.data(MASK_ROLE)
        if not isinstance(mask, int):
            super().paint(painter, option, index)
            return
        style = option.widget.style() if option.widget is not None else None
        if style is not None:  # the selection/hover background, without the text
            opt = QStyleOptionViewItem(option)
            self.initStyleOption(opt, index)
            opt.text = ""
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, option.widget)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        rect = option.rect
        h = min(rect.height() - 6, 16)
        x = rect.left() + 4
        y = rect.top() + (rect.height() - h) // 2
        seen = index.data(ERRORS_SEEN_ROLE)
        errors_seen = seen if isinstance(seen, int) else 0
        for bit, letter, colour in CHIPS:
            chip = QRect(x, y, _CHIP_W, h)
            look = chip_look(bit, mask, errors_seen)
            if look == "on":
                painter.setPen(Qt.PenStyle.NoPen)
                painter.setBrush(colour)
                painter.drawRoundedRect(chip, 4, 4)
                painter.setPen(QColor(255, 255, 255))
            elif look == "quiet":
                painter.setPen(Qt.PenStyle.NoPen)
                painter.setBrush(QUIET_COLOUR)
                painter.drawRoundedRect(chip, 4, 4)
                painter.setPen(QColor(128, 128, 128, 200))
            else:
                painter.setPen(QColor(128, 128, 128, 90))
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRoundedRect(chip.adjusted(0, 0, -1, -1), 4, 4)
                painter.setPen(QColor(128, 128, 128, 120))
            painter.drawText(chip, Qt.AlignmentFlag.AlignCenter, letter)
            x += _CHIP_W + _GAP
        painter.restore()

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        base = super().sizeHint(option, index)
        return QSize(len(CHIPS) * (_CHIP_W + _GAP) + 8, max(base.height(), 20))
