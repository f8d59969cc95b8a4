"""Alerting end to end: the webhook receiver, amtool on the config Alertmanager runs with, a
real Alertmanager routing to the receiver, and Prometheus sending to that Alertmanager."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy import services
from tests.integration.harness import REPO


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _request(url: str, body: bytes | None = None) -> tuple[int, Any]:
    """GET, or POST ``body`` as JSON; the status and the decoded answer (None when empty)."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status, answer = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, answer = error.code, error.read()
    return status, json.loads(answer) if answer else None


def _wait_for(probe: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.3)
    pytest.fail(f"{what} within {timeout:.0f}s")


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """deploy/webhook_receiver.py in its own process, as Alertmanager meets it."""
    port, out = _free_port(), tmp_path / "notifications.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.webhook_receiver", "--port", str(port), "--out", str(out)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(
            lambda: process.poll() is None and services._http_ok(f"{url}/"), 20, "the receiver answered"
        )
        yield url, out
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_webhook_receiver_appends_each_posted_body_as_one_line(receiver: tuple[str, Path]) -> None:
    url, out = receiver
    bodies = [
        {"receiver": "sla-webhook", "status": "firing", "alerts": [{"labels": {"customer_id": "客户-001"}}]},
        {"receiver": "operations", "status": "resolved", "alerts": []},
    ]
    for path, body in zip(("/sla", "/operations"), bodies, strict=True):
        assert _request(f"{url}{path}", json.dumps(body).encode())[0] == 200
    assert _request(f"{url}/sla", b"not json") == (400, {"error": "the body is not JSON"})
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == bodies
    assert _request(f"{url}/") == (200, {"received": 2})


def test_amtool_accepts_the_config_alertmanager_runs_with(layout: services.Layout) -> None:
    amtool = services._require_binary("amtool", "prometheus-alertmanager")
    config = layout.service_dir("alertmanager") / "alertmanager.yml"  # written by start_alertmanager
    assert f"url: {layout.webhook_url}/" in config.read_text()  # the local receiver's port in place
    check = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True)
    assert check.returncode == 0 and "SUCCESS" in check.stdout, check.stdout + check.stderr
    for labels, receiver in [
        (["alertname=TierPulseP1SlaBreach", "severity=critical"], "sla-webhook"),
        (["alertname=p1_ticket_near_sla_breach", "severity=critical", "customer_id=客户-001"], "sla-webhook"),
        (["alertname=TierPulseP1SlaBreach", "severity=warning"], "operations"),
        (["alertname=TierPulseScorerStalled", "severity=critical"], "operations"),
    ]:
        routed = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={config}", *labels],
            capture_output=True,
            text=True,
        )
        assert routed.stdout.strip() == receiver, (labels, routed.stdout + routed.stderr)


def _notifications(webhook_log: Path, customer_id: str) -> list[dict[str, Any]]:
    if not webhook_log.exists():
        return []
    found = []
    for line in webhook_log.read_text(encoding="utf-8").splitlines():
        notification = json.loads(line)
        if any(a["labels"].get("customer_id") == customer_id for a in notification["alerts"]):
            found.append(notification)
    return found


def test_a_critical_sla_alert_pages_once_and_the_rest_goes_to_operations(
    alertmanager_url: str, webhook_log: Path, unique_name: Callable[[str], str]
) -> None:
    customer = unique_name("客户")
    alerts = [
        {"labels": {"alertname": "TierPulseP1SlaBreach", "severity": "critical", "customer_id": customer}},
        # The same alert's warning: inhibited by the critical one for this customer.
        {"labels": {"alertname": "TierPulseP1SlaBreach", "severity": "warning", "customer_id": customer}},
        {"labels": {"alertname": "TierPulseSinkFailing", "severity": "warning", "customer_id": customer}},
    ]
    status, _ = _request(f"{alertmanager_url}/api/v2/alerts", json.dumps(alerts).encode())
    assert status == 200
    # group_wait is 10s: both groups are sent after it.
    _wait_for(lambda: len(_notifications(webhook_log, customer)) >= 2, 45, "two notifications arrived")
    time.sleep(2)  # and nothing more (the inhibited warning) for this customer
    sent = _notifications(webhook_log, customer)
    by_receiver = {n["receiver"]: [a["labels"] for a in n["alerts"]] for n in sent}
    assert len(sent) == 2, sent
    assert by_receiver == {
        "sla-webhook": [alerts[0]["labels"]],
        "operations": [alerts[2]["labels"]],
    }
    query = urllib.parse.urlencode({"filter": f'customer_id="{customer}"'})
    _, active = _request(f"{alertmanager_url}/api/v2/alerts?{query}")
    states = {(a["labels"]["alertname"], a["labels"]["severity"]): a["status"]["state"] for a in active}
    assert states[("TierPulseP1SlaBreach", "warning")] == "suppressed"


def test_prometheus_sends_its_alerts_to_the_local_alertmanager(
    prometheus_url: str, alertmanager_url: str
) -> None:
    def discovered() -> list[str]:
        _, answer = _request(f"{prometheus_url}/api/v1/alertmanagers")
        return [a["url"] for a in answer["data"]["activeAlertmanagers"]]

    urls = _wait_for(discovered, 30, "Prometheus discovered an Alertmanager")
    assert urls == [f"{alertmanager_url}/api/v2/alerts"]
