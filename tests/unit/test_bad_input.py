"""Contract §2: bad input costs nothing but its own dead letter. Arbitrary bytes and JSON of any
size and depth, calendar edges and null values mixed into a valid stream, read in any batches
with crashes, restarts and failed batches (a sink's send raising): every valid event counts as
the brute force says, every bad message is dead-lettered once, nothing escapes."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.evaluation import evaluate
from models.event_time import MICROS_PER_DAY, MICROS_PER_MINUTE, Window
from models.events import ComplaintEvent, InvoiceEvent, OrderEvent, TicketEvent
from models.policy import load_policy
from models.state import CustomerState
from streams.pipeline import DEAD_LETTER_BYTES, Pipeline, Record
from tests.reference import ReferenceLog
from tests.unit.builders import DictTables, at, us
from tests.unit.histories import CUSTOMER, histories
from tests.unit.replay import SimulatedTopics, make_pipeline

WINDOW = Window(MICROS_PER_DAY, 40)  # longer than half the histories' span: see test_event_time.py
POLICY = load_policy()
TOPIC_OF = {
    OrderEvent: "orders",
    TicketEvent: "tickets",
    ComplaintEvent: "complaints",
    InvoiceEvent: "invoices",
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=24,
)
good = {"event_id": "edge", "customer_id": CUSTOMER, "complaint_id": "k", "severity": "low", "category": "x"}
calendar_edges = st.sampled_from(
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-14:00", "2026-03-01T23:59:60Z", "1969-12-31T23:59:59Z"]
).map(lambda instant: json.dumps({**good, "occurred_at": instant}).encode())
junk = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),  # NaN and Infinity included
    st.integers(1, 60).map(lambda k: b"[" * (k * 1000) + b"]" * (k * 1000)),  # up to 60,000 deep
    st.integers(65_537, 700_000).map(lambda n: b'{"event_id": "' + b"x" * n + b'"}'),  # too large
    calendar_edges,
    st.just(None),  # a null value on an event topic
)


def _pipeline() -> Pipeline:
    return make_pipeline(POLICY, WINDOW)


@settings(
    deadline=None, max_examples=3, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(st.data())
def test_bad_messages_cost_only_their_dead_letter(data: st.DataObject) -> None:
    topics = SimulatedTopics(_pipeline, lambda customer_id: 0)
    reference = ReferenceLog(WINDOW.bucket_us, WINDOW.buckets)
    bad: dict[tuple[str, int, int], bytes | None] = {}
    for event in data.draw(histories())[0]:
        for _ in range(data.draw(st.integers(0, 1))):
            where = (data.draw(st.sampled_from(sorted(TOPIC_OF.values()))), 0)
            value = data.draw(junk)
            bad[(*where, len(topics.streams.get(where, [])))] = value
            topics.produce(where, data.draw(st.sampled_from([None, CUSTOMER.encode(), b"\xff"])), value)
        where = (TOPIC_OF[type(event)], 0)
        topics.produce(
            where,
            CUSTOMER.encode() if data.draw(st.integers(0, 9)) else None,
            event.model_dump_json().encode(),
        )
        reference.offer(event, where)
    topics.read_all(data, failures=True)

    letters = {(d["topic"], d["partition"], d["offset"]): d for d in topics.dead_letters}
    assert len(letters) == len(topics.dead_letters)  # each once
    assert letters.keys() == bad.keys()
    for where, letter in letters.items():
        original = bad[where]
        kept = None if letter["value_base64"] is None else base64.b64decode(letter["value_base64"])
        assert kept == (None if original is None else original[:DEAD_LETTER_BYTES])
        assert letter["truncated"] == (original is not None and len(original) > DEAD_LETTER_BYTES)
        assert letter["reason"]
    assert topics.internal_errors == {}
    assert sum(n for (_, outcome), n in topics.outcomes.items() if outcome == "late") == len(reference.late)
    stored, as_of = topics.tables.customer(CUSTOMER), topics.pipeline.as_of(0)
    if stored is not None and as_of is not None:
        sla = {
            p: m / MICROS_PER_MINUTE
            for p, m in zip(("P1", "P2", "P3", "P4"), POLICY.segment_for(None).sla_us, strict=True)
        }
        kpis = CustomerState.from_bytes(stored).kpis(as_of, WINDOW, POLICY.segment_for(None).sla_us)
        assert asdict(kpis) == reference.kpis(as_of, sla)  # type: ignore[arg-type]


def _complaint(n: int, day: float) -> bytes:
    body = {**good, "event_id": f"e{n}", "complaint_id": f"k{n}", "occurred_at": at(day)}
    return json.dumps(body).encode()


def test_a_message_whose_handling_raises_is_dead_lettered_and_the_batch_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    absorb = CustomerState.absorb

    def absorb_or_raise(self: CustomerState, event: object, window: Window) -> object:
        if getattr(event, "event_id", "") == "e2":
            raise KeyError("a bug")
        return absorb(self, event, window)  # type: ignore[arg-type]

    monkeypatch.setattr(CustomerState, "absorb", absorb_or_raise)
    records = [Record("complaints", 0, n, CUSTOMER.encode(), _complaint(n, 1 + n)) for n in range(1, 4)]
    result = _pipeline().process(records, DictTables(), us(9))
    assert result.outcomes == {("complaints", "accepted"): 2, ("complaints", "invalid"): 1}
    assert result.internal_errors == {"message": 1}
    [(_, letter)] = result.dead_letters
    assert letter["offset"] == 2 and letter["reason"] == "internal_error: KeyError: 'a bug'"
    assert base64.b64decode(str(letter["value_base64"])) == _complaint(2, 3)
    assert result.progress[0].next_offsets == {"complaints": 4}  # the batch went on to its end


def test_a_year_one_instant_is_refused_not_fatal() -> None:
    year_one = json.dumps({**good, "event_id": "y1", "occurred_at": "0001-01-01T00:00:00+01:00"}).encode()
    records = [
        Record("complaints", 0, 0, CUSTOMER.encode(), _complaint(0, 1)),
        Record("complaints", 0, 1, CUSTOMER.encode(), year_one),
        Record("complaints", 0, 2, CUSTOMER.encode(), _complaint(2, 2)),
    ]
    result = _pipeline().process(records, DictTables(), us(9))
    assert result.outcomes == {("complaints", "accepted"): 2, ("complaints", "invalid"): 1}
    assert "outside the supported range" in str(result.dead_letters[0][1]["reason"])


def test_an_evaluation_that_raises_keeps_the_event_and_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scorer, tables = _pipeline(), DictTables()
    monkeypatch.setattr(
        "streams.pipeline.evaluate", lambda *args: (_ for _ in ()).throw(ZeroDivisionError("x"))
    )
    result = scorer.process([Record("complaints", 0, 1, CUSTOMER.encode(), _complaint(1, 1))], tables, us(9))
    assert result.outcomes == {("complaints", "accepted"): 1} and result.dead_letters == []
    assert result.internal_errors == {"evaluation": 1} and CUSTOMER in result.states  # absorbed, stored
    tables.store(result)
    monkeypatch.undo()
    retried = scorer.process([Record("sweep", 0, 0, None, b"")], tables, us(9))
    assert [e.snapshot.customer_id for e in retried.evaluations] == [CUSTOMER]


def test_an_evaluation_is_all_or_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    state = CustomerState(CUSTOMER)
    state.absorb(
        OrderEvent.model_validate_json(
            json.dumps(
                {
                    "event_id": "o",
                    "customer_id": CUSTOMER,
                    "order_id": "o",
                    "type": "placed",
                    "amount": "10",
                    "occurred_at": at(1),
                    "promised_at": at(2),
                }
            )
        ),
        WINDOW,
    )
    before = CustomerState.from_bytes(state.to_bytes())
    monkeypatch.setattr("models.evaluation.next_due", lambda *args: (_ for _ in ()).throw(KeyError("late")))
    with pytest.raises(KeyError):
        evaluate(state, POLICY, WINDOW, us(1))  # a first rating was decided before next_due raised
    assert state.status == before.status and state.status.tier is None and state.status.outbox == []
