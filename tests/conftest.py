"""Shared test configuration.

GUI tests run offscreen whoever starts pytest: the platform must be chosen before any
QApplication exists, and this file is imported before pytest-qt creates one.
"""

from __future__ import annotations

import os

if not os.environ.get("QT_QPA_PLATFORM"):
    # Unset or empty (an empty one makes Qt look for a display and abort the interpreter).
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
