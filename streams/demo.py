"""A realistic event stream for a few hundred customers, for the demo and the benchmarks.

Customers come in segments (key accounts, small accounts, standard, some
service-oriented or price-sensitive) and behaviours: steady, degrading (deliveries
slip in the last ten days), recovering (bad, then good), complaint floods and P1
tickets left unanswered. History is generated in event-time order from
``start`` to ``end``; ``messy`` adds re-sent duplicates, late arrivals and
malformed messages, as real producers do.

The money side: orders carry their cost (key accounts buy at thin negotiated
margins, degrading customers' margins erode), resolved tickets the service effort
(key accounts cost more), and every order that is not cancelled is invoiced, then
paid on time, late, in instalments, never, or in advance; neglected and degrading
customers pay late or partly more often.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from models.events import Topic

BEHAVIOURS = ("steady", "steady", "steady", "degrading", "recovering", "complaining", "neglected")
# The cost of an order as a share of its amount, by segment: key accounts negotiate thin margins.
COST_SHARE = {"key_account": (0.78, 0.88), "standard": (0.65, 0.75), "small_account": (0.55, 0.65)}
MARGIN_EROSION = 0.10  # how much of the amount a degrading customer's margin has lost by the end
# Service effort of a resolved ticket, in minutes: key accounts cost more service.
EFFORT_MINUTES = {"key_account": (60, 240)}
OTHER_EFFORT_MINUTES = (15, 90)
PAYMENT_OUTCOMES = ("on_time", "late", "partial", "never", "advance")
PROMPT_PAYER_WEIGHTS = (75, 10, 8, 5, 2)  # percent of invoices, in PAYMENT_OUTCOMES order
SLOW_PAYER_WEIGHTS = (50, 22, 18, 8, 2)  # neglected and degrading customers


REGIONS = ("华东", "华南", "华北", "west")
ACCOUNT_MANAGERS = ("王芳", "李伟", "Chen Jing", "Maria Schmidt", "Tom Okafor")


@dataclass(frozen=True, slots=True)
class Message:
    kind: Topic
    key: bytes | None
    value: bytes | None
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class DemoCustomer:
    customer_id: str
    segment: str
    customer_type: str | None
    behaviour: str
    orders_per_day: float

    def profile(self) -> dict[str, str]:
        # Owners for the rollups (contract v2 §5): fixed per customer, a few of each.
        number = sum(self.customer_id.encode())
        record = {
            "customer_id": self.customer_id,
            "segment": self.segment,
            "region": REGIONS[number % len(REGIONS)],
            "account_manager": ACCOUNT_MANAGERS[number % len(ACCOUNT_MANAGERS)],
        }
        return record | ({"customer_type": self.customer_type} if self.customer_type else {})


def customers(count: int, seed: int = 7) -> list[DemoCustomer]:
    rng = random.Random(seed)
    result = []
    for n in range(count):
        segment = "key_account" if n % 10 == 0 else "small_account" if n % 10 < 6 else "standard"
        customer_type = rng.choice([None, None, None, "service_oriented", "price_sensitive"])
        rate = {"key_account": 6.0, "small_account": 0.4, "standard": 1.2}[segment]
        name = f"客户-{n:04d}" if n % 3 == 0 else f"cust-{n:04d}"
        result.append(DemoCustomer(name, segment, customer_type, BEHAVIOURS[n % len(BEHAVIOURS)], rate))
    return result


def history(
    people: list[DemoCustomer], start: datetime, end: datetime, *, seed: int = 7, messy: bool = False
) -> Iterator[Message]:
    """Every message of every customer between start and end, in event-time order."""
    rng = random.Random(seed)
    # Costs, effort and invoices draw from a stream of their own, so that adding them left the
    # orders, tickets and complaints (and their ids) as the same seed gave them before.
    money_rng = random.Random(f"{seed}:money")
    pending: list[Message] = [
        Message(Topic.CUSTOMERS, c.customer_id.encode(), _json(c.profile()), start) for c in people
    ]
    span = (end - start).total_seconds()
    for c in people:
        day = 0.0
        while day * 86_400 < span:
            day += rng.expovariate(c.orders_per_day)
            at = start + timedelta(days=day)
            if at >= end:
                break
            pending += _activity(c, rng, money_rng, at, end, (at - start).total_seconds() / span)
        if c.behaviour == "neglected":  # a P1 opened 45 minutes before the end, never answered
            opened = end - timedelta(minutes=45)
            pending.append(
                _event(Topic.TICKETS, c, opened, rng, ticket_id=_id(rng, "tkt"), type="opened", priority="P1")
            )
    pending.sort(key=lambda m: m.occurred_at)
    yield from (_mess_up(pending, rng) if messy else pending)


def live_activity(
    c: DemoCustomer, at: datetime, horizon: datetime, rng: random.Random, money_rng: random.Random
) -> list[Message]:
    """One order of the customer at ``at`` and what follows from it up to ``horizon`` (delivery,
    invoice and payments, perhaps a ticket with its answers, a complaint): the live demo's unit,
    at the end of each customer's story (a degrading customer stays degraded)."""
    return _activity(c, rng, money_rng, at, horizon, 1.0)


def _activity(
    c: DemoCustomer, rng: random.Random, money_rng: random.Random, at: datetime, end: datetime, stage: float
) -> list[Message]:
    """An order at ``at`` and what follows from it before ``end``; ``stage``: how far through
    the customer's story (0 to 1)."""
    messages = _order_messages(c, rng, money_rng, at, end, stage)
    opened = at + timedelta(hours=rng.uniform(0, 24))
    if rng.random() < 0.35 and opened < end:
        messages += _ticket_messages(c, rng, money_rng, opened, end)
    flooding = c.behaviour == "complaining" and stage > 0.75
    if flooding or rng.random() < 0.03:
        severity = rng.choice(["high", "critical"]) if flooding else "low"
        messages.append(
            _event(
                Topic.COMPLAINTS,
                c,
                at,
                rng,
                complaint_id=_id(rng, "cmp"),
                severity=severity,
                category="quality" if flooding else "billing",
            )
        )
    return messages


def _order_messages(
    c: DemoCustomer, rng: random.Random, money_rng: random.Random, at: datetime, end: datetime, stage: float
) -> list[Message]:
    order_id = _id(rng, "ord")
    promised = at + timedelta(days=rng.choice([1, 2, 3]))
    bad = (c.behaviour == "degrading" and stage > 0.7) or (c.behaviour == "recovering" and stage < 0.5)
    on_time = rng.random() < (0.4 if bad else 0.97)
    amount = round(rng.uniform(2000, 40000) if c.segment == "key_account" else rng.uniform(50, 2000), 2)
    messages = [
        _event(
            Topic.ORDERS,
            c,
            at,
            rng,
            order_id=order_id,
            type="placed",
            amount=str(amount),
            promised_at=promised.isoformat(),
            **_cost(c, money_rng, amount, stage),
        )
    ]
    if rng.random() < 0.04 and at + timedelta(hours=2) < end:
        messages.append(
            _event(Topic.ORDERS, c, at + timedelta(hours=2), rng, order_id=order_id, type="cancelled")
        )
        return messages
    messages += _invoice_messages(c, money_rng, at, amount, end)
    delivered = (
        promised - timedelta(hours=rng.uniform(1, 20))
        if on_time
        else promised + timedelta(hours=rng.uniform(2, 48))
    )
    if delivered < end:
        messages.append(
            _event(
                Topic.ORDERS,
                c,
                delivered,
                rng,
                order_id=order_id,
                type="delivered",
                promised_at=promised.isoformat(),
            )
        )
    return messages


def _ticket_messages(
    c: DemoCustomer, rng: random.Random, money_rng: random.Random, opened: datetime, end: datetime
) -> list[Message]:
    ticket_id, priority = _id(rng, "tkt"), rng.choice(["P1", "P2", "P2", "P3", "P3", "P4"])
    slow = c.behaviour in ("degrading", "neglected") or c.customer_type == "price_sensitive"
    wait = timedelta(minutes=rng.uniform(20, 600) if slow else rng.uniform(2, 50))
    resolved = opened + wait + timedelta(hours=rng.uniform(1, 30))
    messages = [_event(Topic.TICKETS, c, opened, rng, ticket_id=ticket_id, type="opened", priority=priority)]
    if opened + wait < end:
        messages.append(
            _event(Topic.TICKETS, c, opened + wait, rng, ticket_id=ticket_id, type="first_response")
        )
    if resolved < end:
        rating = rng.choice([3, 4, 4, 5]) if slow else rng.choice([4, 5, 5, 5])
        resolution = {"ticket_id": ticket_id, "type": "resolved", "satisfaction": rating}
        messages.append(_event(Topic.TICKETS, c, resolved, rng, **resolution, **_effort(c, money_rng)))
    return messages


def _cost(c: DemoCustomer, money_rng: random.Random, amount: float, stage: float) -> dict[str, str]:
    """The cost field of a placed order (3% of producers leave it out); stage is 0..1 through the period."""
    if money_rng.random() < 0.03:
        return {}
    low, high = COST_SHARE.get(c.segment, COST_SHARE["standard"])
    erosion = MARGIN_EROSION * stage if c.behaviour == "degrading" else 0.0
    return {"cost": str(round(amount * (money_rng.uniform(low, high) + erosion), 2))}


def _effort(c: DemoCustomer, money_rng: random.Random) -> dict[str, int]:
    """The effort field of a resolved ticket (5% without)."""
    if money_rng.random() < 0.05:
        return {}
    return {"effort_minutes": money_rng.randint(*EFFORT_MINUTES.get(c.segment, OTHER_EFFORT_MINUTES))}


def _invoice_messages(
    c: DemoCustomer, money_rng: random.Random, placed: datetime, amount: float, end: datetime
) -> list[Message]:
    """The order's invoice, issued a few hours after it was placed, and the payments against it."""
    invoice_id = _id(money_rng, "inv")
    issued = placed + timedelta(hours=money_rng.uniform(2, 12))
    due = issued + timedelta(days=45 if c.segment == "key_account" else 30)
    slow = c.behaviour in ("neglected", "degrading")
    weights = SLOW_PAYER_WEIGHTS if slow else PROMPT_PAYER_WEIGHTS
    outcome = money_rng.choices(PAYMENT_OUTCOMES, weights)[0]
    fields = {"invoice_id": invoice_id, "type": "issued", "amount": str(amount), "due_at": due.isoformat()}
    messages = [_event(Topic.INVOICES, c, issued, money_rng, **fields)]
    for paid_at, cents in _payments(outcome, money_rng, placed, issued, due, round(amount * 100)):
        paid = {"invoice_id": invoice_id, "type": "paid", "amount": str(Decimal(cents) / 100)}
        messages.append(_event(Topic.INVOICES, c, paid_at, money_rng, **paid))
    return [m for m in messages if m.occurred_at < end]


def _payments(
    outcome: str, money_rng: random.Random, placed: datetime, issued: datetime, due: datetime, cents: int
) -> list[tuple[datetime, int]]:
    """When the invoice of ``cents`` is paid, and how much each time."""
    if outcome == "on_time":
        return [(issued + (due - issued) * money_rng.uniform(0.05, 0.95), cents)]
    if outcome == "late":
        return [(due + timedelta(days=money_rng.uniform(1, 25)), cents)]
    if outcome == "partial":
        return _instalments(money_rng, issued, due, cents)
    if outcome == "advance":  # paid with the order, before the invoice was issued
        return [(placed + (issued - placed) * money_rng.uniform(0, 0.9), cents)]
    return []  # never paid


def _instalments(
    money_rng: random.Random, issued: datetime, due: datetime, cents: int
) -> list[tuple[datetime, int]]:
    """Two or three payments adding up to the total (half the time) or less; the later ones often
    come after the due date."""
    covered = cents if money_rng.random() < 0.5 else round(cents * money_rng.uniform(0.3, 0.9))
    cuts = sorted(money_rng.sample(range(1, covered), money_rng.choice([1, 2])))
    parts = [b - a for a, b in zip([0, *cuts], [*cuts, covered], strict=True)]
    span = (due - issued) + timedelta(days=20)
    times = sorted(issued + span * money_rng.uniform(0.1, 1) for _ in parts)
    return list(zip(times, parts, strict=True))


def _mess_up(ordered: list[Message], rng: random.Random) -> Iterator[Message]:
    """Re-sends (2%), delayed arrivals (2%), malformed (1%), unkeyed (2%), a backlog 40 days late (0.5%)."""
    delayed: list[tuple[int, Message]] = []
    for index, message in enumerate(ordered):
        roll = rng.random()
        if roll < 0.02 and message.kind is not Topic.CUSTOMERS:
            delayed.append((index + rng.randint(50, 5000), message))
            continue
        yield message
        if roll < 0.04:
            yield message  # the producer re-sent it
        elif roll < 0.05:
            yield Message(
                message.kind, message.key, _malformed(rng, message.value or b"{}"), message.occurred_at
            )
        elif roll < 0.07 and message.kind is not Topic.CUSTOMERS:
            yield Message(message.kind, None, message.value, message.occurred_at)
        elif roll < 0.075 and message.kind is not Topic.CUSTOMERS:
            yield _forty_days_late(message)
        while delayed and delayed[0][0] <= index:
            yield delayed.pop(0)[1]
    yield from (m for _, m in delayed)


def _forty_days_late(message: Message) -> Message:
    """The same event as if a producer's backlog arrived 40 days late: older than the window."""
    body = json.loads(message.value or b"{}")
    at = message.occurred_at - timedelta(days=40)
    body |= {"event_id": body["event_id"] + "-backlog", "occurred_at": at.astimezone(UTC).isoformat()}
    return Message(message.kind, message.key, _json(body), at)


def _malformed(rng: random.Random, value: bytes) -> bytes:
    body = json.loads(value)
    choice = rng.randrange(5)
    if choice == 0:
        return value[: len(value) // 2]  # truncated: not JSON
    if choice == 1:
        body["occurred_at"] = "yesterday"
    elif choice == 2:
        body.pop("customer_id", None)
    elif choice == 3:
        body["amount"] = -5
    else:
        body["type"] = "teleported"
    return _json(body)


def _id(rng: random.Random, prefix: str) -> str:
    return f"{prefix}-{rng.getrandbits(64):016x}"  # from the seed only: the same seed, the same ids


def _event(kind: Topic, c: DemoCustomer, at: datetime, rng: random.Random, **fields: object) -> Message:
    body = {
        "event_id": _id(rng, "ev"),
        "customer_id": c.customer_id,
        "occurred_at": at.astimezone(UTC).isoformat(),
        **fields,
    }
    return Message(kind, c.customer_id.encode(), _json(body), at)


def _json(body: Mapping[str, object]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8")
