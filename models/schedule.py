"""When each customer must be looked at again, so the sweep touches only what is due.

A customer's KPIs change without any new event of its own only at known instants
(a promise or SLA deadline passing, a bucket leaving the window, the next 0.01
day of days_since_last_order). ``next_due`` finds the earliest; ``DueSchedule``
hands back the customers whose instant the watermark has reached. The sweep's
cost is the number of customers due, not the number of customers.
"""

from __future__ import annotations

import heapq

from models.event_time import MICROS_PER_DAY, Window
from models.policy import Policy, SegmentPolicy
from models.state import CustomerState

_STEP = MICROS_PER_DAY // 100  # days_since_last_order has two decimals
_HALF_STEP = _STEP // 2


def next_due(
    state: CustomerState, policy: Policy, segment: SegmentPolicy, window: Window, as_of: int
) -> int | None:
    """The earliest instant after ``as_of`` at which an evaluation could differ."""
    candidates: list[int] = []
    span = window.buckets * window.bucket_us

    def leaves_window(instant: int) -> None:
        candidates.append((instant // window.bucket_us) * window.bucket_us + span)

    latest_placed = max((t for _, t in state.placed_history), default=None)
    for order in state.orders.values():
        if order.cancelled:
            continue
        promised = order.promised_us
        if promised is not None:
            candidates.append(promised)
            leaves_window(promised)
        if order.placed_us is not None:
            leaves_window(order.placed_us)
            latest_placed = order.placed_us if latest_placed is None else max(latest_placed, order.placed_us)
    leads = [round(r.ticket.minutes_before_deadline * 60_000_000) for r in policy.alerts if r.ticket]
    for ticket in state.tickets.values():
        if ticket.opened_us is not None:
            leaves_window(ticket.opened_us)
            if ticket.first_response_us is None:
                deadline = ticket.opened_us + segment.sla_us[ticket.priority]
                candidates += [deadline, *(deadline - lead for lead in leads)]
        if ticket.resolved_us is not None:
            leaves_window(ticket.resolved_us)
    for occurred in state.complaints.values():
        leaves_window(occurred)
    if latest_placed is not None:
        steps = (as_of - latest_placed - _HALF_STEP) // _STEP + 1
        candidates.append(latest_placed + _HALF_STEP + steps * _STEP)
    return min((c for c in candidates if c > as_of), default=None)


class DueSchedule:
    """Customers by due instant. Re-scheduling a customer replaces its earlier entry."""

    def __init__(self) -> None:
        self._due: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._due)

    def set(self, customer_id: str, due: int | None) -> None:
        if due is None:
            self._due.pop(customer_id, None)
            return
        if self._due.get(customer_id) == due:
            return
        self._due[customer_id] = due
        heapq.heappush(self._heap, (due, customer_id))
        if len(self._heap) > 4 * len(self._due) + 64:  # too many stale entries: compact
            self._heap = [(d, c) for c, d in self._due.items()]
            heapq.heapify(self._heap)

    def pop_due(self, as_of: int) -> list[str]:
        """Customers due at or before ``as_of``; they leave the schedule until set again."""
        due = []
        while self._heap and self._heap[0][0] <= as_of:
            instant, customer_id = heapq.heappop(self._heap)
            if self._due.get(customer_id) == instant:
                del self._due[customer_id]
                due.append(customer_id)
        return due
