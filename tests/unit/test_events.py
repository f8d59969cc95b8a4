"""Decoding raw messages: valid events parse; bad ones give a reason naming the field."""

from __future__ import annotations

import json

import pytest

from models.event_time import to_micros
from models.events import CustomerProfile, Invalid, OrderEvent, TicketEvent, Topic, decode
from tests.unit.builders import BASE

NOW = to_micros(BASE)
HOUR = 3600 * 1_000_000


def _decode(topic: Topic, value: object) -> object:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return decode(topic, raw, now_us=NOW, max_future_skew_us=HOUR)


ORDER = {
    "event_id": "e1",
    "customer_id": "客户-001",
    "occurred_at": "2026-10-31T08:15:00+08:00",
    "order_id": "o1",
    "type": "placed",
    "amount": "12.30",
    "promised_at": "2026-11-02T00:00:00Z",
    "future_field": {"ignored": True},
}


def test_a_valid_order_parses_with_offsets_decimal_strings_and_unicode() -> None:
    event = _decode(Topic.ORDERS, ORDER)
    assert isinstance(event, OrderEvent)
    assert event.customer_id == "客户-001" and str(event.amount) == "12.30"
    assert event.occurred_us == to_micros(BASE) - 24 * HOUR + 15 * 60 * 1_000_000  # 00:15Z the day before


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"amount": -1}, "field 'amount': Input should be greater than or equal to 0"),
        ({"amount": None}, "amount is required on a 'placed' order event"),
        ({"type": "shipped"}, "field 'type'"),
        ({"occurred_at": "1700000000"}, "field 'occurred_at': Value error, expected an RFC 3339 timestamp"),
        ({"occurred_at": "2026-10-31T08:15:00"}, "field 'occurred_at'"),
        ({"occurred_at": 1700000000}, "field 'occurred_at'"),
        ({"customer_id": ""}, "field 'customer_id'"),
        ({"customer_id": "x" * 129}, "field 'customer_id'"),
        ({"event_id": 7}, "field 'event_id'"),
        ({"amount": "NaN"}, "field 'amount'"),
        ({"amount": True}, "field 'amount'"),
    ],
)
def test_bad_orders_name_the_field(change: dict[str, object], needle: str) -> None:
    result = _decode(Topic.ORDERS, {**ORDER, **change})
    assert isinstance(result, Invalid) and needle in result.reason, result


def test_a_missing_field_is_named() -> None:
    result = _decode(Topic.ORDERS, {k: v for k, v in ORDER.items() if k != "order_id"})
    assert isinstance(result, Invalid) and "field 'order_id': Field required" in result.reason
    assert result.customer_id == "客户-001"  # still known, for logs


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"",
        b"[1,2]",
        b"null",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b"\xff\xfe\x00",
    ],
)
def test_hostile_bytes_are_invalid_not_fatal(raw: bytes) -> None:
    result = decode(Topic.ORDERS, raw, now_us=NOW, max_future_skew_us=HOUR, max_bytes=1 << 22)
    assert isinstance(result, Invalid) and result.reason


def test_huge_messages_are_refused_before_parsing() -> None:
    result = decode(Topic.ORDERS, b"x" * 70_000, now_us=NOW, max_future_skew_us=HOUR)
    assert isinstance(result, Invalid) and "70000 bytes" in result.reason


def test_events_too_far_in_the_future_are_invalid() -> None:
    ok = _decode(Topic.ORDERS, {**ORDER, "occurred_at": "2026-11-01T00:59:00Z"})
    bad = _decode(Topic.ORDERS, {**ORDER, "occurred_at": "2026-11-01T01:00:01Z"})
    assert isinstance(ok, OrderEvent)
    assert isinstance(bad, Invalid) and "max_future_skew" in bad.reason


def test_ticket_rules() -> None:
    base = {"event_id": "e", "customer_id": "c", "occurred_at": "2026-10-31T00:00:00Z", "ticket_id": "t"}
    assert isinstance(_decode(Topic.TICKETS, {**base, "type": "opened", "priority": "P1"}), TicketEvent)
    assert "priority is required" in _decode(Topic.TICKETS, {**base, "type": "opened"}).reason  # type: ignore[union-attr]
    assert (
        "field 'satisfaction'"
        in _decode(Topic.TICKETS, {**base, "type": "resolved", "satisfaction": 7}).reason
    )  # type: ignore[union-attr]
    assert (
        "only allowed on a 'resolved'"
        in _decode(  # type: ignore[union-attr]
            Topic.TICKETS, {**base, "type": "first_response", "satisfaction": 3}
        ).reason
    )


def test_profiles_parse() -> None:
    profile = _decode(Topic.CUSTOMERS, {"customer_id": "c", "segment": "key_account", "region": "华东"})
    assert isinstance(profile, CustomerProfile) and profile.region == "华东"
    assert isinstance(_decode(Topic.CUSTOMERS, None), Invalid)
