"""End-to-end benchmark of one scorer worker against a raw aiokafka consumer, same broker, same run.

    python -m tests.bench pipeline [--customers 1000] [--days 30] [--json bench-results/pipeline.json]

1. preload: the demo's messy month (duplicates, late, unkeyed, malformed) for N customers;
2. baseline: a raw aiokafka consumer (getmany loop, JSON decode) over those topics;
3. throughput: one worker (RocksDB store) from the first to the last committed offset;
4. size: each customer's last state on the changelog (mean, p99);
5. latency: at half the measured throughput, produce→tier change on the topic (p50/p95/p99).

Restarts at scale are the recovery benchmark's (tests/bench/recovery.py).

Absolute numbers drift on a shared machine; the ratios to the baseline hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from tqdm import tqdm

from deploy import services
from streams import demo
from tests.bench.running import run_on_services
from tests.integration.harness import INPUT_FIELDS, ScorerRun

KINDS = INPUT_FIELDS


async def preload(run: ScorerRun, customers: int, days: float) -> int:
    end = datetime.now(UTC) - timedelta(minutes=10)
    people = demo.customers(customers, seed=42)
    log = [
        (KINDS[m.kind], m.key, m.value)
        for m in demo.history(people, end - timedelta(days=days), end, seed=42, messy=True)
    ]
    producer = AIOKafkaProducer(bootstrap_servers=run.bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        for kind, key, value in tqdm(log, desc="preload", unit="msg"):
            await producer.send(run.topic(kind), value, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    return len(log)


async def baseline(run: ScorerRun, total: int) -> float:
    """Messages per second of a bare consumer that decodes JSON: the practical ceiling here."""
    topics = [run.topic(k) for k in KINDS.values()]
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=run.bootstrap,
        group_id=f"baseline-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 << 20,
    )
    await consumer.start()
    seen, started = 0, None
    try:
        with tqdm(total=total, desc="baseline", unit="msg") as bar:
            while seen < total:
                batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
                started = started or time.perf_counter()
                for messages in batch.values():
                    for message in messages:
                        with contextlib.suppress(ValueError, TypeError):
                            json.loads(message.value)
                    seen += len(messages)
                    bar.update(len(messages))
    finally:
        await consumer.stop()
    return seen / (time.perf_counter() - (started or time.perf_counter()))


async def throughput(run: ScorerRun, total: int) -> float:
    """Events per second of one worker, from its first to its last committed offset."""
    run.start_worker()
    samples: list[tuple[float, int]] = []
    with tqdm(total=total, desc="scorer", unit="msg") as bar:
        while True:
            committed = await _committed(run)
            samples.append((time.perf_counter(), committed))
            bar.update(committed - bar.n)
            if await run.caught_up():
                break
            await asyncio.sleep(0.5)
    first = next(s for s in samples if s[1] > 0)
    last = samples[-1]
    rate = (last[1] - first[1]) / max(last[0] - first[0], 1e-9)
    return rate


async def _committed(run: ScorerRun) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=run.bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(run.name)
    finally:
        await admin.close()
    inputs = {run.topic(k) for k in KINDS.values()}
    return sum(o.offset for tp, o in offsets.items() if tp.topic in inputs and o.offset > 0)


async def state_sizes(run: ScorerRun) -> list[int]:
    """The last serialised state of each customer, read back from the changelog."""
    topic = f"{run.name}-customer-state-changelog"
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=run.bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    last: dict[bytes, int] = {}
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=2000, max_records=10000)
            if not batch:
                break
            for messages in batch.values():
                for m in messages:
                    last[m.key] = len(m.value or b"")
    finally:
        await consumer.stop()
    return sorted(last.values())


async def latency(run: ScorerRun, rate: float, seconds: float = 10) -> list[float]:
    """Produce→tier change for new customers' first orders, mixed into load at ``rate``/s."""
    probes: dict[str, float] = {}
    consumer = AIOKafkaConsumer(
        run.topic("tier_changes"), bootstrap_servers=run.bootstrap, auto_offset_reset="latest"
    )
    await consumer.start()
    await asyncio.sleep(1)
    producer = AIOKafkaProducer(bootstrap_servers=run.bootstrap, linger_ms=1)
    await producer.start()
    arrived: dict[str, float] = {}

    async def collect() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for messages in batch.values():
                for m in messages:
                    customer = json.loads(m.value)["customer_id"]
                    if customer in probes and customer not in arrived:
                        arrived[customer] = time.perf_counter()

    collector = asyncio.create_task(collect())
    try:
        now = datetime.now(UTC)
        interval, ends, n = 1 / max(rate, 1), time.perf_counter() + seconds, 0
        with tqdm(total=int(seconds * rate), desc="latency", unit="msg") as bar:
            while time.perf_counter() < ends:
                n += 1
                customer = f"probe-{uuid.uuid4().hex[:8]}" if n % 10 == 0 else f"load-{n % 500}"
                body = {
                    "event_id": uuid.uuid4().hex,
                    "customer_id": customer,
                    "order_id": uuid.uuid4().hex,
                    "type": "placed",
                    "amount": "100",
                    "occurred_at": now.isoformat(),
                    "promised_at": (now + timedelta(days=1)).isoformat(),
                }
                if customer.startswith("probe"):
                    probes[customer] = time.perf_counter()
                await producer.send(run.topic("orders"), json.dumps(body).encode(), key=customer.encode())
                bar.update(1)
                await asyncio.sleep(interval)
        await producer.flush()
        await asyncio.sleep(5)
    finally:
        collector.cancel()
        await producer.stop()
        await consumer.stop()
    return sorted((arrived[c] - t) * 1000 for c, t in probes.items() if c in arrived)


def percentile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, int(share * len(values)))] if values else float("nan")


def bench_run(layout: services.Layout, name: str, workdir: Path) -> ScorerRun:
    """A scorer run on the local services as the benchmarks measure it: four partitions, the
    RocksDB store, settings from BENCH_ENV on top."""
    run = ScorerRun(
        f"{name}-{uuid.uuid4().hex[:8]}",
        layout.bootstrap,
        f"redis://127.0.0.1:{layout.redis_port}/0",
        workdir,
        partitions=4,
        store="rocksdb://",
    )
    run.extra_env.update(
        {"TIERPULSE_SESSION_TIMEOUT_SECONDS": "10", **json.loads(os.environ.get("BENCH_ENV", "{}"))}
    )
    return run


async def run_all(customers: int, days: float, layout: services.Layout) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="tierpulse-bench-"))
    run = bench_run(layout, "bench", workdir)
    try:
        from streams.topics import ensure_topics

        await ensure_topics(run.settings())
        total = await preload(run, customers, days)
        raw = await baseline(run, total)
        scored = await throughput(run, total)
        sizes = await state_sizes(run)
        delays = await latency(run, scored / 2)
    finally:
        run.stop_all()
        await run.delete_topics()
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "customers": customers,
        "messages": total,
        "baseline_msgs_per_s": raw,
        "scorer_msgs_per_s": scored,
        "ratio": scored / raw,
        "latency_ms_at_half_load": {
            "p50": percentile(delays, 0.5),
            "p95": percentile(delays, 0.95),
            "p99": percentile(delays, 0.99),
            "probes": len(delays),
        },
        "state_bytes": {
            "mean": statistics.fmean(sizes) if sizes else 0,
            "p99": percentile(sizes, 0.99),
            "customers": len(sizes),
        },
    }


def report(r: dict[str, Any]) -> str:
    lat, size = r["latency_ms_at_half_load"], r["state_bytes"]
    return "\n".join(
        [
            f"customers {r['customers']}, messages {r['messages']}",
            f"  raw aiokafka baseline    {r['baseline_msgs_per_s']:>10.0f} msg/s",
            f"  scorer (one worker)      {r['scorer_msgs_per_s']:>10.0f} msg/s"
            f"  ratio {r['ratio']:.3f} (goal >= 0.5)",
            f"  latency at half load     p50 {lat['p50']:.0f} ms  p95 {lat['p95']:.0f} ms"
            f"  p99 {lat['p99']:.0f} ms (goal p99 < 250)",
            f"  state per customer       mean {size['mean']:.0f} B  p99 {size['p99']:.0f} B (goal <= 2048)",
        ]
    )


def main(customers: int, days: float, json_path: str | None) -> None:
    run_on_services(run_all, report, json_path, customers, days)
