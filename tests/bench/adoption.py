"""What a worker does on first contact with a partition after a restart or a rebalance:
walk its stored customers — read each one's summary, count it for the tier gauge, pick
up stored outboxes, schedule it as its last evaluation left it — a bounded number per batch (the
first batches score at once), with the sweep refreshes that fall due meanwhile. Measured in-process
(no Kafka) on N customers whose states are those of the demo's month: the time to the first
scored batches, and the whole scan per customer.

    python -m tests.bench adoption [--customers 100000]
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tqdm import tqdm

from models.evaluation import evaluate
from models.events import Invalid, Topic, decode
from models.policy import load_policy
from models.state import CustomerState
from streams import demo
from streams.pipeline import IDLE_AFTER_US, Pipeline, Record, Routing
from streams.positions import PartitionProgress
from streams.settings import Settings
from streams.tables import FaustTables

PARTITIONS = 4


def _month_states() -> tuple[list[bytes], int]:
    """Encoded end-of-month states of 200 demo customers, and the month's last instant."""
    policy, window = load_policy(), Settings().window
    end = datetime(2026, 11, 1, tzinfo=UTC)
    states: dict[str, CustomerState] = {}
    watermark = 0
    for message in demo.history(demo.customers(200, 3), end - timedelta(days=30), end, seed=3):
        if message.kind is Topic.CUSTOMERS:
            continue
        event = decode(message.kind, message.value, now_us=10**17, max_future_skew_us=0)
        if isinstance(event, Invalid):
            continue
        state = states.setdefault(event.customer_id, CustomerState(event.customer_id))
        state.absorb(event, window)
        watermark = max(watermark, event.occurred_us)
    for state in states.values():
        evaluate(state, policy, window, watermark)
    return [state.to_bytes() for state in states.values()], watermark


def _order(partition: int) -> bytes:
    customer = f"new-{partition}"
    return json.dumps(
        {
            "event_id": customer,
            "customer_id": customer,
            "order_id": customer,
            "type": "placed",
            "amount": "10",
            "occurred_at": "2026-11-01T00:00:00Z",
        }
    ).encode()


def main(customers: int, json_path: str | None) -> None:
    templates, watermark = _month_states()
    states = {f"c{n:08d}".encode(): templates[n % len(templates)] for n in range(customers)}
    progress = {str(p).encode(): PartitionProgress(watermark, {}).to_bytes() for p in range(PARTITIONS)}
    tables = FaustTables(states, progress, PARTITIONS)  # the worker's view, over plain dicts
    settings = Settings()
    pipeline = Pipeline(
        load_policy(),
        settings.window,
        Routing({"orders": Topic.ORDERS}, "rekeyed", "sweep"),
        lateness_us=0,
        max_future_skew_us=0,
        max_event_bytes=settings.max_event_bytes,
    )
    # A new customer's first order on every partition: the first batches a worker processes.
    started = time.perf_counter()
    for partition in range(PARTITIONS):
        pipeline.process([Record("orders", partition, 0, None, _order(partition))], tables, 10**17)
    first = time.perf_counter() - started
    with tqdm(total=customers, desc="scanning", unit="customer") as bar:
        # Idle batches, as the worker's ticks bring them once input stops.
        quiet = 10**17 + IDLE_AFTER_US
        while pending := pipeline.pending(quiet):
            for partition in pending:
                pipeline.process([Record("sweep", partition, 0, None, b"")], tables, quiet)
            bar.update(sum(sum(tally.values()) for tally in pipeline.population.values()) - bar.n)
    seconds = time.perf_counter() - started
    result = {
        "customers": customers,
        "mean_state_bytes": round(sum(map(len, states.values())) / customers),
        "first_batches_seconds": round(first, 3),
        "seconds": round(seconds, 2),
        "us_per_customer": round(seconds / customers * 1e6),
    }
    print(
        f"\nadopting {customers:,} customers (mean state {result['mean_state_bytes']:,} B): "
        f"scoring after {first:.2f} s (first batch of each partition); whole scan {seconds:.1f} s, "
        f"{result['us_per_customer']} µs per customer"
    )
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2))
