"""Property tests: the incremental state equals a brute-force recomputation, always.

Random customer histories — shuffled, duplicated (same event_id and same entity
under a new event_id), with late events, cancellations and tickets whose events
arrive in any order — are fed to the state in arrival order, with evaluations
(which prune) and serialise/deserialise round trips at random points. The KPIs
must equal tests/reference.py exactly at the final watermark and later.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.evaluation import evaluate
from models.event_time import MICROS_PER_DAY, MICROS_PER_MINUTE, EventClock, Window, to_micros
from models.events import Event, OrderEvent, TicketEvent
from models.policy import load_policy
from models.state import CustomerState
from tests.reference import ReferenceLog
from tests.unit.histories import CUSTOMER, SLA_MINUTES, at_minute, histories

WINDOW = Window(bucket_us=MICROS_PER_DAY, buckets=10)
SLA_US = tuple(round(SLA_MINUTES[p] * MICROS_PER_MINUTE) for p in ("P1", "P2", "P3", "P4"))
POLICY = load_policy()


def _feed(
    state: CustomerState,
    events: list[Event],
    watermark: int | None,
    checkpoints: list[bool] | None = None,
    *,
    round_trips: bool = True,
) -> tuple[CustomerState, int | None]:
    """Absorb ``events`` in order; at each checkpoint evaluate, and (``round_trips``) go on with
    the state serialised and read back, as after a restart — or with the same object and its
    running totals, as the live scorer keeps a busy customer."""
    clock = EventClock(frontiers={} if watermark is None else {"input": watermark})
    for index, event in enumerate(events):
        occurred = event.occurred_us
        if not clock.is_late("input", occurred, WINDOW):
            state.absorb(event, WINDOW)
        clock.observe("input", occurred)
        watermark = clock.frontiers["input"]
        if checkpoints and checkpoints[index]:
            evaluate(state, POLICY, WINDOW, watermark)  # prunes, like the live sweep
            if round_trips:
                state = CustomerState.from_bytes(state.to_bytes())
    return state, watermark


def _edges(events: list[Event]) -> list[int]:
    """Instants where a KPI flips: SLA deadlines and promises (as-of exactly there)."""
    instants = []
    for e in events:
        if isinstance(e, TicketEvent) and e.type == "opened" and e.priority:
            instants.append(e.occurred_us + round(SLA_MINUTES[e.priority] * MICROS_PER_MINUTE))
        if isinstance(e, OrderEvent) and e.promised_at is not None:
            instants.append(to_micros(e.promised_at))
    return instants


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.integers(0, 15 * 24 * 60), st.booleans(), st.data())
def test_incremental_kpis_equal_brute_force(
    history: tuple[list[Event], list[bool]], later_minutes: int, round_trips: bool, data: st.DataObject
) -> None:
    arrival, checkpoints = history
    state, watermark = _feed(CustomerState(CUSTOMER), arrival, None, checkpoints, round_trips=round_trips)
    reference = ReferenceLog(WINDOW.bucket_us, WINDOW.buckets)
    for event in arrival:
        reference.offer(event)
    assert watermark == reference.watermark
    if watermark is None:
        return
    edges = [t for t in _edges(arrival) if t >= watermark]
    edge = data.draw(st.sampled_from(edges)) if edges else watermark
    for as_of in (watermark, watermark + later_minutes * MICROS_PER_MINUTE, edge):
        assert asdict(state.kpis(as_of, WINDOW, SLA_US)) == reference.kpis(as_of, SLA_MINUTES)  # type: ignore[arg-type]


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.data())
def test_replaying_a_prefix_changes_nothing(
    history: tuple[list[Event], list[bool]], data: st.DataObject
) -> None:
    arrival, checkpoints = history
    cut = data.draw(st.integers(0, len(arrival)))
    state, watermark = _feed(CustomerState(CUSTOMER), arrival[:cut], None, checkpoints)
    before = state.to_bytes()
    restored = CustomerState.from_bytes(before)
    replayed, _ = _feed(restored, arrival[:cut], watermark)
    assert replayed.to_bytes() == before


def test_state_is_bounded_by_the_window() -> None:
    """A year of daily orders keeps only what the window (plus a short history) needs."""
    state, watermark = CustomerState(CUSTOMER), None
    for day in range(365):
        event = OrderEvent.model_validate(
            {
                "customer_id": CUSTOMER,
                "event_id": f"e{day}",
                "order_id": f"o{day}",
                "type": "placed",
                "occurred_at": at_minute(day * 24 * 60, UTC),
                "amount": "10",
                "promised_at": at_minute(day * 24 * 60 + 60, UTC),
            }
        )
        state, watermark = _feed(state, [event], watermark, [True])
    assert len(state.orders) <= 2 * WINDOW.buckets + 1  # the window plus one window of grace
    assert len(state.seen) <= WINDOW.buckets + 1
    assert state.kpis(watermark or 0, WINDOW, SLA_US).revenue == Decimal(10) * WINDOW.buckets


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_serialisation_round_trip_keeps_everything(history: tuple[list[Event], list[bool]]) -> None:
    arrival, checkpoints = history
    state, watermark = _feed(CustomerState(CUSTOMER), arrival, None, checkpoints)
    if watermark is not None:
        evaluate(state, POLICY, WINDOW, watermark)  # fills the tier status and alert memory too
    assert CustomerState.from_bytes(state.to_bytes()) == state


def test_a_stored_state_of_another_format_is_refused_saying_what_to_do() -> None:
    with pytest.raises(ValueError, match="reset the scorer's state"):
        CustomerState.from_bytes(b'{"id":"written by the JSON layout of 0.1"}')
