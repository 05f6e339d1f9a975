"""The Grafana dashboard's shape: a datasource variable, job and instance variables, and every
panel reading through them (a real Prometheus evaluates the expressions in test_prometheus)."""

from __future__ import annotations

import json

from tests.metrics.processes import ROOT

DASHBOARD = ROOT / "resources" / "grafana" / "loopmon.json"


def test_the_dashboard_has_its_variables() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"job", "instance"} <= variables.keys()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert "$job" in target["expr"] and "$instance" in target["expr"], panel["title"]


def test_the_dashboard_covers_what_the_issue_asks() -> None:
    exprs = " ".join(
        target["expr"]
        for panel in json.loads(DASHBOARD.read_text())["panels"]
        for target in panel["targets"]
    )
    for name in (
        "loopmon_loop_utilization",
        "loopmon_loop_lag_seconds_bucket",
        "loopmon_connections",
        "loopmon_received_bytes_total",
        "loopmon_sent_bytes_total",
        "loopmon_stalls_total",
        "up{",
        "scrape_duration_seconds",
    ):
        assert name in exprs, name
