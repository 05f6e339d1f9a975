"""The collector over hand-built snapshots: the names, what parses, what stays monotonic, and
what is left out when a producer does not measure it."""

from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from loopmon import histogram
from loopmon.metrics.collector import LAG_BUCKETS, NAMES, SnapshotCollector
from loopmon.metrics.exporter import Exporter
from loopmon.snapshot import ListenerRow, LoopRow, TaskRow
from tests.metrics.helpers import (
    EVERYTHING,
    SERVE,
    closed,
    figures,
    lag,
    row,
    snapshot,
)


def scrape(collector: SnapshotCollector) -> dict[str, float]:
    """Every sample as ``name{labels}`` -> value, through the text format and its parser."""
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def text_of(collector: SnapshotCollector) -> str:
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def full_snapshot(seq: int = 1, at: float = 10.0) -> object:
    return snapshot(
        seq,
        at,
        totals=figures(
            span_s=at,
            iterations=100,
            events=40,
            busy_s=0.5,
            poll_s=9.5,
            stalls=2,
            errors=1,
            lag=lag(0.0001, 0.002, 0.03),
        ),
        connections=(row(1, ready_read=3, bytes_in=10), row(2, ready_write=4)),
        listeners=(ListenerRow(1, "127.0.0.1", 10000, "listening", accepted=5, refused=1),),
        bytes_in=100,
        bytes_out=90,
        queue_bytes=7,
        tasks=(TaskRow(1, "t", "main", "pending", 1.0, ""),),
    )


def test_the_names_are_exactly_the_issues() -> None:
    collector = SnapshotCollector(EVERYTHING)
    collector.update(full_snapshot())  # type: ignore[arg-type]
    families = {f.name for f in text_string_to_metric_families(text_of(collector))}
    # The text parser names counters without _total, as prometheus_client's model does.
    exported = {
        f"{f.name}_total" if f.type == "counter" else f.name
        for f in text_string_to_metric_families(text_of(collector))
    }
    assert exported == set(NAMES), families


def test_serve_exports_everything_but_tasks_and_the_values_are_the_snapshots() -> None:
    collector = SnapshotCollector(SERVE)
    collector.update(full_snapshot())  # type: ignore[arg-type]
    s = scrape(collector)
    assert s["loopmon_info{backend=epoll,producer=serve,version=0.1.0}"] == 1
    assert s["loopmon_connections{}"] == 2
    assert s["loopmon_connections_accepted_total{listener=127.0.0.1:10000}"] == 5
    assert s["loopmon_connections_refused_total{listener=127.0.0.1:10000,reason=limit}"] == 1
    assert s["loopmon_connections_refused_total{listener=127.0.0.1:10000,reason=accept_error}"] == 0
    assert s["loopmon_received_bytes_total{}"] == 100
    assert s["loopmon_sent_bytes_total{}"] == 90
    assert s["loopmon_queued_bytes{}"] == 7
    assert s["loopmon_events_total{kind=read}"] == 3
    assert s["loopmon_events_total{kind=write}"] == 4
    assert s["loopmon_events_total{kind=error}"] == 0
    assert s["loopmon_loop_iterations_total{}"] == 100
    assert s["loopmon_loop_busy_seconds_total{}"] == 0.5
    assert s["loopmon_loop_poll_seconds_total{}"] == 9.5
    assert s["loopmon_stalls_total{}"] == 2
    assert s["loopmon_handler_exceptions_total{}"] == 1
    assert s["loopmon_loop_lag_seconds_count{}"] == 3
    assert s["loopmon_loop_lag_seconds_bucket{le=+Inf}"] == 3
    assert not any(name.startswith("loopmon_tasks") for name in s)


def test_before_any_snapshot_only_the_info() -> None:
    s = scrape(SnapshotCollector(SERVE))
    assert list(s) == ["loopmon_info{backend=epoll,producer=serve,version=0.1.0}"]


def test_what_a_producer_does_not_measure_is_left_out_never_zero() -> None:
    # A foreign program's loop (loopmon run): no bytes, no accepts, no queue, no readiness.
    foreign = replace(SERVE, kind="run", measures=("connections", "tasks"))
    collector = SnapshotCollector(foreign)
    collector.update(full_snapshot())  # type: ignore[arg-type]
    names = {key.partition("{")[0] for key in scrape(collector)}
    for absent in (
        "loopmon_received_bytes_total",
        "loopmon_sent_bytes_total",
        "loopmon_queued_bytes",
        "loopmon_connections_accepted_total",
        "loopmon_connections_refused_total",
        "loopmon_events_total",
    ):
        assert absent not in names
    assert {"loopmon_connections", "loopmon_tasks", "loopmon_loop_iterations_total"} <= names


def test_promtool_accepts_the_output() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing: apt-get install -y prometheus (.ci/run does)")
    collector = SnapshotCollector(EVERYTHING)
    collector.update(full_snapshot())  # type: ignore[arg-type]
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=text_of(collector), capture_output=True, text=True
    )
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_openmetrics_is_negotiated_and_parses() -> None:
    import socket

    from loopmon.ioloop import IOLoop

    loop = IOLoop(make_current=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        exporter = Exporter(loop, sock, EVERYTHING)
        exporter.update(full_snapshot())  # type: ignore[arg-type]
        body, content_type = exporter.render("application/openmetrics-text; version=1.0.0")
        assert content_type.startswith("application/openmetrics-text")
        names = {f.name for f in parse_openmetrics(body.decode())}
        assert "loopmon_loop_lag_seconds" in names
        body, content_type = exporter.render("")
        assert content_type.startswith("text/plain; version=0.0.4")
    finally:
        sock.close()
        loop.close()


def test_a_closed_connections_counts_stay_in_the_totals() -> None:
    collector = SnapshotCollector(SERVE)
    open_row = row(1, ready_read=5, ready_write=2)
    collector.update(snapshot(1, 1.0, connections=(open_row,)))
    assert scrape(collector)["loopmon_events_total{kind=read}"] == 5
    # It read twice more, then closed: reported once with its final figures.
    final = open_row._replace(ready_read=7)
    collector.update(snapshot(2, 1.5, closed=(closed(final),)))
    assert scrape(collector)["loopmon_events_total{kind=read}"] == 7
    collector.update(snapshot(3, 2.0, connections=(row(2, ready_read=1),)))
    s = scrape(collector)
    assert s["loopmon_events_total{kind=read}"] == 8
    assert s["loopmon_events_total{kind=write}"] == 2
    assert s["loopmon_connections{}"] == 1


def test_a_row_that_vanishes_unreported_never_lowers_a_total() -> None:
    collector = SnapshotCollector(SERVE)
    collector.update(snapshot(1, 1.0, connections=(row(1, ready_read=50), row(2, ready_read=1))))
    assert scrape(collector)["loopmon_events_total{kind=read}"] == 51
    # Row 1 gone without a close record (past the per-frame limit): held, not dropped.
    collector.update(snapshot(2, 1.5, connections=(row(2, ready_read=3),), closed_omitted=1))
    assert scrape(collector)["loopmon_events_total{kind=read}"] == 51
    collector.update(snapshot(3, 2.0, connections=(row(2, ready_read=10),)))
    assert scrape(collector)["loopmon_events_total{kind=read}"] == 58


def test_a_restarted_loop_continues_its_counters() -> None:
    collector = SnapshotCollector(SERVE)
    collector.update(
        snapshot(1, 5.0, totals=figures(iterations=1000, busy_s=1.0, lag=lag(0.001, 0.001)))
    )
    collector.update(
        snapshot(1, 0.5, session="s1", totals=figures(iterations=10, busy_s=0.1, lag=lag(0.002)))
    )
    s = scrape(collector)
    assert s["loopmon_loop_iterations_total{}"] == 1010
    assert s["loopmon_loop_busy_seconds_total{}"] == pytest.approx(1.1)
    assert s["loopmon_loop_lag_seconds_count{}"] == 3


def test_a_stopped_listeners_accepts_stay_in_its_addresss_total() -> None:
    collector = SnapshotCollector(SERVE)
    a = ListenerRow(1, "127.0.0.1", 10000, "listening", accepted=4)
    collector.update(snapshot(1, 1.0, listeners=(a,)))
    # Restarted on the same address: a new id, counting from 0; the old one is forgotten.
    b = ListenerRow(2, "127.0.0.1", 10000, "listening", accepted=1)
    collector.update(snapshot(2, 2.0, listeners=(b,)))
    assert scrape(collector)["loopmon_connections_accepted_total{listener=127.0.0.1:10000}"] == 5


def test_cardinality_does_not_grow_with_connections() -> None:
    one = SnapshotCollector(SERVE)
    one.update(snapshot(1, 1.0, connections=(row(1),)))
    many = SnapshotCollector(SERVE)
    many.update(snapshot(1, 1.0, connections=tuple(row(i) for i in range(1, 1001))))
    assert scrape(one).keys() == scrape(many).keys()
    assert scrape(many)["loopmon_connections{}"] == 1000


def test_a_loop_label_only_with_several_loops() -> None:
    collector = SnapshotCollector(EVERYTHING)
    collector.update(full_snapshot())  # type: ignore[arg-type]
    assert not any("loop=" in key for key in scrape(collector))
    loops = (
        LoopRow(1, "main", "epoll", totals=figures(iterations=5, lag=lag(0.001)), tasks=2),
        LoopRow(2, "worker", "epoll", totals=figures(iterations=7)),
    )
    several = SnapshotCollector(EVERYTHING)
    several.update(
        snapshot(
            1,
            1.0,
            loops=loops,
            totals=figures(iterations=12),
            connections=(row(1, loop=1), row(2, loop=2), row(3, loop=2)),
            tasks=(TaskRow(1, "a", "a", "pending", 0.0, "", loop=2),),
        )
    )
    s = scrape(several)
    assert s["loopmon_loop_iterations_total{loop=main}"] == 5
    assert s["loopmon_loop_iterations_total{loop=worker}"] == 7
    assert s["loopmon_connections{loop=worker}"] == 2
    assert s["loopmon_tasks{loop=main}"] == 2  # the loop's own count
    assert s["loopmon_tasks{loop=worker}"] == 1  # counted from the task rows
    assert s["loopmon_loop_lag_seconds_count{loop=main}"] == 1
    assert "loopmon_loop_iterations_total{}" not in s


def test_the_lag_buckets_are_the_loops_own_bounds() -> None:
    assert len(LAG_BUCKETS) >= 10
    for index, le in LAG_BUCKETS:
        assert float(le) == pytest.approx(histogram.BOUNDS[index], rel=5e-4)
    samples = [0.00005, 0.0003, 0.0003, 0.004, 0.2, 20.0]
    collector = SnapshotCollector(SERVE)
    collector.update(snapshot(1, 1.0, totals=figures(lag=lag(*samples))))
    s = scrape(collector)
    for index, le in LAG_BUCKETS:
        below = sum(1 for x in samples if histogram.bucket_of(x) <= index)
        assert s[f"loopmon_loop_lag_seconds_bucket{{le={float(le)}}}"] == below
    assert s["loopmon_loop_lag_seconds_bucket{le=+Inf}"] == len(samples)
    assert s["loopmon_loop_lag_seconds_sum{}"] == pytest.approx(sum(samples), rel=0.05)


def test_utilization_covers_the_last_second() -> None:
    collector = SnapshotCollector(SERVE)
    # Idle for 10 s, then busy half of every half second from t=10.
    collector.update(snapshot(1, 10.0, totals=figures(busy_s=0.0, poll_s=10.0)))
    for n in range(1, 5):
        t = 10.0 + 0.5 * n
        collector.update(snapshot(1 + n, t, totals=figures(busy_s=0.25 * n, poll_s=10 + 0.25 * n)))
    assert scrape(collector)["loopmon_loop_utilization{}"] == pytest.approx(0.5)


# A run of snapshots with restarts, closes, vanishing rows and listener churn: every counter
# exported must stay monotonic whatever happens.
@st.composite
def histories(draw: st.DrawFn) -> list[object]:
    out = []
    at = 0.0
    iterations = 0
    reads: dict[int, int] = {}
    next_id = 1
    accepted = 0
    listener_id = 1
    totals = draw(st.booleans())  # the producer keeps running totals of closed rows, or not
    closed_reads = 0
    for seq in range(1, draw(st.integers(1, 12)) + 1):
        at += draw(st.floats(0.01, 2.0))
        if draw(st.booleans()) and draw(st.booleans()):
            iterations = 0  # the loop restarted
        iterations += draw(st.integers(0, 100))
        closes = []
        for conn_id in list(reads):
            choice = draw(st.integers(0, 3))
            if choice == 0:
                closed_reads += reads.pop(conn_id) + 1  # closed past the per-frame limit
            elif choice == 1:
                final = reads.pop(conn_id) + 1
                closed_reads += final
                closes.append(closed(row(conn_id, ready_read=final)))
            else:
                reads[conn_id] += draw(st.integers(0, 5))
        for _ in range(draw(st.integers(0, 3))):
            reads[next_id] = draw(st.integers(0, 5))
            next_id += 1
        if draw(st.integers(0, 4)) == 0:
            listener_id += 1
            accepted = 0
        accepted += draw(st.integers(0, 3))
        out.append(
            snapshot(
                seq,
                at,
                totals=figures(iterations=iterations, busy_s=iterations / 1e4),
                connections=tuple(row(i, ready_read=n) for i, n in reads.items()),
                closed=tuple(closes),
                listeners=(ListenerRow(listener_id, "127.0.0.1", 1, "listening", accepted),),
                closed_ready=(closed_reads, 0, 0) if totals else None,
            )
        )
    return out


@settings(max_examples=60, deadline=None)
@given(histories())
def test_counters_never_decrease(history: list[object]) -> None:
    collector = SnapshotCollector(SERVE)
    last: dict[str, float] = {}
    for snap in history:
        collector.update(snap)  # type: ignore[arg-type]
        samples = scrape(collector)
        for key, value in samples.items():
            name = key.partition("{")[0]
            if name.endswith(("_total", "_bucket", "_count", "_sum")):
                assert value >= last.get(key, -math.inf), key
            last[key] = value
        if snap.closed_ready is not None:  # type: ignore[attr-defined]
            # With running totals the count is exact: every read, open or closed.
            exact = snap.closed_ready[0] + sum(r.ready_read for r in snap.connections)  # type: ignore[attr-defined]
            assert samples["loopmon_events_total{kind=read}"] == exact


def test_running_closed_totals_keep_the_counts_of_unlisted_closes() -> None:
    collector = SnapshotCollector(SERVE)
    collector.update(
        snapshot(
            1,
            1.0,
            connections=(row(1, ready_read=50), row(2, ready_read=1)),
            closed_ready=(0, 0, 0),
        )
    )
    # Row 1 closed with 60 reads, past the per-frame limit: not listed, but in the totals.
    collector.update(
        snapshot(
            2, 1.5, connections=(row(2, ready_read=3),), closed_omitted=1, closed_ready=(60, 0, 0)
        )
    )
    assert scrape(collector)["loopmon_events_total{kind=read}"] == 63


def test_a_new_telemetry_continues_the_readiness_totals() -> None:
    collector = SnapshotCollector(SERVE)
    collector.update(
        snapshot(7, 3.0, uptime_s=3.0, connections=(row(1, ready_read=5),), closed_ready=(10, 1, 0))
    )
    # Never scraped in between: the new loop's telemetry starts again at seq 1.
    collector.update(
        snapshot(1, 0.5, uptime_s=0.5, connections=(row(9, ready_read=2),), closed_ready=(1, 0, 0))
    )
    s = scrape(collector)
    assert s["loopmon_events_total{kind=read}"] == 5 + 10 + 2 + 1
    assert s["loopmon_events_total{kind=write}"] == 1
