"""Shadow mode (issue #17): every customer also scored with a second policy, whose tier changes go
to their own topic, while nothing the CRM reads changes; its status is stored with the state."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import evaluation as evaluation_module
from models.codec import StoredSummary
from models.evaluation import evaluate
from models.event_time import MICROS_PER_DAY, Window
from models.outputs import TIER_CHANGES, TIER_CHANGES_SHADOW
from models.policy import (
    DEFAULT_POLICY_PATH,
    Policy,
    PolicyError,
    load_policy,
    load_shadow_policy,
    parse_policy,
)
from models.state import CustomerState
from models.tiering import UNRATED, next_tier
from streams.pipeline import Pipeline
from tests.unit.builders import delivered, placed, us
from tests.unit.histories import histories
from tests.unit.replay import SimulatedTopics, make_pipeline

LIVE = load_policy()
WINDOW = Window(MICROS_PER_DAY, 30)


def candidate(shift: float = 20, sla_factor: int = 2, suffix: str = "-candidate") -> Policy:
    """The default policy made stricter (higher tier bounds, shorter SLAs), with its own version."""
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    raw["version"] += suffix
    for segment in raw["segments"].values():
        if "tiers" in segment:
            segment["tiers"] = {t: min(100, m + shift) if m > 0 else m for t, m in segment["tiers"].items()}
        if "sla_minutes" in segment:
            segment["sla_minutes"] = {p: m // sla_factor for p, m in segment["sla_minutes"].items()}
    return parse_policy(raw)


SHADOW = candidate()


def late_deliveries(customer: str = "c1", days: int = 8) -> CustomerState:
    """A customer with orders every day, every third delivered late."""
    state = CustomerState(customer)
    for n in range(days):
        state.absorb(placed(f"o{n}", n, amount="4000", promised_day=n + 1, customer=customer), WINDOW)
        state.absorb(delivered(f"o{n}", n + (2 if n % 3 == 0 else 0.5), n + 1, customer=customer), WINDOW)
    return state


def shadow_outputs(state: CustomerState) -> list[dict[str, Any]]:
    return [body for kind, body in state.status.outbox if kind == TIER_CHANGES_SHADOW]


def test_the_live_decisions_are_the_same_with_a_shadow_or_without() -> None:
    alone, shadowed = late_deliveries(), late_deliveries()
    for day in range(9, 40, 3):
        plain, both = (
            evaluate(alone, LIVE, WINDOW, us(day)),
            evaluate(shadowed, LIVE, WINDOW, us(day), SHADOW),
        )
        assert (plain.snapshot, plain.change, plain.alerts, plain.changed) == (
            both.snapshot,
            both.change,
            both.alerts,
            both.changed,
        )
        assert alone.status.outbox == [e for e in shadowed.status.outbox if e[0] != TIER_CHANGES_SHADOW]
        # The shadow's decisions can come due earlier than the live ones, never later.
        assert both.due is not None and (plain.due is None or both.due <= plain.due)
    assert shadowed.shadow is not None and shadowed.shadow.policy_version == SHADOW.version


def test_the_shadow_starts_at_the_live_tier_and_moves_as_its_policy_says() -> None:
    state = late_deliveries()
    rated = evaluate(state, LIVE, WINDOW, us(9))  # live only, as before shadow mode was turned on
    assert rated.change is not None and state.shadow is None
    live_tier = state.status.tier
    state.status.outbox.clear()

    turned_on = evaluate(state, LIVE, WINDOW, us(9), SHADOW)
    assert turned_on.change is None and state.status.tier == live_tier  # the CRM sees nothing new
    change = turned_on.shadow_change
    assert change is not None and change.previous_tier == live_tier
    segment = state.segment(SHADOW)
    assert change.new_tier == next_tier(live_tier, change.score, segment)  # as a promotion would
    assert change.policy_version == SHADOW.version
    assert change.event_id != rated.change.event_id
    [body] = shadow_outputs(state)
    assert body["event_id"] == change.event_id and body["previous_tier"] == live_tier
    assert [kind for kind, _ in state.status.outbox] == [TIER_CHANGES_SHADOW]

    state.status.outbox.clear()
    again = evaluate(state, LIVE, WINDOW, us(9), SHADOW)
    assert again.shadow_change is None and not state.status.outbox  # nothing new: nothing emitted


def test_a_customer_new_to_both_is_rated_by_the_shadow_from_unrated_with_ids_of_its_own() -> None:
    state = late_deliveries()
    both = evaluate(state, LIVE, WINDOW, us(9), SHADOW)
    assert both.change is not None and both.shadow_change is not None
    assert both.change.previous_tier == both.shadow_change.previous_tier == UNRATED
    assert both.change.event_id != both.shadow_change.event_id
    assert [kind for kind, _ in state.status.outbox] == [TIER_CHANGES, TIER_CHANGES_SHADOW]


def test_the_shadow_status_is_stored_and_only_a_state_with_one_is_written_in_format_6() -> None:
    state = late_deliveries()
    evaluate(state, LIVE, WINDOW, us(9))
    plain = state.to_bytes()
    assert plain[0] == 5 and StoredSummary.of(plain).shadow_version is None  # 0.6 reads it
    evaluate(state, LIVE, WINDOW, us(10), SHADOW)
    stored = state.to_bytes()
    assert stored[0] == 6
    summary = StoredSummary.of(stored)
    assert state.shadow is not None
    assert (summary.shadow_tier, summary.shadow_version) == (state.shadow.tier, SHADOW.version)
    assert CustomerState.from_bytes(stored).shadow == state.shadow
    assert summary.due == state.status.due


def test_turning_the_shadow_off_drops_it_and_a_new_candidate_starts_again_from_the_live_tier() -> None:
    state = late_deliveries()
    evaluate(state, LIVE, WINDOW, us(9), SHADOW)
    other = parse_policy(
        {**yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8")), "version": "other"}
    )
    state.status.outbox.clear()
    evaluate(state, LIVE, WINDOW, us(10), other)  # the live policy's bounds: it agrees at once
    assert state.shadow is not None and state.shadow.tier == state.status.tier
    assert state.shadow.changes == 0 and not shadow_outputs(state)
    evaluate(state, LIVE, WINDOW, us(11))
    assert state.shadow is None and state.to_bytes()[0] == 5


def test_a_failing_shadow_evaluation_leaves_the_live_decision_standing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alone, state = late_deliveries(), late_deliveries()
    plain = evaluate(alone, LIVE, WINDOW, us(9))
    real: Callable[..., Any] = evaluation_module._evaluate

    def failing(*args: Any, scope: str = "", **kw: Any) -> Any:
        if scope:
            raise RuntimeError("a bug in the shadow's evaluation")
        return real(*args, scope=scope, **kw)

    monkeypatch.setattr(evaluation_module, "_evaluate", failing)
    both = evaluate(state, LIVE, WINDOW, us(9), SHADOW)
    assert both.shadow_error == "RuntimeError: a bug in the shadow's evaluation"
    assert (both.change, both.snapshot, both.due) == (plain.change, plain.snapshot, plain.due)
    assert state.status.outbox == alone.status.outbox and state.shadow is None  # tried again next time


def test_a_live_evaluation_that_raises_keeps_neither_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    state = late_deliveries()
    before = (copy.deepcopy(state.status), state.shadow)

    def failing(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("a bug in the live evaluation")

    monkeypatch.setattr(evaluation_module, "_evaluate", failing)
    with pytest.raises(RuntimeError):
        evaluate(state, LIVE, WINDOW, us(9), SHADOW)
    assert (state.status, state.shadow) == before  # no live rating kept without its change event


def test_a_shadow_started_again_never_repeats_an_event_id() -> None:
    """Turned off and on again, or another candidate: a new chain from the live tier, new ids
    (a consumer that drops repeated ids would otherwise drop the new decisions)."""
    state = late_deliveries()
    evaluate(state, LIVE, WINDOW, us(9))
    ids = []
    for day, shadow in ((9, SHADOW), (10, None), (11, SHADOW), (12, candidate(suffix="-b"))):
        state.status.outbox.clear()
        evaluate(state, LIVE, WINDOW, us(day), shadow)
        ids += [body["event_id"] for body in shadow_outputs(state)]
    assert len(ids) == 3 and len(set(ids)) == 3  # the same move each time, three ids


def test_shadow_changes_waiting_to_be_sent_keep_the_state_in_format_6() -> None:
    """Turned off with a shadow change not yet sent: a 0.6 worker must refuse that state, not
    loop on an output it has no topic for."""
    state = late_deliveries()
    evaluate(state, LIVE, WINDOW, us(9), SHADOW)
    assert shadow_outputs(state)
    evaluate(state, LIVE, WINDOW, us(10))  # off: the status goes, the change still waits
    assert state.shadow is None and shadow_outputs(state)
    stored = state.to_bytes()
    assert stored[0] == 6 and CustomerState.from_bytes(stored).status.outbox == state.status.outbox


def test_a_shadow_policy_needs_a_version_of_its_own(tmp_path: Any) -> None:
    same = tmp_path / "same.yaml"
    same.write_text(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(PolicyError, match="a version of its own"):
        load_shadow_policy(same, LIVE)
    assert load_shadow_policy(None, LIVE) is None


def _shadowed(partition_of: Any = None) -> Pipeline:
    return make_pipeline(LIVE, Window(MICROS_PER_DAY, 40), partition_of, shadow=SHADOW)


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_shadow_changes_survive_crashes_and_restarts_like_the_live_ones(data: st.DataObject) -> None:
    """Any batching, crashes between the writes, restarts: each policy's tier changes form one
    chain per customer from unrated (an id sent twice is the same message), and each chain ends
    at the tier its stored status holds."""
    customers = {"客户-a": 0, "b": 1}
    topics = SimulatedTopics(_shadowed, customers.__getitem__)
    for customer, partition in customers.items():
        for event in data.draw(histories(customer))[0]:
            topics.produce((_topic(event), partition), customer.encode(), event.model_dump_json().encode())
    topics.read_all(data)

    for kind, version in ((TIER_CHANGES, LIVE.version), (TIER_CHANGES_SHADOW, SHADOW.version)):
        sent: dict[str, dict[str, Any]] = {}
        for sent_kind, body in topics.sent:
            if sent_kind == kind:
                assert sent.setdefault(body["event_id"], body) == body  # a re-send is the same message
        for customer in customers:
            chain = [b for b in sent.values() if b["customer_id"] == customer]
            tier = UNRATED
            for body in chain:
                assert (body["previous_tier"], body["policy_version"]) == (tier, version)
                tier = body["new_tier"]
            stored = topics.tables.customer(customer)
            if stored is None:
                assert not chain
                continue
            state = CustomerState.from_bytes(stored)
            status = state.status if kind == TIER_CHANGES else state.shadow
            assert ((status.tier if status else None) or UNRATED) == tier


def _topic(event: Any) -> str:
    return {"OrderEvent": "orders", "TicketEvent": "tickets", "ComplaintEvent": "complaints"}.get(
        type(event).__name__, "invoices"
    )


def test_the_shadow_gauges_count_customers_per_tier_pair_and_those_that_differ() -> None:
    from prometheus_client import CollectorRegistry

    from sinks.metrics import ScorerMetrics

    registry = CollectorRegistry()
    metrics = ScorerMetrics(registry, LIVE.tiers)
    metrics.set_population(
        {
            ("key", "standard", (), "key"): 3,
            ("key", "key_account", (), "standard"): 2,
            ("standard", "standard", (), "at_risk"): 1,
            ("standard", "standard", (1,), None): 4,  # not shadowed (yet): no pair
        }
    )

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("tierpulse_shadow_customers", tier="key", shadow_tier="key") == 3
    assert value("tierpulse_shadow_customers", tier="key", shadow_tier="standard") == 2
    assert value("tierpulse_shadow_customers", tier="standard", shadow_tier="at_risk") == 1
    assert value("tierpulse_shadow_differing_customers") == 3
    assert value("tierpulse_customers", tier="standard", segment="standard") == 5
