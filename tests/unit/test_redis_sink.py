"""What the Redis sink keeps while it waits (no Redis needed: nothing is flushed here)."""

from __future__ import annotations

import random

from sinks.redis import RedisSnapshotSink
from tests.integration.test_rollups import _snapshot


def test_waiting_snapshots_of_a_revoked_partition_are_dropped_and_the_others_kept() -> None:
    sink, rng = RedisSnapshotSink("redis://127.0.0.1:1/0", "t:"), random.Random(1)
    sink.add(_snapshot(rng, "a"), 0)
    sink.add(_snapshot(rng, "b"), 1)
    sink.add(_snapshot(rng, "c"), 1)
    assert sink.waiting == 3
    sink.forget({1})  # the partition moved to another worker while Redis was down
    assert sink.waiting == 1
