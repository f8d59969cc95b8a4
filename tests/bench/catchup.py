"""Catch-up without flapping (contract v2 §3): the tier changes a backlog replay emits, against
the same events fed live.

The demo's backfill (300 customers, 35 days, messy: re-sends, delays, malformed, 2 % unkeyed)
goes through the real pipeline (streams/pipeline.py, no Kafka: the reading is simulated, which
makes the three runs comparable and repeatable):

* **live** — each message read as it is produced, every stream caught up after it;
* **backlog** — everything on the topics before the scorer starts, read as Faust reads a
  backlog: big chunks per input partition, so the small complaints topic reaches its end first
  and the re-keyed records come last; the watermark waits for the slowest stream with records;
* **backlog, v1 watermark** — the same reading, the watermark the largest occurred_at read from
  any stream (the rule before contract v2; lateness is judged per stream in all three runs).

For each: tier changes, the changes that share their customer and as_of with another (and the
most at one as_of), the changes back to the previous tier within 24 h of event time, and the
first ratings with no order in the window.

    python -m tests.bench catchup [--customers 300] [--days 35]
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka.partitioner import murmur2
from tqdm import tqdm

from models.alerts import AlertEvent
from models.event_time import MICROS_PER_DAY, Window
from models.events import Topic
from models.policy import Policy, load_policy
from models.tiering import UNRATED
from streams import demo
from streams.pipeline import Pipeline, Record, Routing
from tests.integration.harness import INPUT_FIELDS
from tests.unit.builders import DictTables

PARTITIONS = 4
CHUNK = 500  # records per input partition in one fetch while a backlog is read
BATCH = 2_000  # the worker's batch_size
TOPICS = {kind: name for kind, name in INPUT_FIELDS.items() if kind is not Topic.CUSTOMERS}
Stream = tuple[str, int]
Change = tuple[str, str, str, int, int]  # customer, previous tier, new tier, as_of, order_count


def _placed(customers: int, days: float) -> list[tuple[Stream, bytes | None, bytes | None]]:
    """The demo backfill as produced: each message on its topic's partition (unkeyed: any)."""
    rng, end = random.Random(3), datetime(2026, 11, 1, tzinfo=UTC)
    placed = []
    for message in demo.history(
        demo.customers(customers), end - timedelta(days=days), end, seed=5, messy=True
    ):
        topic = TOPICS.get(message.kind, "customers")
        partition = rng.randrange(PARTITIONS) if message.key is None else _partition_of(message.key)
        placed.append(((topic, partition), message.key, message.value))
    return placed


def _partition_of(key: bytes) -> int:
    return int(murmur2(key) & 0x7FFFFFFF) % PARTITIONS


class _Replay:
    """One scorer over simulated topics: records appended as produced, read by ``read``."""

    def __init__(self, held_back: bool, policy: Policy | None = None) -> None:
        kinds = {name: kind for kind, name in TOPICS.items()} | {"customers": Topic.CUSTOMERS}
        self.pipeline = Pipeline(
            policy or load_policy(),
            Window(MICROS_PER_DAY, 30),
            Routing(kinds, "rekeyed", "sweep"),
            lateness_us=0,
            max_future_skew_us=0,
            max_event_bytes=65_536,
        )
        self.tables = DictTables(lambda customer_id: _partition_of(customer_id.encode()))
        self.streams: dict[Stream, list[Record]] = {}
        self.read_to: Counter[Stream] = Counter()
        self.held_back = held_back
        self.changes: list[Change] = []
        self.alerts: list[AlertEvent] = []

    def produce(self, stream: Stream, key: bytes | None, value: bytes | None, headers: Any = None) -> None:
        records = self.streams.setdefault(stream, [])
        records.append(Record(stream[0], stream[1], len(records), key, value, headers or {}))

    def read(self, records: list[Record]) -> None:
        for record in records:
            self.read_to[(record.topic, record.partition)] = record.offset + 1
        ends = {stream: range(0, len(records)) for stream, records in self.streams.items()}
        result = self.pipeline.process(records, self.tables, 10**17, ends if self.held_back else {})
        for key, value, headers in result.rekeyed:
            self.produce(("rekeyed", _partition_of(key)), key, value, headers)
        self.tables.store(result)
        for evaluation in result.evaluations:
            self.alerts += evaluation.alerts
            change = evaluation.change
            if change is not None:
                self.changes.append(
                    (
                        change.customer_id,
                        change.previous_tier,
                        change.new_tier,
                        change.as_of,
                        change.kpis.order_count,
                    )
                )

    def unread(self) -> Iterator[tuple[Stream, list[Record]]]:
        for stream, records in sorted(self.streams.items()):
            if self.read_to[stream] < len(records):
                yield stream, records[self.read_to[stream] :]


def _live(placed: list[tuple[Stream, bytes | None, bytes | None]]) -> list[Change]:
    replay = _Replay(held_back=True)
    for stream, key, value in tqdm(placed, desc="live", unit="msg"):
        replay.produce(stream, key, value)
        while unread := list(replay.unread()):  # the message, then whatever it re-keyed
            replay.read([record for _, records in unread for record in records])
    return replay.changes


def _backlog(placed: list[tuple[Stream, bytes | None, bytes | None]], held_back: bool) -> list[Change]:
    return read_as_backlog(_Replay(held_back), placed).changes


def read_as_backlog(replay: _Replay, placed: list[tuple[Stream, bytes | None, bytes | None]]) -> _Replay:
    """The messages read as a worker reads a backlog (module docstring)."""
    held_back = replay.held_back
    for stream, key, value in placed:
        replay.produce(stream, key, value)
    progress = tqdm(total=len(placed), desc="backlog" if held_back else "backlog, v1 watermark", unit="msg")
    while unread := list(replay.unread()):
        batch: list[Record] = []
        for _, records in unread:  # a chunk from every partition with records left, as fetched
            batch += records[:CHUNK]
            if len(batch) >= BATCH:
                break
        replay.read(batch)
        progress.update(len(batch))
    progress.close()
    return replay


def figures(changes: list[Change]) -> dict[str, int]:
    at_one_as_of = Counter((customer, as_of) for customer, _, _, as_of, _ in changes)
    back_within_a_day, last = 0, {}
    for customer, previous, new, as_of, _ in changes:
        before = last.get(customer)
        if before is not None and new == before[0] and as_of - before[1] <= MICROS_PER_DAY:
            back_within_a_day += 1
        last[customer] = (previous, as_of)
    return {
        "tier_changes": len(changes),
        "sharing_customer_and_as_of": sum(n for n in at_one_as_of.values() if n > 1),
        "most_at_one_as_of": max(at_one_as_of.values(), default=0),
        "back_to_the_previous_tier_within_24h": back_within_a_day,
        "first_ratings": sum(1 for change in changes if change[1] == UNRATED),
        "first_ratings_with_no_order": sum(
            1 for change in changes if change[1] == UNRATED and change[4] == 0
        ),
    }


def run(customers: int, days: float) -> dict[str, Any]:
    placed = _placed(customers, days)
    return {
        "customers": customers,
        "days": days,
        "messages": len(placed),
        "live": figures(_live(placed)),
        "backlog": figures(_backlog(placed, held_back=True)),
        "backlog, v1 watermark": figures(_backlog(placed, held_back=False)),
    }


def main(customers: int, days: float, json_path: str | None = None) -> None:
    logging.getLogger("tierpulse").setLevel(logging.ERROR)  # the demo's malformed messages, one line each
    results = run(customers, days)
    print(
        f"\n{customers} customers, {days:g} days, {results['messages']} messages (the demo backfill, messy)"
    )
    runs = ("live", "backlog", "backlog, v1 watermark")
    print(f"{'':>38}" + "".join(f"{name:>23}" for name in runs))
    for figure in results["live"]:
        print(f"{figure:>38}" + "".join(f"{results[name][figure]:>23}" for name in runs))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(results, indent=2))
