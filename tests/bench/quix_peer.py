"""The peer benchmark's Quix Streams application: TierPulse's per-event work as a Quix user writes it.

Started by tests/bench/peer.py as a subprocess, with an interpreter that has ``quixstreams``:

    python tests/bench/quix_peer.py CONFIG.json

CONFIG (written by peer.py) names the broker, the consumer group, the topics, the state
directory, the progress file, how many input messages to expect, and the default policy's
numbers for the eight KPIs of contract v1 (weights, good/bad, tier minimums, hysteresis, SLAs).
This file imports nothing from the project, so the peer's interpreter need not have it.

Per message, in Quix's idioms:

* every input topic is read with the JSON deserializer; a message that is not JSON reaches
  ``on_consumer_error``, which counts and skips it;
* orders, tickets and complaints are validated and normalised (``apply``; an invalid event raises
  ``InvalidEventError``, which ``on_processing_error`` counts and skips), concatenated, and re-keyed
  by ``customer_id`` with ``group_by`` — a repartition topic, which every event crosses, since
  Quix cannot re-key only the unkeyed and wrongly keyed ones;
* ``apply(..., stateful=True)``: one JSON document per customer in the RocksDB state store
  (backed by a changelog topic): the event ids seen in the window, the orders and tickets whose
  events are joined, and per-day buckets of aggregates. It drops duplicates and late events,
  updates the buckets, recomputes the eight KPIs over the 30 buckets, then score and tier;
* ``filter`` keeps the tier changes and ``to_topic`` sends them, keyed by customer.

Invoices and customer profiles are read (decoded) and ignored: the eight KPIs do not use them
and the peer scores everyone by the default segment.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import quixstreams
from quixstreams import Application, State

DAY_SECONDS = 86_400
ORDER_TYPES = {"placed", "delivered", "cancelled"}
TICKET_TYPES = {"opened", "first_response", "resolved"}
PRIORITIES = {"P1", "P2", "P3", "P4"}
SEVERITIES = {"low", "medium", "high", "critical"}


# The state document keeps its records as lists by position (compact JSON, loaded and dumped on
# every event): a day bucket's aggregates, an order, a ticket.
class Bucket:
    REVENUE, ORDERS = 0, 1  # by placed: not cancelled
    DELIVERED, ON_TIME = 2, 3  # by promised_at: delivered, not cancelled
    COMPLAINTS = 4
    ANSWERED, RESPONSE_MINUTES, IN_SLA = 5, 6, 7  # by opened: tickets with a first response
    RATED, RATING_SUM = 8, 9  # by resolved: tickets with a satisfaction
    SIZE = 10


class Order:
    PLACED, AMOUNT, PROMISED, DELIVERED, CANCELLED = range(5)
    INSTANTS = (PLACED, PROMISED, DELIVERED)


class Ticket:
    OPENED, PRIORITY, FIRST_RESPONSE, RESOLVED, SATISFACTION = range(5)
    INSTANTS = (OPENED, FIRST_RESPONSE, RESOLVED)


class InvalidEventError(ValueError):
    """An event that TierPulse would dead-letter: counted and skipped by on_processing_error."""


class Counts:
    """What the app did, written to the progress file for peer.py (one process, one thread)."""

    def __init__(self, expected_inputs: int, progress: Path, input_topics: set[str]) -> None:
        self.expected_inputs = expected_inputs
        self.progress = progress
        self.input_topics = input_topics
        self.inputs = 0  # input messages handled: processed or skipped as not JSON
        self.forwarded = 0  # valid events sent to the repartition topic
        self.rekeyed = 0  # messages of the repartition topic processed
        self.outcomes = dict.fromkeys(("accepted", "duplicate", "late", "invalid", "bad_json"), 0)
        self.tier_changes = 0
        self.first_at: float | None = None
        self.done_at: float | None = None
        self.written_at = 0.0

    def handled(self, topic: str) -> None:
        self.first_at = self.first_at or time.time()
        if topic in self.input_topics:
            self.inputs += 1
        else:
            self.rekeyed += 1
        finished = self.inputs >= self.expected_inputs and self.rekeyed >= self.forwarded
        if finished and self.done_at is None:
            self.done_at = time.time()
            self.write()
        elif time.monotonic() - self.written_at > 0.25:
            self.write()

    def write(self) -> None:
        self.written_at = time.monotonic()
        body = {
            "quixstreams": quixstreams.__version__,
            "inputs": self.inputs,
            "forwarded": self.forwarded,
            "rekeyed": self.rekeyed,
            "outcomes": self.outcomes,
            "tier_changes": self.tier_changes,
            "first_at": self.first_at,
            "done_at": self.done_at,
        }
        scratch = self.progress.with_suffix(".tmp")
        scratch.write_text(json.dumps(body))
        os.replace(scratch, self.progress)  # peer.py never reads half a file


# ------------------------------------------------------------------ validation (before the re-key)


def instant(value: Any) -> int:
    """An RFC 3339 timestamp with an offset, as whole seconds since the epoch."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise InvalidEventError(f"timestamp without an offset: {value!r}")
    return int(parsed.timestamp())


def amount(value: Any) -> float:
    number = float(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else -1.0
    if not 0 <= number < float("inf"):
        raise InvalidEventError(f"amount must be a number >= 0, got {value!r}")
    return number


def common(body: Any, kind: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidEventError("not a JSON object")
    event_id, customer_id = body.get("event_id"), body.get("customer_id")
    if not (isinstance(event_id, str) and 0 < len(event_id) <= 128):
        raise InvalidEventError("event_id missing or not a string of 1-128 characters")
    if not (isinstance(customer_id, str) and 0 < len(customer_id) <= 128):
        raise InvalidEventError("customer_id missing or not a string of 1-128 characters")
    return {
        "kind": kind,
        "event_id": event_id,
        "customer_id": customer_id,
        "at": instant(body["occurred_at"]),
    }


def order_event(body: Any) -> dict[str, Any]:
    try:
        event = common(body, "order") | {"order_id": str(body["order_id"]), "type": body["type"]}
        if event["type"] not in ORDER_TYPES:
            raise InvalidEventError(f"unknown order type {event['type']!r}")
        if event["type"] == "placed":
            event["amount"] = amount(body["amount"])
        if event["type"] in ("placed", "delivered"):
            event["promised"] = instant(body["promised_at"])
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidEventError(f"order: {error!r}") from None
    return event


def ticket_event(body: Any) -> dict[str, Any]:
    try:
        event = common(body, "ticket") | {"ticket_id": str(body["ticket_id"]), "type": body["type"]}
        if event["type"] not in TICKET_TYPES:
            raise InvalidEventError(f"unknown ticket type {event['type']!r}")
        if event["type"] == "opened":
            if body["priority"] not in PRIORITIES:
                raise InvalidEventError(f"unknown priority {body['priority']!r}")
            event["priority"] = body["priority"]
        rating = body.get("satisfaction")
        if rating is not None:
            if event["type"] != "resolved" or rating not in (1, 2, 3, 4, 5) or isinstance(rating, bool):
                raise InvalidEventError(f"satisfaction must be 1-5 on resolved, got {rating!r}")
            event["satisfaction"] = rating
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidEventError(f"ticket: {error!r}") from None
    return event


def complaint_event(body: Any) -> dict[str, Any]:
    try:
        event = common(body, "complaint") | {"complaint_id": str(body["complaint_id"])}
        if body["severity"] not in SEVERITIES or not isinstance(body["category"], str):
            raise InvalidEventError("severity or category invalid")
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidEventError(f"complaint: {error!r}") from None
    return event


# ------------------------------------------------------------------ the customer's state


class Scorer:
    """Absorbs one customer's event into its state document and decides its tier (stateful apply)."""

    def __init__(self, policy: dict[str, Any], counts: Counts) -> None:
        self.weights: dict[str, float] = policy["weights"]
        self.thresholds: dict[str, tuple[float, float]] = policy["thresholds"]  # kpi -> (good, bad)
        self.tier_minimums: list[tuple[str, float]] = policy["tier_minimums"]  # best first
        self.hysteresis: float = policy["hysteresis"]
        self.sla_seconds = {p: minutes * 60 for p, minutes in policy["sla_minutes"].items()}
        self.buckets: int = policy["window_buckets"]
        self.counts = counts

    def __call__(self, event: dict[str, Any], state: State) -> dict[str, Any] | None:
        doc = state.get("customer") or {
            "as_of": None,
            "tier": None,
            "score": None,
            "last_order": None,
            "pruned": -(2**62),
            "seen": {},
            "orders": {},
            "tickets": {},
            "buckets": {},
        }
        at = event["at"]
        first = self.first_bucket(doc["as_of"] if doc["as_of"] is not None else at)
        if at // DAY_SECONDS < first:
            self.counts.outcomes["late"] += 1
            return None
        keys = [event["event_id"]]
        if event["kind"] == "complaint":
            keys.append("complaint:" + event["complaint_id"])  # a re-sent complaint_id is a duplicate
        if any(key in doc["seen"] for key in keys) or self.placed_again(doc, event):
            self.counts.outcomes["duplicate"] += 1
            return None
        self.counts.outcomes["accepted"] += 1
        doc["as_of"] = max(doc["as_of"] or at, at)
        first = self.first_bucket(doc["as_of"])
        for key in keys:
            doc["seen"][key] = at // DAY_SECONDS
        if event["kind"] == "order":
            self.absorb_order(doc, event, first)
        elif event["kind"] == "ticket":
            self.absorb_ticket(doc, event, first)
        else:
            self.add(doc, first, at, Bucket.COMPLAINTS, 1)
        self.prune(doc, first)
        change = self.decide(doc, event["customer_id"], self.kpis(doc, first))
        state.set("customer", doc)
        return change

    def first_bucket(self, as_of: int) -> int:
        return as_of // DAY_SECONDS - self.buckets + 1

    @staticmethod
    def add(doc: dict[str, Any], first: int, when: int | None, field: int, value: float) -> None:
        """Add to the aggregate of the bucket of ``when``; buckets before the window are gone."""
        if when is None or when // DAY_SECONDS < first:
            return
        bucket = doc["buckets"].setdefault(str(when // DAY_SECONDS), [0] * Bucket.SIZE)
        bucket[field] += value

    @staticmethod
    def placed_again(doc: dict[str, Any], event: dict[str, Any]) -> bool:
        order = doc["orders"].get(event.get("order_id"))
        return event["kind"] == "order" and event["type"] == "placed" and bool(order and order[Order.PLACED])

    # An order or ticket's contribution to the buckets is taken out before an event changes it and
    # put back after: its events arrive in any order, and each may move it between buckets.

    def order_share(self, doc: dict[str, Any], order: list[Any], first: int, sign: int) -> None:
        placed, promised, delivered = order[Order.PLACED], order[Order.PROMISED], order[Order.DELIVERED]
        if order[Order.CANCELLED]:
            return
        if placed is not None:
            self.add(doc, first, placed, Bucket.REVENUE, sign * order[Order.AMOUNT])
            self.add(doc, first, placed, Bucket.ORDERS, sign)
        if delivered is not None and promised is not None:
            self.add(doc, first, promised, Bucket.DELIVERED, sign)
            self.add(doc, first, promised, Bucket.ON_TIME, sign * (delivered <= promised))

    def absorb_order(self, doc: dict[str, Any], event: dict[str, Any], first: int) -> None:
        order = doc["orders"].setdefault(event["order_id"], [None, 0.0, None, None, False])
        self.order_share(doc, order, first, -1)
        at = event["at"]
        if event["type"] == "placed":
            order[Order.PLACED], order[Order.AMOUNT] = at, event["amount"]
            order[Order.PROMISED] = event["promised"]
        elif event["type"] == "delivered":
            order[Order.DELIVERED] = min(order[Order.DELIVERED] or at, at)
            order[Order.PROMISED] = order[Order.PROMISED] or event["promised"]
        else:
            order[Order.CANCELLED] = True
        self.order_share(doc, order, first, +1)
        if event["type"] == "placed" and not order[Order.CANCELLED]:
            doc["last_order"] = max(doc["last_order"] or at, at)
        elif event["type"] == "cancelled" and order[Order.PLACED] == doc["last_order"]:
            placed = (
                o[Order.PLACED] for o in doc["orders"].values() if o[Order.PLACED] and not o[Order.CANCELLED]
            )
            doc["last_order"] = max(placed, default=None)

    def ticket_share(self, doc: dict[str, Any], ticket: list[Any], first: int, sign: int) -> None:
        opened, answered = ticket[Ticket.OPENED], ticket[Ticket.FIRST_RESPONSE]
        if opened is not None and answered is not None:
            in_sla = answered <= opened + self.sla_seconds[ticket[Ticket.PRIORITY]]
            self.add(doc, first, opened, Bucket.ANSWERED, sign)
            self.add(doc, first, opened, Bucket.RESPONSE_MINUTES, sign * (answered - opened) / 60)
            self.add(doc, first, opened, Bucket.IN_SLA, sign * in_sla)
        if ticket[Ticket.SATISFACTION] is not None:
            self.add(doc, first, ticket[Ticket.RESOLVED], Bucket.RATED, sign)
            self.add(
                doc, first, ticket[Ticket.RESOLVED], Bucket.RATING_SUM, sign * ticket[Ticket.SATISFACTION]
            )

    def absorb_ticket(self, doc: dict[str, Any], event: dict[str, Any], first: int) -> None:
        ticket = doc["tickets"].setdefault(event["ticket_id"], [None, "P4", None, None, None])
        self.ticket_share(doc, ticket, first, -1)
        at = event["at"]
        if event["type"] == "opened":
            ticket[Ticket.OPENED], ticket[Ticket.PRIORITY] = at, event["priority"]
        elif event["type"] == "first_response":
            ticket[Ticket.FIRST_RESPONSE] = min(ticket[Ticket.FIRST_RESPONSE] or at, at)
        elif ticket[Ticket.RESOLVED] is None:
            ticket[Ticket.RESOLVED], ticket[Ticket.SATISFACTION] = at, event.get("satisfaction")
        self.ticket_share(doc, ticket, first, +1)

    def prune(self, doc: dict[str, Any], first: int) -> None:
        """Bounded by the window: buckets and ids leave with it, orders and tickets one window later
        (their events may still arrive). Only when the window moved: a new day for the customer."""
        if first <= doc["pruned"]:
            return
        doc["pruned"] = first
        horizon = (first - self.buckets) * DAY_SECONDS
        doc["buckets"] = {b: v for b, v in doc["buckets"].items() if int(b) >= first}
        doc["seen"] = {key: b for key, b in doc["seen"].items() if b >= first}
        for records, instants in ((doc["orders"], Order.INSTANTS), (doc["tickets"], Ticket.INSTANTS)):
            for key in [k for k, r in records.items() if max(r[i] or 0 for i in instants) < horizon]:
                del records[key]

    # ------------------------------------------------------------------ KPIs, score, tier

    def kpis(self, doc: dict[str, Any], first: int) -> dict[str, float | None]:
        as_of = doc["as_of"]
        last, start = as_of // DAY_SECONDS, first * DAY_SECONDS
        total = [0.0] * Bucket.SIZE
        for bucket, sums in doc["buckets"].items():
            if first <= int(bucket) <= last:
                total = [a + b for a, b in zip(total, sums, strict=True)]
        # Undelivered orders past their promise are late, unanswered tickets past their SLA breaches.
        overdue_orders = sum(
            1
            for o in doc["orders"].values()
            if o[Order.DELIVERED] is None and not o[Order.CANCELLED] and o[Order.PROMISED] is not None
            if start <= o[Order.PROMISED] <= as_of
        )
        breached = sum(
            1
            for t in doc["tickets"].values()
            if t[Ticket.FIRST_RESPONSE] is None and t[Ticket.OPENED] is not None and t[Ticket.OPENED] >= start
            if t[Ticket.OPENED] + self.sla_seconds[t[Ticket.PRIORITY]] <= as_of
        )
        orders, answered = total[Bucket.ORDERS], total[Bucket.ANSWERED]
        due, sla_due = total[Bucket.DELIVERED] + overdue_orders, answered + breached
        return {
            "revenue": round(total[Bucket.REVENUE], 2),
            "order_count": orders,
            "on_time_delivery_rate": total[Bucket.ON_TIME] / due if due else None,
            "first_response_minutes": total[Bucket.RESPONSE_MINUTES] / answered if answered else None,
            "response_sla_rate": total[Bucket.IN_SLA] / sla_due if sla_due else None,
            "complaint_rate": 100 * total[Bucket.COMPLAINTS] / max(orders, 1),
            "csat": total[Bucket.RATING_SUM] / total[Bucket.RATED] if total[Bucket.RATED] else None,
            "days_since_last_order": (
                round((as_of - doc["last_order"]) / DAY_SECONDS, 2) if doc["last_order"] else None
            ),
        }

    def score(self, kpis: dict[str, float | None]) -> float | None:
        weighted = []
        for name, weight in self.weights.items():
            value = kpis.get(name)
            if weight > 0 and value is not None:
                good, bad = self.thresholds[name]
                weighted.append((min(100.0, max(0.0, (value - bad) / (good - bad) * 100.0)), weight))
        total = sum(w for _, w in weighted)
        return sum(s * w for s, w in weighted) / total if total else None

    def band(self, score: float) -> str:
        return next(
            (tier for tier, minimum in self.tier_minimums if score >= minimum), self.tier_minimums[-1][0]
        )

    def next_tier(self, current: str | None, score: float) -> str:
        names = [tier for tier, _ in self.tier_minimums]
        if current is None:
            return self.band(score)
        minimums = dict(self.tier_minimums)
        index = names.index(current)
        if index > 0 and score >= minimums[names[index - 1]] + self.hysteresis:
            return self.band(score)
        if score < minimums[current] - self.hysteresis:
            return self.band(score)
        return current

    def decide(
        self, doc: dict[str, Any], customer_id: str, kpis: dict[str, float | None]
    ) -> dict[str, Any] | None:
        score = self.score(kpis)
        if score is None:
            return None
        previous_tier, previous_score = doc["tier"], doc["score"]
        doc["score"], doc["tier"] = score, self.next_tier(previous_tier, score)
        if doc["tier"] == previous_tier:
            return None
        self.counts.tier_changes += 1
        return {
            "customer_id": customer_id,
            "previous_tier": previous_tier or "unrated",
            "new_tier": doc["tier"],
            "previous_score": previous_score,
            "score": score,
            "as_of": datetime.fromtimestamp(doc["as_of"], UTC).isoformat(),
            "kpis": kpis,
        }


# ------------------------------------------------------------------ the application


def build(config: dict[str, Any], counts: Counts) -> Application:
    def on_consumer_error(error: Exception, message: Any, logger: logging.Logger) -> bool:
        if message is None:  # a broker or poll error, not a message: let Quix handle it
            return False
        counts.outcomes["bad_json"] += 1  # the JSON deserializer refused it: skip, as TierPulse dead-letters
        counts.handled(message.topic())
        return True

    def on_processing_error(error: Exception, row: Any, logger: logging.Logger) -> bool:
        if isinstance(error, InvalidEventError):
            counts.outcomes["invalid"] += 1
            return True
        return False  # a bug: stop

    app = Application(
        broker_address=config["broker"],
        consumer_group=config["group"],
        auto_offset_reset="earliest",
        state_dir=config["state_dir"],
        commit_interval=5.0,  # Quix's default: a checkpoint (state flush + commit) every 5 s
        consumer_poll_timeout=0.1,
        # Large fetches, like the raw baseline's 4 MiB per partition; fetch again sooner.
        consumer_extra_config={"max.partition.fetch.bytes": 4 << 20, "fetch.wait.max.ms": 100},
        producer_extra_config={"linger.ms": 20},
        on_consumer_error=on_consumer_error,
        on_processing_error=on_processing_error,
        on_message_processed=lambda topic, partition, offset: counts.handled(topic),
        loglevel="INFO",
    )
    topics = config["topics"]
    orders = app.dataframe(app.topic(topics["orders"])).apply(order_event)
    tickets = app.dataframe(app.topic(topics["tickets"])).apply(ticket_event)
    complaints = app.dataframe(app.topic(topics["complaints"])).apply(complaint_event)
    for ignored in ("invoices", "customers"):
        app.dataframe(app.topic(topics[ignored]))  # read and decoded, then nothing

    def forward(event: dict[str, Any]) -> None:
        counts.forwarded += 1

    events = orders.concat(tickets).concat(complaints).update(forward)
    events = events.group_by("customer_id")
    changes = events.apply(Scorer(config["policy"], counts), stateful=True)
    changes = changes.filter(lambda change: change is not None)
    changes.to_topic(
        app.topic(topics["tier_changes"], key_serializer="str", value_serializer="json"),
        key=lambda change: change["customer_id"],
    )
    return app


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    counts = Counts(config["expected_inputs"], Path(config["progress"]), set(config["input_topics"]))
    counts.write()
    build(config, counts).run()  # until SIGTERM from peer.py
    counts.write()


if __name__ == "__main__":
    main()
