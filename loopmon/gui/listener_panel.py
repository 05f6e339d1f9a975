"""Listener controls: host and port fields validated in place, Start, and the listeners with a
Stop button each. Nothing is sent to the loop unless both fields are valid; what the loop says
back (the real port, or why it failed) shows beside the control that asked."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QGridLayout,
    QGroupBox,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QWidget,
)

from loopmon.gui.commands import Commands, describe
from loopmon.gui.listener_model import ACTION, STATE, ListenerModel
from loopmon.gui.model.validation import parse_host, parse_port
from loopmon.gui.model.wording import wrappable
from loopmon.snapshot import ListenerRow

ERROR_STYLE = "color: #d03030;"
OK_STYLE = "color: #2e9d4f;"
NOTE_STYLE = "color: #808080;"


def say(label: QLabel, text: str, error: bool = False) -> None:
    """Show a message (red for an error) in a word-wrapped label: a long one wraps rather
    than widening the panel; the tooltip holds it as it was."""
    label.setText(wrappable(text))
    label.setStyleSheet(ERROR_STYLE if error else (OK_STYLE if text else ""))
    label.setToolTip(text)
    if label.property(HIDE_EMPTY):
        label.setVisible(bool(text))


HIDE_EMPTY = "hideWhenEmpty"


def message_label(name: str, hide_empty: bool = False) -> QLabel:
    """A label for what a control's command answered: word-wrapped, named for tests;
    ``hide_empty``: it takes no room while it has nothing to say (``say`` shows it)."""
    label = QLabel()
    label.setObjectName(name)
    label.setWordWrap(True)
    if hide_empty:
        label.setProperty(HIDE_EMPTY, True)
        label.setVisible(False)
    return label


class ListenerPanel(QGroupBox):
    def __init__(self, commands: Commands | None, parent: QWidget | None = None) -> None:
        super().__init__("Listeners", parent)
        self._commands = commands
        self.model = ListenerModel(self)
        self.buttons: dict[int, QPushButton] = {}
        self._start_why = ""  # why the source does not take start_listener ("" if it does)
        self._stop_why = ""

        self.host_edit = QLineEdit("127.0.0.1")
        self.host_edit.setPlaceholderText("127.0.0.1, ::1, 0.0.0.0, localhost")
        self.host_error = message_label("hostError")
        self.port_edit = QLineEdit("0")
        self.port_edit.setPlaceholderText("0-65535 (0: any free port)")
        self.port_edit.setMaximumWidth(90)
        self.port_error = message_label("portError")
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Open a listener on this address")
        self.start_message = message_label("startMessage")
        # What the message beside Start is about, so it goes once that is no longer so.
        self._fix_first = False  # "fix the address first": until both fields are valid
        self._failed_at: tuple[str, int] | None = None  # a start that failed on this address
        self._listening: tuple[str, int] | None = None  # (session, id) "listening on" names
        self.host_edit.textChanged.connect(self._check_host)
        self.port_edit.textChanged.connect(self._check_port)
        self.host_edit.textChanged.connect(self._fields_changed)
        self.port_edit.textChanged.connect(self._fields_changed)
        self.host_edit.returnPressed.connect(self.start)
        self.port_edit.returnPressed.connect(self.start)
        self.start_button.clicked.connect(self.start)

        table = QTableView()
        table.setModel(self.model)
        table.verticalHeader().setVisible(False)
        table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # The state takes what is left, elided ("full: select's FD_SETSIZE" is in its tooltip):
        # sized to its contents it squeezed the address to "12...".
        header.setSectionResizeMode(STATE, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(40)
        table.setMinimumHeight(90)
        self.table = table
        self.close_check = QCheckBox("Stop also closes its connections")
        self.close_check.setToolTip(
            "Unchecked: the listening socket closes and its connections run on"
        )
        self.stop_message = message_label("stopMessage")
        self.model.modelReset.connect(self._place_buttons)

        grid = QGridLayout(self)
        grid.addWidget(QLabel("Host"), 0, 0)
        grid.addWidget(self.host_edit, 0, 1)
        grid.addWidget(self.host_error, 0, 2, 1, 2)
        grid.addWidget(QLabel("Port"), 1, 0)
        grid.addWidget(self.port_edit, 1, 1)
        grid.addWidget(self.port_error, 1, 2, 1, 2)
        grid.addWidget(self.start_button, 2, 1)
        grid.addWidget(self.start_message, 2, 2, 1, 2)
        grid.addWidget(table, 3, 0, 1, 4)
        grid.addWidget(self.close_check, 4, 0, 1, 4)
        grid.addWidget(self.stop_message, 5, 0, 1, 4)
        grid.setColumnStretch(2, 1)

    # -- validation, in place ------------------------------------------------------------
    def _check_host(self) -> str | None:
        host, why = parse_host(self.host_edit.text())
        say(self.host_error, why, error=bool(why))
        return host

    def _check_port(self) -> int | None:
        port, why = parse_port(self.port_edit.text())
        say(self.port_error, why, error=bool(why))
        return port

    def _fields_changed(self, *_: object) -> None:
        """Clear the message beside Start once what it said is no longer so."""
        host = parse_host(self.host_edit.text())[0]
        port = parse_port(self.port_edit.text())[0]
        valid = host is not None and port is not None
        if (self._fix_first and valid) or (
            self._failed_at is not None and (host, port) != self._failed_at
        ):
            self._clear_start_message()

    def _clear_start_message(self) -> None:
        self._fix_first = False
        self._failed_at = None
        self._listening = None
        say(self.start_message, "")

    # -- starting ------------------------------------------------------------------------
    def start(self) -> None:
        host, port = self._check_host(), self._check_port()
        if host is None or port is None:
            say(self.start_message, "fix the address first: nothing was started", error=True)
            self._fix_first, self._failed_at, self._listening = True, None, None
            return
        if self._commands is None:
            say(self.start_message, "no loop to start it on", error=True)
            return
        self.start_listener(host, port)

    def start_listener(self, host: str, port: int) -> None:
        """Ask the loop for a listener; report the outcome beside Start."""
        assert self._commands is not None
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        say(self.start_message, f"starting {shown}…")
        self._fix_first, self._failed_at, self._listening = False, None, None
        session = self.model.session

        def then(row: ListenerRow | None, error: BaseException | None) -> None:
            if error is not None or row is None:
                say(self.start_message, describe(error) if error else "failed", error=True)
                self._failed_at = (host, port)  # e.g. in use: stale once that changes
                return
            self.model.announce(row, session)
            say(self.start_message, f"listening on {row.address}")
            self._listening = (session, row.id)  # stale once that listener stops

        self._commands.start_listener(host, port, then)

    # -- the list and its Stop buttons ---------------------------------------------------
    def set_listeners(self, rows: tuple[ListenerRow, ...], session: str = "") -> None:
        self.model.set_listeners(rows, session)

    def _place_buttons(self) -> None:
        self.buttons = {}
        for r in range(self.model.rowCount()):
            row = self.model.listener_at(r)
            button = QPushButton("Stop")
            button.setToolTip(self._stop_why or f"Stop listening on {row.address}")
            button.setEnabled(self._commands is not None and not self._stop_why)
            button.clicked.connect(lambda _=False, lid=row.id: self.stop(lid))
            self.table.setIndexWidget(self.model.index(r, ACTION), button)
            self.buttons[row.id] = button

    def stop(self, listener_id: int) -> None:
        if self._commands is None:
            return
        rows = {r.id: r for r in self.model.rows}
        address = rows[listener_id].address if listener_id in rows else f"#{listener_id}"
        close = self.close_check.isChecked()
        button = self.buttons.get(listener_id)
        if button is not None:
            button.setEnabled(False)
        say(self.stop_message, f"stopping {address}…")
        session = self.model.session

        def then(_result: object, error: BaseException | None) -> None:
            if error is not None:
                if listener_id in self.buttons:
                    self.buttons[listener_id].setEnabled(True)
                say(self.stop_message, f"{address}: {describe(error)}", error=True)
                return
            self.model.forget(listener_id, session)
            stopped = rows.get(listener_id)
            if stopped is not None and self._failed_at == (stopped.host, stopped.port):
                self._clear_start_message()  # the address a start failed on is free now
            # "listening on" it is no longer so ("": started before the first snapshot came)
            if self._listening in (("", listener_id), (session, listener_id)):
                self._clear_start_message()
            extra = " and closed its connections" if close else ""
            say(self.stop_message, f"stopped {address}{extra}")

        self._commands.stop_listener(listener_id, close, then)

    def set_allowed(self, start_why: str = "", stop_why: str = "") -> None:
        """Grey out what the source does not take; each reason ("" for allowed) is the
        control's tooltip."""
        if (start_why, stop_why) == (self._start_why, self._stop_why):
            return
        was = self._start_why
        self._start_why, self._stop_why = start_why, stop_why
        # Said beside Start too: a disabled button's tooltip is easy to miss.
        if start_why:
            self._fix_first, self._failed_at = False, None
            say(self.start_message, start_why)
            self.start_message.setStyleSheet(NOTE_STYLE)  # neither success nor failure
        elif was:
            self._clear_start_message()
        for widget in (self.start_button, self.host_edit, self.port_edit):
            widget.setEnabled(not start_why)
        self.start_button.setToolTip(start_why or "Open a listener on this address")
        self.close_check.setEnabled(not stop_why)
        for lid, button in self.buttons.items():
            rows = {r.id: r for r in self.model.rows}
            address = rows[lid].address if lid in rows else f"#{lid}"
            button.setEnabled(self._commands is not None and not stop_why)
            button.setToolTip(stop_why or f"Stop listening on {address}")

    def set_host_port(self, host: str, port: str) -> None:
        self.host_edit.setText(host)
        self.port_edit.setText(port)
