"""``tierpulse backtest``: a candidate policy run over the recorded input, beside the current one.

The input topics are read as a worker reads them (an aiokafka consumer over every partition,
batches as fetched, the watermark held by the slowest stream with records left: the same
``Pipeline``), once, and each batch goes through one pipeline per policy, each with tables of
its own in memory. Nothing is written anywhere: no output topic, table, changelog or Redis.
Unkeyed records are re-keyed in memory, as the worker would through its internal topic.

The comparison itself is streams/backtest_report.py; the chart streams/backtest_html.py.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from tqdm import tqdm

from models.evaluation import Snapshot
from models.event_time import to_rfc3339
from models.policy import Policy
from models.tiering import TierDecision
from streams.pipeline import BatchResult, Pipeline, Record
from streams.positions import PartitionProgress
from streams.security import aiokafka_options
from streams.settings import Settings
from streams.tables import partition_of, scorer_pipeline
from streams.topics import bootstrap_servers

MAX_RECORDS = 2_000  # per batch, as the worker's batch_size


class MemoryTables:
    """The pipeline's two tables as dicts of what a worker would store."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.states: dict[str, bytes] = {}
        self.reached: dict[int, PartitionProgress] = {}

    def customer(self, customer_id: str) -> bytes | None:
        return self.states.get(customer_id)

    def progress(self, partition: int) -> PartitionProgress | None:
        return self.reached.get(partition)

    def stored_customers(self) -> Iterable[tuple[int, str, bytes]]:
        return [(partition_of(c.encode(), self.partitions), c, s) for c, s in self.states.items()]

    def store(self, result: BatchResult) -> None:
        for customer_id, (_, state) in result.states.items():
            state.status.outbox.clear()  # "delivered": the run keeps what it needs below
            self.states[customer_id] = state.to_bytes()
        self.reached.update(result.progress)


@dataclass
class PolicyRun:
    """One policy over the stream: every tier change, alerts fired per rule, the last snapshots."""

    policy: Policy
    pipeline: Pipeline
    tables: MemoryTables
    changes: list[TierDecision] = field(default_factory=list)
    alerts: Counter[str] = field(default_factory=Counter)
    final: dict[str, Snapshot] = field(default_factory=dict)
    invalid: int = 0  # what a worker would dead-letter
    rekeyed: dict[int, list[Record]] = field(default_factory=dict)  # the re-keying topic, in memory

    def feed(self, records: list[Record], ends: Mapping[tuple[str, int], range], now_us: int) -> None:
        """One batch; then what it re-keyed, as the next batch (the worker reads it later)."""
        batch = records
        rekeyed_topic = self.pipeline.routing.rekeyed
        while batch:
            held = {**ends, **{(rekeyed_topic, p): range(0, len(r)) for p, r in self.rekeyed.items()}}
            result = self.pipeline.process(batch, self.tables, now_us, held)
            self._keep(result)
            self.tables.store(result)
            batch = []
            for key, value, headers in result.rekeyed:
                partition = partition_of(key, self.tables.partitions)
                stream = self.rekeyed.setdefault(partition, [])
                stream.append(Record(rekeyed_topic, partition, len(stream), key, value, headers))
                batch.append(stream[-1])

    def _keep(self, result: BatchResult) -> None:
        self.invalid += len(result.dead_letters)
        for evaluation in result.evaluations:
            if evaluation.change is not None:
                self.changes.append(evaluation.change)
            for alert in evaluation.alerts:
                if alert.state == "firing":
                    self.alerts[alert.rule] += 1
        self.final.update(result.snapshots)  # what a worker would write to Redis

    def sweep(self, now_us: int) -> None:
        """After the last record: what falls due at the final watermark is decided."""
        for partition in range(self.tables.partitions):
            self.feed([Record(self.pipeline.routing.sweep, partition, 0, None, b"")], {}, now_us)


def policy_run(policy: Policy, settings: Settings) -> PolicyRun:
    return PolicyRun(policy, scorer_pipeline(policy, settings), MemoryTables(settings.partitions))


async def replay(
    settings: Settings,
    runs: list[PolicyRun],
    since: datetime | None = None,
    until: datetime | None = None,
    progress: bool = True,
) -> int:
    """Read the input topics once (from ``since``, to ``until`` or their ends now) through
    every run; return the records read. Profiles (the compacted ``customers`` topic) are read
    from their start: they are the customers' state, not events of the period."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # a start below the log start (retention) reads from there
        max_partition_fetch_bytes=8 * 1024 * 1024,
        **aiokafka_options(settings),
    )
    await consumer.start()
    try:
        bounds = await _bounds(consumer, settings, since, until)
        total = sum(len(r) for r in bounds.values())
        consumer.assign([tp for tp, span in bounds.items() if len(span)])
        for tp, span in bounds.items():
            if len(span):
                consumer.seek(tp, span.start)
        ends = {(tp.topic, tp.partition): span for tp, span in bounds.items()}
        read = 0
        with tqdm(total=total, desc="backtest", unit="event", disable=not progress) as bar:
            async for batch in _batches(consumer, bounds):
                now_us = time.time_ns() // 1000
                for run in runs:
                    run.feed(batch, ends, now_us)
                read += len(batch)
                bar.update(len(batch))
                reached = _event_time(runs[0])
                if reached is not None:
                    bar.set_postfix_str(f"event time {to_rfc3339(reached)[:16]}", refresh=False)
        now_us = time.time_ns() // 1000
        for run in runs:
            run.sweep(now_us)
        return read
    finally:
        await consumer.stop()


async def _bounds(
    consumer: AIOKafkaConsumer, settings: Settings, since: datetime | None, until: datetime | None
) -> dict[TopicPartition, range]:
    """Per input partition, the offsets to read."""
    names = settings.topics
    kinds = names.input_kinds()
    tps = [
        TopicPartition(topic, p)
        for topic in sorted(kinds)
        for p in sorted(consumer.partitions_for_topic(topic) or await _partitions(consumer, topic))
    ]
    starts = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)
    if since is not None:
        events = [tp for tp in tps if tp.topic != names.customers]
        found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in events})
        starts |= {tp: (at.offset if at is not None else ends[tp]) for tp, at in found.items()}
    if until is not None:
        found = await consumer.offsets_for_times({tp: int(until.timestamp() * 1000) for tp in tps})
        ends |= {tp: at.offset for tp, at in found.items() if at is not None}
    return {tp: range(starts[tp], max(starts[tp], ends[tp])) for tp in tps}


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # the consumer learns topics it is not assigned
    return consumer.partitions_for_topic(topic) or set()


async def _batches(
    consumer: AIOKafkaConsumer, bounds: Mapping[TopicPartition, range]
) -> AsyncIterator[list[Record]]:
    left = {tp for tp, span in bounds.items() if len(span)}
    while left:
        fetched = await consumer.getmany(timeout_ms=1000, max_records=MAX_RECORDS)
        batch: list[Record] = []
        for tp, messages in fetched.items():
            end = bounds[tp].stop
            for m in messages:
                if m.offset < end:
                    headers = {k: bytes(v) for k, v in (m.headers or ())}
                    batch.append(Record(tp.topic, tp.partition, m.offset, m.key, m.value, headers))
        # Done by position, not by the last record seen: the end may be a transaction marker or
        # a record compacted away, which no fetch returns.
        for tp in list(left):
            if await consumer.position(tp) >= bounds[tp].stop:
                left.discard(tp)
                consumer.pause(tp)
        if batch:
            yield batch


def _event_time(run: PolicyRun) -> int | None:
    reached = [run.pipeline.as_of(p) for p in range(run.tables.partitions)]
    known = [t for t in reached if t is not None]
    return min(known) if known else None
