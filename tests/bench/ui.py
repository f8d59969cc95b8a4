"""The customer 360° page under concurrent readers (issue #22): p50/p99 at 20 clients.

    python -m tests.bench ui [--customers 100] [--days 30]

One worker scores the demo's month for N customers (preloaded); then 20 clients fetch
``/ui/customers/{id}`` of random customers, 2,000 requests in all, and the same for the JSON
``/customers/{id}`` as the baseline in the same run.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from tqdm import tqdm

from deploy import services
from streams.topics import ensure_topics
from tests.bench.pipeline import bench_run, percentile, preload
from tests.bench.running import run_on_services

CLIENTS, REQUESTS = 20, 2_000


async def _hammer(base: str, path: str, customers: list[str]) -> list[float]:
    rng, times = random.Random(5), []
    queue: asyncio.Queue[str] = asyncio.Queue()
    for _ in range(REQUESTS):
        queue.put_nowait(rng.choice(customers))
    bar = tqdm(total=REQUESTS, desc=path, unit="req")

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            customer = queue.get_nowait()
            started = time.perf_counter()
            async with session.get(f"{base}{path}{quote(customer, safe='')}") as response:
                await response.read()
                assert response.status == 200, (customer, response.status)
            times.append((time.perf_counter() - started) * 1000)
            bar.update()

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(session) for _ in range(CLIENTS)))
    bar.close()
    return times


async def _first_views(base: str, customers: list[str]) -> list[float]:
    """Each customer's page once, one at a time: what a first view costs (decoding and KPIs);
    later views of an unchanged customer reuse them (streams/ui.py)."""
    times = []
    async with aiohttp.ClientSession() as session:
        for customer in customers:
            started = time.perf_counter()
            async with session.get(f"{base}/ui/customers/{quote(customer, safe='')}") as response:
                await response.read()
            times.append((time.perf_counter() - started) * 1000)
    return times


async def run_all(customers: int, days: float, layout: services.Layout) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="tierpulse-ui-"))
    run = bench_run(layout, "ui", workdir)
    try:
        await ensure_topics(run.settings())
        await preload(run, customers, days)
        _, port = run.start_worker()
        snapshots = await run.finished(timeout=1800)
        ids = sorted(snapshots)
        base = f"http://127.0.0.1:{port}"
        api = await _hammer(base, "/customers/", ids)
        first = await _first_views(base, ids)
        page = await _hammer(base, "/ui/customers/", ids)
    finally:
        run.stop_all()
        await run.delete_topics()
        shutil.rmtree(workdir, ignore_errors=True)

    def summary(times: list[float]) -> dict[str, float]:
        times = sorted(times)
        return {
            "p50_ms": percentile(times, 0.5),
            "p99_ms": percentile(times, 0.99),
            "mean_ms": statistics.fmean(times),
        }

    return {
        "customers": len(ids),
        "clients": CLIENTS,
        "requests": REQUESTS,
        "json": summary(api),
        "page": summary(page),
        "first_view": summary(first),
    }


def report(r: dict[str, Any]) -> str:
    lines = [f"{r['customers']} customers, {r['clients']} concurrent clients, {r['requests']} requests each"]
    for label, key in (
        ("GET /customers/{id} (JSON)", "json"),
        ("a page's first view, alone", "first_view"),
        ("GET /ui/customers/{id} (page)", "page"),
    ):
        m = r[key]
        lines.append(f"  {label:<32} p50 {m['p50_ms']:6.1f} ms   p99 {m['p99_ms']:6.1f} ms")
    lines.append("  goal: the page's p99 under 50 ms")
    return "\n".join(lines)


def main(customers: int, days: float, json_path: str | None) -> None:
    run_on_services(run_all, report, json_path, customers, days)
