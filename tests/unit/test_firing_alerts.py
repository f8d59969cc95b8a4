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
    ends = sink._waiting["a"][1]["endsAt"]  # the resolution: it ends now, not four resends ahead
    assert ends <= datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    sink.forget([1])
    assert sink.waiting == 1 and sink.firing.ids(1) == set()


class _Recorded(AlertmanagerSink):
    """The sink with Alertmanager's two calls replaced: what it would post, and what it holds."""

    def __init__(self, held: list[object] | None = None) -> None:
        super().__init__(
            "http://127.0.0.1:1",
            FiringAlerts(),
            service="tp",
            rules=load_policy().alerts,
            customer_url="http://scorer",
            partition_of=lambda customer: int(customer[-1]),
            resend_seconds=60,
        )
        self.sent: list[list[dict[str, object]]] = []
        self.held = held or []
        self.down = False

    async def _send(self, alerts: list[dict[str, object]]) -> None:
        if self.down:
            raise OSError("connection refused")
        if alerts:
            self.sent.append(alerts)
            self._failures = 0

    async def _get(self, path: str, **params: str) -> list[dict[str, object]]:
        if self.down:
            raise OSError("connection refused")
        self._failures = 0
        return self.held  # type: ignore[return-value]


async def test_a_failed_post_keeps_what_waits_and_the_next_one_sends_it() -> None:
    sink = _Recorded()
    sink.changed(0, "c0", [_alert("a", customer="c0")])
    sink.down = True
    try:
        await sink.flush()
    except OSError as error:
        sink._failed(error)
    assert sink.waiting == 1 and not sink.healthy
    sink.down = False
    await sink.flush()
    assert sink.waiting == 0 and sink.healthy
    assert [[post["labels"]["alert_id"] for post in posts] for posts in sink.sent] == [["a"]]


async def test_reconciling_resolves_only_what_an_adopted_partition_no_longer_fires() -> None:
    def held(alert_id: str, customer: str) -> dict[str, object]:
        labels = {"alert_id": alert_id, "customer_id": customer, "alertname": "x", "service": "tp"}
        return {"labels": labels, "startsAt": "2999-01-01T00:00:00.000Z"}

    sink = _Recorded(
        [
            held("still", "c0"),  # fires here: kept
            held("stale", "c0"),  # partition 0 adopted, not firing here: resolved
            held("other", "c1"),  # partition 1 is not adopted here: left to its owner
            {"labels": "not a mapping"},  # an answer of another shape: skipped
            "nonsense",
        ]
    )
    sink.changed(0, "c0", [_alert("still", customer="c0")])
    sink.adopted([0])
    await sink._resend()
    resolved = sink.sent[-1]
    assert [post["labels"]["alert_id"] for post in resolved] == ["stale"]  # type: ignore[index]
    assert resolved[0]["endsAt"] >= resolved[0]["startsAt"]  # type: ignore[operator]


async def test_a_re_post_skips_partitions_taken_away_meanwhile() -> None:
    sink = _Recorded()
    sink.changed(0, "c0", [_alert("mine", customer="c0")])
    sink.changed(1, "c1", [_alert("theirs", customer="c1")])
    sink.forget([1])
    await sink._resend()
    assert [post["labels"]["alert_id"] for posts in sink.sent for post in posts] == ["mine"]  # type: ignore[index]


async def test_the_posting_task_survives_an_error_it_did_not_expect() -> None:
    import asyncio

    sink = _Recorded()
    calls = 0
    original = sink._send

    async def once_broken(alerts: list[dict[str, object]]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("an answer of a shape nobody expected")
        await original(alerts)

    sink._send = once_broken  # type: ignore[method-assign]
    sink.max_backoff = 0.01
    sink.changed(0, "c0", [_alert("a", customer="c0")])
    task = asyncio.create_task(sink.run())
    for _ in range(100):
        await asyncio.sleep(0.05)
        if sink.sent:
            break
    assert not task.done(), "the posting task died"
    task.cancel()
    assert {post["labels"]["alert_id"] for posts in sink.sent for post in posts} == {"a"}  # type: ignore[index]
