"""The pipeline's routing, with plain dicts standing in for the Faust tables."""

from __future__ import annotations

import base64
import dataclasses
import json
from decimal import Decimal

import pytest

from models.codec import StoredSummary
from models.event_time import MICROS_PER_DAY, Window
from models.events import Topic
from models.policy import load_policy
from streams.pipeline import KIND_HEADER, ORIGIN_HEADER, BatchResult, Pipeline, Record, Routing
from streams.positions import PartitionProgress
from tests.unit.builders import DictTables, at, us

KINDS = {
    "orders": Topic.ORDERS,
    "tickets": Topic.TICKETS,
    "complaints": Topic.COMPLAINTS,
    "customers": Topic.CUSTOMERS,
}


def pipeline() -> Pipeline:
    return Pipeline(
        load_policy(),
        Window(MICROS_PER_DAY, 30),
        Routing(KINDS, "rekeyed", "sweep"),
        lateness_us=0,
        max_future_skew_us=3600 * 10**6,
        max_event_bytes=4096,
        cached_states=16,
    )


def order(customer: str, n: int, day: float = 1) -> bytes:
    return json.dumps(
        {
            "event_id": f"{customer}-{n}",
            "customer_id": customer,
            "order_id": f"o{n}",
            "type": "placed",
            "occurred_at": at(day),
            "amount": "10",
            "promised_at": at(day + 1),
        }
    ).encode()


def test_bad_input_goes_to_dead_letters_with_its_coordinates_and_good_input_around_it_is_scored() -> None:
    tables, scorer = DictTables(), pipeline()
    records = [
        Record("orders", 0, 1, b"c1", order("c1", 1)),
        Record("orders", 0, 2, b"c1", b"{not json"),
        Record("orders", 0, 3, b"c1", order("c1", 3)[:-1] + b', "amount": -2}'),
        Record("orders", 0, 4, b"c1", order("c1", 4)),
    ]
    result = scorer.process(records, tables, us(2))
    assert [letter["offset"] for _, letter in result.dead_letters] == [2, 3]
    first = result.dead_letters[0][1]
    assert first["topic"] == "orders" and first["partition"] == 0
    assert base64.b64decode(str(first["value_base64"])) == b"{not json" and "Invalid JSON" in str(
        first["reason"]
    )
    assert "field 'amount'" in str(result.dead_letters[1][1]["reason"])
    assert result.outcomes == {("orders", "accepted"): 2, ("orders", "invalid"): 2}
    assert result.states["c1"][1].kpis(us(2), scorer.window, (1, 1, 1, 1)).order_count == 2


def test_unkeyed_events_are_rekeyed_then_absorbed_with_their_origin_kept() -> None:
    tables, scorer = DictTables(), pipeline()
    first = scorer.process([Record("orders", 3, 77, None, order("客户-9", 1))], tables, us(2))
    assert first.states == {} and len(first.rekeyed) == 1
    key, value, headers = first.rekeyed[0]
    assert key == "客户-9".encode() and headers == {KIND_HEADER: b"orders", ORIGIN_HEADER: b"orders/3/77"}
    second = scorer.process([Record("rekeyed", 1, 0, key, value, headers)], tables, us(2))
    assert second.outcomes == {("orders", "accepted"): 1} and "客户-9" in second.states
    bad = scorer.process([Record("rekeyed", 1, 1, key, b"[]", headers)], tables, us(2))
    assert (bad.dead_letters[0][1]["topic"], bad.dead_letters[0][1]["offset"]) == ("orders", 77)


def test_profiles_and_tombstones_choose_the_segment() -> None:
    tables, scorer = DictTables(), pipeline()
    profile = json.dumps({"customer_id": "k1", "segment": "key_account"}).encode()
    tables.store(
        scorer.process(
            [Record("customers", 0, 0, b"k1", profile), Record("orders", 0, 0, b"k1", order("k1", 1))],
            tables,
            us(2),
        )
    )
    assert (
        scorer.process([Record("orders", 0, 1, b"k1", order("k1", 2))], tables, us(2))
        .evaluations[-1]
        .snapshot.segment
        == "key_account"
    )
    result = scorer.process([Record("customers", 0, 1, b"k1", None)], tables, us(2))
    assert result.evaluations[-1].snapshot.segment == "standard"


def test_a_batch_replayed_after_its_states_but_not_its_progress_were_stored_changes_nothing() -> None:
    tables, scorer = DictTables(), pipeline()
    batch = [Record("orders", 0, n, b"c1", order("c1", n, day=n)) for n in range(1, 6)]
    first = scorer.process(batch, tables, us(9))
    for _, (_, state) in first.states.items():
        state.status.outbox.clear()
    tables.store(first, progress=False)  # the worker died between the two flushes
    stored = dict(tables.states)
    again = pipeline().process(batch, tables, us(9))  # a restarted worker is re-fed the batch
    assert again.outcomes == {("orders", "duplicate"): 5}
    assert all(not state.status.outbox for _, (_, state) in again.states.items())
    assert stored.keys() == tables.states.keys()
    assert again.progress[0].next_offsets == {"orders": 6}


def test_records_already_processed_are_skipped_and_a_skip_ahead_asks_for_a_re_fetch() -> None:
    tables, scorer = DictTables(), pipeline()
    tables.store(
        scorer.process([Record("orders", 0, n, b"c1", order("c1", n)) for n in range(3)], tables, us(9))
    )
    restarted = pipeline()  # Faust delivers from past offset 3 (a prefetched record), then 1-2 again
    ahead = restarted.process([Record("orders", 0, n, b"c1", order("c1", n)) for n in (7, 8)], tables, us(9))
    assert ahead.rewinds == {("orders", 0): 3} and not ahead.outcomes and not ahead.evaluations
    assert ahead.progress == {}  # nothing processed: nothing to store
    again = restarted.process(
        [Record("orders", 0, n, b"c1", order("c1", n)) for n in range(1, 9)], tables, us(9)
    )
    assert again.redelivered == {"orders": 2} and again.rewinds == {}
    assert again.outcomes == {("orders", "accepted"): 6}
    assert again.progress[0].next_offsets == {"orders": 9}


def test_a_real_hole_in_the_offsets_is_accepted_after_one_re_fetch() -> None:
    tables, scorer = DictTables(), pipeline()
    tables.store(scorer.process([Record("customers", 0, 0, b"c1", b'{"customer_id": "c1"}')], tables, us(9)))
    first = scorer.process([Record("orders", 0, 0, b"c1", order("c1", 0))], tables, us(9))
    assert first.rewinds == {} and first.progress[0].next_offsets == {"customers": 1, "orders": 1}
    compacted = [Record("customers", 0, 5, b"c1", b'{"customer_id": "c1", "segment": "key_account"}')]
    assert scorer.process(compacted, tables, us(9)).rewinds == {("customers", 0): 1}
    refetched = scorer.process(compacted, tables, us(9))  # the same record comes first again: 1-4 are gone
    assert refetched.rewinds == {} and refetched.outcomes == {("customers", "accepted"): 1}


def test_the_watermark_passing_a_deadline_evaluates_that_customer_at_once() -> None:
    tables, scorer = DictTables(), pipeline()
    opened = json.dumps(
        {
            "event_id": "t",
            "customer_id": "vip",
            "ticket_id": "T",
            "type": "opened",
            "priority": "P1",
            "occurred_at": at(1),
        }
    ).encode()
    other = order("someone", 1, day=1.1)  # 2.4 hours later, on the same partition
    result = scorer.process(
        [Record("tickets", 0, 0, b"vip", opened), Record("orders", 0, 0, b"someone", other)], tables, us(2)
    )
    fired = [a.rule for e in result.evaluations for a in e.alerts if e.snapshot.customer_id == "vip"]
    assert fired == ["p1_ticket_unanswered"]  # its deadline (60 min) passed when the order moved T


def test_a_sweep_refreshes_stale_snapshots_a_few_per_busy_batch_and_more_when_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("streams.pipeline.REFRESHES_PER_BUSY_BATCH", 2)
    tables, scorer = DictTables(), pipeline()
    customers = [f"c{n}" for n in range(5)]
    first = [Record("orders", 0, n, c.encode(), order(c, 1, day=1)) for n, c in enumerate(customers)]
    tables.store(scorer.process(first, tables, us(9)))
    # 0.9 day later on the same partition (before any promise is due): every snapshot's
    # days_since_last_order is stale, and no decision is due.
    later = [Record("orders", 0, 5, b"other", order("other", 1, day=1.9))]
    tables.store(scorer.process(later, tables, us(9)))

    def refreshed(result: BatchResult) -> list[str]:
        return sorted(
            e.snapshot.customer_id for e in result.evaluations if e.snapshot.customer_id in customers
        )

    busy = scorer.process(
        [Record("sweep", 0, 0, None, b""), Record("orders", 0, 6, b"x", order("x", 1, 1.9))], tables, us(9)
    )
    assert len(refreshed(busy)) == 2
    tables.store(busy)
    assert scorer.pending(us(9)) == []  # input flows: its batches carry the refreshes on
    # A tick amid input (the next input is 0.5 s away) does no more than an input batch.
    tick = scorer.process([Record("sweep", 0, 1, None, b"")], tables, us(9, minutes=0.5 / 60))
    assert len(refreshed(tick)) == 2
    tables.store(tick)
    # No input for a second: idle, and the rest goes in one tick.
    quiet = us(9, minutes=1 / 60)
    assert scorer.pending(quiet) == [0]
    idle = scorer.process([Record("sweep", 0, 2, None, b"")], tables, quiet)
    assert sorted(refreshed(busy) + refreshed(tick) + refreshed(idle)) == customers
    assert scorer.pending(quiet) == []
    assert {e.snapshot.kpis.days_since_last_order for e in idle.evaluations} == {Decimal("0.90")}


def test_a_taken_over_partition_is_scanned_a_few_customers_per_busy_batch_counting_each_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("streams.pipeline.SCANS_PER_BUSY_BATCH", 2)
    tables, scorer = DictTables(), pipeline()
    customers = [f"c{n}" for n in range(6)]
    first = [Record("orders", 0, n, c.encode(), order(c, 1)) for n, c in enumerate(customers)]
    tables.store(scorer.process(first, tables, us(9)))  # first ratings stored, never delivered
    restarted = pipeline()
    busy = restarted.process([Record("orders", 0, 6, b"c0", order("c0", 2))], tables, us(9))
    assert sum(restarted.population[0].values()) == 3  # c0 through its event, two scanned
    idle = restarted.process([Record("sweep", 0, 0, None, b"")], tables, us(9, minutes=1 / 60))
    assert sum(restarted.population[0].values()) == 6
    assert idle.population_changed  # the tier gauge is updated from it
    assert {c for c, _ in busy.outboxes()} | {c for c, _ in idle.outboxes()} == set(customers)


def test_a_recreated_input_topic_is_read_again_from_its_first_record() -> None:
    tables, scorer = DictTables(), pipeline()
    tables.store(
        scorer.process([Record("orders", 0, n, b"c1", order("c1", n)) for n in range(3)], tables, us(9))
    )
    restarted = pipeline()
    assert restarted.process([Record("orders", 0, 0, b"c2", order("c2", 0))], tables, us(9)).redelivered
    assert restarted.input_restarted(("orders", 0)) and not restarted.input_restarted(("orders", 0))
    again = restarted.process([Record("orders", 0, 0, b"c2", order("c2", 0))], tables, us(9))
    assert again.outcomes == {("orders", "accepted"): 1} and again.progress[0].next_offsets == {"orders": 1}


@pytest.mark.parametrize("change", ["none", "policy", "shadow on", "shadow off"])
def test_an_adopted_customer_keeps_the_schedule_it_was_stored_with_unless_the_policy_changed(
    change: str,
) -> None:
    """A new live version, or a shadow policy turned on or off (shadow mode), re-plans at once."""
    candidate = dataclasses.replace(pipeline().policy, version="candidate")
    tables, scorer = DictTables(), pipeline()
    scorer.shadow = candidate if change == "shadow off" else None
    tables.store(scorer.process([Record("orders", 0, 0, b"c", order("c", 1, day=1))], tables, us(9)))
    due = StoredSummary.of(tables.states["c"]).due
    assert due is not None and us(1.2) < due < us(9)
    restarted = pipeline()
    if change == "policy":
        restarted.policy = dataclasses.replace(restarted.policy, version="next")
    restarted.shadow = candidate if change == "shadow on" else None
    policy_changed = change != "none"

    def c_evaluated_at(instant: int, offset: int) -> bool:
        day = (instant - us(0)) / MICROS_PER_DAY
        result = restarted.process(
            [Record("orders", 0, offset, b"d", order("d", offset, day))], tables, us(9)
        )
        tables.store(result)
        return any(e.snapshot.customer_id == "c" for e in result.evaluations)

    # Before its due instant: only a customer stored under another policy version is re-planned
    # (at the first watermark move after the batch that scanned it).
    assert not c_evaluated_at(us(1.1), 1)
    assert sum(restarted.population[0].values()) == 2  # c counted from its summary alone, and d
    assert c_evaluated_at(us(1.2), 2) is policy_changed
    if not policy_changed:
        assert c_evaluated_at(due + 1000, 3)


def test_decoded_states_are_reused_between_batches_and_dropped_with_their_partition() -> None:
    tables, scorer = DictTables(), pipeline()
    first = scorer.process([Record("orders", 0, 0, b"c1", order("c1", 0))], tables, us(2))
    tables.store(first)
    kept, stored = first.states["c1"][1], tables.states["c1"]
    tables.states["c1"] = b"not read while the decoded state is kept"
    second = scorer.process([Record("orders", 0, 1, b"c1", order("c1", 1))], tables, us(2))
    assert second.states["c1"][1] is kept and kept.kpis(us(2), scorer.window, (1, 1, 1, 1)).order_count == 2
    # A batch that failed after the pipeline (streams/app.py): nothing of it was stored, so the
    # partition is forgotten, decoded states with it, and its input is read again from the store.
    tables.states["c1"] = stored
    failed = scorer.process([Record("orders", 0, 2, b"c1", order("c1", 2))], tables, us(2))
    assert failed.outcomes == {("orders", "accepted"): 1}
    scorer.forget(scorer.adopted())
    assert scorer.cached() == 0
    again = scorer.process([Record("orders", 0, 1, b"c1", order("c1", 1))], tables, us(2))
    assert again.outcomes == {("orders", "accepted"): 1}  # not a duplicate: read from the store
    assert again.states["c1"][1] is not kept
    many = [Record("orders", 0, 2 + n, f"m{n}".encode(), order(f"m{n}", n)) for n in range(40)]
    scorer.process(many, tables, us(2))
    assert scorer.cached() == 16  # the bound (cached_states), the most recent kept


def test_a_partition_whose_progress_says_redis_is_behind_stays_so_until_refilled() -> None:
    tables, scorer = DictTables(), pipeline()
    tables.reached[0] = PartitionProgress({"orders": 0}, {}, None, redis_behind=True)
    assert PartitionProgress.from_bytes(tables.reached[0].to_bytes()).redis_behind
    first = scorer.process([Record("orders", 0, 0, b"c1", order("c1", 0))], tables, us(2))
    assert scorer.redis_behind() == {0} and first.progress[0].redis_behind  # a crash now: still said
    scorer.redis_refilled({0})
    second = scorer.process([Record("orders", 0, 1, b"c1", order("c1", 1))], tables, us(2))
    assert scorer.redis_behind() == set() and not second.progress[0].redis_behind
    assert not PartitionProgress.from_bytes(second.progress[0].to_bytes()).redis_behind
