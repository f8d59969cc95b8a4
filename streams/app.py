"""The Faust app, built by a factory from one Settings object.

One agent reads every co-partitioned input (the input kinds of models/events.py,
re-keyed input, sweep ticks) in batches, hands each batch to the
pipeline, then writes in this order — the order is what makes crashes safe:

1. dead letters and re-keyed input to Kafka, awaited;
2. customer states (each carrying an outbox of the outputs it decided) to the
   table, and the producer flushed: the changelog has them;
3. snapshots (with the rollups: sinks/rollups.py) and the tier changes' history
   entries to Redis (before Kafka shows anything newer; a Redis that is down only
   delays them; a re-sent change is listed once);
4. each partition's progress (input positions, event clock, whether Redis is
   behind) to its table, flushed: only now does the batch count as processed
   (streams/positions.py);
5. the outboxes to ``customer-tier-changes`` and ``customer-alerts``, awaited;
6. the emptied outboxes stored again.

A crash before 4 re-feeds the batch (the core absorbs nothing twice) and nothing
was emitted; so does an exception outside any one message (``score``). A crash
after 2 restores states whose outboxes are sent again when
the partition is adopted: the same ids, so a consumer de-duplicates, and never a
change the stored state did not decide — the chain of tier changes stays consistent.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import faust
from aiokafka.partitioner import murmur2
from faust.streams import _current_event  # see _CurrentEvents
from faust.types import TP
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from models.alerts import firing
from models.codec import StoredStateError
from models.evaluation import current_snapshot
from models.event_time import MICROS_PER_SECOND, to_rfc3339
from models.outputs import SCHEMA_VERSION, TIER_CHANGES
from models.policy import Policy
from models.state import CustomerState
from models.tiering import UNRATED
from sinks.alertmanager import AlertmanagerSink, FiringAlerts
from sinks.base import SinkUnavailable
from sinks.kafka import KafkaTopicSink
from sinks.metrics import ScorerMetrics
from sinks.redis import NoSnapshots, RedisSnapshotSink, SnapshotSink
from sinks.rollups import DIMENSIONS, bounded
from streams.logs import limit_repeats
from streams.offsets import InputOffsets
from streams.pipeline import BatchResult, Pipeline, Record, Routing
from streams.positions import PartitionProgress
from streams.security import faust_credentials
from streams.settings import Settings, package_version
from streams.topics import TABLES

log = logging.getLogger("tierpulse")
T = TypeVar("T")


class FaustTables:
    """The pipeline's view of the two tables (Faust tables, or dicts keyed by bytes)."""

    def __init__(self, customers: Any, progress: Any, partitions: int, *, copy_to_walk: bool = False) -> None:
        self.customers, self.partition_progress, self.partitions = customers, progress, partitions
        # A RocksDB iterator reads a snapshot; the memory store is a dict that batches write to
        # while a walk goes on, so its walk goes over a copy.
        self.copy_to_walk = copy_to_walk

    def customer(self, customer_id: str) -> bytes | None:
        value = self.customers.get(customer_id.encode("utf-8"))
        return bytes(value) if value is not None else None

    def progress(self, partition: int) -> PartitionProgress | None:
        value = self.partition_progress.get(str(partition).encode())
        return PartitionProgress.from_bytes(bytes(value)) if value is not None else None

    def stored_customers(self) -> Iterator[tuple[int, str, bytes]]:
        items = self.customers.items()
        for key, value in list(items) if self.copy_to_walk else items:
            yield partition_of(key, self.partitions), key.decode("utf-8"), bytes(value)


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as producers keyed by customer_id use it."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class _StandInMessage:
    topic: str
    partition: int


class _StandInEvent:
    """The least of an event Faust reads for a table write; a class (not a SimpleNamespace)
    because Faust holds the current event by weak reference."""

    def __init__(self, topic: str, partition: int) -> None:
        self.message = _StandInMessage(topic, partition)


class _CurrentEvents:
    """Faust files a table write under the partition of the *current event* (both the
    changelog and the RocksDB store; it reads the event's ``message.topic`` and
    ``message.partition`` only). A batch mixes partitions, so each write is made with an event
    of the customer's own partition as the current one — a stand-in where the batch has none
    (a sweep's refresh or an adoption scan reaches partitions beyond the batch's)."""

    def __init__(self, events: list[Any], topic: str) -> None:
        self._events: dict[int, Any] = {e.message.partition: e for e in events}
        self._topic = topic

    @contextmanager
    def of(self, partition: int) -> Iterator[None]:
        event: Any = self._events.get(partition)
        if event is None:
            event = self._events[partition] = _StandInEvent(self._topic, partition)
        token = _current_event.set(weakref.ref(event))
        try:
            yield
        finally:
            _current_event.reset(token)


async def _watched(what: str, step: Awaitable[T]) -> T:
    """Await one write step, saying so in the log every 10 s while it waits (a stalled
    broker or sink is then visible at once, not as a silent worker)."""
    task = asyncio.ensure_future(step)
    waited = 0
    while True:
        done, _ = await asyncio.wait({task}, timeout=10)
        if done:
            return task.result()
        waited += 10
        log.warning("still writing %s after %ds", what, waited)


async def _flush_until_acked(producer: Any) -> None:
    """Faust's ``producer.flush()`` gives up on its buffer once a message takes longer than
    0.1 s, leaving table writes unsent; drain it for real, then wait for the broker's acks."""
    while producer.buffer.size:
        await producer.buffer.flush()
    await producer.flush()


def _record(event: Any) -> Record:
    message = event.message
    headers = message.headers or {}
    pairs = headers.items() if isinstance(headers, dict) else headers
    return Record(message.topic, message.partition, message.offset, message.key, message.value, dict(pairs))


def create_app(settings: Settings, policy: Policy, registry: CollectorRegistry | None = None) -> faust.App:
    names = settings.topics
    app = faust.App(
        settings.app_id,
        broker=settings.broker,
        broker_credentials=faust_credentials(settings),
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        web_host=settings.web_host,
        web_port=settings.web_port,
        canonical_url=settings.web_url,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
        stream_buffer_maxsize=max(4096, settings.batch_size * 2),
        # A batch writes hundreds of states of a few KB each to the changelog; with the 16 KB
        # default they go out a few per request, one request in flight per partition.
        # (Below the broker's default message.max.bytes of 1 MB.)
        producer_max_batch_size=512 * 1024,
        # Restoring a table from its changelog fetches states of a few KB: at the default 1 MiB
        # per partition and fetch, a 200k-customer restore took 32-43 s; at 8 MiB, 25 s (4 MiB
        # did not help). Input partitions fetch this much only when they have a backlog.
        consumer_max_fetch_size=8 * 1024 * 1024,
        logging_config=None,
        # Faust's debug pages show every table's keys and the partition layout: off unless asked.
        web_router_enabled=settings.debug_pages,
        web_tables_enabled=settings.debug_pages,
        web_graph_enabled=settings.debug_pages,
        web_stats_enabled=settings.debug_pages,
    )

    def raw(*names: str) -> Any:
        return app.topic(*names, key_serializer="raw", value_serializer="raw")

    inputs = {*names.input_kinds(), names.rekeyed}
    source = raw(*sorted(inputs), names.sweep)
    sweep_topic = raw(names.sweep)
    sinks = {
        "dead_letters": KafkaTopicSink(raw(names.dead_letters)),
        "rekeyed": KafkaTopicSink(raw(names.rekeyed)),
        "tier_changes": KafkaTopicSink(raw(names.tier_changes)),
        "alerts": KafkaTopicSink(raw(names.alerts)),
    }
    redis_sink: SnapshotSink = (
        RedisSnapshotSink(
            settings.redis_url, settings.redis_prefix, snapshot_prefix=settings.redis_key_prefix
        )
        if settings.redis_url
        else NoSnapshots()
    )
    metrics = ScorerMetrics(registry or CollectorRegistry(), (*policy.tiers, UNRATED), settings.watch_list)
    metrics.build_info.labels(package_version(), policy.version).set(1)
    metrics.initialise(
        [kind.value for kind in names.input_kinds().values()],
        [(rule.name, rule.severity) for rule in policy.alerts],
        ["redis", "alertmanager"] if settings.alertmanager_url else ["redis"],
    )
    firing_alerts = FiringAlerts()
    alertmanager = (
        AlertmanagerSink(
            settings.alertmanager_url,
            firing_alerts,
            service=settings.app_id,
            rules=policy.alerts,
            customer_url=settings.web_url,
            partition_of=lambda customer_id: partition_of(customer_id.encode(), settings.partitions),
            resend_seconds=settings.alertmanager_resend_seconds,
            on_failure=metrics.sink_errors.labels("alertmanager").inc,
        )
        if settings.alertmanager_url
        else None
    )
    # A table's changelog codecs come from key_type/value_type (bytes: raw).
    state_table, progress_table = TABLES
    # Faust gives each partition's RocksDB a 2 GiB block cache; the adoption scan reads every
    # state once, so after a rebuild from the changelog 1M customers held 3.8 GB RSS. With 64 MiB
    # each: 1.3 GB, and the same restart and restore times (tests/bench/RESULTS.md).
    customers = app.Table(
        state_table,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        options={"block_cache_size": 64 * 1024 * 1024},
    )
    progress = app.Table(progress_table, key_type=bytes, value_type=bytes, partitions=settings.partitions)
    tables = FaustTables(
        customers, progress, settings.partitions, copy_to_walk=settings.store.startswith("memory")
    )
    pipeline = Pipeline(
        policy,
        settings.window,
        Routing(
            names.input_kinds(),
            names.rekeyed,
            names.sweep,
            lambda key: partition_of(key, settings.partitions),
        ),
        lateness_us=round(settings.allowed_lateness_seconds * MICROS_PER_SECOND),
        max_future_skew_us=round(settings.max_future_skew_seconds * MICROS_PER_SECOND),
        max_event_bytes=settings.max_event_bytes,
        cached_states=settings.state_cache_customers,
    )
    outputs = _Outputs(
        sinks, redis_sink, metrics, pipeline, _Firing(firing_alerts, alertmanager, metrics, policy)
    )
    input_offsets = InputOffsets(lambda: app.consumer, sorted(inputs))

    @app.agent(source)
    async def score(stream: Any) -> AsyncIterator[None]:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_seconds):
            started = time.perf_counter()
            partitions = {e.message.partition for e in events}
            try:
                await score_batch(events, partitions)
            except StoredStateError:
                raise  # fatal: this version cannot read the stored state (README, Upgrading)
            except Exception:
                # Outside any one message (a message's own errors are dead-lettered by the
                # pipeline). Nothing counts as processed before its progress is stored: forget
                # all this process holds (a batch also carries other partitions' refreshes and
                # scans), adopt again, and read the batch's input again from the stored positions
                # (streams/positions.py): never skipped.
                metrics.batch_failures.inc()
                log.exception("batch failed partitions=%s: reading it again", sorted(partitions))
                held = pipeline.adopted() | partitions
                pipeline.forget(held)
                input_offsets.forget(held)
                await asyncio.sleep(1)  # a failure that repeats must not spin
                await read_from_stored_positions({(e.message.topic, e.message.partition) for e in events})
            metrics.batch_size.observe(len(events))
            metrics.batch_seconds.observe(time.perf_counter() - started)
            yield None

    async def score_batch(events: list[Any], partitions: set[int]) -> None:
        offsets = await input_offsets.held(partitions)
        result = pipeline.process([_record(e) for e in events], tables, time.time_ns() // 1000, offsets)
        current = _CurrentEvents(events, names.sweep)
        for delivered in await _watched("dead letters and re-keyed input", outputs.send_input_side(result)):
            input_offsets.produced(delivered.topic, delivered.partition, delivered.offset)
        store(result.states.items(), current)
        await _watched("the changelog", _flush_until_acked(app.producer))
        # Redis before the progress: a crash between them replays the batch, and the snapshots
        # (of states stored already) are written again, never skipped.
        emitted_at = to_rfc3339(time.time_ns() // 1000)
        await _watched("redis", outputs.send_snapshots(result, emitted_at))
        reached = dict(result.progress)
        redis_behind = redis_sink.waiting > 0 or not redis_sink.healthy
        if redis_behind:
            # Snapshots wait for Redis: every partition's progress says so, so that a worker that
            # takes one over after this one died writes all its snapshots again.
            reached |= {partition: pipeline.progress_of(partition) for partition in pipeline.adopted()}
        await store_progress(reached, current, redis_behind)
        await rewind(result)
        delivered = await _watched("tier changes and alerts", outputs.send_outboxes(result, emitted_at))
        store(((cid, result.states[cid]) for cid in delivered), current)
        outputs.firing.note(result)  # after the alerts topic has them: it is the record
        outputs.observe(result)

    async def store_progress(
        reached: dict[int, PartitionProgress], current: _CurrentEvents, redis_behind: bool
    ) -> None:
        for partition, progress_now in reached.items():
            progress_now.redis_behind |= redis_behind
            with current.of(partition):
                progress[str(partition).encode()] = progress_now.to_bytes()
        await _watched("the changelog", _flush_until_acked(app.producer))

    def store(states: Iterable[tuple[str, tuple[int, CustomerState]]], current: _CurrentEvents) -> None:
        for customer_id, (partition, state) in states:
            encoded = state.to_bytes()
            metrics.state_bytes.observe(len(encoded))
            with current.of(partition):
                customers[customer_id.encode("utf-8")] = encoded

    async def read_from_stored_positions(tps: set[tuple[str, int]]) -> None:
        for topic, partition in sorted(tps):
            position = pipeline.position((topic, partition), tables) if topic in inputs else None
            if position is not None:
                await app.consumer.seek(TP(topic, partition), position)

    async def rewind(result: BatchResult) -> None:
        for topic, n in result.redelivered.items():
            metrics.redelivered.labels(topic).inc(n)
        for (topic, partition), offset in result.rewinds.items():
            metrics.rewinds.labels(topic).inc()
            await app.consumer.seek(TP(topic, partition), offset)

    @app.timer(interval=settings.sweep_interval_seconds / 2)
    async def tick() -> None:
        """The wall-clock sweep: lag gauges, re-fetching stalled partitions, and sweep ticks
        sent through Kafka so that each sweep runs in its partition's agent context."""
        actives = app.assignor.assigned_actives()
        metrics.consumer_lag.clear()  # only partitions owned now: a revoked one must not linger
        metrics.processed_lag.clear()
        for tp in actives:
            highwater = app.consumer.highwater(tp) if tp.topic in inputs else None
            if highwater is not None:  # unknown right after an assignment: no number rather than a false 0
                # Faust keeps the committed offsets it knows in a private mapping; no public API.
                committed = app.consumer._committed_offset.get(tp) or 0  # type: ignore[attr-defined]
                position = pipeline.position((tp.topic, tp.partition), tables)
                if position is not None and position > highwater:
                    await read_again(tp, position, highwater)
                    position = 0
                processed = committed if position is None else position
                labels = (tp.topic, str(tp.partition))
                metrics.consumer_lag.labels(*labels).set(max(0, highwater - committed))
                metrics.processed_lag.labels(*labels).set(max(0, highwater - processed))
                await heal_if_stalled(tp, processed, highwater)
        owned = [tp.partition for tp in actives if tp.topic == names.sweep]
        log.debug("sweep ticks partitions=%s", owned)
        for partition in owned:
            await sweep_topic.send(key=None, value=b"", partition=partition)
        outputs.update_lag()
        if not redis_sink.healthy:  # with nothing to write, only a probe sees it come back
            await check_sinks()
        if alertmanager is not None:
            metrics.sink_up.labels("alertmanager").set(1 if alertmanager.healthy else 0)
            metrics.sink_waiting.labels("alertmanager").set(alertmanager.waiting)
        await refill_redis(owned)
        await export_rollups()

    async def export_rollups() -> None:
        try:
            for dimension in DIMENSIONS:
                found = await redis_sink.rollups(dimension)
                metrics.set_rollups(dimension, bounded(found, settings.rollup_max_names))
        except SinkUnavailable:  # no Redis, or down: the series stay as last read
            pass

    async def refill_redis(owned: list[int]) -> None:
        """A Redis that lost its data (restarted without persistence, flushed) gets every
        snapshot of the partitions owned here again, from their stored states: the CRM must not
        read nothing until each customer happens to change. A partition marker tells."""
        try:
            # Lost by Redis (no marker), or waiting for it when a worker that held them died.
            lost = set(await redis_sink.lost(sorted(owned))) | (pipeline.redis_behind() & set(owned))
            if not lost:
                return
            refilled = 0
            for partition, _, stored in tables.stored_customers():
                if partition in lost:
                    snapshot = current_snapshot(CustomerState.from_bytes(stored), policy, settings.window)
                    if snapshot is not None:
                        redis_sink.add(snapshot, partition)
                        refilled += 1
            await redis_sink.flush()
            if redis_sink.waiting:
                return  # not all written (Redis backs off): the next tick walks again
            await redis_sink.mark(sorted(lost))
            pipeline.redis_refilled(lost)
        except SinkUnavailable as error:  # the batches' flushes say so already; try next tick
            log.debug("sink=redis refill waits: %s", error)
            return
        # Nothing to refill is a new deployment's first marking, not a loss worth a warning.
        level = logging.WARNING if refilled else logging.INFO
        log.log(
            level, "sink=redis had no data for partitions=%s: refilled %d snapshots", sorted(lost), refilled
        )

    @app.timer(interval=0.1)
    async def carry_on() -> None:
        """Scans of adopted partitions and sweep refreshes go a bounded amount per batch; once
        input stops there are no batches but the sweep's, so tick the partitions with work left."""
        for partition in pipeline.pending(time.time_ns() // 1000):
            await sweep_topic.send(key=None, value=b"", partition=partition)

    async def read_again(tp: Any, position: int, highwater: int) -> None:
        if pipeline.input_restarted((tp.topic, tp.partition)):
            log.error(
                "input partition ends before its stored position topic=%s partition=%d highwater=%d "
                "position=%d: recreated? reading it again from its start",
                tp.topic,
                tp.partition,
                highwater,
                position,
            )
            await app.consumer.seek(tp, 0)

    last_moved: dict[Any, tuple[int, float]] = {}  # partition -> (processed offset, when it last moved)

    async def heal_if_stalled(tp: Any, processed: int, highwater: int) -> None:
        """Re-fetch a partition that has input waiting but made no progress for stall_seconds.
        Safe because records already processed are skipped; what it costs is a re-read."""
        now = time.monotonic()
        last = last_moved.get(tp)
        if last is None or last[0] != processed or highwater <= processed:
            last_moved[tp] = (processed, now)
        elif now - last[1] > settings.stall_seconds:
            log.warning(
                "partition stalled topic=%s partition=%d offset=%d highwater=%d: re-fetching",
                tp.topic,
                tp.partition,
                processed,
                highwater,
            )
            metrics.stall_recoveries.labels(tp.topic).inc()
            await app.consumer.seek(tp, processed)
            last_moved[tp] = (processed, now)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # faust's signal types want a sync handler
    async def on_revoked(app: faust.App, revoked: set[Any], **_: Any) -> None:
        partitions = {tp.partition for tp in revoked if tp.topic in inputs or tp.topic == names.sweep}
        pipeline.forget(partitions)
        input_offsets.forget(partitions)
        # Snapshots still waiting for Redis are the new owner's to write now (the progress said
        # Redis was behind): written later from here, they could overwrite newer ones.
        redis_sink.forget(partitions)
        outputs.firing.forget(partitions)
        outputs.update_population()

    @app.task
    async def limit_log_repeats() -> None:
        limit_repeats(60.0)  # here: the worker has set up its log handlers by now

    @app.task
    async def check_sinks() -> None:
        try:
            await redis_sink.setup()
        except SinkUnavailable as error:  # keep scoring; snapshots wait and are retried
            log.warning("sink=redis state=down reason=%s", error)
        metrics.sink_up.labels("redis").set(1 if redis_sink.healthy else 0)

    if alertmanager is not None:

        @app.task
        async def post_alerts() -> None:
            await alertmanager.run()

    _add_web_views(app, settings, policy, customers, metrics, redis_sink)
    return app


class _Firing:
    """Which alerts fire in the partitions owned here, told after each batch's alerts reached
    their topic: for Alertmanager (when set) and the ``tierpulse_alerts_firing`` gauge."""

    def __init__(
        self,
        firing: FiringAlerts,
        alertmanager: AlertmanagerSink | None,
        metrics: ScorerMetrics,
        policy: Policy,
    ) -> None:
        self.alerts, self.alertmanager, self.metrics = firing, alertmanager, metrics
        self.rules = [(rule.name, rule.severity) for rule in policy.alerts]
        self._counted = -1

    def note(self, result: BatchResult) -> None:
        tell = self.alertmanager.changed if self.alertmanager is not None else self.alerts.update
        for customer_id, (partition, state) in result.states.items():
            tell(partition, customer_id, firing(state))
        for customer_id, (partition, alerts) in result.firing.items():
            if customer_id not in result.states:
                tell(partition, customer_id, alerts)
        if result.scanned_whole and self.alertmanager is not None:
            self.alertmanager.adopted(result.scanned_whole)
        self.count()

    def forget(self, partitions: set[int]) -> None:
        if self.alertmanager is not None:
            self.alertmanager.forget(partitions)
        else:
            self.alerts.forget(partitions)
        self.count()

    def count(self) -> None:
        if self._counted != self.alerts.changes:
            self._counted = self.alerts.changes
            self.metrics.set_alerts_firing(self.rules, self.alerts.counts())


class _Outputs:
    """Steps 1, 3 and 5 of the module docstring, and the metrics that go with them."""

    def __init__(
        self,
        sinks: dict[str, KafkaTopicSink],
        redis: SnapshotSink,
        metrics: ScorerMetrics,
        pipeline: Pipeline,
        firing: _Firing,
    ) -> None:
        self.sinks, self.redis, self.metrics, self.pipeline = sinks, redis, metrics, pipeline
        self.firing = firing
        # What a consumer needs to read a message before parsing it (README, Outputs).
        self.headers = {
            "content-type": b"application/json",
            "tierpulse-schema-version": SCHEMA_VERSION.encode(),
            "tierpulse-policy-version": pipeline.policy.version.encode(),
        }

    async def send_input_side(self, result: BatchResult) -> list[Any]:
        """Dead letters and re-keyed input: delivered before the batch's offsets can commit.
        Returns the re-keyed messages' metadata (where they landed)."""
        received = to_rfc3339(time.time_ns() // 1000)
        for key, letter in result.dead_letters:
            body = json.dumps({**letter, "dead_lettered_at": received}, ensure_ascii=False).encode()
            self.sinks["dead_letters"].add_raw(key, body, self.headers)
            self.metrics.dead_letters.labels(letter["topic"]).inc()
        for key, value, headers in result.rekeyed:
            self.sinks["rekeyed"].add_raw(key, value, headers)
            self.metrics.rekeyed.labels(headers.get("tierpulse-kind", b"").decode()).inc()
        await self.sinks["dead_letters"].flush()
        return await self.sinks["rekeyed"].flush()

    async def send_snapshots(self, result: BatchResult, emitted_at: str) -> None:
        """Snapshots, and the tier changes about to be sent (as sent) for the histories."""
        for customer_id, snapshot in result.snapshots.items():
            self.redis.add(snapshot, result.states[customer_id][0])
        for _, outbox in result.outboxes():
            for kind, body in outbox:
                if kind == TIER_CHANGES:
                    self.redis.add_history({**body, "emitted_at": emitted_at})
        try:
            await self.redis.flush()
        except SinkUnavailable as error:
            self.metrics.sink_errors.labels("redis").inc()
            log.warning("sink=redis state=down waiting=%d reason=%s", self.redis.waiting, error)
        # Down also while it waits out its back-off between tries.
        self.metrics.sink_up.labels("redis").set(1 if self.redis.healthy else 0)
        self.metrics.sink_waiting.labels("redis").set(self.redis.waiting)

    async def send_outboxes(self, result: BatchResult, emitted_at: str) -> list[str]:
        """Send every stored outbox, await delivery, empty them; return the customers emptied."""
        delivered = []
        for customer_id, outbox in result.outboxes():
            for kind, body in outbox:
                self.sinks[str(kind)].add((customer_id, {**body, "emitted_at": emitted_at}), self.headers)
                log.info(
                    "emit %s customer=%s %s",
                    kind,
                    customer_id,
                    " ".join(f"{k}={body[k]}" for k in _LOGGED if k in body),
                )
            delivered.append(customer_id)
        await self.sinks["tier_changes"].flush()
        await self.sinks["alerts"].flush()
        for customer_id in delivered:
            result.states[customer_id][1].status.outbox.clear()
        return delivered

    def observe(self, result: BatchResult) -> None:
        for evaluation in result.evaluations:
            self.metrics.observe(evaluation)
        self.metrics.count_outcomes(result.outcomes, result.internal_errors)
        self.metrics.state_cache.set(self.pipeline.cached())
        if result.population_changed:
            self.update_population()

    def update_population(self) -> None:
        totals: dict[tuple[str, str], int] = {}
        for tally in self.pipeline.population.values():
            for key, n in tally.items():
                totals[key] = totals.get(key, 0) + n
        self.metrics.customers.clear()
        for (tier, segment), n in totals.items():
            self.metrics.customers.labels(tier, segment).set(n)

    def update_lag(self) -> None:
        now = time.time_ns() // 1000
        for partition in list(self.pipeline.population):
            as_of = self.pipeline.as_of(partition)
            if as_of is not None:
                self.metrics.event_time_lag.labels(str(partition)).set((now - as_of) / MICROS_PER_SECOND)
                self.metrics.watermark.labels(str(partition)).set(as_of / MICROS_PER_SECOND)


_LOGGED = ("previous_tier", "new_tier", "score", "rule", "state", "value", "as_of")


def _add_web_views(
    app: faust.App,
    settings: Settings,
    policy: Policy,
    customers: Any,
    metrics: ScorerMetrics,
    redis_sink: SnapshotSink,
) -> None:
    token = None if settings.http_token is None else f"Bearer {settings.http_token.get_secret_value()}"

    def refused(web: View, request: Request) -> Response | None:
        """401 unless the request carries the token (when one is set)."""
        given = request.headers.get("Authorization", "")
        if token is None or hmac.compare_digest(given.encode(), token.encode()):
            return None
        return web.json(
            {"error": "a bearer token is required"}, status=401, headers={"WWW-Authenticate": "Bearer"}
        )

    @app.page("/customers/{customer_id}")
    @app.table_route(table=customers, match_info="customer_id")
    async def customer(web: View, request: Request, customer_id: str) -> Response:
        if (refusal := refused(web, request)) is not None:
            return refusal
        stored = customers.get(customer_id.encode("utf-8"))
        snapshot = (
            None
            if stored is None
            else current_snapshot(CustomerState.from_bytes(bytes(stored)), policy, settings.window)
        )
        if snapshot is None:
            return web.json({"error": f"unknown customer {customer_id}"}, status=404)
        return web.json(snapshot.as_json())

    @app.page("/customers/{customer_id}/history")
    async def history(web: View, request: Request, customer_id: str) -> Response:
        """The last 50 tier changes, newest first, as sent (kept in Redis: any worker answers)."""
        if (refusal := refused(web, request)) is not None:
            return refusal
        try:
            return web.json(await redis_sink.history(customer_id))
        except SinkUnavailable as error:
            return web.json({"error": str(error)}, status=503)

    @app.page("/customers")
    async def customers_in(web: View, request: Request) -> Response:
        """Customer ids by tier and owner, sorted, a page at a time: ?tier=&account_manager=
        &region=&limit= (default 100, at most 1000) &cursor= (the last id of the previous page)."""
        if (refusal := refused(web, request)) is not None:
            return refusal
        query = request.query
        owners = {d: query[d] for d in DIMENSIONS if query.get(d)}
        try:
            limit = min(max(int(query.get("limit", 100)), 1), 1000)
            found = await redis_sink.customers(query.get("tier") or None, owners)
        except ValueError:
            return web.json({"error": "limit must be a whole number"}, status=400)
        except SinkUnavailable as error:
            return web.json({"error": str(error)}, status=503)
        cursor = query.get("cursor")
        page = [c for c in found if cursor is None or c > cursor][:limit]
        more = len(page) == limit and page[-1] != found[-1]
        return web.json({"customers": page, "cursor": page[-1] if more else None})

    @app.page("/rollups/{dimension}")
    async def rollups(web: View, request: Request, dimension: str) -> Response:
        """Every account manager's or region's rollup (contract v2 §5), by revenue."""
        if (refusal := refused(web, request)) is not None:
            return refusal
        if dimension not in DIMENSIONS:
            return web.json({"error": f"no dimension {dimension}: {' or '.join(DIMENSIONS)}"}, status=404)
        try:
            return web.json(await redis_sink.rollups(dimension))
        except SinkUnavailable as error:
            return web.json({"error": str(error)}, status=503)

    @app.page("/rollups/{dimension}/{name}")
    async def rollup(web: View, request: Request, dimension: str, name: str) -> Response:
        """One rollup with its customers per tier."""
        if (refusal := refused(web, request)) is not None:
            return refusal
        try:
            found = await redis_sink.rollup(dimension, name) if dimension in DIMENSIONS else None
        except SinkUnavailable as error:
            return web.json({"error": str(error)}, status=503)
        if found is None:
            return web.json({"error": f"no rollup {dimension}/{name}"}, status=404)
        return web.json({"dimension": dimension, "name": name, **found})

    def health() -> dict[str, object]:
        return {
            "redis": _sink_state(redis_sink),
            "redis_waiting": redis_sink.waiting,
            "rebalancing": bool(app.rebalancing),
            "policy_version": policy.version,
        }

    @app.page("/healthz")
    async def healthz(web: View, request: Request) -> Response:
        """Liveness: the process serves requests (a restart would not bring Redis back)."""
        return web.json({"status": "ok", **health()})

    @app.page("/readyz")
    async def readyz(web: View, request: Request) -> Response:
        """Readiness: 503 while Redis (when configured) is down or a rebalance is under way,
        so that a probe takes the worker out of a load balancer then."""
        state = health()
        ready = state["redis"] != "down" and not state["rebalancing"]
        return web.json({"status": "ready" if ready else "not ready", **state}, status=200 if ready else 503)

    @app.page("/metrics")
    async def prometheus(web: View, request: Request) -> Response:
        return web.bytes(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])


def _sink_state(sink: SnapshotSink) -> str:
    return "off" if isinstance(sink, NoSnapshots) else "up" if sink.healthy else "down"
