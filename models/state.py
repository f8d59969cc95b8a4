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

import json
import struct
import zlib
from dataclasses import dataclass, field
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


@dataclass(frozen=True, slots=True)
class StoredSummary:
    """The head of a stored state: what adopting the customer needs, read without the rest."""

    customer_id: str
    as_of: int | None  # None: never evaluated
    policy_version: str | None
    tier: str | None
    segment: str | None
    due: int | None
    refresh: int | None
    has_outbox: bool

    @classmethod
    def of(cls, raw: bytes) -> StoredSummary:
        return _read_head(raw)[0]


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
        """A fixed head (StoredSummary), then the records as fixed-size rows, zlib-compressed.

        Ids are random 64-bit hashes and do not compress: they are most of the size."""
        status = self.status
        summary = [getattr(status, name) for name in _SUMMARY_FIELDS]
        head = _json([self.customer_id, *summary, bool(status.outbox)])
        orders, tickets = list(self.orders.items()), list(self.tickets.items())
        amounts = [None if o.amount is None else str(o.amount) for _, o in orders]
        meta = _json([self.profile, self.placed_history, amounts, [getattr(status, n) for n in _META_FIELDS]])
        rows = [
            _COUNTS.pack(len(meta), len(orders), len(tickets), len(self.complaints), len(self.seen)),
            meta,
        ]
        for key, o in orders:
            placed, delivered = _nullable(o.placed_us), _nullable(o.delivered_us)
            promised = (_nullable(o.promised_placed_us), _nullable(o.promised_delivered_us))
            rows.append(_ORDER.pack(key, placed, *promised, delivered, o.last_us, o.cancelled))
        for key, t in tickets:
            times = (_nullable(t.opened_us), _nullable(t.first_response_us), _nullable(t.resolved_us))
            rows.append(_TICKET.pack(key, *times, t.last_us, t.priority, t.satisfaction or 0))
        rows += [_PAIR.pack(key, occurred) for key, occurred in self.complaints.items()]
        rows += [_PAIR.pack(key, bucket) for key, bucket in self.seen.items()]
        body = zlib.compress(b"".join(rows), 1)
        return _HEAD.pack(_FORMAT, _nullable(status.due), _nullable(status.refresh), len(head)) + head + body

    @classmethod
    def from_bytes(cls, raw: bytes) -> CustomerState:
        summary, at = _read_head(raw)
        body = zlib.decompress(raw[at:])
        meta_length, n_orders, n_tickets, n_complaints, n_seen = _COUNTS.unpack_from(body)
        at = _COUNTS.size + meta_length
        profile, history, amounts, rest = json.loads(body[_COUNTS.size : at])
        status = TierStatus(
            **{name: getattr(summary, name) for name in (*_SUMMARY_FIELDS, "due", "refresh")},
            **dict(zip(_META_FIELDS, rest, strict=True)),
        )
        state = cls(summary.customer_id, profile, placed_history=[(h, t) for h, t in history], status=status)
        rows, at = _rows(body, at, _ORDER, n_orders)
        for (key, placed, promised_placed, promised_delivered, delivered, last, cancelled), amount in zip(
            rows, amounts, strict=True
        ):
            state.orders[key] = Order(
                _value(placed),
                None if amount is None else Decimal(amount),
                _value(promised_placed),
                _value(promised_delivered),
                _value(delivered),
                bool(cancelled),
                last,
            )
        rows, at = _rows(body, at, _TICKET, n_tickets)
        for key, opened, responded, resolved, last, priority, satisfaction in rows:
            state.tickets[key] = Ticket(
                _value(opened), priority, _value(responded), _value(resolved), satisfaction or None, last
            )
        rows, at = _rows(body, at, _PAIR, n_complaints)
        state.complaints = dict(rows)
        rows, at = _rows(body, at, _PAIR, n_seen)
        state.seen = dict(rows)
        return state


# The stored layout. Absent instants are stored as _NONE (no event time is that far back).
_FORMAT = 3
_NONE = -(2**63)
_HEAD = struct.Struct("<Bqqi")  # format, due, refresh, length of the JSON summary that follows
_COUNTS = struct.Struct("<iiiii")  # length of the JSON meta, then the number of each kind of row
_ORDER = struct.Struct(
    "<QqqqqqB"
)  # key, placed, promised (placed), promised (delivered), delivered, last, cancelled
_TICKET = struct.Struct(
    "<QqqqqBB"
)  # key, opened, first response, resolved, last, priority, satisfaction (0: none)
_PAIR = struct.Struct("<Qq")  # complaint key and occurred; remembered event id and its bucket
_SUMMARY_FIELDS = ("as_of", "policy_version", "tier", "segment")
_META_FIELDS = ("score", "change_score", "changes", "fired", "fingerprint", "first_seen", "outbox", "alerts")


def _read_head(raw: bytes) -> tuple[StoredSummary, int]:
    """The summary, and where the compressed records begin."""
    if not raw or raw[0] != _FORMAT:
        raise ValueError(
            f"stored customer state of an unknown format ({raw[:1]!r}): written by another TierPulse "
            "version; reset the scorer's state (README, 'Upgrading')"
        )
    _, due, refresh, length = _HEAD.unpack_from(raw)
    end = _HEAD.size + length
    customer_id, as_of, version, tier, segment, has_outbox = json.loads(raw[_HEAD.size : end])
    return StoredSummary(
        customer_id, as_of, version, tier, segment, _value(due), _value(refresh), has_outbox
    ), end


def _rows(body: bytes, at: int, layout: struct.Struct, count: int) -> tuple[Any, int]:
    end = at + layout.size * count
    return layout.iter_unpack(body[at:end]), end


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _nullable(micros: int | None) -> int:
    return _NONE if micros is None else micros


def _value(stored: int) -> int | None:
    return None if stored == _NONE else stored


def _micros(instant: datetime | None) -> int | None:
    return None if instant is None else to_micros(instant)


def _ratio(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else float(Fraction(numerator, denominator))
