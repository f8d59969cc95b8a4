"""A scripted month of four customers, checked on every output: Kafka, Redis, HTTP.

A: on-time delivery collapses        -> strategic, then downgraded to key
B: a complaint burst (retail segment) -> at_risk
C: falls to at_risk, then recovers   -> every upgrade only past the next tier's minimum + h
D: a P1 ticket unanswered             -> the alert fires once, then resolves once when answered
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema

from models.event_time import to_micros, to_rfc3339
from tests.integration.harness import REPO, ScorerRun, chain_problems, http_json, wait_for_async

POLICY = Path(__file__).with_name("scenario_policy.yaml")
SCHEMAS = REPO / "deploy" / "schemas"
BASE = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=26)
MINIMUMS = {"strategic": 80, "key": 60, "standard": 40, "at_risk": 0}
ORDER = ["strategic", "key", "standard", "at_risk"]


async def _follow_their_schema_and_say_so(
    scorer: ScorerRun, kind: str, bodies: list[dict[str, Any]], topic: str
) -> None:
    """Each message validates against the checked-in schema of its topic (what a CRM developer
    reads), and its headers say what it is."""
    schema = json.loads((SCHEMAS / f"{topic}.schema.json").read_text(encoding="utf-8"))
    for body in bodies:
        jsonschema.validate(body, schema)
    expected = {
        "content-type": b"application/json",
        "tierpulse-schema-version": b"2",
        "tierpulse-policy-version": b"scenario-1",
    }
    headers = await scorer.headers(kind)
    assert headers and all(h == expected for h in headers), headers


def _at(day: float) -> datetime:
    return BASE + timedelta(days=day)


def _msg(
    kind: str, customer: str, day: float, n: list[int], **fields: Any
) -> tuple[str, bytes, bytes, float]:
    n[0] += 1
    body = {
        "event_id": f"{customer}-{n[0]}",
        "customer_id": customer,
        "occurred_at": _at(day).isoformat(),
        **fields,
    }
    return kind, customer.encode(), json.dumps(body, ensure_ascii=False).encode(), day


def _order(
    customer: str, day: int, n: list[int], *, amount: str, delivered: bool
) -> list[tuple[str, bytes, bytes, float]]:
    """An order placed on ``day``, promised for the next day, delivered half a day early or never."""
    promise = _at(day + 1).isoformat()
    placed = _msg(
        "orders",
        customer,
        day,
        n,
        order_id=f"{customer}{day}",
        type="placed",
        amount=amount,
        promised_at=promise,
    )
    if not delivered:
        return [placed]
    return [
        placed,
        _msg(
            "orders",
            customer,
            day + 0.5,
            n,
            order_id=f"{customer}{day}",
            type="delivered",
            promised_at=promise,
        ),
    ]


def _script() -> list[tuple[str, bytes, bytes, float]]:
    n = [0]
    events = [("customers", b"B", json.dumps({"customer_id": "B", "segment": "retail"}).encode(), 0.0)]
    for day in range(10):  # A and B: good months
        for customer in ("A", "B"):
            events += _order(customer, day, n, amount="100", delivered=True)
    for day in range(10, 22):  # A's deliveries stop: every later order is late once due
        events += _order("A", day, n, amount="100", delivered=False)
    for k in range(10):  # B: a burst of complaints
        events.append(
            _msg(
                "complaints", "B", 14 + k / 2, n, complaint_id=f"B-c{k}", severity="high", category="quality"
            )
        )
    for day in range(5):  # C starts badly: late orders and complaints
        events += _order("C", day, n, amount="50", delivered=False)
    events += [
        _msg("complaints", "C", 1, n, complaint_id=f"C-c{k}", severity="low", category="billing")
        for k in range(2)
    ]
    for day in range(6, 16):  # ... then recovers
        events += _order("C", day, n, amount="50", delivered=True)
    events.append(_msg("tickets", "客户-D", 20, n, ticket_id="T1", type="opened", priority="P1"))
    events.append(
        _msg(
            "orders",
            "客户-D",
            20,
            n,
            order_id="D1",
            type="placed",
            amount="10",
            promised_at=_at(30).isoformat(),
        )
    )
    # Another ticket on day 23 moves the watermark past D's SLA warning point; D's answer (given
    # at 00:50, before the deadline) reaches the topic only after it.
    events.append(_msg("tickets", "A", 23, n, ticket_id="TA", type="opened", priority="P4"))
    events.sort(key=lambda e: e[3])
    kind, key, value, _ = _msg("tickets", "客户-D", 20 + 50 / 1440, n, ticket_id="T1", type="first_response")
    events.append((kind, key, value, 23.0))  # answered at 00:50, delivered with day 23's traffic
    return events


async def _produce_like_a_live_stream(
    scorer: ScorerRun, script: list[tuple[str, bytes, bytes, float]]
) -> None:
    """Day by day, each day only once the worker has caught up with the one before: the
    topics are then interleaved in time as a live stream's are (a month sent at once is read
    topic by topic, and the watermark would run ahead of most events)."""
    days = sorted({int(day) for *_, day in script})
    for day in days:
        todays = [(kind, key, value) for kind, key, value, at in script if int(at) == day]
        await scorer.produce(todays)
        last_key, date = todays[-1][1].decode(), _at(day).isoformat()[:10]
        await wait_for_async(
            lambda key=last_key, date=date: scorer.snapshot(key).get("as_of", "") >= date,
            30,
            f"the worker to reach day {day}",
            scorer.logs,
        )


async def test_a_scripted_month_reaches_every_output(scorer: ScorerRun) -> None:
    scorer.policy, scorer.partitions = POLICY, 1  # one partition: one watermark for all four
    _, port = scorer.start_worker()
    await _produce_like_a_live_stream(scorer, _script())
    final_as_of = to_rfc3339(to_micros(_at(23)))

    alerts = await scorer.read("alerts", until=lambda found: len(found) >= 2)
    assert [(a["customer_id"], a["rule"], a["state"]) for a in alerts] == [
        ("客户-D", "p1_near_breach", "firing"),
        ("客户-D", "p1_near_breach", "resolved"),
    ]
    assert alerts[0]["alert_id"] == alerts[1]["alert_id"]
    await _follow_their_schema_and_say_so(scorer, "alerts", alerts, "customer-alerts")

    await wait_for_async(
        lambda: all(scorer.snapshot(c).get("as_of") == final_as_of for c in "ABC"),
        60,
        "every snapshot at the final watermark",
        scorer.logs,
    )
    changes = await scorer.read("tier_changes")
    assert chain_problems(changes) == []
    await _follow_their_schema_and_say_so(scorer, "tier_changes", changes, "customer-tier-changes")
    by_customer: dict[str, list[dict[str, Any]]] = {}
    for change in changes:
        by_customer.setdefault(change["customer_id"], []).append(change)

    a = by_customer["A"]
    assert a[0]["new_tier"] == "strategic" and a[-1]["new_tier"] == "key"
    assert {r["kpi"] for r in a[-1]["reasons"]} == {"on_time_delivery_rate", "complaint_rate"}
    assert a[-1]["kpis"]["on_time_delivery_rate"] < 0.5 and a[-1]["policy_version"] == "scenario-1"
    assert a[-1]["score"] < MINIMUMS["strategic"] - 5  # it fell below strategic's minimum - h

    assert by_customer["B"][-1]["new_tier"] == "at_risk" and by_customer["B"][-1]["segment"] == "retail"

    c = by_customer["C"]
    tiers = [change["new_tier"] for change in c]
    assert "at_risk" in tiers and tiers[-1] in ("key", "strategic")  # fell, then recovered
    assert tiers.index("at_risk") < len(tiers) - 1
    for change in c[1:]:
        previous = ORDER.index(change["previous_tier"])
        if ORDER.index(change["new_tier"]) < previous:  # an upgrade
            assert change["score"] >= MINIMUMS[ORDER[previous - 1]] + 5, change

    for customer in ("A", "B", "C"):
        snapshot = scorer.snapshot(customer)
        assert snapshot["tier"] == by_customer[customer][-1]["new_tier"]
        assert snapshot["policy_version"] == "scenario-1" and snapshot["csat"] == ""  # undefined KPI: empty
        status, body = http_json(f"http://127.0.0.1:{port}/customers/{customer}")
        assert status == 200 and body["tier"] == snapshot["tier"] and body["as_of"] == final_as_of
        assert float(snapshot["score"]) == body["score"]
    status, body = http_json(f"http://127.0.0.1:{port}/customers/%E5%AE%A2%E6%88%B7-D")  # 客户-D
    assert status == 200 and body["customer_id"] == "客户-D"
    assert scorer.snapshot("客户-D")["tier"] == body["tier"]
    assert http_json(f"http://127.0.0.1:{port}/customers/nobody")[0] == 404
