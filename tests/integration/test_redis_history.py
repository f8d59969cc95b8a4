"""The tier history in a real Redis (contract v2 §5): newest first, capped at 50, and a tier
change sent again (after a crash) is not listed twice."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from sinks.base import SinkUnavailable
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


async def test_an_acl_user_with_a_password_writes_and_a_wrong_one_is_one_clear_line(
    redis_url: str, unique_name: Callable[[str], str]
) -> None:
    """Redis with an ACL user (a managed Redis's usual setup): the sink writes with its password
    in the URL, and with a wrong one says so without printing it."""
    prefix = unique_name("tp") + ":"
    user, password = unique_name("tierpulse-user"), "s3cret-" + unique_name("pw")
    admin = redis.Redis.from_url(redis_url)
    admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=[f"{prefix}*"], commands=["+@all"])
    host = redis_url.split("://", 1)[1]
    sink = RedisSnapshotSink(f"redis://{user}:{password}@{host}", prefix)
    wrong = RedisSnapshotSink(f"redis://{user}:not-{password}@{host}", prefix)
    try:
        await sink.setup()
        sink.add_history(change(1))
        await sink.flush()
        assert [c["event_id"] for c in await sink.history("客户-7")] == ["tc-1"]
        with pytest.raises(SinkUnavailable) as refused:
            await wrong.setup()
        message = str(refused.value)
        assert "\n" not in message and password not in message and "does not answer" in message
    finally:
        await sink.close()
        await wrong.close()
        admin.acl_deluser(user)
        admin.delete(*admin.keys(f"{prefix}*") or [f"{prefix}none"])
