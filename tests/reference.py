"""A brute-force reading of contract §3, written independently of models/state.py.

It keeps every accepted event in a list and recomputes each KPI from scratch by
the contract's words. Slow and obviously right: the yardstick for the property tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from models.event_time import MICROS_PER_DAY, MICROS_PER_MINUTE
from models.events import ComplaintEvent, Event, InvoiceEvent, OrderEvent, TicketEvent, to_micros


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

    def in_previous_window(self, micros: int, as_of: int) -> bool:
        last = as_of // self.bucket_us - self.buckets
        return last - self.buckets < micros // self.bucket_us <= last

    def kpis(
        self, as_of: int, sla_minutes: dict[str, float], customer_id: str | None = None
    ) -> dict[str, object]:
        """The KPIs of the accepted events (of one customer, if named) as of ``as_of``."""
        mine = [e for e in self.accepted if customer_id is None or e.customer_id == customer_id]
        orders, tickets = self._orders(mine, as_of), self._tickets(mine, as_of, sla_minutes)
        complaints = {
            e.complaint_id: e for e in reversed(mine) if isinstance(e, ComplaintEvent)
        }  # first kept
        in_window = sum(1 for c in complaints.values() if self.in_window(to_micros(c.occurred_at), as_of))
        effort = tickets.pop("effort")
        revenue = orders["revenue"]
        return {
            **orders,
            **tickets,
            **self._receivables(mine, as_of),
            "complaint_rate": float(Fraction(100 * in_window, max(orders["order_count"], 1))),
            "revenue_per_service_hour": float(Fraction(revenue) / (Fraction(effort) / 60))
            if effort
            else None,
        }

    def _orders(self, events: list[Event], as_of: int) -> dict[str, object]:
        inside, before = self.in_window, self.in_previous_window
        orders: dict[str, list[OrderEvent]] = {}
        for e in events:
            if isinstance(e, OrderEvent):
                orders.setdefault(e.order_id, []).append(e)
        revenue, count, prior_revenue, prior_count, on_time, due = Decimal(0), 0, Decimal(0), 0, 0, 0
        placed_times, lifetime, costed, margin = [], Decimal(0), Decimal(0), Decimal(0)
        for events_of_order in orders.values():
            if any(e.type == "cancelled" for e in events_of_order):
                continue
            placed = [e for e in events_of_order if e.type == "placed"][
                :1
            ]  # the first; others are duplicates
            delivered = [to_micros(e.occurred_at) for e in events_of_order if e.type == "delivered"]
            if placed:
                t, amount = to_micros(placed[0].occurred_at), placed[0].amount or Decimal(0)
                placed_times.append(t)
                lifetime += amount
                if inside(t, as_of):
                    revenue += amount
                    count += 1
                    if placed[0].cost is not None:
                        costed += amount
                        margin += amount - placed[0].cost
                if before(t, as_of):
                    prior_revenue += amount
                    prior_count += 1
            source = placed or [e for e in events_of_order if e.type == "delivered"][:1]
            if source and source[0].promised_at is not None:
                promised = to_micros(source[0].promised_at)
                if promised <= as_of and inside(promised, as_of):
                    due += 1
                    on_time += bool(delivered) and min(delivered) <= promised
        return {
            "revenue": revenue,
            "order_count": count,
            "on_time_delivery_rate": float(Fraction(on_time, due)) if due else None,
            "days_since_last_order": _days(as_of - max(placed_times)) if placed_times else None,
            "gross_margin_rate": float(Fraction(margin) / Fraction(costed)) if costed else None,
            "revenue_growth": float(Fraction(revenue) / Fraction(prior_revenue) - 1)
            if prior_revenue
            else None,
            "tenure_days": _days(as_of - min(placed_times)) if placed_times else None,
            "lifetime_revenue": lifetime.quantize(Decimal("0.01"), ROUND_HALF_UP),
            "retained": (1 if count else 0) if prior_count else None,
        }

    def _tickets(self, events: list[Event], as_of: int, sla_minutes: dict[str, float]) -> dict[str, object]:
        inside = self.in_window
        tickets: dict[str, list[TicketEvent]] = {}
        for e in events:
            if isinstance(e, TicketEvent):
                tickets.setdefault(e.ticket_id, []).append(e)
        waits, met, counted, ratings, effort = [], 0, 0, [], Decimal(0)
        for events_of_ticket in tickets.values():
            resolved = [e for e in events_of_ticket if e.type == "resolved"][:1]
            if resolved and inside(to_micros(resolved[0].occurred_at), as_of):
                if resolved[0].satisfaction is not None:
                    ratings.append(resolved[0].satisfaction)
                effort += resolved[0].effort_minutes or 0
            opened = [e for e in events_of_ticket if e.type == "opened"][:1]
            if not opened or not inside(to_micros(opened[0].occurred_at), as_of):
                continue
            opened_at = to_micros(opened[0].occurred_at)
            deadline = opened_at + round(sla_minutes[opened[0].priority or "P4"] * MICROS_PER_MINUTE)
            responses = [to_micros(e.occurred_at) for e in events_of_ticket if e.type == "first_response"]
            first = min(responses) if responses else None
            if first is not None:
                waits.append(first - opened_at)
            if first is not None or deadline <= as_of:
                counted += 1
                met += first is not None and first <= deadline
        return {
            "first_response_minutes": float(Fraction(sum(waits), len(waits) * MICROS_PER_MINUTE))
            if waits
            else None,
            "response_sla_rate": float(Fraction(met, counted)) if counted else None,
            "csat": float(Fraction(sum(ratings), len(ratings))) if ratings else None,
            "effort": effort,
        }

    def _receivables(self, events: list[Event], as_of: int) -> dict[str, object]:
        invoices: dict[str, list[InvoiceEvent]] = {}
        for e in events:
            if isinstance(e, InvoiceEvent):
                invoices.setdefault(e.invoice_id, []).append(e)
        billed, collected, overdue = Decimal(0), Decimal(0), Decimal(0)
        for events_of_invoice in invoices.values():
            issued = [e for e in events_of_invoice if e.type == "issued"][:1]  # a second is a duplicate
            if not issued or issued[0].due_at is None:
                continue
            due, amount = to_micros(issued[0].due_at), issued[0].amount
            if not (due <= as_of and self.in_window(due, as_of)):
                continue
            payments = [(to_micros(e.occurred_at), e.amount) for e in events_of_invoice if e.type == "paid"]
            billed += amount
            collected += min(sum((a for t, a in payments if t <= due), Decimal(0)), amount)
            overdue += max(amount - sum((a for t, a in payments if t <= as_of), Decimal(0)), Decimal(0))
        return {
            "receivables_collection_rate": float(Fraction(collected) / Fraction(billed)) if billed else None,
            "overdue_receivables": overdue,
        }


def _days(micros: int) -> Decimal:
    return (Decimal(micros) / MICROS_PER_DAY).quantize(Decimal("0.01"), ROUND_HALF_UP)
