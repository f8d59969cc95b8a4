"""The worker's HTTP pages: customers, histories, rollups, health and metrics.

Customer pages are routed to the worker that owns the customer's partition (Faust's
``table_route``); the history, list and rollup pages read Redis, so any worker answers them.
With ``TIERPULSE_HTTP_TOKEN`` set, the customer and rollup pages ask for it; the probes and
``/metrics`` stay open, as probes and scrapers expect.
"""

from __future__ import annotations

import hmac
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from models.evaluation import current_snapshot
from models.policy import Policy
from models.state import CustomerState
from sinks.alertmanager import AlertmanagerSink
from sinks.base import SinkUnavailable
from sinks.metrics import ScorerMetrics
from sinks.redis import NoSnapshots, SnapshotSink
from sinks.rollups import DIMENSIONS, at_risk_tier, revenue_at_risk
from streams.settings import Settings


def add_web_views(
    app: faust.App,
    settings: Settings,
    policy: Policy,
    customers: Any,
    metrics: ScorerMetrics,
    redis_sink: SnapshotSink,
    alertmanager: AlertmanagerSink | None = None,
) -> None:
    token = bearer_token(settings)
    at_risk = at_risk_tier(policy.tiers)

    def refused(web: View, request: Request) -> Response | None:
        """401 unless the request carries the token (when one is set)."""
        if authorised(request.headers.get("Authorization"), token):
            return None
        return web.json(
            {"error": "a bearer token is required"}, status=401, headers={"WWW-Authenticate": "Bearer"}
        )

    @app.page("/customers/{customer_id}")
    @app.table_route(table=customers, match_info="customer_id")
    async def customer(web: View, request: Request, customer_id: str) -> Response:
        if (refusal := refused(web, request)) is not None:
            return refusal
        stored = customers.get(customer_id.encode("utf-8"))
        snapshot = (
            None
            if stored is None
            else current_snapshot(CustomerState.from_bytes(bytes(stored)), policy, settings.window)
        )
        if snapshot is None:
            return web.json({"error": f"unknown customer {customer_id}"}, status=404)
        return web.json(snapshot.as_json())

    @app.page("/customers/{customer_id}/history")
    async def history(web: View, request: Request, customer_id: str) -> Response:
        """The last 50 tier changes, newest first, as sent (kept in Redis: any worker answers)."""
        if (refusal := refused(web, request)) is not None:
            return refusal
        try:
            return web.json(await redis_sink.history(customer_id))
        except SinkUnavailable as error:
            return web.json({"error": str(error)}, status=503)

    @app.page("/customers")
    async def customers_in(web: View, request: Request) -> Response:
        """Customer ids by tier and owner, sorted, a page at a time: ?tier=&account_manager=
        &region=&limit= (default 100, at most 1000) &cursor= (the last id of the previous page)."""
        if (refusal := refused(web, request)) is not None:
            return refusal
        query = request.query
        owners = {d: query[d] for d in DIMENSIONS if query.get(d)}
        try:
            limit = min(max(int(query.get("limit", 100)), 1), 1000)
            found = await redis_sink.customers(query.get("tier") or None, owners)
        except ValueError:
            return web.json({"error": "limit must be a whole number"}, status=400)
        except SinkUnavailable as error:
            return web.json({"error": str(error)}, status=503)
        page, cursor = page_of(found, query.get("cursor"), limit)
        return web.json({"customers": page, "cursor": cursor})

    @app.page("/rollups/{dimension}")
    async def rollups(web: View, request: Request, dimension: str) -> Response:
        """Every account manager's or region's rollup (contract v2 §5), by revenue, each with
        its revenue at risk (of its customers in the policy's worst tier; null until known)."""
        if (refusal := refused(web, request)) is not None:
            return refusal
        if dimension not in DIMENSIONS:
            return web.json({"error": f"no dimension {dimension}: {' or '.join(DIMENSIONS)}"}, status=404)
        try:
            found = await redis_sink.rollups(dimension)
        except SinkUnavailable as error:
            return web.json({"error": str(error)}, status=503)
        return web.json([{**r, "revenue_at_risk": revenue_at_risk(r, at_risk)} for r in found])

    @app.page("/rollups/{dimension}/{name}")
    async def rollup(web: View, request: Request, dimension: str, name: str) -> Response:
        """One rollup with its customers per tier."""
        if (refusal := refused(web, request)) is not None:
            return refusal
        try:
            found = await redis_sink.rollup(dimension, name) if dimension in DIMENSIONS else None
        except SinkUnavailable as error:
            return web.json({"error": str(error)}, status=503)
        if found is None:
            return web.json({"error": f"no rollup {dimension}/{name}"}, status=404)
        at_risk_revenue = revenue_at_risk(found, at_risk)
        return web.json({"dimension": dimension, "name": name, **found, "revenue_at_risk": at_risk_revenue})

    def health() -> dict[str, object]:
        return {
            "redis": _sink_state(redis_sink),
            "redis_waiting": redis_sink.waiting,
            # Not part of readiness: alerts still reach their topic, and wait here for it.
            "alertmanager": "off" if alertmanager is None else "up" if alertmanager.healthy else "down",
            "rebalancing": bool(app.rebalancing),
            # Input this worker still has to process, over the partitions it owns.
            "lag_messages": int(sum(s.value for m in metrics.processed_lag.collect() for s in m.samples)),
            "policy_version": policy.version,
        }

    @app.page("/healthz")
    async def healthz(web: View, request: Request) -> Response:
        """Liveness: the process serves requests (a restart would not bring Redis back)."""
        return web.json({"status": "ok", **health()})

    @app.page("/readyz")
    async def readyz(web: View, request: Request) -> Response:
        """Readiness: 503 while Redis (when configured) is down, a rebalance is under way or (with
        TIERPULSE_READY_MAX_LAG_MESSAGES) the worker is that far behind its input, so that a
        probe takes the worker out of a load balancer then."""
        state = health()
        ready = is_ready(state, settings.ready_max_lag_messages)
        return web.json({"status": "ready" if ready else "not ready", **state}, status=200 if ready else 503)

    @app.page("/metrics")
    async def prometheus(web: View, request: Request) -> Response:
        return web.bytes(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])


def _sink_state(sink: SnapshotSink) -> str:
    return "off" if isinstance(sink, NoSnapshots) else "up" if sink.healthy else "down"


def bearer_token(settings: Settings) -> str | None:
    """The Authorization header the customer and rollup pages ask for (None: no token set)."""
    return None if settings.http_token is None else f"Bearer {settings.http_token.get_secret_value()}"


def authorised(given: str | None, token: str | None) -> bool:
    """Whether a request's Authorization header carries the token (any does when none is set);
    compared in constant time."""
    return token is None or hmac.compare_digest((given or "").encode(), token.encode())


def page_of(found: list[str], cursor: str | None, limit: int) -> tuple[list[str], str | None]:
    """One page of sorted ids after ``cursor``, and the cursor of the next page (None: the last)."""
    page = [c for c in found if cursor is None or c > cursor][:limit]
    more = bool(page) and len(page) == limit and page[-1] != found[-1]
    return page, page[-1] if more else None


def is_ready(state: dict[str, object], max_lag_messages: int = 0) -> bool:
    """Readiness: Redis (when configured) up, no rebalance under way, and (``max_lag_messages``
    over 0) no more input left to process than that. Alertmanager does not count: the alerts
    still reach their topic, and wait for it."""
    lag = state.get("lag_messages", 0)
    behind = max_lag_messages > 0 and isinstance(lag, int) and lag > max_lag_messages
    return state["redis"] != "down" and not state["rebalancing"] and not behind
