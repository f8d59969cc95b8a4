"""Docker does not run on these machines, so the deployment files are checked for what can be
checked: they parse, every variable they set is a real setting, every path and port they
name exists, and the image runs the command the README documents."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from streams.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
README = (DEPLOY.parent / "README.md").read_text()


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
        "TIERPULSE_TOPICS__",
    }
    assert {v for v in documented if not v.endswith("_")} - known == set()


def test_compose_parses_and_mounts_files_that_exist() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert {"kafka", "redis", "prometheus", "grafana", "worker-1", "worker-2"} <= compose["services"].keys()
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


def test_kubernetes_manifests_are_consistent() -> None:
    documents = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "k8s" / "tierpulse.yaml").read_text())}
    assert documents.keys() == {"ConfigMap", "Secret", "Service", "StatefulSet"}
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
    app = (DEPLOY.parent / "streams" / "app.py").read_text()
    assert '@app.page("/healthz")' in app and '@app.page("/metrics")' in app
