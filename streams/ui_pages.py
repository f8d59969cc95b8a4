"""What the web UI's pages show, and the HTML of them: pure functions, no Faust, no I/O.

``customer_page`` and ``index_page`` build plain view models from what the worker holds (a
snapshot, the segment that scores it, the profile, the firing alerts, the tier history read from
Redis, the rollups, a name search); ``render_customer``, ``render_index`` and ``render_message``
turn them into HTML with the Jinja templates in ``streams/templates/`` (package data). Every value
is formatted here, so a test (or the browser test) formats a figure the way the page does with
the same function. Autoescaping is on for every template: customer ids, names and account
managers come from producers and are never trusted as markup.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from models.alerts import FiringAlert
from models.evaluation import Snapshot
from models.event_time import to_rfc3339
from models.kpis import KPI_NAMES, KpiName
from models.policy import SegmentPolicy
from models.tiering import UNASSIGNED, UNRATED, composite_score
from sinks.names import PAGE as MATCHES_PAGE
from sinks.names import NameSearch
from sinks.rollups import at_risk_tier, revenue_at_risk

# Shown as percentages; counts as whole numbers; the rest with two decimals.
PERCENT_KPIS = frozenset(
    {
        "on_time_delivery_rate",
        "response_sla_rate",
        "gross_margin_rate",
        "receivables_collection_rate",
        "revenue_growth",
    }
)
WHOLE_KPIS = frozenset({"order_count", "retained"})
NONE = "—"
PAGE_SIZE = 100  # customer ids per page of a tier's list
MAX_ROLLUP_ROWS = 50  # per dimension, most revenue at risk first: names come from producers' profiles
SPARK_WIDTH, SPARK_HEIGHT = 240.0, 48.0


def format_kpi(name: str, value: float | Decimal | int | None) -> str:
    """A KPI value (or a good/bad bound) as the pages show it; the same figure whether it comes
    as a Decimal, a float or the text Redis holds, read with ``float``."""
    if value is None:
        return NONE
    number = float(value)
    if name in PERCENT_KPIS:
        return f"{number * 100:.1f} %"
    if name in WHOLE_KPIS:
        return f"{number:,.0f}"
    return f"{number:,.2f}"


def format_score(score: float | None) -> str:
    return NONE if score is None else f"{score:.1f}"


def customer_href(customer_id: str) -> str:
    """The customer's UI page (every character of the id quoted, "/" too)."""
    return "/ui/customers/" + quote(customer_id, safe="")


@dataclass(frozen=True, slots=True)
class Link:
    label: str
    href: str


@dataclass(frozen=True, slots=True)
class WeightedKpi:
    """A KPI that entered the composite score."""

    name: str
    value: str
    good: str
    bad: str
    score: float  # 0..100
    weight: float
    points_lost: float  # weight × (100 − score) ÷ Σ weights: what it takes off a perfect 100


@dataclass(frozen=True, slots=True)
class OtherKpi:
    name: str
    value: str
    note: str  # why it is not in the score


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    as_of: str
    previous_tier: str
    new_tier: str
    previous_score: str
    score: str
    policy_version: str


@dataclass(frozen=True, slots=True)
class OpenAlert:
    rule: str
    severity: str
    ticket: str  # the alert's subject: the ticket of a rule on one ticket
    kpi: str
    value: str
    threshold: str
    since: str


@dataclass(frozen=True, slots=True)
class CustomerPage:
    customer_id: str
    name: str
    tier: str
    score: str
    segment: str
    policy_version: str
    as_of: str
    weighted: tuple[WeightedKpi, ...]  # weakest first: the most points lost
    others: tuple[OtherKpi, ...]
    history: tuple[HistoryEntry, ...] | None  # None: Redis is off or down (history_note says so)
    history_note: str
    sparkline: str  # SVG polyline points of the score over the changes, oldest first
    alerts: tuple[OpenAlert, ...]
    profile: tuple[tuple[str, str], ...]
    links: tuple[Link, ...]


def customer_page(
    snapshot: Snapshot,
    segment: SegmentPolicy,
    profile: Mapping[str, str] | None,
    alerts: Sequence[FiringAlert],
    history: Sequence[Mapping[str, Any]] | None,
    *,
    history_note: str = "",
    grafana_url: str = "",
    alertmanager_ui_url: str = "",
) -> CustomerPage:
    """The customer page's content. ``history`` is the tier changes newest first, as Redis keeps
    them (None when Redis could not be read: ``history_note`` says why)."""
    score = composite_score(snapshot.kpis, segment)
    total = sum(weight for *_, weight in score.weighted)
    weighted = sorted(
        (
            WeightedKpi(
                name,
                format_kpi(name, value),
                format_kpi(name, segment.thresholds[name].good),
                format_kpi(name, segment.thresholds[name].bad),
                kpi_score,
                weight,
                weight * (100.0 - kpi_score) / total,
            )
            for name, value, kpi_score, weight in score.weighted
        ),
        key=lambda k: (-k.points_lost, k.score, k.name),
    )
    counted = {k.name for k in weighted}
    others = tuple(
        OtherKpi(name, format_kpi(name, getattr(snapshot.kpis, name)), _why_not_counted(name, segment))
        for name in KPI_NAMES
        if name not in counted
    )
    account_manager, region = snapshot.owners
    shown = dict(profile or {})
    changes = tuple(_history_entry(entry) for entry in history) if history is not None else None
    return CustomerPage(
        customer_id=snapshot.customer_id,
        name=shown.get("name", ""),
        tier=snapshot.tier,
        score=format_score(snapshot.score),
        segment=snapshot.segment,
        policy_version=snapshot.policy_version,
        as_of=to_rfc3339(snapshot.as_of),
        weighted=tuple(weighted),
        others=others,
        history=changes,
        history_note=history_note,
        sparkline=sparkline([_number(entry.get("score")) for entry in reversed(history or [])]),
        alerts=tuple(_open_alert(alert) for alert in alerts),
        profile=(
            ("name", shown.get("name") or NONE),
            ("segment", shown.get("segment") or NONE),
            ("customer type", shown.get("customer_type") or NONE),
            ("account manager", account_manager or UNASSIGNED),
            ("region", region or UNASSIGNED),
        ),
        links=_links(snapshot, grafana_url, alertmanager_ui_url),
    )


def _why_not_counted(name: KpiName, segment: SegmentPolicy) -> str:
    weight = segment.weights.get(name, 0.0)
    if weight > 0 and name in segment.thresholds:
        return f"weight {weight:g}: undefined, not counted"
    return "not weighted"


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _history_entry(entry: Mapping[str, Any]) -> HistoryEntry:
    return HistoryEntry(
        as_of=str(entry.get("as_of", "")),
        previous_tier=str(entry.get("previous_tier", UNRATED)),
        new_tier=str(entry.get("new_tier", "")),
        previous_score=format_score(_number(entry.get("previous_score"))),
        score=format_score(_number(entry.get("score"))),
        policy_version=str(entry.get("policy_version", "")),
    )


def sparkline(scores: Sequence[float | None]) -> str:
    """SVG polyline points for scores 0..100, oldest first, over SPARK_WIDTH × SPARK_HEIGHT
    (empty: none to draw). One score is drawn as a short level line."""
    known = [s for s in scores if s is not None]
    if not known:
        return ""
    if len(known) == 1:
        known = known * 2
    step = SPARK_WIDTH / (len(known) - 1)
    return " ".join(
        f"{i * step:.1f},{SPARK_HEIGHT - min(100.0, max(0.0, s)) / 100.0 * SPARK_HEIGHT:.1f}"
        for i, s in enumerate(known)
    )


def _open_alert(alert: FiringAlert) -> OpenAlert:
    if alert.kpi is not None:
        value, threshold = format_kpi(alert.kpi, alert.value), format_kpi(alert.kpi, alert.threshold)
    else:  # a rule on one ticket: minutes left before its SLA deadline, and the rule's lead
        left = alert.value
        value = f"{left:,.0f} min left" if left >= 0 else f"{-left:,.0f} min past the deadline"
        threshold = f"{alert.threshold:g} min before the deadline"
    return OpenAlert(
        rule=alert.rule,
        severity=alert.severity,
        ticket=alert.subject or NONE,
        kpi=alert.kpi or NONE,
        value=value,
        threshold=threshold,
        since=to_rfc3339(alert.fired_as_of),
    )


def _links(snapshot: Snapshot, grafana_url: str, alertmanager_ui_url: str) -> tuple[Link, ...]:
    links = []
    if grafana_url:
        dashboard = f"{grafana_url.rstrip('/')}/d/tierpulse-business"
        links.append(
            Link("Grafana: business dashboard", f"{dashboard}?{urlencode({'var-segment': snapshot.segment})}")
        )
    if alertmanager_ui_url:
        # A label matcher's value is a double-quoted string with backslash escapes, as JSON's.
        matcher = "{customer_id=" + json.dumps(snapshot.customer_id, ensure_ascii=False) + "}"
        alerts = f"{alertmanager_ui_url.rstrip('/')}/#/alerts"
        links.append(
            Link("Alertmanager: this customer's alerts", f"{alerts}?{urlencode({'filter': matcher})}")
        )
    return tuple(links)


@dataclass(frozen=True, slots=True)
class TierCount:
    tier: str
    customers: int | None  # None: Redis could not be read
    href: str


@dataclass(frozen=True, slots=True)
class RollupRow:
    name: str
    revenue: str
    revenue_at_risk: str  # of its customers in the worst tier ("—": not known yet)
    at_risk_revenue: bool  # some revenue is at risk: shown as the at-risk column is
    mean_score: str
    tiers: tuple[int, ...]  # customers per tier, in RollupTable.tiers order
    alerts: int  # open alerts, all severities


@dataclass(frozen=True, slots=True)
class RollupTable:
    dimension: str
    tiers: tuple[str, ...]
    at_risk: str  # the worst tier: its column is the one to watch
    rows: tuple[RollupRow, ...]  # the most revenue at risk first, then the most revenue
    more: int  # rollups past MAX_ROLLUP_ROWS, not shown


@dataclass(frozen=True, slots=True)
class TierListing:
    tier: str
    customers: tuple[Link, ...]
    cursor: str  # of this page ("" for the first)
    next_href: str  # "" on the last page


@dataclass(frozen=True, slots=True)
class NameMatchRow:
    name: str
    customer_id: str
    href: str


@dataclass(frozen=True, slots=True)
class IndexPage:
    tiers: tuple[TierCount, ...]
    query: str
    search_note: str
    search_link: Link | None
    matches: tuple[NameMatchRow, ...]  # the customers whose name starts with the query
    matches_from: int  # the first match's position (0: the first page)
    matches_next_href: str  # "" on the last page
    listing: TierListing | None
    rollups: tuple[RollupTable, ...]
    note: str  # why figures are missing (Redis off or down)


def index_page(
    tiers: Sequence[str],
    rollups: Mapping[str, Sequence[Mapping[str, Any]]] | None,
    *,
    query: str = "",
    found: bool | None = None,
    search: NameSearch | None = None,
    search_from: int = 0,
    listing: tuple[str, Sequence[str], str | None, str | None] | None = None,
    note: str = "",
) -> IndexPage:
    """The overview: customers per tier (summed over the region rollups: each customer is in
    exactly one), a search result, one tier's page of ids, the rollups by dimension.

    ``tiers``: best first, ``unrated`` included; ``rollups``: dimension -> its rollups (None:
    Redis could not be read); ``found``: whether the searched id has a snapshot (None: unknown);
    ``search``: the page of customers whose name starts with the query that starts at the
    ``search_from``-th; ``listing``: (tier, this page's ids, this page's cursor, the next page's
    cursor)."""
    counts: dict[str, int] | None = None
    if rollups is not None:
        counts = dict.fromkeys(tiers, 0)
        for rollup in rollups.get("region", ()):
            for tier, n in rollup.get("tiers", {}).items():
                counts[tier] = counts.get(tier, 0) + int(n)
    shown_tiers = tuple(tiers) + tuple(t for t in (counts or {}) if t not in tiers)
    at_risk = at_risk_tier(tiers)
    matches = search.matches if search is not None else ()
    search_note, search_link = "", None
    if query and found is None:
        search_note = "Redis cannot tell which customers exist now; the customer's page may."
        search_link = Link(query, customer_href(query))
    elif query and found:
        search_note, search_link = "The customer with this id:", Link(query, customer_href(query))
    elif query and not matches:
        search_note = f"No customer {query} has a snapshot, and no customer name starts with it."
        if search_from:
            search_note = f"No more customers whose name starts with {query}."
    return IndexPage(
        tiers=tuple(
            TierCount(t, None if counts is None else counts.get(t, 0), "/ui?" + urlencode({"tier": t}))
            for t in shown_tiers
        ),
        query=query,
        search_note=search_note,
        search_link=search_link,
        matches=tuple(NameMatchRow(m.name, m.customer_id, customer_href(m.customer_id)) for m in matches),
        matches_from=search_from,
        matches_next_href=(
            "/ui?" + urlencode({"q": query, "from": search_from + MATCHES_PAGE})
            if search is not None and search.more
            else ""
        ),
        listing=None if listing is None else _listing(*listing),
        rollups=tuple(
            _rollup_table(dimension, found_rollups, shown_tiers, at_risk)
            for dimension, found_rollups in (rollups or {}).items()
        ),
        note=note,
    )


def _listing(tier: str, ids: Sequence[str], cursor: str | None, next_cursor: str | None) -> TierListing:
    return TierListing(
        tier=tier,
        customers=tuple(Link(c, customer_href(c)) for c in ids),
        cursor=cursor or "",
        next_href="" if next_cursor is None else "/ui?" + urlencode({"tier": tier, "cursor": next_cursor}),
    )


def _rollup_table(
    dimension: str, rollups: Sequence[Mapping[str, Any]], tiers: tuple[str, ...], at_risk: str
) -> RollupTable:
    def ranked(r: Mapping[str, Any]) -> tuple[float, float, str]:
        # Not known yet (written before revenue per tier was kept) ranks as none at risk.
        return -(revenue_at_risk(r, at_risk) or 0.0), -float(r.get("revenue") or 0), str(r["name"])

    def row(r: Mapping[str, Any]) -> RollupRow:
        risked = revenue_at_risk(r, at_risk)
        return RollupRow(
            name=str(r["name"]),
            revenue=f"{float(r.get('revenue') or 0):,.2f}",
            revenue_at_risk=NONE if risked is None else f"{risked:,.2f}",
            at_risk_revenue=bool(risked),
            mean_score=format_score(r.get("mean_score")),
            tiers=tuple(int(r.get("tiers", {}).get(t, 0)) for t in tiers),
            alerts=sum(int(n) for n in r.get("alerts", {}).values()),
        )

    rows = tuple(row(r) for r in sorted(rollups, key=ranked)[:MAX_ROLLUP_ROWS])
    return RollupTable(dimension, tiers, at_risk, rows, max(0, len(rollups) - MAX_ROLLUP_ROWS))


@functools.cache
def _templates() -> Environment:
    return Environment(
        loader=PackageLoader("streams", "templates"),
        # Every template is HTML: escape whatever the name, so no page can forget it.
        autoescape=select_autoescape(("html",), default_for_string=True, default=True),
        undefined=StrictUndefined,  # a misspelt field fails the render (and its test), never blank
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_customer(page: CustomerPage) -> str:
    return _templates().get_template("customer.html").render(page=page, spark=(SPARK_WIDTH, SPARK_HEIGHT))


def render_index(page: IndexPage) -> str:
    return _templates().get_template("index.html").render(page=page)


def render_message(title: str, message: str) -> str:
    """A page that says one thing: not found, a token needed, Redis down."""
    return _templates().get_template("message.html").render(title=title, message=message)
