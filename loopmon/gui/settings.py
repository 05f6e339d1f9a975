"""Where the window remembers geometry and last choices.

The user's settings live under the organization/application name. A test (or anyone who wants a
throwaway profile) passes a file path, or sets ``LOOPMON_SETTINGS`` to one, and gets an INI file
there instead, so nothing touches the user's real settings.
"""

from __future__ import annotations

import os

from PySide6.QtCore import QSettings

ORGANIZATION = "loopmon"
APPLICATION = "loopmon"
ENV_VAR = "LOOPMON_SETTINGS"


def open_settings(path: str | os.PathLike[str] | None = None) -> QSettings:
    """QSettings at ``path`` (INI), else at $LOOPMON_SETTINGS (INI), else the user's own."""
    chosen = os.fspath(path) if path is not None else os.environ.get(ENV_VAR)
    if chosen:
        return QSettings(chosen, QSettings.Format.IniFormat)
    return QSettings(
        QSettings.Format.NativeFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION
    )


def read_int(settings: QSettings, key: str, default: int) -> int:
    """An int setting; the INI backend hands back strings, and bad values fall back."""
    value = settings.value(key, default)
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        return default


def read_str(settings: QSettings, key: str, default: str) -> str:
    value = settings.value(key, default)
    return value if isinstance(value, str) else default
