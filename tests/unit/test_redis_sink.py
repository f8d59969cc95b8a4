"""What the Redis sink keeps while it waits, and what it sends and reads back: the name index's
members and ranges, the rollups' revenue per tier (no Redis needed: nothing is flushed here)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from sinks.names import NameMatch, index_member, lex_range, name_of, parse_member, search_key
from sinks.redis import RedisSnapshotSink
from sinks.rollups import at_risk_tier, contribution, revenue_at_risk, rollup_json
from tests.integration.test_rollups import _snapshot


def test_waiting_snapshots_of_a_revoked_partition_are_dropped_and_the_others_kept() -> None:
    sink, rng = RedisSnapshotSink("redis://127.0.0.1:1/0", "t:"), random.Random(1)
    sink.add(_snapshot(rng, "a"), 0)
    sink.add(_snapshot(rng, "b"), 1)
    sink.add(_snapshot(rng, "c"), 1)
    assert sink.waiting == 3
    sink.forget({1})  # the partition moved to another worker while Redis was down
    assert sink.waiting == 1


def test_a_name_is_searched_casefolded_full_width_as_narrow_and_chinese_as_it_is() -> None:
    assert search_key("  ACME   Trading ") == "acme trading"
    assert search_key("Ｓtraße") == search_key("STRASSE") == "strasse"
    assert search_key("王芳") == "王芳" and search_key("\x00") == ""
    member = index_member("王\x00芳 ", "客户\x00-1")  # NUL dropped from the name, the id kept whole
    assert member == "王芳\x00王芳\x00客户\x00-1"
    assert parse_member(member.encode()) == NameMatch("客户\x00-1", "王芳")
    assert index_member(" \x00 ", "c1") == "" and lex_range(" ") is None


@given(names=st.lists(st.text(max_size=12), max_size=30), query=st.text(min_size=1, max_size=4))
def test_the_lex_range_of_a_query_holds_exactly_the_names_that_start_with_it(
    names: list[str], query: str
) -> None:
    """ZRANGEBYLEX, as Redis compares members (bytes), against the brute-force prefix test."""
    members = sorted({index_member(name, f"c{n}").encode() for n, name in enumerate(names)} - {b""})
    bounds = lex_range(query)
    if bounds is None:
        assert search_key(query) == ""
        return
    low, high = (bound.removeprefix(b"[") for bound in bounds)
    found = [parse_member(m).customer_id for m in members if low <= m <= high]
    key = search_key(query)
    expected = sorted(
        (search_key(name), name.replace("\x00", "").strip(), f"c{n}")
        for n, name in enumerate(names)
        if search_key(name).startswith(key)
    )
    assert found == [customer for _, _, customer in expected]


def test_the_contribution_carries_the_name_member_last_and_the_json_the_revenue_per_tier() -> None:
    snapshot = _snapshot(random.Random(2), "c1")
    assert contribution(snapshot)[-1] == index_member(name_of(snapshot), "c1")
    fields = {"revenue": "30.00", "tier:key": "2", "tier:at_risk": "1", "revenue:tier:at_risk": "10.50"}
    fields |= {"revenue:tier:key": "19.50", "revenue_customers": "3"}
    rollup = rollup_json(fields, {})
    assert rollup["revenue_by_tier"] == {"key": 19.5, "at_risk": 10.5}
    assert revenue_at_risk(rollup, at_risk_tier(("strategic", "key", "at_risk", "unrated"))) == 10.5
    assert revenue_at_risk(rollup, "strategic") == 0.0
    # One customer written before revenue per tier was kept: unknown, not a wrong sum.
    earlier = rollup_json({**fields, "revenue_customers": "2"}, {})
    assert earlier["revenue_by_tier"] is None and revenue_at_risk(earlier, "at_risk") is None
    assert at_risk_tier(("unrated",)) == "unrated"
