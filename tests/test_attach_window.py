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


def test_run_window_starts_attach_in_a_session_of_its_own(
    displayable: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    from loopmon.cli import run
    from loopmon.instrument import Instrument

    started: list[tuple[list[str], dict[str, object]]] = []

    class FakePopen:
        pid = 4321

        def __init__(self, argv: list[str], **kwargs: object) -> None:
            started.append((argv, kwargs))

    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    said: list[str] = []
    instrument = Instrument(say=said.append)
    run.open_window(instrument, "127.0.0.1:4242", b"\x01" * 32)
    [(argv, kwargs)] = started
    assert argv == [sys.executable, "-m", "loopmon", "attach", "127.0.0.1:4242"]
    env = kwargs["env"]
    assert isinstance(env, dict) and env["LOOPMON_TOKEN"] == "01" * 32
    assert kwargs["start_new_session"] is True
    assert kwargs["stdout"] is subprocess.DEVNULL  # the program's stdout stays the program's
    assert said == ["loopmon: the window is pid 4321"]
