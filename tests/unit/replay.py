"""Input topics as lists, read by the pure pipeline the way the worker reads Kafka, in batches
and with faults that a property test chooses (hypothesis ``data``).

The write order is the app's (streams/app.py): dead letters and re-keyed messages are sent
first, then the states are stored, then the partitions' progress. The faults:

* a crash at any of those points: a new pipeline, the reading resumes at the stored positions;
* a restart after a stored batch: a new pipeline;
* a batch that fails in the worker after its input side was sent (a sink's send raised): the
  app makes the pipeline forget the batch's partitions, and the pipeline itself asks for the
  re-fetch (its rewinds) when the next records come from past the stored positions.

Only what a stored batch did counts: its outcomes and its dead letters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from models.event_time import Window
from models.events import Topic
from models.policy import Policy
from streams.pipeline import Pipeline, Record, Routing, ScheduleFactory
from tests.unit.builders import DictTables, us

Stream = tuple[str, int]  # topic, partition
# Topic names by kind, as the simulated topics call them.
TOPICS = {
    "orders": Topic.ORDERS,
    "tickets": Topic.TICKETS,
    "complaints": Topic.COMPLAINTS,
    "invoices": Topic.INVOICES,
}


def make_pipeline(
    policy: Policy,
    window: Window,
    partition_of: Callable[[bytes], int | None] | None = None,
    cached_states: int = 8,
    shadow: Policy | None = None,
    schedules: ScheduleFactory | None = None,
) -> Pipeline:
    """A scorer's pipeline over the simulated topics (plus customers, re-keyed input, sweeps)."""
    routing = Routing({**TOPICS, "customers": Topic.CUSTOMERS}, "rekeyed", "sweep", partition_of)  # type: ignore[arg-type]
    return Pipeline(
        policy,
        window,
        routing,
        lateness_us=0,
        max_future_skew_us=3600 * 10**6,
        max_event_bytes=65_536,
        cached_states=cached_states,
        shadow=shadow,
        schedules=schedules,
    )


Message = tuple[bytes | None, bytes | None, dict[str, bytes]]  # key, value, headers


@dataclass
class SimulatedTopics:
    make_pipeline: Callable[[], Pipeline]
    partition_of: Callable[[str], int]
    streams: dict[Stream, list[Message]] = field(default_factory=dict)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    internal_errors: Counter[str] = field(default_factory=Counter)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # tier changes and alerts

    def __post_init__(self) -> None:
        self.tables = DictTables(self.partition_of)
        self.pipeline = self.make_pipeline()
        self.cursors: dict[Stream, int] = {}

    def produce(self, stream: Stream, key: bytes | None, value: bytes | None, headers: Any = None) -> None:
        self.streams.setdefault(stream, []).append((key, value, dict(headers or {})))
        self.cursors.setdefault(stream, 0)

    def read_all(self, data: st.DataObject, *, failures: bool = False) -> None:
        """Read every stream to its end, in batches, streams and faults drawn from ``data``."""
        for _ in range(10_000):
            ready = sorted(s for s, messages in self.streams.items() if self.cursors[s] < len(messages))
            if not ready and not self._heal():
                break
            if ready:
                self._batch(data, ready, failures)
        else:
            raise AssertionError("the streams were not read to their end: a re-fetch that never ends?")
        self._store(self.pipeline.process(self._sweeps(), self.tables, us(60)))

    def _batch(self, data: st.DataObject, ready: list[Stream], failures: bool) -> None:
        batch: list[Record] = []
        for _ in range(data.draw(st.integers(1, 3))):  # a batch mixes streams, as Faust's do
            where = data.draw(st.sampled_from(ready))
            end = min(self.cursors[where] + data.draw(st.integers(1, 6)), len(self.streams[where]))
            batch += [
                Record(*where, offset, *self.streams[where][offset])
                for offset in range(self.cursors[where], end)
            ]
            self.cursors[where] = end
        ends = {where: range(0, len(messages)) for where, messages in self.streams.items()}
        result = self.pipeline.process(batch, self.tables, us(60), ends)
        for (topic, partition), offset in result.rewinds.items():  # the worker's seek
            self.cursors[(topic, partition)] = offset
        for key, value, headers in result.rekeyed:  # the input side goes out first
            self.produce(("rekeyed", self.partition_of(key.decode())), key, value, headers)
        fault = data.draw(
            st.sampled_from(["none"] * 12 + ["crash", "crash after states", "restart"] + ["fail"] * failures)
        )
        if fault.startswith("crash"):
            if fault == "crash after states":
                self.tables.store(result, progress=False)
            self.pipeline = self.make_pipeline()
            for topic, partition in self.cursors:
                reached = self.tables.progress(partition)
                self.cursors[(topic, partition)] = reached.next_offsets.get(topic, 0) if reached else 0
            return
        if fault == "fail":  # what streams/app.py does when a batch raises outside any message
            self.pipeline.forget(self.pipeline.adopted() | {record.partition for record in batch})
            return
        self._store(result)
        if fault == "restart":
            self.pipeline = self.make_pipeline()

    def _heal(self) -> bool:
        """The worker's stall healing: a stream read to its end that was not processed to its
        end (a failed batch at its tail) is read again from the processed position."""
        healed = False
        for (topic, partition), messages in self.streams.items():
            position = self.pipeline.position((topic, partition), self.tables) or 0
            if position < len(messages):
                self.cursors[(topic, partition)], healed = position, True
        return healed

    def _store(self, result: Any) -> None:
        self.tables.store(result)
        # Then the outboxes are sent and emptied, and the emptied states stored (streams/app.py).
        for _, outbox in result.outboxes():
            self.sent += [(kind, body) for kind, body in outbox]
            outbox.clear()
        self.tables.store(result, progress=False)
        self.outcomes.update(result.outcomes)
        self.internal_errors.update(result.internal_errors)
        self.dead_letters += [letter for _, letter in result.dead_letters]

    def _sweeps(self) -> list[Record]:
        return [Record("sweep", p, 0, None, b"") for p in sorted({p for _, p in self.streams})]
