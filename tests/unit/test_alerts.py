"""Alert rules: each alert fires once and resolves once."""

from __future__ import annotations

from models.alerts import firing
from models.evaluation import evaluate
from models.event_time import MICROS_PER_DAY, Window
from models.outputs import alert_body
from models.policy import load_policy, parse_policy
from models.state import CustomerState
from tests.unit.builders import complaint, placed, ticket, us

POLICY = load_policy()
WINDOW = Window(MICROS_PER_DAY, 30)


def _always_strategic(*alerts: dict[str, object]) -> dict[str, object]:
    """A policy under which every customer scores 100 (order_count 0 is "good" on this scale),
    so it is strategic, with these alert rules."""
    return {
        "version": "t",
        "tiers": ["strategic", "key"],
        "default_segment": "base",
        "segments": {
            "base": {
                "weights": {"order_count": 1},
                "kpis": {"order_count": {"good": 0, "bad": 10}},
                "tiers": {"strategic": 50, "key": 0},
            }
        },
        "alerts": list(alerts),
    }


ALWAYS_STRATEGIC = parse_policy(
    _always_strategic(
        {
            "name": "p1_near_breach",
            "severity": "critical",
            "tiers": ["strategic"],
            "ticket": {"priority": "P1", "minutes_before_deadline": 30},
        }
    )
)


def test_p1_ticket_of_a_strategic_customer_fires_thirty_minutes_before_its_deadline() -> None:
    state = CustomerState("vip")
    state.absorb(ticket("t1", "opened", 1, 0, customer="vip", priority="P1"), WINDOW)
    seen = []
    for minute in (0, 29, 30, 31, 45, 61):  # sweeps at these instants of event time
        seen += [
            (minute, a.state, a.value)
            for a in evaluate(state, ALWAYS_STRATEGIC, WINDOW, us(1, minute)).alerts
        ]
    state.absorb(ticket("t1", "first_response", 1, 62, customer="vip"), WINDOW)
    seen += [(62, a.state, a.threshold) for a in evaluate(state, ALWAYS_STRATEGIC, WINDOW, us(1, 62)).alerts]
    assert seen == [(30, "firing", 30.0), (62, "resolved", 30.0)]


def test_an_alert_on_one_ticket_names_it_as_its_subject_and_a_kpi_alert_names_none() -> None:
    state = CustomerState("vip")
    state.absorb(ticket("t-42", "opened", 1, 0, customer="vip", priority="P1"), WINDOW)
    restored = CustomerState.from_bytes(state.to_bytes())  # the id survives the stored form
    [fired] = evaluate(restored, ALWAYS_STRATEGIC, WINDOW, us(1, 30)).alerts
    assert (fired.state, fired.subject, alert_body(fired)["subject"]) == ("firing", "t-42", "t-42")
    restored.absorb(ticket("t-42", "first_response", 1, 31, customer="vip"), WINDOW)
    [resolved] = evaluate(
        CustomerState.from_bytes(restored.to_bytes()), ALWAYS_STRATEGIC, WINDOW, us(1, 31)
    ).alerts
    assert (resolved.state, resolved.subject) == ("resolved", "t-42")
    for complaint_number in range(30):
        restored.absorb(complaint(f"k{complaint_number}", 1, customer="vip"), WINDOW)
    burst = [a for a in evaluate(restored, POLICY, WINDOW, us(1, 40)).alerts if a.rule == "complaint_burst"]
    assert [(a.state, a.subject) for a in burst] == [("firing", None)]


def test_alerts_fire_once_and_resolve_once_for_an_answered_ticket() -> None:
    state = CustomerState("c9")
    state.absorb(ticket("t1", "opened", 1, 0, customer="c9", priority="P1"), WINDOW)
    states = []
    for minute in (10, 59, 60, 61, 70):
        states += [(minute, a.rule, a.state) for a in evaluate(state, POLICY, WINDOW, us(1, minute)).alerts]
    state.absorb(ticket("t1", "first_response", 1, 75, customer="c9"), WINDOW)
    states += [(75, a.rule, a.state) for a in evaluate(state, POLICY, WINDOW, us(1, 75)).alerts]
    states += [(80, a.rule, a.state) for a in evaluate(state, POLICY, WINDOW, us(1, 80)).alerts]
    unanswered = [(m, s) for m, r, s in states if r == "p1_ticket_unanswered"]
    assert unanswered == [(60, "firing"), (75, "resolved")]


def test_alert_ids_pair_firing_with_resolved_and_are_deterministic() -> None:
    def run() -> list[tuple[str, str]]:
        state = CustomerState("c9")
        state.absorb(ticket("t1", "opened", 1, 0, customer="c9", priority="P1"), WINDOW)
        out = [(a.alert_id, a.state) for a in evaluate(state, POLICY, WINDOW, us(1, 61)).alerts]
        state.absorb(ticket("t1", "first_response", 1, 62, customer="c9"), WINDOW)
        return out + [(a.alert_id, a.state) for a in evaluate(state, POLICY, WINDOW, us(1, 62)).alerts]

    first = run()
    assert first == run()
    assert [s for _, s in first] == ["firing", "resolved"] and first[0][0] == first[1][0]


def _with_hold(hold: str) -> object:
    return parse_policy(_raw(hold))


def _raw(hold: str) -> dict[str, object]:
    return _always_strategic(
        {
            "name": "complaint_burst",
            "severity": "critical",
            "kpi": {"name": "complaint_rate", "above": 2},
            "for": hold,
            "runbook": "https://runbooks.example/complaint-burst",
        }
    )


def test_a_hold_down_fires_only_once_the_condition_has_held_that_long_in_event_time() -> None:
    policy = _with_hold("2h")
    state = CustomerState("c1")
    for n in range(3):
        state.absorb(complaint(f"k{n}", 1, customer="c1"), WINDOW)
    seen = []
    for minute in (10, 60, 129, 130, 200):
        evaluation = evaluate(state, policy, WINDOW, us(1, minute))
        seen += [(minute, a.state) for a in evaluation.alerts]
        if minute == 10:  # the sweep must come back when the hold-down ends
            assert evaluation.due == us(1, 130)
    assert seen == [(130, "firing")]
    [alert] = firing(state)
    assert (alert.rule, alert.fired_as_of, alert.context.tier) == ("complaint_burst", us(1, 130), "strategic")


def test_a_condition_that_stops_holding_during_its_hold_down_never_fires_and_starts_over() -> None:
    policy = _with_hold("1h")
    state = CustomerState("c1")
    for n in range(3):
        state.absorb(complaint(f"k{n}", 1, customer="c1"), WINDOW)
    assert evaluate(state, policy, WINDOW, us(1, 0)).alerts == ()
    assert state.status.pending  # holds, waiting for its hold-down
    for n in range(200):  # 3 complaints over 200 orders: 1.5 per 100, below the threshold of 2
        state.absorb(placed(f"o{n}", 1 + 20 / 1440, customer="c1"), WINDOW)
    assert evaluate(state, policy, WINDOW, us(1, 30)).alerts == ()
    assert not state.status.pending
    assert evaluate(state, policy, WINDOW, us(1, 60)).alerts == ()  # the first hold-down's end
    for n in range(3, 6):
        state.absorb(complaint(f"k{n}", 1 + 70 / 1440, customer="c1"), WINDOW)
    assert evaluate(state, policy, WINDOW, us(1, 70)).alerts == ()  # a new hold-down from here
    stored = CustomerState.from_bytes(state.to_bytes())  # the pending instant is stored
    assert evaluate(stored, policy, WINDOW, us(1, 129)).alerts == ()
    assert [a.state for a in evaluate(stored, policy, WINDOW, us(1, 130)).alerts] == ["firing"]


def test_an_alert_resolves_with_the_labels_it_fired_with_though_the_customer_moved() -> None:
    state = CustomerState("vip", profile={"customer_id": "vip", "account_manager": "ana", "region": "north"})
    state.absorb(ticket("t-7", "opened", 1, 0, customer="vip", priority="P1"), WINDOW)
    evaluate(state, ALWAYS_STRATEGIC, WINDOW, us(1, 30))
    [before] = firing(CustomerState.from_bytes(state.to_bytes()))
    state.profile = {"customer_id": "vip", "account_manager": "bo", "region": "south"}
    [after] = firing(state)
    assert before == after
    assert (after.subject, after.context.account_manager, after.context.region) == ("t-7", "ana", "north")
    assert (after.value, after.threshold) == (30.0, 30.0)


def test_a_hold_down_and_a_runbook_are_checked_when_the_policy_loads() -> None:
    import pytest

    from models.policy import PolicyError

    with pytest.raises(PolicyError) as refused:
        _with_hold("soon")
    assert "alerts.0.for" in str(refused.value)
    held = _with_hold("90s")
    assert held.alerts[0].hold_us == 90_000_000  # type: ignore[attr-defined]
    assert held.alerts[0].runbook == "https://runbooks.example/complaint-burst"  # type: ignore[attr-defined]
    with pytest.raises(PolicyError) as refused:
        parse_policy({**_raw("1h"), "alerts": [{**_raw("1h")["alerts"][0], "runbook": "wiki/page"}]})
    assert "alerts.0.runbook" in str(refused.value)
