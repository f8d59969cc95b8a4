"""Property test of the due schedule: before a customer's due instant, evaluating it
changes nothing that matters (tier, alerts) — the sweep may skip it until then."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.evaluation import evaluate
from models.event_time import MICROS_PER_DAY
from models.events import Event
from models.policy import DEFAULT_POLICY_PATH, Policy, parse_policy
from models.state import CustomerState
from models.tiering import UNRATED
from tests.unit.builders import feed, placed, us
from tests.unit.test_state_properties import CUSTOMER, POLICY, WINDOW, _feed, histories

STEP = MICROS_PER_DAY // 100  # days_since_last_order's resolution
_raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
_raw["segments"][_raw["default_segment"]]["warmup_days"] = 3.5
WARMING_UP = parse_policy(_raw)


@pytest.mark.parametrize("policy", [POLICY, WARMING_UP], ids=["default", "warm-up"])
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.data())
def test_nothing_changes_before_the_due_instant(
    policy: Policy, history: tuple[list[Event], list[bool]], data: st.DataObject
) -> None:
    arrival, checkpoints = history
    state, watermark = _feed(CustomerState(CUSTOMER), arrival, None, checkpoints)
    if watermark is None:
        return
    as_of = watermark
    for _ in range(4):  # follow the schedule a few hops, as the live sweep does
        due = evaluate(state, policy, WINDOW, as_of).due
        horizon = due if due is not None else as_of + 60 * MICROS_PER_DAY
        if horizon - 1 <= as_of:
            break
        early = st.sampled_from([as_of + 1, horizon - 1, horizon - STEP])
        probe = data.draw(early | st.integers(as_of + 1, horizon - 1))
        probe = max(as_of + 1, min(probe, horizon - 1))
        copy = CustomerState.from_bytes(state.to_bytes())
        before = (copy.status.tier, sorted(copy.status.alerts))
        evaluation = evaluate(copy, policy, WINDOW, probe)
        assert evaluation.change is None and evaluation.alerts == (), (as_of, probe, due)
        assert (copy.status.tier, sorted(copy.status.alerts)) == before
        if due is None:
            break
        as_of = due


def test_while_warming_up_days_since_last_order_alone_makes_no_one_due() -> None:
    """Unrated, the next 0.01 day would rate the customer but for the warm-up: due at its end."""
    state = CustomerState(CUSTOMER)
    watermark = feed(state, WINDOW, placed("o1", 0, promised_day=9))
    assert evaluate(state, WARMING_UP, WINDOW, watermark).due == us(3.5)
    assert evaluate(state, WARMING_UP, WINDOW, us(3.5)).snapshot.tier != UNRATED
