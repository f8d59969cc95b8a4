"""The JSON bodies of contract §5's Kafka outputs, built from the core's decisions.

``emitted_at`` is added when a message is actually sent, so a re-sent message
keeps its ``event_id`` / ``alert_id`` and differs only there.
"""

from __future__ import annotations

from models.alerts import AlertEvent
from models.event_time import to_rfc3339
from models.tiering import TierDecision

TIER_CHANGES = "tier_changes"
ALERTS = "alerts"


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
