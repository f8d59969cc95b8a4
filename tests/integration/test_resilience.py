"""Bad input, crashes and scale-out, against the real broker and Redis.

Every final snapshot is checked against tests/reference.py (the brute force) at
the snapshot's own as_of, and the tier-change chain against contract §5.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from models.policy import load_policy
from streams import demo
from tests.integration.harness import (
    INPUT_FIELDS,
    ScorerRun,
    chain_problems,
    http_json,
    reference_problems,
    wait_for_async,
)

KIND_NAMES = INPUT_FIELDS  # the demo's kinds by the harness's topic names


def demo_log(customers: int, days: float, seed: int) -> list[tuple[str, bytes | None, bytes | None]]:
    end = datetime.now(UTC) - timedelta(minutes=5)
    people = demo.customers(customers, seed)
    return [
        (KIND_NAMES[m.kind], m.key, m.value)
        for m in demo.history(people, end - timedelta(days=days), end, seed=seed, messy=True)
    ]


def customers_in(log: list[tuple[str, bytes | None, bytes | None]]) -> set[str]:
    return {key.decode() for kind, key, _ in log if kind == "customers" and key}


def final_tiers_match_the_chain(changes: list[dict[str, Any]], snapshots: dict[str, Any]) -> list[str]:
    last = {c["customer_id"]: c for c in changes}
    return [
        f"{c}: snapshot {s['tier']} as of {s['as_of']}, last change {last[c]['new_tier']} as of "
        f"{last[c]['as_of']} (emitted {last[c]['emitted_at']})"
        for c, s in snapshots.items()
        if c in last and last[c]["new_tier"] != s["tier"]
    ]


async def final_state_is_exact(
    scorer: ScorerRun, log: list[tuple[str, bytes | None, bytes | None]]
) -> dict[str, Any]:
    """Once everything is consumed: every customer has a snapshot equal to the brute-force
    reference at its as_of, the tier-change chain is consistent and ends at the snapshot's tier."""
    snapshots = await scorer.finished()
    assert customers_in(log) <= snapshots.keys()
    changes = await scorer.read("tier_changes")
    assert chain_problems(changes) == []
    assert final_tiers_match_the_chain(changes, snapshots) == []
    assert reference_problems(scorer.produced, snapshots, load_policy()) == []
    assert history_problems(scorer, changes, snapshots) == []
    return snapshots


def history_problems(
    scorer: ScorerRun, changes: list[dict[str, Any]], snapshots: dict[str, Any]
) -> list[str]:
    """Contract v2 §5: each customer's Redis history is its last 50 tier changes on the topic,
    newest first, each once, with the same ids (re-sends after a kill included)."""
    chains: dict[str, list[str]] = {}
    for change in changes:
        chain = chains.setdefault(change["customer_id"], [])
        if change["event_id"] not in chain:
            chain.append(change["event_id"])
    problems = []
    for customer in snapshots:
        listed = [c["event_id"] for c in scorer.history(customer)]
        expected = chains.get(customer, [])[::-1][:50]
        if listed != expected:
            problems.append(f"{customer}: history {listed}, the topic says {expected}")
    return problems


async def test_hostile_messages_go_to_dead_letters_and_the_good_ones_are_scored(scorer: ScorerRun) -> None:
    scorer.start_worker()
    good = {
        "event_id": "g1",
        "customer_id": "客户-ok",
        "occurred_at": datetime.now(UTC).isoformat(),
        "order_id": "o1",
        "type": "placed",
        "amount": "12.5",
        "promised_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
    }
    hostile: list[bytes] = [
        b"not json at all",
        b"",
        b"\xff\xfe\xfa",
        b"[" * 50_000 + b"]" * 50_000,
        b'{"a":' * 3000 + b"1" + b"}" * 3000,
        json.dumps({**good, "event_id": "x" * 200_000}).encode(),  # huge
        json.dumps({**good, "amount": -1}).encode(),
        json.dumps({**good, "amount": "lots"}).encode(),
        json.dumps({**good, "occurred_at": "tomorrow"}).encode(),
        json.dumps({**good, "occurred_at": "2026-01-01T00:00:00"}).encode(),  # no offset
        json.dumps({**good, "occurred_at": (datetime.now(UTC) + timedelta(days=3)).isoformat()}).encode(),
        json.dumps({k: v for k, v in good.items() if k != "order_id"}).encode(),
        json.dumps({**good, "type": 7}).encode(),
        json.dumps([good]).encode(),
        b"null",
    ]
    unkeyed = json.dumps({**good, "event_id": "g2", "customer_id": "unkeyed-1", "order_id": "o2"}).encode()
    messages = [("orders", b"bad", value) for value in hostile]
    messages[3:3] = [("orders", "客户-ok".encode(), json.dumps(good).encode()), ("orders", None, unkeyed)]
    await scorer.produce(messages)
    letters = await scorer.read("dead_letters", until=lambda found: len(found) >= len(hostile))
    assert len(letters) == len(hostile)
    assert sorted(base64.b64decode(letter["value_base64"]) for letter in letters) == sorted(hostile)
    assert all(letter["reason"] and letter["topic"] == scorer.topic("orders") for letter in letters)
    reasons = " | ".join(letter["reason"] for letter in letters)
    for needle in (
        "Invalid JSON",
        "field 'amount'",
        "field 'occurred_at'",
        "max_future_skew",
        "field 'order_id'",
        "bytes, more than the limit",
    ):
        assert needle in reasons
    await wait_for_async(
        lambda: (
            scorer.snapshot("客户-ok").get("order_count") == "1"
            and scorer.snapshot("unkeyed-1").get("order_count") == "1"
        ),
        30,
        "the good ones scored",
        scorer.logs,
    )


async def test_sigkilled_workers_lose_nothing_and_count_nothing_twice(scorer: ScorerRun) -> None:
    log = demo_log(customers=40, days=20, seed=11)
    chunks = [log[i::4] for i in range(4)]  # interleaved quarters: each quarter spans the whole month
    worker, _ = scorer.start_worker()
    for chunk in chunks[:3]:
        await scorer.produce(chunk)
        await asyncio.sleep(1.5)  # part-way through the chunk...
        scorer.kill(worker)  # ... SIGKILL: no commit, no flush, no goodbye
        worker, _ = scorer.start_worker()
    await scorer.produce(chunks[3])
    await final_state_is_exact(scorer, log)
    assert "Traceback" not in scorer.logs()


async def test_a_worker_joining_mid_stream_and_one_dying_lose_nothing(scorer: ScorerRun) -> None:
    """Partitions move twice while input flows: to a worker that joins, then back from one that
    is killed. Faust can deliver a prefetched record from past a skip around such moves and commit
    over the skipped ones; the stored input positions must catch it (streams/positions.py)."""
    scorer.partitions = 4
    log = demo_log(customers=40, days=15, seed=5)
    thirds = [log[: len(log) // 3], log[len(log) // 3 : 2 * len(log) // 3], log[2 * len(log) // 3 :]]
    first, first_port = scorer.start_worker(0)
    await scorer.produce(thirds[0])
    await asyncio.sleep(1)  # the first worker is busy with it...
    _, second_port = scorer.start_worker(1)  # ...when the second joins
    await scorer.produce(thirds[1])
    await wait_for_async(
        lambda: scorer.settled(2), 60, "the two workers to split the partitions", scorer.logs
    )
    answers = {
        http_json(f"http://127.0.0.1:{port}/customers/{c}")[0]
        for port in (first_port, second_port)
        for c in sorted(customers_in(log))[:10]
    }
    assert answers <= {200, 404} and 200 in answers  # any worker answers for any customer (routed)
    scorer.kill(first)
    await scorer.produce(thirds[2])
    snapshots = await final_state_is_exact(scorer, log)
    for customer in sorted(snapshots)[:10]:
        status, body = http_json(f"http://127.0.0.1:{second_port}/customers/{customer}")
        assert status == 200 and body["tier"] == snapshots[customer]["tier"], (customer, body)


async def test_an_input_topic_recreated_while_the_worker_is_down_is_read_again(scorer: ScorerRun) -> None:
    """Its offsets begin anew, below the stored position: the worker must not take the new
    records for re-deliveries (streams/positions.py)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    def placed(customer: str, n: int) -> tuple[str, bytes, bytes]:
        now = datetime.now(UTC)
        body = {
            "event_id": f"{customer}-{n}",
            "customer_id": customer,
            "order_id": f"{customer}-o{n}",
            "type": "placed",
            "amount": "10",
            "occurred_at": now.isoformat(),
            "promised_at": (now + timedelta(days=1)).isoformat(),
        }
        return ("orders", customer.encode(), json.dumps(body).encode())

    scorer.partitions = 1
    worker, _ = scorer.start_worker()
    await scorer.produce([placed("old", n) for n in range(5)])
    await wait_for_async(lambda: scorer.snapshot("old").get("order_count") == "5", 60, "old", scorer.logs)
    scorer.kill(worker)
    admin = AIOKafkaAdminClient(bootstrap_servers=scorer.bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([scorer.topic("orders")])
        await asyncio.sleep(3)
        await admin.create_topics([NewTopic(scorer.topic("orders"), 1, 1)])
    finally:
        await admin.close()
    await scorer.produce([placed("new", 0)])  # offset 0 again, below the stored position 5
    scorer.start_worker()
    await wait_for_async(
        lambda: scorer.snapshot("new").get("order_count") == "1",
        90,
        "the recreated topic's record",
        scorer.logs,
    )
    assert "recreated? reading it again" in scorer.logs()
