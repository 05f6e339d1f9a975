"""GUI test setup: settings go to a temporary file, never the user's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("LOOPMON_SETTINGS", str(tmp_path / "loopmon-settings.ini"))
    yield
