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

from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from hashlib import blake2b
from typing import TYPE_CHECKING, Any, cast

from models import codec
from models.event_time import MICROS_PER_DAY, MICROS_PER_MINUTE, Window, to_micros
from models.events import ComplaintEvent, CustomerProfile, Event, InvoiceEvent, OrderEvent, TicketEvent
from models.kpi_index import EXACT, KpiIndex
from models.kpis import Kpis
from models.records import (
    BILLED,
    COLLECTED,
    COMPLAINTS,
    COSTED,
    EFFORT,
    MARGIN,
    ON_TIME,
    ORDERS,
    OVERDUE,
    PRIORITIES,
    PROMISED,
    RATED,
    RATINGS,
    RESPONDED,
    RESPONSE_US,
    REVENUE,
    SLA_COUNTED,
    SLA_MET,
    Invoice,
    Order,
    Ticket,
)

if TYPE_CHECKING:
    from models.policy import Policy, SegmentPolicy

__all__ = ["PRIORITIES", "CustomerState", "Invoice", "Order", "Outcome", "Ticket", "TierStatus"]
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
    alerts: dict[str, list[Any]] = field(default_factory=dict)  # key -> what it fired with (models/alerts.py)
    # Of the last evaluation, for adopting the customer after a restart without evaluating it
    # (StoredSummary): what it counted as, and when it is due next under that policy version.
    policy_version: str | None = None
    segment: str | None = None
    due: int | None = None
    refresh: int | None = None
    # Conditions that hold but wait for their rule's hold-down (``for``): key -> when they fire.
    pending: dict[str, int] = field(default_factory=dict)
    bands: list[int] = field(default_factory=list)  # of the last evaluation (models/kpi_bands.py)
    started: int | None = None  # a shadow status's: the watermark it started at (its ids' scope)

    def copy(self) -> TierStatus:
        """A copy to restore after a failed evaluation (copy.copy is several times slower)."""
        copied = TierStatus(*(getattr(self, name) for name in _STATUS_FIELDS))
        copied.outbox, copied.alerts, copied.pending = (
            list(self.outbox),
            dict(self.alerts),
            dict(self.pending),
        )
        return copied


_STATUS_FIELDS = tuple(f.name for f in fields(TierStatus))


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
    # The shadow policy's tier status (shadow mode, models/evaluation.py); None when it is off.
    shadow: TierStatus | None = None
    # Not stored: prune's outcome depends only on the window's first bucket (absorbed records are
    # never retired), so a second prune within the same bucket has nothing to do.
    pruned_for: int | None = field(default=None, repr=False, compare=False)
    # Not stored: the running totals of the records (models/kpi_index.py), built when first needed.
    index: KpiIndex | None = field(default=None, repr=False, compare=False)
    # Not stored: the segment its profile resolves to under a policy (Policy.segment_for).
    resolved: tuple[Policy, SegmentPolicy] | None = field(default=None, repr=False, compare=False)

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

    def segment(self, policy: Policy) -> SegmentPolicy:
        """The policy's segment for this customer's profile."""
        if self.resolved is None or self.resolved[0] is not policy:
            self.resolved = (policy, policy.segment_for(self.profile))
        return self.resolved[1]

    def set_profile(self, profile: CustomerProfile | None) -> None:
        self.resolved = None
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
        if self.index is not None:
            self.index.put_order(key, order)
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
        if self.index is not None:
            self.index.put_ticket(key, ticket)
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
        if self.index is not None:
            self.index.put_invoice(key, invoice)
        return True

    def _absorb_complaint(self, event: ComplaintEvent, occurred: int) -> bool:
        key = stable_hash(event.complaint_id)
        if key in self.complaints:
            return False
        self.complaints[key] = occurred
        if self.index is not None:
            self.index.put_complaint(key, occurred)
        return True

    # ------------------------------------------------------------ KPIs

    def kpis(self, as_of: int, window: Window, sla_us: tuple[int, int, int, int]) -> Kpis:
        """Every KPI of contract §3 as of ``as_of`` (T), read off the running totals."""
        index = self.indexed(as_of, window, sla_us)
        now, before = index.in_window, index.in_previous
        revenue, order_count, ordered_before = _canonical(now[REVENUE]), now[ORDERS], before[ORDERS]
        revenue_before, effort = cast(Decimal, before[REVENUE]), now[EFFORT]
        earliest, latest = self.placed_span()
        lifetime = self.forgotten_revenue + index.lifetime_kept
        return Kpis(
            revenue=revenue,
            order_count=int(order_count),
            on_time_delivery_rate=_ratio(now[ON_TIME], now[PROMISED]),
            first_response_minutes=_ratio(now[RESPONSE_US], now[RESPONDED] * MICROS_PER_MINUTE),
            response_sla_rate=_ratio(now[SLA_MET], now[SLA_COUNTED]),
            complaint_rate=100 * int(now[COMPLAINTS]) / max(int(order_count), 1),
            csat=_ratio(now[RATINGS], now[RATED]),
            days_since_last_order=None if latest is None else _days(as_of - latest),
            gross_margin_rate=_ratio(now[MARGIN], now[COSTED]),
            revenue_growth=None
            if revenue_before == 0
            else _ratio(EXACT.subtract(revenue, revenue_before), revenue_before),
            tenure_days=None if earliest is None else _days(as_of - earliest),
            receivables_collection_rate=_ratio(now[COLLECTED], now[BILLED]),
            overdue_receivables=_canonical(now[OVERDUE]),
            lifetime_revenue=lifetime.quantize(Decimal("0.01"), ROUND_HALF_UP),
            retained=None if ordered_before == 0 else int(order_count > 0),
            revenue_per_service_hour=None if effort == 0 else _ratio(EXACT.multiply(revenue, 60), effort),
        )

    def indexed(self, as_of: int, window: Window, sla_us: tuple[int, int, int, int]) -> KpiIndex:
        """The running totals brought to ``as_of``; built from the records when there are none
        yet, or none that fit (an earlier watermark, another window or SLA)."""
        index = self.index
        if (
            index is None
            or index.window != window
            or index.sla_us != sla_us
            or (index.reached is not None and as_of < index.reached)
        ):
            index = self.index = KpiIndex(window, sla_us)
            for key, order in self.orders.items():
                index.put_order(key, order)
            for key, ticket in self.tickets.items():
                index.put_ticket(key, ticket)
            for key, invoice in self.invoices.items():
                index.put_invoice(key, invoice)
            for key, occurred in self.complaints.items():
                index.put_complaint(key, occurred)
        index.reach(as_of)
        return index

    def placed_span(self) -> tuple[int | None, int | None]:
        """(earliest, latest) placed instant of every non-cancelled order known, forgotten ones
        included (for the KPIs "ever"); after ``indexed``."""
        assert self.index is not None
        kept = self.index.placed_span()
        forgotten = [t for _, t in self.placed_history] + [t for _, t in self.first_placed]
        instants = forgotten + (list(kept) if kept else [])
        return min(instants, default=None), max(instants, default=None)

    def open_tickets(self) -> list[tuple[int, Ticket]]:
        """Opened, unanswered and unresolved tickets (for open-ticket alert rules)."""
        if self.index is not None:
            unanswered: Any = self.index.unanswered.items()
        else:
            unanswered = ((key, t) for key, t in self.tickets.items() if t.unanswered)
        return [(key, t) for key, t in unanswered if t.resolved_us is None]

    # ------------------------------------------------------------ pruning

    def prune(self, as_of: int, window: Window) -> None:
        """Forget what can no longer matter as of ``as_of`` or any later T.

        Records stay one window past the window (``Window.is_retired``): an order
        cancelled on day 1 whose delivery arrives on day 3 must still be known as
        cancelled after day 1 has left the window. Event ids go at the window's
        edge: a re-sent event older than that is late anyway."""
        first = window.first_bucket(as_of)
        if first == self.pruned_for:
            return
        self.pruned_for = first
        # Window.is_retired, with its bound computed once: this loop visits every record.
        bucket_us, bound = window.bucket_us, first - window.buckets

        def retired(instant: int, _: int) -> bool:
            return instant // bucket_us < bound

        forgotten = []
        index = self.index
        for key, order in list(self.orders.items()):
            if retired(order.last_us, as_of):
                del self.orders[key]
                if index is not None:
                    index.drop_order(key)
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
        for key, invoice in list(self.invoices.items()):
            if retired(invoice.last_us, as_of):
                del self.invoices[key]
                if index is not None:
                    index.drop("invoice", key)
        for key, ticket in list(self.tickets.items()):
            if retired(ticket.last_us, as_of):
                del self.tickets[key]
                if index is not None:
                    index.drop_ticket(key)
        for key, occurred in list(self.complaints.items()):
            if retired(occurred, as_of):
                del self.complaints[key]
                if index is not None:
                    index.drop("complaint", key)
        if any(b < first for b in self.seen.values()):
            self.seen = {k: b for k, b in self.seen.items() if b >= first}

    # ------------------------------------------------------------ stored form

    def to_bytes(self) -> bytes:
        return codec.encode(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> CustomerState:
        return codec.decode(raw, cls)


def _micros(instant: datetime | None) -> int | None:
    return None if instant is None else to_micros(instant)


def _canonical(total: int | Decimal) -> Decimal:
    """A running total's text, the same whatever the order of additions and take-backs: 2.00
    and 2 are both 2 (so a snapshot reads the same on a live worker and a restored one)."""
    normal = Decimal(total).normalize(EXACT)
    return normal.quantize(Decimal(1)) if int(normal.as_tuple().exponent) > 0 else normal


def _ratio(numerator: int | Decimal, denominator: int | Decimal) -> float | None:
    """Correctly rounded (as a Fraction's float): int / int is, in CPython."""
    if denominator == 0:
        return None
    if type(numerator) is int and type(denominator) is int:
        return numerator / denominator
    top, bottom = numerator.as_integer_ratio(), denominator.as_integer_ratio()
    return (top[0] * bottom[1]) / (top[1] * bottom[0])


def _days(micros: int) -> Decimal:
    return (Decimal(micros) / MICROS_PER_DAY).quantize(Decimal("0.01"), ROUND_HALF_UP)
