"""The tier history in a real Redis (contract v2 §5): newest first, capped at 50, and a tier
change sent again (after a crash) is not listed twice."""

from __future__ import annotations

from collections.abc import Callable

from sinks.redis import HISTORY_LENGTH, RedisSnapshotSink


def change(n: int) -> dict[str, object]:
    return {"event_id": f"tc-{n}", "customer_id": "客户-7", "previous_tier": "key", "new_tier": "standard"}


async def test_history_is_newest_first_capped_and_each_change_once(
    redis_url: str, unique_name: Callable[[str], str]
) -> None:
    sink = RedisSnapshotSink(redis_url, unique_name("tp") + ":")
    try:
        for n in range(3):
            sink.add_history(change(n))
        await sink.flush()
        for n in (1, 2, 3):  # 1 and 2 again, as a restored outbox re-sends them
            sink.add_history(change(n))
        await sink.flush()
        assert [c["event_id"] for c in await sink.history("客户-7")] == ["tc-3", "tc-2", "tc-1", "tc-0"]
        for n in range(4, 60):
            sink.add_history(change(n))
        await sink.flush()
        listed = [c["event_id"] for c in await sink.history("客户-7")]
        assert listed == [f"tc-{n}" for n in range(59, 59 - HISTORY_LENGTH, -1)]
        assert await sink.history("nobody") == []
    finally:
        await sink.close()
