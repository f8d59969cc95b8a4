"""A brute-force reading of contract §3, written independently of models/state.py.

It keeps every accepted event in a list and recomputes each KPI from scratch by
the contract's words. Slow and obviously right: the yardstick for the property tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from models.event_time import MICROS_PER_DAY, MICROS_PER_MINUTE
from models.events import ComplaintEvent, Event, OrderEvent, TicketEvent, to_micros


@dataclass
class ReferenceLog:
    """A replay by input stream (contract v2 §3): each stream's events are offered in that
    stream's own order; an event is late when its bucket is older than the window as of the
    largest occurred_at offered before it on the same stream. Streams may be interleaved in any
    way: the verdicts do not depend on it."""

    bucket_us: int
    buckets: int
    accepted: list[Event] = field(default_factory=list)
    late: list[Event] = field(default_factory=list)
    frontiers: dict[object, int] = field(default_factory=dict)
    _ids: set[str] = field(default_factory=set)

    def offer(self, event: Event, stream: object = "input") -> None:
        occurred = to_micros(event.occurred_at)
        frontier = self.frontiers.get(stream)
        if (
            frontier is not None
            and occurred // self.bucket_us < frontier // self.bucket_us - self.buckets + 1
        ):
            self.late.append(event)
        elif event.event_id not in self._ids:
            self._ids.add(event.event_id)
            self.accepted.append(event)
        self.frontiers[stream] = occurred if frontier is None else max(frontier, occurred)

    @property
    def watermark(self) -> int | None:
        """T once every stream is read to its end: the largest occurred_at offered."""
        return max(self.frontiers.values(), default=None)

    def in_window(self, micros: int, as_of: int) -> bool:
        last = as_of // self.bucket_us
        return last - self.buckets < micros // self.bucket_us <= last

    def kpis(
        self, as_of: int, sla_minutes: dict[str, float], customer_id: str | None = None
    ) -> dict[str, object]:
        """The KPIs of the accepted events (of one customer, if named) as of ``as_of``."""
        inside = self.in_window
        orders: dict[str, list[OrderEvent]] = {}
        tickets: dict[str, list[TicketEvent]] = {}
        complaints: dict[str, ComplaintEvent] = {}
        for e in self.accepted:
            if customer_id is not None and e.customer_id != customer_id:
                continue
            if isinstance(e, OrderEvent):
                orders.setdefault(e.order_id, []).append(e)
            elif isinstance(e, TicketEvent):
                tickets.setdefault(e.ticket_id, []).append(e)
            elif isinstance(e, ComplaintEvent):
                complaints.setdefault(e.complaint_id, e)  # a repeated complaint_id is a duplicate

        revenue, count, on_time, due, latest_placed = Decimal(0), 0, 0, 0, None
        for events in orders.values():
            if any(e.type == "cancelled" for e in events):
                continue
            placed = [e for e in events if e.type == "placed"][:1]  # the first placed; others are duplicates
            delivered = [to_micros(e.occurred_at) for e in events if e.type == "delivered"]
            if placed:
                t = to_micros(placed[0].occurred_at)
                latest_placed = t if latest_placed is None else max(latest_placed, t)
                if inside(t, as_of):
                    revenue += placed[0].amount or 0
                    count += 1
            source = placed or [e for e in events if e.type == "delivered"][:1]
            if source and source[0].promised_at is not None:
                promised = to_micros(source[0].promised_at)
                if promised <= as_of and inside(promised, as_of):
                    due += 1
                    on_time += bool(delivered) and min(delivered) <= promised

        waits, met, counted, ratings = [], 0, 0, []
        for events in tickets.values():
            resolved = [e for e in events if e.type == "resolved"][:1]
            if (
                resolved
                and resolved[0].satisfaction is not None
                and inside(to_micros(resolved[0].occurred_at), as_of)
            ):
                ratings.append(resolved[0].satisfaction)
            opened = [e for e in events if e.type == "opened"][:1]
            if not opened or not inside(to_micros(opened[0].occurred_at), as_of):
                continue
            opened_at = to_micros(opened[0].occurred_at)
            deadline = opened_at + round(sla_minutes[opened[0].priority or "P4"] * MICROS_PER_MINUTE)
            responses = [to_micros(e.occurred_at) for e in events if e.type == "first_response"]
            first = min(responses) if responses else None
            if first is not None:
                waits.append(first - opened_at)
            if first is not None or deadline <= as_of:
                counted += 1
                met += first is not None and first <= deadline

        in_window_complaints = sum(1 for c in complaints.values() if inside(to_micros(c.occurred_at), as_of))
        return {
            "revenue": revenue,
            "order_count": count,
            "on_time_delivery_rate": float(Fraction(on_time, due)) if due else None,
            "first_response_minutes": float(Fraction(sum(waits), len(waits) * MICROS_PER_MINUTE))
            if waits
            else None,
            "response_sla_rate": float(Fraction(met, counted)) if counted else None,
            "complaint_rate": float(Fraction(100 * in_window_complaints, max(count, 1))),
            "csat": float(Fraction(sum(ratings), len(ratings))) if ratings else None,
            "days_since_last_order": None
            if latest_placed is None
            else (Decimal(as_of - latest_placed) / MICROS_PER_DAY).quantize(Decimal("0.01"), ROUND_HALF_UP),
        }
