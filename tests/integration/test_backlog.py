"""A backlog read after the fact (contract v2 §3): event time must not depend on which topic the
scorer happens to read faster. The log is on the broker before any worker starts; complaints
are a small topic that is read to its end long before the orders, a tenth of the messages are
unkeyed (re-keyed, so their records reach the customer's partition last), arrivals are ±36 h out
of order. One worker is SIGKILLed part-way and a second joins; every final snapshot must equal
the brute force (lateness judged on each input stream) at its own as_of."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest

from streams import demo
from tests.integration.harness import ScorerRun, wait_for_async
from tests.integration.test_resilience import KIND_NAMES, final_state_is_exact


def backlog(customers: int, days: float, seed: int) -> list[tuple[str, bytes | None, bytes | None]]:
    """The demo's messy history, arrivals ±36 h out of order and a tenth of the events unkeyed.
    The demo's 40-days-late copies (a new event_id for the same order or ticket) stay keyed and
    behind their original: two different events of one entity on two streams would make "the
    first" depend on how the streams interleave, which no reading order can settle."""
    rng = random.Random(seed)
    end = datetime.now(UTC) - timedelta(minutes=5)
    arrivals = []
    for index, message in enumerate(
        demo.history(demo.customers(customers, seed), end - timedelta(days=days), end, seed=seed, messy=True)
    ):
        copy = b'-backlog"' in (message.value or b"")
        if message.kind is demo.Topic.CUSTOMERS:
            arrives = end - timedelta(days=999)  # the profiles first
        else:
            arrives = message.occurred_at + timedelta(days=40 if copy else 0, hours=rng.uniform(-36, 36))
        unkeyed = message.kind is not demo.Topic.CUSTOMERS and not copy and rng.random() < 0.1
        key = None if unkeyed else message.key
        arrivals.append((arrives, index, KIND_NAMES[message.kind], key, message.value))
    return [(kind, key, value) for *_, kind, key, value in sorted(arrivals)]


@pytest.mark.parametrize("store", ["memory", "rocksdb, spilling"])
async def test_a_backlog_read_with_a_kill_and_a_second_worker_ends_exact(
    scorer: ScorerRun, store: str
) -> None:
    """With the RocksDB store, each partition keeps 4 customers per due schedule in memory and
    spills the rest (streams/spill.py): the worker's spill through a kill and a takeover. (That
    it decides what an unbounded schedule does is tests/unit/test_due_schedule.py's: this test's
    oracle, each snapshot exact at its own as_of, cannot see a decision taken late.)"""
    scorer.partitions = 4
    if store != "memory":
        scorer.store = "rocksdb://"
        scorer.extra_env["TIERPULSE_SCHEDULE_MEMORY_CUSTOMERS"] = "4"
    log = backlog(customers=80, days=42, seed=14)
    await scorer.produce(log)
    counts = {kind: sum(1 for k, _, _ in log if k == kind) for kind in ("orders", "complaints")}
    assert counts["complaints"] * 5 < counts["orders"]  # the small topic is read to its end first
    first, _ = scorer.start_worker(0)
    await asyncio.sleep(4)  # part-way through the backlog...
    scorer.kill(first)  # ... SIGKILL
    scorer.start_worker(0)
    await asyncio.sleep(2)
    scorer.start_worker(1)  # a second worker joins while the backlog is read
    await wait_for_async(
        lambda: scorer.settled(2), 90, "the two workers to split the partitions", scorer.logs
    )
    await final_state_is_exact(scorer, log)
    assert "Traceback" not in scorer.logs()
    if store != "memory":
        taken_back = [
            float(line.rsplit(" ", 1)[1])
            for text in scorer.metrics_texts()
            for line in text.splitlines()
            if line.startswith("tierpulse_schedule_spill_moves_total{") and 'direction="back"' in line
        ]
        assert sum(taken_back) > 0  # entries went to the spill and came back
