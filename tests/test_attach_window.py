"""``loopmon attach`` without --json: the window's checks, then ``gui.app.run_attached`` with
the address and the token found; one line and exit 2 in a build without it."""

from __future__ import annotations

import argparse
import sys
import types

import pytest

from loopmon.cli import attach, window


@pytest.fixture
def displayable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(window, "missing", lambda packages=window.GUI_PACKAGES: [])
    monkeypatch.setattr(window, "has_display", lambda: True)


def _args() -> argparse.Namespace:
    return argparse.Namespace(address=("127.0.0.1", 4242), json=False)


def test_a_build_without_the_attached_window_says_so(
    displayable: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "loopmon.gui.app", types.ModuleType("loopmon.gui.app"))
    assert attach.open_window(_args(), b"t" * 32) == 2
    assert capsys.readouterr().err == attach.NO_WINDOW + "\n"


def test_the_window_gets_the_address_and_the_token(
    displayable: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[argparse.Namespace] = []
    app = types.ModuleType("loopmon.gui.app")
    app.run_attached = lambda args: seen.append(args) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "loopmon.gui.app", app)
    assert attach.open_window(_args(), b"t" * 32) == 0
    assert seen[0].address == ("127.0.0.1", 4242) and seen[0].token == b"t" * 32


def test_no_display_is_the_windows_advice(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(window, "missing", lambda packages=window.GUI_PACKAGES: [])
    monkeypatch.setattr(window, "has_display", lambda: False)
    assert attach.open_window(_args(), b"t" * 32) == 2
    assert "no display" in capsys.readouterr().err
