"""Kafka outputs: tier changes, alerts, dead letters, re-keyed input.

Sends go through the Faust app's producer; ``flush`` waits until the broker has
every message of the batch, so the caller can write its state only afterwards
(a crash then re-emits with the same ids instead of losing an output).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol


class SendsToTopic(Protocol):
    """What we need of a Faust topic."""

    def get_topic_name(self) -> str: ...

    async def send(self, *, key: bytes | None, value: bytes, headers: Any = None) -> Awaitable[Any]: ...


class KafkaTopicSink:
    """JSON (or raw) messages to one topic, keyed by customer id."""

    def __init__(self, topic: SendsToTopic) -> None:
        self.topic = topic
        self.name = f"kafka:{topic.get_topic_name()}"
        self._pending: list[tuple[bytes | None, bytes, Mapping[str, bytes] | None]] = []

    async def setup(self) -> None:
        """The broker connection is the app's; nothing to check separately."""

    def add(
        self,
        item: tuple[str | None, Mapping[str, object] | bytes],
        headers: Mapping[str, bytes] | None = None,
    ) -> None:
        key, value = item
        self.add_raw(key.encode("utf-8") if key is not None else None, _encode(value), headers)

    def add_raw(self, key: bytes | None, value: bytes, headers: Mapping[str, bytes] | None) -> None:
        self._pending.append((key, value, headers))

    async def flush(self) -> list[Any]:
        """Send what was added and wait for the broker; return each message's metadata (its
        partition and offset), in the order added."""
        pending, self._pending = self._pending, []
        deliveries = [
            await self.topic.send(key=key, value=value, headers=dict(headers) if headers else None)
            for key, value, headers in pending
        ]
        return list(await asyncio.gather(*deliveries))

    async def close(self) -> None:
        await self.flush()


def _encode(value: Mapping[str, object] | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
