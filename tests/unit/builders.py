"""Small builders for readable example tests: events at day/minute offsets from a base."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from models.event_time import EventClock, to_micros
from models.events import ComplaintEvent, Event, OrderEvent, TicketEvent
from streams.pipeline import BatchResult
from streams.positions import PartitionProgress

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
    """Absorb in order as read from one input stream, lateness judged like the scorer does;
    return the final watermark."""
    clock = EventClock()
    for event in events:
        if not clock.is_late("input", event.occurred_us, window):
            state.absorb(event, window)
        clock.observe("input", event.occurred_us)
    clock.advance(())
    assert clock.watermark is not None
    return clock.watermark


class DictTables:
    """The scorer's two tables as dicts (streams/pipeline.py, StateTables)."""

    def __init__(self, partition_of: Callable[[str], int] = lambda customer_id: 0) -> None:
        self.states: dict[str, bytes] = {}
        self.reached: dict[int, PartitionProgress] = {}
        self.partition_of = partition_of

    def customer(self, customer_id: str) -> bytes | None:
        return self.states.get(customer_id)

    def progress(self, partition: int) -> PartitionProgress | None:
        return self.reached.get(partition)

    def stored_customers(self) -> Iterable[tuple[int, str, bytes]]:
        return [(self.partition_of(cid), cid, state) for cid, state in list(self.states.items())]

    def store(self, result: BatchResult, *, progress: bool = True) -> None:
        self.states.update({cid: state.to_bytes() for cid, (_, state) in result.states.items()})
        if progress:  # as the worker does: only after the states
            self.reached.update(result.progress)


class Pages:
    """Just enough of a Faust app for add_web_views and add_ui_views: the pages they add, by
    path (the routing to the owner is Faust's, and the integration tests')."""

    def __init__(self) -> None:
        self.pages: dict[str, Any] = {}

    def page(self, path: str) -> Any:
        return lambda handler: self.pages.setdefault(path, handler)

    def table_route(self, **_: Any) -> Any:
        return lambda handler: handler
