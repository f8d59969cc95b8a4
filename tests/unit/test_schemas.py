"""The checked-in JSON Schemas are the ones the models generate, and they validate real events."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from models.schemas import input_schemas, output_schemas

SCHEMAS = Path(__file__).resolve().parents[2] / "deploy" / "schemas"


def test_checked_in_schemas_are_current() -> None:
    expected = {**input_schemas(), **output_schemas()}
    assert sorted(p.name for p in SCHEMAS.glob("*.schema.json")) == sorted(expected)
    for name, text in expected.items():
        assert (SCHEMAS / name).read_text(encoding="utf-8") == text, "regenerate with: tierpulse schemas"


def test_a_producer_can_validate_an_order_with_the_schema() -> None:
    schema = json.loads((SCHEMAS / "orders.schema.json").read_text(encoding="utf-8"))
    good = {
        "event_id": "e1",
        "customer_id": "客户-001",
        "occurred_at": "2026-11-02T08:15:00+08:00",
        "order_id": "o1",
        "type": "placed",
        "amount": 12.5,
        "promised_at": "2026-11-03T00:00:00Z",
    }
    jsonschema.validate(good, schema)
    bad = {**good, "type": "shipped"}
    try:
        jsonschema.validate(bad, schema)
    except jsonschema.ValidationError as error:
        assert "shipped" in str(error.message)
    else:
        raise AssertionError("the schema accepted an unknown order type")


def test_a_producer_can_validate_an_invoice_with_the_schema() -> None:
    schema = json.loads((SCHEMAS / "invoices.schema.json").read_text(encoding="utf-8"))
    issued = {
        "event_id": "e2",
        "customer_id": "客户-001",
        "occurred_at": "2026-11-02T08:15:00+08:00",
        "invoice_id": "i1",
        "type": "issued",
        "amount": "1250.00",
        "due_at": "2026-12-02T00:00:00Z",
    }
    jsonschema.validate(issued, schema)
    jsonschema.validate({**issued, "event_id": "e3", "type": "paid", "amount": 400, "due_at": None}, schema)
    with pytest.raises(jsonschema.ValidationError, match="refunded"):
        jsonschema.validate({**issued, "type": "refunded"}, schema)
    with pytest.raises(jsonschema.ValidationError, match="amount"):
        jsonschema.validate({k: v for k, v in issued.items() if k != "amount"}, schema)
    with pytest.raises(jsonschema.ValidationError, match="-1"):
        jsonschema.validate({**issued, "amount": -1}, schema)
    # "due_at on 'issued'" depends on another field, which the generated schema does not express:
    # it can only say so in words, and the scorer's validation enforces it.
    assert "due_at on 'issued'" in schema["description"]


def test_a_dead_letter_follows_its_schema() -> None:
    from streams.pipeline import Record
    from tests.unit.builders import DictTables
    from tests.unit.test_pipeline import pipeline

    result = pipeline().process([Record("orders", 0, 0, b"c1", b"{not json")], DictTables(), 0)
    letter = {**result.dead_letters[0][1], "dead_lettered_at": "2026-11-30T00:00:00Z"}
    schema = json.loads((SCHEMAS / "tierpulse-dead-letters.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(letter, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**letter, "partition": "zero"}, schema)
