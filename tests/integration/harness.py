"""Drive real scorer workers against the real broker and Redis.

Each ``ScorerRun`` has its own app id, topics, Redis key prefix and web port, so
tests never see each other's data. Workers are real subprocesses
(``python -m streams.cli worker``) that tests may SIGKILL and restart.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from streams.settings import TopicNames

REPO = Path(__file__).resolve().parents[2]
# Each topic by its settings field (TIERPULSE_TOPICS__<FIELD>); the input kinds by their field.
TOPIC_KINDS = tuple(TopicNames.model_fields)
INPUT_FIELDS = {
    kind: field
    for field in TOPIC_KINDS
    for name, kind in TopicNames().input_kinds().items()
    if getattr(TopicNames(), field) == name
}
INPUTS = (*INPUT_FIELDS.values(), "rekeyed")


Produced = tuple[str, int, int, bytes | None, bytes | None]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ScorerRun:
    name: str
    bootstrap: str
    redis_url: str
    workdir: Path
    partitions: int = 2
    store: str = "memory://"
    policy: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    behind: dict[str, float | None] = field(default_factory=dict)
    # Every message produced, where it landed: (kind, partition, offset, key, value).
    produced: list[Produced] = field(default_factory=list)
    # The name of another run whose input topics this one reads, from the start, under its own app
    # id (internal and output topics stay its own): two scorers measured on one preload.
    inputs_of: str | None = None

    def topic(self, kind: str) -> str:
        owner = self.inputs_of if self.inputs_of and kind in INPUT_FIELDS.values() else self.name
        return f"{owner}-{kind}"

    def env(self, web_port: int, index: int) -> dict[str, str]:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "TIERPULSE_APP_ID": self.name,
            "TIERPULSE_BROKER": f"kafka://{self.bootstrap}",
            "TIERPULSE_REDIS_URL": self.redis_url,
            "TIERPULSE_REDIS_PREFIX": f"{self.name}:",
            "TIERPULSE_STORE": self.store,
            "TIERPULSE_DATA_DIR": str(self.workdir / f"data-{index}"),
            "TIERPULSE_PARTITIONS": str(self.partitions),
            "TIERPULSE_WEB_PORT": str(web_port),
            "TIERPULSE_SWEEP_INTERVAL_SECONDS": "2",
            "TIERPULSE_SESSION_TIMEOUT_SECONDS": "6",
            "TIERPULSE_STALL_SECONDS": "8",
            "TIERPULSE_LOG_LEVEL": "info",
            "TIERPULSE_DEBUG_PAGES": "true",  # settled() reads Faust's /router/ page
            **{f"TIERPULSE_TOPICS__{t.upper()}": self.topic(t) for t in TOPIC_KINDS},
            **self.extra_env,
        }
        if self.policy is not None:
            env["TIERPULSE_POLICY_PATH"] = str(self.policy)
        return env

    def settings(self) -> Any:
        """The scorer's Settings for this run (e.g. to create its topics up front)."""
        from streams.settings import Settings

        return Settings(
            app_id=self.name,
            broker=f"kafka://{self.bootstrap}",
            partitions=self.partitions,
            topics={kind: self.topic(kind) for kind in TOPIC_KINDS},
        )

    def start_worker(self, index: int = 0) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        log = (self.workdir / f"worker-{index}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=self.env(port, index),
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(process)
        self.ports.append(port)
        wait_for(
            lambda: _http_ok(f"http://127.0.0.1:{port}/healthz") or process.poll() is not None,
            60,
            f"worker {index} to answer /healthz",
            self.logs,
        )
        assert process.poll() is None, self.logs()
        return process, port

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.kill()
                process.wait()

    async def delete_topics(self) -> None:
        """Delete every topic of this run (its inputs, outputs and the tables' changelogs) and its
        Redis keys: a benchmark's millions of records should not stay on the broker, nor its
        million keys in Redis (they slowed every later SCAN there)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            ours = [t for t in await admin.list_topics() if t.startswith(f"{self.name}-")]
            if ours:
                await admin.delete_topics(ours)
        finally:
            await admin.close()
        client = redis.Redis.from_url(self.redis_url)
        batch = []
        for key in client.scan_iter(f"{self.name}:*", count=5000):
            batch.append(key)
            if len(batch) == 5000:
                client.delete(*batch)
                batch = []
        if batch:
            client.delete(*batch)

    def logs(self) -> str:
        text = "\n".join(
            p.read_text(errors="replace")[-4000:] for p in sorted(self.workdir.glob("worker-*.log"))
        )
        return text[-8000:]

    # ------------------------------------------------------------ Kafka and Redis

    async def produce(self, messages: Iterable[tuple[str, bytes | None, bytes | None]]) -> None:
        """Send in order; each message's partition and offset are kept in ``produced`` (an
        unkeyed one lands on any partition), for the reference's input streams."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        await producer.start()
        try:
            sent = [
                (kind, key, value, await producer.send(self.topic(kind), value, key=key))
                for kind, key, value in messages
            ]
            await producer.flush()
            for kind, key, value, delivery in sent:
                landed = await delivery
                self.produced.append((kind, landed.partition, landed.offset, key, value))
        finally:
            await producer.stop()

    async def read(
        self,
        kind: str,
        settle: float = 3.0,
        timeout: float = 90,
        until: Callable[[list[dict[str, Any]]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Every JSON message of an output topic, once ``until`` holds (or nothing new for ``settle`` s)."""
        consumer = AIOKafkaConsumer(
            self.topic(kind),
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        found: list[dict[str, Any]] = []
        deadline, quiet_since = time.monotonic() + timeout, time.monotonic()
        try:
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=300)
                new = [json.loads(m.value) for ms in batch.values() for m in ms]
                found += new
                quiet_since = time.monotonic() if new else quiet_since
                done = until(found) if until else False
                if done or (until is None and time.monotonic() - quiet_since > settle):
                    break
        finally:
            await consumer.stop()
        return found

    async def headers(self, kind: str) -> list[dict[str, bytes]]:
        """The headers of every message on an output topic so far."""
        consumer = AIOKafkaConsumer(
            self.topic(kind), bootstrap_servers=self.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        found: list[dict[str, bytes]] = []
        try:
            while batch := await consumer.getmany(timeout_ms=2000):
                found += [dict(m.headers) for ms in batch.values() for m in ms]
        finally:
            await consumer.stop()
        return found

    async def caught_up(self) -> bool:
        """True once the scorer's group has committed the end offset of every input partition."""
        from aiokafka import TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient

        inputs = [self.topic(k) for k in INPUTS]
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
        await admin.start()
        await consumer.start()
        try:
            try:
                committed = await admin.list_consumer_group_offsets(self.name)
            except KafkaError:  # e.g. the coordinator of a new group is not elected yet
                return False
            partitions = [TopicPartition(t, p) for t in inputs for p in range(self.partitions)]
            ends = await consumer.end_offsets(partitions)
            return all(
                end == 0 or (tp in committed and committed[tp].offset >= end) for tp, end in ends.items()
            )
        finally:
            await consumer.stop()
            await admin.close()

    def metrics_texts(self) -> list[str]:
        """The /metrics page of each live worker (a killed one has none)."""
        texts = []
        for port in self.ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as response:
                    texts.append(response.read().decode())
            except OSError:
                continue
        return texts

    def processed_lags(self) -> list[dict[str, float]]:
        """Per live worker: 'topic/partition' -> tierpulse_processed_lag_messages (the partitions it owns)."""
        lags = []
        for text in self.metrics_texts():
            pattern = r'tierpulse_processed_lag_messages\{partition="(\d+)",topic="([^"]+)"\} (\S+)'
            lags.append(
                {f"{topic}/{partition}": float(v) for partition, topic, v in re.findall(pattern, text)}
            )
        return lags

    def input_partitions(self) -> set[tuple[str, int]]:
        return {(self.topic(k), p) for k in INPUTS for p in range(self.partitions)}

    async def processed_everything(self) -> bool:
        """True once the live workers report nothing left to process on any input partition
        that holds anything."""
        from aiokafka import TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
        await consumer.start()
        try:
            ends = await consumer.end_offsets([TopicPartition(t, p) for t, p in self.input_partitions()])
        finally:
            await consumer.stop()
        reported = {name: lag for worker in self.processed_lags() for name, lag in worker.items()}
        needed = [f"{tp.topic}/{tp.partition}" for tp, end in ends.items() if end > 0]
        self.behind = {name: reported.get(name) for name in needed if reported.get(name) != 0}
        return not self.behind

    def settled(self, workers: int) -> bool:
        """True when ``workers`` workers own disjoint shares of every state partition (Faust's
        /router/ view: each worker's URL and the table partitions it holds)."""
        for port in self.ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/router/", timeout=3) as response:
                    routes = json.load(response)
            except OSError:
                continue
            shares = [
                set(tables.get(f"{self.name}-customer-state-changelog", [])) for tables in routes.values()
            ]
            return (
                len(shares) == workers
                and all(shares)
                and sum(map(len, shares)) == self.partitions
                and set().union(*shares) == set(range(self.partitions))
            )
        return False

    async def finished(self, timeout: float = 180) -> dict[str, dict[str, str]]:
        """Wait until the workers processed every input and Redis is quiet; return the snapshots.

        (Completion is judged on processing, not on committed offsets: faust-streaming can leave a
        partition's commit behind while processing goes on — see tierpulse_consumer_lag_messages.)"""
        deadline = time.monotonic() + timeout
        last, quiet_since = None, time.monotonic()
        while time.monotonic() < deadline:
            now = self.snapshots()
            if now != last:
                last, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since > 3 and await self.processed_everything():
                return now
            await asyncio.sleep(1)
        raise AssertionError(
            f"the scorer did not finish within {timeout:.0f}s; behind (None: no worker reports it): "
            f"{self.behind}\n{self.logs()}"
        )

    def snapshot(self, customer_id: str) -> dict[str, str]:
        client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        return dict(client.hgetall(f"{self.name}:customer:{customer_id}"))

    def history(self, customer_id: str) -> list[dict[str, Any]]:
        client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        return [json.loads(entry) for entry in client.lrange(f"{self.name}:history:{customer_id}", 0, -1)]

    def snapshots(self) -> dict[str, dict[str, str]]:
        client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        prefix = f"{self.name}:customer:"
        return {
            key[len(prefix) :]: dict(client.hgetall(key))
            for key in client.scan_iter(f"{prefix}*", count=1000)
        }


def wait_for(condition: Callable[[], bool], timeout: float, what: str, logs: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs()}")


async def wait_for_async(
    condition: Callable[[], bool], timeout: float, what: str, logs: Callable[[], str] = str
) -> None:
    await asyncio.to_thread(wait_for, condition, timeout, what, logs)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def http_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def chain_problems(changes: list[dict[str, Any]], start: dict[str, str] | None = None) -> list[str]:
    """Contract §5: per customer, each change's previous_tier is the last change's new_tier (at
    first, the customer's ``start``, or unrated); a change sent twice carries the same event_id
    and the same content."""
    problems, last, by_id = [], dict(start or {}), {}
    for change in changes:
        body = {k: v for k, v in change.items() if k != "emitted_at"}
        if change["event_id"] in by_id:
            if by_id[change["event_id"]] != body:
                problems.append(f"event_id {change['event_id']} sent twice with different content")
            continue
        by_id[change["event_id"]] = body
        expected = last.get(change["customer_id"], "unrated")
        if change["previous_tier"] != expected:
            problems.append(
                f"{change['customer_id']}: {change['previous_tier']}->{change['new_tier']} after {expected}"
            )
        last[change["customer_id"]] = change["new_tier"]
    return problems


def reference_problems(
    produced: list[Produced],
    snapshots: dict[str, dict[str, str]],
    policy: Any,
    window_buckets: int = 30,
) -> list[str]:
    """Recompute every customer's KPIs from the produced messages with tests/reference.py (the
    brute force: lateness judged on each input stream, a topic's partition, in its own order) at
    the snapshot's own as_of, and list every difference from the Redis snapshot."""
    from decimal import Decimal

    from models.event_time import MICROS_PER_DAY, MICROS_PER_MINUTE, to_micros
    from models.events import CustomerProfile, Invalid, decode, parse_instant
    from tests.reference import ReferenceLog

    kinds = {field: kind for kind, field in INPUT_FIELDS.items()}
    reference = ReferenceLog(MICROS_PER_DAY, window_buckets)
    profiles: dict[str, dict[str, str]] = {}
    now = to_micros(datetime_now())
    for kind, partition, _, _, value in produced:  # in the order produced: each stream's own order
        parsed = decode(kinds[kind], value, now_us=now, max_future_skew_us=3600 * 10**6)
        if isinstance(parsed, Invalid):
            continue
        if isinstance(parsed, CustomerProfile):
            profiles[parsed.customer_id] = parsed.model_dump(exclude_none=True, exclude={"customer_id"})
            continue
        reference.offer(parsed, (kind, partition))
    problems = []
    for customer in sorted({e.customer_id for e in reference.accepted}):
        snapshot = snapshots.get(customer)
        if snapshot is None:
            problems.append(f"{customer}: no snapshot")
            continue
        segment = policy.segment_for(profiles.get(customer))
        sla = {p: segment.sla_us[i] / MICROS_PER_MINUTE for i, p in enumerate(("P1", "P2", "P3", "P4"))}
        expected = reference.kpis(to_micros(parse_instant(snapshot["as_of"])), sla, customer)
        for name, value in expected.items():
            shown = snapshot.get(name, "<missing>")
            same = (
                shown == ""
                if value is None
                else (
                    shown != ""
                    and (Decimal(shown) == value if isinstance(value, Decimal) else float(shown) == value)
                )
            )
            if not same:
                problems.append(f"{customer}: {name} is {shown!r}, the reference says {value!r}")
    return problems


def datetime_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
