"""Shared test configuration.

GUI tests run offscreen whoever starts pytest: the platform must be chosen before any
QApplication exists, and this file is imported before pytest-qt creates one.
"""

from __future__ import annotations

import os

if not os.environ.get("QT_QPA_PLATFORM"):
    # Unset or empty (an empty one makes Qt look for a display and abort the interpreter).
    os.environ["QT_QPA_PLATFORM"] = "offscreen"

# Producers the tests start write their telemetry token files where a user's would go; tests
# that kill a producer hard leave its file behind. A runtime directory of the run's own keeps
# them out of the user's (and every child process inherits it).
if "LOOPMON_TEST_RUNTIME" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _runtime = tempfile.mkdtemp(prefix="loopmon-test-runtime-")  # 0700, ours
    os.environ["LOOPMON_TEST_RUNTIME"] = _runtime
    os.environ["XDG_RUNTIME_DIR"] = _runtime
    atexit.register(shutil.rmtree, _runtime, True)
