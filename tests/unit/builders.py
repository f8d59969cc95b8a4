"""Small builders for readable example tests: events at day/minute offsets from a base."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from models.event_time import to_micros
from models.events import ComplaintEvent, Event, OrderEvent, TicketEvent

BASE = datetime(2026, 11, 1, tzinfo=UTC)
_counter = iter(range(10**9))


def at(days: float = 0, minutes: float = 0) -> str:
    return (BASE + timedelta(days=days, minutes=minutes)).isoformat()


def us(days: float = 0, minutes: float = 0) -> int:
    return to_micros(BASE + timedelta(days=days, minutes=minutes))


def order(order_id: str, kind: str, day: float, customer: str = "c1", **fields: Any) -> OrderEvent:
    return OrderEvent.model_validate(
        {
            "event_id": f"e{next(_counter)}",
            "customer_id": customer,
            "order_id": order_id,
            "type": kind,
            "occurred_at": at(day),
            **fields,
        }
    )


def placed(
    order_id: str, day: float, amount: str = "100", promised_day: float | None = None, **kw: Any
) -> OrderEvent:
    return order(
        order_id,
        "placed",
        day,
        amount=amount,
        promised_at=at(promised_day if promised_day is not None else day + 2),
        **kw,
    )


def delivered(order_id: str, day: float, promised_day: float, **kw: Any) -> OrderEvent:
    return order(order_id, "delivered", day, promised_at=at(promised_day), **kw)


def ticket(
    ticket_id: str, kind: str, day: float = 0, minutes: float = 0, customer: str = "c1", **fields: Any
) -> TicketEvent:
    return TicketEvent.model_validate(
        {
            "event_id": f"e{next(_counter)}",
            "customer_id": customer,
            "ticket_id": ticket_id,
            "type": kind,
            "occurred_at": at(day, minutes),
            **fields,
        }
    )


def complaint(complaint_id: str, day: float, customer: str = "c1") -> ComplaintEvent:
    return ComplaintEvent.model_validate(
        {
            "event_id": f"e{next(_counter)}",
            "customer_id": customer,
            "complaint_id": complaint_id,
            "occurred_at": at(day),
            "severity": "high",
            "category": "delivery",
        }
    )


def feed(state: Any, window: Any, *events: Event) -> int:
    """Absorb in order, moving the watermark like the scorer; return the final watermark."""
    watermark = None
    for event in events:
        state.absorb(event, window, watermark)
        watermark = event.occurred_us if watermark is None else max(watermark, event.occurred_us)
    assert watermark is not None
    return watermark
