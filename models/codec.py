"""The stored form of a customer's state (models/state.py), and its version history.

A fixed head that adoption reads alone (``StoredSummary``: format, the next due instants, a
short JSON summary), then the records as fixed-size rows and a JSON part, zlib-compressed.
Ids are random 64-bit hashes and do not compress: they are most of the size.

Formats:

* 1 (0.1) — JSON. Not read: rebuild the state (README, "Upgrading").
* 2 (0.2) — rows, without where the history starts (the warm-up). Not read.
* 3 (0.3) — rows; the JSON part is [profile, latest placed orders, amounts, tier status].
  Read: the records that 0.4 added (costs, efforts, invoices, the earliest orders and the
  revenue of orders already forgotten) start empty.
* 4 (0.4) — the JSON part adds [amount, cost] per order, [effort, ticket_id] per ticket (the id
  names an alert's subject), the earliest placed orders, the revenue of forgotten orders and
  the invoices.
* 5 (0.6) — the head adds whether alerts are firing and the KPI bands (models/kpi_bands.py);
  the tier status the alerts waiting for their hold-down (``pending``); an alert's record what it
  fired with. Read: format 4's states (alerts fired before keep their first six fields).
* 6 (0.7) — format 5 with the shadow policy's tier status (shadow mode): its tier and version
  at the end of the head, the whole status at the end of the JSON part. Written only for a
  state that has one or has shadow tier changes to send, so that without shadow mode 0.6 still
  reads what 0.7 writes.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.state import CustomerState

FORMAT = 5  # 6 for a state with a shadow status
_READABLE = (3, 4, 5, 6)
_NONE = -(2**63)  # an absent instant (no event time is that far back)
_HEAD = struct.Struct("<Bqqi")  # format, due, refresh, length of the JSON summary that follows
_COUNTS = struct.Struct("<iiiii")  # length of the JSON part, then the number of each kind of row
# key, placed, promised (placed), promised (delivered), delivered, last, cancelled
_ORDER = struct.Struct("<QqqqqqB")
# key, opened, first response, resolved, last, priority, satisfaction (0: none)
_TICKET = struct.Struct("<QqqqqBB")
_PAIR = struct.Struct("<Qq")  # complaint key and occurred; remembered event id and its bucket
SUMMARY_FIELDS = ("as_of", "policy_version", "tier", "segment")
# (Formats 3 and 4 written before 0.6 end at "alerts": the rest start empty.)
META_FIELDS = (
    "score",
    "change_score",
    "changes",
    "fired",
    "fingerprint",
    "first_seen",
    "outbox",
    "alerts",
    "pending",
)
# A shadow tier status, whole (format 6).
SHADOW_FIELDS = (*SUMMARY_FIELDS, "due", "refresh", *META_FIELDS, "bands", "started")


class StoredStateError(ValueError):
    """A stored state this version cannot read: fatal, the worker stops (README, Upgrading)."""


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
    has_alerts: bool  # firing alerts (True when not known: written before 0.6)
    bands: tuple[int, ...]  # KPI bands of the last evaluation (none before 0.6)
    shadow_tier: str | None = None  # the shadow policy's (shadow mode; None: unrated or none)
    shadow_version: str | None = None  # the shadow policy's version; None: no shadow status

    @classmethod
    def of(cls, raw: bytes) -> StoredSummary:
        return _read_head(raw)[0]


def encode(state: CustomerState) -> bytes:
    status, shadow = state.status, state.shadow
    head = [
        state.customer_id,
        *(getattr(status, n) for n in SUMMARY_FIELDS),
        bool(status.outbox),
        bool(status.alerts),
        status.bands,
    ]
    if shadow is not None:
        head += [shadow.tier, shadow.policy_version]
    orders, tickets = list(state.orders.items()), list(state.tickets.items())
    meta = _json(
        [
            state.profile,
            state.placed_history,
            [[_text(o.amount), _text(o.cost)] for _, o in orders],
            [getattr(status, n) for n in META_FIELDS],
            [[_text(t.effort), t.ticket_id] for _, t in tickets],
            state.first_placed,
            str(state.forgotten_revenue),
            [
                [
                    key,
                    _text(i.amount),
                    i.issued_us,
                    i.due_us,
                    i.last_us,
                    [[k, t, str(a)] for k, (t, a) in i.payments.items()],
                ]
                for key, i in state.invoices.items()
            ],
            *([] if shadow is None else [[getattr(shadow, n) for n in SHADOW_FIELDS]]),
        ]
    )
    rows = [_COUNTS.pack(len(meta), len(orders), len(tickets), len(state.complaints), len(state.seen)), meta]
    for key, o in orders:
        promised = (_nullable(o.promised_placed_us), _nullable(o.promised_delivered_us))
        rows.append(
            _ORDER.pack(
                key, _nullable(o.placed_us), *promised, _nullable(o.delivered_us), o.last_us, o.cancelled
            )
        )
    for key, t in tickets:
        times = (_nullable(t.opened_us), _nullable(t.first_response_us), _nullable(t.resolved_us))
        rows.append(_TICKET.pack(key, *times, t.last_us, t.priority, t.satisfaction or 0))
    rows += [_PAIR.pack(key, occurred) for key, occurred in state.complaints.items()]
    rows += [_PAIR.pack(key, bucket) for key, bucket in state.seen.items()]
    body = zlib.compress(b"".join(rows), 1)
    encoded_head = _json(head)
    # Shadow tier changes still to send make it format 6 too: a 0.6 worker has no topic for them.
    shadowed = shadow is not None or any(kind == "tier_changes_shadow" for kind, _ in status.outbox)
    fmt = 6 if shadowed else FORMAT
    return (
        _HEAD.pack(fmt, _nullable(status.due), _nullable(status.refresh), len(encoded_head))
        + encoded_head
        + body
    )


def decode(raw: bytes, state_type: type[CustomerState]) -> CustomerState:
    from models.records import Invoice, Order, Ticket
    from models.state import TierStatus

    summary, at = _read_head(raw)
    body = zlib.decompress(raw[at:])
    meta_length, n_orders, n_tickets, n_complaints, n_seen = _COUNTS.unpack_from(body)
    at = _COUNTS.size + meta_length
    meta = json.loads(body[_COUNTS.size : at])
    if raw[0] == 3:
        profile, history, amounts, rest = meta
        decimals, ticket_meta, first_placed, forgotten, invoices = (
            [[a, None] for a in amounts],
            None,
            [],
            "0",
            [],
        )
    else:
        profile, history, decimals, rest, ticket_meta, first_placed, forgotten, invoices, *shadow = meta
    status = TierStatus(
        **{name: getattr(summary, name) for name in (*SUMMARY_FIELDS, "due", "refresh")},
        bands=list(summary.bands),
        **dict(zip(META_FIELDS, rest, strict=False)),
    )
    state = state_type(
        summary.customer_id, profile, placed_history=[(h, t) for h, t in history], status=status
    )
    if raw[0] == 6 and shadow:
        state.shadow = TierStatus(**dict(zip(SHADOW_FIELDS, shadow[0], strict=True)))
    state.first_placed, state.forgotten_revenue = [(h, t) for h, t in first_placed], Decimal(forgotten)
    rows, at = _rows(body, at, _ORDER, n_orders)
    for (key, placed, promised_placed, promised_delivered, delivered, last, cancelled), (amount, cost) in zip(
        rows, decimals, strict=True
    ):
        state.orders[key] = Order(
            _value(placed),
            _decimal(amount),
            _value(promised_placed),
            _value(promised_delivered),
            _value(delivered),
            bool(cancelled),
            last,
            _decimal(cost),
        )
    rows, at = _rows(body, at, _TICKET, n_tickets)
    for index, (key, opened, responded, resolved, last, priority, satisfaction) in enumerate(rows):
        effort, ticket_id = (None, None) if ticket_meta is None else ticket_meta[index]
        state.tickets[key] = Ticket(
            _value(opened),
            priority,
            _value(responded),
            _value(resolved),
            satisfaction or None,
            last,
            _decimal(effort),
            ticket_id,
        )
    rows, at = _rows(body, at, _PAIR, n_complaints)
    state.complaints = dict(rows)
    rows, at = _rows(body, at, _PAIR, n_seen)
    state.seen = dict(rows)
    for key, amount, issued, due, last, payments in invoices:
        paid = {k: (t, Decimal(a)) for k, t, a in payments}
        state.invoices[key] = Invoice(issued, _decimal(amount), due, paid, last)
    return state


def _read_head(raw: bytes) -> tuple[StoredSummary, int]:
    """The summary, and where the compressed records begin."""
    if not raw or raw[0] not in _READABLE:
        raise StoredStateError(
            f"stored customer state of an unknown format ({raw[:1]!r}): written by another TierPulse "
            "version; reset the scorer's state (README, 'Upgrading')"
        )
    _, due, refresh, length = _HEAD.unpack_from(raw)
    end = _HEAD.size + length
    customer_id, as_of, version, tier, segment, has_outbox, *since_0_6 = json.loads(raw[_HEAD.size : end])
    has_alerts, bands = (since_0_6[0], tuple(since_0_6[1])) if since_0_6 else (True, ())
    shadow_tier, shadow_version = since_0_6[2:4] if len(since_0_6) > 2 else (None, None)
    summary = StoredSummary(
        customer_id,
        as_of,
        version,
        tier,
        segment,
        _value(due),
        _value(refresh),
        has_outbox,
        has_alerts,
        bands,
        shadow_tier,
        shadow_version,
    )
    return summary, end


def _rows(body: bytes, at: int, layout: struct.Struct, count: int) -> tuple[Any, int]:
    end = at + layout.size * count
    return layout.iter_unpack(body[at:end]), end


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _nullable(micros: int | None) -> int:
    return _NONE if micros is None else micros


def _value(stored: int) -> int | None:
    return None if stored == _NONE else stored


def _text(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount)


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)
