"""Create the topics the scorer reads and writes, or check the ones that exist.

All input and internal topics must have the same partition count: a customer's
orders, tickets, complaints, invoices, profile, re-keyed events and state then live
in the same partition number, owned by one worker.

The tables' changelog topics are created here too, before Faust starts: Faust
would create them itself, but a worker whose first table write comes while its
consumer's metadata still shows a just-created changelog with 0 partitions
crashes its agent (PartitionsMismatch).
"""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from streams.security import aiokafka_options, security_protocol
from streams.settings import Settings

TABLES = ("customer-state", "partition-progress")


class TopicLayoutError(Exception):
    """Existing topics do not fit; the message says which and what to do."""


def bootstrap_servers(settings: Settings) -> str:
    return ",".join(url.split("://", 1)[-1] for url in settings.broker.split(";"))


async def ensure_topics(settings: Settings) -> list[str]:
    """Create what is missing; return the names created. Raises TopicLayoutError on a mismatch."""
    names = settings.topics
    copartitioned = [*names.input_kinds(), names.rekeyed, names.sweep]
    outputs = [names.tier_changes, names.tier_changes_shadow, names.alerts, names.dead_letters]
    changelogs = [f"{settings.app_id}-{table}-changelog" for table in TABLES]
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers(settings), request_timeout_ms=10_000, **aiokafka_options(settings)
    )
    try:
        await admin.start()
    except KafkaError as error:
        raise TopicLayoutError(
            f"Kafka at {settings.broker} does not answer, or refuses this client "
            f"({type(error).__name__}, security {security_protocol(settings)}): start it with "
            "'deploy/dev run', or check TIERPULSE_BROKER and the TIERPULSE_BROKER_* security settings"
        ) from None
    try:
        existing = {t: len(parts) for t, parts in (await _describe(admin)).items()}
        wrong = [
            f"{t} has {existing[t]}"
            for t in copartitioned + changelogs
            if t in existing and existing[t] != settings.partitions
        ]
        if wrong:
            raise TopicLayoutError(
                f"input topics must all have TIERPULSE_PARTITIONS={settings.partitions} partitions, but "
                + ", ".join(wrong)
                + "; set TIERPULSE_PARTITIONS to match or recreate them"
            )
        missing = [t for t in copartitioned + changelogs + outputs if t not in existing]
        compacted = {"cleanup.policy": "compact"}
        if missing:
            await admin.create_topics(
                [
                    NewTopic(
                        t,
                        settings.partitions,
                        1,
                        topic_configs=compacted if t in (names.customers, *changelogs) else {},
                    )
                    for t in missing
                ]
            )
            await _until_described(admin, missing, settings.partitions)
        return missing
    finally:
        await admin.close()


async def _until_described(admin: AIOKafkaAdminClient, topics: list[str], partitions: int) -> None:
    """Wait (up to 10 s) until the broker's metadata shows every new topic with all its partitions."""
    for _ in range(50):
        described = await _describe(admin)
        if all(len(described.get(t, [])) == partitions for t in topics):
            return
        await asyncio.sleep(0.2)


async def partitions_of(settings: Settings, topic: str) -> list[int]:
    """The partitions of one topic (none if it does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(settings), **aiokafka_options(settings))
    await admin.start()
    try:
        return sorted((await _describe(admin)).get(topic, []))
    finally:
        await admin.close()


async def _describe(admin: AIOKafkaAdminClient) -> dict[str, list[int]]:
    metadata = await admin.describe_topics()
    return {
        t["topic"]: [p["partition"] for p in t["partitions"]] for t in metadata if not t.get("error_code")
    }
