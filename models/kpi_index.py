"""Running totals behind a customer's KPIs, kept up to date record by record.

Each record of the state adds parts (models/records.py): numbers that count in one bucket,
some only once the watermark reaches their gate. When a record changes, its parts are taken
back and its new ones added; the totals of the window and of the previous window follow the
watermark as buckets enter and leave. So an evaluation costs the same however many events the
window holds, and the schedule (models/schedule.py) reads the next instant at which a total
changes off the pending gates and the buckets. The brute-force property tests
(tests/unit/test_state_properties.py) pin that this equals the formulas of contract §3.

The index is derived: never stored, built from the records when first needed (after decoding a
state), and built anew when asked about an earlier watermark than it has reached, or with
another window or SLA (a customer that changed segment).

Money is summed in a context wide enough to be exact (an amount has at most 30 digits), so
taking a part back leaves exactly what was there.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from decimal import Context, Decimal, Inexact, InvalidOperation

from models.event_time import Window
from models.records import MONEY, ORDERS, REVENUE, TOTALS, ZERO, Invoice, Order, Part, Ticket, complaint_parts

# Exact sums and differences of amounts (30 digits at most): raises rather than rounds.
EXACT = Context(prec=200, traps=[Inexact, InvalidOperation])


def _zeros() -> list[int | Decimal]:
    return [ZERO if slot in MONEY else 0 for slot in range(TOTALS)]


@dataclass(slots=True)
class _Counted:
    """One part as the index holds it."""

    bucket: int
    gate: int | None
    values: tuple[tuple[int, int | Decimal], ...]
    applied: bool = False  # in the bucket totals (its gate passed)
    live: bool = True  # False once its record took it back


@dataclass(slots=True)
class KpiIndex:
    window: Window
    sla_us: tuple[int, int, int, int]
    buckets: dict[int, list[int | Decimal]] = field(default_factory=dict)
    in_window: list[int | Decimal] = field(default_factory=_zeros)
    in_previous: list[int | Decimal] = field(default_factory=_zeros)  # the window before it
    last: int | None = None  # the bucket of the watermark reached; None: not reached any yet
    reached: int | None = None  # the watermark reached
    lifetime_kept: Decimal = ZERO  # Σ amount of the non-cancelled orders kept
    placed: dict[int, tuple[int, Decimal]] = field(default_factory=dict)  # orders kept -> (placed, amount)
    unanswered: dict[int, Ticket] = field(default_factory=dict)  # opened, no first response
    _parts: dict[Hashable, list[_Counted]] = field(default_factory=dict)
    _pending: list[tuple[int, int, _Counted]] = field(default_factory=list)  # (gate, order, part)
    _order: Iterator[int] = field(default_factory=itertools.count)
    _span: tuple[int, int] | None = None  # (earliest, latest) of ``placed``, while known

    # ------------------------------------------------------------ records

    def put_order(self, key: int, order: Order) -> None:
        self._put(("order", key), order.parts(self.window.bucket_of))
        kept = None if order.placed_us is None or order.cancelled else (order.placed_us, order.amount or ZERO)
        old = self.placed.get(key)
        if old == kept:
            return
        if old is not None:
            del self.placed[key]
            self.lifetime_kept = EXACT.subtract(self.lifetime_kept, old[1])
            if self._span is not None and old[0] in self._span:
                self._span = None
        if kept is not None:
            self.placed[key] = kept
            self.lifetime_kept = EXACT.add(self.lifetime_kept, kept[1])
            if self._span is not None:
                self._span = (min(self._span[0], kept[0]), max(self._span[1], kept[0]))

    def put_ticket(self, key: int, ticket: Ticket) -> None:
        self._put(("ticket", key), ticket.parts(self.window.bucket_of, self.sla_us))
        if ticket.unanswered:
            self.unanswered[key] = ticket
        else:
            self.unanswered.pop(key, None)

    def put_invoice(self, key: int, invoice: Invoice) -> None:
        self._put(("invoice", key), invoice.parts(self.window.bucket_of))

    def put_complaint(self, key: int, occurred_us: int) -> None:
        self._put(("complaint", key), complaint_parts(occurred_us, self.window.bucket_of))

    def drop_order(self, key: int) -> None:
        self.put_order(key, Order(cancelled=True))

    def drop_ticket(self, key: int) -> None:
        self.put_ticket(key, Ticket())

    def drop(self, kind: str, key: int) -> None:
        """An invoice or complaint forgotten."""
        self._put((kind, key), [])

    def placed_span(self) -> tuple[int, int] | None:
        """(earliest, latest) placed instant of the non-cancelled orders kept."""
        if self._span is None and self.placed:
            instants = [placed for placed, _ in self.placed.values()]
            self._span = (min(instants), max(instants))
        return self._span

    # ------------------------------------------------------------ the watermark

    def reach(self, as_of: int) -> None:
        """Bring the totals to the watermark ``as_of``: no earlier than the last one reached."""
        if self.reached is not None and as_of < self.reached:
            raise ValueError("the index only moves forward: build a new one for an earlier watermark")
        self._slide(self.window.bucket_of(as_of))
        pending = self._pending
        while pending and pending[0][0] <= as_of:
            part = heapq.heappop(pending)[2]
            if part.live and not part.applied:
                self._apply(part, 1)
        self.reached = as_of

    def next_change(self) -> int | None:
        """The earliest instant after the watermark reached at which a total changes: a gate
        passes, or a bucket with something in it enters or leaves the window, or (with orders
        in it) leaves the previous window."""
        assert self.reached is not None and self.last is not None
        pending, n, bucket_us = self._pending, self.window.buckets, self.window.bucket_us
        while pending and not pending[0][2].live:
            heapq.heappop(pending)
        candidates = [pending[0][0]] if pending else []
        first, leaves_previous, leaves_window = self.last - n + 1, False, False
        for bucket in sorted(self.buckets):
            totals = self.buckets[bucket]
            if bucket < first:
                if not leaves_previous and (totals[ORDERS] or totals[REVENUE]):
                    candidates.append((bucket + 2 * n) * bucket_us)
                    leaves_previous = True
            elif bucket <= self.last:
                if not leaves_window and any(totals):
                    candidates.append((bucket + n) * bucket_us)
                    leaves_window = True
            elif any(totals):
                candidates.append(bucket * bucket_us)
                break
        return min((c for c in candidates if c > self.reached), default=None)

    # ------------------------------------------------------------ internals

    def _put(self, key: Hashable, parts: list[Part]) -> None:
        for old in self._parts.pop(key, ()):
            old.live = False
            if old.applied:
                self._apply(old, -1)
        if not parts:
            return
        counted = []
        for bucket, gate, values in parts:
            part = _Counted(bucket, gate, values)
            if gate is None or (self.reached is not None and gate <= self.reached):
                self._apply(part, 1)
            else:
                heapq.heappush(self._pending, (gate, next(self._order), part))
            counted.append(part)
        self._parts[key] = counted

    def _apply(self, part: _Counted, sign: int) -> None:
        part.applied = sign > 0
        bucket, last, n = part.bucket, self.last, self.window.buckets
        if last is not None and bucket <= last - 2 * n:
            return  # left both windows for good: the watermark never moves back
        totals = self.buckets.get(bucket)
        if totals is None:
            totals = self.buckets[bucket] = _zeros()
        _add(totals, part.values, sign)
        if last is None:
            return
        if bucket > last - n:
            if bucket <= last:
                _add(self.in_window, part.values, sign)
        else:
            _add(self.in_previous, part.values, sign)

    def _slide(self, last: int) -> None:
        """Move the window so that it ends with bucket ``last``."""
        n = self.window.buckets
        if self.last is not None and self.last <= last < self.last + 2 * n:
            for bucket in range(self.last + 1, last + 1):
                entering = self.buckets.get(bucket)
                if entering is not None:
                    _add_totals(self.in_window, entering, 1)
                leaving = self.buckets.get(bucket - n)
                if leaving is not None:
                    _add_totals(self.in_window, leaving, -1)
                    _add_totals(self.in_previous, leaving, 1)
                gone = self.buckets.pop(bucket - 2 * n, None)
                if gone is not None:
                    _add_totals(self.in_previous, gone, -1)
            self.last = last
            return
        self.last, self.in_window, self.in_previous = last, _zeros(), _zeros()
        for bucket in [b for b in self.buckets if b <= last - 2 * n]:
            del self.buckets[bucket]
        for bucket, totals in self.buckets.items():
            if bucket > last:
                continue
            _add_totals(self.in_window if bucket > last - n else self.in_previous, totals, 1)


def _add(totals: list[int | Decimal], values: tuple[tuple[int, int | Decimal], ...], sign: int) -> None:
    for slot, value in values:
        if slot in MONEY:
            add = EXACT.add if sign > 0 else EXACT.subtract
            totals[slot] = add(totals[slot], value)
        else:
            totals[slot] += value * sign


def _add_totals(totals: list[int | Decimal], other: list[int | Decimal], sign: int) -> None:
    _add(totals, tuple(enumerate(other)), sign)
