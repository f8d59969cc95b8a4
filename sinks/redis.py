"""Customer snapshots and tier histories to Redis, one pipeline per batch.

A snapshot is a hash per customer (``<prefix>customer:<id>``), written with the customer's
rollup contribution and name-index entry in one script (sinks/rollups.py, sinks/names.py); the
history a list per customer of its last 50 tier-change events, newest first
(``<prefix>history:<id>``, contract v2 §5). A tier change sent again after a crash carries the
same ``event_id``: the push looks for it in the list first (a script, so the look and the push
are one step), so the list never holds one twice.

If Redis is down the scorer keeps going: the latest snapshot of each customer and the
history entries wait here, flushes back off exponentially, and everything waiting is
written when Redis answers again.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from models.evaluation import Snapshot
from sinks.base import SinkUnavailable
from sinks.names import PAGE, NameSearch, lex_range, parse_member
from sinks.rollups import DIMENSIONS, WRITE_SNAPSHOT, contribution, rollup_json

log = logging.getLogger(__name__)
HISTORY_LENGTH = 50
_PUSH_ONCE = """
for _, entry in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if string.find(entry, ARGV[1], 1, true) then return 0 end
end
redis.call('LPUSH', KEYS[1], ARGV[2])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[3]) - 1)
return 1
"""


INDEX_SECONDS = 600.0  # how often names and tiers written by 0.6 are looked for (one SCAN)
# Keys a SCAN step looks at: the walk costs Redis the same whatever the step, and the worker a
# round trip per step — 1,700 of them (16 s) on a Redis of 1.7M keys at 1,000 a step.
SCAN_COUNT = 20_000


class RedisSnapshotSink:
    def __init__(
        self, url: str, prefix: str, *, snapshot_prefix: str | None = None, max_backoff: float = 30.0
    ) -> None:
        """``snapshot_prefix``: the snapshots' own prefix where a deployment set one before 0.4."""
        self.name = "redis"
        self.url = _without_password(url)  # for messages: the URL may carry a password
        self.key_prefix, self.history_prefix = snapshot_prefix or prefix + "customer:", prefix + "history:"
        self.marker_prefix, self.prefix = prefix + "partition:", prefix
        self._client = aioredis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        self._push_once = self._client.register_script(_PUSH_ONCE)
        self._write = self._client.register_script(WRITE_SNAPSHOT)
        # customer -> (snapshot fields, contribution to the rollups: sinks/rollups.py, partition)
        self._pending: dict[str, tuple[dict[str, str], list[str], int | None]] = {}
        self._history: dict[str, list[tuple[str, str]]] = {}  # customer -> [(event_id, change JSON)]
        self._failures = 0
        self._retry_at = 0.0
        self._max_backoff = max_backoff
        # When the rollup names (per dimension) and tiers written by 0.6, which kept no list of
        # them, were last looked for: a 0.6 worker may still write during a rolling update.
        self._names_indexed: dict[str, float] = {}

    @property
    def waiting(self) -> int:
        """Snapshots and history entries not yet written."""
        return len(self._pending) + sum(map(len, self._history.values()))

    @property
    def healthy(self) -> bool:
        return self._failures == 0

    async def setup(self) -> None:
        """Check that Redis answers; the answer also decides ``healthy`` while nothing waits."""
        try:
            await self._client.ping()
            if not self.waiting:
                self._failures = 0
        except (RedisError, OSError) as error:
            self._failures = max(self._failures, 1)
            raise SinkUnavailable(
                f"Redis at {self.url} does not answer or refuses this client ({error}); start it with "
                "'deploy/dev run', or check TIERPULSE_REDIS_URL (user, password, rediss:// for TLS)"
            ) from None

    def add(self, item: Snapshot, partition: int | None = None) -> None:
        self._pending[item.customer_id] = (item.redis_fields(), contribution(item), partition)

    def forget(self, partitions: set[int]) -> None:
        """Drop the waiting snapshots of partitions this worker no longer owns."""
        self._pending = {c: p for c, p in self._pending.items() if p[2] not in partitions}

    def add_history(self, change: dict[str, object]) -> None:
        """A tier-change event as sent to the topic, for its customer's history."""
        text = json.dumps(change, ensure_ascii=False, separators=(",", ":"))
        # The id as it stands in the JSON, so the look matches it exactly and nothing else.
        needle = '"event_id":' + json.dumps(change["event_id"], ensure_ascii=False)
        waiting = self._history.setdefault(str(change["customer_id"]), [])
        waiting.append((needle, text))
        del waiting[:-HISTORY_LENGTH]  # while Redis is down: no more than the list keeps

    async def history(self, customer_id: str) -> list[dict[str, object]]:
        """The customer's last tier changes, newest first. Raises SinkUnavailable."""
        try:
            entries = await self._client.lrange(self.history_prefix + customer_id, 0, HISTORY_LENGTH - 1)
        except (RedisError, OSError) as error:
            raise SinkUnavailable(f"Redis at {self.url}: {error}") from None
        return [json.loads(entry) for entry in entries]

    async def has_snapshot(self, customer_id: str) -> bool:
        """Whether Redis holds the customer's snapshot. Raises SinkUnavailable."""
        try:
            return bool(await self._client.exists(self.key_prefix + customer_id))
        except (RedisError, OSError) as error:
            raise SinkUnavailable(f"Redis at {self.url}: {error}") from None

    async def search_names(self, query: str, start: int = 0, count: int = PAGE) -> NameSearch:
        """The customers whose name starts with ``query`` (casefolded: sinks/names.py), by name,
        ``count`` from the ``start``-th. Raises SinkUnavailable."""
        bounds = lex_range(query)
        if bounds is None:
            return NameSearch((), False)
        try:
            found = await self._client.zrangebylex(
                self.prefix + "names", *bounds, start=max(start, 0), num=count + 1
            )
        except (RedisError, OSError) as error:
            raise SinkUnavailable(f"Redis at {self.url}: {error}") from None
        return NameSearch(tuple(parse_member(m) for m in found[:count]), len(found) > count)

    async def lost(self, partitions: list[int]) -> list[int]:
        """The partitions whose marker is gone: Redis lost what was written for them (a restart
        without persistence, a flush), or never had it. Raises SinkUnavailable."""
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for partition in partitions:
                    pipe.exists(f"{self.marker_prefix}{partition}")
                found = await pipe.execute()
        except (RedisError, OSError) as error:
            raise SinkUnavailable(f"Redis at {self.url}: {error}") from None
        return [partition for partition, exists in zip(partitions, found, strict=True) if not exists]

    async def mark(self, partitions: list[int]) -> None:
        """Redis holds every snapshot of these partitions now. Raises SinkUnavailable."""
        try:
            await self._client.mset({f"{self.marker_prefix}{p}": "1" for p in partitions})
        except (RedisError, OSError) as error:
            raise SinkUnavailable(f"Redis at {self.url}: {error}") from None

    async def flush(self) -> None:
        """Write all waiting snapshots and history entries; raise SinkUnavailable (keeping them)
        if Redis is down."""
        if not (self._pending or self._history) or time.monotonic() < self._retry_at:
            return
        batch, history = self._pending, self._history
        self._pending, self._history = {}, {}
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for customer_id, (fields, counted, _) in batch.items():
                    keys = [self.key_prefix + customer_id, f"{self.prefix}contribution:{customer_id}"]
                    pairs = [text for field in fields.items() for text in field]
                    await self._write(
                        keys=keys, args=[self.prefix, customer_id, *counted, *pairs], client=pipe
                    )
                for customer_id, entries in history.items():
                    for needle, text in entries:  # in the order decided
                        key = self.history_prefix + customer_id
                        await self._push_once(keys=[key], args=[needle, text, HISTORY_LENGTH], client=pipe)
                await pipe.execute()
        except (RedisError, OSError) as error:
            # Newer snapshots added meanwhile win over the ones that failed.
            self._pending = {**batch, **self._pending}
            for customer_id, entries in self._history.items():  # added meanwhile: after the failed
                history.setdefault(customer_id, []).extend(entries)
                del history[customer_id][:-HISTORY_LENGTH]
            self._history = history
            self._failures += 1
            self._retry_at = time.monotonic() + min(self._max_backoff, 0.5 * 2 ** min(self._failures, 10))
            raise SinkUnavailable(f"Redis at {self.url}: {error}") from None
        if self._failures:
            log.info("redis reachable again; wrote %d waiting snapshots", len(batch))
        self._failures = 0

    async def rollups(self, dimension: str) -> list[dict[str, Any]]:
        """Every rollup of a dimension with customers, by revenue (largest first). Raises
        SinkUnavailable."""
        try:
            names = sorted(_text(n) for n in await self._client.smembers(f"{self.prefix}rollups:{dimension}"))
            async with self._client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(f"{self.prefix}rollup:{dimension}:{name}")
                hashes = await pipe.execute()
            found = []
            for name, raw in zip(names, hashes, strict=True):
                rollup = rollup_json({_text(k): _text(v) for k, v in raw.items()}, {})
                if rollup["tiers"]:  # (a name all customers left keeps zeros)
                    found.append({"name": name, **rollup})
        except (RedisError, OSError) as error:
            raise SinkUnavailable(f"Redis at {self.url}: {error}") from None
        return sorted(found, key=lambda r: (-r["revenue"], r["name"]))

    async def index_old_names(self) -> None:
        """Put the rollup names and tiers written by 0.6 (which kept no list of them) in the lists
        the pages read, by one SCAN of the keyspace each, every INDEX_SECONDS. Called by the
        worker's timer, never by a page: on a large shared Redis the walk takes seconds. Raises
        SinkUnavailable."""
        try:
            for dimension in DIMENSIONS:
                if self._index_due(dimension):
                    await self._index_names(dimension)
            if self._index_due("tiers"):
                await self._index_tiers()
        except (RedisError, OSError) as error:
            raise SinkUnavailable(f"Redis at {self.url}: {error}") from None

    def _index_due(self, what: str) -> bool:
        return time.monotonic() - self._names_indexed.get(what, -INDEX_SECONDS) >= INDEX_SECONDS

    async def _index_names(self, dimension: str) -> None:
        """Put the names of rollups written before 0.7 (which kept no list of names) in the
        list, by one SCAN of the keyspace (every INDEX_SECONDS)."""
        head = f"{self.prefix}rollup:{dimension}:"
        keys = self._client.scan_iter(f"{head}*", count=SCAN_COUNT)
        names = [_text(key).removeprefix(head) async for key in keys]
        if names:
            await self._client.sadd(f"{self.prefix}rollups:{dimension}", *names)
        self._names_indexed[dimension] = time.monotonic()

    async def _index_tiers(self) -> None:
        """As ``_index_names``, for the tiers that have a set of customers."""
        keys = self._client.scan_iter(f"{self.prefix}tier:*", count=SCAN_COUNT)
        tiers = [_text(k).rsplit(":", 1)[1] async for k in keys]
        if tiers:
            await self._client.sadd(f"{self.prefix}tiers", *tiers)
        self._names_indexed["tiers"] = time.monotonic()

    async def rollup(self, dimension: str, name: str) -> dict[str, Any] | None:
        """One rollup with its customers per tier (None: no such name). Raises SinkUnavailable."""
        try:
            return await self._rollup(dimension, name, members=True)
        except (RedisError, OSError) as error:
            raise SinkUnavailable(f"Redis at {self.url}: {error}") from None

    async def customers(self, tier: str | None, owners: dict[str, str]) -> list[str]:
        """The ids of the customers in ``tier`` (any, when None) owned by ``owners`` (dimension ->
        name; any, when empty), sorted. Raises SinkUnavailable."""
        try:
            tiers = [tier] if tier else [_text(t) for t in await self._client.smembers(f"{self.prefix}tiers")]
            found: set[str] = set()
            for one in tiers:
                keys = [f"{self.prefix}members:{d}:{n}:{one}" for d, n in owners.items()]
                keys = keys or [f"{self.prefix}tier:{one}"]
                found |= {_text(m) for m in await self._client.sinter(keys)}
        except (RedisError, OSError) as error:
            raise SinkUnavailable(f"Redis at {self.url}: {error}") from None
        return sorted(found)

    async def _rollup(self, dimension: str, name: str, *, members: bool) -> dict[str, Any] | None:
        raw = await self._client.hgetall(f"{self.prefix}rollup:{dimension}:{name}")
        if not raw:
            return None
        fields = {_text(k): _text(v) for k, v in raw.items()}
        listed: dict[str, list[str]] = {}
        if members:  # the sets by exact name (a pattern would also match "x:y" for "x", or "[")
            for tier in (field.removeprefix("tier:") for field in fields if field.startswith("tier:")):
                key = f"{self.prefix}members:{dimension}:{name}:{tier}"
                ids = sorted(_text(m) for m in await self._client.smembers(key))
                if ids:
                    listed[tier] = ids
        return rollup_json(fields, listed)

    async def close(self) -> None:
        await self._client.aclose()


class NoSnapshots:
    """The snapshot sink of a deployment without Redis (``TIERPULSE_REDIS_URL=""``): the CRM and
    operations read Kafka only. Takes everything, writes nothing; the history page says why."""

    name = "redis"
    waiting = 0
    healthy = True

    async def setup(self) -> None:
        log.info("sink=redis state=off: TIERPULSE_REDIS_URL is empty, no snapshots or histories")

    def add(self, item: Snapshot, partition: int | None = None) -> None:
        pass

    def forget(self, partitions: set[int]) -> None:
        pass

    def add_history(self, change: dict[str, object]) -> None:
        pass

    async def history(self, customer_id: str) -> list[dict[str, object]]:
        raise SinkUnavailable("tier histories live in Redis, and this worker has none (TIERPULSE_REDIS_URL)")

    async def has_snapshot(self, customer_id: str) -> bool:
        raise SinkUnavailable("snapshots live in Redis, and this worker has none (TIERPULSE_REDIS_URL)")

    async def search_names(self, query: str, start: int = 0, count: int = PAGE) -> NameSearch:
        raise SinkUnavailable("the name index lives in Redis, and this worker has none (TIERPULSE_REDIS_URL)")

    async def lost(self, partitions: list[int]) -> list[int]:
        return []

    async def index_old_names(self) -> None:
        raise SinkUnavailable("rollups live in Redis, and this worker has none (TIERPULSE_REDIS_URL)")

    async def rollups(self, dimension: str) -> list[dict[str, Any]]:
        raise SinkUnavailable("rollups live in Redis, and this worker has none (TIERPULSE_REDIS_URL)")

    async def customers(self, tier: str | None, owners: dict[str, str]) -> list[str]:
        raise SinkUnavailable("the tier sets live in Redis, and this worker has none (TIERPULSE_REDIS_URL)")

    async def rollup(self, dimension: str, name: str) -> dict[str, Any] | None:
        raise SinkUnavailable("rollups live in Redis, and this worker has none (TIERPULSE_REDIS_URL)")

    async def mark(self, partitions: list[int]) -> None:
        pass

    async def flush(self) -> None:
        pass

    async def close(self) -> None:
        pass


SnapshotSink = RedisSnapshotSink | NoSnapshots


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    user = f"{parts.username}:***@" if parts.username else ":***@"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}{host}{port}"))


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
