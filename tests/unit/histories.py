"""Random customer histories for the property tests: orders, tickets and complaints over 40
days, biased to the edges (a delivery at its promise, a response at its deadline), with re-sent
messages (same event_id) and the same entity under a new event_id, in any arrival order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import strategies as st

from models.events import ComplaintEvent, Event, InvoiceEvent, OrderEvent, TicketEvent

BASE = datetime(2026, 3, 1, tzinfo=UTC)
SLA_MINUTES = {"P1": 60.0, "P2": 240.0, "P3": 1440.0, "P4": 4320.0}
CUSTOMER = "客户-001"
offsets = st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))])
# Biased to bucket edges (midnight UTC), where windows begin and end.
minute = st.integers(min_value=0, max_value=40 * 24 * 60) | st.integers(0, 40).map(lambda day: day * 24 * 60)


def at_minute(minutes: int, tz: timezone) -> str:
    return (BASE + timedelta(minutes=minutes)).astimezone(tz).isoformat()


@st.composite
def order_events(draw: st.DrawFn, n: int, customer: str = CUSTOMER) -> list[Event]:
    placed = draw(minute)
    promised = placed + draw(st.integers(0, 5 * 24 * 60))
    common = {"customer_id": customer, "order_id": f"o{n}"}
    events: list[Event] = []
    if draw(st.booleans()) or draw(st.booleans()):
        amount = draw(st.decimals(min_value=0, max_value=10_000, places=2, allow_nan=False))
        events.append(
            OrderEvent.model_validate(
                {
                    **common,
                    "event_id": f"{customer}:o{n}-p",
                    "type": "placed",
                    "occurred_at": at_minute(placed, draw(offsets)),
                    "amount": str(amount),
                    "promised_at": at_minute(promised, draw(offsets)),
                    # A cost up to above the amount: a margin can be negative.
                    "cost": draw(st.none() | st.decimals(0, 12_000, places=2).map(str)),
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
                    "event_id": f"{customer}:o{n}-d{k}",
                    "type": "delivered",
                    "promised_at": at_minute(promised, draw(offsets)),
                    "occurred_at": at_minute(delivered, draw(offsets)),
                }
            )
        )
    if draw(st.integers(0, 4)) == 0:
        events.append(
            OrderEvent.model_validate(
                {
                    **common,
                    "event_id": f"{customer}:o{n}-c",
                    "type": "cancelled",
                    "occurred_at": at_minute(placed + draw(st.integers(0, 3 * 24 * 60)), draw(offsets)),
                }
            )
        )
    return events


@st.composite
def ticket_events(draw: st.DrawFn, n: int, customer: str = CUSTOMER) -> list[Event]:
    opened = draw(minute)
    priority = draw(st.sampled_from(["P1", "P2", "P3", "P4"]))
    sla = int(SLA_MINUTES[priority])
    common = {"customer_id": customer, "ticket_id": f"t{n}"}
    events: list[Event] = []
    if draw(st.integers(0, 9)) > 0:
        events.append(
            TicketEvent.model_validate(
                {
                    **common,
                    "event_id": f"{customer}:t{n}-o",
                    "type": "opened",
                    "occurred_at": at_minute(opened, draw(offsets)),
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
                    "event_id": f"{customer}:t{n}-r{k}",
                    "type": "first_response",
                    "occurred_at": at_minute(opened + wait, draw(offsets)),
                }
            )
        )
    if draw(st.booleans()):
        events.append(
            TicketEvent.model_validate(
                {
                    **common,
                    "event_id": f"{customer}:t{n}-x",
                    "type": "resolved",
                    "occurred_at": at_minute(opened + draw(st.integers(0, 6000)), draw(offsets)),
                    "satisfaction": draw(st.none() | st.integers(1, 5)),
                    "effort_minutes": draw(st.none() | st.decimals(0, 600, places=1).map(str)),
                }
            )
        )
    return events


@st.composite
def invoice_events(draw: st.DrawFn, n: int, customer: str = CUSTOMER) -> list[Event]:
    """An invoice (or none, its payments arriving alone) with payments that may be partial, late,
    early (before the invoice) or add up past the total; due exactly at a payment sometimes."""
    issued = draw(minute)
    due = issued + draw(st.integers(0, 20 * 24 * 60))
    amount = draw(st.decimals(0, 5_000, places=2))
    common = {"customer_id": customer, "invoice_id": f"i{n}"}
    events: list[Event] = []
    if draw(st.integers(0, 5)) > 0:
        events.append(
            InvoiceEvent.model_validate(
                {
                    **common,
                    "event_id": f"{customer}:i{n}-i",
                    "type": "issued",
                    "occurred_at": at_minute(issued, draw(offsets)),
                    "amount": str(amount),
                    "due_at": at_minute(due, draw(offsets)),
                }
            )
        )
    for k in range(draw(st.integers(0, 3))):
        paid = draw(
            st.sampled_from([due - 1, due, due + 1]) | st.integers(issued - 24 * 60, due + 15 * 24 * 60)
        )
        events.append(
            InvoiceEvent.model_validate(
                {
                    **common,
                    "event_id": f"{customer}:i{n}-p{k}",
                    "type": "paid",
                    "occurred_at": at_minute(paid, draw(offsets)),
                    "amount": str(draw(st.decimals(0, 3_000, places=2))),
                }
            )
        )
    return events


@st.composite
def histories(draw: st.DrawFn, customer: str = CUSTOMER) -> tuple[list[Event], list[bool]]:
    events: list[Event] = []
    for n in range(draw(st.integers(0, 12))):
        events += draw(order_events(n, customer))
    for n in range(draw(st.integers(0, 8))):
        events += draw(ticket_events(n, customer))
    for n in range(draw(st.integers(0, 4))):
        events += draw(invoice_events(n, customer))
    for n in range(draw(st.integers(0, 5))):
        events.append(
            ComplaintEvent.model_validate(
                {
                    "customer_id": customer,
                    "event_id": f"{customer}:c{n}",
                    "complaint_id": f"c{n}",
                    "occurred_at": at_minute(draw(minute), draw(offsets)),
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
            if isinstance(e, ComplaintEvent)
            or (isinstance(e, OrderEvent | InvoiceEvent) and e.type in ("placed", "issued"))
        ]
    arrival = draw(st.permutations(events))
    checkpoints = draw(st.lists(st.booleans(), min_size=len(arrival), max_size=len(arrival)))
    return list(arrival), checkpoints
