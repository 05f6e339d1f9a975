"""Finding the icon and the .desktop file, from a checkout or an installed wheel.

In a checkout they sit in ``<repo>/resources``; the wheel force-includes that folder as
``loopmon/_resources`` (pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

ICON = "loopmon.svg"
DESKTOP_ENTRY = "loopmon.desktop"

_PACKAGE = Path(__file__).resolve().parent.parent  # .../loopmon


def resource_dirs() -> list[Path]:
    """Candidate folders, installed first."""
    return [_PACKAGE / "_resources", _PACKAGE.parent / "resources"]


def find(name: str) -> Path | None:
    """The path of resource ``name``, or None if neither layout has it."""
    for folder in resource_dirs():
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def icon_path() -> Path | None:
    return find(ICON)


def desktop_entry_path() -> Path | None:
    return find(DESKTOP_ENTRY)
