"""The one frozen settings object, read from ``TIERPULSE_*`` environment variables.

Built once at start (``Settings()``) and passed down; nothing else reads the
environment.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.event_time import MICROS_PER_SECOND, Window
from models.events import Topic
from models.policy import DEFAULT_POLICY_PATH


class TopicNames(BaseModel):
    """Set with e.g. ``TIERPULSE_TOPICS__ORDERS=shop-orders``."""

    model_config = ConfigDict(frozen=True)

    orders: str = "orders"
    tickets: str = "service-tickets"
    complaints: str = "complaints"
    invoices: str = "invoices"
    customers: str = "customers"
    tier_changes: str = "customer-tier-changes"
    tier_changes_shadow: str = "customer-tier-changes-shadow"  # the shadow policy's (shadow mode)
    alerts: str = "customer-alerts"
    dead_letters: str = "tierpulse-dead-letters"
    rekeyed: str = "tierpulse-rekeyed"  # unkeyed / wrongly keyed input, re-sent keyed by customer_id
    sweep: str = "tierpulse-sweep"  # ticks that make each partition re-evaluate what is due

    def input_kinds(self) -> dict[str, Topic]:
        return {
            self.orders: Topic.ORDERS,
            self.tickets: Topic.TICKETS,
            self.complaints: Topic.COMPLAINTS,
            self.invoices: Topic.INVOICES,
            self.customers: Topic.CUSTOMERS,
        }


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIERPULSE_", env_nested_delimiter="__", frozen=True)

    app_id: str = "tierpulse"
    broker: str = "kafka://127.0.0.1:19092"
    # Kafka security (streams/security.py): the protocol follows from what is set unless given.
    broker_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = None
    broker_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    broker_username: str | None = None
    broker_password: SecretStr | None = None
    broker_ssl_cafile: Path | None = None  # the CA that signed the broker's certificate
    broker_ssl_certfile: Path | None = None  # a client certificate, for mutual TLS
    broker_ssl_keyfile: Path | None = None  # its private key (when not in the certificate file)
    topics: TopicNames = TopicNames()
    partitions: int = Field(4, ge=1, description="partitions of every input and internal topic")

    redis_url: str = "redis://127.0.0.1:16379/0"  # empty: no Redis (no snapshots or histories there)
    # The leading part of every Redis key (contract §5): snapshots are <prefix>customer:<id>,
    # tier histories <prefix>history:<id>. Several deployments can share a Redis.
    redis_prefix: str = "tierpulse:"
    # Before 0.4 only the snapshots' prefix was a setting: still honoured for them when set.
    redis_key_prefix: str | None = None
    # Prometheus Alertmanager (sinks/alertmanager.py): every firing customer alert is posted to
    # its v2 API and re-posted every resend interval. Empty: the alerts go to Kafka only.
    alertmanager_url: str = ""
    alertmanager_resend_seconds: float = Field(60, ge=1)
    # Where people open Grafana and Alertmanager's UI (e.g. https://grafana.example.com): the web
    # UI's customer page links to the business dashboard for the customer's segment and to the
    # customer's alerts. Base URLs as a browser reaches them, which may differ from
    # alertmanager_url (the API the worker posts to). Empty: no link.
    grafana_url: str = ""
    alertmanager_ui_url: str = ""
    web_host: str = "127.0.0.1"
    # When set, the customer pages ask for "Authorization: Bearer <token>"; the probe (/healthz)
    # and /metrics stay open, as probes and scrapers expect.
    http_token: SecretStr | None = None
    web_port: int = 6066
    # /readyz answers 503 while the worker has more input than this left to process (0: the lag
    # does not count). A worker catching up still answers correctly as of its watermark, so
    # the default keeps it in the load balancer; set it where stale answers are worse than none.
    ready_max_lag_messages: int = Field(0, ge=0)
    # Faust's own pages (/router, /table/..., /graph, stats): they show table keys and the
    # partition layout, and ask for no token.
    debug_pages: bool = False
    # How other workers reach this one (HTTP requests are routed to a key's owner); in a
    # container, web_host is 0.0.0.0, which is no address for anyone else.
    advertised_url: str | None = None
    store: str = "rocksdb://"  # memory:// for tests
    data_dir: Path = Path("tierpulse-data")
    policy_path: Path = DEFAULT_POLICY_PATH
    # Shadow mode (README, "Policy lab"): every customer is also scored with this policy, its tier
    # changes go to topics.tier_changes_shadow and nothing the CRM reads changes. A restart
    # turns it on or off.
    shadow_policy_path: Path | None = None

    bucket_seconds: int = Field(86_400, gt=0)
    window_seconds: int = Field(30 * 86_400, gt=0)
    allowed_lateness_seconds: float = Field(0, ge=0)
    max_future_skew_seconds: float = Field(3600, ge=0)
    max_event_bytes: int = Field(65_536, gt=0)
    sweep_interval_seconds: float = Field(60, gt=0)
    batch_size: int = Field(2000, gt=0)
    # Decoded states kept between batches (streams/pipeline.py): a busy customer is neither read
    # from the store nor decoded again. ~30 KiB (a small account) to ~730 KiB (a key account with
    # 840 events a month) each in memory, running totals included (tests/bench/RESULTS.md).
    state_cache_customers: int = Field(1_000, ge=0)
    # Customers each partition keeps in memory per due schedule (models/schedule.py); the later
    # ones spill to a RocksDB of the worker's own, so memory does not grow with customers
    # (~0.25 KB each in memory). The memory store keeps them all.
    schedule_memory_customers: int = Field(20_000, ge=2)
    # The longest a quiet stream waits to fill a batch: it is a floor under latency.
    batch_seconds: float = Field(0.05, gt=0)
    session_timeout_seconds: float = Field(30, gt=0)
    # A partition with input waiting and no progress this long is re-fetched from its last
    # processed offset (faust-streaming can stop delivering a partition after a restart).
    stall_seconds: float = Field(20, gt=0)
    # Account managers and regions with their own tierpulse_rollup_* series, per dimension (the
    # largest by revenue); the rest are summed under "other".
    rollup_max_names: int = Field(200, ge=1)
    watch_list: tuple[str, ...] = Field(
        (), max_length=50, description="customers with their own metric series"
    )
    log_level: str = "info"

    @model_validator(mode="after")
    def _sasl_has_a_mechanism(self) -> Settings:
        protocol = self.broker_security_protocol or ""
        if protocol.startswith("SASL") and self.broker_sasl_mechanism is None:
            raise ValueError(
                f"TIERPULSE_BROKER_SECURITY_PROTOCOL={protocol} needs TIERPULSE_BROKER_SASL_MECHANISM "
                "(PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512) and its user and password"
            )
        return self

    @model_validator(mode="after")
    def _window_of_whole_buckets(self) -> Settings:
        # Checked here, not when the app first asks: a worker must refuse before touching Kafka.
        if self.window_seconds % self.bucket_seconds:
            raise ValueError(
                f"TIERPULSE_WINDOW_SECONDS ({self.window_seconds}) must be a whole number of "
                f"TIERPULSE_BUCKET_SECONDS ({self.bucket_seconds})"
            )
        return self

    @property
    def window(self) -> Window:
        return Window(self.bucket_seconds * MICROS_PER_SECOND, self.window_seconds // self.bucket_seconds)

    @property
    def web_url(self) -> str:
        return self.advertised_url or f"http://{self.web_host}:{self.web_port}"


def package_version() -> str:
    """The installed TierPulse version (``unknown`` when run from a checkout not installed)."""
    try:
        return importlib.metadata.version("tierpulse")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
