"""Local infrastructure: a real Kafka broker, Redis, Prometheus and Alertmanager on 127.0.0.1.

Used by ``deploy/dev`` (``python -m deploy.services up|down|status``) and by the
pytest session fixtures, so tests and people start services the same way.

* Kafka comes from Maven Central (``deploy/kafka/pom.xml``), cached per version
  outside git, and runs in KRaft combined mode (one node is broker and controller).
* Redis, Prometheus and Alertmanager come from Debian's packages, installed when absent.
  Alertmanager notifies ``deploy/webhook_receiver.py`` (the service "webhook"), which
  stands in for the on-call's Slack/PagerDuty and appends each notification to
  ``Layout.webhook_log``.
* Each service runs in its own session with a pid file; ``down`` stops exactly
  those pids (checked against their command line), never anything by name, so a
  Redis on 6379 that is not ours is never touched.

Every failure a person can act on is a :class:`ServiceError` whose message is one
line naming the service and the fix; ``main`` prints it and exits 1.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy.kafka_security import LISTENER, SecuredListener, SecurityMaterialError, secured_listener

REPO = Path(__file__).resolve().parent.parent
# In start order: Alertmanager's receiver before it, and both before the Prometheus that
# sends to them. `down` and the test session stop them in the reverse order.
SERVICE_NAMES = ("kafka", "redis", "webhook", "alertmanager", "prometheus")
# The receiver's address in deploy/alertmanager/alertmanager.yml, replaced by the real one.
WEBHOOK_PLACEHOLDER = "http://127.0.0.1:19095"


class ServiceError(Exception):
    """A one-line, actionable reason why a service cannot be started."""


@dataclass(frozen=True)
class Layout:
    """Where things live and which ports they use; all from the environment."""

    run_dir: Path
    cache_dir: Path
    kafka_version: str
    kafka_port: int
    kafka_controller_port: int
    kafka_secured_port: int  # SASL_SSL with a SCRAM user (deploy/kafka_security.py)
    redis_port: int
    prometheus_port: int
    alertmanager_port: int
    webhook_port: int  # deploy/webhook_receiver.py, Alertmanager's receiver
    scrape_interval: str

    @classmethod
    def from_env(cls) -> Layout:
        env = os.environ.get
        return cls(
            run_dir=Path(env("TIERPULSE_RUN_DIR", str(REPO / ".run"))),
            cache_dir=Path(env("TIERPULSE_CACHE_DIR", str(Path.home() / ".cache" / "tierpulse"))),
            kafka_version=env("TIERPULSE_KAFKA_VERSION", "4.4.0"),
            kafka_port=int(env("TIERPULSE_KAFKA_PORT", "19092")),
            kafka_controller_port=int(env("TIERPULSE_KAFKA_CONTROLLER_PORT", "19093")),
            kafka_secured_port=int(env("TIERPULSE_KAFKA_SECURED_PORT", "19094")),
            redis_port=int(env("TIERPULSE_REDIS_PORT", "16379")),
            prometheus_port=int(env("TIERPULSE_PROMETHEUS_PORT", "19090")),
            # Not 19093 (Alertmanager's 9093 + 10000): the Kafka controller has that one.
            alertmanager_port=int(env("TIERPULSE_ALERTMANAGER_PORT", "19096")),
            webhook_port=int(env("TIERPULSE_WEBHOOK_PORT", "19095")),
            scrape_interval=env("TIERPULSE_PROMETHEUS_SCRAPE_INTERVAL", "2s"),
        )

    def service_dir(self, name: str) -> Path:
        suffix = f"-{self.kafka_version}" if name == "kafka" else ""
        path = self.run_dir / f"{name}{suffix}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid.json"

    def log_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def prometheus_targets_dir(self) -> Path:
        path = self.service_dir("prometheus") / "targets"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager_port}"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}"

    @property
    def webhook_log(self) -> Path:
        """Every notification the webhook receiver got, one JSON document per line."""
        return self.service_dir("webhook") / "notifications.jsonl"


# ---------------------------------------------------------------- processes


def _read_pid(layout: Layout, name: str) -> dict[str, object] | None:
    try:
        return dict(json.loads(layout.pid_file(name).read_text()))
    except (OSError, ValueError):
        return None


def _is_ours(record: dict[str, object]) -> bool:
    """True if the pid is alive and still runs the command we started (pids are reused)."""
    pid, markers = record.get("pid"), record.get("markers")
    if not isinstance(pid, int) or not isinstance(markers, list):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return all(str(marker) in cmdline for marker in markers)


def running(layout: Layout, name: str) -> dict[str, object] | None:
    record = _read_pid(layout, name)
    return record if record and _is_ours(record) else None


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _spawn(
    layout: Layout,
    name: str,
    argv: list[str],
    markers: list[str],
    env: dict[str, str] | None = None,
    **extra: object,
) -> subprocess.Popen[bytes]:
    """Start argv detached; ``markers`` must all stay in its command line (redis rewrites its title)."""
    log = layout.log_file(name).open("ab")
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=REPO,
        env=env,
    )
    record = {"pid": proc.pid, "markers": markers, "argv": argv, **extra}
    layout.pid_file(name).write_text(json.dumps(record))
    return proc


def _wait_ready(
    layout: Layout,
    name: str,
    proc: subprocess.Popen[bytes],
    probe: Callable[[], bool],
    timeout: float,
    hint: str,
) -> None:
    # Liveness from the child handle: right after the spawn the java launcher may re-exec
    # itself, and for that instant its /proc command line does not show the markers.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            layout.pid_file(name).unlink(missing_ok=True)
            raise ServiceError(f"{name} exited during start-up; its log: {layout.log_file(name)}")
        if probe():
            return
        time.sleep(0.3)
    raise ServiceError(
        f"{name} did not answer within {timeout:.0f}s ({hint}); its log: {layout.log_file(name)}"
    )


def stop(layout: Layout, name: str, timeout: float = 20.0) -> bool:
    """Stop the service we started, by its recorded pid. Returns True if one was running."""
    record = running(layout, name)
    if record is None:
        layout.pid_file(name).unlink(missing_ok=True)  # stale: the process is gone
        return False
    pid = int(str(record["pid"]))
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _is_ours(record):
        time.sleep(0.2)
    if _is_ours(record):
        os.kill(pid, signal.SIGKILL)
    layout.pid_file(name).unlink(missing_ok=True)
    return True


# ---------------------------------------------------------------- packages


def _require_binary(binary: str, debian_package: str) -> str:
    """Find a binary, installing its Debian package when we are root and it is absent."""
    found = shutil.which(binary)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", debian_package]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
            subprocess.run(install, env=env, capture_output=True)
        found = shutil.which(binary)
        if found:
            return found
    raise ServiceError(f"{binary} not found: install it with 'apt-get install {debian_package}'")


def kafka_libs(layout: Layout) -> Path:
    """The broker's jars for ``layout.kafka_version``, fetched from Maven Central once."""
    override = os.environ.get("TIERPULSE_KAFKA_LIBS")
    if override:
        return Path(override)
    libs = layout.cache_dir / f"kafka-{layout.kafka_version}" / "libs"
    if (libs / ".complete").exists():
        return libs
    mvn = _require_binary("mvn", "maven")
    major = layout.kafka_version.split(".")[0]
    log = layout.run_dir / f"maven-kafka-{layout.kafka_version}.log"
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    print(f"fetching Apache Kafka {layout.kafka_version} jars from Maven Central (once) ...", flush=True)
    with log.open("wb") as out:
        result = subprocess.run(
            [
                mvn,
                "-B",
                "-q",
                "-f",
                str(REPO / "deploy" / "kafka" / "pom.xml"),
                f"-Dkafka.version={layout.kafka_version}",
                f"-Dkafka.major={major}",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={libs}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if result.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
        raise ServiceError(
            f"could not fetch Kafka {layout.kafka_version} from Maven Central (log: {log}); "
            "check network access to Maven Central or set TIERPULSE_KAFKA_LIBS to a folder of jars"
        )
    (libs / ".complete").touch()
    return libs


# ---------------------------------------------------------------- services


def _check_port_free(name: str, port: int, env_var: str) -> None:
    if _port_in_use(port):
        raise ServiceError(
            f"{name}: port {port} on 127.0.0.1 is in use by a process that is not ours; "
            f"stop it or choose another port with {env_var}=<port>"
        )


def secured_kafka(layout: Layout) -> SecuredListener:
    """The dev Kafka's SASL_SSL listener: port, CA file and SCRAM user."""
    return secured_listener(layout.service_dir("kafka"), layout.kafka_secured_port)


def _kafka_properties(layout: Layout, data: Path, secured: SecuredListener) -> Path:
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{layout.kafka_controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{layout.kafka_port},"
        f"CONTROLLER://127.0.0.1:{layout.kafka_controller_port},{LISTENER}://{secured.bootstrap}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{layout.kafka_port},{LISTENER}://{secured.bootstrap}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": f"PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,{LISTENER}:SASL_SSL",
        **secured.broker_properties(),
        "log.dirs": str(data / "data"),
        "num.partitions": "4",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.hours": "168",
    }
    path = data / "server.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return path


def start_kafka(layout: Layout) -> None:
    current = running(layout, "kafka")
    if current:
        if current.get("version") != layout.kafka_version:
            raise ServiceError(
                f"kafka {current.get('version')} is running, {layout.kafka_version} was asked for; "
                "stop it first with 'deploy/dev stop'"
            )
        return
    java = _require_binary("java", "openjdk-17-jre-headless")
    _check_port_free("kafka", layout.kafka_port, "TIERPULSE_KAFKA_PORT")
    _check_port_free("kafka controller", layout.kafka_controller_port, "TIERPULSE_KAFKA_CONTROLLER_PORT")
    _check_port_free("kafka (SASL_SSL)", layout.kafka_secured_port, "TIERPULSE_KAFKA_SECURED_PORT")
    libs = kafka_libs(layout)
    data = layout.service_dir("kafka")
    try:
        secured = secured_kafka(layout)
    except SecurityMaterialError as error:
        raise ServiceError(f"kafka's TLS material: {error}") from None
    props = _kafka_properties(layout, data, secured)
    classpath = f"{libs}/*"
    scram_user = data / "data" / "scram-user"  # the format below created the SCRAM user
    if (data / "data" / "meta.properties").exists() and not scram_user.exists():
        raise ServiceError(
            f"the dev Kafka in {data} was formatted before it had a SCRAM user (0.5): delete that "
            "directory (its topics go with it) and start again"
        )
    if not (data / "data" / "meta.properties").exists():
        cluster_id = subprocess.run(
            [java, "-cp", classpath, "kafka.tools.StorageTool", "random-uuid"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip() or str(uuid.uuid4())
        fmt = subprocess.run(
            [
                *(java, "-cp", classpath, "kafka.tools.StorageTool", "format", "-t", cluster_id),
                *("-c", str(props), *secured.format_arguments()),
            ],
            capture_output=True,
            text=True,
        )
        if fmt.returncode != 0:
            raise ServiceError(f"kafka storage format failed: {fmt.stderr.strip() or fmt.stdout.strip()}")
        scram_user.write_text(secured.username)
    logging_conf = (
        ["-Dlog4j2.configurationFile=" + str(REPO / "deploy/kafka/log4j2.properties")]
        if layout.kafka_version.split(".")[0] != "3"
        else ["-Dlog4j.configuration=file:" + str(REPO / "deploy/kafka/log4j.properties")]
    )
    argv = [
        java,
        "-Xms256m",
        "-Xmx1g",
        "-XX:+UseG1GC",
        *logging_conf,
        "-cp",
        classpath,
        "kafka.Kafka",
        str(props),
    ]
    proc = _spawn(layout, "kafka", argv, markers=[str(props)], version=layout.kafka_version)
    _wait_ready(layout, "kafka", proc, lambda: _kafka_answers(layout.bootstrap), 120, "metadata request")


def _kafka_answers(bootstrap: str) -> bool:
    """A real metadata round trip, not just an open port."""
    import logging

    from aiokafka import AIOKafkaClient  # the venv has it; imported late so `down` needs nothing

    if not _port_in_use(int(bootstrap.rsplit(":", 1)[1])):
        return False
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # start-up refusals are expected

    async def probe() -> bool:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await client.bootstrap()
            return bool(client.cluster.brokers())
        except Exception:
            return False
        finally:
            await client.close()

    return asyncio.run(probe())


def start_redis(layout: Layout) -> None:
    if running(layout, "redis"):
        return
    binary = _require_binary("redis-server", "redis-server")
    _check_port_free("redis", layout.redis_port, "TIERPULSE_REDIS_PORT")
    data = layout.service_dir("redis")
    argv = [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(layout.redis_port),
        "--dir",
        str(data),
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
    ]
    proc = _spawn(layout, "redis", argv, markers=["redis-server", str(layout.redis_port)])
    _wait_ready(layout, "redis", proc, lambda: _redis_answers(layout.redis_port), 20, "PING")


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def prometheus_config(layout: Layout) -> Path:
    """Scrape whatever ``targets/*.json`` lists (tests and ``run`` add workers there); alert
    through the local Alertmanager."""
    data = layout.service_dir("prometheus")
    rules = sorted(str(p) for p in (REPO / "deploy" / "prometheus").glob("rules/*.yml"))
    config = {
        "global": {"scrape_interval": layout.scrape_interval, "evaluation_interval": layout.scrape_interval},
        "rule_files": rules,
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{layout.alertmanager_port}"]}]}]
        },
        "scrape_configs": [
            {
                "job_name": "tierpulse",
                "file_sd_configs": [
                    {"files": [str(layout.prometheus_targets_dir / "*.json")], "refresh_interval": "1s"}
                ],
            }
        ],
    }
    path = data / "prometheus.yml"
    path.write_text(json.dumps(config, indent=2))  # JSON is valid YAML
    return path


def start_prometheus(layout: Layout) -> None:
    if running(layout, "prometheus"):
        return
    binary = _require_binary("prometheus", "prometheus")
    _check_port_free("prometheus", layout.prometheus_port, "TIERPULSE_PROMETHEUS_PORT")
    config = prometheus_config(layout)
    data = layout.service_dir("prometheus")
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{layout.prometheus_port}",
        "--web.enable-lifecycle",
        "--storage.tsdb.retention.time=1d",
    ]
    proc = _spawn(layout, "prometheus", argv, markers=[str(config)])
    _wait_ready(
        layout,
        "prometheus",
        proc,
        lambda: _http_ok(f"http://127.0.0.1:{layout.prometheus_port}/-/ready"),
        60,
        "GET /-/ready",
    )


def start_webhook(layout: Layout) -> None:
    if running(layout, "webhook"):
        return
    _check_port_free("webhook", layout.webhook_port, "TIERPULSE_WEBHOOK_PORT")
    out = layout.webhook_log
    argv = [
        *(sys.executable, "-m", "deploy.webhook_receiver"),
        *("--port", str(layout.webhook_port), "--out", str(out)),
    ]
    proc = _spawn(layout, "webhook", argv, markers=["deploy.webhook_receiver", str(out)])
    _wait_ready(layout, "webhook", proc, lambda: _http_ok(f"{layout.webhook_url}/"), 20, "GET /")


def alertmanager_config(layout: Layout) -> Path:
    """deploy/alertmanager/alertmanager.yml with the local receiver's address in its URLs.

    Alertmanager 0.25 expands no environment variables in its config, hence the copy.
    """
    source = (REPO / "deploy" / "alertmanager" / "alertmanager.yml").read_text()
    if WEBHOOK_PLACEHOLDER not in source:
        raise ServiceError(
            f"alertmanager: deploy/alertmanager/alertmanager.yml no longer sends to {WEBHOOK_PLACEHOLDER}, "
            "the address this script replaces with the local receiver's; put it back in its webhook URLs"
        )
    path = layout.service_dir("alertmanager") / "alertmanager.yml"
    path.write_text(source.replace(WEBHOOK_PLACEHOLDER, layout.webhook_url))
    return path


def start_alertmanager(layout: Layout) -> None:
    """Alertmanager and, first, the webhook receiver it notifies (its own service and pid file)."""
    if running(layout, "alertmanager"):
        return
    binary = _require_binary("prometheus-alertmanager", "prometheus-alertmanager")
    _check_port_free("alertmanager", layout.alertmanager_port, "TIERPULSE_ALERTMANAGER_PORT")
    start_webhook(layout)
    config = alertmanager_config(layout)
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.path={layout.service_dir('alertmanager') / 'data'}",
        f"--web.listen-address=127.0.0.1:{layout.alertmanager_port}",
        "--cluster.listen-address=",  # one instance: no gossip cluster (it would bind 9094)
    ]
    proc = _spawn(layout, "alertmanager", argv, markers=[str(config)])
    _wait_ready(
        layout,
        "alertmanager",
        proc,
        lambda: _http_ok(f"{layout.alertmanager_url}/-/ready"),
        30,
        "GET /-/ready",
    )


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


STARTERS: dict[str, Callable[[Layout], None]] = {
    "kafka": start_kafka,
    "redis": start_redis,
    "webhook": start_webhook,
    "alertmanager": start_alertmanager,
    "prometheus": start_prometheus,
}


def up(layout: Layout, names: tuple[str, ...] = SERVICE_NAMES) -> list[str]:
    """Start each named service unless it already runs; return the names started now."""
    started = []
    for name in names:
        was_running = running(layout, name) is not None
        STARTERS[name](layout)
        if not was_running:
            started.append(name)
    return started


def check(layout: Layout) -> list[str]:
    """Prove each service with a real round trip; return one line per service."""
    import redis
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    async def kafka_round_trip() -> float:
        topic, payload = f"tierpulse-check-{uuid.uuid4().hex[:8]}", uuid.uuid4().bytes
        started = time.monotonic()
        producer = AIOKafkaProducer(bootstrap_servers=layout.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, payload)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=layout.bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        try:
            message = await asyncio.wait_for(consumer.getone(), timeout=30)
        finally:
            await consumer.stop()
        if message.value != payload:
            raise ServiceError("kafka: the message read back differs from the one written")
        return time.monotonic() - started

    import logging

    # "topic not found" while it is auto-created: expected, not worth a line
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    logging.getLogger("aiokafka.cluster").setLevel(logging.CRITICAL)
    lines = [f"kafka: produced and consumed one message in {asyncio.run(kafka_round_trip()):.2f}s"]
    client = redis.Redis(port=layout.redis_port, socket_timeout=3)
    key = f"tierpulse:check:{uuid.uuid4().hex}"
    client.set(key, "客户-001", ex=60)
    if client.get(key) != "客户-001".encode():
        raise ServiceError("redis: the value read back differs from the one written")
    lines.append("redis: wrote and read back one key")
    url = f"http://127.0.0.1:{layout.prometheus_port}/api/v1/query?query=vector(1)"
    with urllib.request.urlopen(url, timeout=5) as response:
        answer = json.load(response)
    if answer.get("status") != "success":
        raise ServiceError(f"prometheus: query API answered {answer}")
    lines.append("prometheus: query API answered")
    with urllib.request.urlopen(f"{layout.alertmanager_url}/api/v2/status", timeout=5) as response:
        status = json.load(response)
    version = status.get("versionInfo", {}).get("version", "?")
    lines.append(f"alertmanager {version}: status API answered")
    with urllib.request.urlopen(f"{layout.webhook_url}/", timeout=5) as response:
        received = json.load(response).get("received")
    lines.append(f"webhook: answered, {received} notifications so far (in {layout.webhook_log})")
    return lines


# ---------------------------------------------------------------- the scorer and the demo

APP_NAMES = ("worker", "demo")


def app_env(layout: Layout) -> dict[str, str]:
    """The scorer's settings pointing at these local services (the user's own TIERPULSE_* win)."""
    return {
        "TIERPULSE_BROKER": f"kafka://{layout.bootstrap}",
        "TIERPULSE_REDIS_URL": f"redis://127.0.0.1:{layout.redis_port}/0",
        "TIERPULSE_DATA_DIR": str(layout.run_dir / "worker-data"),
        "TIERPULSE_ALERTMANAGER_URL": layout.alertmanager_url,
        **{k: v for k, v in os.environ.items() if k.startswith("TIERPULSE_")},
    }


def web_url() -> str:
    return f"http://127.0.0.1:{os.environ.get('TIERPULSE_WEB_PORT', '6066')}"


def start_app(layout: Layout) -> str:
    """Start the scorer worker and the demo generator; return the worker's URL."""
    env = {**os.environ, **app_env(layout)}
    url = web_url()
    port = int(url.rsplit(":", 1)[1])
    if running(layout, "worker") is None:
        _check_port_free("worker", port, "TIERPULSE_WEB_PORT")
        argv = [sys.executable, "-m", "streams.cli", "worker"]
        proc = _spawn(layout, "worker", argv, markers=["streams.cli", "worker"], env=env)
        _wait_ready(layout, "worker", proc, lambda: _http_ok(f"{url}/healthz"), 90, "GET /healthz")
    targets = [{"targets": [f"127.0.0.1:{port}"], "labels": {"instance_name": "local-worker"}}]
    (layout.prometheus_targets_dir / "worker.json").write_text(json.dumps(targets))
    if running(layout, "demo") is None:
        _spawn(
            layout,
            "demo",
            [sys.executable, "-m", "streams.cli", "demo"],
            markers=["streams.cli", "demo"],
            env=env,
        )
    return url


def describe(layout: Layout, name: str) -> str:
    record = running(layout, name)
    where = {
        "kafka": layout.bootstrap,
        "redis": f"redis://127.0.0.1:{layout.redis_port}/0",
        "prometheus": f"http://127.0.0.1:{layout.prometheus_port}",
        "alertmanager": layout.alertmanager_url,
        "webhook": layout.webhook_url,
        "worker": web_url(),
        "demo": "-",
    }[name]
    state = f"running (pid {record['pid']})" if record else "stopped"
    version = f" {(record or {}).get('version', layout.kafka_version)}" if name == "kafka" else ""
    return f"{name + version:<12} {state:<22} {where:<28} log: {layout.log_file(name)}"


def main(argv: list[str]) -> int:
    command, *names = argv or ["status"]
    every = APP_NAMES + SERVICE_NAMES
    # `down` stops the scorer and demo first, then the services in the reverse of their start order.
    default = {"down": APP_NAMES + SERVICE_NAMES[::-1], "status": every}.get(command, SERVICE_NAMES)
    chosen = tuple(names) or default
    unknown = [n for n in chosen if n not in every]
    if command not in ("up", "down", "status", "check", "start-app") or unknown:
        print(
            f"usage: python -m deploy.services up|down|status|check|start-app [{'|'.join(every)} ...]",
            file=sys.stderr,
        )
        return 2
    layout = Layout.from_env()
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    try:
        if command == "up":
            up(layout, tuple(n for n in chosen if n in SERVICE_NAMES))
        elif command == "down":
            for name in chosen:
                print(f"{name}: {'stopped' if stop(layout, name) else 'was not running'}")
            return 0
        elif command == "check":
            print("\n".join(check(layout)))
            return 0
        elif command == "start-app":
            url = start_app(layout)
            print(f"scorer: {url}/customers/<customer_id>  {url}/metrics  {url}/healthz")
            print(f"prometheus: http://127.0.0.1:{layout.prometheus_port}  (scraping the worker)")
            print(f"alertmanager: {layout.alertmanager_url}  (notifications: {layout.webhook_log})")
            print(f"logs: {layout.log_file('worker')}  {layout.log_file('demo')}")
            return 0
        for name in chosen:
            print(describe(layout, name))
    except ServiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:  # `deploy/dev status | head`
        sys.exit(0)
