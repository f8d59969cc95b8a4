"""Alert rules as pure functions: which alerts hold for a customer right now.

The state remembers which alerts are firing; comparing that with what holds now
gives each alert exactly one ``firing`` and one ``resolved`` transition.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import sha256
from typing import Any, Literal

from models.event_time import MICROS_PER_MINUTE
from models.kpis import Kpis
from models.policy import AlertRule, SegmentPolicy
from models.state import PRIORITIES, CustomerState


@dataclass(frozen=True, slots=True)
class Condition:
    """One alert condition that holds now, keyed so it can be recognised later."""

    key: str
    rule: AlertRule
    value: float
    threshold: float
    subject: str | None = None  # the ticket_id of a rule on one ticket


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """Contract §5 ``customer-alerts`` (``emitted_at`` is added when it is sent)."""

    alert_id: str
    customer_id: str
    rule: str
    severity: str
    state: Literal["firing", "resolved"]
    value: float
    threshold: float
    as_of: int
    subject: str | None  # contract v2: the ticket_id for a rule on one ticket, None for a KPI rule


def conditions(
    rules: tuple[AlertRule, ...],
    state: CustomerState,
    kpis: Kpis,
    tier: str,
    segment: SegmentPolicy,
    as_of: int,
) -> list[Condition]:
    holding = []
    for rule in rules:
        if rule.tiers is not None and tier not in rule.tiers:
            continue
        if rule.segments is not None and not set(rule.segments) & set(segment.matched):
            continue
        if rule.kpi is not None:
            value = kpis.value(rule.kpi.name)
            if value is None:
                continue
            if rule.kpi.below is not None and value < rule.kpi.below:
                holding.append(Condition(rule.name, rule, value, rule.kpi.below))
            elif rule.kpi.above is not None and value > rule.kpi.above:
                holding.append(Condition(rule.name, rule, value, rule.kpi.above))
        elif rule.ticket is not None:
            priority = PRIORITIES.index(rule.ticket.priority)
            lead = rule.ticket.minutes_before_deadline
            for key, ticket in state.open_tickets():
                if ticket.priority != priority or ticket.opened_us is None:
                    continue
                minutes_left = (ticket.opened_us + segment.sla_us[priority] - as_of) / MICROS_PER_MINUTE
                if minutes_left <= lead:
                    key_text = f"{rule.name}:{key:016x}"
                    holding.append(Condition(key_text, rule, minutes_left, lead, ticket.ticket_id))
    return holding


def transitions(state: CustomerState, holding: list[Condition], kpis: Kpis, as_of: int) -> list[AlertEvent]:
    """Fire what newly holds, resolve what no longer holds; update the state's memory.

    An alert's id counts the customer's firings, so a replay that fires the same
    alerts in the same order gives the same ids."""
    status = state.status
    now = {condition.key: condition for condition in holding}
    events = []
    for key, condition in now.items():
        if key not in status.alerts:
            status.fired += 1
            alert_id = _alert_id(state.customer_id, key, status.fired)
            kpi = condition.rule.kpi.name if condition.rule.kpi else None
            status.alerts[key] = [
                alert_id,
                condition.rule.name,
                condition.rule.severity,
                condition.threshold,
                kpi,
                condition.subject,
            ]
            events.append(_event(state.customer_id, status.alerts[key], "firing", condition.value, as_of))
    for key in [key for key in status.alerts if key not in now]:
        record = status.alerts.pop(key)
        current = kpis.value(record[4]) if record[4] else None
        events.append(_event(state.customer_id, record, "resolved", current, as_of))
    return events


def _event(
    customer_id: str, record: list[Any], state: Literal["firing", "resolved"], value: float | None, as_of: int
) -> AlertEvent:
    alert_id, rule, severity, threshold = record[:4]
    subject = record[5] if len(record) > 5 else None  # alerts fired before 0.4 kept no subject
    shown = float(threshold) if value is None else value
    return AlertEvent(alert_id, customer_id, rule, severity, state, shown, float(threshold), as_of, subject)


def _alert_id(customer_id: str, key: str, sequence: int) -> str:
    return "al-" + sha256(f"{customer_id}\x1f{key}\x1f{sequence}".encode()).hexdigest()[:32]
