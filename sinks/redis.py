"""Customer snapshots to Redis: one hash per customer, one pipeline per batch.

If Redis is down the scorer keeps going: the latest snapshot of each customer
waits here (bounded by the number of customers), flushes back off
exponentially, and everything waiting is written when Redis answers again.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from models.evaluation import Snapshot
from sinks.base import SinkUnavailable

log = logging.getLogger(__name__)


class RedisSnapshotSink:
    def __init__(self, url: str, key_prefix: str, *, max_backoff: float = 30.0) -> None:
        self.name = "redis"
        self.url = url
        self.key_prefix = key_prefix
        self._client = aioredis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        self._pending: dict[str, dict[str, str]] = {}
        self._failures = 0
        self._retry_at = 0.0
        self._max_backoff = max_backoff

    @property
    def waiting(self) -> int:
        """Snapshots not yet written."""
        return len(self._pending)

    @property
    def healthy(self) -> bool:
        return self._failures == 0

    async def setup(self) -> None:
        try:
            await self._client.ping()
        except (RedisError, OSError) as error:
            raise SinkUnavailable(
                f"Redis at {self.url} does not answer ({error}); start it with 'deploy/dev run' "
                "or set TIERPULSE_REDIS_URL"
            ) from None

    def add(self, item: Snapshot) -> None:
        self._pending[item.customer_id] = item.redis_fields()

    async def flush(self) -> None:
        """Write all waiting snapshots; raise SinkUnavailable (keeping them) if Redis is down."""
        if not self._pending or time.monotonic() < self._retry_at:
            return
        batch = self._pending
        self._pending = {}
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for customer_id, fields in batch.items():
                    pipe.hset(self.key_prefix + customer_id, mapping=fields)  # type: ignore[arg-type]
                await pipe.execute()
        except (RedisError, OSError) as error:
            # Newer snapshots added meanwhile win over the ones that failed.
            self._pending = {**batch, **self._pending}
            self._failures += 1
            self._retry_at = time.monotonic() + min(self._max_backoff, 0.5 * 2 ** min(self._failures, 10))
            raise SinkUnavailable(f"Redis at {self.url}: {error}") from None
        if self._failures:
            log.info("redis reachable again; wrote %d waiting snapshots", len(batch))
        self._failures = 0

    async def close(self) -> None:
        await self._client.aclose()
