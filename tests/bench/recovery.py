"""A worker holding N customers (100k, 1M) restarted: how soon it scores again, how soon it has
adopted every customer, and what its memory costs.

    python -m tests.bench recovery [--customers 100000]

The customers' states go straight to the state table's changelog — the states of the demo's
month ending now, one of 200 per customer, relabelled — because feeding a million customers'
events through a worker would take hours. Then three starts, each timed from the process start
to (a) the tier change of a new customer's first order: scoring again, and (b) every stored
customer counted in the tier gauge: adopted.

1. changelog only: an empty data directory, the table restored from the changelog;
2. local RocksDB: the same worker stopped (SIGTERM) and started on its data directory;
3. crash: SIGKILL, then started — the group first waits out the dead member's session.

Memory: the worker's RSS once it has adopted everyone, less that of a worker with no customers.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import statistics
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from deploy import services
from models.evaluation import evaluate
from models.events import Invalid, Topic, decode
from models.policy import load_policy
from models.state import CustomerState
from streams import demo
from streams.positions import PartitionProgress
from streams.settings import Settings
from streams.tables import partition_of
from streams.topics import TABLES, ensure_topics
from tests.bench.running import run_on_services
from tests.integration.harness import ScorerRun

PARTITIONS = 4
SESSION_TIMEOUT_SECONDS = 10
PLACEHOLDER = "#" * 9  # as long as every customer id below, so a state is relabelled in place


def customer_id(n: int) -> str:
    return f"c{n:08d}"


def month_states(end: datetime) -> tuple[list[bytes], int]:
    """200 demo customers' states at the end of a month ending at ``end``, labelled PLACEHOLDER,
    outputs delivered; and the month's watermark."""
    policy, window = load_policy(), Settings().window
    states: dict[str, CustomerState] = {}
    watermark = 0
    for message in demo.history(demo.customers(200, 3), end - timedelta(days=30), end, seed=3):
        if message.kind is Topic.CUSTOMERS:
            continue
        event = decode(message.kind, message.value, now_us=10**17, max_future_skew_us=0)
        if not isinstance(event, Invalid):
            state = states.setdefault(event.customer_id, CustomerState(PLACEHOLDER))
            state.absorb(event, window)
            watermark = max(watermark, event.occurred_us)
    encoded = []
    for state in states.values():
        evaluate(state, policy, window, watermark)
        state.status.outbox.clear()
        encoded.append(state.to_bytes())
    return encoded, watermark


async def preload(run: ScorerRun, customers: int) -> tuple[int, float]:
    """Write N states and every partition's progress to the changelogs; (bytes, mean bytes)."""
    templates, watermark = month_states(datetime.now(UTC) - timedelta(minutes=10))
    placeholder = json.dumps(PLACEHOLDER).encode()
    assert all(t.count(placeholder) == 1 for t in templates)
    state_log, progress_log = (f"{run.name}-{table}-changelog" for table in TABLES)
    producer = AIOKafkaProducer(bootstrap_servers=run.bootstrap, linger_ms=50, max_batch_size=1 << 20, acks=1)
    await producer.start()
    written = 0
    try:
        for n in tqdm(range(customers), desc="changelog", unit="customer"):
            key = customer_id(n).encode()
            value = templates[n % len(templates)].replace(placeholder, json.dumps(customer_id(n)).encode())
            written += len(value)
            await producer.send(state_log, value, key=key, partition=partition_of(key, PARTITIONS))
        for partition in range(PARTITIONS):
            progress = PartitionProgress(watermark, {}).to_bytes()
            await producer.send(progress_log, progress, key=str(partition).encode(), partition=partition)
        await producer.flush()
    finally:
        await producer.stop()
    return written, written / customers


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def counted(port: int) -> int:
    """Customers in the worker's tier gauge (0 while it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return 0
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("tierpulse_customers{")
    )


async def start_and_time(run: ScorerRun, customers: int) -> dict[str, float]:
    """Start a worker; seconds to its first scored event and to every customer adopted."""
    started = time.perf_counter()
    process, port = run.start_worker()
    probe = f"probe-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    body = {
        "event_id": uuid.uuid4().hex,
        "customer_id": probe,
        "order_id": "o1",
        "type": "placed",
        "amount": "1",
        "occurred_at": now.isoformat(),
        "promised_at": (now + timedelta(days=1)).isoformat(),
    }
    await run.produce([("orders", probe.encode(), json.dumps(body).encode())])
    changes = await run.read(
        "tier_changes", timeout=3600, until=lambda found: any(c["customer_id"] == probe for c in found)
    )
    assert any(c["customer_id"] == probe for c in changes), "the worker never scored"
    scoring = time.perf_counter() - started
    with tqdm(total=customers, desc="adopted", unit="customer") as bar:
        while (n := counted(port)) < customers:
            bar.update(n - bar.n)
            await asyncio.sleep(0.5)
    return {"scoring_s": scoring, "adopted_s": time.perf_counter() - started, "rss": _rss(process.pid)}


def stop(run: ScorerRun, how: signal.Signals) -> None:
    for process in run.workers:
        process.send_signal(how)
        process.wait(timeout=120)
    run.workers.clear()


async def run_all(customers: int, layout: services.Layout) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="tierpulse-recovery-"))
    run = ScorerRun(
        f"recovery-{uuid.uuid4().hex[:8]}",
        layout.bootstrap,
        f"redis://127.0.0.1:{layout.redis_port}/0",
        workdir,
        partitions=PARTITIONS,
        store="rocksdb://",
    )
    run.extra_env["TIERPULSE_SESSION_TIMEOUT_SECONDS"] = str(SESSION_TIMEOUT_SECONDS)
    try:
        await ensure_topics(run.settings())
        empty = await start_and_time(run, 0)
        stop(run, signal.SIGTERM)
        shutil.rmtree(workdir / "data-0")
        written, mean = await preload(run, customers)
        restored = await start_and_time(run, customers)
        stop(run, signal.SIGTERM)
        local = await start_and_time(run, customers)
        stop(run, signal.SIGKILL)
        crashed = await start_and_time(run, customers)
    finally:
        run.stop_all()
        await run.delete_topics()
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "customers": customers,
        "changelog_bytes": written,
        "state_bytes_mean": mean,
        "changelog_only": restored,
        "local_rocksdb": local,
        "crash_local_rocksdb": crashed,
        "session_timeout_s": SESSION_TIMEOUT_SECONDS,
        "rss_empty": empty["rss"],
        "rss_per_100k_customers": (statistics.fmean([local["rss"], crashed["rss"]]) - empty["rss"])
        / customers
        * 100_000,
    }


def report(r: dict[str, Any]) -> str:
    lines = [
        f"{r['customers']:,} customers, changelog {r['changelog_bytes'] / 2**20:,.0f} MiB "
        f"(state mean {r['state_bytes_mean']:,.0f} B)"
    ]
    for label, key in (
        ("changelog only", "changelog_only"),
        ("local RocksDB (SIGTERM)", "local_rocksdb"),
        (f"crash (SIGKILL, session {r['session_timeout_s']} s)", "crash_local_rocksdb"),
    ):
        m = r[key]
        lines.append(
            f"  {label:<34} scoring after {m['scoring_s']:6.1f} s   all adopted after {m['adopted_s']:6.1f} s"
        )
    lines.append(
        f"  RSS {r['rss_per_100k_customers'] / 2**20:,.0f} MiB per 100k customers"
        f" (over an empty worker's {r['rss_empty'] / 2**20:,.0f} MiB)"
    )
    return "\n".join(lines)


def main(customers: int, json_path: str | None) -> None:
    run_on_services(run_all, report, json_path, customers)
