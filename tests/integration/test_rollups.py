"""Rollups per account manager and region (contract v2 §5) in the real Redis: always the sum over
the customers' current snapshots — for any sequence of writes, re-writes and moves (the script
in sinks/rollups.py), and end to end after a messy stream with profile moves and a kill."""

from __future__ import annotations

import json
import random
import urllib.parse
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import redis

from models.evaluation import Snapshot
from models.kpis import KPI_NAMES, Kpis
from sinks.redis import RedisSnapshotSink
from tests.integration.harness import ScorerRun, http_json
from tests.integration.test_resilience import demo_log

TIERS = ("strategic", "key", "standard", "at_risk", "unrated")


def _snapshot(rng: random.Random, customer: str) -> Snapshot:
    tier = rng.choice(TIERS)
    kpis = Kpis(**dict.fromkeys(KPI_NAMES))  # type: ignore[arg-type]
    object.__setattr__(kpis, "revenue", Decimal(rng.randrange(0, 10**7)) / 100)
    object.__setattr__(kpis, "retained", rng.choice([None, 0, 1]))
    alerts = tuple((s, n) for s in ("critical", "warning") if (n := rng.randrange(3)))
    owners = (rng.choice(["王芳", "李伟", "unassigned"]), rng.choice(["华东", "west"]))
    score = None if tier == "unrated" else rng.uniform(0, 100)
    return Snapshot(customer, tier, score, "standard", "v1", 0, kpis, owners, alerts)


def expected_rollups(latest: dict[str, dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The contract's rollup of each (dimension, name), from each customer's current snapshot."""
    rollups: dict[tuple[str, str], dict[str, Any]] = {}
    for customer, s in latest.items():
        for dimension, name in (("account_manager", s["account_manager"]), ("region", s["region"])):
            r = rollups.setdefault(
                (dimension, name),
                {
                    "revenue": Decimal(0),
                    "scores": [],
                    "tiers": Counter(),
                    "alerts": Counter(),
                    "retained": [],
                    "members": {},
                },
            )
            r["revenue"] += s["revenue"]
            r["tiers"][s["tier"]] += 1
            r["members"].setdefault(s["tier"], set()).add(customer)
            if s["tier"] != "unrated" and s["score"] is not None:
                r["scores"].append(s["score"])
            r["alerts"].update(s["alerts"])
            if s["retained"] is not None:
                r["retained"].append(s["retained"])
    return rollups


def rollup_problems(client: redis.Redis, prefix: str, latest: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    for (dimension, name), want in expected_rollups(latest).items():
        got = {
            k.decode(): v.decode() for k, v in client.hgetall(f"{prefix}rollup:{dimension}:{name}").items()
        }
        where = f"{dimension}/{name}"
        if got.get("revenue") != f"{want['revenue']:.2f}":
            problems.append(f"{where}: revenue {got.get('revenue')}, expected {want['revenue']:.2f}")
        mean = sum(want["scores"]) / len(want["scores"]) if want["scores"] else None
        if (mean is None) != (got.get("mean_score") == "") or (
            mean is not None and abs(float(got["mean_score"]) - mean) > 1e-6
        ):
            problems.append(f"{where}: mean_score {got.get('mean_score')}, expected {mean}")
        for tier in TIERS:
            if int(got.get(f"tier:{tier}", 0)) != want["tiers"][tier]:
                problems.append(
                    f"{where}: tier:{tier} {got.get(f'tier:{tier}')}, expected {want['tiers'][tier]}"
                )
            members = {m.decode() for m in client.smembers(f"{prefix}members:{dimension}:{name}:{tier}")}
            if members != want["members"].get(tier, set()):
                problems.append(f"{where}: members of {tier} {sorted(members)}")
        for severity in ("critical", "warning"):
            if int(got.get(f"alerts:{severity}", 0)) != want["alerts"][severity]:
                problems.append(f"{where}: alerts:{severity} {got.get(f'alerts:{severity}')}")
        rate = sum(want["retained"]) / len(want["retained"]) if want["retained"] else None
        if (rate is None) != (got.get("retention_rate") == "") or (
            rate is not None and abs(float(got["retention_rate"]) - rate) > 1e-6
        ):
            problems.append(f"{where}: retention_rate {got.get('retention_rate')}, expected {rate}")
    for tier in TIERS:
        everyone = {m.decode() for m in client.smembers(f"{prefix}tier:{tier}")}
        if everyone != {c for c, s in latest.items() if s["tier"] == tier}:
            problems.append(f"tier:{tier} set {sorted(everyone)}")
    return problems


async def test_any_sequence_of_writes_moves_and_re_writes_leaves_the_sum_of_the_latest(
    redis_url: str, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("tp") + ":"
    sink, rng = RedisSnapshotSink(redis_url, prefix), random.Random(7)
    latest: dict[str, dict[str, Any]] = {}
    written: dict[str, list[Snapshot]] = {}
    try:
        for _ in range(12):  # batches: customers move, change tier, are written again unchanged
            for _ in range(rng.randrange(1, 15)):
                customer = f"c{rng.randrange(10)}"
                earlier = written.get(customer, [])
                # Mostly a new snapshot; sometimes an older one again, as a re-delivery out of order.
                snapshot = rng.choice(earlier) if earlier and rng.random() < 0.2 else _snapshot(rng, customer)
                written.setdefault(customer, []).append(snapshot)
                for _ in range(rng.choice([1, 1, 2])):  # sometimes twice, as after a crash
                    sink.add(snapshot)
                    await sink.flush()
                latest[customer] = {
                    "account_manager": snapshot.owners[0],
                    "region": snapshot.owners[1],
                    "tier": snapshot.tier,
                    "revenue": snapshot.kpis.revenue,
                    "score": snapshot.score,
                    "alerts": dict(snapshot.open_alerts),
                    "retained": snapshot.kpis.retained,
                }
            client = redis.Redis.from_url(redis_url)
            assert rollup_problems(client, prefix, latest) == []
        by_revenue = await sink.rollups("account_manager")
        assert [r["revenue"] for r in by_revenue] == sorted((r["revenue"] for r in by_revenue), reverse=True)
        one = await sink.rollup("region", "west")
        assert one is not None and set(one["customers"]) <= set(TIERS)
    finally:
        await sink.close()
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


async def test_rollups_equal_the_snapshots_after_a_messy_stream_with_moves_and_a_kill(
    scorer: ScorerRun,
) -> None:
    log = demo_log(customers=16, days=10, seed=8)
    profiles = [json.loads(value) for kind, _, value in log if kind == "customers" and value]
    moves = []
    for profile in profiles[:3]:  # three customers move to another manager and region mid-stream
        moved = {**profile, "account_manager": "新经理", "region": "west"}
        moves.append(
            ("customers", profile["customer_id"].encode(), json.dumps(moved, ensure_ascii=False).encode())
        )
    middle = len(log) // 2
    worker, _ = scorer.start_worker()
    await scorer.produce(log[:middle])
    scorer.kill(worker)
    _, port = scorer.start_worker()
    scorer.start_worker(1)  # and a second worker joins: the partitions split between them
    await scorer.produce([*moves, *log[middle:]])
    snapshots = await scorer.finished()
    owners: dict[str, dict[str, Any]] = {}
    for kind, key, value in [*log[:middle], *moves, *log[middle:]]:
        if kind == "customers" and key and value:
            owners[key.decode()] = json.loads(value)
    client = redis.Redis.from_url(scorer.redis_url)
    latest = {}
    for customer, fields in snapshots.items():
        profile = owners.get(customer, {})
        contribution = {
            k.decode(): v.decode()
            for k, v in client.hgetall(f"{scorer.name}:contribution:{customer}").items()
        }
        latest[customer] = {
            "account_manager": profile.get("account_manager") or "unassigned",
            "region": profile.get("region") or "unassigned",
            "tier": fields["tier"],
            "revenue": Decimal(fields["revenue"]),
            "score": float(fields["score"]) if fields["score"] else None,
            "alerts": {s: int(contribution.get(s, 0)) for s in ("critical", "warning", "info")},
            "retained": int(fields["retained"]) if fields["retained"] else None,
        }
    assert rollup_problems(client, f"{scorer.name}:", latest) == []
    assert any(c["account_manager"] == "新经理" for c in latest.values())

    base = f"http://127.0.0.1:{port}"
    status, listed = http_json(f"{base}/rollups/account_manager")
    assert status == 200 and {r["name"] for r in listed} == {c["account_manager"] for c in latest.values()}
    moved = sorted(c for c, s in latest.items() if s["account_manager"] == "新经理")
    status, one = http_json(f"{base}/rollups/account_manager/{urllib.parse.quote('新经理')}")
    assert status == 200 and sorted(m for ms in one["customers"].values() for m in ms) == moved
    pages, cursor = [], ""
    while True:  # every customer of the region "west", two a page
        status, page = http_json(
            f"{base}/customers?region=west&limit=2" + (f"&cursor={cursor}" if cursor else "")
        )
        assert status == 200
        pages += page["customers"]
        if page["cursor"] is None:
            break
        cursor = urllib.parse.quote(page["cursor"])
    assert pages == sorted(c for c, s in latest.items() if s["region"] == "west")
    assert http_json(f"{base}/rollups/nowhere")[0] == 404


async def test_huge_revenues_neither_stall_the_sink_nor_break_the_sums(
    redis_url: str, unique_name: Callable[[str], str]
) -> None:
    """Amounts may have 30 digits: a customer counts at most 10^12 in a rollup, sums stay exact
    to the cent, and a step past what Redis adds leaves the rollup whole instead of half done."""
    prefix = unique_name("tp") + ":"
    sink, rng = RedisSnapshotSink(redis_url, prefix), random.Random(3)
    client = redis.Redis.from_url(redis_url, decode_responses=True)

    def with_revenue(customer: str, revenue: str, manager: str) -> Snapshot:
        snapshot = _snapshot(rng, customer)
        object.__setattr__(snapshot.kpis, "revenue", Decimal(revenue))
        object.__setattr__(snapshot, "owners", (manager, f"region-of-{manager}"))
        return snapshot

    try:
        sink.add(with_revenue("big", "1E+25", "m1"))
        sink.add(with_revenue("small", "12.345678", "m1"))
        await sink.flush()
        assert client.hget(f"{prefix}rollup:account_manager:m1", "revenue") == "1000000000012.35"
        for n in range(10):  # ten at the cap: the tenth would pass 9.2e18 millionths
            sink.add(with_revenue(f"cap{n}", "5E+12", "m2"))
            await sink.flush()  # never raises: the sink stays up
        assert sink.healthy
        revenue = client.hget(f"{prefix}rollup:account_manager:m2", "revenue")
        assert revenue == "9000000000000.00"  # nine counted; the tenth's snapshot is written alone
        assert client.exists(f"{prefix}customer:cap9") and not client.exists(f"{prefix}contribution:cap9")
    finally:
        await sink.close()
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
