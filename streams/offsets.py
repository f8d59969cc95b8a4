"""How far each input stream reaches in Kafka: what the watermark needs to know (contract v2 §3).

A stream holds the watermark back while it has records left to read
(models/event_time.py); the pipeline compares its own position with the offsets
given here. The end is the high-water mark of the consumer's last fetch (no
request of its own), asked of the broker only while the consumer has none yet;
the start — used only for a stream never read, whose first record may lie past
offset 0 after retention — is asked once per assignment.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from faust.exceptions import ConsumerNotStarted
from faust.types import TP

from streams.positions import TopicPartition

log = logging.getLogger("tierpulse.offsets")
BROKER_WAIT_SECONDS = 10.0
UNKNOWN_END = 2**63 - 1


class InputOffsets:
    def __init__(self, consumer: Callable[[], Any], topics: Iterable[str]) -> None:
        """``consumer``: gives Faust's consumer (made by the app when it starts, not before)."""
        self._consumer, self.topics = consumer, tuple(topics)
        self._starts: dict[TP, int] = {}
        self._produced: dict[TP, int] = {}  # ends this worker wrote (re-keyed input) past a fetch

    async def held(self, partitions: Iterable[int]) -> dict[TopicPartition, range]:
        """The offsets Kafka holds of every input stream of these partitions, [start, end). A
        stream whose end is not known (the broker did not answer) counts as unread to the end:
        a watermark that waits is visible, one that ran ahead would be silently wrong."""
        wanted = [TP(topic, partition) for partition in partitions for topic in self.topics]
        ends: dict[TP, int] = {}
        for tp in wanted:
            try:
                end = self._consumer().highwater(tp)
            except (AssertionError, ConsumerNotStarted):  # not assigned (yet): ask the broker
                end = None
            if end is not None:
                ends[tp] = end
        unknown = [tp for tp in wanted if tp not in ends]
        if unknown:
            ends.update(await self._ask("highwaters", unknown))
        unread = [tp for tp in wanted if tp not in self._starts]
        if unread:
            self._starts.update(await self._ask("earliest_offsets", unread))
        return {
            (tp.topic, tp.partition): range(
                self._starts.get(tp, 0), max(ends.get(tp, UNKNOWN_END), self._produced.get(tp, 0))
            )
            for tp in wanted
        }

    def produced(self, topic: str, partition: int, offset: int) -> None:
        """This worker wrote a record at ``offset``: the partition ends past it, whatever the
        consumer's last fetch says (its records must hold the watermark until read)."""
        tp = TP(topic, partition)
        self._produced[tp] = max(self._produced.get(tp, 0), offset + 1)

    def forget(self, partitions: set[int]) -> None:
        for known in (self._starts, self._produced):
            for tp in [tp for tp in known if tp.partition in partitions]:
                del known[tp]

    async def _ask(self, what: str, tps: list[TP]) -> dict[TP, int]:
        try:
            answer = await asyncio.wait_for(getattr(self._consumer(), what)(*tps), BROKER_WAIT_SECONDS)
        except Exception as error:  # the next batch asks again; meanwhile the stream holds T (start 0)
            log.warning("could not read %s of %d input partitions: %r", what, len(tps), error)
            return {}
        return {
            TP(tp.topic, tp.partition): int(offset) for tp, offset in answer.items() if offset is not None
        }
