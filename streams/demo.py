"""A realistic event stream for a few hundred customers, for the demo and the benchmarks.

Customers come in segments (key accounts, small accounts, standard, some
service-oriented or price-sensitive) and behaviours: steady, degrading (deliveries
slip in the last ten days), recovering (bad, then good), complaint floods and P1
tickets left unanswered. History is generated in event-time order from
``start`` to ``end``; ``messy`` adds re-sent duplicates, late arrivals and
malformed messages, as real producers do.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from models.events import Topic

BEHAVIOURS = ("steady", "steady", "steady", "degrading", "recovering", "complaining", "neglected")


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
        record = {"customer_id": self.customer_id, "segment": self.segment, "region": "华东"}
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
            pending += _order_messages(c, rng, at, end, stage=(at - start).total_seconds() / span)
            opened = at + timedelta(hours=rng.uniform(0, 24))
            if rng.random() < 0.35 and opened < end:
                pending += _ticket_messages(c, rng, opened, end)
            flooding = c.behaviour == "complaining" and (at - start).total_seconds() / span > 0.75
            if flooding or rng.random() < 0.03:
                severity = rng.choice(["high", "critical"]) if flooding else "low"
                pending.append(
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
        if c.behaviour == "neglected":  # a P1 opened 45 minutes before the end, never answered
            opened = end - timedelta(minutes=45)
            pending.append(
                _event(Topic.TICKETS, c, opened, rng, ticket_id=_id(rng, "tkt"), type="opened", priority="P1")
            )
    pending.sort(key=lambda m: m.occurred_at)
    yield from (_mess_up(pending, rng) if messy else pending)


def _order_messages(
    c: DemoCustomer, rng: random.Random, at: datetime, end: datetime, stage: float
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
        )
    ]
    if rng.random() < 0.04 and at + timedelta(hours=2) < end:
        messages.append(
            _event(Topic.ORDERS, c, at + timedelta(hours=2), rng, order_id=order_id, type="cancelled")
        )
        return messages
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


def _ticket_messages(c: DemoCustomer, rng: random.Random, opened: datetime, end: datetime) -> list[Message]:
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
        messages.append(
            _event(Topic.TICKETS, c, resolved, rng, ticket_id=ticket_id, type="resolved", satisfaction=rating)
        )
    return messages


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
