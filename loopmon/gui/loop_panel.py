"""Loop controls: the backend (switching restarts the loop, after a confirmation) and the echo
strategy. Each shows the loop's answer beside it."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QComboBox, QGridLayout, QGroupBox, QLabel, QMessageBox, QWidget

from loopmon.gui.commands import Commands, describe
from loopmon.gui.listener_panel import message_label, say
from loopmon.snapshot import Snapshot

STRATEGIES = ("direct", "seed")
STRATEGY_TIPS = {
    "direct": "send at once; register WRITE only while the kernel's buffer is full",
    "seed": "the article's dance: after each read switch to WRITE, back to READ once drained",
}


def ask_user(parent: QWidget, question: str) -> bool:
    answer = QMessageBox.question(
        parent,
        "Restart the loop?",
        question,
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
        QMessageBox.StandardButton.Cancel,
    )
    return answer == QMessageBox.StandardButton.Yes


class LoopPanel(QGroupBox):
    def __init__(
        self,
        commands: Commands | None,
        backends: list[str],
        backend: str,
        strategy: str,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Loop", parent)
        self._commands = commands
        self.confirm: Callable[[str], bool] = lambda question: ask_user(self, question)
        self._backend = backend
        self._strategy = strategy
        self._busy = False
        self._backend_why = ""
        self._strategy_why = ""

        self.backend_combo = QComboBox()
        self.backend_combo.addItems(backends)
        self.backend_combo.setCurrentText(backend)
        self.backend_combo.setToolTip("Poller backends that work here, best first")
        self.backend_message = message_label("backendMessage")
        self.strategy_combo = QComboBox()
        for name in STRATEGIES:
            self.strategy_combo.addItem(name)
            self.strategy_combo.setItemData(self.strategy_combo.count() - 1, STRATEGY_TIPS[name])
        self.strategy_combo.setCurrentText(strategy)
        self.strategy_message = message_label("strategyMessage")
        self.backend_combo.activated.connect(self._backend_chosen)
        self.strategy_combo.activated.connect(self._strategy_chosen)

        grid = QGridLayout(self)
        grid.addWidget(QLabel("Backend"), 0, 0)
        grid.addWidget(self.backend_combo, 0, 1)
        grid.addWidget(self.backend_message, 1, 0, 1, 3)
        grid.addWidget(QLabel("Echo strategy"), 2, 0)
        grid.addWidget(self.strategy_combo, 2, 1)
        grid.addWidget(self.strategy_message, 3, 0, 1, 3)
        grid.setColumnStretch(2, 1)

    def set_allowed(self, backend_why: str = "", strategy_why: str = "") -> None:
        """Grey out what the source does not take; the reason ("" for allowed) becomes the
        control's tooltip."""
        self._backend_why, self._strategy_why = backend_why, strategy_why
        if not self._busy:
            self.backend_combo.setEnabled(not backend_why)
        self.backend_combo.setToolTip(backend_why or "Poller backends that work here, best first")
        self.strategy_combo.setEnabled(not strategy_why)
        self.strategy_combo.setToolTip(strategy_why or "How the echo server answers")

    def set_backends(self, backends: list[str]) -> None:
        """The backends to offer (a remote producer: only its own)."""
        current = [self.backend_combo.itemText(i) for i in range(self.backend_combo.count())]
        if current != backends:
            self.backend_combo.clear()
            self.backend_combo.addItems(backends)
            self.backend_combo.setCurrentText(self._backend)

    def show_snapshot(self, snapshot: Snapshot) -> None:
        """Follow what the loop reports (unless a change is on its way)."""
        if self._busy:
            return
        self._backend, self._strategy = snapshot.backend, snapshot.strategy
        if self.backend_combo.currentText() != snapshot.backend:
            if self.backend_combo.findText(snapshot.backend) < 0:
                self.backend_combo.addItem(snapshot.backend)
            self.backend_combo.setCurrentText(snapshot.backend)
        if self.strategy_combo.currentText() != snapshot.strategy:
            self.strategy_combo.setCurrentText(snapshot.strategy)

    def choose_backend(self, name: str) -> None:
        self.backend_combo.setCurrentText(name)
        self._backend_chosen()

    def choose_strategy(self, name: str) -> None:
        self.strategy_combo.setCurrentText(name)
        self._strategy_chosen()

    def _backend_chosen(self, *_: object) -> None:
        name = self.backend_combo.currentText()
        if name == self._backend or self._commands is None or self._backend_why:
            return
        question = (
            f"Restart the loop on {name}?\n\nThe loop on {self._backend} stops: every "
            "connection is closed, and the listeners reopen on the same addresses."
        )
        if not self.confirm(question):
            self.backend_combo.setCurrentText(self._backend)
            say(self.backend_message, "")
            return
        self._busy = True
        self.backend_combo.setEnabled(False)
        say(self.backend_message, f"restarting on {name}…")

        def then(_result: object, error: BaseException | None) -> None:
            self._busy = False
            self.backend_combo.setEnabled(not self._backend_why)
            if error is not None:
                self.backend_combo.setCurrentText(self._backend)
                say(self.backend_message, f"restart on {name} failed: {describe(error)}", True)
                return
            self._backend = name
            say(self.backend_message, f"running on {name}")

        self._commands.restart(name, then)

    def _strategy_chosen(self, *_: object) -> None:
        name = self.strategy_combo.currentText()
        if name == self._strategy or self._commands is None or self._strategy_why:
            return
        self._busy = True
        say(self.strategy_message, f"switching to {name}…")

        def then(_result: object, error: BaseException | None) -> None:
            self._busy = False
            if error is not None:
                self.strategy_combo.setCurrentText(self._strategy)
                say(self.strategy_message, describe(error), error=True)
                return
            self._strategy = name
            say(self.strategy_message, f"echoing with {name}: {STRATEGY_TIPS[name]}")

        self._commands.set_strategy(name, then)
