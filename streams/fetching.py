"""Moving and inspecting Faust's fetch position of an input partition, safely.

Faust runs its aiokafka consumer in a thread of its own. ``app.consumer.seek`` calls aiokafka's
``seek`` from the worker's thread while the consumer thread may be in the middle of
``fetched_records``: the two then mutate the fetcher's record map at once (seen as a
``KeyError`` in ``fetched_records`` that crashed a worker under a large backlog). ``seek_wait``
runs the seek on the consumer's own thread, so every seek here goes through it.

aiokafka hands out what it fetched one fetch result at a time, in the order the results came,
and fetches again for a partition only once its result is used up. Under a backlog a partition
therefore waits its turn behind the others' results (a fetch is at least one producer batch,
e.g. 4,000 records of a bulk load): it looks stalled, but a seek would only drop its result and
send it to the back of the queue — the stall healer repeating that every 20 s starved a
partition for good. So a partition with fetched records waiting, and in the set Faust takes
records of, is left alone (``waits_its_turn``).

A partition can also drop out of the set Faust fetches (``on_buffer_full`` takes it out while
the agent's buffer is under pressure, and only a pressure-drop callback puts it back). A seek
does not put it back, so a stalled partition is resumed as well as re-fetched.
"""

from __future__ import annotations

from typing import Any


class StallWatch:
    """Which input partitions to re-fetch: input waiting, no progress for ``stall_seconds``, and
    nothing fetched waiting for its turn. A partition re-fetched is watched anew."""

    def __init__(self, stall_seconds: float) -> None:
        self.stall_seconds = stall_seconds
        self._moved: dict[Any, tuple[int, float]] = {}  # partition -> (processed, when it moved)

    def stalled(self, tp: Any, processed: int, highwater: int, now: float, fetched: bool) -> bool:
        last = self._moved.get(tp)
        if last is None or last[0] != processed or highwater <= processed:
            self._moved[tp] = (processed, now)
            return False
        if now - last[1] <= self.stall_seconds:
            return False
        self._moved[tp] = (processed, now)
        return not fetched  # (with records fetched it waits its turn: a seek would lose it)


async def seek(consumer: Any, tp: Any, offset: int) -> None:
    """Set the next offset Faust fetches and delivers for ``tp``, on the consumer's thread."""
    await consumer.seek_wait({tp: offset})


def waits_its_turn(consumer: Any, tp: Any) -> bool:
    """Whether aiokafka holds fetched records of ``tp`` that Faust will take in turn: fetched,
    and in the set Faust asks for (out of it, they would wait for ever). False if unknown."""
    try:
        fetched = tp in consumer._thread._consumer._fetcher._records
        return fetched and tp in consumer._get_active_partitions()
    except AttributeError:  # another Faust or aiokafka version: heal as before
        return False


def fetch_state(consumer: Any, tp: Any) -> dict[str, Any]:
    """What Faust and aiokafka hold about ``tp``, for the log line of a stalled partition.
    Private attributes, read only and each guarded: a different version shows ``None``."""

    def read(get: Any) -> Any:
        try:
            return get()
        except Exception:  # a diagnostic must never raise
            return None

    inner = read(lambda: consumer._thread._consumer)
    return {
        "active": read(lambda: tp in consumer._get_active_partitions()),
        "buffered": read(lambda: tp in consumer._buffered_partitions),
        "paused": read(lambda: tp in consumer._paused_partitions),
        "read_offset": read(lambda: consumer._read_offset.get(tp)),
        "kafka_paused": read(lambda: inner._subscription.subscription.assignment.state_value(tp).paused),
        "kafka_position": read(lambda: inner._subscription.subscription.assignment.state_value(tp).position),
    }


def resume(consumer: Any, tp: Any) -> bool:
    """Put ``tp`` back in the set Faust fetches unless somebody paused it on purpose; whether
    it was missing."""
    if tp in consumer._paused_partitions:
        return False
    active = consumer._get_active_partitions()
    missing = tp not in active
    consumer._buffered_partitions.discard(tp)
    active.add(tp)
    return missing
