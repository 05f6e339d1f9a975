"""``loopmon bench``: the pure pieces (statistics, parsing, selection, the table and the JSON
shape) and one tiny end-to-end run. Speed is reported by the benchmark, never asserted here."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from loopmon import cli
from loopmon.bench import peers as bench_peers
from loopmon.bench import planning, probes, processes, procfs, progress, session, stats
from loopmon.bench import report as bench_report
from loopmon.bench import rounds as bench_rounds
from loopmon.bench import specs as bench_specs
from loopmon.bench.report import IdleResult, RoundResult
from loopmon.cli import bench as bench_command
from loopmon.echo import listener

ROOT = Path(__file__).resolve().parent.parent


# -- statistics --------------------------------------------------------------------------------


def test_median_skips_missing_values() -> None:
    assert stats.median([3.0, None, 1.0, 2.0]) == 2.0
    assert stats.median([4.0, 1.0]) == 2.5
    assert stats.median([None, float("nan")]) is None
    assert stats.median([]) is None


def test_paired_ratios_are_round_by_round() -> None:
    ratios = stats.paired_ratios([10.0, 30.0, None, 8.0], [5.0, 10.0, 7.0, 0.0])
    assert ratios == [2.0, 3.0, None, None]


def test_paired_ratio_cancels_drift_that_medians_keep() -> None:
    # The machine slows down by half in round 2: the paired ratio stays 1.2 in every round.
    a = [120.0, 60.0, 120.0]
    b = [100.0, 50.0, 100.0]
    assert stats.paired_ratios(a, b) == pytest.approx([1.2, 1.2, 1.2])


@pytest.mark.parametrize(
    ("client", "server", "side"),
    [
        (0.99, 0.40, "client"),
        (0.50, 0.97, "server"),
        (0.95, 0.95, "both"),
        (0.60, 0.60, "neither"),
        (None, 0.9, "?"),
    ],
)
def test_saturation(client: float | None, server: float | None, side: str) -> None:
    assert stats.saturation(client, server) == side


# -- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("listening on 127.0.0.1:41234 (backend epoll)", ("127.0.0.1", 41234)),
        ("listening on [::1]:8080 (peer bare-epoll)", ("::1", 8080)),
        ("listening on localhost:1 (peer tornado)\n", ("localhost", 1)),
        ("starting up", None),
    ],
)
def test_parse_listening(line: str, expected: tuple[str, int] | None) -> None:
    assert processes.parse_listening(line) == expected


def test_parse_load_json_takes_the_summary_line() -> None:
    summary = {k: 0 for k in bench_rounds.LOAD_KEYS} | {"round_trips": 7, "latency_p50_ms": 0.2}
    text = "some progress\n{not json\n" + json.dumps(summary) + "\n\n"
    assert bench_rounds.parse_load_json(text) == summary
    assert bench_rounds.parse_load_json('{"mode": "rr"}\n') is None  # not a summary
    assert bench_rounds.parse_load_json("") is None


def test_parse_proc_files() -> None:
    stat = "4242 (python -m x) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 1 0 100 200 300"
    assert procfs.parse_stat_cpu(stat, 100) == pytest.approx(2.0)
    status = "Name:\tpython\nVmPeak:\t 9000 kB\nVmRSS:\t  12345 kB\nThreads:\t1\n"
    assert procfs.parse_vmrss_kb(status) == 12345
    assert procfs.parse_vmrss_kb("Name: x\n") is None


def test_core_busy_from_proc_stat() -> None:
    before = procfs.parse_cpu_times(
        "cpu  9 9 9 9 9 9 9 0 0 0\n"
        "cpu0 100 0 50 800 50 0 0 0 0 0\n"
        "cpu1 10 0 10 900 0 0 80 0 0 0\n"
        "intr 1 2 3\n"
    )
    after = procfs.parse_cpu_times(
        "cpu0 150 0 100 800 50 0 0 0 0 0\ncpu1 10 0 10 950 0 0 130 0 0 0\n"
    )
    assert sorted(before) == [0, 1]
    assert procfs.core_busy(before, after, {0}) == pytest.approx(1.0)
    assert procfs.core_busy(before, after, {1}) == pytest.approx(0.5)  # softirq counts
    assert procfs.core_busy(before, after, {7}) is None


def test_command_line() -> None:
    argv = ["/x/bin/loopmon", "bench", "--quick", "--json"]
    assert bench_report.command_line(argv) == "loopmon bench --quick --json"
    assert bench_report.command_line(["python"]) == "loopmon bench"


# -- what runs ---------------------------------------------------------------------------------


def test_peer_discovery_notes_what_is_missing() -> None:
    names, notes = bench_peers.discover(has=lambda module: False)
    assert "asyncio-protocol" in names and "asyncio-streams" in names
    assert "uvloop" not in names and "tornado" not in names
    assert any(n.startswith("uvloop: skipped") and "not installed" in n for n in notes)
    assert any(n.startswith("tornado: skipped") for n in notes)
    names, notes = bench_peers.discover(has=lambda module: True)
    assert {"uvloop", "tornado"} <= set(names)


def test_wake_impls_discovered_the_same_way() -> None:
    names, notes = bench_peers.discover(probes.WAKE_IMPLS, has=lambda module: False)
    assert names == ["loopmon", "asyncio"]
    assert notes == ["uvloop: skipped, uvloop is not installed"]


def test_discover_servers_has_every_backend_and_strategy() -> None:
    specs, notes = bench_specs.discover_servers(backends=["epoll", "poll"], has=lambda m: False)
    names = [s.name for s in specs]
    assert names[:4] == [
        "loopmon-epoll-direct",
        "loopmon-epoll-seed",
        "loopmon-poll-direct",
        "loopmon-poll-seed",
    ]
    assert "bare-epoll" in names and "uvloop" not in names
    assert any("kqueue" in n and "select" in n for n in notes)
    serve = specs[0].argv
    assert serve[1:4] == ("-m", "loopmon", "serve")
    at = serve.index("--backend")
    assert serve[at : at + 2] == ("--backend", "epoll")
    assert "--quiet" in serve and serve[serve.index("--port") + 1] == "0"


def test_select_backend_is_kept_under_fd_setsize() -> None:
    (direct, _seed) = bench_specs.loopmon_specs(["select"])
    assert direct.max_clients is not None and direct.max_clients < 1024
    (epoll, _) = bench_specs.loopmon_specs(["epoll"])
    assert epoll.max_clients is None


def _specs() -> list[bench_specs.ServerSpec]:
    specs, _ = bench_specs.discover_servers(backends=["epoll", "poll"], has=lambda m: True)
    return specs


def test_select_servers_by_name_glob_and_family() -> None:
    specs = _specs()
    chosen, notes = bench_specs.select_servers(specs, "loopmon-epoll-direct,bare-epoll")
    assert [s.name for s in chosen] == ["asyncio-protocol", "loopmon-epoll-direct", "bare-epoll"]
    assert any("asyncio-protocol added" in n for n in notes)
    chosen, _ = bench_specs.select_servers(specs, "loopmon")
    assert [s.name for s in chosen][1:] == [s.name for s in specs if s.name.startswith("loopmon")]
    chosen, notes = bench_specs.select_servers(specs, "loopmon-*-seed,asyncio-*")
    assert {s.name for s in chosen} == {
        "loopmon-epoll-seed",
        "loopmon-poll-seed",
        "asyncio-protocol",
        "asyncio-streams",
    }
    assert notes == []
    chosen, notes = bench_specs.select_servers(specs, None)
    assert chosen == specs and notes == []


def test_select_servers_rejects_unknown_and_notes_unavailable() -> None:
    specs = [s for s in _specs() if s.name != "uvloop"]
    with pytest.raises(ValueError, match="no server matches 'nginx'"):
        bench_specs.select_servers(specs, "nginx", known=["uvloop"])
    chosen, notes = bench_specs.select_servers(specs, "uvloop,bare-epoll", known=["uvloop"])
    assert [s.name for s in chosen] == ["asyncio-protocol", "bare-epoll"]
    assert "uvloop: not available here, skipped" in notes


def test_quick_keeps_the_best_backend_and_the_peers_the_targets_name() -> None:
    names = bench_specs.quick_servers(_specs())
    assert names == ["loopmon-epoll-direct", "asyncio-protocol", "bare-epoll", "uvloop"]
    assert set(bench_specs.QUICK_PEERS) <= set(bench_peers.PEER_NAMES)


def test_parse_workloads() -> None:
    assert bench_specs.parse_workloads(None) == list(bench_specs.WORKLOAD_NAMES)
    assert bench_specs.parse_workloads("wake, rr-1k") == ["rr-1k", "wake"]
    assert bench_specs.parse_workloads("rr") == ["rr-1k", "rr-64k", "rr-128"]
    with pytest.raises(ValueError, match="unknown workload"):
        bench_specs.parse_workloads("rr-2k")
    for nothing in ("", ",", " , "):
        with pytest.raises(ValueError, match="no workload named"):
            bench_specs.parse_workloads(nothing)


def test_only_unavailable_servers_is_an_error_that_says_why() -> None:
    specs = [s for s in _specs() if s.name not in ("uvloop", "tornado")]
    with pytest.raises(ValueError, match="uvloop: not available here"):
        bench_specs.select_servers(specs, "uvloop,tornado", known=["uvloop", "tornado"])


def test_too_few_wake_samples_and_too_many_idle_connections_are_refused() -> None:
    parser = cli.build_parser()
    with pytest.raises(ValueError, match="--wake-samples 50: at least 100"):
        planning.plan(parser.parse_args(["bench", "--workloads", "wake", "--wake-samples", "50"]))
    # Not asked for the wake test: its sample count does not matter.
    planning.plan(parser.parse_args(["bench", "--workloads", "rr-1k", "--wake-samples", "50"]))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no descriptor limit here")
    too_many = ["bench", "--workloads", "idle-10k", "--idle-connections", str(hard)]
    with pytest.raises(ValueError, match=r"needs about .* open files per process"):
        planning.plan(parser.parse_args(too_many))
    assert bench_command.run(parser.parse_args(too_many), stdout=io.StringIO()) == 2


def test_wake_rounds_take_the_samples_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []

    def fake_round(children: object, impl: str, samples: int, *cpus: object) -> dict[str, Any]:
        asked.append(samples)
        return {"impl": impl, "samples": samples, "p50_us": 1.0, "p99_us": 2.0}

    base = planning.plan(cli.build_parser().parse_args(["bench"]))[0]
    monkeypatch.setattr(session, "run_wake_round", fake_round)
    monkeypatch.setattr(session, "discover", lambda impls: (["loopmon"], []))
    wake = next(w for w in bench_specs.WORKLOADS if w.kind == "wake")
    for samples, rounds, expected in ((250, 5, [125, 125]), (20_000, 5, [4000] * 5)):
        asked.clear()
        settings = dataclasses.replace(base, wake_samples=samples, rounds=rounds)
        session.run_wake(None, wake, settings, None, None, progress.Progress(1.0, io.StringIO()))  # type: ignore[arg-type]
        assert asked == expected


def test_a_round_with_other_work_on_the_servers_core_is_noted() -> None:
    assert stats.interference(0, 0.95, 0.90) == ""
    assert stats.interference(0, None, 0.5) == ""
    note = stats.interference(1, 0.94, 0.42)
    assert note.startswith("round 2: other work took 52% of the servers' core")
    summary = bench_report.summarise_rr(
        {
            "asyncio-protocol": [
                RoundResult(0, True, round_trips=10, round_trips_per_s=1.0, note=note)
            ]
        }
    )
    assert summary[0]["notes"] == [note] and summary[0]["problems"] == []


def test_workloads_match_the_issue() -> None:
    shape = {w.name: (w.kind, w.clients, w.size) for w in bench_specs.WORKLOADS}
    assert shape["rr-1k"] == ("rr", 100, 1024)
    assert shape["rr-64k"] == ("rr", 10, 65536)
    assert shape["rr-128"] == ("rr", 1000, 128)
    assert shape["idle-10k"][:2] == ("idle", 10_000)


def test_peers_listen_with_loopmons_backlog() -> None:
    assert bench_peers.BACKLOG == listener.BACKLOG


def test_plan_quick_and_explicit() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["bench", "--quick"])
    settings, _, notes = planning.plan(args)
    assert settings.quick and settings.rounds == 2 and settings.duration_s == 0.75
    assert settings.servers[0].startswith("loopmon-") and "asyncio-protocol" in settings.servers
    assert all(not n.startswith("loopmon-") or "-poll-" not in n for n in settings.servers)
    assert "asyncio-streams" not in settings.servers
    assert any(n.startswith("--quick leaves out asyncio-streams") for n in notes)
    args = parser.parse_args(
        ["bench", "--rounds", "3", "--duration", "0.5", "--only", "bare-epoll", "--workloads", "rr"]
    )
    settings, _, _ = planning.plan(args)
    assert (settings.rounds, settings.duration_s) == (3, 0.5)
    assert settings.servers == ("asyncio-protocol", "bare-epoll")
    assert settings.workloads == ("rr-1k", "rr-64k", "rr-128")


def test_run_rejects_an_unknown_server() -> None:
    args = cli.build_parser().parse_args(["bench", "--only", "nginx"])
    assert bench_command.run(args, stdout=io.StringIO()) == 2


def test_run_lists_servers_and_workloads() -> None:
    out = io.StringIO()
    args = cli.build_parser().parse_args(["bench", "--list"])
    assert bench_command.run(args, stdout=out) == 0
    text = out.getvalue()
    assert "asyncio-protocol" in text and "loopmon-epoll-direct" in text and "idle-10k" in text
    out = io.StringIO()
    args = cli.build_parser().parse_args(["bench", "--list", "--json"])
    assert bench_command.run(args, stdout=out) == 0
    listing = json.loads(out.getvalue())
    assert "asyncio-protocol" in [x["name"] for x in listing["servers"]]
    assert [w["name"] for w in listing["workloads"]] == list(bench_specs.WORKLOAD_NAMES)


def test_only_with_no_name_in_it_says_so() -> None:
    with pytest.raises(ValueError, match="no server to run: --only ',' names no server"):
        bench_specs.select_servers(_specs(), ",")


def test_too_few_wake_samples_get_one_message_zero_included() -> None:
    parser = cli.build_parser()
    for n in ("0", "10", "99"):
        with pytest.raises(ValueError, match=f"--wake-samples {n}: at least 100"):
            planning.plan(parser.parse_args(["bench", "--workloads", "wake", "--wake-samples", n]))
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--wake-samples", "-1"])


# -- summaries, table, JSON ----------------------------------------------------------------


def _round(i: int, rt: float, cpu_us: float, ok: bool = True, problem: str = "") -> RoundResult:
    return RoundResult(
        i,
        ok,
        round_trips=int(rt),
        round_trips_per_s=rt,
        mb_per_s=rt / 1000,
        latency_p50_ms=1.0,
        latency_p99_ms=2.0,
        server_cpu_us_per_rt=cpu_us,
        server_util=0.5,
        client_util=0.99,
        problem=problem,
    )


def _rr_rounds() -> dict[str, list[RoundResult]]:
    return {
        "asyncio-protocol": [_round(0, 100, 20), _round(1, 50, 20), _round(2, 100, 20)],
        "loopmon-epoll-direct": [
            _round(0, 130, 10),
            _round(1, 60, 12),
            _round(2, 0, 0, ok=False, problem="client timed out"),
        ],
        "bare-epoll": [_round(0, 140, 10), _round(1, 70, 10), _round(2, 140, 10)],
    }


def test_summarise_rr_medians_and_paired_ratios() -> None:
    by_name = {r["server"]: r for r in bench_report.summarise_rr(_rr_rounds())}
    lm = by_name["loopmon-epoll-direct"]
    assert lm["rounds_ok"] == 2 and lm["rounds_failed"] == 1
    assert lm["round_trips_per_s"] == 95.0  # median of 130 and 60
    assert lm["ratio_rounds"] == pytest.approx([1.3, 1.2, None])
    assert lm["ratio_to_baseline"] == pytest.approx(1.25)
    assert lm["cpu_ratio_to_baseline"] == pytest.approx(0.55)  # 10/20 and 12/20
    assert lm["cpu_ratio_to_reference"] == pytest.approx(1.1)  # 10/10 and 12/10
    assert lm["saturated"] == "client"
    assert lm["problems"] == ["client timed out"]
    assert by_name["asyncio-protocol"]["ratio_to_baseline"] == 1.0
    assert by_name["bare-epoll"]["ratio_to_baseline"] == pytest.approx(1.4)


def test_summarise_rr_without_baseline_gives_no_ratios() -> None:
    rounds = {"bare-epoll": [_round(0, 140, 10)]}
    (only,) = bench_report.summarise_rr(rounds)
    assert only["ratio_to_baseline"] is None and only["cpu_ratio_to_baseline"] is None
    assert only["cpu_ratio_to_reference"] == 1.0


def test_summarise_wake_pairs_against_asyncio() -> None:
    rounds = {
        "loopmon": [{"p50_us": 9.0, "p99_us": 30.0, "samples": 100, "lost": 0}] * 2,
        "asyncio": [{"p50_us": 10.0, "p99_us": 20.0, "samples": 100, "lost": 0}] * 2,
    }
    by_impl = {r["impl"]: r for r in bench_report.summarise_wake(rounds)}
    assert by_impl["loopmon"]["p50_ratio_to_asyncio"] == pytest.approx(0.9)
    assert by_impl["loopmon"]["p99_ratio_to_asyncio"] == pytest.approx(1.5)
    assert by_impl["loopmon"]["samples"] == 200


def _report() -> dict[str, object]:
    idle = {
        "loopmon-epoll-direct": [
            IdleResult(0, True, 10_000, 9000.0, 20.0, 60.0, 4.1, 25.0),
        ],
        "asyncio-protocol": [IdleResult(0, False, 9000, problem="held 9000 of 10000")],
    }
    wake = {"loopmon": [{"p50_us": 9.0, "p99_us": 30.0, "samples": 100}]}
    return {
        "schema": bench_report.SCHEMA,
        "loopmon": "0.0",
        "command": "loopmon bench --quick",
        "machine": bench_report.machine_info("servers on CPU 0, clients on CPU 1"),
        "settings": {"rounds": 3, "duration_s": 1.0},
        "baseline": bench_specs.BASELINE,
        "reference": bench_specs.REFERENCE,
        "notes": ["tornado: skipped, tornado is not installed"],
        "workloads": [
            {
                "name": "rr-1k",
                "title": "100 connections x 1 KiB request/response",
                "kind": "rr",
                "results": bench_report.summarise_rr(_rr_rounds()),
            },
            {
                "name": "idle-10k",
                "title": "10,000 idle connections",
                "kind": "idle",
                "results": bench_report.summarise_idle(idle),
                "snapshot": {
                    "connections": 10_000,
                    "samples": 20,
                    "first_ms": 41.0,
                    "median_ms": 1.84,
                    "p90_ms": 2.0,
                    "max_ms": 2.5,
                },
            },
            {
                "name": "wake",
                "title": "cross-thread wake",
                "kind": "wake",
                "results": bench_report.summarise_wake(wake),
            },
        ],
        "elapsed_s": 61.0,
    }


def test_format_report_has_a_row_per_server_and_the_notes() -> None:
    text = bench_report.format_report(_report())
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("server") and "rt/s" in line)
    for column in ("MiB/s", "p50 ms", "p99 ms", "srv us/rt", "x asyncio", "saturated"):
        assert column in header
    row = next(line for line in lines if line.startswith("loopmon-epoll-direct") and "1.25" in line)
    assert "95" in row and "0/0 (1 failed)" in row
    idle_lines = lines[lines.index("10,000 idle connections") :]
    idle_row = next(line for line in idle_lines if line.startswith("asyncio-protocol"))
    assert "(1 failed)" in idle_row
    assert any(
        line.startswith("loopmon telemetry snapshot of 10,000 idle") and "median 1.84 ms" in line
        for line in idle_lines
    )
    assert any(line.startswith("loopmon ") and "9.0" in line for line in lines)  # wake
    assert "note: tornado: skipped, tornado is not installed" in lines
    # Columns line up: the header and the rows of a block are equally wide (right-aligned).
    start = lines.index(header)
    block = lines[start : lines.index("", start)]
    assert len(block) == 4 and len({len(line) for line in block}) == 1


def test_a_report_without_rr_says_what_ran_and_leaves_out_what_does_not_apply() -> None:
    report = _report()
    wake_only = {**report, "workloads": [report["workloads"][2]]}
    text = bench_report.format_report(wake_only)
    first = text.splitlines()[0]
    assert "interleaved rounds" not in first and "bench: wake, Python" in first
    assert "rt/s: round trips per second" not in text  # the legend explains the rr tables
    assert "rt/s: round trips per second" in bench_report.format_report(report)


def test_the_reference_column_is_left_out_when_the_reference_did_not_run() -> None:
    report = _report()
    block = report["workloads"][0]
    for r in block["results"]:
        r["cpu_ratio_to_reference"] = None
    text = bench_report.format_report({**report, "workloads": [block]})
    header = next(line for line in text.splitlines() if line.startswith("server"))
    assert f"cpu x {bench_specs.REFERENCE}" not in header and "cpu x asyncio" in header
    with_it = bench_report.format_report(_report())
    assert f"cpu x {bench_specs.REFERENCE}" in with_it


def test_report_is_json() -> None:
    report = _report()
    again = json.loads(json.dumps(report))
    assert again["workloads"][0]["results"][1]["ratio_rounds"][2] is None


def test_json_has_no_nan_where_nothing_was_measured() -> None:
    # A probe that measured nothing prints NaN figures; --json must still be strict JSON.
    report = {"snapshot": {"median_ms": float("nan"), "max_ms": float("inf"), "n": [1.5, -0.0]}}
    text = json.dumps(stats.finite(report), allow_nan=False)
    assert json.loads(text) == {"snapshot": {"median_ms": None, "max_ms": None, "n": [1.5, 0.0]}}


def test_a_snapshot_that_measured_nothing_is_a_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    empty = {"connections": 0, "samples": 0, "median_ms": float("nan")}
    monkeypatch.setattr(bench_rounds, "_probe", lambda *a: (dict(empty), ""))
    snap = bench_rounds.run_snapshot_round(None, 25_000, 1.0)  # type: ignore[arg-type]
    assert snap["problem"] == "no snapshot taken: the probe held 0 of 25,000"
    monkeypatch.setattr(
        bench_rounds, "_probe", lambda *a: ({**empty, "connections": 9, "samples": 3}, "")
    )
    snap = bench_rounds.run_snapshot_round(None, 10, 1.0)  # type: ignore[arg-type]
    assert snap["problem"] == "the probe held only 9 of 10 connections"


def test_sighup_ends_the_bench_like_ctrl_c_unless_it_came_in_ignored() -> None:
    before = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        with pytest.raises(KeyboardInterrupt) as info, session.interruptible():
            signal.raise_signal(signal.SIGHUP)
        assert isinstance(info.value, session.Interrupted)
        assert info.value.signum == signal.SIGHUP  # run() exits 128 + it, as a shell reports
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
        with session.interruptible():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


def test_a_small_descriptor_limit_skips_the_default_idle_test_and_still_lists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(planning, "raise_fd_limit", lambda: 4096)
    parser = cli.build_parser()
    settings, _, notes = planning.plan(parser.parse_args(["bench"]))
    assert "idle-10k" not in settings.workloads and "wake" in settings.workloads
    assert any(n.startswith("idle-10k skipped: --idle-connections 10000 needs") for n in notes)
    with pytest.raises(ValueError, match="needs about"):
        planning.plan(parser.parse_args(["bench", "--workloads", "idle-10k"]))
    out = io.StringIO()
    assert bench_command.run(parser.parse_args(["bench", "--list"]), stdout=out) == 0
    assert "idle-10k" in out.getvalue()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_children_die_with_the_bench_even_when_it_is_killed(tmp_path: Path) -> None:
    # The bench, SIGKILLed, runs no cleanup: its server must still not outlive it.
    code = (
        "import sys, pathlib; from loopmon.bench import processes; "
        "c = processes.Children(pathlib.Path(sys.argv[1])); "
        "p, _, _ = c.spawn([sys.executable, '-c', 'import time; time.sleep(60)'], 's'); "
        "print(p.pid, flush=True); import time; time.sleep(60)"
    )
    fake_bench = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert fake_bench.stdout is not None
    server = int(fake_bench.stdout.readline())
    fake_bench.stdout.close()
    fake_bench.kill()
    fake_bench.wait(10)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                state = Path(f"/proc/{server}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                break
            if state == "Z":
                break  # dead, waiting for init to reap it
            time.sleep(0.02)
        else:
            pytest.fail(f"the server {server} outlived the killed bench")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server, signal.SIGKILL)


def test_children_are_stopped_with_their_groups(tmp_path: Path) -> None:
    children = processes.Children(tmp_path)
    # A child that starts a grandchild: both go when the bench stops its children.
    code = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print(p.pid, flush=True); time.sleep(60)"
    )
    proc, out, _ = children.spawn([sys.executable, "-c", code], "sleeper")
    deadline = time.monotonic() + 10
    while not out.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.02)
    grandchild = int(out.read_text())
    children.stop_all()
    assert proc.returncode is not None
    assert children.procs == []
    deadline = time.monotonic() + 5
    while Path(f"/proc/{grandchild}").exists() and time.monotonic() < deadline:
        # it may linger as a zombie of its (dead) parent until init reaps it
        if "Z" in Path(f"/proc/{grandchild}/stat").read_text().split(")")[1].split()[0]:
            break
        time.sleep(0.02)
    else:
        assert not Path(f"/proc/{grandchild}").exists()


def test_wait_rusage_reports_cpu(tmp_path: Path) -> None:
    children = processes.Children(tmp_path)
    proc, _, _ = children.spawn(
        [sys.executable, "-c", "x = 0\nfor i in range(2_000_000): x += i"], "spin"
    )
    code, cpu = processes.wait_rusage(proc, 30)
    assert code == 0 and cpu is not None and cpu > 0
    assert proc.poll() == 0


_READS_WITH_FAULTS = """
import resource, socket, sys
from loopmon.bench import peers
if sys.argv[1] == "settled":
    peers.settle_allocator()
a, b = socket.socketpair()
def faults(n):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        a.send(b"x" * 128)
        b.recv(262144)  # what asyncio's transport asks for on every read
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults(20)
print(faults(500))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc thresholds")
def test_settled_peer_reads_from_the_heap_not_a_fresh_mapping_each_time() -> None:
    def faults(state: str) -> int:
        out = subprocess.run(
            [sys.executable, "-c", _READS_WITH_FAULTS, state],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            check=True,
        ).stdout
        return int(out)

    unsettled = faults("unsettled")
    if unsettled < 500:
        pytest.skip(f"this libc serves 256 KiB reads from the heap already ({unsettled} faults)")
    # A fresh mapping per read faults its first page in; the heap's memory is already there.
    assert faults("settled") < 50


def test_wake_probe_in_process() -> None:
    for impl in ("loopmon", "asyncio"):
        result = probes.measure_wake(impl, 50, gap_s=0.0002, warmup=5)
        assert result["samples"] == 50 and result["lost"] == 0
        assert 0 < result["p50_us"] <= result["p99_us"] <= result["max_us"]


def test_snapshot_probe_builds_with_a_child_holding_the_connections() -> None:
    result = probes.measure_snapshot(60, samples=5, deadline_s=15.0)
    assert result["connections"] == 60 and result["samples"] == 5
    assert 0 < result["median_ms"] <= result["p90_ms"] <= result["max_ms"]
    assert result["first_ms"] > 0


# -- end to end (subprocesses; still bounded to a few seconds) --------------------------------


def _echo_once(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
    return got


@pytest.mark.slow
@pytest.mark.parametrize("name", bench_peers.discover()[0])
def test_every_available_peer_echoes_exactly(name: str, tmp_path: Path) -> None:
    children = processes.Children(tmp_path)
    (spec,) = bench_specs.peer_specs([name])
    try:
        server = processes.start_server(children, spec, None, "127.0.0.1")
        payload = bytes(range(256)) * 1000  # 256 kB: more than one read, partial sends
        assert _echo_once(server.port, payload) == payload
    finally:
        children.stop_all()


@pytest.mark.slow
def test_bench_smoke_json(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "loopmon",
        "bench",
        "--only",
        "loopmon-epoll-direct,asyncio-protocol",
        "--workloads",
        "rr-64k,wake",
        "--rounds",
        "1",
        "--duration",
        "0.5",
        "--wake-samples",
        "200",
        "--json",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert {"schema", "machine", "settings", "notes", "workloads", "elapsed_s"} <= set(report)
    assert "bench" in proc.stderr  # the progress line
    rr, wake = report["workloads"]
    assert (rr["name"], rr["clients"], rr["size"]) == ("rr-64k", 10, 65536)
    by_server = {r["server"]: r for r in rr["results"]}
    assert set(by_server) == {"loopmon-epoll-direct", "asyncio-protocol"}
    for result in by_server.values():
        assert result["rounds_ok"] == 1, result["problems"]
        assert result["mismatches"] == 0 and result["errors"] == 0
        for key in (
            "round_trips_per_s",
            "mb_per_s",
            "latency_p50_ms",
            "latency_p99_ms",
            "server_cpu_us_per_rt",
            "ratio_to_baseline",
            "saturated",
        ):
            assert key in result
        assert result["round_trips_per_s"] > 0
        assert result["server_cpu_us_per_rt"] > 0
    assert by_server["asyncio-protocol"]["ratio_to_baseline"] == 1.0
    impls = {r["impl"] for r in wake["results"]}
    assert {"loopmon", "asyncio"} <= impls
