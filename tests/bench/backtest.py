"""The policy lab's backtest against a raw aiokafka consumer over the same topics (issue #17).

    python -m tests.bench backtest [--customers 500] [--days 30]

The demo's messy month for N customers is preloaded; a bare consumer (getmany, JSON decode)
sets the ceiling; then ``tierpulse backtest``'s reading (streams/backtest.py) over the same
topics with one policy and with two (a baseline and a candidate), in events per second.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from deploy import services
from models.policy import load_policy
from streams.backtest import policy_run, replay
from streams.topics import ensure_topics
from tests.bench.pipeline import baseline, bench_run, preload
from tests.bench.running import run_on_services


async def run_all(customers: int, days: float, layout: services.Layout) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="tierpulse-backtest-"))
    run = bench_run(layout, "backtest", workdir)
    try:
        settings = run.settings()
        await ensure_topics(settings)
        total = await preload(run, customers, days)
        raw = await baseline(run, total)
        rates = {}
        for policies in (1, 2):
            runs = [policy_run(load_policy(), settings) for _ in range(policies)]
            started = time.perf_counter()
            read = await replay(settings, runs)
            rates[policies] = read / (time.perf_counter() - started)
    finally:
        await run.delete_topics()
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "customers": customers,
        "messages": total,
        "baseline_msgs_per_s": raw,
        "one_policy_events_per_s": rates[1],
        "two_policies_events_per_s": rates[2],
        "ratio_one_policy": rates[1] / raw,
    }


def report(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"customers {r['customers']}, messages {r['messages']}",
            f"  raw aiokafka baseline        {r['baseline_msgs_per_s']:>10.0f} msg/s",
            f"  backtest, one policy         {r['one_policy_events_per_s']:>10.0f} events/s"
            f"  ratio {r['ratio_one_policy']:.3f} (goal >= 0.25)",
            f"  backtest, baseline+candidate {r['two_policies_events_per_s']:>10.0f} events/s",
        ]
    )


def main(customers: int, days: float, json_path: str | None) -> None:
    run_on_services(run_all, report, json_path, customers, days)
