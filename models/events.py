"""Input events of contract §1, and their decoding from raw Kafka bytes.

``decode`` never raises on bad input: it returns an :class:`Invalid` with a reason
a person can act on (which field, what was wrong, what was expected), which the
stream layer routes to the dead-letter topic.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    model_validator,
)

from models.event_time import MICROS_PER_SECOND, to_micros

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _rfc3339_text(value: Any) -> Any:
    # pydantic alone would also take 1700000000 or "1700000000" as a Unix time;
    # the contract wants RFC 3339 text with an offset. (Python callers may pass datetimes.)
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("expected an RFC 3339 timestamp with an offset, e.g. 2026-11-02T08:15:00+08:00")
    return value


# Instants are microseconds since 1970 (models/event_time.py), written back as RFC 3339 UTC: an
# instant outside these years has no UTC form there (year 1 at +01:00 is year 0 in UTC).
_FIRST_INSTANT, _END_INSTANT = datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)


def _supported_instant(value: datetime) -> datetime:
    if not _FIRST_INSTANT <= value < _END_INSTANT:
        raise ValueError("outside the supported range 1970-01-01T00:00:00Z to 8999-12-31T23:59:59Z")
    return value


Identifier = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=128)]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_supported_instant)]
Amount = Annotated[Decimal, Field(ge=0, allow_inf_nan=False, max_digits=30)]
Text = Annotated[str, Strict(), StringConstraints(max_length=256)]


class Topic(StrEnum):
    """The kinds of input topic; the names on the wire are settings."""

    ORDERS = "orders"
    TICKETS = "service-tickets"
    COMPLAINTS = "complaints"
    INVOICES = "invoices"
    CUSTOMERS = "customers"


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: Identifier
    customer_id: Identifier
    occurred_at: Timestamp

    @property
    def occurred_us(self) -> int:
        return to_micros(self.occurred_at)


class OrderEvent(_Event):
    order_id: Identifier
    type: Literal["placed", "delivered", "cancelled"]
    amount: Amount | None = None
    promised_at: Timestamp | None = None
    cost: Amount | None = None  # on 'placed': goods and delivery, for the margin (elsewhere ignored)

    @model_validator(mode="after")
    def _required_by_type(self) -> Self:
        if self.type == "placed" and self.amount is None:
            raise ValueError("amount is required on a 'placed' order event")
        if self.type in ("placed", "delivered") and self.promised_at is None:
            raise ValueError(f"promised_at is required on a '{self.type}' order event")
        return self


class TicketEvent(_Event):
    ticket_id: Identifier
    type: Literal["opened", "first_response", "resolved"]
    priority: Literal["P1", "P2", "P3", "P4"] | None = None
    satisfaction: Annotated[int, Strict(), Field(ge=1, le=5)] | None = None
    effort_minutes: Amount | None = None  # on 'resolved': the service effort spent on the ticket

    @model_validator(mode="after")
    def _required_by_type(self) -> Self:
        if self.type == "opened" and self.priority is None:
            raise ValueError("priority is required on an 'opened' ticket event")
        for name in ("satisfaction", "effort_minutes"):
            if getattr(self, name) is not None and self.type != "resolved":
                raise ValueError(f"{name} is only allowed on a 'resolved' ticket event")
        return self


class ComplaintEvent(_Event):
    complaint_id: Identifier
    severity: Literal["low", "medium", "high", "critical"]
    category: Text


class InvoiceEvent(_Event):
    """Receivables: an invoice issued, and payments (partial ones add up; they may come first)."""

    invoice_id: Identifier
    type: Literal["issued", "paid"]
    amount: Amount  # the invoice total on 'issued', the sum paid on 'paid'
    due_at: Timestamp | None = None

    @model_validator(mode="after")
    def _required_by_type(self) -> Self:
        if self.type == "issued" and self.due_at is None:
            raise ValueError("due_at is required on an 'issued' invoice event")
        return self


class CustomerProfile(BaseModel):
    """The latest record per customer on the compacted ``customers`` topic."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    customer_id: Identifier
    segment: Text
    name: Text | None = None
    customer_type: Text | None = None
    account_manager: Text | None = None
    region: Text | None = None


Event = OrderEvent | TicketEvent | ComplaintEvent | InvoiceEvent
# The input kinds, one registry: the model of each, and the rule a producer must know (JSON Schemas).
INPUTS: dict[Topic, tuple[type[BaseModel], str]] = {
    Topic.ORDERS: (
        OrderEvent,
        "amount is required on 'placed'; promised_at on 'placed' and 'delivered'; "
        "cost (optional) counts on 'placed'.",
    ),
    Topic.TICKETS: (
        TicketEvent,
        "priority is required on 'opened'; satisfaction and effort_minutes are allowed only on 'resolved'.",
    ),
    Topic.COMPLAINTS: (ComplaintEvent, "A repeated complaint_id is a duplicate."),
    Topic.INVOICES: (
        InvoiceEvent,
        "amount is required on both types, due_at on 'issued'; a second 'issued' is a duplicate; "
        "'paid' events add up and may come before their invoice.",
    ),
    Topic.CUSTOMERS: (
        CustomerProfile,
        "Compacted: the latest record per customer_id decides the policy segment.",
    ),
}


@dataclass(frozen=True, slots=True)
class Invalid:
    """A message that is not a valid event, and why (for the dead-letter topic)."""

    reason: str
    customer_id: str | None = None


def decode(
    topic: Topic, raw: bytes | None, *, now_us: int, max_future_skew_us: int, max_bytes: int = 65_536
) -> Event | CustomerProfile | Invalid:
    """Parse and validate one message value. Never raises for bad input."""
    if raw is None:
        return Invalid("message has no value (null)")
    if len(raw) > max_bytes:
        return Invalid(f"message is {len(raw)} bytes, more than the limit of {max_bytes}")
    try:
        event = INPUTS[topic][0].model_validate_json(raw)
    except ValidationError as error:
        return Invalid(_reason(topic, error), _customer_hint(raw))
    if isinstance(event, _Event):
        skew = event.occurred_us - now_us
        if skew > max_future_skew_us:
            return Invalid(
                f"{topic}: occurred_at {event.occurred_at.isoformat()} lies {skew / MICROS_PER_SECOND:.0f}s "
                f"ahead of the wall clock, more than max_future_skew "
                f"({max_future_skew_us / MICROS_PER_SECOND:.0f}s)",
                event.customer_id,
            )
    return event  # type: ignore[return-value]


def _reason(topic: Topic, error: ValidationError) -> str:
    problems = []
    for item in error.errors(include_url=False)[:5]:
        field = ".".join(str(part) for part in item["loc"]) or "message"
        shown = repr(item.get("input"))
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        got = "" if item["type"] in ("missing", "json_invalid") or field == "message" else f" (got {shown})"
        problems.append(f"field '{field}': {item['msg']}{got}")
    more = error.error_count() - len(problems)
    return f"{topic}: " + "; ".join(problems) + (f"; and {more} more" if more > 0 else "")


def _customer_hint(raw: bytes) -> str | None:
    """The customer id of a rejected message when it can be read, for logs and routing."""
    match = re.search(rb'"customer_id"\s*:\s*("(?:[^"\\]|\\.){1,512}")', raw[:65_536])
    if not match:
        return None
    try:
        text = json.loads(match.group(1))
    except ValueError:
        return None
    return text[:128] if isinstance(text, str) else None


def parse_instant(text: str) -> datetime:
    """An RFC 3339 string as an aware datetime (used by tools and tests)."""
    return datetime.fromisoformat(_rfc3339_text(text).replace("Z", "+00:00").replace("z", "+00:00"))
