"""The checked-in JSON Schemas are the ones the models generate, and they validate real events."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from models.schemas import input_schemas

SCHEMAS = Path(__file__).resolve().parents[2] / "deploy" / "schemas"


def test_checked_in_schemas_are_current() -> None:
    expected = input_schemas()
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
