"""A prometheus_client collector over a producer's latest snapshot.

Any producer can feed it (``serve``'s telemetry, ``run``'s instrument, a stream client): it is
given the ``ProducerInfo`` once and every snapshot as it is made (``update``), and exports the
metric families named in ``NAMES`` when scraped (``collect``). What the producer does not
measure (``ProducerInfo.measures``, words from ``FIGURES``) is left out, never exported as 0;
the loop's own figures are always there, since every producer has a loop.

Prometheus's rules, and how they are kept:
- ``_total`` counters never decrease. Figures the producer keeps cumulative (the loop's totals,
  bytes, a listener's accepts) restart at 0 when its loop is replaced: the last value is folded
  into a base (``_Restarts``). Readiness counts are the open rows' plus the closed ones':
  ``Snapshot.closed_ready`` when the producer keeps those running totals (exact however many
  closes a snapshot could not list), else each closed row's final counts as listed, once each;
  a row that vanished unlisted can then only lower the sum, which is held at what was last
  exported (``_Floor``).
- No label per fd, peer or task: series are per listener address, refusal reason, readiness
  kind and, only when the producer has several loops, per loop (its name), so the number of
  series stays flat however many connections there are.
- ``loopmon_loop_lag_seconds`` is a histogram over a fixed coarse subset of
  ``loopmon.histogram``'s bounds (``LAG_BUCKETS``): the counts are exact for those bounds, whose
  ``le`` labels are rounded to 4 significant digits (0.05 % at most, within a 10 % bucket). The
  loop does not sum its lag samples, so ``_sum`` is estimated from the buckets' middles (each
  within 5 % of its samples).

``update`` and ``collect`` may run on different threads (a lock guards the state); in ``serve``
both run on the loop thread. The work of a scrape over 10,000 open rows (counting them, summing
their readiness) is done at C speed and once per snapshot, however many scrapes read it.

Past 400 lines and still one job: a snapshot in, the metric families out. The folds that keep
Prometheus's rules across loop restarts (``_Restarts``, ``_Floor``, ``_LagFold``) exist only for
these families, and the families are built by what they read (rows, listeners, loops).
"""

from __future__ import annotations

import bisect
import collections
import itertools
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import attrgetter, countOf, itemgetter
from typing import Final

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from loopmon import __version__, histogram
from loopmon.snapshot import ConnectionRow, LagHistogram, LoopFigures, ProducerInfo, Snapshot

# The metric names, exactly (issue 20); a test compares the output against them.
NAMES: Final = (
    "loopmon_info",
    "loopmon_connections",
    "loopmon_connections_accepted_total",
    "loopmon_connections_refused_total",
    "loopmon_received_bytes_total",
    "loopmon_sent_bytes_total",
    "loopmon_queued_bytes",
    "loopmon_events_total",
    "loopmon_loop_iterations_total",
    "loopmon_loop_busy_seconds_total",
    "loopmon_loop_poll_seconds_total",
    "loopmon_loop_utilization",
    "loopmon_loop_lag_seconds",
    "loopmon_stalls_total",
    "loopmon_handler_exceptions_total",
    "loopmon_tasks",
)

# Words of ProducerInfo.measures this collector reads, and what each one gates.
FIGURES: Final = {
    "connections": "loopmon_connections (rows of kind 'connection')",
    "ready_read": "loopmon_events_total{kind='read'}",
    "ready_write": "loopmon_events_total{kind='write'}",
    "ready_error": "loopmon_events_total{kind='error'}",
    "bytes_in": "loopmon_received_bytes_total",
    "bytes_out": "loopmon_sent_bytes_total",
    "queue_bytes": "loopmon_queued_bytes",
    "listeners": "loopmon_connections_accepted_total, loopmon_connections_refused_total",
    "tasks": "loopmon_tasks",
}

# Utilization is exported over about this long (the "over the last second").
UTILIZATION_S: Final = 1.0
_MARK_EVERY_S: Final = UTILIZATION_S / 8  # so the marks kept stay few at any snapshot rate


def _lag_buckets() -> tuple[tuple[int, str], ...]:
    """(index into histogram.BOUNDS, le label): the bounds nearest to 10 us, then to 1-2.5-5
    steps up to 10 s (within 5 % of each: the loop's bounds are 10 % apart)."""
    targets = [1e-5]
    for decade in range(-5, 1):
        targets += [2.5 * 10.0**decade, 5 * 10.0**decade, 10.0 ** (decade + 1)]
    bounds = histogram.BOUNDS

    def nearest(target: float) -> int:
        above = min(bisect.bisect_left(bounds, target), len(bounds) - 1)
        candidates = (above - 1, above) if above > 0 else (above,)
        return min(candidates, key=lambda i: abs(math.log(bounds[i] / target)))

    indices = sorted({nearest(t) for t in targets})
    return tuple((i, f"{bounds[i]:.4g}") for i in indices if i < len(histogram.BOUNDS))


LAG_BUCKETS: Final = _lag_buckets()

_KIND = itemgetter(ConnectionRow._fields.index("kind"))
_LOOP = itemgetter(ConnectionRow._fields.index("loop"))
_READY: Final = {
    "read": itemgetter(ConnectionRow._fields.index("ready_read")),
    "write": itemgetter(ConnectionRow._fields.index("ready_write")),
    "error": itemgetter(ConnectionRow._fields.index("ready_error")),
}
_READY_WORD: Final = {"read": "ready_read", "write": "ready_write", "error": "ready_error"}
_LISTENER_FIGURES = attrgetter("accepted", "refused", "errors")
# The reasons a listener turns a connection away: closed at once (over the server's limit, or
# an fd its poller cannot watch), or accept() itself failed (EMFILE, ...).
REFUSAL_REASONS: Final = ("limit", "accept_error")


@dataclass(slots=True)
class _Restarts:
    """A figure the producer keeps cumulative, kept monotonic across its restarts: a value
    below the last one means the count began again, so the last one joins the base."""

    base: float = 0.0
    last: float = 0.0

    def __call__(self, raw: float) -> float:
        if raw < self.last:
            self.base += self.last
        self.last = raw
        return self.base + raw


@dataclass(slots=True)
class _Floor:
    """A sum over rows that come and go: closed rows' final figures join ``base``, and the
    sum is never exported below what it was last (a row that vanished unreported)."""

    base: float = 0.0
    exported: float = 0.0

    def __call__(self, open_sum: float) -> float:
        value = self.base + open_sum
        if value < self.exported:
            self.base += self.exported - value
            value = self.exported
        self.exported = value
        return value


@dataclass(slots=True)
class _LagFold:
    """The lag histogram's coarse cumulative counts, monotonic across restarts."""

    base: list[float] = field(default_factory=lambda: [0.0] * (len(LAG_BUCKETS) + 2))
    last: list[float] = field(default_factory=lambda: [0.0] * (len(LAG_BUCKETS) + 2))
    # The lag last folded and what it gave: the probe fires 10 times a second, so most
    # snapshots (25 a second) carry the same counts, and the fold (a pass over 147 buckets,
    # ~3/4 of an update) need not be made again.
    seen: LagHistogram | None = None
    folded: list[float] = field(default_factory=list)

    def __call__(self, lag: LagHistogram) -> list[float]:
        """[count <= each LAG_BUCKETS bound..., count, estimated sum]."""
        if lag == self.seen:
            return self.folded
        counts = lag.counts
        cumulative = list(itertools.accumulate(counts)) if counts else []
        total = cumulative[-1] if cumulative else 0
        raw = [float(cumulative[i]) if cumulative else 0.0 for i, _ in LAG_BUCKETS]
        raw.append(float(total))
        raw.append(math.fsum(n * histogram.middle(i, lag.max_s) for i, n in enumerate(counts) if n))
        if raw[-2] < self.last[-2]:
            self.base = [b + last for b, last in zip(self.base, self.last, strict=True)]
        self.last = raw
        self.seen = lag
        self.folded = [b + r for b, r in zip(self.base, raw, strict=True)]
        return self.folded


@dataclass(slots=True)
class _Derived:
    """What one snapshot's rows add up to, per loop key ("" for a single loop)."""

    connections: dict[str, int]
    ready: dict[str, dict[str, int]]  # loop key -> kind -> sum over open rows


class SnapshotCollector:
    """``collect()`` for prometheus_client, ``update(snapshot)`` for the producer."""

    def __init__(self, producer: ProducerInfo) -> None:
        self.producer = producer
        self.measures = frozenset(producer.measures)
        self._lock = threading.Lock()
        self._latest: Snapshot | None = None
        self._derived: tuple[Snapshot, _Derived] | None = None  # rows summed, per snapshot
        self._loop_names: dict[int, str] = {}
        self._restarts: collections.defaultdict[tuple[str, ...], _Restarts] = (
            collections.defaultdict(_Restarts)
        )
        self._floors: collections.defaultdict[tuple[str, str], _Floor] = collections.defaultdict(
            _Floor
        )
        self._lags: collections.defaultdict[str, _LagFold] = collections.defaultdict(_LagFold)
        # Listeners by id: (address, accepted, refused, errors) as last seen; the figures of
        # those no longer listed stay in the totals of their address.
        self._listeners: dict[int, tuple[str, int, int, int]] = {}
        self._listener_base: collections.Counter[tuple[str, str]] = collections.Counter()
        # (taken_at, busy_s, poll_s) marks per loop key, for utilization over the last second.
        self._marks: dict[str, collections.deque[tuple[float, float, float]]] = {}
        self._utilization: dict[str, float] = {}
        self._folded: dict[str, float] = {}
        self._folded_loops: dict[str, tuple[list[float], list[float]]] = {}
        self.updates = 0

    # -- the producer's side --------------------------------------------------------------

    def update(self, snapshot: Snapshot) -> None:
        """Take a new snapshot (any thread; cheap: no per-row work but closed rows)."""
        with self._lock:
            self.updates += 1
            previous, self._latest = self._latest, snapshot
            several = len(snapshot.loops) > 1
            if several:
                self._loop_names = _loop_names(snapshot)
            if previous is not None and _new_epoch(previous, snapshot):
                self._end_epoch(previous)
            if several or snapshot.closed_ready is None:
                # No running totals of closed rows: each closed row's final counts, as listed.
                for closed in snapshot.closed:
                    row = closed.row
                    key = self._key(row.loop) if several else ""
                    for kind, word in _READY_WORD.items():
                        value = getattr(row, word)
                        if value:
                            self._floors[key, kind].base += value
            if "listeners" in self.measures:
                self._fold_listeners(snapshot)
            # Restarts are folded here, on every snapshot: a scrape may miss the last of a loop.
            restarts = self._restarts
            self._folded = {
                "bytes_in": restarts["bytes_in",](snapshot.bytes_in),
                "bytes_out": restarts["bytes_out",](snapshot.bytes_out),
            }
            loops: dict[str, tuple[list[float], list[float]]] = {}
            for key, figures in self._loop_figures(snapshot):
                self._mark(key, snapshot.taken_at, figures)
                counts = [
                    restarts["iterations", key](figures.iterations),
                    restarts["busy", key](figures.busy_s),
                    restarts["poll", key](figures.poll_s),
                    restarts["stalls", key](figures.stalls),
                    restarts["errors", key](figures.errors),
                ]
                loops[key] = (counts, self._lags[key](figures.lag))
            self._folded_loops = loops

    def _end_epoch(self, last: Snapshot) -> None:
        """The producer's counts began again (a new telemetry): the last snapshot's readiness
        totals, closed and open, join the base the new ones count on from."""
        if last.closed_ready is None or len(last.loops) > 1:
            return
        sums = self._rows(last).ready[""]
        for n, kind in enumerate(_READY):
            self._floors["", kind].base += last.closed_ready[n] + sums.get(kind, 0)

    def _fold_listeners(self, snapshot: Snapshot) -> None:
        seen = self._listeners
        now: dict[int, tuple[str, int, int, int]] = {}
        for row in snapshot.listeners:
            now[row.id] = (row.address, *_LISTENER_FIGURES(row))
        for gone in seen.keys() - now.keys():
            address, accepted, refused, errors = seen[gone]
            base = self._listener_base
            base[address, "accepted"] += accepted
            base[address, "limit"] += refused
            base[address, "accept_error"] += errors
        self._listeners = now

    def _mark(self, key: str, at: float, figures: LoopFigures) -> None:
        marks = self._marks.get(key)
        if marks is None:
            marks = self._marks[key] = collections.deque()
        if marks and (at < marks[-1][0] or figures.busy_s < marks[-1][1]):
            marks.clear()  # a restarted loop, or another clock
        if not marks or at - marks[-1][0] >= _MARK_EVERY_S:
            marks.append((at, figures.busy_s, figures.poll_s))
        # The newest mark at least UTILIZATION_S old is the base; older ones can go.
        while len(marks) > 1 and at - marks[1][0] >= UTILIZATION_S:
            marks.popleft()
        _, busy0, poll0 = marks[0]
        busy = figures.busy_s - busy0
        measured = busy + figures.poll_s - poll0
        if measured > 0:
            self._utilization[key] = min(max(busy / measured, 0.0), 1.0)
        elif key not in self._utilization:
            self._utilization[key] = figures.utilization

    # -- prometheus_client's side ---------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            return iter(self._families())

    def _key(self, loop_id: int) -> str:
        return self._loop_names.get(loop_id) or str(loop_id)

    def _loop_figures(self, snapshot: Snapshot) -> list[tuple[str, LoopFigures]]:
        if len(snapshot.loops) > 1:
            return [(self._key(row.id), row.totals) for row in snapshot.loops]
        return [("", snapshot.totals)]

    def _rows(self, snapshot: Snapshot) -> _Derived:
        cached = self._derived
        if cached is not None and cached[0] is snapshot:
            return cached[1]
        rows = snapshot.connections
        if len(snapshot.loops) > 1:
            connections: dict[str, int] = {self._key(row.id): 0 for row in snapshot.loops}
            ready: dict[str, dict[str, int]] = {
                key: dict.fromkeys(_READY, 0) for key in connections
            }
            for row in rows:
                key = self._key(row.loop)
                if row.kind == "connection":
                    connections[key] = connections.get(key, 0) + 1
                sums = ready.setdefault(key, dict.fromkeys(_READY, 0))
                sums["read"] += row.ready_read
                sums["write"] += row.ready_write
                sums["error"] += row.ready_error
        else:
            # C-level passes, no list built: about 0.2-0.5 ms each over 10,000 rows.
            connections = {"": countOf(map(_KIND, rows), "connection")}
            ready = {
                "": {
                    kind: sum(map(get, rows))
                    for kind, get in _READY.items()
                    if _READY_WORD[kind] in self.measures
                }
            }
        derived = _Derived(connections, ready)
        self._derived = (snapshot, derived)
        return derived

    def _families(self) -> list[Metric]:
        producer = self.producer
        snapshot = self._latest
        measures = self.measures
        info = InfoMetricFamily(
            "loopmon",
            "The producer of these metrics: 1.",
            labels=("version", "backend", "producer"),
        )
        backend = snapshot.backend if snapshot is not None else producer.backend
        info.add_metric((producer.version or __version__, backend, producer.kind), {})
        families: list[Metric] = [info]
        if snapshot is None:
            return families
        several = len(snapshot.loops) > 1
        loop_label: tuple[str, ...] = ("loop",) if several else ()
        derived = self._rows(snapshot)

        families += self._row_families(snapshot, derived, several, loop_label)
        families += self._loop_families(several, loop_label)

        if "tasks" in measures and snapshot.tasks is not None:
            tasks = GaugeMetricFamily("loopmon_tasks", "Tasks alive now.", labels=loop_label)
            if several:
                per_loop = collections.Counter(task.loop for task in snapshot.tasks)
                for row in snapshot.loops:
                    n = row.tasks if row.tasks is not None else per_loop.get(row.id, 0)
                    tasks.add_metric((self._key(row.id),), n)
            else:
                tasks.add_metric((), len(snapshot.tasks))
            families.append(tasks)
        return families

    def _row_families(
        self,
        snapshot: Snapshot,
        derived: _Derived,
        several: bool,
        loop_label: tuple[str, ...],
    ) -> list[Metric]:
        """What the connection rows and the byte totals say: open connections, listeners,
        bytes, the queue, readiness events."""
        measures = self.measures
        families: list[Metric] = []
        if "connections" in measures:
            gauge = GaugeMetricFamily(
                "loopmon_connections", "Connections open now.", labels=loop_label
            )
            for key, n in derived.connections.items():
                gauge.add_metric(_labels(key, several), n)
            families.append(gauge)

        if "listeners" in measures:
            families += self._listener_families()

        for word, name, doc in (
            ("bytes_in", "loopmon_received_bytes", "Bytes received."),
            ("bytes_out", "loopmon_sent_bytes", "Bytes sent."),
        ):
            if word in measures:
                counter = CounterMetricFamily(name, doc)
                counter.add_metric((), self._folded[word])
                families.append(counter)
        if "queue_bytes" in measures:
            families.append(
                GaugeMetricFamily(
                    "loopmon_queued_bytes",
                    "Bytes queued for sending, summed over connections.",
                    value=snapshot.queue_bytes,
                )
            )

        kinds = [kind for kind, word in _READY_WORD.items() if word in measures]
        if kinds:
            events = CounterMetricFamily(
                "loopmon_events",
                "Readiness events dispatched, by kind (read, write, error).",
                labels=(*loop_label, "kind"),
            )
            closed_ready = snapshot.closed_ready if not several else None
            for key, sums in derived.ready.items():
                for n, kind in enumerate(_READY):
                    if kind not in kinds:
                        continue
                    counted = sums.get(kind, 0) + (closed_ready[n] if closed_ready else 0)
                    total = self._floors[key, kind](counted)
                    events.add_metric((*_labels(key, several), kind), total)
            families.append(events)

        return families

    def _listener_families(self) -> list[Metric]:
        accepted = CounterMetricFamily(
            "loopmon_connections_accepted",
            "Connections accepted, by listener address.",
            labels=("listener",),
        )
        refused = CounterMetricFamily(
            "loopmon_connections_refused",
            "Connections turned away, by listener address and reason: 'limit' (closed at "
            "once: over the connection limit, or an fd the poller cannot watch), "
            "'accept_error' (accept() failed: EMFILE, ...).",
            labels=("listener", "reason"),
        )
        totals: collections.Counter[tuple[str, str]] = collections.Counter(self._listener_base)
        for address, n_accepted, n_refused, n_errors in self._listeners.values():
            totals[address, "accepted"] += n_accepted
            totals[address, "limit"] += n_refused
            totals[address, "accept_error"] += n_errors
        addresses = sorted({address for address, _ in totals})
        for address in addresses:
            accepted.add_metric((address,), totals[address, "accepted"])
            for reason in REFUSAL_REASONS:
                refused.add_metric((address, reason), totals[address, reason])
        return [accepted, refused]

    def _loop_families(self, several: bool, loop_label: tuple[str, ...]) -> list[Metric]:
        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=loop_label)

        iterations = counter("loopmon_loop_iterations", "Passes of the loop.")
        busy = counter("loopmon_loop_busy_seconds", "Time the loop spent not blocked in poll.")
        poll = counter("loopmon_loop_poll_seconds", "Time the loop spent blocked in poll.")
        stalls = counter(
            "loopmon_stalls", "Callbacks or handlers that ran past the stall threshold."
        )
        errors = counter("loopmon_handler_exceptions", "Callbacks or handlers that raised.")
        utilization = GaugeMetricFamily(
            "loopmon_loop_utilization",
            f"Share of the last {UTILIZATION_S:g} s the loop was busy rather than in poll (0-1).",
            labels=loop_label,
        )
        lag = HistogramMetricFamily(
            "loopmon_loop_lag_seconds",
            "How late the loop's 100 ms probe timer fired (sum estimated from bucket middles).",
            labels=loop_label,
        )
        for key, (counts, folded) in self._folded_loops.items():
            labels = _labels(key, several)
            iterations.add_metric(labels, counts[0])
            busy.add_metric(labels, counts[1])
            poll.add_metric(labels, counts[2])
            stalls.add_metric(labels, counts[3])
            errors.add_metric(labels, counts[4])
            utilization.add_metric(labels, self._utilization.get(key, 0.0))
            buckets = [(le, folded[n]) for n, (_, le) in enumerate(LAG_BUCKETS)]
            buckets.append(("+Inf", folded[-2]))
            lag.add_metric(labels, buckets, folded[-1])
        return [iterations, busy, poll, utilization, lag, stalls, errors]


def _new_epoch(previous: Snapshot, snapshot: Snapshot) -> bool:
    """Whether ``snapshot`` begins a new run of counts: another session, or a new telemetry
    (its sequence and uptime start again)."""
    return (
        snapshot.session != previous.session
        or snapshot.seq <= previous.seq
        or snapshot.uptime_s < previous.uptime_s
    )


def _labels(key: str, several: bool) -> tuple[str, ...]:
    return (key,) if several else ()


def _loop_names(snapshot: Snapshot) -> dict[int, str]:
    """A label per loop: its name, with its id when two loops share a name."""
    counts = collections.Counter(row.name for row in snapshot.loops)
    return {
        row.id: row.name if row.name and counts[row.name] == 1 else f"{row.name or 'loop'}#{row.id}"
        for row in snapshot.loops
    }
