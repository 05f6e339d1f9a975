"""Shared test configuration.

GUI tests run offscreen whoever starts pytest: the platform must be chosen before any
QApplication exists, and this file is imported before pytest-qt creates one.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
