"""The JSON bodies of contract §5's Kafka outputs, built from the core's decisions.

``emitted_at`` is added when a message is actually sent, so a re-sent message
keeps its ``event_id`` / ``alert_id`` and differs only there.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from models.alerts import AlertEvent
from models.event_time import to_rfc3339
from models.kpis import KpiName
from models.tiering import TierDecision

TIER_CHANGES = "tier_changes"
ALERTS = "alerts"
TIER_CHANGES_SHADOW = "tier_changes_shadow"  # the shadow policy's (shadow mode), same body
# The version of the contract the output messages follow, in their tierpulse-schema-version header.
SCHEMA_VERSION = "2"


def tier_change_body(change: TierDecision) -> dict[str, object]:
    return {
        "event_id": change.event_id,
        "customer_id": change.customer_id,
        "previous_tier": change.previous_tier,
        "new_tier": change.new_tier,
        "previous_score": change.previous_score,
        "score": change.score,
        "segment": change.segment,
        "policy_version": change.policy_version,
        "as_of": to_rfc3339(change.as_of),
        "kpis": change.kpis.as_json(),
        "reasons": [
            {
                "kpi": r.kpi,
                "value": r.value,
                "score": r.score,
                "weight": r.weight,
                "contribution": r.contribution,
            }
            for r in change.reasons
        ],
    }


def alert_body(alert: AlertEvent) -> dict[str, object]:
    return {
        "alert_id": alert.alert_id,
        "customer_id": alert.customer_id,
        "rule": alert.rule,
        "severity": alert.severity,
        "state": alert.state,
        "value": alert.value,
        "threshold": alert.threshold,
        "subject": alert.subject,
        "as_of": to_rfc3339(alert.as_of),
    }


# The messages as consumers see them (emitted_at included): their JSON Schemas are generated
# from these (models/schemas.py) and a test checks the bodies above against them.
class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KpiReasonMessage(_Message):
    kpi: KpiName
    value: float = Field(description="the KPI's value as scored")
    score: float = Field(ge=0, le=100, description="its score: bad 0 … good 100")
    weight: float = Field(gt=0)
    contribution: float = Field(description="its share of the composite score: score × weight ÷ Σ weights")


class TierChangeMessage(_Message):
    """Contract §5: a customer crossed a tier threshold (topic customer-tier-changes, key customer_id)."""

    event_id: str = Field(description="deterministic: the same input gives the same id; de-duplicate on it")
    customer_id: str
    previous_tier: str = Field(description="'unrated' on the first rating; else the last change's new_tier")
    new_tier: str
    previous_score: float | None = Field(description="the score at the last change (null on the first)")
    score: float
    segment: str
    policy_version: str
    as_of: str = Field(description="the event time (watermark) decided at, RFC 3339 UTC")
    kpis: dict[KpiName, float | int | None] = Field(description="every KPI as of as_of (null: undefined)")
    reasons: list[KpiReasonMessage] = Field(description="the weighed KPIs that make up the score")
    emitted_at: str = Field(description="wall-clock time of sending, RFC 3339 UTC (differs on a re-send)")


class AlertMessage(_Message):
    """Contract §5: a policy alert rule fired or resolved (topic customer-alerts, key customer_id)."""

    alert_id: str = Field(description="the same for the firing and the resolved message of one alert")
    customer_id: str
    rule: str
    severity: Literal["info", "warning", "critical"]
    state: Literal["firing", "resolved"]
    value: float = Field(description="the KPI's value, or minutes left before a ticket's SLA deadline")
    threshold: float
    subject: str | None = Field(
        description="the ticket_id for a rule on one ticket; null for a rule on a KPI"
    )
    as_of: str
    emitted_at: str


class DeadLetterMessage(_Message):
    """Contract §2: an input message that could not be used (topic tierpulse-dead-letters)."""

    topic: str = Field(description="where the original is (before any re-keying)")
    partition: int
    offset: int
    key_base64: str | None
    value_base64: str | None = Field(description="the original bytes, at most 256 KiB of them")
    truncated: bool = Field(
        description="true when key or value were cut: fetch the rest at topic/partition/offset"
    )
    reason: str = Field(description="what was wrong, naming the field; internal_error: … for a bug of ours")
    customer_id: str | None = Field(description="when it could be read")
    dead_lettered_at: str
