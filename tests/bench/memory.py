"""Memory of one worker taking in N distinct customers (issue #21): flat beyond the state store?

    python -m tests.bench memory [--customers 1000000]

Each customer has a profile of its own (segment, customer type, account manager, region drawn
per customer) and one order, produced up front; one worker (RocksDB store) reads them. Its RSS
is sampled as the count of customers it scored grows (the tier gauge), and compared with what
the customers' states take in the store (the RocksDB directory on disk). What may grow with
customers in memory: RocksDB's own memory (block cache up to 64 MiB a partition, write buffers, its
table readers); what must not: the due schedules (bounded in memory, the rest spilled to disk:
streams/spill.py), the segment cache (keyed by what decides the segment), the decoded-state
cache (a count), the log. After the worker, tests/bench/store_memory.py puts as many states of
the worker's mean size into the state store alone, in a process of its own: the difference
between the two growths is what the worker holds beyond the state store.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from deploy import services
from streams.topics import ensure_topics
from tests.bench.pipeline import bench_run
from tests.bench.recovery import _rss, counted
from tests.bench.running import run_on_services
from tests.integration.harness import REPO, ScorerRun

SEGMENTS = ("key_account", "standard", "small_account", "retail")
TYPES = (None, "service_oriented", "price_sensitive")


def _messages(n: int, now: datetime, rng: random.Random) -> list[tuple[str, bytes, bytes]]:
    customer = f"m{n:08d}"
    profile = {
        "customer_id": customer,
        "segment": rng.choice(SEGMENTS),
        "customer_type": rng.choice(TYPES),
        "account_manager": f"am-{rng.randrange(2_000)}",
        "region": f"region-{rng.randrange(50)}",
        "name": f"Customer {n}",
    }
    at = now - timedelta(seconds=rng.uniform(60, 86_400))
    order = {
        "event_id": f"e-{customer}",
        "customer_id": customer,
        "order_id": f"o-{customer}",
        "type": "placed",
        "amount": f"{rng.uniform(10, 5_000):.2f}",
        "occurred_at": at.isoformat(),
        "promised_at": (at + timedelta(days=2)).isoformat(),
    }
    key = customer.encode()
    return [("customers", key, json.dumps(profile).encode()), ("orders", key, json.dumps(order).encode())]


async def preload(run: ScorerRun, customers: int) -> None:
    rng, now = random.Random(11), datetime.now(UTC)
    producer = AIOKafkaProducer(bootstrap_servers=run.bootstrap, linger_ms=50, max_batch_size=1 << 20, acks=1)
    await producer.start()
    try:
        for n in tqdm(range(customers), desc="preload", unit="customer"):
            for kind, key, value in _messages(n, now, rng):
                await producer.send(run.topic(kind), value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def _disk(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


async def follow(run: ScorerRun, customers: int, port: int, pid: int) -> list[dict[str, float]]:
    """RSS each time another tenth of the customers is scored."""
    samples: list[dict[str, float]] = []
    step, started = max(1, customers // 10), time.perf_counter()
    with tqdm(total=customers, desc="scored", unit="customer") as bar:
        while (n := counted(port)) < customers:
            bar.update(n - bar.n)
            if n >= (len(samples) + 1) * step:
                samples.append({"customers": n, "rss": _rss(pid), "seconds": time.perf_counter() - started})
                # (said at once too: an hour's run stopped early still says what it saw)
                seconds, rss = samples[-1]["seconds"], samples[-1]["rss"] / 2**20
                tqdm.write(f"{n:,} scored after {seconds:.0f} s: RSS {rss:,.0f} MiB")
            await asyncio.sleep(1)
        bar.update(n - bar.n)
    await asyncio.sleep(5)  # the last batches' writes settle
    samples.append({"customers": customers, "rss": _rss(pid), "seconds": time.perf_counter() - started})
    return samples


async def run_all(customers: int, layout: services.Layout) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="tierpulse-memory-"))
    run = bench_run(layout, "memory", workdir)
    try:
        await ensure_topics(run.settings())
        await preload(run, customers)
        process, port = run.start_worker()
        empty = _rss(process.pid)
        samples = await follow(run, customers, port, process.pid)
        store = _disk(workdir / "data-0")
        state_bytes = _mean_state_bytes(port)
    finally:
        run.stop_all()
        await run.delete_topics()
        shutil.rmtree(workdir, ignore_errors=True)
    alone = store_alone(customers, run.partitions, state_bytes)
    # The slope over the second half, up to the last sample taken while reading (the final one
    # comes after the writes settled: RocksDB has flushed its write buffers by then).
    half = next(s for s in samples if s["customers"] >= customers / 2)
    last = samples[-2] if len(samples) > 1 else samples[-1]
    per_100k = (last["rss"] - half["rss"]) / max(last["customers"] - half["customers"], 1) * 100_000
    return {
        "customers": customers,
        "rss_at_start": empty,
        "samples": samples,
        "rss_growth_per_100k_customers_second_half": per_100k,
        "rss_settled": samples[-1]["rss"],
        "store_bytes_on_disk": store,
        "store_bytes_per_100k_customers": store / customers * 100_000,
        "mean_state_bytes": state_bytes,
        "store_alone": alone,
        # From a tenth of the customers to all of them: the worker's start-up (Faust, the first
        # batches, the decoded-state cache filling) is over by then.
        "store_alone_growth": alone[-1]["rss"] - alone[1]["rss"],
        "worker_growth": samples[-1]["rss"] - samples[0]["rss"],
    }


def _mean_state_bytes(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = {
        name: float(value)
        for name, value in (
            line.split(" ", 1) for line in text.splitlines() if line.startswith("tierpulse_state_bytes_")
        )
    }
    return round(found["tierpulse_state_bytes_sum"] / max(found["tierpulse_state_bytes_count"], 1))


def store_alone(customers: int, partitions: int, state_bytes: int) -> list[dict[str, float]]:
    """tests/bench/store_memory.py in a process of its own: RocksDB's RSS for as many states."""
    samples: list[dict[str, float]] = []
    command = [
        sys.executable,
        "-m",
        "tests.bench.store_memory",
        str(customers),
        str(partitions),
        str(state_bytes),
    ]
    with (
        subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True) as process,
        tqdm(total=customers, desc="the store alone", unit="customer") as bar,
    ):
        assert process.stdout is not None
        for line in process.stdout:
            samples.append(json.loads(line))
            bar.update(int(samples[-1]["customers"]) - bar.n)
    if process.returncode:
        raise RuntimeError(f"tests/bench/store_memory.py exited with {process.returncode}")
    return samples


def report(r: dict[str, Any]) -> str:
    mib = 2**20
    lines = [f"{r['customers']:,} customers, each a profile of its own and one order; one worker"]
    lines.append(f"  RSS at start {r['rss_at_start'] / mib:,.0f} MiB")
    for s in r["samples"]:
        lines.append(
            f"  {s['customers']:>12,} scored after {s['seconds']:7.0f} s   RSS {s['rss'] / mib:8,.0f} MiB"
        )
    alone = r["store_alone"]
    lines.append(
        f"  the state store alone ({r['mean_state_bytes']} B a state, tests/bench/store_memory.py): RSS "
        f"{alone[0]['rss'] / mib:,.0f} MiB empty, {alone[-1]['rss'] / mib:,.0f} MiB with every customer"
    )
    beyond = (r["worker_growth"] - r["store_alone_growth"]) / mib
    lines.append(
        f"  RSS growth from a tenth of the customers to all: the worker {r['worker_growth'] / mib:,.0f} MiB, "
        f"the store alone {r['store_alone_growth'] / mib:,.0f} MiB: {beyond:,.0f} MiB beyond the state store"
    )
    lines.append(
        f"  RSS growth over the second half: {r['rss_growth_per_100k_customers_second_half'] / mib:,.1f} MiB "
        f"per 100k customers, {r['rss_settled'] / mib:,.0f} MiB once the writes settled; the store on "
        f"disk: {r['store_bytes_per_100k_customers'] / mib:,.1f} MiB per 100k customers"
    )
    return "\n".join(lines)


def main(customers: int, json_path: str | None) -> None:
    run_on_services(run_all, report, json_path, customers)
