"""Contract §4: KPI scores, composite, first rating, hysteresis edges, unrated."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from models.evaluation import evaluate
from models.event_time import MICROS_PER_DAY, Window
from models.kpis import KPI_NAMES, Kpis
from models.policy import KpiThreshold, PolicyError, SegmentPolicy, parse_policy
from models.state import CustomerState
from models.tiering import UNRATED, band, change_event_id, composite_score, kpi_score, next_tier
from tests.unit.builders import feed, placed, us

SEGMENT = SegmentPolicy(
    name="s",
    matched=("s",),
    weights={"on_time_delivery_rate": 1.0, "complaint_rate": 3.0},
    thresholds={
        "on_time_delivery_rate": KpiThreshold(good=1.0, bad=0.5),
        "complaint_rate": KpiThreshold(good=0, bad=10),
    },
    tier_minimums=(("strategic", 80), ("key", 60), ("standard", 40), ("at_risk", 0)),
    hysteresis=5,
    sla_us=(1, 2, 3, 4),
)


@pytest.mark.parametrize(
    ("value", "good", "bad", "expected"),
    [
        (0.75, 1.0, 0.5, 50.0),
        (1.2, 1.0, 0.5, 100.0),
        (0.1, 1.0, 0.5, 0.0),
        (5, 0, 10, 50.0),
        (-1, 0, 10, 100.0),
        (15, 0, 10, 0.0),  # lower is better
    ],
)
def test_kpi_score_is_linear_and_clamped(value: float, good: float, bad: float, expected: float) -> None:
    assert kpi_score(value, good, bad) == pytest.approx(expected)


def test_composite_uses_only_defined_kpis() -> None:
    defined = ("revenue", "order_count", "complaint_rate", "overdue_receivables", "lifetime_revenue")
    undefined = dict.fromkeys(name for name in KPI_NAMES if name not in defined)
    kpis = Kpis(
        revenue=Decimal(0),
        order_count=0,
        complaint_rate=5.0,
        overdue_receivables=Decimal(0),
        lifetime_revenue=Decimal(0),
        **undefined,
    )
    score = composite_score(kpis, SEGMENT)
    assert score.composite == 50.0  # on-time is undefined: only complaint_rate counts
    assert [(r.kpi, r.weight, r.contribution) for r in score.reasons] == [("complaint_rate", 3.0, 50.0)]
    assert composite_score(kpis, replace(SEGMENT, weights={"csat": 1.0})).composite is None


def test_first_rating_takes_the_band() -> None:
    assert next_tier(None, 79.99, SEGMENT) == "key"
    assert next_tier(None, 80, SEGMENT) == "strategic"
    assert band(0, SEGMENT) == "at_risk"


@pytest.mark.parametrize(
    ("current", "score", "expected"),
    [
        ("key", 84.99, "key"),  # below strategic's 80 + h
        ("key", 85, "strategic"),  # reaches it
        ("key", 55, "key"),  # within key's 60 - h
        ("key", 54.99, "standard"),  # below 60 - h: lands in the band of 54.99
        ("key", 30, "at_risk"),
        ("at_risk", 44.99, "at_risk"),
        ("at_risk", 45, "standard"),
        ("at_risk", 95, "strategic"),  # up lands in the band of the score
        ("standard", 64.99, "standard"),
        ("standard", 65, "key"),
    ],
)
def test_hysteresis_edges(current: str, score: float, expected: str) -> None:
    assert next_tier(current, score, SEGMENT) == expected


def test_change_ids_are_deterministic_and_distinct() -> None:
    assert change_event_id("客户", 0, UNRATED, "key") == change_event_id("客户", 0, UNRATED, "key")
    assert change_event_id("客户", 0, UNRATED, "key") != change_event_id("客户", 1, UNRATED, "key")


POLICY_RAW: dict[str, Any] = {
    "version": "v7",
    "tiers": ["gold", "silver", "bronze"],
    "default_segment": "base",
    "segments": {
        "base": {
            "weights": {"order_count": 1},
            "kpis": {"order_count": {"good": 10, "bad": 0}},
            "tiers": {"gold": 80, "silver": 50, "bronze": 0},
            "hysteresis": 5,
        }
    },
}
POLICY = parse_policy(POLICY_RAW)


def test_evaluation_emits_an_explained_chain_of_changes() -> None:
    window, state = Window(MICROS_PER_DAY, 30), CustomerState("c1")
    assert evaluate(state, POLICY, window, us(0)).snapshot.tier == "bronze"  # 0 orders scores 0
    watermark = feed(state, window, *[placed(f"o{i}", 1) for i in range(9)])
    result = evaluate(state, POLICY, window, watermark)
    assert result.change is not None
    assert (result.change.previous_tier, result.change.new_tier, result.change.score) == (
        "bronze",
        "gold",
        90.0,
    )
    assert result.change.policy_version == "v7" and result.change.reasons[0].kpi == "order_count"
    assert evaluate(state, POLICY, window, watermark).change is None  # nothing new: no change
    later = evaluate(state, POLICY, window, us(40))  # the window slid past every order
    assert (
        later.change is not None
        and later.change.previous_tier == "gold"
        and later.change.new_tier == "bronze"
    )
    assert later.change.previous_score == 90.0


def test_a_customer_with_no_defined_weighted_kpi_stays_unrated() -> None:
    policy = parse_policy(
        {
            "version": "v1",
            "tiers": ["a", "b"],
            "default_segment": "base",
            "segments": {
                "base": {
                    "weights": {"csat": 1},
                    "kpis": {"csat": {"good": 5, "bad": 1}},
                    "tiers": {"a": 50, "b": 0},
                }
            },
        }
    )
    result = evaluate(CustomerState("c1"), policy, Window(), us(1))
    assert result.snapshot.tier == UNRATED and result.snapshot.score is None and result.change is None
    assert result.snapshot.redis_fields()["score"] == "" and result.snapshot.redis_fields()["csat"] == ""


def test_a_warm_up_holds_the_first_rating_until_the_history_is_long_enough() -> None:
    raw = POLICY_RAW | {"segments": {"base": POLICY_RAW["segments"]["base"] | {"warmup_days": 7}}}
    policy, window, state = parse_policy(raw), Window(MICROS_PER_DAY, 30), CustomerState("c1")
    assert evaluate(state, policy, window, us(0)).snapshot.tier == UNRATED  # no history at all
    watermark = feed(state, window, placed("o1", 2, promised_day=20), placed("o2", 1, promised_day=20))
    early = evaluate(state, policy, window, watermark)  # its history starts on day 1
    assert (early.snapshot.tier, early.snapshot.score, early.change) == (UNRATED, 20.0, None)
    assert early.due == us(8)  # the warm-up ends: rated then, without another event
    assert evaluate(state, policy, window, us(8) - 1).change is None
    rated = evaluate(state, policy, window, us(8))
    assert rated.change is not None and (rated.change.previous_tier, rated.change.new_tier) == (
        UNRATED,
        "bronze",
    )
    for i in range(8):  # once rated, the tier moves as usual at once
        feed(state, window, placed(f"late{i}", 8.5))
    assert evaluate(state, policy, window, us(9)).snapshot.tier == "gold"


def test_warm_up_is_per_segment_and_refused_when_negative() -> None:
    segments = POLICY_RAW["segments"] | {"new": {"warmup_days": 14}}
    policy = parse_policy(POLICY_RAW | {"segments": segments})
    assert policy.segment_for({"segment": "new"}).warmup_us == 14 * MICROS_PER_DAY
    assert policy.segment_for(None).warmup_us == 0
    with pytest.raises(PolicyError, match=r"segments\.new\.warmup_days"):
        parse_policy(POLICY_RAW | {"segments": POLICY_RAW["segments"] | {"new": {"warmup_days": -1}}})
