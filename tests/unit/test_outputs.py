"""What the worker tells the firing gauge (and Alertmanager) after each batch."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from models.alerts import firing as firing_of
from models.evaluation import evaluate
from models.state import CustomerState
from sinks.alertmanager import FiringAlerts
from sinks.metrics import ScorerMetrics
from streams.outputs import FiringNow
from streams.pipeline import BatchResult
from tests.unit.builders import ticket, us
from tests.unit.test_alerts import ALWAYS_STRATEGIC, WINDOW


def _firing_gauge(registry: CollectorRegistry) -> float:
    labels = {"rule": "p1_near_breach", "severity": "critical"}
    return registry.get_sample_value("tierpulse_alerts_firing", labels) or 0.0


def test_the_firing_gauge_is_counted_from_the_stored_alerts_of_the_partitions_owned() -> None:
    registry = CollectorRegistry()
    metrics = ScorerMetrics(registry, ("strategic", "key", "unrated"), ())
    firing = FiringNow(FiringAlerts(), None, metrics, ALWAYS_STRATEGIC)
    states = {}
    for partition, customer in ((0, "a"), (1, "b")):
        state = CustomerState(customer)
        state.absorb(ticket("t1", "opened", 1, 0, customer=customer, priority="P1"), WINDOW)
        evaluate(state, ALWAYS_STRATEGIC, WINDOW, us(1, 30))
        states[customer] = (partition, state)
    firing.note(BatchResult(states=states))
    firing.note(BatchResult(states=states))  # the same states again: counted once, not twice
    assert _firing_gauge(registry) == 2

    partition, answered = states["a"]
    answered.absorb(ticket("t1", "first_response", 1, 31, customer="a"), WINDOW)
    evaluate(answered, ALWAYS_STRATEGIC, WINDOW, us(1, 31))
    firing.note(BatchResult(states={"a": (partition, answered)}))
    assert _firing_gauge(registry) == 1

    firing.forget({1})  # taken over by another worker: its gauge counts it now
    assert _firing_gauge(registry) == 0


def test_customers_found_firing_by_the_adoption_scan_are_counted_too() -> None:
    registry = CollectorRegistry()
    firing = FiringNow(FiringAlerts(), None, ScorerMetrics(registry, ("strategic",), ()), ALWAYS_STRATEGIC)
    state = CustomerState("c")
    state.absorb(ticket("t1", "opened", 1, 0, customer="c", priority="P1"), WINDOW)
    evaluate(state, ALWAYS_STRATEGIC, WINDOW, us(1, 30))
    firing.note(BatchResult(firing={"c": (3, firing_of(state))}, scanned_whole={3}))
    assert _firing_gauge(registry) == 1
