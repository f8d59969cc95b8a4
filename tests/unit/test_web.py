"""The HTTP pages' decisions, without a server: the token, paging, readiness, the rollups' revenue
at risk."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from models.policy import load_policy
from sinks.metrics import ScorerMetrics
from sinks.rollups import rollup_json
from streams.settings import Settings
from streams.web import add_web_views, authorised, is_ready, page_of
from tests.unit.builders import Pages


def test_the_token_is_asked_for_only_when_one_is_set_and_must_match_whole() -> None:
    assert authorised(None, None) and authorised("Bearer x", None)
    assert authorised("Bearer s3cret", "Bearer s3cret")
    assert not authorised(None, "Bearer s3cret")
    assert not authorised("Bearer s3cre", "Bearer s3cret")
    assert not authorised("Bearer s3cret2", "Bearer s3cret")


def test_pages_of_customer_ids_follow_their_cursor_to_the_end_once_each() -> None:
    found = [f"c{n:02d}" for n in range(7)]
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = page_of(found, cursor, 3)
        seen += page
        pages += 1
        if cursor is None:
            break
    assert seen == found and pages == 3
    assert page_of(found[:6], None, 3)[1] == "c02"
    assert page_of(found[:6], "c02", 3) == (["c03", "c04", "c05"], None)  # a full last page ends too
    assert page_of([], None, 3) == ([], None)


def test_ready_unless_redis_is_down_or_a_rebalance_is_under_way() -> None:
    base = {"redis": "up", "rebalancing": False, "alertmanager": "down"}
    assert is_ready(base)  # Alertmanager down does not take the worker out
    assert is_ready({**base, "redis": "off"})
    assert not is_ready({**base, "redis": "down"})
    assert not is_ready({**base, "rebalancing": True})
    behind = {**base, "lag_messages": 5_000}
    assert is_ready(behind)  # the lag counts only with a bound
    assert is_ready(behind, max_lag_messages=5_000) and not is_ready(behind, max_lag_messages=4_999)


class _Web:
    def json(self, value: Any, *, status: int = 200, headers: Any = None) -> Any:
        return {"body": value, "status": status}


class _Request:
    def __init__(self) -> None:
        self.query: dict[str, str] = {}
        self.headers: dict[str, str] = {}


class _Rollups:
    """Two managers' rollup hashes as the script leaves them; one written before revenue per tier."""

    def __init__(self) -> None:
        self.hashes = {
            "王芳": {"revenue": "30.00", "tier:key": "1", "tier:at_risk": "2", "revenue_customers": "3"}
            | {"revenue:tier:key": "10.00", "revenue:tier:at_risk": "20.00"},
            "ana": {"revenue": "5.00", "tier:at_risk": "1"},
        }

    async def rollups(self, dimension: str) -> list[dict[str, Any]]:
        return [{"name": n, **rollup_json(fields, {})} for n, fields in self.hashes.items()]

    async def rollup(self, dimension: str, name: str) -> dict[str, Any] | None:
        return rollup_json(self.hashes[name], {}) if name in self.hashes else None


async def test_the_rollup_pages_add_the_revenue_at_risk_of_the_policy_s_worst_tier() -> None:
    policy, app = load_policy(), Pages()
    metrics = ScorerMetrics(CollectorRegistry(), (*policy.tiers, "unrated"))
    add_web_views(app, Settings(), policy, {}, metrics, _Rollups())  # type: ignore[arg-type]
    listed = (await app.pages["/rollups/{dimension}"](_Web(), _Request(), "account_manager"))["body"]
    assert {r["name"]: r["revenue_at_risk"] for r in listed} == {"王芳": 20.0, "ana": None}
    assert listed[0]["revenue_by_tier"] == {"key": 10.0, "at_risk": 20.0}
    one = (await app.pages["/rollups/{dimension}/{name}"](_Web(), _Request(), "region", "王芳"))["body"]
    assert one["name"] == "王芳" and one["revenue_at_risk"] == 20.0 and one["revenue"] == 30.0
