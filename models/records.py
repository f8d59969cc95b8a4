"""The records a customer's state merges events into, and what each adds to the KPIs.

An order, a ticket or an invoice is built up from several events in any order; every merge
rule (models/state.py) is idempotent. ``parts`` says what a record counts for in the KPIs of
contract §3 as it stands now: per bucket (of the instant that puts it in the window — placed,
promised, opened, resolved, due), some only from an instant on (the gate: a promise or an SLA
deadline passed, an invoice due, a payment after it). models/kpi_index.py sums them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

PRIORITIES = ("P1", "P2", "P3", "P4")
ZERO = Decimal(0)

# The totals kept per bucket: one slot each in a list (models/kpi_index.py).
(
    REVENUE,
    ORDERS,
    COSTED,  # Σ amount of the orders that carry a cost
    MARGIN,  # Σ (amount − cost) of those
    PROMISED,  # orders whose promise has passed
    ON_TIME,
    RESPONSE_US,  # Σ open → first response, of answered tickets
    RESPONDED,
    SLA_COUNTED,
    SLA_MET,
    RATINGS,
    RATED,
    EFFORT,
    COMPLAINTS,
    BILLED,
    COLLECTED,
    OVERDUE,
) = range(17)
TOTALS = 17
MONEY = frozenset({REVENUE, COSTED, MARGIN, EFFORT, BILLED, COLLECTED, OVERDUE})

# (bucket, gate, values): counts in the bucket once the watermark reaches the gate (None: at once)
Part = tuple[int, int | None, tuple[tuple[int, int | Decimal], ...]]
BucketOf = Callable[[int], int]


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

    def parts(self, bucket_of: BucketOf) -> list[Part]:
        if self.cancelled:
            return []
        parts: list[Part] = []
        if self.placed_us is not None:
            amount = self.amount or ZERO
            values: tuple[tuple[int, int | Decimal], ...] = ((REVENUE, amount), (ORDERS, 1))
            if self.cost is not None:
                values += ((COSTED, amount), (MARGIN, amount - self.cost))
            parts.append((bucket_of(self.placed_us), None, values))
        promised = self.promised_us
        if promised is not None:
            on_time = self.delivered_us is not None and self.delivered_us <= promised
            parts.append((bucket_of(promised), promised, ((PROMISED, 1), (ON_TIME, int(on_time)))))
        return parts


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

    @property
    def unanswered(self) -> bool:
        return self.opened_us is not None and self.first_response_us is None

    def parts(self, bucket_of: BucketOf, sla_us: tuple[int, int, int, int]) -> list[Part]:
        parts: list[Part] = []
        if self.resolved_us is not None:
            values: tuple[tuple[int, int | Decimal], ...] = ()
            if self.effort is not None:
                values += ((EFFORT, self.effort),)
            if self.satisfaction is not None:
                values += ((RATINGS, self.satisfaction), (RATED, 1))
            if values:
                parts.append((bucket_of(self.resolved_us), None, values))
        if self.opened_us is not None:
            opened, answered = self.opened_us, self.first_response_us
            deadline = opened + sla_us[self.priority]
            if answered is None:  # a breach once the deadline has passed
                parts.append((bucket_of(opened), deadline, ((SLA_COUNTED, 1),)))
            else:
                met = int(answered <= deadline)
                values = ((RESPONSE_US, answered - opened), (RESPONDED, 1), (SLA_COUNTED, 1), (SLA_MET, met))
                parts.append((bucket_of(opened), None, values))
        return parts


@dataclass(slots=True)
class Invoice:
    issued_us: int | None = None
    amount: Decimal | None = None  # from the issued event
    due_us: int | None = None
    # Payments by their event's id hash: several add up, a re-sent one is the same payment.
    payments: dict[int, tuple[int, Decimal]] = field(default_factory=dict)  # -> (occurred, amount)
    last_us: int = 0

    def paid_by(self, instant: int) -> Decimal:
        return sum((amount for at, amount in self.payments.values() if at <= instant), ZERO)

    def parts(self, bucket_of: BucketOf) -> list[Part]:
        """Counted from its due instant; what is overdue then shrinks with each later payment."""
        due, amount = self.due_us, self.amount
        if due is None or amount is None:
            return []
        bucket, paid = bucket_of(due), self.paid_by(due)
        owed = max(amount - paid, ZERO)
        parts: list[Part] = [
            (bucket, due, ((BILLED, amount), (COLLECTED, min(paid, amount)), (OVERDUE, owed)))
        ]
        for instant in sorted({at for at, _ in self.payments.values() if at > due}):
            now_owed = max(amount - self.paid_by(instant), ZERO)
            if now_owed != owed:
                parts.append((bucket, instant, ((OVERDUE, now_owed - owed),)))
                owed = now_owed
        return parts


def complaint_parts(occurred_us: int, bucket_of: BucketOf) -> list[Part]:
    return [(bucket_of(occurred_us), None, ((COMPLAINTS, 1),))]
