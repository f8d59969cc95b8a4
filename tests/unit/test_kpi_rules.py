"""One example per row of contract §3's KPI table, plus windows, lateness and duplicates."""

from __future__ import annotations

from decimal import Decimal

from models.event_time import MICROS_PER_DAY, Window
from models.state import CustomerState, Outcome
from tests.unit.builders import complaint, delivered, feed, order, placed, ticket, us

WINDOW = Window(MICROS_PER_DAY, 30)
SLA = (60 * 60_000_000, 240 * 60_000_000, 1440 * 60_000_000, 4320 * 60_000_000)


def kpis_after(*events, as_of=None):  # type: ignore[no-untyped-def]
    state = CustomerState("c1")
    watermark = feed(state, WINDOW, *events)
    return state.kpis(as_of if as_of is not None else watermark, WINDOW, SLA)


def test_revenue_and_order_count_exclude_cancelled_orders() -> None:
    k = kpis_after(
        placed("a", 1, "100.10"), placed("b", 2, "0.20"), placed("c", 3, "50"), order("c", "cancelled", 4)
    )
    assert k.revenue == Decimal("100.30") and k.order_count == 2


def test_empty_window_gives_zero_revenue_and_undefined_rates() -> None:
    k = kpis_after(complaint("x", 1))
    assert (k.revenue, k.order_count, k.on_time_delivery_rate, k.csat) == (0, 0, None, None)
    assert k.complaint_rate == 100.0  # 1 complaint / max(0 orders, 1)


def test_on_time_rate_counts_undelivered_orders_past_promise_as_late() -> None:
    k = kpis_after(
        placed("a", 1, promised_day=3),
        delivered("a", 3, promised_day=3),  # on time, exactly at the promise
        placed("b", 1, promised_day=3),
        delivered("b", 3.5, promised_day=3),  # late
        placed("c", 1, promised_day=4),  # undelivered, past promise at T: late
        placed("d", 1, promised_day=20),  # promise after T: not yet due
        complaint("t", 5),  # moves T to day 5
    )
    assert k.on_time_delivery_rate == 1 / 3


def test_on_time_rate_is_undefined_without_due_orders() -> None:
    assert kpis_after(placed("a", 1, promised_day=9)).on_time_delivery_rate is None


def test_first_response_uses_the_earliest_response_whatever_the_arrival_order() -> None:
    k = kpis_after(
        ticket("t", "first_response", 0, 50),
        ticket("t", "opened", 0, 0, priority="P2"),
        ticket("t", "first_response", 0, 30),
        ticket("u", "opened", 0, 10, priority="P3"),
    )
    assert k.first_response_minutes == 30.0  # u has no response and is left out of the mean


def test_response_sla_rate_counts_due_and_answered_tickets() -> None:
    k = kpis_after(
        ticket("met", "opened", 0, 0, priority="P1"),
        ticket("met", "first_response", 0, 60),  # at the deadline
        ticket("late", "opened", 0, 0, priority="P1"),
        ticket("late", "first_response", 0, 61),
        ticket("breach", "opened", 0, 0, priority="P1"),  # unanswered past deadline: a breach
        ticket("pending", "opened", 1, 0, priority="P4"),  # unanswered, deadline after T: not counted
        complaint(
            "tick",
            1,
        ),
    )
    assert k.response_sla_rate == 1 / 3


def test_complaint_rate_is_per_hundred_orders_and_ignores_repeated_complaint_ids() -> None:
    k = kpis_after(
        placed("a", 1),
        placed("b", 1),
        placed("c", 1),
        placed("d", 1),
        complaint("x", 2),
        complaint("x", 2),
        complaint("y", 3),
    )
    assert k.complaint_rate == 50.0


def test_csat_is_the_mean_rating_of_tickets_resolved_in_window() -> None:
    k = kpis_after(
        ticket("a", "resolved", 1, satisfaction=5),
        ticket("b", "resolved", 2, satisfaction=4),
        ticket("c", "resolved", 2),
    )
    assert k.csat == 4.5


def test_days_since_last_order_ignores_cancelled_orders_and_rounds_to_two_decimals() -> None:
    k = kpis_after(placed("a", 1), placed("b", 4), order("b", "cancelled", 5), as_of=us(days=3, minutes=7))
    assert k.days_since_last_order == Decimal("2.00")  # 2 days 7 minutes = 2.0049 days
    assert kpis_after(complaint("x", 1)).days_since_last_order is None


def test_window_holds_exactly_the_last_thirty_daily_buckets() -> None:
    as_of = us(days=40, minutes=1)  # bucket of day 40; window = days 11..40
    k = kpis_after(placed("old", 10.99, promised_day=50), placed("first", 11.0, promised_day=50), as_of=as_of)
    assert k.order_count == 1


def test_late_and_duplicate_events_change_nothing() -> None:
    state = CustomerState("c1")
    first = placed("a", 40)
    watermark = feed(state, WINDOW, first, placed("old", 5))  # 35 days behind its stream: late
    assert state.absorb(first, WINDOW) is Outcome.DUPLICATE
    assert state.absorb(placed("a", 40, amount="999"), WINDOW) is Outcome.DUPLICATE  # same order
    assert state.kpis(watermark, WINDOW, SLA).revenue == Decimal(100)
    assert state.kpis(us(days=34), WINDOW, SLA).order_count == 0  # "old" would count in this window
