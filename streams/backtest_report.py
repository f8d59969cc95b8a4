"""What a policy review reads: the baseline and the candidate over the same stream, side by side.

``compare`` turns two policy runs (streams/backtest.py) into one plain summary (JSON-ready):
customers per tier at the end (all, and per segment) and at the end of each day of event time,
the transition matrix from the baseline's final tier to the candidate's, the customers whose
final tier differs with the KPIs that moved them (the difference in each KPI's points of the
composite score), tier changes per customer per 30 days (flapping), and alerts fired per rule.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from models.event_time import MICROS_PER_DAY
from models.state import CustomerState, TierStatus
from models.tiering import UNRATED, KpiReason, composite_score, next_tier, warming_up
from streams.backtest import PolicyRun

MOVED_BY = 3  # KPIs named per customer that changed tier


def compare(baseline: PolicyRun, candidate: PolicyRun, events: int) -> dict[str, Any]:
    runs = {"baseline": baseline, "candidate": candidate}
    customers = sorted(baseline.final.keys() | candidate.final.keys())
    tiers = list(dict.fromkeys([*baseline.policy.tiers, *candidate.policy.tiers, UNRATED]))
    span = _span(baseline, candidate)
    differing = [
        _outcome(c, baseline, candidate) for c in customers if _tier(baseline, c) != _tier(candidate, c)
    ]
    return {
        "events": events,
        "invalid": baseline.invalid,
        "customers": len(customers),
        "tiers": tiers,
        "policies": {name: {"version": run.policy.version} for name, run in runs.items()},
        "final": {name: _counted(run, customers) for name, run in runs.items()},
        "final_by_segment": {name: _by_segment(run) for name, run in runs.items()},
        "daily": {name: _daily(run, span) for name, run in runs.items()},
        "transitions": _transitions(baseline, candidate, customers),
        "differing": differing,
        "flapping": {name: _flapping(run, span) for name, run in runs.items()},
        "promotion": _promotion(baseline, candidate, customers),
        "alerts": {name: dict(sorted(run.alerts.items())) for name, run in runs.items()},
    }


def _tier(run: PolicyRun, customer_id: str) -> str:
    snapshot = run.final.get(customer_id)
    return UNRATED if snapshot is None else snapshot.tier


def _counted(run: PolicyRun, customers: list[str]) -> dict[str, int]:
    return dict(Counter(_tier(run, c) for c in customers))


def _by_segment(run: PolicyRun) -> dict[str, dict[str, int]]:
    found: dict[str, Counter[str]] = {}
    for snapshot in run.final.values():
        found.setdefault(snapshot.segment, Counter())[snapshot.tier] += 1
    return {segment: dict(counts) for segment, counts in sorted(found.items())}


def _span(*runs: PolicyRun) -> tuple[int, int] | None:
    instants = [change.as_of for run in runs for change in run.changes]
    return (min(instants), max(instants)) if instants else None


def _daily(run: PolicyRun, span: tuple[int, int] | None) -> list[dict[str, Any]]:
    """Customers per tier at the end of each day (UTC) of event time."""
    if span is None:
        return []
    changes = sorted(run.changes, key=lambda change: change.as_of)
    current: dict[str, str] = {}
    days, at = [], 0
    for day in range(span[0] // MICROS_PER_DAY, span[1] // MICROS_PER_DAY + 1):
        end = (day + 1) * MICROS_PER_DAY
        while at < len(changes) and changes[at].as_of < end:
            current[changes[at].customer_id] = changes[at].new_tier
            at += 1
        date = datetime.fromtimestamp(day * 86_400, UTC).date().isoformat()
        days.append({"day": date, **Counter(current.values())})
    return days


def _promotion(baseline: PolicyRun, candidate: PolicyRun, customers: list[str]) -> dict[str, Any]:
    """What promoting the candidate now would emit: each customer keeps its tier (the baseline's)
    and the candidate decides from there at its score, with its bands and hysteresis (contract §4)."""
    moves: Counter[tuple[str, str]] = Counter()
    for customer in customers:
        snapshot, stored = candidate.final.get(customer), candidate.tables.customer(customer)
        if snapshot is None or snapshot.score is None or stored is None:
            continue
        before = _tier(baseline, customer)
        state = CustomerState.from_bytes(stored)
        segment = state.segment(candidate.policy)
        unrated = TierStatus(first_seen=state.status.first_seen)  # as the baseline left it
        if before == UNRATED and warming_up(unrated, segment, snapshot.as_of):
            continue  # not rated yet under the candidate either: no change to emit
        after = next_tier(None if before == UNRATED else before, snapshot.score, segment)
        if after != before:
            moves[(before, after)] += 1
    return {
        "tier_changes": sum(moves.values()),
        "from_to": [{"from": a, "to": b, "customers": n} for (a, b), n in sorted(moves.items())],
    }


def _transitions(
    baseline: PolicyRun, candidate: PolicyRun, customers: list[str]
) -> dict[str, dict[str, int]]:
    matrix: dict[str, Counter[str]] = {}
    for customer in customers:
        matrix.setdefault(_tier(baseline, customer), Counter())[_tier(candidate, customer)] += 1
    return {tier: dict(row) for tier, row in matrix.items()}


def _flapping(run: PolicyRun, span: tuple[int, int] | None) -> dict[str, float]:
    """Tier changes after the first rating, per rated customer per 30 days of event time."""
    moves = [change for change in run.changes if change.previous_tier != UNRATED]
    rated = {change.customer_id for change in run.changes}
    days = max((span[1] - span[0]) / MICROS_PER_DAY, 1.0) if span else 1.0
    per_customer = Counter(change.customer_id for change in moves)
    return {
        "tier_changes": len(run.changes),
        "after_first_rating": len(moves),
        "per_customer_per_30_days": round(len(moves) / max(len(rated), 1) / (days / 30), 3),
        "customers_changing_3_times_or_more": sum(1 for n in per_customer.values() if n >= 3),
    }


def _outcome(customer_id: str, baseline: PolicyRun, candidate: PolicyRun) -> dict[str, Any]:
    """A customer whose final tier differs: its scores, the KPIs whose points of the score moved
    most (weights or good/bad values changed), and its weakest KPIs under the candidate (where
    it loses the most points: what a changed tier band catches)."""
    reasons = {name: _reasons(run, customer_id) for name, run in (("b", baseline), ("c", candidate))}
    points = {name: {r.kpi: r.contribution for r in found} for name, found in reasons.items()}
    kpis = points["b"].keys() | points["c"].keys()
    moved = {k: points["c"].get(k, 0.0) - points["b"].get(k, 0.0) for k in kpis}
    top = sorted(moved.items(), key=lambda item: -abs(item[1]))[:MOVED_BY]
    total = sum(r.weight for r in reasons["c"]) or 1.0
    lost = sorted(((r.weight * (100 - r.score) / total, r.kpi, r.value) for r in reasons["c"]), reverse=True)
    snapshots = {name: run.final.get(customer_id) for name, run in (("b", baseline), ("c", candidate))}
    return {
        "customer_id": customer_id,
        "segment": next((s.segment for s in snapshots.values() if s is not None), ""),
        "baseline_tier": _tier(baseline, customer_id),
        "baseline_score": None if snapshots["b"] is None else snapshots["b"].score,
        "candidate_tier": _tier(candidate, customer_id),
        "candidate_score": None if snapshots["c"] is None else snapshots["c"].score,
        "moved_by": [{"kpi": kpi, "points": round(delta, 2)} for kpi, delta in top if abs(delta) >= 0.005],
        "weakest": [
            {"kpi": kpi, "value": value, "points_lost": round(points, 2)}
            for points, kpi, value in lost[:MOVED_BY]
            if points > 0
        ],
    }


def _reasons(run: PolicyRun, customer_id: str) -> tuple[KpiReason, ...]:
    """How each weighted KPI entered the customer's composite score under the run's policy."""
    snapshot, stored = run.final.get(customer_id), run.tables.customer(customer_id)
    if snapshot is None or stored is None:
        return ()
    segment = CustomerState.from_bytes(stored).segment(run.policy)
    return composite_score(snapshot.kpis, segment).reasons


def to_text(summary: dict[str, Any], shown: int = 20) -> str:
    tiers, final = summary["tiers"], summary["final"]
    versions = {name: p["version"] for name, p in summary["policies"].items()}
    lines = [
        f"backtest: {summary['events']:,} events ({summary['invalid']:,} invalid), "
        f"{summary['customers']:,} customers; "
        f"baseline {versions['baseline']}, candidate {versions['candidate']}",
        "",
        f"  {'tier at the end':<22}{'baseline':>10}{'candidate':>11}",
    ]
    for tier in tiers:
        lines.append(f"  {tier:<22}{final['baseline'].get(tier, 0):>10}{final['candidate'].get(tier, 0):>11}")
    lines += [
        "",
        "  from baseline (rows) to candidate (columns):",
        "  " + " " * 12 + "".join(f"{t:>11}" for t in tiers),
    ]
    for tier in tiers:
        row = summary["transitions"].get(tier, {})
        lines.append(f"  {tier:<12}" + "".join(f"{row.get(t, 0):>11}" for t in tiers))
    flap = summary["flapping"]
    lines += [
        "",
        f"  {'':<36}{'baseline':>10}{'candidate':>11}",
        *(
            f"  {label:<36}{flap['baseline'][key]:>10}{flap['candidate'][key]:>11}"
            for label, key in (
                ("tier changes", "tier_changes"),
                ("changes after the first rating", "after_first_rating"),
                ("per customer per 30 days", "per_customer_per_30_days"),
                ("customers changing 3+ times", "customers_changing_3_times_or_more"),
            )
        ),
    ]
    rules = sorted(summary["alerts"]["baseline"].keys() | summary["alerts"]["candidate"].keys())
    lines += [
        f"  alerts fired: {rule:<28}{summary['alerts']['baseline'].get(rule, 0):>6}"
        f"{summary['alerts']['candidate'].get(rule, 0):>11}"
        for rule in rules
    ]
    promotion = summary["promotion"]
    moves = ", ".join(f"{m['from']} -> {m['to']} {m['customers']}" for m in promotion["from_to"])
    lines += [
        "",
        f"  promoting the candidate now: {promotion['tier_changes']} tier changes"
        + (f" ({moves})" if moves else ""),
    ]
    differing = summary["differing"]
    lines += ["", f"  {len(differing)} customers end in another tier" + (":" if differing else "")]
    for d in differing[:shown]:
        lines.append(
            f"    {d['customer_id']:<16} {d['baseline_tier']:>10} -> {d['candidate_tier']:<10} {why(d)}"
        )
    if len(differing) > shown:
        lines.append(f"    … and {len(differing) - shown} more (CSV)")
    return "\n".join(lines)


def why(d: dict[str, Any]) -> str:
    """One line on a customer that ends in another tier: scores, what moved, what is weakest."""
    scores = f"score {_score(d['baseline_score'])} -> {_score(d['candidate_score'])}"
    moved = ", ".join(f"{m['kpi']} {m['points']:+.1f}" for m in d["moved_by"])
    weakest = ", ".join(f"{w['kpi']}={w['value']:.3g} (-{w['points_lost']:.1f})" for w in d["weakest"])
    return "; ".join(
        part for part in (scores, moved and f"moved by {moved}", weakest and f"weakest {weakest}") if part
    )


def _score(score: float | None) -> str:
    return "-" if score is None else f"{score:.1f}"


def to_csv(summary: dict[str, Any]) -> str:
    """One row per customer whose final tier differs."""
    out = io.StringIO()
    writer = csv.writer(out)
    fields = (
        "customer_id",
        "segment",
        "baseline_tier",
        "baseline_score",
        "candidate_tier",
        "candidate_score",
    )
    writer.writerow([*fields, "why"])
    for d in summary["differing"]:
        writer.writerow([*(d[f] for f in fields), why(d)])
    return out.getvalue()
