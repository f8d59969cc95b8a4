"""Alert noise on the demo backfill: what an on-call person would receive (issue #18).

The demo's backfill (300 customers, 35 days, messy) read as a worker reads a backlog (the
real pipeline, simulated topics: tests/bench/catchup.py), once with the default policy and
once with every rule given a hold-down (``for``). For each:

* alert records (firing and resolved) per customer per hour of event time;
* zero-duration alerts: resolved at the same ``as_of`` as they fired;
* re-fires: the same customer, rule and subject firing again within an hour of resolving;
* customer/rule pairs that fired 5 times or more, and how many subjects those firings had;
* P1 ticket firings more than a day past the SLA deadline.

    python -m tests.bench alerts [--customers 300] [--days 35]
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from models.alerts import AlertEvent
from models.event_time import MICROS_PER_DAY
from models.policy import DEFAULT_POLICY_PATH, Policy, load_policy, parse_policy
from tests.bench.catchup import _placed, _Replay, read_as_backlog

HOUR_US = MICROS_PER_DAY // 24
HOLD_DOWNS = {"ticket": "10m", "kpi": "1h"}  # the hold-down variant: on every rule of its kind


def held_down_policy() -> Policy:
    import yaml

    raw = yaml.safe_load(Path(DEFAULT_POLICY_PATH).read_text(encoding="utf-8"))
    for rule in raw["alerts"]:
        rule["for"] = HOLD_DOWNS["ticket" if "ticket" in rule else "kpi"]
    raw["version"] += "+hold-downs"
    return parse_policy(raw, "default policy with hold-downs")


def figures(alerts: list[AlertEvent], customers: int, days: float) -> dict[str, Any]:
    fired_at: dict[str, AlertEvent] = {}
    last_resolved: dict[tuple[str, str, str | None], int] = {}
    zero, refires, past_a_day = 0, 0, 0
    per_pair: Counter[tuple[str, str]] = Counter()
    subjects: defaultdict[tuple[str, str], set[str | None]] = defaultdict(set)
    for alert in alerts:
        what = (alert.customer_id, alert.rule, alert.subject)
        if alert.state == "firing":
            fired_at[alert.alert_id] = alert
            per_pair[(alert.customer_id, alert.rule)] += 1
            subjects[(alert.customer_id, alert.rule)].add(alert.subject)
            resolved = last_resolved.get(what)
            if resolved is not None and alert.as_of - resolved <= HOUR_US:
                refires += 1
            if alert.subject is not None and alert.rule.startswith("p1") and alert.value < -24 * 60:
                past_a_day += 1
        else:
            fired = fired_at.pop(alert.alert_id, None)
            if fired is not None and fired.as_of == alert.as_of:
                zero += 1
            last_resolved[what] = alert.as_of
    noisy = [pair for pair, n in per_pair.items() if n >= 5]
    return {
        "alert_records": len(alerts),
        "firings": sum(per_pair.values()),
        "records_per_customer_hour": round(len(alerts) / customers / (days * 24), 4),
        "zero_duration": zero,
        "refires_within_1h": refires,
        "pairs_firing_5_times_or_more": len(noisy),
        "of_which_on_one_subject": sum(1 for pair in noisy if len(subjects[pair]) == 1),
        "p1_firings_over_a_day_past_deadline": past_a_day,
        "firing_at_the_end": len(fired_at),
    }


def run(customers: int, days: float) -> dict[str, Any]:
    placed = _placed(customers, days)
    results: dict[str, Any] = {"customers": customers, "days": days, "messages": len(placed)}
    for name, policy in (("default policy", load_policy()), ("with hold-downs", held_down_policy())):
        replay = read_as_backlog(_Replay(held_back=True, policy=policy), placed)
        results[name] = figures(replay.alerts, customers, days)
    return results


def report(r: dict[str, Any]) -> str:
    variants = ("default policy", "with hold-downs")
    lines = [
        f"alert noise: demo backfill, {r['customers']} customers, {r['days']} days, "
        f"{r['messages']} messages, read as a backlog",
        f"  hold-downs: tickets {HOLD_DOWNS['ticket']}, KPI rules {HOLD_DOWNS['kpi']}",
        f"  {'':40}" + "".join(f"{v:>18}" for v in variants),
    ]
    for key in r[variants[0]]:
        lines.append(f"  {key.replace('_', ' '):40}" + "".join(f"{r[v][key]:>18}" for v in variants))
    return "\n".join(lines)


def main(customers: int, days: float, json_path: str | None = None) -> None:
    logging.getLogger("tierpulse").setLevel(logging.ERROR)  # the demo's malformed messages
    results = run(customers, days)
    print(report(results))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(results, indent=2))
