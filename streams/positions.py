"""Which input offsets each partition has processed, kept with its state.

Faust-streaming can hand the agent a record from past the position it should
read next — one prefetched before a rebalance, after which its consumer drops
the records in between and commits over them as if they did not exist
(faust-streaming issues #216, #221). Kafka's committed offset therefore cannot
say what was processed. The next offset of every input partition is stored in
the ``partition-progress`` table instead, after the states it covers, and every
record is checked against it:

* the next offset, or the first after it (no position stored yet): processed;
* an offset below it: delivered again (a seek back, a restart) — skipped, the
  state already has it;
* an offset above it: records were skipped — re-fetch from the position. Kafka
  offsets can have real holes (compaction, transaction markers), so a record
  that comes first past the position again after such a re-fetch is accepted:
  the offsets between do not exist.

An input topic deleted and created again starts its offsets anew, below the
stored position; the worker notices its end offset below the position and
``restart`` makes the next record count as the first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum

TopicPartition = tuple[str, int]


class Verdict(Enum):
    NEXT = "next"
    REDELIVERED = "redelivered"
    AHEAD = "ahead"


@dataclass
class PartitionProgress:
    """What a state partition has seen: its input positions and its event clock's frontiers and
    watermark (models/event_time.py), stored together so that a restart resumes both."""

    next_offsets: dict[str, int] = field(default_factory=dict)  # input topic -> next offset
    frontiers: dict[str, int] = field(default_factory=dict)  # input topic -> largest occurred_at
    watermark: int | None = None
    # Snapshots of this partition may be missing from Redis (they waited for it when this was
    # written): whoever holds the partition next writes them all again from the stored states.
    redis_behind: bool = False

    def to_bytes(self) -> bytes:
        stored = {"next": self.next_offsets, "frontiers": self.frontiers, "watermark": self.watermark}
        if self.redis_behind:
            stored["redis_behind"] = True
        return json.dumps(stored, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> PartitionProgress:
        decoded = json.loads(data)
        # Before 0.4 a partition kept one largest occurred_at ("max_seen"), its watermark then.
        watermark = decoded.get("watermark", decoded.get("max_seen"))
        return cls(
            {str(t): int(n) for t, n in decoded["next"].items()},
            {str(t): int(f) for t, f in decoded.get("frontiers", {}).items()},
            None if watermark is None else int(watermark),
            bool(decoded.get("redis_behind", False)),
        )


class InputPositions:
    def __init__(self) -> None:
        self._next: dict[TopicPartition, int] = {}
        # After a re-fetch from position p: the offsets seen first past p, per input partition.
        self._past_gap: dict[TopicPartition, tuple[int, set[int]]] = {}
        self._restarted: set[TopicPartition] = set()

    def next_offset(self, tp: TopicPartition) -> int | None:
        return self._next.get(tp)

    def adopt(self, partition: int, next_offsets: dict[str, int]) -> None:
        for topic, offset in next_offsets.items():
            self._next[(topic, partition)] = offset

    def forget(self, partitions: set[int]) -> None:
        for positions in (self._next, self._past_gap):
            for tp in [tp for tp in positions if tp[1] in partitions]:
                del positions[tp]
        self._restarted -= {tp for tp in self._restarted if tp[1] in partitions}

    def restart(self, tp: TopicPartition) -> bool:
        """The input partition begins again (recreated): its next record is its first. False if
        that was known already."""
        known = tp in self._restarted
        self._restarted.add(tp)
        return not known

    def of_partition(self, partition: int) -> dict[str, int]:
        return {topic: offset for (topic, p), offset in self._next.items() if p == partition}

    def check(self, tp: TopicPartition, offset: int, first: int | None = None) -> Verdict:
        """``first``: where the input partition begins (its log start), for one with no position
        yet; without it, any offset is taken as its first."""
        if tp in self._restarted:  # its next record is its first, whatever its old log start was
            self._restarted.discard(tp)
            self._next.pop(tp, None)
            self._past_gap.pop(tp, None)
            first = None
        expected = self._next.get(tp, first)
        if expected is None or offset == expected:
            return Verdict.NEXT
        if offset < expected:
            return Verdict.REDELIVERED
        at, firsts = self._past_gap.get(tp, (expected, set()))
        if at == expected and offset in firsts:
            return Verdict.NEXT  # first past the position twice, a re-fetch between: a real hole
        self._past_gap[tp] = (expected, (firsts if at == expected else set()) | {offset})
        return Verdict.AHEAD

    def advance(self, tp: TopicPartition, offset: int) -> None:
        self._next[tp] = offset + 1
        self._past_gap.pop(tp, None)
