"""A Redis that lost its data (restarted without persistence, flushed), or that missed the
snapshots a dead worker held for it, is refilled from the stored states: the CRM must not read
nothing, or stale snapshots, until each customer changes again."""

from __future__ import annotations

import asyncio
import os
import signal

import redis

from deploy import services
from models.policy import load_policy
from tests.integration.harness import ScorerRun, reference_problems, wait_for_async
from tests.integration.test_resilience import customers_in, demo_log, final_tiers_match_the_chain


async def test_a_redis_that_lost_its_data_gets_every_snapshot_again(scorer: ScorerRun) -> None:
    scorer.start_worker()
    await scorer.produce(demo_log(customers=12, days=10, seed=3))
    before = await scorer.finished()
    assert len(before) >= 12
    client = redis.Redis.from_url(scorer.redis_url, decode_responses=True)
    lost = list(client.scan_iter(f"{scorer.name}:*"))  # snapshots, histories, partition markers
    # All gone at once (reading them back would race the refill, which starts within a tick).
    assert client.delete(*lost) == len(lost) and any(":customer:" in key for key in lost)
    await wait_for_async(lambda: scorer.snapshots() == before, 60, "the snapshots back in Redis", scorer.logs)
    assert "refilled" in scorer.logs()


async def test_snapshots_waiting_for_redis_when_their_worker_died_are_written_by_the_next(
    scorer: ScorerRun, layout: services.Layout
) -> None:
    """Redis hangs (SIGSTOP: it keeps its data and its partition markers) while the worker scores
    the second half of a stream; the worker is SIGKILLed with those snapshots waiting; Redis comes
    back; the next worker must write them (the stored progress says Redis is behind)."""
    log = demo_log(customers=12, days=10, seed=6)
    first, second = log[: len(log) // 2], log[len(log) // 2 :]
    worker, _ = scorer.start_worker()
    await scorer.produce(first)
    await scorer.finished()
    redis_pid = int(str((services.running(layout, "redis") or {})["pid"]))
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        await scorer.produce(second)
        for _ in range(90):
            if await scorer.processed_everything():
                break
            await asyncio.sleep(1)
        else:
            raise AssertionError(f"the second half was not processed within 90 s\n{scorer.logs()}")
        await asyncio.sleep(8)  # a flush times out (3 s) and the progress says Redis is behind
        scorer.kill(worker)
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    scorer.start_worker()
    await wait_for_async(lambda: "refilled" in scorer.logs(), 90, "the next worker to refill", scorer.logs)
    snapshots = await scorer.finished()
    assert customers_in(log) <= snapshots.keys()
    changes = await scorer.read("tier_changes")
    assert final_tiers_match_the_chain(changes, snapshots) == []
    assert reference_problems(scorer.produced, snapshots, load_policy()) == []
    # (Not the histories: entries that waited with the snapshots are not refilled; README.)
