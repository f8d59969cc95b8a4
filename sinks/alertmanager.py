"""Firing customer alerts to Prometheus Alertmanager (its v2 API), so that its view equals ours.

Level, not edge. After each batch the worker says, per customer it stored, which alerts fire
now (models.alerts.firing); ``FiringAlerts`` remembers that per partition owned here (it is
also what the ``tierpulse_alerts_firing`` gauge counts). The sink posts what is new as firing
and what went away as resolved (``endsAt`` now, with the labels it fired with), and re-posts
everything firing every ``resend_seconds`` with ``endsAt`` four resends ahead, as Prometheus
does: an alert that a dead worker left behind times out, and one still firing comes back
after an Alertmanager restart. Once a partition is adopted whole (its stored states scanned),
``reconcile`` reads what Alertmanager holds for the partition and resolves what no longer
fires here: a resolution that died with a killed worker.

Posting runs in a task of its own and never holds up scoring; a failed post is retried with
back-off, and nothing waiting is lost (resolutions wait here; firing alerts are re-posted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp

from models.alerts import FiringAlert
from models.event_time import MICROS_PER_SECOND
from models.policy import AlertRule

log = logging.getLogger(__name__)
_POST_AT_MOST = 500  # alerts per request


class FiringAlerts:
    """The alerts firing now in the partitions owned here: partition -> customer -> alerts."""

    def __init__(self) -> None:
        self._by_partition: dict[int, dict[str, dict[str, FiringAlert]]] = {}
        self.changes = 0  # how often what fires changed: the gauge is recounted only then

    def update(
        self, partition: int, customer_id: str, alerts: Iterable[FiringAlert]
    ) -> tuple[list[FiringAlert], list[FiringAlert]]:
        """The customer's alerts firing now; returns (newly firing, no longer firing)."""
        customers = self._by_partition.setdefault(partition, {})
        before = customers.pop(customer_id, {})
        now = {alert.alert_id: alert for alert in alerts}
        if now:
            customers[customer_id] = now
        fired = [alert for alert_id, alert in now.items() if alert_id not in before]
        gone = [alert for alert_id, alert in before.items() if alert_id not in now]
        if fired or gone:
            self.changes += 1
        return fired, gone

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            if self._by_partition.pop(partition, None):
                self.changes += 1

    def of(self, partitions: Iterable[int] | None = None) -> Iterable[tuple[int, FiringAlert]]:
        chosen = self._by_partition if partitions is None else partitions
        for partition in chosen:
            for alerts in self._by_partition.get(partition, {}).values():
                for alert in alerts.values():
                    yield partition, alert

    def holds(self, partition: int, alert: FiringAlert) -> bool:
        """Whether the alert still fires in that partition here."""
        return alert.alert_id in self._by_partition.get(partition, {}).get(alert.customer_id, {})

    def ids(self, partition: int) -> set[str]:
        return {alert.alert_id for _, alert in self.of([partition])}

    def counts(self) -> Counter[tuple[str, str]]:
        """Firing alerts by (rule, severity)."""
        return Counter((alert.rule, alert.severity) for _, alert in self.of())


class AlertmanagerSink:
    name = "alertmanager"

    def __init__(
        self,
        url: str,
        firing: FiringAlerts,
        *,
        service: str,
        rules: Iterable[AlertRule],
        customer_url: str,
        partition_of: Callable[[str], int],
        resend_seconds: float = 60.0,
        max_backoff: float = 30.0,
        on_failure: Callable[[], None] = lambda: None,
    ) -> None:
        """``service``: the label that tells this deployment's alerts from others' in the same
        Alertmanager; ``customer_url``: where a person reads the customer's snapshot."""
        self.url = url.rstrip("/")
        self.firing, self.service = firing, service
        self.rules = {rule.name: rule for rule in rules}
        self.customer_url, self.partition_of = customer_url.rstrip("/"), partition_of
        self.resend_seconds, self.max_backoff = resend_seconds, max_backoff
        self.on_failure = on_failure
        self._waiting: dict[str, tuple[int, dict[str, Any]]] = {}  # alert_id -> (partition, post)
        self._adopted: set[int] = set()  # partitions adopted whole: reconciled at the next resend
        self._failures = 0
        self._retry_at = 0.0
        self._resend_at = 0.0
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self.posted = 0  # alerts posted so far (firing and resolved)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def healthy(self) -> bool:
        return self._failures == 0

    # ------------------------------------------------------------ what the worker says

    def changed(self, partition: int, customer_id: str, alerts: Iterable[FiringAlert]) -> None:
        fired, gone = self.firing.update(partition, customer_id, alerts)
        now = _now()
        for alert in fired:
            self._waiting[alert.alert_id] = (partition, self._post(alert, now))
        for alert in gone:
            self._waiting[alert.alert_id] = (partition, self._post(alert, now, resolved=True))
        if fired or gone:
            self._wake.set()

    def adopted(self, partitions: Iterable[int]) -> None:
        """These partitions' stored states are all scanned: what fires there is known whole."""
        self._adopted |= set(partitions)
        self._resend_at = 0.0  # post and reconcile now, not at the next resend
        self._wake.set()

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions taken away: their new owner posts and reconciles them."""
        gone = set(partitions)
        self.firing.forget(gone)
        self._adopted -= gone
        self._waiting = {k: v for k, v in self._waiting.items() if v[0] not in gone}

    # ------------------------------------------------------------ posting

    async def run(self) -> None:
        """Post what waits, re-post what fires, reconcile what was adopted; until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            self._wake.clear()
            now = time.monotonic()
            if now < self._retry_at:
                continue
            try:
                if now >= self._resend_at:
                    # Set first: an adoption while this re-post awaits asks for the next at once.
                    self._resend_at = now + self.resend_seconds
                    await self._resend()
                await self.flush()
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                self._failed(error)
            except Exception as error:  # a bug or an answer of a shape we did not expect: never
                log.exception("sink=alertmanager posting failed")  # let the task die silently
                self._failed(error)

    async def flush(self) -> None:
        while self._waiting:
            batch = dict(list(self._waiting.items())[:_POST_AT_MOST])
            await self._send([post for _, post in batch.values()])
            for alert_id, entry in batch.items():
                if self._waiting.get(alert_id) is entry:  # (not replaced meanwhile)
                    del self._waiting[alert_id]

    async def _resend(self) -> None:
        """Every alert firing here again, with a fresh ``endsAt``; then the reconciliation."""
        now = _now()
        firing = list(self.firing.of())
        for start in range(0, len(firing), _POST_AT_MOST):
            # Those still firing here: a rebalance between two requests takes partitions away.
            chunk = [(p, a) for p, a in firing[start : start + _POST_AT_MOST] if self.firing.holds(p, a)]
            await self._send([self._post(alert, now) for _, alert in chunk])
        if self._adopted:
            await self._reconcile(now)
        elif not firing and self._failures:  # nothing to post: ask whether it answers again
            await self._get("/api/v2/status")

    async def _reconcile(self, now: datetime) -> None:
        """Resolve what Alertmanager holds for a partition adopted here that does not fire here."""
        held = await self._get("/api/v2/alerts", filter=f'service="{self.service}"')
        stale: list[dict[str, Any]] = []
        firing_ids = {p: self.firing.ids(p) for p in self._adopted}
        for alert in held:
            labels = alert.get("labels") if isinstance(alert, dict) else None
            if not isinstance(labels, dict):
                continue
            customer_id, alert_id = labels.get("customer_id"), labels.get("alert_id")
            if not isinstance(customer_id, str) or alert_id is None:
                continue
            partition = self.partition_of(customer_id)
            if partition in firing_ids and alert_id not in firing_ids[partition]:
                # Never an end before its start (a poster whose clock ran ahead of this one).
                starts = str(alert.get("startsAt") or _rfc3339(now))
                ends = max(_rfc3339(now), starts)
                stale.append({"labels": labels, "startsAt": starts, "endsAt": ends})
        if stale:
            log.info("sink=alertmanager resolving %d alerts no longer firing here", len(stale))
            await self._send(stale)

    def _post(self, alert: FiringAlert, now: datetime, *, resolved: bool = False) -> dict[str, Any]:
        context = alert.context
        labels = {
            "alertname": alert.rule,
            "severity": alert.severity,
            "customer_id": alert.customer_id,
            "segment": context.segment,
            "tier": context.tier,
            "account_manager": context.account_manager,
            "region": context.region,
            "alert_id": alert.alert_id,
            "service": self.service,
        }
        if alert.subject is not None:
            labels["subject"] = alert.subject
        snapshot = f"{self.customer_url}/customers/{quote(alert.customer_id, safe='')}"
        annotations = {"summary": self._summary(alert), "snapshot_url": snapshot}
        runbook = self.rules.get(alert.rule)
        if runbook is not None and runbook.runbook:
            annotations["runbook_url"] = runbook.runbook
        # Event time is when it fired; never after now (Alertmanager refuses starts after ends).
        starts = min(datetime.fromtimestamp(alert.fired_as_of / MICROS_PER_SECOND, UTC), now)
        ends = now if resolved else now + timedelta(seconds=4 * self.resend_seconds)
        return {
            "labels": labels,
            "annotations": annotations,
            "startsAt": _rfc3339(starts),
            "endsAt": _rfc3339(ends),
            "generatorURL": snapshot,
        }

    def _summary(self, alert: FiringAlert) -> str:
        if alert.kpi is None:  # a rule on one ticket: value and threshold are minutes to its deadline
            when = (
                f"{alert.value:.0f} min before its SLA deadline"
                if alert.value >= 0
                else f"{-alert.value:.0f} min past its SLA deadline"
            )
            return (
                f"{alert.customer_id}: ticket {alert.subject} unanswered, {when} "
                f"(alerting from {alert.threshold:g} min before)"
            )
        rule = self.rules.get(alert.rule)
        side = (
            "below" if rule is not None and rule.kpi is not None and rule.kpi.below is not None else "above"
        )
        return f"{alert.customer_id}: {alert.kpi} is {alert.value:g}, {side} {alert.threshold:g}"

    # ------------------------------------------------------------ HTTP

    async def _send(self, alerts: list[dict[str, Any]]) -> None:
        if not alerts:
            return
        async with self._client().post(f"{self.url}/api/v2/alerts", json=alerts) as response:
            if 400 <= response.status < 500 and response.status not in (408, 429):
                # Refused for what they are: sending them again would block every alert after
                # them. Counted and logged; the next re-post sends the firing ones afresh.
                self.on_failure()
                log.error(
                    "sink=alertmanager refused %d alerts status=%d reason=%s",
                    len(alerts),
                    response.status,
                    (await response.text())[:200],
                )
                return
            if response.status >= 300:
                raise aiohttp.ClientResponseError(
                    response.request_info,
                    (),
                    status=response.status,
                    message=(await response.text())[:200],
                )
        self._failures = 0  # Alertmanager answered
        self.posted += len(alerts)

    async def _get(self, path: str, **params: str) -> list[dict[str, Any]]:
        async with self._client().get(f"{self.url}{path}", params=params) as response:
            response.raise_for_status()
            found = await response.json(content_type=None)
        self._failures = 0
        return found if isinstance(found, list) else []

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        return self._session

    def _failed(self, error: BaseException) -> None:
        self._failures += 1
        self.on_failure()
        delay = min(self.max_backoff, 0.5 * 2 ** min(self._failures, 10))
        self._retry_at = time.monotonic() + delay
        self._resend_at = 0.0  # a restarted Alertmanager holds nothing: re-post all once it answers
        log.warning(
            "sink=alertmanager state=down waiting=%d retry_in=%.1fs reason=%s: is it running at %s? "
            "('deploy/dev run' starts one; or unset TIERPULSE_ALERTMANAGER_URL)",
            self.waiting,
            delay,
            error or type(error).__name__,
            self.url,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(instant: datetime) -> str:
    return instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")
