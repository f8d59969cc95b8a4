"""Prometheus metrics (contract §5), on a registry owned by one app.

Labels are bounded: topics, outcomes, tiers, segments, rules, partitions. The
only per-customer series are for the explicit, capped watch list.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from models.evaluation import Evaluation
from models.kpi_bands import KPI_BANDS, band_label

disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series: no use on dashboards

KPI_BUCKETS = {
    "on_time_delivery_rate": (0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0),
    "response_sla_rate": (0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0),
    "first_response_minutes": (300, 900, 1800, 3600, 7200, 14400, 28800, 86400),  # in seconds (below)
    "complaint_rate": (0, 1, 2, 5, 10, 20, 50, 100),
    "csat": (1, 2, 3, 3.5, 4, 4.5, 4.8, 5),
    "gross_margin_rate": (0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5),
    "revenue_growth": (-0.5, -0.25, -0.1, 0, 0.1, 0.25, 0.5, 1),
    "receivables_collection_rate": (0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0),
    "overdue_receivables": (0, 100, 1_000, 5_000, 10_000, 50_000, 100_000),
    "revenue_per_service_hour": (10, 50, 100, 250, 500, 1_000, 5_000),
    "tenure_days": tuple(days * 86_400 for days in (30, 90, 180, 365, 730, 1_095, 1_825)),  # seconds
}


# Prometheus' base units: minutes and days are observed in seconds.
_IN_SECONDS = {"first_response_minutes": 60, "tenure_days": 86_400}
_METRIC_NAMES = {"first_response_minutes": "first_response_seconds", "tenure_days": "tenure_seconds"}


class ScorerMetrics:
    def __init__(
        self, registry: CollectorRegistry, tiers: Iterable[str], watch_list: Iterable[str] = ()
    ) -> None:
        self.registry = registry
        self.tiers = tuple(tiers)
        self.watch_list = frozenset(watch_list)
        self.events = Counter(
            "tierpulse_events", "Input messages by topic and outcome", ["topic", "outcome"], registry=registry
        )
        self.dead_letters = Counter(
            "tierpulse_dead_letters", "Messages sent to the dead-letter topic", ["topic"], registry=registry
        )
        self.rekeyed = Counter(
            "tierpulse_rekeyed", "Messages re-sent keyed by customer_id", ["topic"], registry=registry
        )
        self.tier_changes = Counter(
            "tierpulse_tier_changes",
            "Tier changes emitted",
            ["from_tier", "to_tier", "segment"],
            registry=registry,
        )
        self.customers = Gauge(
            "tierpulse_customers",
            "Customers per tier and segment (partitions owned here)",
            ["tier", "segment"],
            registry=registry,
        )
        # Shadow mode (models/evaluation.py): live tier against the shadow policy's, per pair, so
        # that agreement is sum(tier == shadow_tier) / sum(all).
        self.shadow_customers = Gauge(
            "tierpulse_shadow_customers",
            "Customers per live tier and shadow-policy tier (partitions owned here; shadow mode)",
            ["tier", "shadow_tier"],
            registry=registry,
        )
        self.shadow_differing = Gauge(
            "tierpulse_shadow_differing_customers",
            "Customers whose shadow-policy tier is not their live tier (partitions owned here)",
            registry=registry,
        )
        self.shadow_tier_changes = Counter(
            "tierpulse_shadow_tier_changes",
            "Tier changes of the shadow policy (to the shadow topic)",
            ["from_tier", "to_tier", "segment"],
            registry=registry,
        )
        self.kpi_customers = Gauge(
            "tierpulse_kpi_customers",
            "Customers per KPI band and segment, as last evaluated (partitions owned here)",
            ["kpi", "segment", "band"],
            registry=registry,
        )
        self.alerts = Counter(
            "tierpulse_alerts", "Alert transitions", ["rule", "severity", "state"], registry=registry
        )
        self.alerts_firing = Gauge(
            "tierpulse_alerts_firing",
            "Alerts firing now (as the partitions owned here store them)",
            ["rule", "severity"],
            registry=registry,
        )
        self.event_time_lag = Gauge(
            "tierpulse_event_time_lag_seconds",
            "Wall clock minus the partition's watermark T (its slowest input stream with records left)",
            ["partition"],
            registry=registry,
        )
        self.watermark = Gauge(
            "tierpulse_watermark_timestamp_seconds",
            "The partition's watermark T",
            ["partition"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "tierpulse_consumer_lag_messages",
            "High-water mark minus committed offset (Kafka's consumer lag)",
            ["topic", "partition"],
            registry=registry,
        )
        self.processed_lag = Gauge(
            "tierpulse_processed_lag_messages",
            "High-water mark minus the next offset this worker will process",
            ["topic", "partition"],
            registry=registry,
        )
        self.stall_recoveries = Counter(
            "tierpulse_stall_recoveries",
            "Partitions re-fetched after they stopped delivering",
            ["topic"],
            registry=registry,
        )
        self.internal_errors = Counter(
            "tierpulse_internal_errors",
            "Exceptions caught in the core: a message's (dead-lettered) or a due evaluation's",
            ["stage"],
            registry=registry,
        )
        self.batch_failures = Counter(
            "tierpulse_batch_failures",
            "Batches that failed outside any one message and were read again from the stored positions",
            registry=registry,
        )
        self.rewinds = Counter(
            "tierpulse_input_rewinds",
            "Input partitions re-fetched because a record came from past a skip (streams/positions.py)",
            ["topic"],
            registry=registry,
        )
        self.redelivered = Counter(
            "tierpulse_input_redelivered",
            "Input records delivered again after they were processed, and skipped",
            ["topic"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "tierpulse_batch_size_messages",
            "Messages per processed batch",
            buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000),
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "tierpulse_batch_duration_seconds",
            "Time to process one batch",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self.state_cache = Gauge(
            "tierpulse_state_cache_customers",
            "Decoded customer states kept in memory between batches (bound: TIERPULSE_STATE_CACHE_CUSTOMERS)",
            registry=registry,
        )
        self.schedule_customers = Gauge(
            "tierpulse_schedule_customers",
            "Customers with a due instant held in memory, per schedule (bound: "
            "TIERPULSE_SCHEDULE_MEMORY_CUSTOMERS a partition; later ones spill to disk)",
            ["schedule"],
            registry=registry,
        )
        self.schedule_spill_moves = Counter(
            "tierpulse_schedule_spill_moves",
            "Due-schedule entries moved to the disk spill (out) and taken back (back)",
            ["schedule", "direction"],
            registry=registry,
        )
        self.sink_errors = Counter(
            "tierpulse_sink_errors", "Failed sink flushes", ["sink"], registry=registry
        )
        self.sink_waiting = Gauge(
            "tierpulse_sink_waiting", "Items waiting for a sink that is down", ["sink"], registry=registry
        )
        self.sink_up = Gauge(
            "tierpulse_sink_up", "1 if the sink's last flush worked", ["sink"], registry=registry
        )
        self.state_bytes = Histogram(
            "tierpulse_state_bytes",
            "Serialised customer state size",
            buckets=(256, 512, 1024, 2048, 4096, 8192, 32768, 131072),
            registry=registry,
        )
        self.kpi = {
            name: Histogram(
                f"tierpulse_kpi_{_METRIC_NAMES.get(name, name)}",
                f"Distribution of {name} at evaluation" + (" (seconds)" if name in _IN_SECONDS else ""),
                ["segment"],
                buckets=buckets,
                registry=registry,
            )
            for name, buckets in KPI_BUCKETS.items()
        }
        # Rollups (contract v2 §5), read back from Redis: the same in every worker's /metrics.
        self.rollup_customers = Gauge(
            "tierpulse_rollup_customers",
            "Customers per tier of an account manager or region (past the bound: name 'other')",
            ["dimension", "name", "tier"],
            registry=registry,
        )
        self.rollup_revenue = Gauge(
            "tierpulse_rollup_revenue",
            "Revenue in the window of an account manager's or region's customers",
            ["dimension", "name"],
            registry=registry,
        )
        self.rollup_tier_revenue = Gauge(
            "tierpulse_rollup_tier_revenue",
            "Revenue in the window of an account manager's or region's customers in one tier "
            "(tier=at_risk: the revenue at risk); absent until every customer's was counted",
            ["dimension", "name", "tier"],
            registry=registry,
        )
        self.rollup_alerts = Gauge(
            "tierpulse_rollup_alerts",
            "Open alerts of an account manager's or region's customers, by severity",
            ["dimension", "name", "severity"],
            registry=registry,
        )
        self._rollup_series: dict[str, list[tuple[Gauge, tuple[str, ...]]]] = {}  # what set_rollups set
        self.build_info = Gauge(
            "tierpulse_build_info",
            "1, labelled with the TierPulse version and the policy version this worker runs",
            ["version", "policy_version"],
            registry=registry,
        )
        self.watched_score = Gauge(
            "tierpulse_watched_customer_score",
            "Score of a watched customer",
            ["customer_id"],
            registry=registry,
        )
        self.watched_tier = Gauge(
            "tierpulse_watched_customer_tier",
            "1 for the current tier of a watched customer",
            ["customer_id", "tier"],
            registry=registry,
        )

    def initialise(
        self, topics: Iterable[str], rules: Iterable[tuple[str, str]], sinks: Iterable[str]
    ) -> None:
        """Create every bounded label set at zero, so dashboards and alerts see a healthy 0, not nothing."""
        for topic in topics:
            for outcome in ("accepted", "duplicate", "invalid", "late"):
                self.events.labels(topic, outcome)
            self.dead_letters.labels(topic)
        for rule, severity in rules:
            self.alerts_firing.labels(rule, severity)
            for state in ("firing", "resolved"):
                self.alerts.labels(rule, severity, state)
        for stage in ("message", "evaluation", "shadow"):
            self.internal_errors.labels(stage)
        for sink in sinks:
            self.sink_errors.labels(sink)
            self.sink_up.labels(sink).set(1)
            self.sink_waiting.labels(sink)

    def set_rollups(self, dimension: str, rollups: list[dict[str, Any]]) -> None:
        """Replace one dimension's rollup series (``rollups``: bounded already)."""
        for gauge, labels in self._rollup_series.pop(dimension, []):
            gauge.remove(*labels)
        series: list[tuple[Gauge, tuple[str, ...]]] = []
        for rollup in rollups:
            name = rollup["name"]
            series.append((self.rollup_revenue, (dimension, name)))
            self.rollup_revenue.labels(dimension, name).set(rollup["revenue"])
            for tier, n in rollup["tiers"].items():
                series.append((self.rollup_customers, (dimension, name, tier)))
                self.rollup_customers.labels(dimension, name, tier).set(n)
            for tier, revenue in (rollup.get("revenue_by_tier") or {}).items():
                series.append((self.rollup_tier_revenue, (dimension, name, tier)))
                self.rollup_tier_revenue.labels(dimension, name, tier).set(revenue)
            for severity, n in rollup["alerts"].items():
                series.append((self.rollup_alerts, (dimension, name, severity)))
                self.rollup_alerts.labels(dimension, name, severity).set(n)
        self._rollup_series[dimension] = series

    def set_alerts_firing(
        self, rules: Iterable[tuple[str, str]], counts: Mapping[tuple[str, str], int]
    ) -> None:
        """Alerts firing now per rule of the policy, as the partitions owned here store them."""
        for rule, severity in rules:
            self.alerts_firing.labels(rule, severity).set(counts.get((rule, severity), 0))

    def set_population(self, population: Mapping[tuple[str, str, tuple[int, ...], str | None], int]) -> None:
        """Customers per tier and segment, per KPI band and segment (models/kpi_bands.py), and
        per live and shadow tier (streams/pipeline.py, Counted)."""
        tiers: Tally[tuple[str, str]] = Tally()
        bands: Tally[tuple[str, str, str]] = Tally()
        pairs: Tally[tuple[str, str]] = Tally()
        for (tier, segment, banded, shadow_tier), n in population.items():
            tiers[(tier, segment)] += n
            for kpi, band in zip(KPI_BANDS, banded, strict=False):
                bands[(kpi, segment, band_label(kpi, band))] += n
            if shadow_tier is not None:
                pairs[(tier, shadow_tier)] += n
        self.shadow_customers.clear()
        for (tier, shadow_tier), n in pairs.items():
            self.shadow_customers.labels(tier, shadow_tier).set(n)
        self.shadow_differing.set(sum(n for (tier, shadow_tier), n in pairs.items() if tier != shadow_tier))
        self.customers.clear()
        for (tier, segment), n in tiers.items():
            self.customers.labels(tier, segment).set(n)
        self.kpi_customers.clear()
        for (name, segment, label), n in bands.items():
            self.kpi_customers.labels(name, segment, label).set(n)

    def count_outcomes(self, tally: Tally[tuple[str, str]], internal_errors: Tally[str]) -> None:
        for (topic, outcome), n in tally.items():
            self.events.labels(topic, outcome).inc(n)
        for stage, n in internal_errors.items():
            self.internal_errors.labels(stage).inc(n)

    def observe(self, evaluation: Evaluation) -> None:
        """One evaluation: changes and alerts are counted, KPIs and watched customers observed."""
        snapshot = evaluation.snapshot
        if evaluation.change is not None:
            change = evaluation.change
            self.tier_changes.labels(change.previous_tier, change.new_tier, change.segment).inc()
        if evaluation.shadow_change is not None:
            change = evaluation.shadow_change
            self.shadow_tier_changes.labels(change.previous_tier, change.new_tier, change.segment).inc()
        for alert in evaluation.alerts:
            self.alerts.labels(alert.rule, alert.severity, alert.state).inc()
        if evaluation.changed:
            for name, histogram in self.kpi.items():
                value = snapshot.kpis.value(name)  # type: ignore[arg-type]
                if value is not None:
                    histogram.labels(snapshot.segment).observe(value * _IN_SECONDS.get(name, 1))
        if snapshot.customer_id in self.watch_list:
            if snapshot.score is not None:
                self.watched_score.labels(snapshot.customer_id).set(snapshot.score)
            for tier in self.tiers:
                self.watched_tier.labels(snapshot.customer_id, tier).set(1 if tier == snapshot.tier else 0)
