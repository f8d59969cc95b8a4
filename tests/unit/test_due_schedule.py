"""A bounded due schedule (models/schedule.py) hands out what an unbounded one does, in order,
with its memory bounded; the RocksDB spill (streams/spill.py) behaves as the in-memory one."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.event_time import EARLIEST, MICROS_PER_DAY, Window
from models.policy import load_policy
from models.schedule import DueSchedule, SortedSpill
from models.state import CustomerState
from streams.pipeline import Record
from streams.spill import SpillDatabase
from tests.unit.builders import DictTables, us
from tests.unit.histories import histories
from tests.unit.replay import make_pipeline

POLICY = load_policy()

CUSTOMERS = [f"c{i}" for i in range(12)]
dues = st.one_of(st.none(), st.just(EARLIEST), st.integers(0, 40))
operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.sampled_from(CUSTOMERS), dues),
        st.tuples(st.just("pop"), st.integers(0, 45), st.one_of(st.none(), st.integers(1, 4))),
    ),
    max_size=80,
)


def _scheduled(schedule: DueSchedule, customer_id: str) -> int | None:
    return schedule._due.get(customer_id)


@settings(max_examples=600, deadline=None)
@given(operations, st.integers(2, 6))
def test_a_bounded_schedule_hands_out_what_an_unbounded_one_does(ops: list[tuple], limit: int) -> None:
    """As the pipeline uses it: whoever is handed out is evaluated and scheduled again at its
    true due instant (the reference's). Everyone the reference hands out, the bounded schedule
    hands out in the same call (with a budget: the budget is not left unused while anyone is
    due); an extra (a stale spilled entry) only costs an evaluation."""
    reference, bounded = DueSchedule(), DueSchedule(limit, SortedSpill())
    for op in ops:
        if op[0] == "set":
            _, customer_id, due = op
            reference.set(customer_id, due)
            bounded.set(customer_id, due)
        else:
            _, as_of, budget = op
            if budget is None:
                expected = reference.pop_due(as_of)
                got = bounded.pop_due(as_of)
                assert set(expected) <= set(got)
            else:
                got = bounded.pop_due(as_of, budget)
                assert len(got) <= budget
                for customer_id in got:
                    due = _scheduled(reference, customer_id)
                    if due is not None and due <= as_of:
                        reference.set(customer_id, None)  # handed out by both
                if len(got) < budget:
                    assert reference.pop_due(as_of) == []  # nobody due was left waiting
            for customer_id in got:  # evaluated: scheduled again where it truly is
                bounded.set(customer_id, _scheduled(reference, customer_id))
        assert len(bounded) <= limit + limit // 2
    # In the end everyone still scheduled is handed out.
    assert set(reference.pop_due(10**6)) <= set(bounded.pop_due(10**6))


def test_a_stale_spilled_entry_is_handed_out_early_but_nobody_late() -> None:
    schedule = DueSchedule(2, SortedSpill())
    for customer_id, due in (("x", 1), ("a", 5), ("b", 8)):
        schedule.set(customer_id, due)  # a and b spill
    schedule.set("a", 9)  # back in memory: (5, a) is stale
    schedule.set("y", 2)  # a:9 spills again
    assert set(schedule.pop_due(6)) == {"x", "y", "a"}  # a: the stale (5, a), an extra
    schedule.set("a", 9)  # as the pipeline does: evaluated, scheduled where it truly is
    assert schedule.pop_due(8) == ["b"]
    assert schedule.pop_due(9) == ["a"]


def test_ties_at_the_horizon_come_back_a_part_at_a_time() -> None:
    schedule = DueSchedule(10, SortedSpill())
    for n in range(1_000):
        schedule.set(f"c{n:04d}", EARLIEST)  # e.g. everyone before the first watermark
    handed: list[str] = []
    while batch := schedule.pop_due(0, 4):
        handed += batch
        assert len(schedule) <= 15
    assert sorted(handed) == [f"c{n:04d}" for n in range(1_000)]


def test_memory_stays_bounded_and_without_re_scheduling_the_order_is_exact() -> None:
    rng = random.Random(5)
    moves: list[tuple[str, int]] = []
    bounded = DueSchedule(100, SortedSpill(), lambda direction, count: moves.append((direction, count)))
    instants = {f"c{i}": rng.randrange(1_000_000) for i in range(5_000)}
    for customer_id, due in instants.items():
        bounded.set(customer_id, due)
        assert len(bounded) <= 100
    handed: list[str] = []
    for as_of in range(0, 1_000_001, 10_000):
        handed += bounded.pop_due(as_of)
    assert handed == sorted(instants, key=lambda c: (instants[c], c))
    spilled = sum(n for d, n in moves if d == "out")
    assert spilled == sum(n for d, n in moves if d == "back") >= 5_000 - 100


def test_a_bounded_schedule_needs_a_limit_and_a_spill() -> None:
    with pytest.raises(ValueError):
        DueSchedule(100)
    with pytest.raises(ValueError):
        DueSchedule(1, SortedSpill())


def test_the_rocksdb_spill_behaves_as_the_one_in_memory(tmp_path: Path) -> None:
    database = SpillDatabase(tmp_path / "spill")
    rocks, memory = database.spill(3, "decisions"), SortedSpill()
    neighbour = database.spill(31, "decisions")  # "3/" must not see "31/"
    neighbour.add([(7, "other")])
    rng = random.Random(1)
    for _ in range(2_000):
        roll = rng.random()
        if roll < 0.5:
            entries = [
                (rng.choice([EARLIEST, 2**62, rng.randrange(500)]), f"c{rng.randrange(200)}")
                for _ in range(rng.randrange(6))
            ]
            rocks.add(entries)
            memory.add(entries)
        elif roll < 0.97:
            count = rng.randrange(1, 8)
            assert rocks.take(count) == memory.take(count)
        else:
            rocks.clear()
            memory.clear()
        assert rocks.first() == memory.first()
    assert neighbour.take(5) == [(7, "other")]
    database.close()


def test_a_new_spill_database_forgets_the_last_runs(tmp_path: Path) -> None:
    database = SpillDatabase(tmp_path / "spill")
    database.spill(0, "refreshes").add([(1, "c")])
    database.close()
    again = SpillDatabase(tmp_path / "spill")
    assert again.spill(0, "refreshes").first() is None
    again.close()


def test_a_customer_rescheduled_earlier_after_it_was_spilled_is_due_at_the_earlier_instant() -> None:
    schedule = DueSchedule(4, SortedSpill())
    for customer_id, due in (("x", 1), ("y", 2), ("d", 40), ("c", 44), ("w", 60)):
        schedule.set(customer_id, due)  # the fifth spills d, c and w
    schedule.set("c", 43)  # the spilled (44, c) is stale now
    assert schedule.pop_due(41) == ["x", "y", "d"]  # took (40, d) and the stale (44, c) back
    assert schedule.pop_due(43) == ["c"]
    assert schedule.pop_due(100) == ["w"]


def _bounded_schedules(partition: int, which: str) -> DueSchedule:
    return DueSchedule(2, SortedSpill())


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_pipeline_with_tiny_spilling_schedules_decides_exactly_as_one_without(data: st.DataObject) -> None:
    """Six customers, two in memory per schedule and partition: the same batches give each
    customer the same tier changes and alerts, in the same order, and the same final tier."""
    customers = {f"客户-{n}": n % 2 for n in range(6)}
    by_stream: dict[tuple[str, int], list[Record]] = {}
    for customer, partition in customers.items():
        for event in data.draw(histories(customer))[0]:
            stream = by_stream.setdefault((_topic(event), partition), [])
            value = event.model_dump_json().encode()
            stream.append(Record(_topic(event), partition, len(stream), customer.encode(), value))
    ordered: list[Record] = []  # each stream in its order, the streams interleaved as drawn
    cursors = dict.fromkeys(by_stream, 0)
    while ready := sorted(s for s, at in cursors.items() if at < len(by_stream[s])):
        stream = data.draw(st.sampled_from(ready))
        ordered.append(by_stream[stream][cursors[stream]])
        cursors[stream] += 1
    ends = {stream: range(0, len(records)) for stream, records in by_stream.items()}
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(ordered) - 1)), max_size=12))))
    batches = [ordered[a:b] for a, b in zip([0, *cuts], [*cuts, len(ordered)], strict=True)]
    sweeps = [Record("sweep", p, 0, None, b"") for p in (0, 1)]

    def run(schedules: Any) -> dict[str, Any]:
        """Per customer: the tier changes and alerts sent, in order, and the tier and alerts its
        stored state ends with (an extra evaluation may move its as_of, not its decisions)."""
        pipeline = make_pipeline(POLICY, Window(MICROS_PER_DAY, 40), schedules=schedules)
        tables = DictTables(customers.__getitem__)
        sent: dict[str, list[Any]] = {}
        for batch in [*batches, sweeps]:
            result = pipeline.process(batch, tables, us(60), ends)
            tables.store(result)
            for customer_id, outbox in result.outboxes():
                sent.setdefault(customer_id, []).extend(outbox)
                outbox.clear()
            tables.store(result, progress=False)
        ended = {c: CustomerState.from_bytes(b).status for c, b in tables.states.items()}
        return {c: (sent.get(c, []), status.tier, status.alerts) for c, status in ended.items()}

    assert run(_bounded_schedules) == run(None)


def _topic(event: Any) -> str:
    return {"OrderEvent": "orders", "TicketEvent": "tickets", "ComplaintEvent": "complaints"}.get(
        type(event).__name__, "invoices"
    )


def test_a_spill_cleared_after_its_database_closed_is_no_error(tmp_path: Path) -> None:
    database = SpillDatabase(tmp_path / "spill")
    spill = database.spill(0, "decisions")
    spill.add([(1, "c")])
    database.close()
    spill.clear()  # a partition revoked while the worker stops
