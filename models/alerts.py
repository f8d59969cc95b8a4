"""Alert rules as pure functions: which alerts hold for a customer right now.

The state remembers which alerts are firing; comparing that with what holds now
gives each alert exactly one ``firing`` and one ``resolved`` transition. A rule with
a hold-down (``for``) fires only once its condition has held that long in event time;
until then the condition is *pending* (as in Prometheus) and nothing is emitted.

The memory of a firing alert (``TierStatus.alerts``) is what it fired with: id, rule,
severity, threshold, KPI, subject, value, event time, and the customer's tier, segment,
account manager and region then — so that its resolution and every re-post to
Alertmanager carry the labels it fired with (sinks/alertmanager.py). States stored before
0.6 have the first five or six; the rest are read as the customer stands now.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import sha256
from typing import Any, Literal

from models.event_time import MICROS_PER_MINUTE
from models.kpis import Kpis
from models.policy import AlertRule, SegmentPolicy
from models.state import PRIORITIES, CustomerState
from models.tiering import UNASSIGNED, UNRATED


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


@dataclass(frozen=True, slots=True)
class AlertContext:
    """Who the customer is when an alert fires: the labels the alert keeps."""

    tier: str
    segment: str
    account_manager: str
    region: str


@dataclass(frozen=True, slots=True)
class FiringAlert:
    """One alert firing now, with what it fired with (for Alertmanager and the gauge)."""

    alert_id: str
    customer_id: str
    rule: str
    severity: str
    kpi: str | None
    subject: str | None
    value: float
    threshold: float
    fired_as_of: int
    context: AlertContext


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


def transitions(
    state: CustomerState,
    holding: list[Condition],
    kpis: Kpis,
    as_of: int,
    context: AlertContext,
) -> list[AlertEvent]:
    """Fire what newly holds (after its hold-down), resolve what no longer holds; update the
    state's memory.

    An alert's id counts the customer's firings, so a replay that fires the same
    alerts in the same order gives the same ids."""
    status = state.status
    now = {condition.key: condition for condition in holding}
    events = []
    for key, condition in now.items():
        if key in status.alerts:
            continue
        hold_us = condition.rule.hold_us
        if hold_us:
            fires_at = status.pending.setdefault(key, as_of + hold_us)
            if as_of < fires_at:
                continue
            del status.pending[key]
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
            condition.value,
            as_of,
            context.tier,
            context.segment,
            context.account_manager,
            context.region,
        ]
        events.append(_event(state.customer_id, status.alerts[key], "firing", condition.value, as_of))
    for key in [key for key in status.pending if key not in now]:
        del status.pending[key]
    for key in [key for key in status.alerts if key not in now]:
        record = status.alerts.pop(key)
        current = kpis.value(record[4]) if record[4] else None
        events.append(_event(state.customer_id, record, "resolved", current, as_of))
    return events


def firing(state: CustomerState) -> list[FiringAlert]:
    """The customer's firing alerts, each with what it fired with."""
    status = state.status
    if not status.alerts:
        return []
    profile = state.profile or {}
    now = AlertContext(
        status.tier or UNRATED,
        status.segment or "",
        profile.get("account_manager") or UNASSIGNED,
        profile.get("region") or UNASSIGNED,
    )
    alerts = []
    for record in status.alerts.values():
        alert_id, rule, severity, threshold, kpi = record[:5]
        subject = record[5] if len(record) > 5 else None
        if len(record) >= 12:
            value, fired_as_of, context = record[6], record[7], AlertContext(*record[8:12])
        else:  # fired before 0.6
            value, fired_as_of, context = threshold, status.as_of or 0, now
        alerts.append(
            FiringAlert(
                alert_id,
                state.customer_id,
                rule,
                severity,
                kpi,
                subject,
                float(value),
                float(threshold),
                fired_as_of,
                context,
            )
        )
    return alerts


def _event(
    customer_id: str, record: list[Any], state: Literal["firing", "resolved"], value: float | None, as_of: int
) -> AlertEvent:
    alert_id, rule, severity, threshold = record[:4]
    subject = record[5] if len(record) > 5 else None  # alerts fired before 0.4 kept no subject
    shown = float(threshold) if value is None else value
    return AlertEvent(alert_id, customer_id, rule, severity, state, shown, float(threshold), as_of, subject)


def _alert_id(customer_id: str, key: str, sequence: int) -> str:
    return "al-" + sha256(f"{customer_id}\x1f{key}\x1f{sequence}".encode()).hexdigest()[:32]
