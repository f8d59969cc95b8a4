"""A Redis that lost its data (restarted without persistence, flushed) is refilled from the
worker's stored states: the CRM must not read nothing until each customer changes again."""

from __future__ import annotations

import redis

from tests.integration.harness import ScorerRun, wait_for_async
from tests.integration.test_resilience import demo_log


async def test_a_redis_that_lost_its_data_gets_every_snapshot_again(scorer: ScorerRun) -> None:
    scorer.start_worker()
    await scorer.produce(demo_log(customers=12, days=10, seed=3))
    before = await scorer.finished()
    assert len(before) >= 12
    client = redis.Redis.from_url(scorer.redis_url, decode_responses=True)
    lost = list(client.scan_iter(f"{scorer.name}:*"))  # snapshots, histories, partition markers
    client.delete(*lost)
    assert scorer.snapshots() == {}
    await wait_for_async(lambda: scorer.snapshots() == before, 60, "the snapshots back in Redis", scorer.logs)
    assert "refilled" in scorer.logs()
