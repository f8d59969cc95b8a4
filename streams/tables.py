"""The worker's two Faust tables as the pipeline sees them, and writing to them from a batch.

``FaustTables`` is the pipeline's ``StateTables`` over the customer-state and partition-progress
tables. ``CurrentEvents`` makes each table write land in the partition of its customer: Faust
files a write under the partition of the event it is processing, and a batch mixes partitions.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka.partitioner import murmur2
from faust.streams import _current_event  # see CurrentEvents

from models.event_time import MICROS_PER_SECOND
from models.policy import Policy
from streams.pipeline import Pipeline, Routing, ScheduleFactory
from streams.positions import PartitionProgress
from streams.settings import Settings


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
class StandInMessage:
    topic: str
    partition: int


class StandInEvent:
    """The least of an event Faust reads for a table write; a class (not a SimpleNamespace)
    because Faust holds the current event by weak reference."""

    def __init__(self, topic: str, partition: int) -> None:
        self.message = StandInMessage(topic, partition)


class CurrentEvents:
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
            event = self._events[partition] = StandInEvent(self._topic, partition)
        token = _current_event.set(weakref.ref(event))
        try:
            yield
        finally:
            _current_event.reset(token)


def scorer_pipeline(
    policy: Policy,
    settings: Settings,
    shadow: Policy | None = None,
    schedules: ScheduleFactory | None = None,
) -> Pipeline:
    """The batch pipeline a worker runs (the backtest runs the same), from the settings."""
    names = settings.topics
    return Pipeline(
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
        shadow=shadow,
        schedules=schedules,
    )
