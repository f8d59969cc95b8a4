"""The worker's web UI: server-rendered HTML pages for people (the JSON pages are streams/web.py).

``/ui/customers/{customer_id}`` is routed to the worker that owns the customer's partition,
like ``/customers/{customer_id}``: it reads the customer's state from the table, and its tier
history from Redis. ``/ui`` (customers per tier, a search by id or by the start of a name, a
tier's ids a page at a time, the rollups per account manager and region) reads Redis, so any
worker answers it. With Redis off or down the pages say so where they would show what it holds,
and show the rest.

What a page shows, and its HTML, is decided in streams/ui_pages.py (pure, tested without a
worker); this module only reads what the pages need. They ask for the same optional bearer
token as the JSON pages (``TIERPULSE_HTTP_TOKEN``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import faust
from faust.web import Request, Response, View

from models.alerts import firing
from models.evaluation import Snapshot, current_snapshot
from models.event_time import Window
from models.policy import Policy
from models.state import CustomerState
from models.tiering import UNRATED
from sinks.base import SinkUnavailable
from sinks.names import NameSearch
from sinks.redis import SnapshotSink
from sinks.rollups import DIMENSIONS
from streams.settings import Settings
from streams.ui_pages import (
    PAGE_SIZE,
    customer_href,
    customer_page,
    index_page,
    render_customer,
    render_index,
    render_message,
)
from streams.web import authorised, bearer_token, page_of

HTML = "text/html"  # aiohttp adds "; charset=utf-8" to a text response


def add_ui_views(
    app: faust.App, settings: Settings, policy: Policy, customers: Any, redis_sink: SnapshotSink
) -> None:
    token = bearer_token(settings)
    tiers = (*policy.tiers, UNRATED)
    scored = _Scored(policy, settings.window)

    def refused(web: View, request: Request) -> Response | None:
        """401 unless the request carries the token (when one is set)."""
        if authorised(request.headers.get("Authorization"), token):
            return None
        page = render_message("Token required", "These pages ask for the bearer token of the HTTP API.")
        return web.html(page, content_type=HTML, status=401, headers={"WWW-Authenticate": "Bearer"})

    @app.page("/ui/customers/{customer_id}")
    @app.table_route(table=customers, match_info="customer_id")
    async def customer(web: View, request: Request, customer_id: str) -> Response:
        if (refusal := refused(web, request)) is not None:
            return refusal
        stored = customers.get(customer_id.encode("utf-8"))
        seen = None if stored is None else scored.get(customer_id, bytes(stored))
        if seen is None:
            page = render_message("Unknown customer", f"No customer {customer_id} has been scored.")
            return web.html(page, content_type=HTML, status=404)
        state, snapshot = seen
        # The same state makes the same page, but for the history, which Redis may get a moment
        # after the state: a page is drawn again after PAGE_SECONDS at the latest.
        html = scored.page(customer_id)
        if html is not None:
            return web.html(html, content_type=HTML)
        history: list[dict[str, object]] | None
        try:
            history, note = await redis_sink.history(customer_id), ""
        except SinkUnavailable as error:
            history, note = None, str(error)
        view = customer_page(
            snapshot,
            state.segment(policy),
            state.profile,
            firing(state),
            history,
            history_note=note,
            grafana_url=settings.grafana_url,
            alertmanager_ui_url=settings.alertmanager_ui_url,
        )
        html = render_customer(view)
        scored.keep_page(customer_id, html)
        return web.html(html, content_type=HTML)

    @app.page("/ui")
    async def index(web: View, request: Request) -> Response:
        """Customers per tier and the rollups; ?q= opens a customer's page when it is an id with
        a snapshot and no customer's name starts with it, else lists the customers whose name
        does (&from= for the next page); ?tier=&cursor= lists a tier's ids a page at a time."""
        if (refusal := refused(web, request)) is not None:
            return refusal
        query = request.query.get("q", "").strip()
        start = _whole(request.query.get("from"))
        found: bool | None = None
        search: NameSearch | None = None
        if query:
            try:
                found = await redis_sink.has_snapshot(query)
                search = await redis_sink.search_names(query, start)
            except SinkUnavailable:
                found, search = None, None
            if found and search is not None and not search.matches and not start:
                return web.html("", content_type=HTML, status=302, headers={"Location": customer_href(query)})
        tier, cursor = request.query.get("tier") or None, request.query.get("cursor") or None
        note = ""
        try:
            rollups = {d: await redis_sink.rollups(d) for d in DIMENSIONS}
            listing = None
            if tier in tiers:
                page, next_cursor = page_of(await redis_sink.customers(tier, {}), cursor, PAGE_SIZE)
                listing = (tier, page, cursor, next_cursor)
        except SinkUnavailable as error:
            rollups, listing, note = None, None, f"Counts and lists live in Redis: {error}"
        if tier is not None and tier not in tiers:
            note = f"No tier {tier}: the tiers are {', '.join(tiers)}."
        view = index_page(
            tiers,
            rollups,
            query=query,
            found=found,
            search=search,
            search_from=start,
            listing=listing,
            note=note,
        )
        return web.html(render_index(view), content_type=HTML)


def _whole(text: str | None) -> int:
    """A page's start from the query string: a whole number from 0 (0 when it is not one)."""
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 0


PAGE_SECONDS = 5.0  # how long a page of an unchanged state is served as drawn


class _Scored:
    """The last states shown, decoded and scored, and their page: a page asked for again, and
    not changed since (the stored bytes are the same), costs neither the decoding nor the KPIs
    (~10 ms for a key account), nor for a few seconds the history's read and the rendering
    (~2 ms). Bounded: the most recent ``size`` customers."""

    def __init__(self, policy: Policy, window: Window, size: int = 1_000) -> None:
        self.policy, self.window, self.size = policy, window, size
        self._seen: OrderedDict[str, tuple[bytes, CustomerState, Snapshot]] = OrderedDict()
        self._pages: dict[str, tuple[float, str]] = {}  # of the states in _seen: (drawn at, page)

    def page(self, customer_id: str) -> str | None:
        kept = self._pages.get(customer_id)
        return kept[1] if kept is not None and time.monotonic() - kept[0] < PAGE_SECONDS else None

    def keep_page(self, customer_id: str, html: str) -> None:
        if customer_id in self._seen:
            self._pages[customer_id] = (time.monotonic(), html)

    def get(self, customer_id: str, stored: bytes) -> tuple[CustomerState, Snapshot] | None:
        seen = self._seen.pop(customer_id, None)
        if seen is None or seen[0] != stored:
            self._pages.pop(customer_id, None)  # drawn from another state
            state = CustomerState.from_bytes(stored)
            snapshot = current_snapshot(state, self.policy, self.window)
            if snapshot is None:
                return None
            seen = (stored, state, snapshot)
        self._seen[customer_id] = seen
        while len(self._seen) > self.size:
            gone, _ = self._seen.popitem(last=False)
            self._pages.pop(gone, None)
        return seen[1], seen[2]
