"""Event time as integers, the bucketed rolling window, and the watermark of contract §3.

Instants are microseconds since the Unix epoch (UTC): exact, cheap to compare
and compact to serialise. Buckets are aligned to the epoch, so bucket ``b``
covers ``[b * bucket_us, (b + 1) * bucket_us)``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

MICROS_PER_SECOND = 1_000_000
MICROS_PER_MINUTE = 60 * MICROS_PER_SECOND
MICROS_PER_DAY = 86_400 * MICROS_PER_SECOND
# Before any event time: due "at the first watermark there is".
EARLIEST = -(2**63)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(instant: datetime) -> int:
    """An aware datetime as microseconds since the epoch (exact, no float)."""
    delta = instant - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * MICROS_PER_SECOND + delta.microseconds


def to_rfc3339(micros: int) -> str:
    """Microseconds since the epoch as an RFC 3339 UTC string (``...Z``)."""
    text = (_EPOCH + timedelta(microseconds=micros)).isoformat()
    return text.replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Window:
    """The rolling window as of an instant T: the ``buckets`` buckets ending with T's bucket."""

    bucket_us: int = MICROS_PER_DAY
    buckets: int = 30

    def __post_init__(self) -> None:
        if self.bucket_us <= 0 or self.buckets <= 0:
            raise ValueError("bucket length and bucket count must be positive")

    def bucket_of(self, micros: int) -> int:
        return micros // self.bucket_us

    def first_bucket(self, as_of: int) -> int:
        return self.bucket_of(as_of) - self.buckets + 1

    def bounds(self, as_of: int) -> tuple[int, int]:
        """[start, end) of the window as of T. Contract §3, "t in window" (the bucket of t is
        one of the window's buckets), is ``start <= t < end``: two comparisons in hot loops."""
        last = as_of // self.bucket_us
        return (last - self.buckets + 1) * self.bucket_us, (last + 1) * self.bucket_us

    def is_retired(self, micros: int, as_of: int) -> bool:
        """More than one window older than the window: an entity (order, ticket) whose
        latest instant is this old can no longer receive an event that is not late,
        as long as its events span less than one window."""
        return micros // self.bucket_us < self.first_bucket(as_of) - self.buckets

    def is_late(self, micros: int, as_of: int) -> bool:
        """Older than the window at arrival: counted as late, changes no KPI."""
        return micros // self.bucket_us < self.first_bucket(as_of)


@dataclass(slots=True)
class EventClock:
    """The event time of one partition (contract v2 §3), fed by the records of its input streams.

    An *input stream* is one input topic of the partition (the re-keying topic included). Each
    stream's *frontier* is the largest ``occurred_at`` read from it so far:

    * an event is late when it is older than the window as of its own stream's frontier before
      it (``is_late``), so the verdict depends only on that stream's order — not on how the
      scorer interleaves topics, nor on how far behind one topic is in a backlog;
    * the watermark T is the minimum frontier over the streams that still have records to read;
      a stream with records to read and nothing read yet holds T where it is; once no stream
      has records left, T is the largest frontier (``advance``). T never moves back.

    The allowed lateness is taken off both. Streams are named by topic: a clock is per partition.
    """

    lateness_us: int = 0
    frontiers: dict[str, int] = field(default_factory=dict)
    watermark: int | None = None  # T, the allowed lateness taken off

    def is_late(self, stream: str, occurred: int, window: Window) -> bool:
        frontier = self.frontiers.get(stream)
        return frontier is not None and window.is_late(occurred, frontier - self.lateness_us)

    def observe(self, stream: str, occurred: int) -> None:
        """An event with this occurred_at was read from ``stream`` (judged before, by is_late)."""
        frontier = self.frontiers.get(stream)
        if frontier is None or occurred > frontier:
            self.frontiers[stream] = occurred

    def advance(self, behind: Collection[str]) -> bool:
        """Move T as far as the streams allow; ``behind``: the streams that still have records
        to read. True if T moved."""
        if behind:
            frontiers = [self.frontiers.get(stream) for stream in behind]
            if None in frontiers:
                return False  # a stream not read yet could hold anything: T waits for it
            candidate = min(f for f in frontiers if f is not None)
        elif self.frontiers:
            candidate = max(self.frontiers.values())
        else:
            return False
        candidate -= self.lateness_us
        if self.watermark is not None and candidate <= self.watermark:
            return False
        self.watermark = candidate
        return True
