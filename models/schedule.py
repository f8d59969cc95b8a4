"""When each customer must be looked at again, so the sweep touches only what is due.

A customer's KPIs change without any new event of its own only at known instants
(a promise or SLA deadline passing, a bucket leaving the window) — and every
0.01 day through days_since_last_order. ``next_due`` finds two instants: when a
*decision* (tier, alerts) could change — for days_since_last_order the first
step that changes one, evaluated as soon as the watermark passes it — and the
next step of days_since_last_order, when only the *snapshot* shows a new value;
that refresh waits for the wall-clock sweep (contract §3: at least every
sweep_interval), so a replay racing through event time does not pay for every
step. ``DueSchedule`` hands back the customers whose instant the watermark has
reached: the sweep's cost is the number of customers due, not of customers.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Protocol

from models.alerts import conditions
from models.event_time import MICROS_PER_DAY, Window
from models.kpis import KpiName, Kpis
from models.policy import Policy, SegmentPolicy
from models.state import CustomerState
from models.tiering import UNRATED, composite_score, kpi_score, next_tier, warming_up

_STEP = MICROS_PER_DAY // 100  # days_since_last_order has two decimals
_HALF_STEP = _STEP // 2


def next_due(
    state: CustomerState, policy: Policy, segment: SegmentPolicy, window: Window, as_of: int, kpis: Kpis
) -> tuple[int | None, int | None]:
    """(decision, refresh): the earliest instant after ``as_of`` at which the tier or the alerts
    could change, and the next at which days_since_last_order shows a new value (``kpis``: as
    of ``as_of``, just evaluated)."""
    index = state.indexed(as_of, window, segment.sla_us)
    next_change = index.next_change()  # a promise, deadline, due date or payment; a bucket moving
    candidates = [] if next_change is None else [next_change]
    leads = [round(r.ticket.minutes_before_deadline * 60_000_000) for r in policy.alerts if r.ticket]
    if leads:
        bucket_us = window.bucket_us
        for ticket in index.unanswered.values():
            assert ticket.opened_us is not None  # (unanswered: opened, no first response)
            deadline = ticket.opened_us + segment.sla_us[ticket.priority]
            candidates += [deadline - lead for lead in leads]
            if ticket.resolved_us is None:  # pruned then: its open-ticket alert resolves
                candidates.append((ticket.last_us // bucket_us + 2 * window.buckets) * bucket_us)
    if warming_up(state.status, segment, as_of) and state.status.first_seen is not None:
        candidates.append(state.status.first_seen + segment.warmup_us)
    candidates += state.status.pending.values()  # a hold-down ends
    earliest_placed, latest_placed = state.placed_span()
    due = min((c for c in candidates if c > as_of), default=None)
    if latest_placed is None or earliest_placed is None:
        return due, None
    recency = _recency_due(state, policy, segment, kpis, latest_placed, as_of, due)
    # days_since_last_order and tenure_days step every 0.01 day, each from its own order.
    refresh = min(_next_step(latest_placed, as_of), _next_step(earliest_placed, as_of))
    return (due if recency is None else recency), refresh


def _next_step(since: int, as_of: int) -> int:
    """The first instant after ``as_of`` at which (instant − since) in days, rounded to 0.01,
    shows a new value."""
    return since + _HALF_STEP + ((as_of - since - _HALF_STEP) // _STEP + 1) * _STEP


def _recency_due(
    state: CustomerState,
    policy: Policy,
    segment: SegmentPolicy,
    kpis: Kpis,
    latest_placed: int,
    as_of: int,
    before: int | None,
) -> int | None:
    """The first instant in (as_of, before) at which days_since_last_order alone changes the tier
    or the alerts that hold; None if it does not.

    Nothing else changes before ``before``, and each part of the decision is monotone in
    days_since_last_order (a clamped linear score, thresholds), so "differs from now" turns
    true at most once: a binary search over the 0.01-day steps finds where."""
    horizon = _recency_horizon(policy, segment)
    if horizon is None:
        return None
    # At step k, latest_placed + half a step + k steps, the value rounds up to (k + 1) / 100 days.
    first = (as_of - latest_placed - _HALF_STEP) // _STEP + 1
    last = int(horizon * 100)  # beyond it the value changes nothing
    if before is not None:
        last = min(last, (before - 1 - latest_placed - _HALF_STEP) // _STEP)
    if last < first or _score_holds(policy, segment, kpis, last):
        return None
    tier = state.status.tier
    holding = set(state.status.alerts) | set(state.status.pending)
    # Before `before`, which is no later than the warm-up's end: no first rating while warming up.
    rates = not warming_up(state.status, segment, as_of)

    def differs(step: int) -> bool:
        trial = replace(kpis, days_since_last_order=Decimal(step + 1) / 100)
        score = composite_score(trial, segment).composite
        if rates and score is not None and next_tier(tier, score, segment) != tier:
            return True
        instant = latest_placed + _HALF_STEP + step * _STEP
        now = conditions(policy.alerts, state, trial, tier or UNRATED, segment, instant)
        return {condition.key for condition in now} != holding

    if last < first or not differs(last):
        return None
    while first < last:
        middle = (first + last) // 2
        if differs(middle):
            last = middle
        else:
            first = middle + 1
    return latest_placed + _HALF_STEP + first * _STEP


def _score_holds(policy: Policy, segment: SegmentPolicy, kpis: Kpis, last: int) -> bool:
    """Whether days_since_last_order's score is the same at step ``last`` as now, with no alert
    rule on it: then nothing that depends on it changes up to there (the score is monotone, the
    rest of the decision is as just evaluated), and the search can be skipped."""
    name: KpiName = "days_since_last_order"
    if kpis.days_since_last_order is None or any(r.kpi and r.kpi.name == name for r in policy.alerts):
        return False
    weight, threshold = segment.weights.get(name, 0.0), segment.thresholds.get(name)
    if weight <= 0 or threshold is None:
        return True
    good, bad = threshold.good, threshold.bad
    now = kpi_score(float(kpis.days_since_last_order), good, bad)
    return now == kpi_score(float(Decimal(last + 1) / 100), good, bad)


def _recency_horizon(policy: Policy, segment: SegmentPolicy) -> float | None:
    """The largest days_since_last_order at which its score or an alert on it can still change."""
    name: KpiName = "days_since_last_order"
    marks = []
    if segment.weights.get(name, 0.0) > 0:
        marks += [segment.thresholds[name].good, segment.thresholds[name].bad]
    for rule in policy.alerts:
        if rule.kpi is not None and rule.kpi.name == name:
            marks += [m for m in (rule.kpi.below, rule.kpi.above) if m is not None]
    return max(marks) if marks else None


class Spill(Protocol):
    """Where a bounded schedule keeps the entries it has no room for: (due, customer) pairs in
    due order, nothing else (streams/spill.py keeps them in RocksDB)."""

    def add(self, entries: list[tuple[int, str]]) -> None: ...

    def first(self) -> int | None:
        """The earliest due instant held, or None when empty."""

    def take(self, count: int) -> list[tuple[int, str]]:
        """Remove and return the ``count`` earliest entries."""

    def clear(self) -> None: ...


class SortedSpill:
    """A spill in this process's memory, for the unit tests (a worker with the memory store keeps
    its schedules unbounded)."""

    def __init__(self) -> None:
        self._entries: list[tuple[int, str]] = []

    def add(self, entries: list[tuple[int, str]]) -> None:
        self._entries = sorted({*self._entries, *entries}, reverse=True)  # earliest last: take pops

    def first(self) -> int | None:
        return self._entries[-1][0] if self._entries else None

    def take(self, count: int) -> list[tuple[int, str]]:
        if count <= 0:
            return []
        taken = self._entries[-count:][::-1]
        del self._entries[-count:]
        return taken

    def clear(self) -> None:
        self._entries = []


class DueSchedule:
    """Customers by due instant. Re-scheduling a customer replaces its earlier entry.

    With a ``limit`` and a ``spill``, about ``limit`` customers are kept in memory (at most half as
    many again right after taking some back): past it, the later half goes to the spill, and the
    schedule is complete in memory below the spill's earliest instant (the horizon); popping past
    it takes the spill's earliest back first. A spilled entry is not updated when its customer is
    re-scheduled: one that comes back while its customer is in memory (re-scheduled since) is
    dropped, else it is handed out — an evaluation with nothing due, which changes no decision
    (``next_due``), and perhaps ahead of customers due before the stale instant. So every customer
    is handed out no later than the unbounded schedule would, each customer's own evaluations keep
    their order, and memory is bounded by the limit, not by the customers.
    """

    def __init__(
        self,
        limit: int | None = None,
        spill: Spill | None = None,
        moved: Callable[[str, int], None] | None = None,
    ) -> None:
        """``moved``: told ("out", n) when n entries go to the spill, ("back", n) when n return."""
        if (limit is None) != (spill is None) or (limit is not None and limit < 2):
            raise ValueError("a bounded schedule needs a limit of at least 2 and a spill")
        self._due: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []
        self._limit, self._spill = limit, spill
        self._horizon: int | None = None  # the spill's earliest instant (None: nothing spilled)
        self._moved = moved or (lambda direction, count: None)

    def __len__(self) -> int:
        """Customers scheduled in memory."""
        return len(self._due)

    def set(self, customer_id: str, due: int | None) -> None:
        if due is None:
            self._due.pop(customer_id, None)
            return
        if self._due.get(customer_id) == due:
            return
        self._due[customer_id] = due
        heapq.heappush(self._heap, (due, customer_id))
        if self._limit is not None and len(self._due) > self._limit:
            self._spill_latest()
        elif len(self._heap) > 4 * len(self._due) + 64:  # too many stale entries: compact
            self._heap = [(d, c) for c, d in self._due.items()]
            heapq.heapify(self._heap)

    def pop_due(self, as_of: int, limit: int | None = None) -> list[str]:
        """Customers due at or before ``as_of`` (at most ``limit``, earliest first); they leave
        the schedule until set again."""
        due: list[str] = []
        popped: set[str] = set()
        while limit is None or len(due) < limit:
            horizon = self._horizon
            # At the horizon itself: those in memory first, then the spill's (the same instant).
            if self._heap and self._heap[0][0] <= as_of and (horizon is None or self._heap[0][0] <= horizon):
                instant, customer_id = heapq.heappop(self._heap)
                if self._due.get(customer_id) == instant:
                    del self._due[customer_id]
                    if customer_id not in popped:  # (a stale spilled entry may come back)
                        popped.add(customer_id)
                        due.append(customer_id)
            elif horizon is not None and horizon <= as_of:
                self._reload()
            else:
                break
        return due

    def clear(self) -> None:
        """Drop everything, the spill included (a partition given up)."""
        self._due, self._heap, self._horizon = {}, [], None
        if self._spill is not None:
            self._spill.clear()

    def _spill_latest(self) -> None:
        assert self._limit is not None and self._spill is not None
        ordered = sorted(self._due.items(), key=lambda entry: entry[1])
        kept, moved = ordered[: self._limit // 2], ordered[self._limit // 2 :]
        self._due = dict(kept)
        self._heap = [(d, c) for c, d in kept]
        heapq.heapify(self._heap)
        self._spill.add([(d, c) for c, d in moved])
        self._horizon = moved[0][1] if self._horizon is None else min(self._horizon, moved[0][1])
        self._moved("out", len(moved))

    def _reload(self) -> None:
        assert self._limit is not None and self._spill is not None
        taken = self._spill.take(self._limit // 2)
        for due, customer_id in taken:
            if customer_id not in self._due:  # in memory: re-scheduled since it was spilled
                self._due[customer_id] = due
                heapq.heappush(self._heap, (due, customer_id))
        self._horizon = self._spill.first()
        self._moved("back", len(taken))
