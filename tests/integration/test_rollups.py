"""Rollups per account manager and region (contract v2 §5) in the real Redis: always the sum over
the customers' current snapshots — revenue at risk (per tier) included — for any sequence of
writes, re-writes and moves (the script in sinks/rollups.py), and end to end after a messy
stream with profile moves and a kill. The name index the same script keeps (sinks/names.py):
always one member per named customer, its latest name."""

from __future__ import annotations

import dataclasses
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
from sinks.names import NameMatch, index_member, name_of
from sinks.redis import RedisSnapshotSink
from sinks.rollups import revenue_at_risk, rollup_json
from tests.integration.harness import ScorerRun, http_json
from tests.integration.test_resilience import demo_log

TIERS = ("strategic", "key", "standard", "at_risk", "unrated")
AT_RISK = "at_risk"  # the default policy's worst tier
NAMES = ("王芳", "王芳芳", "王五", "Acme Trading", "ACME  trading", "nul\x00in", " ", "")


def named(snapshot: Snapshot, name: str) -> Snapshot:
    """The snapshot with its profile's name."""
    return dataclasses.replace(snapshot, name=name)


def _snapshot(rng: random.Random, customer: str) -> Snapshot:
    tier = rng.choice(TIERS)
    kpis = Kpis(**dict.fromkeys(KPI_NAMES))  # type: ignore[arg-type]
    object.__setattr__(kpis, "revenue", Decimal(rng.randrange(0, 10**7)) / 100)
    object.__setattr__(kpis, "retained", rng.choice([None, 0, 1]))
    alerts = tuple((s, n) for s in ("critical", "warning") if (n := rng.randrange(3)))
    owners = (rng.choice(["王芳", "李伟", "unassigned"]), rng.choice(["华东", "west"]))
    score = None if tier == "unrated" else rng.uniform(0, 100)
    snapshot = Snapshot(customer, tier, score, "standard", "v1", 0, kpis, owners, alerts)
    return named(snapshot, rng.choice(NAMES))


def expected_rollups(latest: dict[str, dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The contract's rollup of each (dimension, name), from each customer's current snapshot."""
    rollups: dict[tuple[str, str], dict[str, Any]] = {}
    for customer, s in latest.items():
        for dimension, name in (("account_manager", s["account_manager"]), ("region", s["region"])):
            r = rollups.setdefault(
                (dimension, name),
                {
                    "revenue": Decimal(0),
                    "revenue_by_tier": Counter(),
                    "scores": [],
                    "tiers": Counter(),
                    "alerts": Counter(),
                    "retained": [],
                    "members": {},
                },
            )
            r["revenue"] += s["revenue"]
            r["revenue_by_tier"][s["tier"]] += s["revenue"]
            r["tiers"][s["tier"]] += 1
            r["members"].setdefault(s["tier"], set()).add(customer)
            if s["tier"] != "unrated" and s["score"] is not None:
                r["scores"].append(s["score"])
            r["alerts"].update(s["alerts"])
            if s["retained"] is not None:
                r["retained"].append(s["retained"])
    return rollups


def at_risk_revenue(want: dict[str, Any]) -> float:
    """An expected rollup's revenue at risk as the API answers it (2 decimals)."""
    return float(f"{want['revenue_by_tier'][AT_RISK]:.2f}")


def rollup_problems(client: redis.Redis, prefix: str, latest: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    for (dimension, name), want in expected_rollups(latest).items():
        got = {
            k.decode(): v.decode() for k, v in client.hgetall(f"{prefix}rollup:{dimension}:{name}").items()
        }
        where = f"{dimension}/{name}"
        if got.get("revenue") != f"{want['revenue']:.2f}":
            problems.append(f"{where}: revenue {got.get('revenue')}, expected {want['revenue']:.2f}")
        for tier in TIERS:  # revenue per tier: the revenue at risk is the worst tier's
            by_tier, expected = got.get(f"revenue:tier:{tier}", "0.00"), want["revenue_by_tier"][tier]
            if by_tier != f"{expected:.2f}":
                problems.append(f"{where}: revenue:tier:{tier} {by_tier}, expected {expected:.2f}")
        if int(got.get("revenue_customers", 0)) != sum(want["tiers"].values()):
            problems.append(f"{where}: revenue_customers {got.get('revenue_customers')}")
        at_risk = revenue_at_risk(rollup_json(got, {}), AT_RISK)
        if at_risk != at_risk_revenue(want):
            problems.append(f"{where}: revenue at risk {at_risk}, expected {at_risk_revenue(want)}")
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


def name_problems(client: redis.Redis, prefix: str, names: dict[str, str]) -> list[str]:
    """The name index against each customer's latest name (customer -> name; "" for none)."""
    got = {m.decode(): score for m, score in client.zrange(f"{prefix}names", 0, -1, withscores=True)}
    want = {index_member(name, customer) for customer, name in names.items()} - {""}
    problems = [f"names: {member!r} at score {score}" for member, score in got.items() if score != 0]
    if set(got) != want:
        problems.append(f"names: extra {sorted(set(got) - want)!r}, missing {sorted(want - set(got))!r}")
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
                    "name": name_of(snapshot),
                }
            client = redis.Redis.from_url(redis_url)
            assert rollup_problems(client, prefix, latest) == []
            assert name_problems(client, prefix, {c: s["name"] for c, s in latest.items()}) == []
        by_revenue = await sink.rollups("account_manager")
        assert [r["revenue"] for r in by_revenue] == sorted((r["revenue"] for r in by_revenue), reverse=True)
        one = await sink.rollup("region", "west")
        assert one is not None and set(one["customers"]) <= set(TIERS)
    finally:
        await sink.close()
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


async def test_the_name_index_finds_customers_by_the_start_of_their_latest_name(
    redis_url: str, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("tp") + ":"
    sink, rng = RedisSnapshotSink(redis_url, prefix), random.Random(5)
    client = redis.Redis.from_url(redis_url)

    async def write(customer: str, name: str) -> None:
        sink.add(named(_snapshot(rng, customer), name))
        await sink.flush()

    try:
        await write("客户-1", "上海华东物流有限公司")
        await write("客户-2", "上海华东物流有限公司")  # the same name: both found
        await write("c-3", "Ａcme\x00 Trading")  # full width, a NUL: found as "acme trading"
        await write("c-4", "王芳")
        found = await sink.search_names("上海华")  # a Chinese name by its first characters
        assert found.matches == (
            NameMatch("客户-1", "上海华东物流有限公司"),
            NameMatch("客户-2", "上海华东物流有限公司"),
        )
        assert not found.more
        assert (await sink.search_names("ACME t")).matches == (NameMatch("c-3", "Ａcme Trading"),)
        assert (await sink.search_names("华东")).matches == ()  # the start of a name, not any part

        await write("客户-1", "杭州新名字")  # a rename: the old name is gone, the new one found
        await write("客户-1", "杭州新名字")  # written again: changes nothing
        assert [m.customer_id for m in (await sink.search_names("上海")).matches] == ["客户-2"]
        assert (await sink.search_names("杭州")).matches == (NameMatch("客户-1", "杭州新名字"),)
        await write("c-4", "")  # a profile without a name any more: out of the index
        assert (await sink.search_names("王")).matches == ()
        names = {"客户-1": "杭州新名字", "客户-2": "上海华东物流有限公司", "c-3": "Ａcme\x00 Trading"}
        assert name_problems(client, prefix, names) == []

        for n in range(7):  # pages, by name then id
            await write(f"p{n}", f"page {n}")
        first = await sink.search_names("page", 0, 3)
        second = await sink.search_names("page", 3, 3)
        last = await sink.search_names("page", 6, 3)
        assert first.more and second.more and not last.more
        shown = [m.name for page in (first, second, last) for m in page.matches]
        assert shown == [f"page {n}" for n in range(7)]
    finally:
        await sink.close()
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


async def test_rollups_equal_the_snapshots_after_a_messy_stream_with_moves_and_a_kill(
    scorer: ScorerRun,
) -> None:
    log = demo_log(customers=16, days=10, seed=8)
    named_first = 0  # five customers have a name from the start; three of them are renamed below
    for n, (kind, key, value) in enumerate(log):
        if kind == "customers" and key and value and named_first < 5:
            profile = {**json.loads(value), "name": f"王芳 {named_first}"}
            log[n] = (kind, key, json.dumps(profile, ensure_ascii=False).encode())
            named_first += 1
    profiles = [json.loads(value) for kind, _, value in log if kind == "customers" and value]
    moves = []
    for profile in profiles[:3]:  # three customers move to another manager and region mid-stream
        renamed = f"新名 {profile['customer_id']}"
        moved = {**profile, "account_manager": "新经理", "region": "west", "name": renamed}
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
    # Renamed by the moves: only the latest names are found.
    names = {c: owners.get(c, {}).get("name", "") for c in latest}
    assert any(n.startswith("新名") for n in names.values())
    assert name_problems(client, f"{scorer.name}:", names) == []

    base = f"http://127.0.0.1:{port}"
    status, listed = http_json(f"{base}/rollups/account_manager")
    assert status == 200 and {r["name"] for r in listed} == {c["account_manager"] for c in latest.values()}
    want = expected_rollups(latest)
    for r in listed:  # the revenue of the customers in the policy's worst tier, to the cent
        assert r["revenue_at_risk"] == at_risk_revenue(want[("account_manager", r["name"])])
    moved = sorted(c for c, s in latest.items() if s["account_manager"] == "新经理")
    status, one = http_json(f"{base}/rollups/account_manager/{urllib.parse.quote('新经理')}")
    assert status == 200 and sorted(m for ms in one["customers"].values() for m in ms) == moved
    assert one["revenue_at_risk"] == at_risk_revenue(want[("account_manager", "新经理")])
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
        assert client.hget(f"{prefix}rollup:account_manager:m2", "revenue_customers") == "9"
        fields = client.hgetall(f"{prefix}rollup:account_manager:m2")
        by_tier = [Decimal(v) for k, v in fields.items() if k.startswith("revenue:tier:")]
        assert sum(by_tier) == Decimal(revenue)  # (whole amounts: no rounding between them)
        assert client.exists(f"{prefix}customer:cap9") and not client.exists(f"{prefix}contribution:cap9")
    finally:
        await sink.close()
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


async def test_rollups_and_tiers_written_by_0_6_are_listed_without_a_list_of_names(
    redis_url: str, unique_name: Callable[[str], str]
) -> None:
    """0.6 kept no set of rollup names or tiers: a worker's timer finds what it wrote by one SCAN,
    at first and every INDEX_SECONDS; the pages list from the sets (never a SCAN per request)."""
    prefix = unique_name("tp") + ":"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    # As the 0.6 script left them: a rollup hash, its members, the tier set, no sets of names.
    client.hset(
        f"{prefix}rollup:region:西部", mapping={"tier:key": 1, "revenue": "10.00", "revenue_units": 10**7}
    )
    client.sadd(f"{prefix}members:region:西部:key", "old-1")
    client.sadd(f"{prefix}tier:key", "old-1")
    sink = RedisSnapshotSink(redis_url, prefix)
    try:
        assert await sink.rollups("region") == [] and await sink.customers(None, {}) == []  # not yet
        await sink.index_old_names()
        assert [r["name"] for r in await sink.rollups("region")] == ["西部"]
        assert await sink.customers(None, {}) == ["old-1"]
        assert client.smembers(f"{prefix}rollups:region") == {"西部"} and client.smembers(
            f"{prefix}tiers"
        ) == {"key"}
        # Another written by 0.6 meanwhile: found at the next look, not before.
        client.hset(
            f"{prefix}rollup:region:东部", mapping={"tier:key": 1, "revenue": "1.00", "revenue_units": 10**6}
        )
        await sink.index_old_names()
        assert [r["name"] for r in await sink.rollups("region")] == ["西部"]
        sink._names_indexed.clear()  # (as INDEX_SECONDS later)
        await sink.index_old_names()
        assert [r["name"] for r in await sink.rollups("region")] == ["西部", "东部"]
    finally:
        await sink.close()
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
