"""Smoke tests: each real service does the one thing the scorer relies on it for."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry, Counter, start_http_server

from deploy import services

COUNTER_APP = Path(__file__).with_name("counter_app.py")


async def create_topics(bootstrap: str, *names: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        await admin.close()


async def read_values(bootstrap: str, topic: str, want: int, timeout: float = 60) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(values) < want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            values += [m.value for messages in batch.values() for m in messages if m.value is not None]
    finally:
        await consumer.stop()
    return values


async def test_kafka_round_trip_keeps_order_and_unicode_keys(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("smoke")
    await create_topics(kafka_bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i in range(20):
            await producer.send(topic, f"{i}".encode(), key="客户-001".encode())
        await producer.flush()
    finally:
        await producer.stop()
    assert await read_values(kafka_bootstrap, topic, 20) == [f"{i}".encode() for i in range(20)]


def _start_counter(env: dict[str, str], workdir: Path, log: Path) -> subprocess.Popen[bytes]:
    workdir.mkdir()
    return subprocess.Popen(
        [sys.executable, str(COUNTER_APP), "worker", "--without-web", "-l", "info"],
        env=env,
        cwd=workdir,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def test_faust_table_is_restored_from_its_changelog_after_a_restart(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    source, output = unique_name("counter-in"), unique_name("counter-out")
    await create_topics(kafka_bootstrap, source, output)
    env = {
        **os.environ,
        "COUNTER_APP_ID": unique_name("counter"),
        "COUNTER_BROKER": f"kafka://{kafka_bootstrap}",
        "COUNTER_SOURCE": source,
        "COUNTER_OUTPUT": output,
    }
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    log = tmp_path / "worker.log"
    try:
        for round_ in (1, 2):
            # Each worker gets an empty working dir: its memory store starts empty, so
            # the second can only continue the count from the changelog.
            worker = _start_counter(env, tmp_path / f"worker-{round_}", log)
            try:
                for _ in range(3):
                    await producer.send_and_wait(source, b"x", key=b"k")
                values = await read_values(kafka_bootstrap, output, 3 * round_)
            finally:
                # A clean stop commits the source offsets, so nothing is re-fed: this test is
                # about the restore. (A naive counter double counts after SIGKILL; the scorer's
                # state is idempotent for that reason and its crash tests use SIGKILL.)
                worker.terminate()
                worker.wait(timeout=60)
            expected = [str(i).encode() for i in range(1, 3 * round_ + 1)]
            if round_ == 2:
                # The restored count goes on at 4. faust-streaming can leave a low-volume partition
                # undelivered after a restart (docs/internals.md, Known limits: the scorer re-fetches it, this
                # bare counter does not), so the round's last values may not come at all.
                expected = expected[: max(len(values), 4)]
            assert values == expected, log.read_text()[-3000:]
    finally:
        await producer.stop()


def test_redis_round_trip_with_unicode_keys(redis_url: str, unique_name: Callable[[str], str]) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    key = f"tierpulse:customer:{unique_name('客户')}"
    client.hset(key, mapping={"tier": "key", "score": "71.5"})
    try:
        assert client.hgetall(key) == {"tier": "key", "score": "71.5"}
    finally:
        client.delete(key)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _query(prometheus_url: str, promql: str) -> list[dict[str, object]]:
    url = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=5) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def test_prometheus_scrapes_a_registered_target(
    layout: services.Layout, prometheus_url: str, unique_name: Callable[[str], str]
) -> None:
    registry = CollectorRegistry()
    Counter("tierpulse_smoke", "smoke test counter", registry=registry).inc(7)
    port = _free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    target_file = layout.prometheus_targets_dir / f"{unique_name('smoke')}.json"
    target_file.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"]}]))
    try:
        deadline, result = time.monotonic() + 45, []
        while time.monotonic() < deadline and not result:
            result = _query(prometheus_url, f'tierpulse_smoke_total{{instance="127.0.0.1:{port}"}}')
            time.sleep(0.5)
        assert result and result[0]["value"][1] == "7"  # type: ignore[index]
    finally:
        target_file.unlink()
        server.shutdown()
        thread.join()


def test_services_report_a_busy_port_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        env = {**os.environ, "TIERPULSE_RUN_DIR": str(tmp_path), "TIERPULSE_REDIS_PORT": str(port)}
        result = subprocess.run(
            [sys.executable, "-m", "deploy.services", "up", "redis"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"port {port}" in result.stderr and "TIERPULSE_REDIS_PORT" in result.stderr
    assert "Traceback" not in result.stderr
