"""The window's Qt-free models: what the views show, worked out without Qt, pyqtgraph or numpy
(as napari keeps ``components/`` apart from ``_qt/``), so each can be tested, and reused by a
consumer without a display, on its own. The Qt views in ``loopmon.gui`` read them.

- ``units``: numbers as a reader takes them in (IEC sizes, rates, durations, clock times).
- ``wording``: plurals, wrappable messages, the window's title.
- ``validation``: what a user types (host, port, clients) checked before anything is sent.
- ``export``: the connections as CSV.
- ``kind_log``: a log bounded per kind, so rare events are never evicted by frequent ones.
- ``rates``: loop rates over a window of at least a second.
- ``timeline``: every snapshot the source delivers, within a memory budget, readable at any
  moment (``state_at``), with ghosts of closed connections and sessions on one axis;
  ``slices`` packs its stretches of time in stdlib arrays and thins them.
- ``time_axis``: the width the views show and the time cursor (live: the cursor at now).

The status strip's rate ring (``loopmon.gui.history``) and the plots' numpy columns over the
timeline (``loopmon.gui.timeline_columns``) stay beside the views: they are numpy.
"""
