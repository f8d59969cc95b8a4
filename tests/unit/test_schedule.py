"""Property test of the due schedule: before a customer's due instant, evaluating it
changes nothing that matters (tier, alerts) — the sweep may skip it until then."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.evaluation import evaluate
from models.event_time import MICROS_PER_DAY
from models.events import Event
from models.state import CustomerState
from tests.unit.test_state_properties import CUSTOMER, POLICY, WINDOW, _feed, histories

STEP = MICROS_PER_DAY // 100  # days_since_last_order's resolution


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.data())
def test_nothing_changes_before_the_due_instant(
    history: tuple[list[Event], list[bool]], data: st.DataObject
) -> None:
    arrival, checkpoints = history
    state, watermark = _feed(CustomerState(CUSTOMER), arrival, None, checkpoints)
    if watermark is None:
        return
    as_of = watermark
    for _ in range(4):  # follow the schedule a few hops, as the live sweep does
        due = evaluate(state, POLICY, WINDOW, as_of).due
        horizon = due if due is not None else as_of + 60 * MICROS_PER_DAY
        if horizon - 1 <= as_of:
            break
        early = st.sampled_from([as_of + 1, horizon - 1, horizon - STEP])
        probe = data.draw(early | st.integers(as_of + 1, horizon - 1))
        probe = max(as_of + 1, min(probe, horizon - 1))
        copy = CustomerState.from_bytes(state.to_bytes())
        before = (copy.status.tier, sorted(copy.status.alerts))
        evaluation = evaluate(copy, POLICY, WINDOW, probe)
        assert evaluation.change is None and evaluation.alerts == (), (as_of, probe, due)
        assert (copy.status.tier, sorted(copy.status.alerts)) == before
        if due is None:
            break
        as_of = due
