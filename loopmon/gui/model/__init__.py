"""The window's Qt-free models: what the views show, worked out without Qt, pyqtgraph or numpy
(as napari keeps ``components/`` apart from ``_qt/``), so each can be tested, and reused by a
consumer without a display, on its own. The Qt views in ``loopmon.gui`` read them.

- ``units``: numbers as a reader takes them in (IEC sizes, rates, durations, clock times).
- ``wording``: plurals, wrappable messages, the window's title.
- ``validation``: what a user types (host, port, clients) checked before anything is sent.
- ``export``: the connections as CSV.
- ``kind_log``: a log bounded per kind, so rare events are never evicted by frequent ones.
- ``rates``: loop rates over a window of at least a second.

The plots' ring buffers (``loopmon.gui.history``) stay beside the views: they are numpy.
"""
