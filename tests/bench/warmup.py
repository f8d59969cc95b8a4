"""How much a warm-up calms first ratings: the demo's month, scored in event-time order under
the default policy with several ``warmup_days``, counting tier changes.

Every customer starts the month without history, so every one gets a first rating in it; the
changes that follow within 14 days of it are the flapping a warm-up is meant to damp. Customers
are evaluated after each of their events and when due (the schedule the live sweep follows).

    python -m tests.bench warmup [--customers 200]
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from models.evaluation import evaluate
from models.event_time import MICROS_PER_DAY, Window
from models.events import CustomerProfile, Event, Invalid, Topic, decode
from models.policy import DEFAULT_POLICY_PATH, Policy, parse_policy
from models.schedule import DueSchedule
from models.state import CustomerState
from streams import demo

WARMUPS = (0.0, 3.0, 7.0, 14.0)
SETTLING_DAYS = 14


def _month(customers: int) -> tuple[list[Event], dict[str, CustomerProfile]]:
    end = datetime(2026, 11, 1, tzinfo=UTC)
    events: list[Event] = []
    profiles: dict[str, CustomerProfile] = {}
    for message in demo.history(demo.customers(customers), end - timedelta(days=30), end, seed=5):
        parsed = decode(message.kind, message.value, now_us=10**17, max_future_skew_us=0)
        if isinstance(parsed, CustomerProfile):
            profiles[parsed.customer_id] = parsed
        elif not isinstance(parsed, Invalid) and message.kind is not Topic.CUSTOMERS:
            events.append(parsed)
    return sorted(events, key=lambda event: event.occurred_us), profiles


def _with_warmup(days: float) -> Policy:
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    for segment in raw["segments"].values():
        segment.pop("warmup_days", None)
    raw["segments"][raw["default_segment"]]["warmup_days"] = days
    return parse_policy(raw)


def _changes(
    events: list[Event], profiles: dict[str, CustomerProfile], policy: Policy
) -> dict[str, list[int]]:
    """Each customer's tier-change instants."""
    window, schedule = Window(), DueSchedule()
    states: dict[str, CustomerState] = {}
    changes: dict[str, list[int]] = {}

    def evaluate_now(state: CustomerState, as_of: int) -> None:
        result = evaluate(state, policy, window, as_of)
        if result.change is not None:
            changes.setdefault(state.customer_id, []).append(as_of)
        schedule.set(state.customer_id, result.due)

    for event in events:
        for due in schedule.pop_due(event.occurred_us):
            evaluate_now(states[due], event.occurred_us)
        state = states.get(event.customer_id)
        if state is None:
            state = states[event.customer_id] = CustomerState(event.customer_id)
            state.set_profile(profiles.get(event.customer_id))
        state.absorb(event, window)
        evaluate_now(state, event.occurred_us)
    return changes


def run(customers: int) -> dict[str, Any]:
    events, profiles = _month(customers)
    results: dict[str, Any] = {"customers": customers, "events": len(events), "by_warmup_days": {}}
    for days in tqdm(WARMUPS, desc="warm-ups", unit="policy"):
        changes = _changes(events, profiles, _with_warmup(days))
        settling = SETTLING_DAYS * MICROS_PER_DAY
        results["by_warmup_days"][str(days)] = {
            "rated": len(changes),
            "tier_changes": sum(len(instants) for instants in changes.values()),
            "changes_within_14_days_of_the_first": sum(
                sum(1 for t in instants[1:] if t < instants[0] + settling) for instants in changes.values()
            ),
        }
    return results


def main(customers: int, json_path: str | None = None) -> None:
    results = run(customers)
    print(f"\n{results['customers']} customers, {results['events']} events (the demo's month, in order)")
    print(f"{'warmup_days':>12} {'rated':>6} {'tier changes':>13} {'within 14 d of the first rating':>32}")
    for days, r in results["by_warmup_days"].items():
        settling = r["changes_within_14_days_of_the_first"]
        print(f"{days:>12} {r['rated']:>6} {r['tier_changes']:>13} {settling:>32}")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(results, indent=2))
