"""Docker does not run on these machines, so the deployment files are checked for what can be
checked: they parse, every variable they set is a real setting, every path and port they
name exists, and the image runs the command the README documents."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from deploy.services import WEBHOOK_PLACEHOLDER
from streams.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
README = (DEPLOY.parent / "README.md").read_text()
ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"
RULES = DEPLOY / "prometheus" / "rules" / "tierpulse.yml"
DASHBOARDS = {
    p.stem: json.loads(p.read_text()) for p in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
}
# Grafana's unit ids (packages/grafana-data/src/valueFormats/categories.ts) that suit our series;
# a misspelt or invented id makes Grafana print the bare number with no unit at all.
GRAFANA_UNITS = {"none", "short", "percent", "percentunit", "s", "ms", "bytes", "ops", "reqps", "cps"}
# (dashboard, panel) -> (alert, the comparison in the alert's expression, where the panel's
# threshold step sits). The downgrade panel draws its line at 1: a count of whole changes is
# above 0 exactly when it is at least 1, and a line at 0 would not show.
ALERT_THRESHOLDS = {
    ("tierpulse-business", "Strategic and key downgrades (15 min)"): (
        "TierPulseKeyAccountDowngraded",
        "> 0",
        1,
    ),
    ("tierpulse-business", "At-risk growth in the last hour (share of all customers)"): (
        "TierPulseAtRiskSurge",
        "> 0.05 * sum(tierpulse_customers)",
        0.05,
    ),
    ("tierpulse-service", "Consumer lag (messages)"): ("TierPulseConsumerLagGrowing", "> 1000", 1000),
    ("tierpulse-service", "Invalid share of input"): ("TierPulseDeadLetterRateHigh", "> 0.05", 0.05),
    ("tierpulse-service", "Sinks up"): ("TierPulseSinkFailing", "== 0", 1),
    ("tierpulse-service", "Workers not scraped"): ("TierPulseWorkerDown", "== 0", 1),
}


def _settings_variables() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"TIERPULSE_{name.upper()}")
        annotation = field.annotation
        if hasattr(annotation, "model_fields"):
            names |= {f"TIERPULSE_{name.upper()}__{sub.upper()}" for sub in annotation.model_fields}
    return names


def _variables_in(text: str) -> set[str]:
    return set(re.findall(r"\b(TIERPULSE_[A-Z_]+)\b", text))


def test_every_variable_the_deploy_files_set_is_a_setting() -> None:
    known = _settings_variables()
    for path in [DEPLOY / "compose.yaml", DEPLOY / "k8s" / "tierpulse.yaml", DEPLOY / "Dockerfile"]:
        unknown = _variables_in(path.read_text()) - known
        assert unknown == set(), f"{path.name} sets variables no setting reads: {unknown}"
    documented = _variables_in(README) - {
        "TIERPULSE_KEEP_SERVICES",
        "TIERPULSE_KAFKA_VERSION",
        "TIERPULSE_VENV",
        "TIERPULSE_RUN_SECONDS",
        "TIERPULSE_KAFKA_PORT",
        "TIERPULSE_KAFKA_CONTROLLER_PORT",
        "TIERPULSE_KAFKA_SECURED_PORT",
        "TIERPULSE_REDIS_PORT",
        "TIERPULSE_PROMETHEUS_PORT",
        "TIERPULSE_ALERTMANAGER_PORT",
        "TIERPULSE_WEBHOOK_PORT",
        "TIERPULSE_TOPICS__",
    }
    assert {v for v in documented if not v.endswith("_")} - known == set()


def test_compose_parses_and_mounts_files_that_exist() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    expected = {"kafka", "redis", "prometheus", "alertmanager", "webhook", "grafana", "worker-1", "worker-2"}
    assert expected <= compose["services"].keys()
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), volume
    workers = [compose["services"][w] for w in ("worker-1", "worker-2")]
    assert [w["environment"]["TIERPULSE_ADVERTISED_URL"] for w in workers] == [
        "http://worker-1:6066",
        "http://worker-2:6066",
    ]
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/tierpulse.yml").read_text())
    grafana_mounts = [v.split(":")[1] for v in compose["services"]["grafana"]["volumes"]]
    assert provider["providers"][0]["options"]["path"] in grafana_mounts


def test_compose_alerts_through_its_alertmanager_to_the_webhook_service() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert services["alertmanager"]["image"] == "prom/alertmanager:v0.25.0"
    assert services["alertmanager"]["ports"] == ["9093:9093"]
    for worker in ("worker-1", "worker-2"):
        assert services[worker]["environment"]["TIERPULSE_ALERTMANAGER_URL"] == "http://alertmanager:9093"
    # The route file is mounted as is; the start command puts the webhook service in place of
    # the local receiver, the same placeholder deploy/services.py replaces.
    mounted = {v.split(":")[0]: v.split(":")[1] for v in services["alertmanager"]["volumes"]}
    routes = mounted["./alertmanager/alertmanager.yml"]
    start = services["alertmanager"]["command"][0]
    assert f"sed 's#{WEBHOOK_PLACEHOLDER}#http://webhook:9095#' {routes}" in start
    assert "--cluster.listen-address=" in start
    webhook = services["webhook"]
    assert "--port=9095" in webhook["command"] and "--host=0.0.0.0" in webhook["command"]
    assert "./webhook_receiver.py:/opt/tierpulse/webhook_receiver.py:ro" in webhook["volumes"]
    assert "/opt/tierpulse/webhook_receiver.py" in webhook["command"]


def _route_matches(route: dict[str, Any], labels: dict[str, str]) -> bool:
    """Alertmanager's matchers: `=` and anchored `=~` (Python's re agrees with RE2 on these)."""
    for matcher in route["matchers"]:
        parsed = re.fullmatch(r'(\w+)(=~|=)"(.*)"', matcher)
        assert parsed, matcher
        name, op, value = parsed.groups()
        actual = labels.get(name, "")
        if not (actual == value if op == "=" else re.fullmatch(value, actual)):
            return False
    return True


def test_alertmanager_routes_sla_pages_to_their_webhook_and_the_rest_to_operations() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text())
    route = config["route"]
    assert route["group_by"] == ["customer_id", "alertname"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("10s", "5m", "4h")
    assert route["receiver"] == "operations"
    [sla] = route["routes"]
    assert sla["receiver"] == "sla-webhook"
    assert sorted(sla["matchers"]) == ['alertname=~"(?i).*sla.*"', 'severity="critical"']
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers.keys() == {"operations", "sla-webhook"}
    assert receivers["sla-webhook"]["webhook_configs"][0]["send_resolved"] is True
    for receiver in receivers.values():  # deploy/services.py and Compose replace this address
        assert all(c["url"].startswith(f"{WEBHOOK_PLACEHOLDER}/") for c in receiver["webhook_configs"])
    [inhibit] = config["inhibit_rules"]
    assert inhibit == {
        "source_matchers": ['severity="critical"'],
        "target_matchers": ['severity="warning"'],
        "equal": ["customer_id", "alertname"],
    }
    # Against the real rules: the critical SLA alert pages, every other alert goes to operations.
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "tierpulse.yml").read_text())
    alerts = [r for group in rules["groups"] for r in group["rules"] if "alert" in r]
    paged = {a["alert"] for a in alerts if _route_matches(sla, {"alertname": a["alert"], **a["labels"]})}
    assert paged == {"TierPulseP1SlaBreach"}
    assert not _route_matches(sla, {"alertname": "TierPulseP1SlaBreach", "severity": "warning"})


def test_kubernetes_manifests_are_consistent() -> None:
    every = list(yaml.safe_load_all((DEPLOY / "k8s" / "tierpulse.yaml").read_text()))
    named = {(d["kind"], d["metadata"]["name"]): d for d in every}
    assert named.keys() == {
        *(("ConfigMap", "tierpulse"), ("Secret", "tierpulse"), ("Service", "tierpulse")),
        *(("StatefulSet", "tierpulse"), ("ConfigMap", "alertmanager"), ("Service", "alertmanager")),
        ("Deployment", "alertmanager"),
    }
    documents = {kind: d for (kind, name), d in named.items() if name == "tierpulse"}
    pod = documents["StatefulSet"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port["http"] == int(documents["ConfigMap"]["data"]["TIERPULSE_WEB_PORT"]) == Settings().web_port
    assert documents["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert documents["ConfigMap"]["data"]["TIERPULSE_DATA_DIR"] in mounts
    assert Path(documents["ConfigMap"]["data"]["TIERPULSE_POLICY_PATH"]).parent.as_posix() in mounts
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert documents["StatefulSet"]["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_the_image_runs_what_the_readme_documents() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(\S+)", dockerfile, flags=re.M):
        assert (DEPLOY.parent / source).exists(), source
    assert 'CMD ["tierpulse", "worker"]' in dockerfile and "USER tierpulse" in dockerfile
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
    assert "tierpulse worker" in README
    pyproject = (DEPLOY.parent / "pyproject.toml").read_text()
    assert 'tierpulse = "streams.cli:main"' in pyproject
    app = (DEPLOY.parent / "streams" / "web.py").read_text()
    assert '@app.page("/healthz")' in app and '@app.page("/metrics")' in app


def test_kubernetes_alertmanager_has_the_repo_routes_and_the_workers_find_it() -> None:
    named = {
        (d["kind"], d["metadata"]["name"]): d
        for d in yaml.safe_load_all((DEPLOY / "k8s" / "tierpulse.yaml").read_text())
    }
    config = yaml.safe_load(named["ConfigMap", "alertmanager"]["data"]["alertmanager.yml"])
    source = yaml.safe_load(ALERTMANAGER.read_text())
    # The same routing as deploy/alertmanager/alertmanager.yml; only the receivers' URLs differ.
    assert {k: v for k, v in config.items() if k != "receivers"} == {
        k: v for k, v in source.items() if k != "receivers"
    }
    assert [r["name"] for r in config["receivers"]] == [r["name"] for r in source["receivers"]]
    for receiver in config["receivers"]:
        assert all(not c["url"].startswith(WEBHOOK_PLACEHOLDER) for c in receiver["webhook_configs"])
    service = named["Service", "alertmanager"]["spec"]
    pod = named["Deployment", "alertmanager"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "prom/alertmanager:v0.25.0"
    assert service["selector"] == named["Deployment", "alertmanager"]["spec"]["selector"]["matchLabels"]
    assert service["ports"][0]["targetPort"] == container["ports"][0]["name"]
    url = named["ConfigMap", "tierpulse"]["data"]["TIERPULSE_ALERTMANAGER_URL"]
    assert url == f"http://alertmanager:{service['ports'][0]['port']}"
    config_mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "config")
    assert f"--config.file={config_mount}/alertmanager.yml" in container["args"]
    assert "--cluster.listen-address=" in container["args"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert pod["securityContext"]["runAsNonRoot"] is True


def _rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule.get("record") or rule["alert"]: rule for group in groups for rule in group["rules"]}


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in board["panels"] if panel["type"] != "row"]


def test_every_dashboard_panel_has_a_grafana_unit() -> None:
    for name, board in DASHBOARDS.items():
        for panel in _panels(board):
            assert panel["fieldConfig"]["defaults"].get("unit") in GRAFANA_UNITS, (name, panel["title"])


def test_every_template_variable_is_used_by_a_panel() -> None:
    for name, board in DASHBOARDS.items():
        queries = " ".join(t["expr"] for panel in _panels(board) for t in panel["targets"])
        used = set(re.findall(r"\$\{?(\w+)", queries))
        defined = {variable["name"] for variable in board["templating"]["list"]}
        assert defined <= used, (name, defined - used)


def test_the_dashboards_link_to_each_other_and_share_a_tag() -> None:
    uids = {board["uid"] for board in DASHBOARDS.values()}
    assert len(uids) == len(DASHBOARDS) == 3
    for name, board in DASHBOARDS.items():
        assert "tierpulse" in board["tags"], name
        linked = {link["url"].removeprefix("/d/") for link in board["links"] if link["type"] == "link"}
        assert linked == uids - {board["uid"]}, name
        assert all(link["keepTime"] for link in board["links"]), name


def test_annotations_read_recording_rules_that_exist() -> None:
    recorded = {name for name, rule in _rules().items() if "record" in rule}
    for name in ("tierpulse-business", "tierpulse-service"):
        annotations = DASHBOARDS[name]["annotations"]["list"]
        named = set()
        for annotation in annotations:
            assert annotation["datasource"] == {"type": "prometheus", "uid": "tierpulse-prometheus"}, name
            found = set(re.findall(r"tierpulse:[\w:]+", annotation["target"]["expr"]))
            assert found and found <= recorded, (name, annotation["name"], found - recorded)
            named |= found
        assert named == {"tierpulse:tier_changes:burst", "tierpulse:worker_started:5m"}, name


def test_panels_watched_by_an_alert_draw_its_threshold() -> None:
    rules = _rules()
    for (name, title), (alert, comparison, value) in ALERT_THRESHOLDS.items():
        assert comparison in " ".join(rules[alert]["expr"].split()), (alert, comparison)
        [panel] = [p for p in DASHBOARDS[name]["panels"] if p["title"] == title]
        assert alert in panel["description"], title
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults["thresholds"]["mode"] == "absolute", title
        steps = defaults["thresholds"]["steps"]
        assert steps[0]["value"] is None and [s["value"] for s in steps[1:]] == [value], title
        assert {s["color"] for s in steps} == {"green", "red"}, title
        if panel["type"] == "timeseries":
            assert defaults["custom"]["thresholdsStyle"]["mode"] in ("line", "dashed"), title
