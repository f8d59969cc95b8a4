"""Reading the dead-letter topic, and sending fixed dead letters back to where they came from.

A dead letter (contract §2) carries the original bytes and their coordinates. Once the cause is
fixed — a producer's format, a bug of ours (``internal_error: …``) — the originals can go back
to their input topics: the scorer takes them as any event, and a re-sent event it already has
changes nothing (duplicates are recognised by ``event_id``), so re-sending is at-least-once and
safe to repeat. A letter whose bytes were cut (``truncated``) is re-sent from its source topic
at its partition and offset, as long as that is still retained.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.security import aiokafka_options
from streams.settings import Settings
from streams.topics import bootstrap_servers, partitions_of


@dataclass(frozen=True)
class Filter:
    topic: str | None = None  # the original's topic
    reason: str | None = None  # a part of the reason, e.g. "internal_error" or "field 'amount'"
    since: str | None = None  # dead-lettered at or after this RFC 3339 instant
    customer: str | None = None

    def __call__(self, letter: dict[str, Any]) -> bool:
        return (
            (self.topic is None or letter.get("topic") == self.topic)
            and (self.reason is None or self.reason in str(letter.get("reason", "")))
            and (self.since is None or _instant(letter.get("dead_lettered_at")) >= _instant(self.since))
            and (self.customer is None or letter.get("customer_id") == self.customer)
        )


async def read(settings: Settings, wanted: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Every dead letter on the topic now that ``wanted`` accepts, oldest first per partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(settings), enable_auto_commit=False, **aiokafka_options(settings)
    )
    topic = settings.topics.dead_letters
    partitions = [TopicPartition(topic, p) for p in await partitions_of(settings, topic)]
    await consumer.start()
    try:
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[dict[str, Any]] = []
        while await _behind(consumer, ends):
            batch = await consumer.getmany(timeout_ms=1000)
            for messages in batch.values():
                for message in messages:
                    try:
                        letter = json.loads(message.value or b"")
                    except ValueError:
                        continue  # not a dead letter of ours
                    if isinstance(letter, dict) and "topic" in letter and wanted(letter):
                        found.append(letter)
        return found
    finally:
        await consumer.stop()


async def resend(settings: Settings, letters: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """Send each letter's original back to its topic, keyed as it was; return how many went and
    why the others could not (a truncated original no longer retained)."""
    options = aiokafka_options(settings)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(settings), acks="all", **options)
    await producer.start()
    sent, refused = 0, []
    try:
        for letter in letters:
            original = await _original(settings, letter) if letter.get("truncated") else _decoded(letter)
            if original is None:
                where = f"{letter['topic']}/{letter['partition']}/{letter['offset']}"
                refused.append(f"{where}: truncated, and no longer on its source topic")
                continue
            key, value = original
            await producer.send_and_wait(str(letter["topic"]), value, key=key)
            sent += 1
    finally:
        await producer.stop()
    return sent, refused


async def _behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False


def _instant(text: object) -> datetime:
    """An RFC 3339 instant; one without an offset is UTC; unreadable: the earliest."""
    try:
        parsed = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def describe(letter: dict[str, Any]) -> str:
    return (
        f"{letter.get('dead_lettered_at', '?')}  {letter['topic']}/{letter['partition']}/{letter['offset']}"
        f"  customer={letter.get('customer_id') or '-'}  {str(letter.get('reason', ''))[:160]}"
    )


def _decoded(letter: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    key, value = letter.get("key_base64"), letter.get("value_base64")
    return (
        None if key is None else base64.b64decode(key),
        None if value is None else base64.b64decode(value),
    )


async def _original(settings: Settings, letter: dict[str, Any]) -> tuple[bytes | None, bytes | None] | None:
    """The whole original from its source topic, if still there."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(settings), enable_auto_commit=False, **aiokafka_options(settings)
    )
    await consumer.start()
    try:
        tp = TopicPartition(str(letter["topic"]), int(letter["partition"]))
        consumer.assign([tp])
        consumer.seek(tp, int(letter["offset"]))
        batch = await consumer.getmany(tp, timeout_ms=5000, max_records=1)
        messages = batch.get(tp, [])
        if messages and messages[0].offset == int(letter["offset"]):
            return messages[0].key, messages[0].value
        return None
    finally:
        await consumer.stop()
