"""The operations kit against the real thing: promtool, a real Prometheus scraping a real
worker fed by the demo, every dashboard panel's query and every recording rule."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from typing import Any

from deploy import services
from tests.integration.harness import REPO, ScorerRun
from tests.integration.test_resilience import demo_log

PROMETHEUS = REPO / "deploy" / "prometheus"
DASHBOARDS = sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json"))


def _query(prometheus_url: str, promql: str) -> list[Any]:
    url = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.load(response)
    assert answer["status"] == "success", (promql, answer)
    return list(answer["data"]["result"])


def panel_queries() -> list[tuple[str, str]]:
    queries = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                # The rollup dashboard's dimension takes a real value; every other variable, all.
                expr = re.sub(r"\$\w+", ".*", target["expr"].replace("$dimension", "account_manager"))
                queries.append((f"{path.stem}: {panel['title']}", expr))
    return queries


def test_promtool_checks_and_unit_tests_the_rules(layout: services.Layout) -> None:
    promtool = services._require_binary("promtool", "prometheus")
    check = subprocess.run(
        [promtool, "check", "rules", str(PROMETHEUS / "rules" / "tierpulse.yml")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run(
        [promtool, "test", "rules", str(PROMETHEUS / "tests" / "tierpulse_test.yml")],
        capture_output=True,
        text=True,
    )
    assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr


async def test_every_panel_and_recording_rule_returns_data_from_a_live_worker(
    scorer: ScorerRun, layout: services.Layout, prometheus_url: str
) -> None:
    log = demo_log(customers=60, days=35, seed=21)
    watched = next(key.decode() for kind, key, _ in log if kind == "customers" and key)
    scorer.extra_env["TIERPULSE_WATCH_LIST"] = json.dumps([watched])
    _, port = scorer.start_worker()
    target = layout.prometheus_targets_dir / f"{scorer.name}.json"
    target.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"]}]))
    try:
        await scorer.produce(log)
        await scorer.finished()
        time.sleep(8)  # a few scrape and rule-evaluation intervals (2 s locally)
        empty = [(title, expr) for title, expr in panel_queries() if not _query(prometheus_url, expr)]
        assert empty == [], f"panels without data: {empty}\n{scorer.logs()[-2000:]}"
        with urllib.request.urlopen(f"{prometheus_url}/api/v1/rules", timeout=10) as response:
            groups = json.load(response)["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        assert {group["name"] for group in groups} == {"tierpulse-recording", "tierpulse-alerts"}
        assert all(rule["health"] == "ok" for rule in rules), [r for r in rules if r["health"] != "ok"]
        recorded = [rule["name"] for rule in rules if rule["type"] == "recording"]
        assert [name for name in recorded if not _query(prometheus_url, name)] == []
    finally:
        target.unlink()


def test_dashboards_are_structurally_valid() -> None:
    datasource = (REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    assert len(DASHBOARDS) == 3
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        ids = [panel["id"] for panel in board["panels"]]
        assert board["schemaVersion"] and board["uid"] and len(ids) == len(set(ids)), path
        uids = {panel["datasource"]["uid"] for panel in board["panels"]}
        uids |= {t["datasource"]["uid"] for panel in board["panels"] for t in panel["targets"]}
        assert all(f"uid: {uid}" in datasource for uid in uids), (path, uids)
        variables = {v["name"] for v in board["templating"]["list"]}
        # business: segment, tier; teams: dimension, name; service: none (no service series has them)
        assert variables in ({"segment", "tier"}, {"dimension", "name"}, set()), (path, variables)
        for panel in board["panels"]:  # every variable a panel uses exists
            for target in panel["targets"]:
                assert set(re.findall(r"\$(\w+)", target["expr"])) <= variables, (path, panel["title"])


def test_metric_names_follow_the_prometheus_conventions(layout: services.Layout) -> None:
    """promtool's lint of the worker's metrics, every family present: base units (seconds, not
    minutes or days), unit suffixes, counters ending in _total."""
    from prometheus_client import CollectorRegistry, generate_latest

    from sinks.metrics import ScorerMetrics

    promtool = services._require_binary("promtool", "prometheus")
    metrics = ScorerMetrics(CollectorRegistry(), ("key", "unrated"))
    metrics.initialise(["orders"], [("late_delivery", "warning")], ["redis"])
    metrics.build_info.labels("0.5.0", "v1").set(1)
    metrics.consumer_lag.labels("orders", "0").set(3)
    metrics.processed_lag.labels("orders", "0").set(3)
    for histogram in metrics.kpi.values():
        histogram.labels("standard").observe(1)
    text = generate_latest(metrics.registry)
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=30)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
