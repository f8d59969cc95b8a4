"""Policy loading: every problem listed at once; segment overlays and their precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.policy import DEFAULT_POLICY_PATH, PolicyError, load_policy, parse_policy

BAD_POLICY = """
version: ""
tiers: [gold, silver, gold]
default_segment: base
segments:
  base:
    weights: {revenue: -1, csat: 2, happiness: 1}
    kpis: {csat: {good: 4, bad: 4}}
    tiers: {gold: 50, silver: 60, platinum: 1}
    hysteresis: 80
  extra:
    sla_minutes: {P1: 0}
alerts:
  - {name: "Bad Name", severity: loud, kpi: {name: csat}}
  - {name: both, severity: info, kpi: {name: csat, below: 1}, ticket: {priority: P1}, tiers: [diamond]}
"""


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(BAD_POLICY)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    text = "\n".join(caught.value.problems)
    for expected in [
        "version: String should have at least 1 character",
        "segments.base.weights.revenue: Input should be greater than or equal to 0",
        "segments.base.weights.happiness",  # not a KPI
        "segments.base.hysteresis",
        "segments.extra.sla_minutes.P1",
        "alerts.0.name",
        "alerts.0.severity",
        "tiers: tier names must be unique",
        "segments.base.kpis.csat: good and bad are equal",
        "segments.base.tiers.platinum: not a tier",
        "minimums must fall strictly",
        "alerts.0.kpi: give exactly one of 'below' or 'above'",
        "alerts.1: give exactly one of 'kpi' or 'ticket'",
        "alerts.1.tiers: 'diamond' is not a tier",
    ]:
        assert expected in text, f"{expected!r} missing from:\n{text}"
    assert str(path) in str(caught.value)


def test_unreadable_and_non_yaml_files_are_refused_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("version: [unclosed")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(tmp_path / "broken.yaml")


def test_the_default_policy_loads() -> None:
    policy = load_policy(DEFAULT_POLICY_PATH)
    assert policy.tiers == ("strategic", "key", "standard", "at_risk")
    assert {a.name for a in policy.alerts} >= {"p1_ticket_near_sla_breach", "complaint_burst"}


def test_a_key_account_that_is_service_oriented_mixes_both_by_precedence() -> None:
    policy = load_policy()
    key = policy.segment_for({"segment": "key_account"})
    service = policy.segment_for({"segment": "standard", "customer_type": "service_oriented"})
    both = policy.segment_for({"segment": "key_account", "customer_type": "service_oriented"})
    assert both.name == "key_account+service_oriented"
    # response thresholds and weights from service_oriented (higher priority) ...
    assert both.thresholds["first_response_minutes"] == service.thresholds["first_response_minutes"]
    assert both.thresholds["csat"].good == 4.9 and both.weights["csat"] == 4
    # ... the key-account weights and thresholds everywhere else
    assert both.weights["on_time_delivery_rate"] == key.weights["on_time_delivery_rate"] == 5
    assert both.thresholds["revenue"] == key.thresholds["revenue"]
    assert "order_count" not in both.weights  # key accounts weigh it 0
    # SLAs: key account's P1 of 30 minutes survives, service_oriented sets none
    assert both.sla_us[0] == 30 * 60_000_000


def test_unknown_or_missing_profiles_take_the_default_segment() -> None:
    policy = load_policy()
    assert policy.segment_for(None).name == "standard"
    assert policy.segment_for({"segment": "no-such-segment"}).name == "standard"


def test_an_overlay_replaces_the_tier_table_whole() -> None:
    policy = parse_policy(
        {
            "version": "1",
            "tiers": ["a", "b", "c"],
            "default_segment": "base",
            "segments": {
                "base": {
                    "weights": {"csat": 1},
                    "kpis": {"csat": {"good": 5, "bad": 1}},
                    "tiers": {"a": 80, "b": 50, "c": 0},
                },
                "vip": {"tiers": {"a": 60, "b": 30, "c": 0}, "hysteresis": 1},
            },
        }
    )
    assert policy.segment_for({"segment": "vip"}).tier_minimums == (("a", 60), ("b", 30), ("c", 0))
    assert policy.segment_for({"segment": "vip"}).hysteresis == 1


def test_a_policy_file_over_one_mebibyte_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (1024 * 1024) + "\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="more than the limit"):
        load_policy(big)


def test_the_segment_cache_is_bounded_by_the_policy_not_by_the_profiles() -> None:
    policy = load_policy()
    for n in range(2_000):  # distinct profiles, as producers may send them
        policy.segment_for({"segment": "key_account" if n % 2 else f"other-{n}", "name": f"c{n}"})
    assert len(policy._resolved) == 2  # key_account, and the default segment
