"""The rollup series are bounded: the largest names by revenue get their own, the rest one
'other' (contract v2 §5, Metrics), and a name that left is removed, not kept at its last value."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from sinks.metrics import ScorerMetrics
from sinks.rollups import OTHER, bounded


def _rollup(name: str, revenue: float, at_risk: int = 1) -> dict[str, object]:
    return {
        "name": name,
        "revenue": revenue,
        "tiers": {"at_risk": at_risk},
        "alerts": {"critical": 1},
        "revenue_by_tier": {"at_risk": revenue / 2},
    }


def test_a_flood_of_names_makes_a_bounded_number_of_series() -> None:
    flood = [_rollup(f"manager-{n}", float(n)) for n in range(50_000)]
    kept = bounded(flood, 200)
    assert len(kept) == 201 and kept[-1]["name"] == OTHER
    assert kept[0]["name"] == "manager-49999"
    other = kept[-1]
    assert other["tiers"] == {"at_risk": 50_000 - 200} and other["revenue"] == sum(range(50_000 - 200))
    assert other["revenue_by_tier"] == {"at_risk": sum(range(50_000 - 200)) / 2}
    metrics = ScorerMetrics(CollectorRegistry(), ("key", "unrated"))
    metrics.set_rollups("account_manager", kept)
    names = {
        s.labels["name"]
        for family in metrics.registry.collect()
        if family.name == "tierpulse_rollup_revenue"
        for s in family.samples
    }
    assert len(names) == 201


def test_a_name_that_left_loses_its_series() -> None:
    metrics = ScorerMetrics(CollectorRegistry(), ("key", "unrated"))
    metrics.set_rollups("region", [_rollup("west", 10.0), _rollup("east", 5.0)])
    metrics.set_rollups("account_manager", [_rollup("王芳", 3.0)])
    metrics.set_rollups("region", [_rollup("west", 12.0)])
    assert (
        metrics.registry.get_sample_value("tierpulse_rollup_revenue", {"dimension": "region", "name": "east"})
        is None
    )
    assert (
        metrics.registry.get_sample_value("tierpulse_rollup_revenue", {"dimension": "region", "name": "west"})
        == 12
    )
    kept = {"dimension": "account_manager", "name": "王芳"}
    assert metrics.registry.get_sample_value("tierpulse_rollup_revenue", kept) == 3


def test_revenue_at_risk_is_a_series_once_known_and_unknown_stays_unknown_when_summed() -> None:
    unknown = {**_rollup("new", 1.0), "revenue_by_tier": None}  # written before 0.7, not since
    kept = bounded([_rollup("a", 30.0), _rollup("b", 20.0), unknown], 1)
    assert kept[-1]["revenue_by_tier"] is None  # "other": a sum with an unknown part is unknown
    metrics = ScorerMetrics(CollectorRegistry(), ("key", "unrated"))
    metrics.set_rollups("region", kept)
    at_risk = {"dimension": "region", "tier": "at_risk"}
    assert metrics.registry.get_sample_value("tierpulse_rollup_tier_revenue", {**at_risk, "name": "a"}) == 15
    assert (
        metrics.registry.get_sample_value("tierpulse_rollup_tier_revenue", {**at_risk, "name": OTHER}) is None
    )
