"""Property tests: the incremental state equals a brute-force recomputation, always.

Random customer histories — shuffled, duplicated (same event_id and same entity
under a new event_id), with late events, cancellations and tickets whose events
arrive in any order — are fed to the state in arrival order, with evaluations
(which prune) and serialise/deserialise round trips at random points. The KPIs
must equal tests/reference.py exactly at the final watermark and later.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.evaluation import evaluate
from models.event_time import MICROS_PER_DAY, MICROS_PER_MINUTE, Window, to_micros
from models.events import ComplaintEvent, Event, OrderEvent, TicketEvent
from models.policy import load_policy
from models.state import CustomerState
from tests.reference import ReferenceLog

WINDOW = Window(bucket_us=MICROS_PER_DAY, buckets=10)
BASE = datetime(2026, 3, 1, tzinfo=UTC)
SLA_MINUTES = {"P1": 60.0, "P2": 240.0, "P3": 1440.0, "P4": 4320.0}
SLA_US = tuple(round(SLA_MINUTES[p] * MICROS_PER_MINUTE) for p in ("P1", "P2", "P3", "P4"))
POLICY = load_policy()
CUSTOMER = "客户-001"
offsets = st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))])
minute = st.integers(min_value=0, max_value=40 * 24 * 60)


def _at(minutes: int, tz: timezone) -> str:
    return (BASE + timedelta(minutes=minutes)).astimezone(tz).isoformat()


@st.composite
def order_events(draw: st.DrawFn, n: int) -> list[Event]:
    placed = draw(minute)
    promised = placed + draw(st.integers(0, 5 * 24 * 60))
    common = {"customer_id": CUSTOMER, "order_id": f"o{n}"}
    events: list[Event] = []
    if draw(st.booleans()) or draw(st.booleans()):
        amount = draw(st.decimals(min_value=0, max_value=10_000, places=2, allow_nan=False))
        events.append(
            OrderEvent.model_validate(
                {
                    **common,
                    "event_id": f"o{n}-p",
                    "type": "placed",
                    "occurred_at": _at(placed, draw(offsets)),
                    "amount": str(amount),
                    "promised_at": _at(promised, draw(offsets)),
                }
            )
        )
    for k in range(draw(st.integers(0, 2))):
        # Biased to the edge: delivered exactly at, or a minute either side of, the promise.
        delivered = draw(
            st.sampled_from([promised - 1, promised, promised + 1])
            | st.integers(placed, placed + 8 * 24 * 60)
        )
        events.append(
            OrderEvent.model_validate(
                {
                    **common,
                    "event_id": f"o{n}-d{k}",
                    "type": "delivered",
                    "promised_at": _at(promised, draw(offsets)),
                    "occurred_at": _at(delivered, draw(offsets)),
                }
            )
        )
    if draw(st.integers(0, 4)) == 0:
        events.append(
            OrderEvent.model_validate(
                {
                    **common,
                    "event_id": f"o{n}-c",
                    "type": "cancelled",
                    "occurred_at": _at(placed + draw(st.integers(0, 3 * 24 * 60)), draw(offsets)),
                }
            )
        )
    return events


@st.composite
def ticket_events(draw: st.DrawFn, n: int) -> list[Event]:
    opened = draw(minute)
    priority = draw(st.sampled_from(["P1", "P2", "P3", "P4"]))
    sla = int(SLA_MINUTES[priority])
    common = {"customer_id": CUSTOMER, "ticket_id": f"t{n}"}
    events: list[Event] = []
    if draw(st.integers(0, 9)) > 0:
        events.append(
            TicketEvent.model_validate(
                {
                    **common,
                    "event_id": f"t{n}-o",
                    "type": "opened",
                    "occurred_at": _at(opened, draw(offsets)),
                    "priority": priority,
                }
            )
        )
    for k in range(draw(st.integers(0, 2))):
        # Biased to the edge: answered exactly at, or a minute either side of, the deadline.
        wait = draw(st.sampled_from([sla - 1, sla, sla + 1]) | st.integers(0, 5000))
        events.append(
            TicketEvent.model_validate(
                {
                    **common,
                    "event_id": f"t{n}-r{k}",
                    "type": "first_response",
                    "occurred_at": _at(opened + wait, draw(offsets)),
                }
            )
        )
    if draw(st.booleans()):
        events.append(
            TicketEvent.model_validate(
                {
                    **common,
                    "event_id": f"t{n}-x",
                    "type": "resolved",
                    "occurred_at": _at(opened + draw(st.integers(0, 6000)), draw(offsets)),
                    "satisfaction": draw(st.none() | st.integers(1, 5)),
                }
            )
        )
    return events


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Event], list[bool]]:
    events: list[Event] = []
    for n in range(draw(st.integers(0, 12))):
        events += draw(order_events(n))
    for n in range(draw(st.integers(0, 8))):
        events += draw(ticket_events(n))
    for n in range(draw(st.integers(0, 5))):
        events.append(
            ComplaintEvent.model_validate(
                {
                    "customer_id": CUSTOMER,
                    "event_id": f"c{n}",
                    "complaint_id": f"c{n}",
                    "occurred_at": _at(draw(minute), draw(offsets)),
                    "severity": "high",
                    "category": "delivery",
                }
            )
        )
    if events:
        # Re-sent messages (same event_id) and the same entity under a new event_id.
        events += draw(st.lists(st.sampled_from(events), max_size=6))
        renamed = draw(st.lists(st.sampled_from(events), max_size=4))
        events += [
            e.model_copy(update={"event_id": e.event_id + "-again"})
            for e in renamed
            if isinstance(e, ComplaintEvent) or (isinstance(e, OrderEvent) and e.type == "placed")
        ]
    arrival = draw(st.permutations(events))
    checkpoints = draw(st.lists(st.booleans(), min_size=len(arrival), max_size=len(arrival)))
    return list(arrival), checkpoints


def _feed(
    state: CustomerState, events: list[Event], watermark: int | None, checkpoints: list[bool] | None = None
) -> tuple[CustomerState, int | None]:
    for index, event in enumerate(events):
        state.absorb(event, WINDOW, watermark)
        occurred = event.occurred_us
        watermark = occurred if watermark is None else max(watermark, occurred)
        if checkpoints and checkpoints[index]:
            evaluate(state, POLICY, WINDOW, watermark)  # prunes, like the live sweep
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
@given(histories(), st.integers(0, 15 * 24 * 60), st.data())
def test_incremental_kpis_equal_brute_force(
    history: tuple[list[Event], list[bool]], later_minutes: int, data: st.DataObject
) -> None:
    arrival, checkpoints = history
    state, watermark = _feed(CustomerState(CUSTOMER), arrival, None, checkpoints)
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
                "occurred_at": _at(day * 24 * 60, UTC),
                "amount": "10",
                "promised_at": _at(day * 24 * 60 + 60, UTC),
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
