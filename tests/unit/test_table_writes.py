"""Table writes of a mixed batch are filed under each customer's own partition."""

from __future__ import annotations

from types import SimpleNamespace

from faust.streams import current_event

from streams.tables import CurrentEvents as _CurrentEvents


def _event(topic: str, partition: int) -> SimpleNamespace:
    # A real Faust event is weak-referenceable; the tests' stand-in must be too.
    class Event(SimpleNamespace):
        pass

    return Event(message=SimpleNamespace(topic=topic, partition=partition))


def test_a_write_is_filed_under_the_batch_event_of_its_partition() -> None:
    batch = [_event("orders", 0), _event("orders", 3)]
    current = _CurrentEvents(batch, "tierpulse-sweep")
    with current.of(3):
        assert current_event() is batch[1]
    assert current_event() is None


def test_a_partition_beyond_the_batch_gets_a_stand_in_of_that_partition() -> None:
    # A sweep's refresh or an adoption scan writes for a partition the batch has no event of.
    current = _CurrentEvents([_event("orders", 0)], "tierpulse-sweep")
    with current.of(2):
        event = current_event()
        assert event is not None
        assert (event.message.topic, event.message.partition) == ("tierpulse-sweep", 2)
    with current.of(2):
        assert current_event() is event  # one stand-in per partition, kept alive by the batch
