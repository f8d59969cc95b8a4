"""What fires in the partitions owned here, and what Alertmanager is told of it."""

from __future__ import annotations

from datetime import UTC, datetime

from models.alerts import AlertContext, FiringAlert
from models.policy import load_policy
from sinks.alertmanager import AlertmanagerSink, FiringAlerts

CONTEXT = AlertContext("key", "key_account", "ana", "north")


def _alert(alert_id: str, customer: str = "c1", rule: str = "p1_ticket_near_sla_breach") -> FiringAlert:
    ticket = rule.startswith("p1")
    return FiringAlert(
        alert_id,
        customer,
        rule,
        "critical" if ticket else "warning",
        None if ticket else "on_time_delivery_rate",
        "t-42" if ticket else None,
        12.0 if ticket else 0.8,
        30.0 if ticket else 0.9,
        1_700_000_000_000_000,
        CONTEXT,
    )


def test_an_update_tells_what_newly_fires_and_what_stopped() -> None:
    firing = FiringAlerts()
    a, b, c = _alert("a"), _alert("b"), _alert("c", customer="c2")
    assert firing.update(0, "c1", [a, b]) == ([a, b], [])
    assert firing.update(1, "c2", [c]) == ([c], [])
    assert firing.update(0, "c1", [b]) == ([], [a])
    assert firing.counts() == {("p1_ticket_near_sla_breach", "critical"): 2}
    changes = firing.changes
    assert firing.update(0, "c1", [b]) == ([], [])  # the same again: no change, no recount
    assert firing.changes == changes
    firing.forget([1])  # taken over by another worker: no longer counted here
    assert [alert.alert_id for _, alert in firing.of()] == ["b"]
    assert firing.ids(0) == {"b"} and firing.ids(1) == set()


def _sink() -> AlertmanagerSink:
    policy = load_policy()
    return AlertmanagerSink(
        "http://127.0.0.1:1",
        FiringAlerts(),
        service="tierpulse-test",
        rules=[
            rule.model_copy(update={"runbook": "https://runbooks.example/p1"})
            if rule.name == "p1_ticket_near_sla_breach"
            else rule
            for rule in policy.alerts
        ],
        customer_url="http://scorer:6066/",
        partition_of=lambda customer: 0,
        resend_seconds=60,
    )


def test_a_ticket_alert_is_posted_with_routing_labels_its_ticket_and_a_runbook() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    post = _sink()._post(_alert("al-1"), now)
    assert post["labels"] == {
        "alertname": "p1_ticket_near_sla_breach",
        "severity": "critical",
        "customer_id": "c1",
        "subject": "t-42",
        "segment": "key_account",
        "tier": "key",
        "account_manager": "ana",
        "region": "north",
        "alert_id": "al-1",
        "service": "tierpulse-test",
    }
    assert post["annotations"] == {
        "summary": "c1: ticket t-42 unanswered, 12 min before its SLA deadline (alerting from 30 min before)",
        "snapshot_url": "http://scorer:6066/customers/c1",
        "runbook_url": "https://runbooks.example/p1",
    }
    assert post["startsAt"] == "2023-11-14T22:13:20.000Z"  # when it fired, in event time
    assert post["endsAt"] == "2030-01-01T00:04:00.000Z"  # four resends ahead: then it times out


def test_a_kpi_alert_has_no_subject_and_its_resolution_ends_now() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    post = _sink()._post(_alert("al-2", rule="on_time_delivery_below_target"), now, resolved=True)
    assert "subject" not in post["labels"]
    assert post["annotations"]["summary"] == "c1: on_time_delivery_rate is 0.8, below 0.9"
    assert "runbook_url" not in post["annotations"]
    assert post["endsAt"] == "2030-01-01T00:00:00.000Z"


def test_an_alert_that_fired_in_the_future_of_the_wall_clock_starts_now() -> None:
    # Alertmanager refuses an alert whose start is after its end.
    now = datetime(2020, 1, 1, tzinfo=UTC)
    post = _sink()._post(_alert("al-3"), now, resolved=True)
    assert post["startsAt"] == post["endsAt"] == "2020-01-01T00:00:00.000Z"


def test_changes_wait_for_posting_and_a_takeover_drops_what_waits_for_that_partition() -> None:
    sink = _sink()
    sink.changed(0, "c1", [_alert("a")])
    sink.changed(1, "c2", [_alert("b", customer="c2")])
    sink.changed(0, "c1", [])  # resolved before it was posted: the resolution replaces it
    assert sink.waiting == 2
    sink.forget([1])
    assert sink.waiting == 1 and sink.firing.ids(1) == set()
