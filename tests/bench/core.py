"""Micro-benchmark of the pure core: one state update plus tier decision, per event.

A realistic month of one large account (a key account with ~6 orders a day) and
one small account (~0.4 a day) from the demo generator is absorbed event by
event, each followed by the evaluation the scorer runs (KPIs, score, tier,
alerts, schedule). Prints µs per event and the serialised state size at the end
of the month; writes the numbers as JSON.

    python -m tests.bench core [--json bench-results/core.json]
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tqdm import tqdm

from models.evaluation import evaluate
from models.event_time import Window
from models.events import Invalid, OrderEvent, Topic, decode
from models.policy import load_policy
from models.state import CustomerState
from streams import demo


def _month(account: demo.DemoCustomer, seed: int) -> list[OrderEvent]:
    end = datetime(2026, 11, 1, tzinfo=UTC)
    messages = demo.history([account], end - timedelta(days=30), end, seed=seed)
    events = []
    for message in messages:
        if message.kind is Topic.CUSTOMERS:
            continue
        parsed = decode(message.kind, message.value, now_us=10**17, max_future_skew_us=0)
        if not isinstance(parsed, Invalid):
            events.append(parsed)
    return events  # type: ignore[return-value]


def run(rounds: int = 5) -> dict[str, dict[str, float]]:
    policy, window = load_policy(), Window()
    accounts = {
        "large (key account, ~6 orders/day)": demo.DemoCustomer("big-1", "key_account", None, "steady", 6.0),
        "small (small account, ~0.4 orders/day)": demo.DemoCustomer(
            "small-1", "small_account", None, "steady", 0.4
        ),
    }
    results = {}
    for label, account in accounts.items():
        events = _month(account, seed=3)
        per_event, size = [], 0
        for _ in tqdm(range(rounds), desc=label, unit="round"):
            state, watermark = CustomerState(account.customer_id), None
            started = time.perf_counter()
            for event in events:
                state.absorb(event, window)
                watermark = event.occurred_us if watermark is None else max(watermark, event.occurred_us)
                evaluate(state, policy, window, watermark)
            per_event.append((time.perf_counter() - started) / len(events) * 1e6)
            size = len(state.to_bytes())
        results[label] = {
            "events": len(events),
            "us_per_event_median": statistics.median(per_event),
            "us_per_event_best": min(per_event),
            "state_bytes": size,
            "orders_kept": len(state.orders),
            "tickets_kept": len(state.tickets),
        }
    return results


def main(json_path: str | None = None) -> None:
    results = run()
    print(f"\n{'account':<40} {'events':>7} {'µs/event (median)':>18} {'best':>8} {'state bytes':>12}")
    for label, r in results.items():
        print(
            f"{label:<40} {r['events']:>7} {r['us_per_event_median']:>18.1f} {r['us_per_event_best']:>8.1f}"
            f" {r['state_bytes']:>12}"
        )
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(results, indent=2))
