"""Event time as integers, and the bucketed rolling window of contract §3.

Instants are microseconds since the Unix epoch (UTC): exact, cheap to compare
and compact to serialise. Buckets are aligned to the epoch, so bucket ``b``
covers ``[b * bucket_us, (b + 1) * bucket_us)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MICROS_PER_SECOND = 1_000_000
MICROS_PER_MINUTE = 60 * MICROS_PER_SECOND
MICROS_PER_DAY = 86_400 * MICROS_PER_SECOND
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
