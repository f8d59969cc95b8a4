"""What the worker writes besides its tables: Kafka outputs, Redis, Alertmanager, metrics.

``Outputs`` carries steps 1, 3 and 5 of the write order (streams/app.py) and the metrics that
go with them; ``FiringNow`` tells Alertmanager and the firing gauge what fires after each batch.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from typing import Any

from models.alerts import firing
from models.event_time import MICROS_PER_SECOND, to_rfc3339
from models.outputs import ALERTS, SCHEMA_VERSION, TIER_CHANGES, TIER_CHANGES_SHADOW
from models.policy import Policy
from sinks.alertmanager import AlertmanagerSink, FiringAlerts
from sinks.base import SinkUnavailable
from sinks.kafka import KafkaTopicSink
from sinks.metrics import ScorerMetrics
from sinks.redis import SnapshotSink
from streams.pipeline import BatchResult, Counted, Pipeline

log = logging.getLogger("tierpulse")


class FiringNow:
    """Which alerts fire in the partitions owned here, told after each batch's alerts reached
    their topic: for Alertmanager (when set) and the ``tierpulse_alerts_firing`` gauge."""

    def __init__(
        self,
        firing: FiringAlerts,
        alertmanager: AlertmanagerSink | None,
        metrics: ScorerMetrics,
        policy: Policy,
    ) -> None:
        self.alerts, self.alertmanager, self.metrics = firing, alertmanager, metrics
        self.rules = [(rule.name, rule.severity) for rule in policy.alerts]
        self._counted = -1

    def note(self, result: BatchResult) -> None:
        tell = self.alertmanager.changed if self.alertmanager is not None else self.alerts.update
        for customer_id, (partition, state) in result.states.items():
            tell(partition, customer_id, firing(state))
        for customer_id, (partition, alerts) in result.firing.items():
            if customer_id not in result.states:
                tell(partition, customer_id, alerts)
        if result.scanned_whole and self.alertmanager is not None:
            self.alertmanager.adopted(result.scanned_whole)
        self.count()

    def forget(self, partitions: set[int]) -> None:
        if self.alertmanager is not None:
            self.alertmanager.forget(partitions)
        else:
            self.alerts.forget(partitions)
        self.count()

    def count(self) -> None:
        if self._counted != self.alerts.changes:
            self._counted = self.alerts.changes
            self.metrics.set_alerts_firing(self.rules, self.alerts.counts())


class Outputs:
    """Steps 1, 3 and 5 of the module docstring, and the metrics that go with them."""

    def __init__(
        self,
        sinks: dict[str, KafkaTopicSink],
        redis: SnapshotSink,
        metrics: ScorerMetrics,
        pipeline: Pipeline,
        firing: FiringNow,
    ) -> None:
        self.sinks, self.redis, self.metrics, self.pipeline = sinks, redis, metrics, pipeline
        self.firing = firing
        # What a consumer needs to read a message before parsing it (README, Outputs).
        self.headers = {
            "content-type": b"application/json",
            "tierpulse-schema-version": SCHEMA_VERSION.encode(),
            "tierpulse-policy-version": pipeline.policy.version.encode(),
        }
        shadow = pipeline.shadow
        self.shadow_headers = {  # (the policy that decided a shadow tier change is the candidate)
            **self.headers,
            "tierpulse-policy-version": (shadow or pipeline.policy).version.encode(),
        }

    async def send_input_side(self, result: BatchResult) -> list[Any]:
        """Dead letters and re-keyed input: delivered before the batch's offsets can commit.
        Returns the re-keyed messages' metadata (where they landed)."""
        received = to_rfc3339(time.time_ns() // 1000)
        for key, letter in result.dead_letters:
            body = json.dumps({**letter, "dead_lettered_at": received}, ensure_ascii=False).encode()
            self.sinks["dead_letters"].add_raw(key, body, self.headers)
            self.metrics.dead_letters.labels(letter["topic"]).inc()
        for key, value, headers in result.rekeyed:
            self.sinks["rekeyed"].add_raw(key, value, headers)
            self.metrics.rekeyed.labels(headers.get("tierpulse-kind", b"").decode()).inc()
        await self.sinks["dead_letters"].flush()
        return await self.sinks["rekeyed"].flush()

    async def send_snapshots(self, result: BatchResult, emitted_at: str) -> None:
        """Snapshots, and the tier changes about to be sent (as sent) for the histories."""
        for customer_id, snapshot in result.snapshots.items():
            self.redis.add(snapshot, result.states[customer_id][0])
        for _, outbox in result.outboxes():
            for kind, body in outbox:
                if kind == TIER_CHANGES:
                    self.redis.add_history({**body, "emitted_at": emitted_at})
        try:
            await self.redis.flush()
        except SinkUnavailable as error:
            self.metrics.sink_errors.labels("redis").inc()
            log.warning("sink=redis state=down waiting=%d reason=%s", self.redis.waiting, error)
        # Down also while it waits out its back-off between tries.
        self.metrics.sink_up.labels("redis").set(1 if self.redis.healthy else 0)
        self.metrics.sink_waiting.labels("redis").set(self.redis.waiting)

    async def send_outboxes(self, result: BatchResult, emitted_at: str) -> list[str]:
        """Send every stored outbox, await delivery, empty them; return the customers emptied."""
        delivered = []
        for customer_id, outbox in result.outboxes():
            for kind, body in outbox:
                headers = self.shadow_headers if kind == TIER_CHANGES_SHADOW else self.headers
                self.sinks[str(kind)].add((customer_id, {**body, "emitted_at": emitted_at}), headers)
                log.info(
                    "emit %s customer=%s %s",
                    kind,
                    customer_id,
                    " ".join(f"{k}={body[k]}" for k in _LOGGED if k in body),
                )
            delivered.append(customer_id)
        for kind in (TIER_CHANGES, TIER_CHANGES_SHADOW, ALERTS):
            await self.sinks[kind].flush()
        for customer_id in delivered:
            result.states[customer_id][1].status.outbox.clear()
        return delivered

    def observe(self, result: BatchResult) -> None:
        for evaluation in result.evaluations:
            self.metrics.observe(evaluation)
        self.metrics.count_outcomes(result.outcomes, result.internal_errors)
        self.metrics.state_cache.set(self.pipeline.cached())
        for schedule, customers in self.pipeline.scheduled().items():
            self.metrics.schedule_customers.labels(schedule).set(customers)
        if result.population_changed:
            self.update_population()

    def update_population(self) -> None:
        totals: Counter[Counted] = Counter()
        for tally in self.pipeline.population.values():
            totals.update(tally)
        self.metrics.set_population(totals)

    def update_lag(self) -> None:
        now = time.time_ns() // 1000
        for partition in list(self.pipeline.population):
            as_of = self.pipeline.as_of(partition)
            if as_of is not None:
                self.metrics.event_time_lag.labels(str(partition)).set((now - as_of) / MICROS_PER_SECOND)
                self.metrics.watermark.labels(str(partition)).set(as_of / MICROS_PER_SECOND)


_LOGGED = ("previous_tier", "new_tier", "score", "rule", "state", "value", "as_of")
