"""One batch of Kafka records in, everything to emit and store out.

Routing only: decode with the core's models, send bad input to the dead-letter
topic, re-key messages whose Kafka key is not their customer id, absorb events
into customer states, evaluate each touched customer once, and on a sweep tick
evaluate the customers whose due instant the watermark has passed. The meaning
of every step lives in ``models``; this module knows no Faust, so it runs the
same under an agent, a replay and a unit test.
"""

from __future__ import annotations

import base64
import logging
from collections import Counter as Tally
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from models.alerts import FiringAlert, firing
from models.codec import StoredStateError, StoredSummary
from models.evaluation import Evaluation, Snapshot, current_snapshot, evaluate
from models.event_time import EARLIEST, EventClock, Window
from models.events import CustomerProfile, Invalid, Topic, decode
from models.policy import Policy
from models.schedule import DueSchedule
from models.state import CustomerState, Outcome, TierStatus
from models.tiering import UNRATED
from streams.positions import InputPositions, PartitionProgress, TopicPartition, Verdict

log = logging.getLogger("tierpulse.pipeline")
ScheduleFactory = Callable[[int, str], DueSchedule]  # (partition, "decisions" or "refreshes")
# Work that can wait is done a bounded amount per batch, so that no batch stalls live events;
# once no input came for IDLE_AFTER_US (wall clock), the app sends sweep ticks to carry it on
# (pending()) and batches may do more. A tick amid live input would compete with its events.
IDLE_AFTER_US = 1_000_000
# Snapshot refreshes (models/schedule.py; a full evaluation each): after a replay or a restart
# nearly every customer is due one.
REFRESHES_PER_BUSY_BATCH = 16
REFRESHES_PER_IDLE_BATCH = 512
# Customers of a newly adopted partition scanned (one stored read each): a worker that takes
# over a large partition scores at once and catches up on the scan batch by batch.
SCANS_PER_BUSY_BATCH = 512
SCANS_PER_IDLE_BATCH = 4096
# A dead letter carries at most this much of the original key and value (base64 adds a third):
# below the producer's 1 MB request limit. The source topic, partition and offset still point
# at the whole message (the idea of Kafka Connect's __connect.errors.* headers).
DEAD_LETTER_BYTES = 256 * 1024
KIND_HEADER = "tierpulse-kind"
ORIGIN_HEADER = "tierpulse-origin"  # topic/partition/offset of the message before re-keying


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka message as the pipeline sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, bytes] = field(default_factory=dict)


class StateTables(Protocol):
    """Read access to the stored state (a Faust table, or a dict in tests)."""

    def customer(self, customer_id: str) -> bytes | None: ...

    def progress(self, partition: int) -> PartitionProgress | None: ...

    def stored_customers(self) -> Iterable[tuple[int, str, bytes]]:
        """Every stored customer of the partitions owned now, as (partition, id, state), read
        lazily: the walk goes on across batches (one pass over the store per rebalance)."""
        ...


@dataclass(frozen=True, slots=True)
class Routing:
    inputs: Mapping[str, Topic]  # topic name -> kind
    rekeyed: str
    sweep: str
    # The partition a re-keyed message lands on (Kafka's default partitioner): its re-keyed
    # stream then has records the batch's high-water marks do not show yet.
    partition_of: Callable[[bytes], int] | None = None


# What a customer counts as in the tier, KPI-band and shadow gauges: (tier, segment, KPI bands,
# shadow tier or None when shadow mode is off).
Counted = tuple[str, str, tuple[int, ...], str | None]


@dataclass
class BatchResult:
    dead_letters: list[tuple[bytes | None, dict[str, object]]] = field(default_factory=list)  # key, body
    rekeyed: list[tuple[bytes, bytes, dict[str, bytes]]] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)  # to write: the latest per customer
    states: dict[str, tuple[int, CustomerState]] = field(
        default_factory=dict
    )  # to store: customer -> (partition, state)
    progress: dict[int, PartitionProgress] = field(default_factory=dict)  # to store, after the states
    rewinds: dict[TopicPartition, int] = field(default_factory=dict)  # input to re-fetch from an offset
    redelivered: Tally[str] = field(default_factory=Tally)  # records processed before, skipped, by topic
    outcomes: Tally[tuple[str, str]] = field(default_factory=Tally)
    internal_errors: Tally[str] = field(default_factory=Tally)  # by stage: "message", "evaluation"
    population_changed: bool = False
    # The adoption scan's customers with firing alerts, beyond ``states`` (customer ->
    # (partition, alerts)), and the partitions it has now scanned whole.
    firing: dict[str, tuple[int, list[FiringAlert]]] = field(default_factory=dict)
    scanned_whole: set[int] = field(default_factory=set)

    def outboxes(self) -> list[tuple[str, list[list[Any]]]]:
        """(customer, outputs) for every stored state with outputs not yet delivered."""
        return [(cid, state.status.outbox) for cid, (_, state) in self.states.items() if state.status.outbox]


@dataclass
class _Held:
    """What the pipeline keeps for one partition it holds, dropped whole when the partition goes
    (a rebalance, a failed batch)."""

    clock: EventClock
    decisions: DueSchedule = field(default_factory=DueSchedule)  # when a tier or alert could change
    refreshes: DueSchedule = field(default_factory=DueSchedule)  # snapshot-only changes, for the sweep
    refreshing: bool = False  # the sweep has refreshes left to do
    # The adoption scan (Pipeline._scan): the customers counted already, by the walk or by an
    # event that came first; None once the walk has covered the partition.
    scanned: set[str] | None = field(default_factory=set)
    population: Tally[Counted] = field(default_factory=Tally)  # customers by what they count as
    # Its stored progress said Redis may lack some of its snapshots (PartitionProgress): they are
    # all written again (streams/app.py, refill_redis), and until then every progress says so too.
    redis_behind: bool = False
    # Decoded states of the customers seen last, as stored (models/state.py): a busy customer is
    # neither read nor decoded again, and keeps its running KPI totals (models/kpi_index.py).
    states: OrderedDict[str, CustomerState] = field(default_factory=OrderedDict)


@dataclass
class _Touched:
    state: CustomerState
    partition: int
    was: Counted | None  # before this batch; None for a new customer


class Pipeline:
    def __init__(
        self,
        policy: Policy,
        window: Window,
        routing: Routing,
        *,
        lateness_us: int,
        max_future_skew_us: int,
        max_event_bytes: int,
        cached_states: int = 0,
        shadow: Policy | None = None,
        schedules: ScheduleFactory | None = None,
    ) -> None:
        """``cached_states``: decoded states kept between batches (the most recent, shared out
        among the partitions held). ``shadow``: a second policy every customer is also scored
        with (shadow mode, models/evaluation.py). ``schedules``: a partition's due schedule
        for decisions or refreshes (bounded ones spill: streams/spill.py); unbounded if None."""
        self.policy, self.window, self.routing = policy, window, routing
        self.shadow = shadow
        self.cached_states = cached_states
        self._schedule = schedules or (lambda partition, which: DueSchedule())
        self.lateness_us, self.max_future_skew_us = lateness_us, max_future_skew_us
        self.max_event_bytes = max_event_bytes
        self._rekeyed_to: set[int] = set()
        self._held: dict[int, _Held] = {}
        # The input streams of a partition, as far as event time goes (models/event_time.py).
        self._streams = (
            *(t for t, kind in routing.inputs.items() if kind is not Topic.CUSTOMERS),
            routing.rekeyed,
        )
        self._positions = InputPositions()
        self._input_at_us: int | None = None  # when a batch last carried input
        # The adoption scan (_scan): one walk over the stored customers of every partition held.
        self._walk: Iterator[tuple[int, str, bytes]] | None = None

    @property
    def population(self) -> dict[int, Tally[Counted]]:
        """Customers by (tier, segment), per partition held (the tier gauge)."""
        return {partition: held.population for partition, held in self._held.items()}

    def redis_behind(self) -> set[int]:
        """The partitions held whose snapshots must all be written to Redis again."""
        return {partition for partition, held in self._held.items() if held.redis_behind}

    def redis_refilled(self, partitions: set[int]) -> None:
        for partition in partitions:
            if partition in self._held:
                self._held[partition].redis_behind = False

    def progress_of(self, partition: int) -> PartitionProgress:
        """What a held partition has reached now, as it is stored."""
        held = self._held[partition]
        clock = held.clock
        return PartitionProgress(
            self._positions.of_partition(partition), dict(clock.frontiers), clock.watermark, held.redis_behind
        )

    def scheduled(self) -> dict[str, int]:
        """Customers in memory per due schedule ("decisions", "refreshes"), over the partitions
        held (bounded by the spill: models/schedule.py)."""
        held = list(self._held.values())
        return {
            "decisions": sum(len(h.decisions) for h in held),
            "refreshes": sum(len(h.refreshes) for h in held),
        }

    def cached(self) -> int:
        """Decoded states kept between batches, over the partitions held."""
        return sum(len(held.states) for held in self._held.values())

    def as_of(self, partition: int) -> int | None:
        """The partition's watermark T (models/event_time.py), the allowed lateness taken off."""
        held = self._held.get(partition)
        return None if held is None else held.clock.watermark

    def position(self, tp: TopicPartition, tables: StateTables) -> int | None:
        """The next offset to process on an input partition, if any was ever processed."""
        if tp[1] in self._held:
            return self._positions.next_offset(tp)
        stored = tables.progress(tp[1])
        return None if stored is None else stored.next_offsets.get(tp[0])

    def idle(self, now_us: int) -> bool:
        return self._input_at_us is None or now_us - self._input_at_us >= IDLE_AFTER_US

    def pending(self, now_us: int) -> list[int]:
        """Partitions with work left for a sweep tick to carry on (a scan or refreshes), while
        idle: input batches carry it on themselves."""
        if not self.idle(now_us):
            return []
        return sorted(p for p, held in self._held.items() if held.scanned is not None or held.refreshing)

    def input_restarted(self, tp: TopicPartition) -> bool:
        """The input partition ends below its stored position: it was recreated, and its next
        record is its first (streams/positions.py). False if that was known already."""
        return self._positions.restart(tp)

    def adopted(self) -> set[int]:
        """The partitions this process holds anything of."""
        return set(self._held)

    def forget(self, partitions: set[int]) -> None:
        """Partitions moved to another worker: drop what this process kept for them."""
        for partition in partitions:
            held = self._held.pop(partition, None)
            if held is not None:
                held.decisions.clear()
                held.refreshes.clear()
        self._positions.forget(partitions)

    def process(
        self,
        records: list[Record],
        tables: StateTables,
        now_us: int,
        offsets: Mapping[TopicPartition, range] | None = None,
    ) -> BatchResult:
        """``offsets``: the offsets Kafka holds (log start to high-water mark) of the input
        streams of the batch's partitions. A stream whose next offset to process lies below the
        end has records left to read and holds the watermark back; one not given counts as read
        to its end."""
        offsets = offsets or {}
        self._rekeyed_to = set()  # the partitions this batch re-keys to
        result = BatchResult()
        touched: dict[str, _Touched] = {}
        sweeps: set[int] = set()
        progressed: set[int] = set()
        clocked: set[int] = set()  # partitions whose watermark moved
        for record in records:
            if record.topic == self.routing.sweep:
                sweeps.add(record.partition)
                continue
            if not self._in_order(record, tables, result, offsets):
                continue
            progressed.add(record.partition)
            try:
                customer_id = self._route(record, tables, now_us, touched, result)
            except StoredStateError:
                raise  # not this message's fault: the worker cannot go on (README, Upgrading)
            except Exception as error:  # one message's bug costs that message, not the batch
                self._quarantine(record, error, result)
                customer_id = None
            moved = self._advance(record.partition, offsets)
            if customer_id is not None:
                # After each event, not once per batch: with hysteresis the tier depends on the
                # path, and the path must not depend on where Kafka cut batches.
                self._evaluate(customer_id, touched[customer_id], result, always_write=True)
            if moved:
                # Whoever fell due (a deadline, a promise, the window's edge) is evaluated now,
                # at this event — not whenever a wall-clock sweep runs.
                clocked.add(record.partition)
                self._evaluate_due("decisions", record.partition, tables, touched, result)
        for partition in sweeps:
            self._adopt(partition, tables, result)
            if self._advance(partition, offsets):  # a stream read to its end holds T no more
                clocked.add(partition)
            self._evaluate_due("decisions", partition, tables, touched, result)
            self._held[partition].refreshing = True
        idle = not progressed and self.idle(now_us)
        self._refresh(tables, touched, result, REFRESHES_PER_IDLE_BATCH if idle else REFRESHES_PER_BUSY_BATCH)
        self._scan(tables, result, SCANS_PER_IDLE_BATCH if idle else SCANS_PER_BUSY_BATCH)
        if progressed:
            self._input_at_us = now_us
        self._keep_decoded(touched, result)
        for partition in progressed | clocked:
            result.progress[partition] = self.progress_of(partition)
        return result

    def _advance(self, partition: int, offsets: Mapping[TopicPartition, range]) -> bool:
        """Move the partition's watermark as far as its streams allow; True if it moved."""
        behind = [self.routing.rekeyed] if partition in self._rekeyed_to else []
        for topic in self._streams:
            held = offsets.get((topic, partition))
            if held is not None and topic not in behind:
                position = self._positions.next_offset((topic, partition))
                if (held.start if position is None else position) < held.stop:
                    behind.append(topic)
        return self._held[partition].clock.advance(behind)

    def _in_order(
        self,
        record: Record,
        tables: StateTables,
        result: BatchResult,
        offsets: Mapping[TopicPartition, range],
    ) -> bool:
        """Whether the record is the next one of its input partition (streams/positions.py);
        records past a skip are left for the re-fetch, and so is the rest of the batch there.
        A partition never processed begins at its log start, when the batch says where that is."""
        self._adopt(record.partition, tables, result)
        tp = (record.topic, record.partition)
        if tp in result.rewinds:
            return False
        held = offsets.get(tp)
        verdict = self._positions.check(tp, record.offset, None if held is None else held.start)
        if verdict is Verdict.REDELIVERED:
            result.redelivered[record.topic] += 1
            return False
        if verdict is Verdict.AHEAD:
            next_offset = self._positions.next_offset(tp)
            result.rewinds[tp] = next_offset if next_offset is not None else held.start if held else 0
            log.warning(
                "input skipped ahead topic=%s partition=%d offset=%d expected=%d: re-fetching",
                record.topic,
                record.partition,
                record.offset,
                result.rewinds[tp],
            )
            return False
        self._positions.advance(tp, record.offset)
        return True

    def _quarantine(self, record: Record, error: Exception, result: BatchResult) -> None:
        """Dead-letter a message whose handling raised. A change it made to its customer's state
        before raising may stay (stored with that customer's next evaluation in the batch): the
        state absorbs nothing twice, so re-sending the dead letter after a fix is safe."""
        kind, origin = self._kind_of(record)
        reason = Invalid(f"internal_error: {type(error).__name__}: {str(error)[:500]}")
        result.internal_errors["message"] += 1
        result.outcomes[(kind.value if kind is not None else record.topic, Outcome.INVALID.value)] += 1
        result.dead_letters.append(_dead_letter(record, origin, reason))
        log.exception(
            "internal error topic=%s partition=%d offset=%d: dead-lettered", origin[0], origin[1], origin[2]
        )

    # ------------------------------------------------------------ routing

    def _route(
        self,
        record: Record,
        tables: StateTables,
        now_us: int,
        touched: dict[str, _Touched],
        result: BatchResult,
    ) -> str | None:
        """Decode and route one record; return the customer whose state it reached, if any."""
        kind, origin = self._kind_of(record)
        if kind is None:
            return None
        if kind is Topic.CUSTOMERS and record.value is None:  # tombstone: back to the default segment
            if not record.key:
                return None
            customer_id = record.key.decode("utf-8", "replace")
            self._load(customer_id, record.partition, tables, touched, result).set_profile(None)
            return customer_id
        parsed = decode(
            kind,
            record.value,
            now_us=now_us,
            max_future_skew_us=self.max_future_skew_us,
            max_bytes=self.max_event_bytes,
        )
        if isinstance(parsed, Invalid):
            result.outcomes[(kind.value, Outcome.INVALID.value)] += 1
            result.dead_letters.append(_dead_letter(record, origin, parsed))
            log.warning(
                "invalid event topic=%s partition=%d offset=%d customer=%s reason=%s",
                origin[0],
                origin[1],
                origin[2],
                parsed.customer_id,
                parsed.reason,
            )
            return None
        if not isinstance(parsed, CustomerProfile):
            # Judged against the stream the event was first written to: a re-keyed event was
            # judged there, and only one that was not late was re-keyed.
            clock, occurred = self._held[record.partition].clock, parsed.occurred_us
            late = record.topic != self.routing.rekeyed and clock.is_late(record.topic, occurred, self.window)
            clock.observe(record.topic, occurred)
            if late:
                result.outcomes[(kind.value, Outcome.LATE.value)] += 1
                return None
        key = parsed.customer_id.encode("utf-8")
        if record.key != key:
            headers = {
                KIND_HEADER: kind.value.encode(),
                ORIGIN_HEADER: f"{origin[0]}/{origin[1]}/{origin[2]}".encode(),
            }
            result.rekeyed.append((key, record.value or b"", headers))
            if self.routing.partition_of is not None:
                self._rekeyed_to.add(self.routing.partition_of(key))
            return None
        state = self._load(parsed.customer_id, record.partition, tables, touched, result)
        if isinstance(parsed, CustomerProfile):
            state.set_profile(parsed)
            result.outcomes[(kind.value, Outcome.ACCEPTED.value)] += 1
            return parsed.customer_id
        outcome = state.absorb(parsed, self.window)
        result.outcomes[(kind.value, outcome.value)] += 1
        return parsed.customer_id

    def _kind_of(self, record: Record) -> tuple[Topic | None, tuple[str, int, int]]:
        origin = (record.topic, record.partition, record.offset)
        if record.topic != self.routing.rekeyed:
            return self.routing.inputs.get(record.topic), origin
        try:
            kind = Topic(record.headers[KIND_HEADER].decode())
            topic, partition, offset = record.headers[ORIGIN_HEADER].decode().rsplit("/", 2)
            return kind, (topic, int(partition), int(offset))
        except (KeyError, ValueError):
            log.error(
                "re-keyed message without its headers topic=%s partition=%d offset=%d",
                record.topic,
                record.partition,
                record.offset,
            )
            return None, origin

    def _load(
        self,
        customer_id: str,
        partition: int,
        tables: StateTables,
        touched: dict[str, _Touched],
        result: BatchResult,
    ) -> CustomerState:
        """The customer's state for this batch: touched already, stored, or new."""
        entry = touched.get(customer_id)
        if entry is not None:
            return entry.state
        self._adopt(partition, tables, result)
        scanned = self._held[partition].scanned
        adopting = scanned is not None and customer_id not in scanned
        state = self._touch(customer_id, partition, tables, touched, new=True)
        assert state is not None
        if adopting and state.status.alerts:  # (told again if its event is evaluated: states win)
            result.firing[customer_id] = (partition, firing(state))
        return state

    def _touch(
        self,
        customer_id: str,
        partition: int,
        tables: StateTables,
        touched: dict[str, _Touched],
        *,
        new: bool,
    ) -> CustomerState | None:
        """Take the customer's state into the batch: decoded already, stored, or (``new``) a new
        one; None if there is none and it may not be new."""
        held = self._held[partition]
        state = held.states.pop(customer_id, None)
        if state is None:
            stored = tables.customer(customer_id)
            if stored is None and not new:
                return None
            state = CustomerState(customer_id) if stored is None else CustomerState.from_bytes(stored)
        scanned = held.scanned
        # Not scanned yet: this touch adopts it — its evaluation counts it (as for a new customer),
        # schedules it and puts its stored outbox in the batch's states; the walk skips it.
        counted = scanned is None or customer_id in scanned
        if scanned is not None:
            scanned.add(customer_id)
        status = state.status
        touched[customer_id] = _Touched(
            state,
            partition,
            self._counted_as(status.as_of, status.tier, status.segment, status.bands, state.shadow)
            if counted
            else None,
        )
        return state

    # ------------------------------------------------------------ evaluating

    def _evaluate(
        self, customer_id: str, entry: _Touched, result: BatchResult, *, always_write: bool
    ) -> None:
        as_of = self.as_of(entry.partition)
        if as_of is None:  # no watermark yet (a stream not read yet holds it): scored at the first
            result.states[customer_id] = (entry.partition, entry.state)
            self._held[entry.partition].decisions.set(customer_id, EARLIEST)
            return
        try:
            evaluation = evaluate(entry.state, self.policy, self.window, as_of, self.shadow)
        except Exception:
            # A bug in the core, not in a message: the state keeps what it absorbed (evaluate is
            # all or nothing) and the next sweep tries again; the batch goes on.
            result.internal_errors["evaluation"] += 1
            log.exception("internal error evaluating partition=%d customer=%s", entry.partition, customer_id)
            result.states[customer_id] = (entry.partition, entry.state)
            self._held[entry.partition].refreshes.set(customer_id, EARLIEST)
            return
        if evaluation.shadow_error:  # the live decision stands; the shadow is tried again next time
            result.internal_errors["shadow"] += 1
            log.error(
                "internal error evaluating the shadow policy partition=%d customer=%s: %s",
                entry.partition,
                customer_id,
                evaluation.shadow_error,
            )
        held = self._held[entry.partition]
        held.decisions.set(customer_id, evaluation.due)
        held.refreshes.set(customer_id, evaluation.refresh)
        result.evaluations.append(evaluation)
        if evaluation.changed or always_write:
            result.snapshots[customer_id] = evaluation.snapshot
        result.states[customer_id] = (entry.partition, entry.state)
        now = (
            evaluation.snapshot.tier,
            evaluation.snapshot.segment,
            tuple(entry.state.status.bands),
            _shadow_tier(entry.state.shadow) if self.shadow else None,
        )
        if now != entry.was:
            tally = held.population
            if entry.was is not None:
                tally[entry.was] -= 1
                if not tally[entry.was]:  # (many keys: tier, segment and KPI bands)
                    del tally[entry.was]
            tally[now] += 1
            entry.was = now
            result.population_changed = True

    def _evaluate_due(
        self,
        which: Literal["decisions", "refreshes"],
        partition: int,
        tables: StateTables,
        touched: dict[str, _Touched],
        result: BatchResult,
        budget: int | None = None,
    ) -> int | None:
        """Evaluate the customers the partition has due (``which`` schedule), at most ``budget``;
        return the budget left (0: perhaps more are due)."""
        held = self._held.get(partition)
        if held is None or held.clock.watermark is None:
            return budget
        schedule = held.decisions if which == "decisions" else held.refreshes
        due = schedule.pop_due(held.clock.watermark, budget)
        for customer_id in due:
            if customer_id not in touched and not self._touch(
                customer_id, partition, tables, touched, new=False
            ):
                continue  # gone since it was scheduled
            self._evaluate(customer_id, touched[customer_id], result, always_write=False)
        return None if budget is None else budget - len(due)

    def _refresh(
        self, tables: StateTables, touched: dict[str, _Touched], result: BatchResult, budget: int
    ) -> None:
        """Go on with the sweeps' snapshot refreshes, ``budget`` at most."""
        for partition, held in sorted(self._held.items()):
            if not held.refreshing:
                continue
            budget = self._evaluate_due("refreshes", partition, tables, touched, result, budget) or 0
            if budget == 0:
                return  # perhaps more are due: the partition goes on refreshing
            held.refreshing = False

    def _adopt(self, partition: int, tables: StateTables, result: BatchResult) -> None:
        """On first contact after an assignment: take the partition's progress; the scan
        (_scan) does the rest, on a new walk that covers this partition too."""
        if partition in self._held:
            return
        reached = tables.progress(partition)
        clock = EventClock(self.lateness_us)
        if reached is not None:
            clock.frontiers, clock.watermark = dict(reached.frontiers), reached.watermark
            self._positions.adopt(partition, reached.next_offsets)
        self._held[partition] = _Held(
            clock,
            decisions=self._schedule(partition, "decisions"),
            refreshes=self._schedule(partition, "refreshes"),
            redis_behind=reached is not None and reached.redis_behind,
        )
        self._walk = None

    def _scan(self, tables: StateTables, result: BatchResult, budget: int) -> None:
        """Go on adopting, ``budget`` customers at most. Each is counted for the tier gauge and
        scheduled as its last evaluation left it, from its stored summary alone; one evaluated
        under another policy version, or never, is due now. Stored outboxes (a crashed worker's
        outputs, perhaps undelivered) are picked up. A customer an event reaches first is
        adopted by that event (_touch)."""
        if all(held.scanned is None for held in self._held.values()):
            return
        if self._walk is None:
            self._walk = iter(tables.stored_customers())
        for partition, customer_id, stored in self._walk:
            held = self._held.get(partition)
            if held is None or held.scanned is None or customer_id in held.scanned:
                continue  # not adopted here, or adopted by an event
            held.scanned.add(customer_id)
            summary = StoredSummary.of(stored)
            key = _counted_as(summary.as_of, summary.tier, summary.segment, summary.bands)
            if key is not None:
                if self.shadow is not None and summary.shadow_version is not None:
                    key = (*key[:3], summary.shadow_tier or UNRATED)
                held.population[key] += 1
                result.population_changed = True
            if summary.as_of is not None and self._versions_are_current(summary):
                held.decisions.set(customer_id, summary.due)
                held.refreshes.set(customer_id, summary.refresh)
            else:
                held.decisions.set(customer_id, EARLIEST)
            if summary.has_outbox:  # Redis may not have these outputs' snapshot either
                state = CustomerState.from_bytes(stored)
                result.states.setdefault(customer_id, (partition, state))
                snapshot = current_snapshot(state, self.policy, self.window)
                if snapshot is not None:
                    result.snapshots.setdefault(customer_id, snapshot)
            elif summary.has_alerts:
                result.firing[customer_id] = (partition, firing(CustomerState.from_bytes(stored)))
            budget -= 1
            if budget == 0:
                return
        self._walk = None
        for partition, held in self._held.items():
            if held.scanned is not None:
                result.scanned_whole.add(partition)
                held.scanned = None

    def _counted_as(
        self,
        as_of: int | None,
        tier: str | None,
        segment: str | None,
        bands: Iterable[int],
        shadow: TierStatus | None,
    ) -> Counted | None:
        key = _counted_as(as_of, tier, segment, bands)
        if key is None or self.shadow is None:
            return key
        return (*key[:3], _shadow_tier(shadow))

    def _versions_are_current(self, summary: StoredSummary) -> bool:
        """Whether the stored evaluation was under the policies scored with now: otherwise the
        customer is due at once (a new live version, a shadow policy turned on, changed or off:
        off, its evaluation drops the shadow status)."""
        if summary.policy_version != self.policy.version:
            return False
        return summary.shadow_version == (None if self.shadow is None else self.shadow.version)

    def _keep_decoded(self, touched: dict[str, _Touched], result: BatchResult) -> None:
        """Keep the batch's states decoded for the next batches: those stored, which are as the
        table will hold them; a touched state not stored (a message that failed half way) is
        read from the table again."""
        if self.cached_states <= 0 or not self._held:
            return
        limit = max(1, self.cached_states // len(self._held))
        for customer_id, (partition, state) in result.states.items():
            held = self._held.get(partition)
            if held is not None:
                held.states[customer_id] = state  # (taken out by _touch: now the most recent)
                while len(held.states) > limit:
                    held.states.popitem(last=False)


def _counted_as(
    as_of: int | None, tier: str | None, segment: str | None, bands: Iterable[int]
) -> Counted | None:
    """What a customer counts as in the tier and KPI-band gauges: its last evaluation's (no
    shadow tier: see Pipeline._counted_as)."""
    return None if as_of is None or segment is None else (tier or UNRATED, segment, tuple(bands), None)


def _shadow_tier(shadow: TierStatus | None) -> str | None:
    return None if shadow is None or shadow.policy_version is None else shadow.tier or UNRATED


def _dead_letter(
    record: Record, origin: tuple[str, int, int], invalid: Invalid
) -> tuple[bytes | None, dict[str, object]]:
    """The dead letter's Kafka key (the original's, cut at 1 KB) and its body."""
    key, value = _bounded(record.key, DEAD_LETTER_BYTES), _bounded(record.value, DEAD_LETTER_BYTES)
    return _bounded(record.key, 1024), {
        "topic": origin[0],
        "partition": origin[1],
        "offset": origin[2],
        "key_base64": None if key is None else base64.b64encode(key).decode("ascii"),
        "value_base64": None if value is None else base64.b64encode(value).decode("ascii"),
        # Only the first DEAD_LETTER_BYTES are here: fetch the rest at topic/partition/offset.
        "truncated": key is not record.key or value is not record.value,
        "reason": invalid.reason,
        "customer_id": invalid.customer_id,
    }


def _bounded(data: bytes | None, limit: int) -> bytes | None:
    return data if data is None or len(data) <= limit else data[:limit]
