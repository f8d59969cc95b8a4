"""Per-customer state: what is needed to compute every KPI of contract §3 exactly.

The state merges events into one record per order, ticket and complaint. Every
merge rule is idempotent (set once, earliest, or flag), and every absorbed
``event_id`` is remembered while it can still matter, so absorbing an event the
state already holds changes nothing — also after a serialise/deserialise round
trip. That is what keeps the live scorer exact when a killed worker is re-fed
events whose effect is already in its restored state.

Ids are kept as stable 64-bit hashes (blake2b): the chance that two of one
customer's ids collide is below 1e-12 at a thousand events a month.

Records are pruned a window after they left the window, and remembered ids
when they leave it, so the state is bounded by the window, not by history. An
order's or ticket's events are merged exactly as long as they span less than
one window length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from fractions import Fraction
from hashlib import blake2b
from typing import Any

from models import codec
from models.event_time import MICROS_PER_DAY, MICROS_PER_MINUTE, Window, to_micros
from models.events import ComplaintEvent, CustomerProfile, Event, InvoiceEvent, OrderEvent, TicketEvent
from models.kpis import Kpis

PRIORITIES = ("P1", "P2", "P3", "P4")
# The KPIs "ever" (days_since_last_order, tenure_days) reach past the records kept: this many of
# the latest and of the earliest forgotten non-cancelled orders are kept, so that a cancellation
# arriving after an order was forgotten still finds the next one.
PLACED_HISTORY = 8


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    LATE = "late"
    INVALID = "invalid"


def stable_hash(text: str) -> int:
    return int.from_bytes(blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


@dataclass(slots=True)
class Order:
    placed_us: int | None = None
    amount: Decimal | None = None
    promised_placed_us: int | None = None  # from the placed event: wins
    promised_delivered_us: int | None = None  # from a delivered event: used when no placed is known
    delivered_us: int | None = None  # earliest delivery
    cancelled: bool = False
    last_us: int = 0  # latest instant of any kind: nothing can be in the window once this is not
    cost: Decimal | None = None  # from the placed event

    @property
    def promised_us(self) -> int | None:
        return self.promised_placed_us if self.placed_us is not None else self.promised_delivered_us


@dataclass(slots=True)
class Ticket:
    opened_us: int | None = None
    priority: int = 0  # index into PRIORITIES, valid once opened
    first_response_us: int | None = None  # earliest response
    resolved_us: int | None = None  # first resolution absorbed
    satisfaction: int | None = None
    last_us: int = 0
    effort: Decimal | None = None  # effort_minutes of the first resolution
    ticket_id: str | None = None  # named by an alert on this ticket (its subject)


@dataclass(slots=True)
class Invoice:
    issued_us: int | None = None
    amount: Decimal | None = None  # from the issued event
    due_us: int | None = None
    # Payments by their event's id hash: several add up, a re-sent one is the same payment.
    payments: dict[int, tuple[int, Decimal]] = field(default_factory=dict)  # -> (occurred, amount)
    last_us: int = 0

    def paid_by(self, instant: int) -> Decimal:
        return sum((amount for at, amount in self.payments.values() if at <= instant), Decimal(0))


@dataclass(slots=True)
class TierStatus:
    """What the tier decision remembers between evaluations."""

    tier: str | None = None  # None: unrated
    score: float | None = None  # as last evaluated
    change_score: float | None = None  # as at the last tier change
    changes: int = 0  # tier changes so far: makes change event ids deterministic
    fired: int = 0  # alerts fired so far: makes alert ids deterministic
    fingerprint: str = ""  # of the last snapshot's content, to write only what changed
    as_of: int | None = None  # of the last evaluation
    first_seen: int | None = None  # earliest event time accepted: where the history starts (warm-up)
    # Outputs decided but not yet known to be delivered: [output kind, JSON body]. Stored with the
    # state so that a crash can only re-send what the stored state decided (same ids), never lose it.
    outbox: list[list[Any]] = field(default_factory=list)
    alerts: dict[str, list[Any]] = field(default_factory=dict)  # key -> [id, rule, severity, threshold, kpi]
    # Of the last evaluation, for adopting the customer after a restart without evaluating it
    # (StoredSummary): what it counted as, and when it is due next under that policy version.
    policy_version: str | None = None
    segment: str | None = None
    due: int | None = None
    refresh: int | None = None


@dataclass(slots=True)
class CustomerState:
    customer_id: str
    profile: dict[str, str] | None = None
    orders: dict[int, Order] = field(default_factory=dict)
    tickets: dict[int, Ticket] = field(default_factory=dict)
    complaints: dict[int, int] = field(default_factory=dict)  # complaint hash -> occurred_us
    seen: dict[int, int] = field(default_factory=dict)  # event_id hash -> bucket
    invoices: dict[int, Invoice] = field(default_factory=dict)
    # Forgotten orders (models/state.py, prune), for the KPIs "ever": the latest and the earliest
    # placed (order hash, placed_us), and the revenue of all of them.
    placed_history: list[tuple[int, int]] = field(default_factory=list)
    first_placed: list[tuple[int, int]] = field(default_factory=list)
    forgotten_revenue: Decimal = Decimal(0)
    status: TierStatus = field(default_factory=TierStatus)
    # Not stored: prune's outcome depends only on the window's first bucket (absorbed records are
    # never retired), so a second prune within the same bucket has nothing to do.
    pruned_for: int | None = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------ absorbing

    def absorb(self, event: Event, window: Window) -> Outcome:
        """Merge one valid event that is not late (lateness is its input stream's to judge:
        models/event_time.py, EventClock)."""
        occurred = event.occurred_us
        event_key = stable_hash(event.event_id)
        if event_key in self.seen:
            return Outcome.DUPLICATE
        if isinstance(event, OrderEvent):
            changed = self._absorb_order(event, occurred)
        elif isinstance(event, TicketEvent):
            changed = self._absorb_ticket(event, occurred)
        elif isinstance(event, InvoiceEvent):
            changed = self._absorb_invoice(event, occurred)
        else:
            changed = self._absorb_complaint(event, occurred)
        if not changed:
            return Outcome.DUPLICATE
        self.seen[event_key] = window.bucket_of(occurred)
        first_seen = self.status.first_seen
        self.status.first_seen = occurred if first_seen is None else min(first_seen, occurred)
        return Outcome.ACCEPTED

    def set_profile(self, profile: CustomerProfile | None) -> None:
        self.profile = (
            None if profile is None else profile.model_dump(exclude_none=True, exclude={"customer_id"})
        )

    def _absorb_order(self, event: OrderEvent, occurred: int) -> bool:
        key = stable_hash(event.order_id)
        order = self.orders.get(key)
        if order is None:
            order = self.orders[key] = Order()
        if event.type == "placed":
            if order.placed_us is not None:
                return False  # a second placed of the same order is a duplicate
            order.placed_us, order.amount, order.cost = occurred, event.amount, event.cost
            order.promised_placed_us = _micros(event.promised_at)
        elif event.type == "delivered":
            if order.delivered_us is not None and order.delivered_us <= occurred:
                return False
            order.delivered_us = occurred
            if order.promised_delivered_us is None:
                order.promised_delivered_us = _micros(event.promised_at)
        else:
            if order.cancelled:
                return False
            order.cancelled = True
            self.placed_history = [(h, t) for h, t in self.placed_history if h != key]
            self.first_placed = [(h, t) for h, t in self.first_placed if h != key]
        order.last_us = max(order.last_us, occurred, order.promised_us or 0)
        return True

    def _absorb_ticket(self, event: TicketEvent, occurred: int) -> bool:
        key = stable_hash(event.ticket_id)
        ticket = self.tickets.get(key)
        if ticket is None:
            ticket = self.tickets[key] = Ticket()
        if event.type == "opened":
            if ticket.opened_us is not None:
                return False
            ticket.opened_us, ticket.priority = occurred, PRIORITIES.index(event.priority or "P4")
        elif event.type == "first_response":
            if ticket.first_response_us is not None and ticket.first_response_us <= occurred:
                return False  # a later response changes nothing
            ticket.first_response_us = occurred
        else:
            if ticket.resolved_us is not None:
                return False
            ticket.resolved_us, ticket.satisfaction = occurred, event.satisfaction
            ticket.effort = event.effort_minutes
        ticket.last_us = max(ticket.last_us, occurred)
        # Its id is kept only while an alert may name it: while it is open and unanswered.
        still_open = ticket.first_response_us is None and ticket.resolved_us is None
        ticket.ticket_id = event.ticket_id if still_open else None
        return True

    def _absorb_invoice(self, event: InvoiceEvent, occurred: int) -> bool:
        key = stable_hash(event.invoice_id)
        invoice = self.invoices.get(key)
        if invoice is None:
            invoice = self.invoices[key] = Invoice()
        if event.type == "issued":
            if invoice.issued_us is not None:
                return False  # a second issued of the same invoice is a duplicate
            invoice.issued_us, invoice.amount, invoice.due_us = occurred, event.amount, _micros(event.due_at)
        else:
            payment = stable_hash(event.event_id)
            if payment in invoice.payments:
                return False
            invoice.payments[payment] = (occurred, event.amount)
        invoice.last_us = max(invoice.last_us, occurred, invoice.due_us or 0)
        return True

    def _absorb_complaint(self, event: ComplaintEvent, occurred: int) -> bool:
        key = stable_hash(event.complaint_id)
        if key in self.complaints:
            return False
        self.complaints[key] = occurred
        return True

    # ------------------------------------------------------------ KPIs

    def kpis(self, as_of: int, window: Window, sla_us: tuple[int, int, int, int]) -> Kpis:
        """Every KPI of contract §3 as of ``as_of`` (T). Pure: reads the state only."""
        start, end = window.bounds(as_of)  # t is in the window when start <= t < end
        orders = self._order_kpis(as_of, start, end)
        tickets = self._ticket_kpis(as_of, start, end, sla_us)
        receivables = self._receivable_kpis(as_of, start, end)
        complaints = sum(1 for occurred in self.complaints.values() if start <= occurred < end)
        revenue, order_count = orders["revenue"], orders["order_count"]
        effort = tickets.pop("effort")
        return Kpis(
            **orders,
            **tickets,
            **receivables,
            complaint_rate=float(Fraction(100 * complaints, max(order_count, 1))),
            revenue_per_service_hour=None
            if effort == 0
            else float(Fraction(revenue) * 60 / Fraction(effort)),
        )

    def _order_kpis(self, as_of: int, start: int, end: int) -> dict[str, Any]:
        previous = 2 * start - end  # the previous window is [previous, start)
        revenue, before, order_count, ordered_before, on_time, due = Decimal(0), Decimal(0), 0, 0, 0, 0
        lifetime, costed_amount, margin = self.forgotten_revenue, Decimal(0), Decimal(0)
        # Every non-cancelled order known, forgotten ones included: the latest and the earliest.
        instants = [t for _, t in self.placed_history] + [t for _, t in self.first_placed]
        for order in self.orders.values():
            if order.cancelled:
                continue
            placed, amount = order.placed_us, order.amount or Decimal(0)
            if placed is not None:
                lifetime += amount
                instants.append(placed)
                if start <= placed < end:
                    revenue += amount
                    order_count += 1
                    if order.cost is not None:
                        costed_amount += amount
                        margin += amount - order.cost
                elif previous <= placed < start:
                    before += amount
                    ordered_before += 1
            promised = order.promised_us
            if promised is not None and start <= promised <= as_of:
                due += 1
                on_time += order.delivered_us is not None and order.delivered_us <= promised
        return {
            "revenue": revenue,
            "order_count": order_count,
            "on_time_delivery_rate": _ratio(on_time, due),
            "days_since_last_order": _days(as_of - max(instants)) if instants else None,
            "gross_margin_rate": _ratio(margin, costed_amount),
            "revenue_growth": None if before == 0 else float(Fraction(revenue) / Fraction(before) - 1),
            "tenure_days": _days(as_of - min(instants)) if instants else None,
            "lifetime_revenue": lifetime.quantize(Decimal("0.01"), ROUND_HALF_UP),
            "retained": None if ordered_before == 0 else int(order_count > 0),
        }

    def _ticket_kpis(
        self, as_of: int, start: int, end: int, sla_us: tuple[int, int, int, int]
    ) -> dict[str, Any]:
        response_sum, responded, sla_met, sla_counted, rating_sum, rated = 0, 0, 0, 0, 0, 0
        effort = Decimal(0)
        for ticket in self.tickets.values():
            if ticket.resolved_us is not None and start <= ticket.resolved_us < end:
                if ticket.satisfaction is not None:
                    rating_sum += ticket.satisfaction
                    rated += 1
                effort += ticket.effort or 0
            if ticket.opened_us is None or not start <= ticket.opened_us < end:
                continue
            deadline = ticket.opened_us + sla_us[ticket.priority]
            answered = ticket.first_response_us
            if answered is not None:
                response_sum += answered - ticket.opened_us
                responded += 1
            if answered is not None or deadline <= as_of:
                sla_counted += 1
                sla_met += answered is not None and answered <= deadline
        return {
            "first_response_minutes": _ratio(response_sum, responded * MICROS_PER_MINUTE),
            "response_sla_rate": _ratio(sla_met, sla_counted),
            "csat": _ratio(rating_sum, rated),
            "effort": effort,
        }

    def _receivable_kpis(self, as_of: int, start: int, end: int) -> dict[str, Any]:
        billed, collected, overdue = Decimal(0), Decimal(0), Decimal(0)
        for invoice in self.invoices.values():
            due, amount = invoice.due_us, invoice.amount
            if due is None or amount is None or not (start <= due < end and due <= as_of):
                continue
            billed += amount
            collected += min(invoice.paid_by(due), amount)
            overdue += max(amount - invoice.paid_by(as_of), Decimal(0))
        return {"receivables_collection_rate": _ratio(collected, billed), "overdue_receivables": overdue}

    def open_tickets(self) -> list[tuple[int, Ticket]]:
        """Opened, unanswered and unresolved tickets (for open-ticket alert rules)."""
        return [
            (key, t)
            for key, t in self.tickets.items()
            if t.opened_us is not None and t.first_response_us is None and t.resolved_us is None
        ]

    # ------------------------------------------------------------ pruning

    def prune(self, as_of: int, window: Window) -> None:
        """Forget what can no longer matter as of ``as_of`` or any later T.

        Records stay one window past the window (``Window.is_retired``): an order
        cancelled on day 1 whose delivery arrives on day 3 must still be known as
        cancelled after day 1 has left the window. Event ids go at the window's
        edge: a re-sent event older than that is late anyway."""
        retired, first = window.is_retired, window.first_bucket(as_of)
        if first == self.pruned_for:
            return
        self.pruned_for = first
        forgotten = []
        for key, order in list(self.orders.items()):
            if retired(order.last_us, as_of):
                del self.orders[key]
                if order.placed_us is not None and not order.cancelled:
                    forgotten.append((key, order.placed_us))
                    self.forgotten_revenue += order.amount or 0
        if forgotten:
            self.placed_history = sorted(self.placed_history + forgotten, key=lambda item: -item[1])[
                :PLACED_HISTORY
            ]
            self.first_placed = sorted(self.first_placed + forgotten, key=lambda item: item[1])[
                :PLACED_HISTORY
            ]
        self.invoices = {k: i for k, i in self.invoices.items() if not retired(i.last_us, as_of)}
        for key, ticket in list(self.tickets.items()):
            if retired(ticket.last_us, as_of):
                del self.tickets[key]
        self.complaints = {k: t for k, t in self.complaints.items() if not retired(t, as_of)}
        self.seen = {k: b for k, b in self.seen.items() if b >= first}

    # ------------------------------------------------------------ stored form

    def to_bytes(self) -> bytes:
        return codec.encode(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> CustomerState:
        return codec.decode(raw, cls)


def _micros(instant: datetime | None) -> int | None:
    return None if instant is None else to_micros(instant)


def _ratio(numerator: int | Decimal, denominator: int | Decimal) -> float | None:
    return None if denominator == 0 else float(Fraction(numerator) / Fraction(denominator))


def _days(micros: int) -> Decimal:
    return (Decimal(micros) / MICROS_PER_DAY).quantize(Decimal("0.01"), ROUND_HALF_UP)
