"""When a stalled input partition is re-fetched (streams/fetching.py): not while records fetched
for it wait their turn — a re-fetch then drops them and sends the partition to the back of the
fetcher's queue, which starved a partition under a 400k-message backlog."""

from __future__ import annotations

from streams.fetching import StallWatch


def test_a_partition_making_progress_or_read_to_its_end_is_never_re_fetched() -> None:
    watch = StallWatch(stall_seconds=20)
    for second in range(0, 200, 10):
        assert not watch.stalled("orders-0", processed=second, highwater=10_000, now=second, fetched=False)
        assert not watch.stalled("orders-1", processed=500, highwater=500, now=second, fetched=False)


def test_a_stuck_partition_is_re_fetched_after_the_stall_time_and_then_watched_anew() -> None:
    watch = StallWatch(stall_seconds=20)
    stuck = [t for t in range(0, 70, 5) if watch.stalled("orders-0", 8502, 49_871, t, fetched=False)]
    assert stuck == [25, 50]


def test_a_stuck_partition_with_records_fetched_waits_its_turn() -> None:
    watch = StallWatch(stall_seconds=20)
    assert not any(watch.stalled("orders-0", 8502, 49_871, t, fetched=True) for t in range(0, 300, 5))
    # Its turn came and went without progress: re-fetched within one stall time.
    first = next(t for t in range(300, 400, 5) if watch.stalled("orders-0", 8502, 49_871, t, fetched=False))
    assert first <= 300 + 20


def test_the_private_attributes_read_are_there_in_the_installed_faust_and_aiokafka() -> None:
    """streams/fetching.py reads Faust's and aiokafka's fetch state (no public API has it) and
    falls back to healing as before when it is missing: an upgrade must not silently lose it."""
    import inspect

    from aiokafka.consumer.consumer import AIOKafkaConsumer
    from aiokafka.consumer.fetcher import Fetcher
    from faust.transport.consumer import Consumer, ThreadDelegateConsumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    assert "self._thread" in inspect.getsource(ThreadDelegateConsumer.__init__)
    assert "self._consumer" in inspect.getsource(AIOKafkaConsumerThread)
    assert "self._fetcher" in inspect.getsource(AIOKafkaConsumer)
    assert "self._records" in inspect.getsource(Fetcher.__init__)
    for name in ("_get_active_partitions", "seek_wait", "on_buffer_full"):
        assert hasattr(Consumer, name), name
    assert "self._buffered_partitions" in inspect.getsource(Consumer)
    assert "self._paused_partitions" in inspect.getsource(Consumer)
