"""The Faust app, built by a factory from one Settings object.

One agent reads every co-partitioned input (orders, tickets, complaints,
customers, re-keyed input, sweep ticks) in batches, hands each batch to the
pipeline, then writes in this order — and the order is what makes crashes safe:

1. dead letters and re-keyed input to Kafka, awaited;
2. snapshots to Redis (never older than Kafka: they go first, and a Redis that
   is down only delays them);
3. tier changes and alerts to Kafka, awaited;
4. customer states and watermarks to the tables (their changelogs).

A crash before 4 re-feeds the batch: the core absorbs nothing twice and re-emits
the same changes with the same ids. A crash after 4 emits nothing again.
"""

from __future__ import annotations

import json
import logging
import time
import weakref
from collections.abc import AsyncIterator, Iterable
from contextlib import contextmanager
from typing import Any

import faust
from aiokafka.partitioner import murmur2
from faust.streams import _current_event  # see _in_partition_of
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from models.evaluation import current_snapshot
from models.event_time import MICROS_PER_SECOND, to_rfc3339
from models.policy import Policy
from models.state import CustomerState
from models.tiering import UNRATED
from sinks.base import SinkUnavailable
from sinks.kafka import KafkaTopicSink
from sinks.metrics import ScorerMetrics
from sinks.redis import RedisSnapshotSink
from streams.pipeline import BatchResult, Pipeline, Record, Routing
from streams.settings import Settings

log = logging.getLogger("tierpulse")


class FaustTables:
    """The pipeline's view of the two tables."""

    def __init__(self, customers: Any, watermarks: Any, partitions: int) -> None:
        self.customers, self.watermarks, self.partitions = customers, watermarks, partitions

    def customer(self, customer_id: str) -> bytes | None:
        value = self.customers.get(customer_id.encode("utf-8"))
        return bytes(value) if value is not None else None

    def max_seen(self, partition: int) -> int | None:
        value = self.watermarks.get(str(partition).encode())
        return int(value) if value is not None else None

    def customers_in(self, partition: int) -> Iterable[tuple[str, bytes]]:
        for key, value in self.customers.items():
            if partition_of(key, self.partitions) == partition:
                yield key.decode("utf-8"), bytes(value)


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as producers keyed by customer_id use it."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@contextmanager
def _in_partition_of(event: Any) -> Any:
    """Faust files a table write under the partition of the *current event* (both the
    changelog and the RocksDB store). A batch mixes partitions, so each write is made
    with an event of the customer's own partition as the current one."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def _record(event: Any) -> Record:
    message = event.message
    headers = message.headers or {}
    pairs = headers.items() if isinstance(headers, dict) else headers
    return Record(message.topic, message.partition, message.offset, message.key, message.value,
                  {k: v for k, v in pairs})


def create_app(settings: Settings, policy: Policy, registry: CollectorRegistry | None = None) -> faust.App:
    names = settings.topics
    app = faust.App(
        settings.app_id,
        broker=settings.broker,
        broker_credentials=_credentials(settings),
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        web_host=settings.web_host,
        web_port=settings.web_port,
        canonical_url=settings.web_url,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
        stream_buffer_maxsize=max(4096, settings.batch_size * 2),
        logging_config=None,
    )
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    source = app.topic(names.orders, names.tickets, names.complaints, names.customers, names.rekeyed,
                       names.sweep, **raw)
    sweep_topic = app.topic(names.sweep, **raw)
    sinks = {
        "dead_letters": KafkaTopicSink(app.topic(names.dead_letters, **raw)),
        "rekeyed": KafkaTopicSink(app.topic(names.rekeyed, **raw)),
        "tier_changes": KafkaTopicSink(app.topic(names.tier_changes, **raw)),
        "alerts": KafkaTopicSink(app.topic(names.alerts, **raw)),
    }
    redis_sink = RedisSnapshotSink(settings.redis_url, settings.redis_key_prefix)
    metrics = ScorerMetrics(registry or CollectorRegistry(), (*policy.tiers, UNRATED), settings.watch_list)
    # A table's changelog codecs come from key_type/value_type (bytes: raw).
    customers = app.Table("customer-state", key_type=bytes, value_type=bytes, partitions=settings.partitions)
    watermarks = app.Table("watermarks", key_type=bytes, value_type=bytes, partitions=settings.partitions)
    tables = FaustTables(customers, watermarks, settings.partitions)
    pipeline = Pipeline(
        policy, settings.window, Routing(names.input_kinds(), names.rekeyed, names.sweep),
        lateness_us=round(settings.allowed_lateness_seconds * MICROS_PER_SECOND),
        max_future_skew_us=round(settings.max_future_skew_seconds * MICROS_PER_SECOND),
        max_event_bytes=settings.max_event_bytes,
    )
    outputs = _Outputs(sinks, redis_sink, metrics, pipeline)

    @app.agent(source)
    async def score(stream: Any) -> AsyncIterator[None]:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_seconds):
            started = time.perf_counter()
            result = pipeline.process([_record(e) for e in events], tables, time.time_ns() // 1000)
            await outputs.emit(result)
            by_partition = {e.message.partition: e for e in events}
            for customer_id, (partition, state) in result.writes.items():
                with _in_partition_of(by_partition[partition]):
                    customers[customer_id.encode("utf-8")] = state
            for partition, seen in result.max_seen.items():
                with _in_partition_of(by_partition[partition]):
                    watermarks[str(partition).encode()] = str(seen).encode()
            metrics.batch_size.observe(len(events))
            metrics.batch_seconds.observe(time.perf_counter() - started)
            yield None

    @app.timer(interval=settings.sweep_interval_seconds / 2)
    async def send_sweep_ticks() -> None:
        """Ticks through Kafka, so each sweep runs in its partition's agent context."""
        for tp in app.assignor.assigned_actives():
            if tp.topic == names.sweep:
                await sweep_topic.send(key=None, value=b"", partition=tp.partition)
        outputs.update_lag()

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: set[Any], **_: Any) -> None:
        pipeline.forget({tp.partition for tp in revoked if tp.topic == names.sweep})
        outputs.update_population()

    @app.task
    async def check_sinks() -> None:
        try:
            await redis_sink.setup()
        except SinkUnavailable as error:  # keep scoring; snapshots wait and are retried
            log.warning("sink=redis state=down reason=%s", error)

    _add_web_views(app, settings, policy, customers, metrics, redis_sink)
    app.tierpulse_pipeline = pipeline  # for tests and the replay tool
    return app


class _Outputs:
    """Steps 1-3 of the module docstring, and the metrics that go with them."""

    def __init__(self, sinks: dict[str, KafkaTopicSink], redis: RedisSnapshotSink, metrics: ScorerMetrics,
                 pipeline: Pipeline) -> None:
        self.sinks, self.redis, self.metrics, self.pipeline = sinks, redis, metrics, pipeline

    async def emit(self, result: BatchResult) -> None:
        emitted_at = to_rfc3339(time.time_ns() // 1000)
        for key, letter in result.dead_letters:
            self.sinks["dead_letters"].add_raw(key, json.dumps({**letter, "dead_lettered_at": emitted_at},
                                                               ensure_ascii=False).encode(), None)
            self.metrics.dead_letters.labels(letter["topic"]).inc()
        for key, value, headers in result.rekeyed:
            self.sinks["rekeyed"].add_raw(key, value, headers)
            self.metrics.rekeyed.labels(headers.get("tierpulse-kind", b"").decode()).inc()
        await self.sinks["dead_letters"].flush()
        await self.sinks["rekeyed"].flush()

        for evaluation in result.evaluations:
            if evaluation.snapshot.customer_id in result.snapshots_changed:
                self.redis.add(evaluation.snapshot)
        try:
            await self.redis.flush()
            self.metrics.sink_up.labels("redis").set(1)
        except SinkUnavailable as error:
            self.metrics.sink_errors.labels("redis").inc()
            self.metrics.sink_up.labels("redis").set(0)
            log.warning("sink=redis state=down waiting=%d reason=%s", self.redis.waiting, error)
        self.metrics.sink_waiting.labels("redis").set(self.redis.waiting)

        for evaluation in result.evaluations:
            self.metrics.observe(evaluation)
            if evaluation.change is not None:
                self.sinks["tier_changes"].add((evaluation.change.customer_id,
                                                _tier_change_json(evaluation.change, emitted_at)))
                log.info("tier change customer=%s from=%s to=%s score=%.2f as_of=%s event_id=%s",
                         evaluation.change.customer_id, evaluation.change.previous_tier,
                         evaluation.change.new_tier, evaluation.change.score,
                         to_rfc3339(evaluation.change.as_of), evaluation.change.event_id)
            for alert in evaluation.alerts:
                self.sinks["alerts"].add((alert.customer_id, {
                    "alert_id": alert.alert_id, "customer_id": alert.customer_id, "rule": alert.rule,
                    "severity": alert.severity, "state": alert.state, "value": alert.value,
                    "threshold": alert.threshold, "as_of": to_rfc3339(alert.as_of), "emitted_at": emitted_at}))
                log.info("alert customer=%s rule=%s state=%s value=%s", alert.customer_id, alert.rule,
                         alert.state, alert.value)
        await self.sinks["tier_changes"].flush()
        await self.sinks["alerts"].flush()
        self.metrics.count_outcomes(result.outcomes)
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


def _tier_change_json(change: Any, emitted_at: str) -> dict[str, object]:
    return {
        "event_id": change.event_id,
        "customer_id": change.customer_id,
        "previous_tier": change.previous_tier,
        "new_tier": change.new_tier,
        "previous_score": change.previous_score,
        "score": change.score,
        "segment": change.segment,
        "policy_version": change.policy_version,
        "as_of": to_rfc3339(change.as_of),
        "kpis": change.kpis.as_json(),
        "reasons": [{"kpi": r.kpi, "value": r.value, "score": r.score, "weight": r.weight,
                     "contribution": r.contribution} for r in change.reasons],
        "emitted_at": emitted_at,
    }


def _credentials(settings: Settings) -> Any:
    if settings.broker_sasl_mechanism is None:
        return None
    password = settings.broker_password.get_secret_value() if settings.broker_password else ""
    ssl_context = None
    if settings.broker_ssl_cafile is not None:
        import ssl

        ssl_context = ssl.create_default_context(cafile=str(settings.broker_ssl_cafile))
    return faust.SASLCredentials(username=settings.broker_username or "", password=password,
                                 mechanism=settings.broker_sasl_mechanism, ssl_context=ssl_context)


def _add_web_views(app: faust.App, settings: Settings, policy: Policy, customers: Any, metrics: ScorerMetrics,
                   redis_sink: RedisSnapshotSink) -> None:
    @app.page("/customers/{customer_id}")
    @app.table_route(table=customers, match_info="customer_id")
    async def customer(web: View, request: Request, customer_id: str) -> Response:
        stored = customers.get(customer_id.encode("utf-8"))
        snapshot = None if stored is None else current_snapshot(CustomerState.from_bytes(bytes(stored)),
                                                                policy, settings.window)
        if snapshot is None:
            return web.json({"error": f"unknown customer {customer_id}"}, status=404)
        return web.json(snapshot.as_json())

    @app.page("/healthz")
    async def healthz(web: View, request: Request) -> Response:
        return web.json({"status": "ok", "redis": "up" if redis_sink.healthy else "down",
                         "redis_waiting": redis_sink.waiting, "policy_version": policy.version})

    @app.page("/metrics")
    async def prometheus(web: View, request: Request) -> Response:
        return web.bytes(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])
