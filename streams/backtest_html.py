"""The backtest as one self-contained HTML page: read at a glance, opened anywhere, no network.

Two stacked-area charts (customers per tier at the end of each day, baseline and candidate, on
one scale), the transition matrix shaded by count, the flapping and alert figures, and the
customers that end in another tier with the KPIs that moved them. Plain inline SVG: a chart
library would bring a megabyte of script for two charts.
"""

from __future__ import annotations

from html import escape
from typing import Any

from streams.backtest_report import why

PALETTE = ("#2e7d32", "#1565c0", "#9e9e9e", "#c62828", "#6a1b9a", "#ef6c00", "#00838f")
UNRATED_COLOUR = "#e0e0e0"
WIDTH, HEIGHT, MARGIN = 640, 240, 40


def render(summary: dict[str, Any]) -> str:
    tiers = summary["tiers"]
    colours = {
        t: (UNRATED_COLOUR if t == "unrated" else PALETTE[i % len(PALETTE)]) for i, t in enumerate(tiers)
    }
    daily = summary["daily"]
    top = max(
        (sum(v for k, v in day.items() if k != "day") for run in daily.values() for day in run), default=1
    )
    versions = {name: p["version"] for name, p in summary["policies"].items()}
    charts = "".join(
        f"<figure><figcaption>{escape(name)} — policy {escape(versions[name])}</figcaption>"
        f"{_stacked(daily[name], tiers, colours, max(top, 1))}</figure>"
        for name in ("baseline", "candidate")
    )
    legend = " ".join(f'<span class="key" style="background:{colours[t]}"></span>{escape(t)}' for t in tiers)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>TierPulse backtest</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }}
figure {{ display: inline-block; margin: 0 2em 1em 0; }} figcaption {{ font-weight: 600; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
th {{ background: #f5f5f5; }} td.name {{ text-align: left; }}
.key {{ display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; vertical-align: middle; }}
</style></head><body>
<h1>Backtest: {escape(versions["baseline"])} → {escape(versions["candidate"])}</h1>
<p>{summary["events"]:,} events, {summary["customers"]:,} customers.
{len(summary["differing"]):,} customers end in another tier.</p>
<h2>Customers per tier at the end of each day (event time)</h2>
<p>{legend}</p>
{charts}
<h2>Final tier: baseline (rows) to candidate (columns)</h2>
{_matrix(summary["transitions"], tiers)}
<h2>Promoting the candidate now</h2>
{_promotion(summary["promotion"])}
<h2>Flapping and alerts</h2>
{_figures(summary)}
<h2>Customers that end in another tier</h2>
{_differing(summary["differing"])}
</body></html>
"""


def _stacked(days: list[dict[str, Any]], tiers: list[str], colours: dict[str, str], top: int) -> str:
    if not days:
        return "<p>no tier changes</p>"
    inner_w, inner_h = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN
    step = inner_w / max(len(days) - 1, 1)

    def x(i: int) -> float:
        return MARGIN + i * step

    def y(value: float) -> float:
        return MARGIN + inner_h - value / top * inner_h

    below = [0.0] * len(days)
    shapes = []
    for tier in reversed(tiers):  # the worst tier at the bottom
        above = [below[i] + day.get(tier, 0) for i, day in enumerate(days)]
        upper = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(above))
        lower = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in reversed(list(enumerate(below))))
        shapes.append(
            f'<polygon points="{upper} {lower}" fill="{colours[tier]}">'
            f"<title>{escape(tier)}</title></polygon>"
        )
        below = above
    axis = (
        f'<text x="{MARGIN}" y="{HEIGHT - 12}">{escape(days[0]["day"])}</text>'
        f'<text x="{WIDTH - MARGIN}" y="{HEIGHT - 12}" text-anchor="end">{escape(days[-1]["day"])}</text>'
        f'<text x="{MARGIN - 6}" y="{MARGIN + 4}" text-anchor="end">{top}</text>'
        f'<text x="{MARGIN - 6}" y="{MARGIN + inner_h}" text-anchor="end">0</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'font-size="11" role="img">{"".join(shapes)}{axis}</svg>'
    )


def _matrix(transitions: dict[str, dict[str, int]], tiers: list[str]) -> str:
    top = max((n for row in transitions.values() for n in row.values()), default=1)
    head = "<tr><th></th>" + "".join(f"<th>{escape(t)}</th>" for t in tiers) + "</tr>"
    rows = []
    for source in tiers:
        cells = []
        for target in tiers:
            n = transitions.get(source, {}).get(target, 0)
            shade = 0.08 + 0.6 * n / top if n else 0
            colour = "46,125,50" if source == target else "198,40,40"
            cells.append(f'<td style="background:rgba({colour},{shade:.2f})">{n}</td>')
        rows.append(f"<tr><th>{escape(source)}</th>{''.join(cells)}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _figures(summary: dict[str, Any]) -> str:
    flap = summary["flapping"]
    labels = {
        "tier_changes": "tier changes",
        "after_first_rating": "changes after the first rating",
        "per_customer_per_30_days": "per customer per 30 days",
        "customers_changing_3_times_or_more": "customers changing 3 times or more",
    }
    rows = [
        f'<tr><td class="name">{label}</td><td>{flap["baseline"][key]}</td>'
        f"<td>{flap['candidate'][key]}</td></tr>"
        for key, label in labels.items()
    ]
    alerts = summary["alerts"]
    for rule in sorted(alerts["baseline"].keys() | alerts["candidate"].keys()):
        rows.append(
            f'<tr><td class="name">alerts fired: {escape(rule)}</td>'
            f"<td>{alerts['baseline'].get(rule, 0)}</td><td>{alerts['candidate'].get(rule, 0)}</td></tr>"
        )
    return f"<table><tr><th></th><th>baseline</th><th>candidate</th></tr>{''.join(rows)}</table>"


def _differing(differing: list[dict[str, Any]], shown: int = 200) -> str:
    if not differing:
        return "<p>none</p>"
    rows = []
    for d in differing[:shown]:
        moved = escape(why(d))
        rows.append(
            f'<tr><td class="name">{escape(d["customer_id"])}</td>'
            f'<td class="name">{escape(d["segment"])}</td>'
            f"<td>{escape(d['baseline_tier'])}</td><td>{escape(d['candidate_tier'])}</td>"
            f'<td class="name">{moved}</td></tr>'
        )
    more = f"<p>… and {len(differing) - shown} more in the CSV.</p>" if len(differing) > shown else ""
    names = ("customer", "segment", "baseline", "candidate", "why")
    head = "<tr>" + "".join(f"<th>{name}</th>" for name in names) + "</tr>"
    return f"<table>{head}{''.join(rows)}</table>{more}"


def _promotion(promotion: dict[str, Any]) -> str:
    """Each customer keeps its tier and the candidate decides from there: what the CRM receives."""
    rows = "".join(
        f"<tr><td>{escape(m['from'])}</td><td>{escape(m['to'])}</td><td>{m['customers']}</td></tr>"
        for m in promotion["from_to"]
    )
    total = (
        f"<p>{promotion['tier_changes']} tier changes (each customer keeps its tier; hysteresis applies).</p>"
    )
    return total + (
        f"<table><tr><th>from</th><th>to</th><th>customers</th></tr>{rows}</table>" if rows else ""
    )
