"""Peer benchmark: TierPulse against a Quix Streams application doing comparable work, one run.

    python -m tests.bench peer [--customers 500] [--days 30] [--json bench-results/peer.json]

On one preload of the demo's messy month (tests/bench/pipeline.py ``preload``), one after another:

1. baseline: the raw aiokafka consumer with JSON decode (``pipeline.baseline``);
2. peer: tests/bench/quix_peer.py, a Quix Streams app of ours (decode, validation, re-key by
   ``group_by``, de-duplication, per-customer state in RocksDB, the eight KPIs of contract v1 over
   30 day buckets after each accepted event, default-segment score and tier with hysteresis, a
   message per tier change), timed from its first processed message to the last one, re-keyed
   copies included (the app counts them into a progress file);
3. the Faust floor: tests/bench/faust_floor.py, a Faust agent on the same topics with the
   worker's batch settings that only decodes JSON, then again writing one value per customer and
   batch to a RocksDB table — what the fixed choice of Faust agents and tables costs before any
   scoring;
4. TierPulse: one worker, everything on (``pipeline.throughput``: first to last committed offset);
5. TierPulse lean: one worker under its own app id on the same topics, without Redis
   (``TIERPULSE_REDIS_URL=""``) and with a copy of the default policy without alert rules. A
   worker that does not start or does not finish is reported as failed; the others still count.

``quixstreams`` pins pydantic below what the project uses, so unless this interpreter has it the
peer runs in a venv of its own in the service cache (``peer`` extra of pyproject.toml), made on
first use. Absolute numbers drift on a shared machine; the ratios within one run hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import redis
import yaml
from aiokafka.admin import AIOKafkaAdminClient
from tqdm import tqdm

from deploy import services
from models.event_time import MICROS_PER_MINUTE
from models.policy import DEFAULT_POLICY_PATH, load_policy
from tests.bench import pipeline
from tests.integration.harness import REPO, ScorerRun

# Contract v1's KPIs: what the peer computes (the financial and loyalty ones of v2 are TierPulse's).
KPIS_V1 = (
    "revenue",
    "order_count",
    "on_time_delivery_rate",
    "first_response_minutes",
    "response_sla_rate",
    "complaint_rate",
    "csat",
    "days_since_last_order",
)
WINDOW_BUCKETS = 30
PEER_STALL_SECONDS = 120  # no progress this long: the peer is reported as failed


def quix_python(layout: services.Layout) -> str:
    """An interpreter with quixstreams: this one if it has it, else the peer's own venv."""
    if importlib.util.find_spec("quixstreams") is not None:
        return sys.executable
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    requirements = pyproject["project"]["optional-dependencies"]["peer"]
    venv = layout.cache_dir / "quixstreams-venv"
    python, stamp = venv / "bin" / "python", venv / ".tierpulse-requirements"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if not stamp.exists() or stamp.read_text() != "\n".join(requirements):
        print(f"installing {' '.join(requirements)} into {venv} ...")
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
            check=True,
        )
        stamp.write_text("\n".join(requirements))
    return str(python)


def policy_numbers() -> dict[str, Any]:
    """The default policy's default segment, for the eight KPIs the peer computes."""
    segment = load_policy().segment_for(None)
    return {
        "weights": {kpi: segment.weights.get(kpi, 0.0) for kpi in KPIS_V1},
        "thresholds": {
            kpi: [segment.thresholds[kpi].good, segment.thresholds[kpi].bad]
            for kpi in KPIS_V1
            if kpi in segment.thresholds
        },
        "tier_minimums": [list(pair) for pair in segment.tier_minimums],
        "hysteresis": segment.hysteresis,
        "sla_minutes": {
            p: us / MICROS_PER_MINUTE for p, us in zip(("P1", "P2", "P3", "P4"), segment.sla_us, strict=True)
        },
        "window_buckets": WINDOW_BUCKETS,
    }


async def peer(run: ScorerRun, total: int, python: str, workdir: Path) -> dict[str, Any]:
    """The Quix app over the run's input topics; its rate and what it counted."""
    inputs = {field: run.topic(field) for field in pipeline.KINDS.values()}
    progress = workdir / "peer-progress.json"
    config = {
        "broker": run.bootstrap,
        "group": peer_group(run),
        "state_dir": str(workdir / "peer-state"),
        "progress": str(progress),
        "expected_inputs": total,
        "input_topics": sorted(inputs.values()),
        "topics": inputs | {"tier_changes": run.topic("quix-tier-changes")},
        "policy": policy_numbers(),
    }
    (workdir / "peer-config.json").write_text(json.dumps(config, indent=2))
    command = [python, str(Path(__file__).with_name("quix_peer.py")), str(workdir / "peer-config.json")]
    counted = await _timed_app(command, progress, total, workdir, "quix peer")
    final = _read(progress) or counted  # written again after the app stopped
    return {
        "msgs_per_s": total / (counted["done_at"] - counted["first_at"]),
        "seconds": counted["done_at"] - counted["first_at"],
        "quixstreams": final["quixstreams"],
        "outcomes": final["outcomes"],
        "rekeyed": final["rekeyed"],
        "tier_changes": final["tier_changes"],
    }


async def _timed_app(
    command: list[str], progress: Path, total: int, workdir: Path, name: str
) -> dict[str, Any]:
    """Run an app that counts its input into ``progress`` until it has all of it, then stop it
    (SIGTERM: Quix and Faust stop gracefully); what it counted."""
    log_path = workdir / f"{name.replace(' ', '-')}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        return await _follow(process, progress, total, log_path, name)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def floor(run: ScorerRun, total: int, workdir: Path, *, table: bool) -> float:
    """tests/bench/faust_floor.py over the run's input topics: a Faust agent that only decodes
    (``table``: and writes a value per customer and batch to a table); its msg/s."""
    name = "faust floor with table" if table else "faust floor"
    slug = name.replace(" ", "-")
    settings = run.settings()
    progress = workdir / f"{slug}.json"
    config = {
        "broker": run.bootstrap,
        "group": f"{run.name}-floor{'-table' if table else ''}",
        "state_dir": str(workdir / f"{slug}-state"),
        "progress": str(progress),
        "expected_inputs": total,
        "input_topics": sorted(run.topic(kind) for kind in pipeline.KINDS.values()),
        "partitions": run.partitions,
        "batch_size": settings.batch_size,
        "batch_seconds": settings.batch_seconds,
        "table": table,
    }
    config_path = workdir / f"{slug}-config.json"
    config_path.write_text(json.dumps(config))
    command = [sys.executable, str(Path(__file__).with_name("faust_floor.py")), str(config_path)]
    counted = await _timed_app(command, progress, total, workdir, name)
    return float(total / (counted["done_at"] - counted["first_at"]))


async def _follow(
    process: subprocess.Popen[bytes], progress: Path, total: int, log: Path, name: str
) -> dict[str, Any]:
    last_change, seen = time.monotonic(), None
    with tqdm(total=total, desc=name, unit="msg") as bar:
        while True:
            counted = _read(progress)
            if counted:
                bar.update(counted["inputs"] - bar.n)
                if counted["done_at"] is not None:
                    return counted
                if (counted["inputs"], counted["rekeyed"]) != seen:
                    last_change, seen = time.monotonic(), (counted["inputs"], counted["rekeyed"])
            if process.poll() is not None or time.monotonic() - last_change > PEER_STALL_SECONDS:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} stopped or stalled at {counted}; its log ends:\n{tail}")
            await asyncio.sleep(0.5)


def _read(progress: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(progress.read_text()))
    except (OSError, ValueError):
        return None


def peer_group(run: ScorerRun) -> str:
    return f"{run.name}-quix"


def lean_run(run: ScorerRun, workdir: Path) -> ScorerRun:
    """A scorer on the run's input topics under its own app id, without Redis and alert rules."""
    workdir.mkdir()
    policy = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    policy.pop("alerts", None)
    (workdir / "policy-without-alerts.yaml").write_text(yaml.safe_dump(policy, allow_unicode=True))
    scorer = ScorerRun(
        f"{run.name}-lean",
        run.bootstrap,
        "",
        workdir,
        partitions=run.partitions,
        store=run.store,
        policy=workdir / "policy-without-alerts.yaml",
        inputs_of=run.name,
    )
    scorer.extra_env.update({**run.extra_env, "TIERPULSE_REDIS_URL": ""})  # empty: no Redis sink
    return scorer


async def scorer_rate(scorer: ScorerRun, total: int, timeout: float) -> tuple[float | None, str | None]:
    """``pipeline.throughput`` of one worker: (msg/s, None), or (None, why) when the worker does
    not start, exits, or has not caught up within ``timeout`` s; it is stopped either way."""
    measuring = asyncio.create_task(pipeline.throughput(scorer, total))
    started = time.monotonic()
    try:
        while not measuring.done():
            await asyncio.wait({measuring}, timeout=1)
            dead = bool(scorer.workers) and scorer.workers[0].poll() is not None
            if not measuring.done() and (dead or time.monotonic() - started > timeout):
                measuring.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await measuring
                why = "the worker exited" if dead else f"not caught up after {timeout:.0f} s"
                return None, f"{why}; its log ends: {_last_lines(scorer.logs())}"
        return measuring.result(), None
    except Exception as error:  # e.g. start_worker's AssertionError: no /healthz answer
        return None, f"{type(error).__name__}; the worker's log ends: {_last_lines(scorer.logs())}"
    finally:
        scorer.stop_all()


def _last_lines(log: str, count: int = 3) -> str:
    return " | ".join(line.strip() for line in log.strip().splitlines()[-count:])[-600:]


async def run_all(customers: int, days: float, layout: services.Layout, python: str) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="tierpulse-peer-"))
    (workdir / "tierpulse").mkdir()
    run = pipeline.bench_run(layout, "peer", workdir / "tierpulse")
    try:
        from streams.topics import ensure_topics

        await ensure_topics(run.settings())
        total = await pipeline.preload(run, customers, days)
        raw = await pipeline.baseline(run, total)
        quix = await peer(run, total, python, workdir)
        bare = await floor(run, total, workdir, table=False)
        tabled = await floor(run, total, workdir, table=True)
        # Generous: TierPulse has run at a tenth of the peer's rate and less; a hang must end.
        timeout = max(600.0, 30 * quix["seconds"])
        print("TierPulse, one worker: Redis, alerts, the default policy")
        full, full_failure = await scorer_rate(run, total, timeout)
        print('TierPulse lean: TIERPULSE_REDIS_URL="", the default policy without alert rules')
        slim, slim_failure = await scorer_rate(lean_run(run, workdir / "lean"), total, timeout)
    finally:
        run.stop_all()
        await _delete_peer_topics(run)
        await run.delete_topics()
        _delete_redis_keys(run)
        shutil.rmtree(workdir, ignore_errors=True)

    def against(rate: float | None) -> dict[str, Any]:
        return {
            "msgs_per_s": rate,
            "ratio_to_baseline": rate / raw if rate else None,
            "ratio_to_peer": rate / quix["msgs_per_s"] if rate else None,
        }

    return {
        "customers": customers,
        "days": days,
        "messages": total,
        "baseline_msgs_per_s": raw,
        "peer": quix | {"ratio_to_baseline": quix["msgs_per_s"] / raw},
        "faust_floor": against(bare),
        "faust_floor_with_table": against(tabled),
        "tierpulse": against(full) | {"failed": full_failure},
        "tierpulse_lean": against(slim) | {"failed": slim_failure},
    }


async def _delete_peer_topics(run: ScorerRun) -> None:
    """Quix's repartition and changelog topics are named after its consumer group."""
    admin = AIOKafkaAdminClient(bootstrap_servers=run.bootstrap)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if f"__{peer_group(run)}--" in t]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()


def _delete_redis_keys(run: ScorerRun) -> None:
    client = redis.Redis.from_url(run.redis_url)
    keys = list(client.scan_iter(f"{run.name}:*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])


def report(r: dict[str, Any]) -> str:
    def row(label: str, rate: float | None, to_peer: float | None, note: str = "") -> str:
        if rate is None:
            return f"  {label:<38} failed: {note}"
        peer_ratio = f"{to_peer:>8.3f}" if to_peer is not None else f"{'':>8}"
        return f"  {label:<38} {rate:>10.0f} msg/s {rate / r['baseline_msgs_per_s']:>8.3f} {peer_ratio}"

    quix, full, slim = r["peer"], r["tierpulse"], r["tierpulse_lean"]
    bare, tabled = r["faust_floor"], r["faust_floor_with_table"]
    outcomes = ", ".join(f"{k} {v}" for k, v in quix["outcomes"].items())
    return "\n".join(
        [
            f"customers {r['customers']}, {r['days']:g} days, messages {r['messages']} (one preload)",
            f"  {'':<38} {'':>16} {'× raw':>8} {'× peer':>8}",
            row("raw aiokafka baseline", r["baseline_msgs_per_s"], None),
            row(f"Quix Streams {quix['quixstreams']} peer", quix["msgs_per_s"], 1.0),
            row("Faust agent, JSON decode only", bare["msgs_per_s"], bare["ratio_to_peer"]),
            row(
                "  + a table write per customer and batch",
                tabled["msgs_per_s"],
                tabled["ratio_to_peer"],
            ),
            row("TierPulse, one worker", full["msgs_per_s"], full["ratio_to_peer"], full["failed"]),
            row(
                "TierPulse lean (no Redis, no alerts)",
                slim["msgs_per_s"],
                slim["ratio_to_peer"],
                slim["failed"],
            ),
            f"  peer: {outcomes}; {quix['rekeyed']} re-keyed, {quix['tier_changes']} tier changes",
        ]
    )


def main(customers: int, days: float, json_path: str | None) -> None:
    layout = services.Layout.from_env()
    python = quix_python(layout)  # may install quixstreams on first use: before anything is timed
    services.up(layout)  # before the event loop: its start-up probes run their own
    result = asyncio.run(run_all(customers, days, layout, python))
    print("\n" + report(result))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2))
