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

import base64
import json
import struct
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from fractions import Fraction
from hashlib import blake2b
from typing import Any

from models.event_time import MICROS_PER_DAY, MICROS_PER_MINUTE, Window, to_micros
from models.events import ComplaintEvent, CustomerProfile, Event, OrderEvent, TicketEvent
from models.kpis import Kpis

PRIORITIES = ("P1", "P2", "P3", "P4")
# Cancelled-order look-ups reach past the window only for days_since_last_order:
# keep this many of the latest pruned, non-cancelled orders.
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
    # Outputs decided but not yet known to be delivered: [output kind, JSON body]. Stored with the
    # state so that a crash can only re-send what the stored state decided (same ids), never lose it.
    outbox: list[list[Any]] = field(default_factory=list)
    alerts: dict[str, list[Any]] = field(default_factory=dict)  # key -> [id, rule, severity, threshold, kpi]


@dataclass(slots=True)
class CustomerState:
    customer_id: str
    profile: dict[str, str] | None = None
    orders: dict[int, Order] = field(default_factory=dict)
    tickets: dict[int, Ticket] = field(default_factory=dict)
    complaints: dict[int, int] = field(default_factory=dict)  # complaint hash -> occurred_us
    seen: dict[int, int] = field(default_factory=dict)  # event_id hash -> bucket
    placed_history: list[tuple[int, int]] = field(default_factory=list)  # (order hash, placed_us)
    status: TierStatus = field(default_factory=TierStatus)
    # Not stored: prune's outcome depends only on the window's first bucket (absorbed records are
    # never retired), so a second prune within the same bucket has nothing to do.
    pruned_for: int | None = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------ absorbing

    def absorb(self, event: Event, window: Window, watermark: int | None) -> Outcome:
        """Merge one valid event. ``watermark`` is T before this event (None: none yet)."""
        occurred = event.occurred_us
        if watermark is not None and window.is_late(occurred, watermark):
            return Outcome.LATE
        event_key = stable_hash(event.event_id)
        if event_key in self.seen:
            return Outcome.DUPLICATE
        if isinstance(event, OrderEvent):
            changed = self._absorb_order(event, occurred)
        elif isinstance(event, TicketEvent):
            changed = self._absorb_ticket(event, occurred)
        else:
            changed = self._absorb_complaint(event, occurred)
        if not changed:
            return Outcome.DUPLICATE
        self.seen[event_key] = window.bucket_of(occurred)
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
            order.placed_us, order.amount = occurred, event.amount
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
        ticket.last_us = max(ticket.last_us, occurred)
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
        revenue, order_count, on_time, due = Decimal(0), 0, 0, 0
        latest_placed = max((t for _, t in self.placed_history), default=None)
        for order in self.orders.values():
            if order.cancelled:
                continue
            if order.placed_us is not None:
                latest_placed = (
                    order.placed_us if latest_placed is None else max(latest_placed, order.placed_us)
                )
                if start <= order.placed_us < end:
                    revenue += order.amount or 0
                    order_count += 1
            promised = order.promised_us
            if promised is not None and start <= promised <= as_of:
                due += 1
                on_time += order.delivered_us is not None and order.delivered_us <= promised
        response_sum, responded, sla_met, sla_counted, rating_sum, rated = 0, 0, 0, 0, 0, 0
        for ticket in self.tickets.values():
            if (
                ticket.resolved_us is not None
                and ticket.satisfaction is not None
                and start <= ticket.resolved_us < end
            ):
                rating_sum += ticket.satisfaction
                rated += 1
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
        complaints = sum(1 for occurred in self.complaints.values() if start <= occurred < end)
        return Kpis(
            revenue=revenue,
            order_count=order_count,
            on_time_delivery_rate=_ratio(on_time, due),
            first_response_minutes=_ratio(response_sum, responded * MICROS_PER_MINUTE),
            response_sla_rate=_ratio(sla_met, sla_counted),
            complaint_rate=float(Fraction(100 * complaints, max(order_count, 1))),
            csat=_ratio(rating_sum, rated),
            days_since_last_order=None
            if latest_placed is None
            else (Decimal(as_of - latest_placed) / MICROS_PER_DAY).quantize(Decimal("0.01"), ROUND_HALF_UP),
        )

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
        for key, order in list(self.orders.items()):
            if retired(order.last_us, as_of):
                del self.orders[key]
                if order.placed_us is not None and not order.cancelled:
                    self.placed_history.append((key, order.placed_us))
        self.placed_history = sorted(self.placed_history, key=lambda item: -item[1])[:PLACED_HISTORY]
        for key, ticket in list(self.tickets.items()):
            if retired(ticket.last_us, as_of):
                del self.tickets[key]
        self.complaints = {k: t for k, t in self.complaints.items() if not retired(t, as_of)}
        self.seen = {k: b for k, b in self.seen.items() if b >= first}

    # ------------------------------------------------------------ serialisation

    def to_bytes(self) -> bytes:
        """Compact JSON: records as arrays, remembered ids packed per bucket."""
        by_bucket: dict[int, list[int]] = {}
        for key, bucket in self.seen.items():
            by_bucket.setdefault(bucket, []).append(key)
        status = self.status
        body = {
            "id": self.customer_id,
            "p": self.profile,
            "o": [
                [
                    k,
                    o.placed_us,
                    None if o.amount is None else str(o.amount),
                    o.promised_placed_us,
                    o.promised_delivered_us,
                    o.delivered_us,
                    int(o.cancelled),
                    o.last_us,
                ]
                for k, o in self.orders.items()
            ],
            "t": [
                [k, t.opened_us, t.priority, t.first_response_us, t.resolved_us, t.satisfaction, t.last_us]
                for k, t in self.tickets.items()
            ],
            "c": [[k, t] for k, t in self.complaints.items()],
            "s": {str(b): _pack(keys) for b, keys in by_bucket.items()},
            "h": self.placed_history,
            "st": [getattr(status, f.name) for f in fields(TierStatus)],
        }
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_bytes(cls, raw: bytes) -> CustomerState:
        body = json.loads(raw)
        status = TierStatus(*body["st"])
        return cls(
            customer_id=body["id"],
            profile=body["p"],
            orders={
                k: Order(p, None if a is None else Decimal(a), pp, pd, d, bool(c), last)
                for k, p, a, pp, pd, d, c, last in body["o"]
            },
            tickets={k: Ticket(o, pr, fr, r, s, last) for k, o, pr, fr, r, s, last in body["t"]},
            complaints=dict(body["c"]),
            seen={key: int(b) for b, packed in body["s"].items() for key in _unpack(packed)},
            placed_history=[(h, t) for h, t in body["h"]],
            status=status,
        )


def _micros(instant: datetime | None) -> int | None:
    return None if instant is None else to_micros(instant)


def _ratio(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else float(Fraction(numerator, denominator))


def _pack(keys: list[int]) -> str:
    return base64.b64encode(struct.pack(f"<{len(keys)}Q", *sorted(keys))).decode("ascii")


def _unpack(packed: str) -> tuple[int, ...]:
    raw = base64.b64decode(packed)
    return struct.unpack(f"<{len(raw) // 8}Q", raw)
