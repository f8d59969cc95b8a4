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
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

import faust
from faust.types import TP
from prometheus_client import CollectorRegistry

from models.codec import StoredStateError
from models.evaluation import current_snapshot
from models.event_time import to_rfc3339
from models.policy import Policy
from models.schedule import DueSchedule
from models.state import CustomerState
from models.tiering import UNRATED
from sinks.alertmanager import AlertmanagerSink, FiringAlerts
from sinks.base import SinkUnavailable
from sinks.kafka import KafkaTopicSink
from sinks.metrics import ScorerMetrics
from sinks.redis import NoSnapshots, RedisSnapshotSink, SnapshotSink
from sinks.rollups import DIMENSIONS, bounded
from streams import fetching
from streams.logs import limit_repeats
from streams.offsets import InputOffsets
from streams.outputs import FiringNow, Outputs
from streams.pipeline import BatchResult, Record
from streams.positions import PartitionProgress
from streams.security import faust_credentials
from streams.settings import Settings, package_version
from streams.spill import LazySpill
from streams.tables import CurrentEvents, FaustTables, partition_of, scorer_pipeline
from streams.topics import TABLES
from streams.ui import add_ui_views
from streams.web import add_web_views

log = logging.getLogger("tierpulse")
T = TypeVar("T")


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


class ScorerApp(faust.App):
    """A Faust app with two hooks of ours: ``before_start`` runs before anything consumes (the
    topics must exist by then: Faust ignores a source topic that does not), ``on_close`` after
    everything stopped (the sinks' connections)."""

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self.before_start: list[Callable[[], Awaitable[None]]] = []
        self.on_close: list[Callable[[], Awaitable[None]]] = []

    async def on_first_start(self) -> None:
        for step in self.before_start:
            await step()
        await super().on_first_start()

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        for step in self.on_close:
            with contextlib.suppress(Exception):  # stopping: a connection already gone is fine
                await step()


ROLLUP_EXPORT_SECONDS = 10.0
# The customer-state table's RocksDB options, per partition (why: at the table, create_app).
CUSTOMER_STORE_OPTIONS = {
    "block_cache_size": 64 * 1024 * 1024,
    "write_buffer_size": 16 * 1024 * 1024,
    "max_write_buffer_number": 2,
}


def batch_options(batch_size: int) -> dict[str, Any]:
    """The Faust consumer and producer settings a worker reads and writes its batches with (the
    peer benchmark's Faust floor runs with them too: tests/bench/faust_floor.py)."""
    return {
        "stream_buffer_maxsize": max(4096, batch_size * 2),
        # A batch writes hundreds of states of a few KB each to the changelog; with the 16 KB
        # default they go out a few per request, one request in flight per partition.
        # (Below the broker's default message.max.bytes of 1 MB.)
        "producer_max_batch_size": 512 * 1024,
        # Faust hands the agent everything one poll returned before it polls again, and with no
        # bound a poll returns every fetch waiting: under a backlog of 400k messages one poll held
        # most of the input, and a partition whose fetch came a moment later waited the minutes
        # it took to score it (a "stalled" partition that no re-fetch could heal, since Faust did
        # not poll). A bounded poll comes back every batch (streams/fetching.py: the partitions
        # then take turns, a fetch result each); a smaller fetch keeps what waits in memory
        # small. (A 200k-customer changelog restore takes 32-43 s at 1 MiB, 25 s at 8 MiB.)
        "broker_max_poll_records": batch_size,
        "consumer_max_fetch_size": 1024 * 1024,
    }


def create_app(
    settings: Settings,
    policy: Policy,
    registry: CollectorRegistry | None = None,
    *,
    shadow: Policy | None = None,
) -> ScorerApp:
    """The worker's app. ``shadow``: the shadow policy (shadow mode), loaded by the caller like
    ``policy`` so that a bad file is refused before anything starts."""
    names = settings.topics
    app = ScorerApp(
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
        **batch_options(settings.batch_size),
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
        "tier_changes_shadow": KafkaTopicSink(raw(names.tier_changes_shadow)),
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
    # each: 1.3 GB, and the same restart and restore times (tests/bench/RESULTS.md). Its write
    # buffers (3 x 64 MiB a partition by default) filled with every state written until the
    # first flush: RSS grew 1.7 KB a customer up to 100k customers (deploy/dev bench memory);
    # 2 x 16 MiB bound that at 128 MiB for four partitions.
    customers = app.Table(
        state_table,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        options=CUSTOMER_STORE_OPTIONS,
    )
    progress = app.Table(progress_table, key_type=bytes, value_type=bytes, partitions=settings.partitions)
    tables = FaustTables(
        customers, progress, settings.partitions, copy_to_walk=settings.store.startswith("memory")
    )
    spill = LazySpill(settings.data_dir / f"{settings.app_id}-schedules")

    def schedule(partition: int, which: str) -> DueSchedule:
        if settings.store.startswith("memory"):
            return DueSchedule()  # the states are all in memory anyway
        return DueSchedule(
            settings.schedule_memory_customers,
            spill.spill(partition, which),
            lambda direction, count: metrics.schedule_spill_moves.labels(which, direction).inc(count),
        )

    pipeline = scorer_pipeline(policy, settings, shadow, schedule)
    outputs = Outputs(
        sinks, redis_sink, metrics, pipeline, FiringNow(firing_alerts, alertmanager, metrics, policy)
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
                outputs.firing.forget(held)  # told again by the adoption scan
                await asyncio.sleep(1)  # a failure that repeats must not spin
                await read_from_stored_positions({(e.message.topic, e.message.partition) for e in events})
            metrics.batch_size.observe(len(events))
            metrics.batch_seconds.observe(time.perf_counter() - started)
            yield None

    async def score_batch(events: list[Any], partitions: set[int]) -> None:
        offsets = await input_offsets.held(partitions)
        result = pipeline.process([_record(e) for e in events], tables, time.time_ns() // 1000, offsets)
        current = CurrentEvents(events, names.sweep)
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
        reached: dict[int, PartitionProgress], current: CurrentEvents, redis_behind: bool
    ) -> None:
        for partition, progress_now in reached.items():
            progress_now.redis_behind |= redis_behind
            with current.of(partition):
                progress[str(partition).encode()] = progress_now.to_bytes()
        await _watched("the changelog", _flush_until_acked(app.producer))

    def store(states: Iterable[tuple[str, tuple[int, CustomerState]]], current: CurrentEvents) -> None:
        for customer_id, (partition, state) in states:
            encoded = state.to_bytes()
            metrics.state_bytes.observe(len(encoded))
            with current.of(partition):
                customers[customer_id.encode("utf-8")] = encoded

    async def read_from_stored_positions(tps: set[tuple[str, int]]) -> None:
        for topic, partition in sorted(tps):
            position = pipeline.position((topic, partition), tables) if topic in inputs else None
            if position is not None:
                await fetching.seek(app.consumer, TP(topic, partition), position)

    async def rewind(result: BatchResult) -> None:
        for topic, n in result.redelivered.items():
            metrics.redelivered.labels(topic).inc(n)
        for (topic, partition), offset in result.rewinds.items():
            metrics.rewinds.labels(topic).inc()
            await fetching.seek(app.consumer, TP(topic, partition), offset)

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

    @app.timer(interval=ROLLUP_EXPORT_SECONDS)
    async def export_rollups() -> None:
        """The rollup series, read from Redis. Not at every tick: reading every rollup costs a
        round trip per name (thousands of managers), 9 % of a busy worker (py-spy), and a scrape
        every 15 s needs no more. Not in the tick: once in 10 min it walks Redis's keys for names
        a 0.6 worker wrote (16 s on a Redis of 1.7M keys), which must not hold up a refill."""
        try:
            await redis_sink.index_old_names()
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
            await fetching.seek(app.consumer, tp, 0)

    stalls = fetching.StallWatch(settings.stall_seconds)

    async def heal_if_stalled(tp: Any, processed: int, highwater: int) -> None:
        """Re-fetch a partition that has input waiting but made no progress for stall_seconds.
        Safe because records already processed are skipped; what it costs is a re-read."""
        fetched = fetching.waits_its_turn(app.consumer, tp)
        if stalls.stalled(tp, processed, highwater, time.monotonic(), fetched):
            state = fetching.fetch_state(app.consumer, tp)
            resumed = fetching.resume(app.consumer, tp)
            log.warning(
                "partition stalled topic=%s partition=%d offset=%d highwater=%d: re-fetching%s %s",
                tp.topic,
                tp.partition,
                processed,
                highwater,
                " (it was out of the fetched set)" if resumed else "",
                " ".join(f"{k}={v}" for k, v in state.items()),
            )
            metrics.stall_recoveries.labels(tp.topic).inc()
            await fetching.seek(app.consumer, tp, processed)

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

    app.on_close.append(redis_sink.close)
    app.on_close.append(spill.close)
    if alertmanager is not None:
        app.on_close.append(alertmanager.close)
    add_web_views(app, settings, policy, customers, metrics, redis_sink, alertmanager)
    add_ui_views(app, settings, policy, customers, redis_sink)
    return app
