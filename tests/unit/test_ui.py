"""The web UI's pages rendered from real customer states, without a worker: what they show,
that input data is escaped, that Chinese text is kept, the index's tiers, paging, name search
and revenue at risk."""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from models.alerts import firing
from models.evaluation import Snapshot, current_snapshot, evaluate
from models.event_time import MICROS_PER_DAY, Window
from models.events import CustomerProfile
from models.kpis import KPI_NAMES
from models.outputs import tier_change_body
from models.policy import load_policy
from models.state import CustomerState
from sinks.names import PAGE, NameMatch, NameSearch, search_key
from sinks.redis import NoSnapshots
from streams.settings import Settings
from streams.ui import add_ui_views
from streams.ui_pages import (
    CustomerPage,
    customer_page,
    format_kpi,
    format_score,
    index_page,
    render_customer,
    render_index,
    render_message,
    sparkline,
)
from streams.web import page_of
from tests.unit.builders import Pages, delivered, placed, ticket, us

POLICY = load_policy()
WINDOW = Window(MICROS_PER_DAY, 30)
XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
REPO = Path(__file__).resolve().parents[2]


def scored(
    customer_id: str, name: str = "王芳", account_manager: str = "李雷", ticket_id: str = "t-9"
) -> tuple[CustomerState, Snapshot, list[dict[str, Any]]]:
    """A customer with orders (some late), an unanswered P1 ticket, and two evaluations; its
    snapshot and its tier history, newest first, as Redis keeps it."""
    state = CustomerState(customer_id)
    profile = {"customer_id": customer_id, "segment": "standard", "name": name, "region": "华东"}
    state.set_profile(CustomerProfile.model_validate({**profile, "account_manager": account_manager}))
    history = []
    for n in range(6):
        state.absorb(placed(f"o{n}", n, amount="900", promised_day=n + 2, customer=customer_id), WINDOW)
        state.absorb(delivered(f"o{n}", n + (1 if n < 4 else 5), n + 2, customer=customer_id), WINDOW)
        change = evaluate(state, POLICY, WINDOW, us(n + 3)).change
        history += [tier_change_body(change)] if change else []
    state.absorb(ticket(ticket_id, "opened", 9, customer=customer_id, priority="P1"), WINDOW)
    change = evaluate(state, POLICY, WINDOW, us(9, 90)).change  # the P1 ticket's SLA has passed
    history += [tier_change_body(change)] if change else []
    snapshot = current_snapshot(state, POLICY, WINDOW)
    assert snapshot is not None
    return state, snapshot, history[::-1]


def page_of_customer(state: CustomerState, snapshot: Snapshot, history: Any, **kw: Any) -> CustomerPage:
    return customer_page(snapshot, state.segment(POLICY), state.profile, firing(state), history, **kw)


def rows(html: str, table: str) -> list[tuple[str, str]]:
    """(kpi, the row's HTML) of one table of the customer page, in page order."""
    body = html.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<tr data-kpi="([^"]+)">(.*?)</tr>', body, re.S)


def test_the_customer_page_shows_its_tier_score_and_every_kpi_value() -> None:
    state, snapshot, history = scored("客户-0001")
    html = render_customer(page_of_customer(state, snapshot, history))
    assert f'id="tier">{snapshot.tier}<' in html
    assert f'id="score">{format_score(snapshot.score)}<' in html and snapshot.score is not None
    shown = dict(rows(html, "weighted") + rows(html, "others"))
    assert sorted(shown) == sorted(KPI_NAMES)  # each KPI once, weighted or not
    for name in KPI_NAMES:
        assert f">{format_kpi(name, getattr(snapshot.kpis, name))}<" in shown[name], name
    assert history and html.count("<li>") == len(history)  # the history, an entry per change
    assert "<polyline points=" in html


def test_chinese_text_is_shown_verbatim_in_a_utf8_page() -> None:
    state, snapshot, history = scored("客户-0001", name="王芳", account_manager="李雷")
    html = render_customer(page_of_customer(state, snapshot, history))
    assert '<meta charset="utf-8">' in html and '<html lang="en">' in html
    for text in ("客户-0001", "王芳", "李雷", "华东"):
        assert text in html
    assert "&#" not in html  # not turned into character references either


def test_input_data_is_escaped_and_never_markup() -> None:
    state, snapshot, history = scored(XSS, name=XSS, account_manager=XSS, ticket_id=XSS)
    assert any(alert.subject == XSS for alert in firing(state))  # the ticket is shown too
    page = page_of_customer(
        state,
        snapshot,
        history,
        grafana_url="https://grafana.example",
        alertmanager_ui_url="https://am.example",
    )
    html = render_customer(page)
    assert ESCAPED in html and "<script" not in html
    assert html.count(ESCAPED) >= 4  # id, name, account manager, ticket
    listing = index_page(
        ("key", "unrated"),
        {"account_manager": [{"name": XSS, "revenue": 1.0, "tiers": {"key": 1}, "alerts": {}}]},
        query=XSS,
        found=False,
        search=NameSearch((NameMatch(XSS, XSS),), True),
        listing=("key", [XSS], None, XSS),
    )
    html = render_index(listing)
    assert ESCAPED in html and "<script" not in html
    assert html.count(ESCAPED) >= 6  # the query twice, a match's name and id, a manager, an id
    assert "%3Cscript%3Ealert%281%29%3C%2Fscript%3E" in html  # in the links, quoted
    assert "<script" not in render_message(XSS, XSS)


def test_weighted_kpis_come_weakest_first_and_their_lost_points_make_up_the_score() -> None:
    state, snapshot, history = scored("c-weak")
    page = page_of_customer(state, snapshot, history)
    lost = [k.points_lost for k in page.weighted]
    assert lost == sorted(lost, reverse=True) and lost[0] > 0
    assert page.weighted[0].name == "on_time_delivery_rate"  # two late deliveries out of six
    assert snapshot.score is not None and abs(100 - sum(lost) - snapshot.score) < 1e-9
    html = render_customer(page)
    assert [name for name, _ in rows(html, "weighted")] == [k.name for k in page.weighted]


def test_without_redis_the_history_part_says_so_and_the_rest_is_shown() -> None:
    state, snapshot, _ = scored("c-alone")
    html = render_customer(page_of_customer(state, snapshot, None, history_note="Redis at x: refused"))
    assert 'id="history-unavailable"' in html and "Redis at x: refused" in html
    assert f'id="score">{format_score(snapshot.score)}<' in html


def test_links_to_grafana_and_alertmanager_only_when_their_urls_are_set() -> None:
    state, snapshot, history = scored("客户/7")
    assert page_of_customer(state, snapshot, history).links == ()
    page = page_of_customer(
        state, snapshot, history, grafana_url="https://g.example/", alertmanager_ui_url="https://am.example"
    )
    grafana, alertmanager = (link.href for link in page.links)
    assert grafana == "https://g.example/d/tierpulse-business?var-segment=standard"
    assert alertmanager.startswith("https://am.example/#/alerts?filter=%7Bcustomer_id%3D%22%E5%AE%A2")


def test_the_sparkline_runs_oldest_to_newest_over_the_scores() -> None:
    assert sparkline([0.0, 100.0]) == "0.0,48.0 240.0,0.0"
    assert sparkline([50.0]) == "0.0,24.0 240.0,24.0"
    assert sparkline([]) == "" and sparkline([None]) == ""


def test_the_index_lists_the_tiers_the_rollups_and_the_next_page_cursor() -> None:
    rollups = {
        "account_manager": [
            {
                "name": "李雷",
                "revenue": 1500.5,
                "mean_score": 71.25,
                "tiers": {"key": 2},
                "alerts": {},
                "revenue_by_tier": {"key": 1500.5},
            },
            {
                "name": "ana",
                "revenue": 10.0,
                "mean_score": 20.0,
                "tiers": {"at_risk": 1},
                "alerts": {"warning": 2},
                "revenue_by_tier": {"at_risk": 1234.5},
            },
            {  # written before revenue per tier was kept: not known yet
                "name": "old",
                "revenue": 9999.0,
                "mean_score": None,
                "tiers": {"at_risk": 1},
                "alerts": {},
                "revenue_by_tier": None,
            },
        ],
        "region": [
            {
                "name": "华东",
                "revenue": 1510.5,
                "mean_score": 54.2,
                "tiers": {"key": 2, "at_risk": 1},
                "alerts": {},
            }
        ],
    }
    ids = [f"c{n:02d}" for n in range(7)]
    page, cursor = page_of(ids, None, 3)
    view = index_page((*POLICY.tiers, "unrated"), rollups, listing=("key", page, None, cursor))
    assert [(t.tier, t.customers) for t in view.tiers] == [
        ("strategic", 0),
        ("key", 2),
        ("standard", 0),
        ("at_risk", 1),
        ("unrated", 0),
    ]
    html = render_index(view)
    for tier in POLICY.tiers:
        assert f'href="/ui?tier={tier}">{tier}</a>' in html
    assert 'id="next" href="/ui?tier=key&amp;cursor=c02"' in html
    assert all(f'href="/ui/customers/{c}">{c}</a>' in html for c in page) and "c03" not in html
    assert "李雷" in html and "1,500.50" in html and "71.2" in html
    assert '<td class="num at-risk">1</td>' in html  # ana's customer at risk
    managers = view.rollups[0]
    # The most revenue at risk first; unknown ranks as none, then by revenue.
    assert [(r.name, r.revenue_at_risk) for r in managers.rows] == [
        ("ana", "1,234.50"),
        ("old", "—"),
        ("李雷", "0.00"),
    ]
    assert '<th class="num">revenue at risk</th>' in html
    assert '<td class="num at-risk">1,234.50</td>' in html and '<td class="num">0.00</td>' in html
    last = render_index(index_page(("key",), rollups, listing=("key", ["c06"], "c05", None)))
    assert 'id="next"' not in last and "after c05" in last


def test_the_index_without_redis_and_a_search_for_nobody() -> None:
    html = render_index(index_page(("key", "unrated"), None, note="Counts and lists live in Redis: down"))
    assert "Counts and lists live in Redis: down" in html and "—" in html
    html = render_index(
        index_page(("key",), {"region": []}, query="nobody", found=False, search=NameSearch((), False))
    )
    assert "No customer nobody has a snapshot, and no customer name starts with it." in html
    assert 'value="nobody"' in html and 'id="matches"' not in html


def test_a_name_search_lists_its_matches_a_page_at_a_time_and_an_id_found_too() -> None:
    first = NameSearch(tuple(NameMatch(f"c{n}", f"王芳 {n}") for n in range(PAGE)), True)
    view = index_page(("key",), {"region": []}, query="王", found=False, search=first)
    html = render_index(view)
    assert html.count('<tr><td><a href="/ui/customers/c') == PAGE and ">王芳 0</a>" in html
    assert f'id="next-matches" href="/ui?q=%E7%8E%8B&amp;from={PAGE}"' in html
    last = NameSearch((NameMatch("c99", "王五"),), False)
    view = index_page(("key",), {"region": []}, query="王", found=True, search=last, search_from=PAGE)
    html = render_index(view)
    assert f"from match {PAGE + 1}" in html and "next-matches" not in html
    assert 'The customer with this id: <a href="/ui/customers/%E7%8E%8B">王</a>' in html
    beyond = index_page(("key",), {}, query="王", found=False, search=NameSearch((), False), search_from=50)
    assert beyond.search_note == "No more customers whose name starts with 王."


def test_every_template_is_package_data_of_the_wheel() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]["streams"]
    templates = sorted((REPO / "streams" / "templates").iterdir())
    assert templates
    for template in templates:
        assert any(fnmatch(f"templates/{template.name}", p) for p in patterns), template.name
    assert "jinja2" in " ".join(
        tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    )


class _Web:
    def html(self, value: str, *, content_type: str, status: int = 200, headers: Any = None) -> Any:
        return {"body": value, "content_type": content_type, "status": status, "headers": headers or {}}


class _Request:
    def __init__(self, query: dict[str, str] | None = None, authorization: str | None = None) -> None:
        self.query = query or {}
        self.headers = {"Authorization": authorization} if authorization else {}


class _Redis:
    """The reads the UI makes of the snapshot sink, from a few customers."""

    def __init__(
        self,
        snapshots: dict[str, Snapshot],
        history: list[dict[str, Any]],
        names: dict[str, str] | None = None,
    ) -> None:
        self.snapshots, self.changes, self.names = snapshots, history, names or {}

    async def search_names(self, query: str, start: int = 0, count: int = PAGE) -> NameSearch:
        """As the index orders and matches them (tests/unit/test_redis_sink.py checks the index)."""
        key = search_key(query)
        found = sorted(
            (search_key(name), name, customer)
            for customer, name in self.names.items()
            if key and search_key(name).startswith(key)
        )[start:]
        return NameSearch(tuple(NameMatch(c, name) for _, name, c in found[:count]), len(found) > count)

    async def history(self, customer_id: str) -> list[dict[str, Any]]:
        return self.changes

    async def has_snapshot(self, customer_id: str) -> bool:
        return customer_id in self.snapshots

    async def customers(self, tier: str | None, owners: dict[str, str]) -> list[str]:
        return sorted(c for c, s in self.snapshots.items() if tier is None or s.tier == tier)

    async def rollups(self, dimension: str) -> list[dict[str, Any]]:
        tiers = Counter(s.tier for s in self.snapshots.values())
        return [
            {"name": "unassigned", "revenue": 1.0, "mean_score": None, "tiers": dict(tiers), "alerts": {}}
        ]


def _views(redis_sink: Any, customers: dict[bytes, bytes], **settings: Any) -> dict[str, Any]:
    app = Pages()
    add_ui_views(app, Settings(**settings), POLICY, customers, redis_sink)  # type: ignore[arg-type]
    return app.pages


async def test_the_pages_read_the_table_and_redis_and_say_what_they_cannot_read() -> None:
    state, snapshot, history = scored("客户-0001")
    table = {"客户-0001".encode(): state.to_bytes()}
    pages = _views(_Redis({"客户-0001": snapshot}, history, {"客户-0001": "王芳", "c-2": "王五"}), table)
    customer, index = pages["/ui/customers/{customer_id}"], pages["/ui"]
    shown = await customer(_Web(), _Request(), "客户-0001")
    assert shown["status"] == 200 and shown["content_type"] == "text/html"
    assert "王芳" in shown["body"] and shown["body"].count("<li>") == len(history)
    assert (await customer(_Web(), _Request(), "nobody"))["status"] == 404
    found = await index(_Web(), _Request({"q": " 客户-0001 "}))
    assert found["status"] == 302 and found["headers"]["Location"] == "/ui/customers/%E5%AE%A2%E6%88%B7-0001"
    by_name = await index(_Web(), _Request({"q": "王"}))  # the start of a name: the customers so named
    assert by_name["status"] == 200 and ">王芳</a>" in by_name["body"] and ">王五</a>" in by_name["body"]
    assert by_name["body"].index("王五") < by_name["body"].index("王芳")  # by name (五 < 芳)
    only = await index(_Web(), _Request({"q": "王芳", "from": "x"}))  # a bad start is the first page
    assert 'href="/ui/customers/%E5%AE%A2%E6%88%B7-0001"' in only["body"] and "王五" not in only["body"]
    listed = await index(_Web(), _Request({"tier": snapshot.tier}))
    assert listed["status"] == 200 and 'href="/ui/customers/%E5%AE%A2%E6%88%B7-0001"' in listed["body"]
    assert "No tier gold" in (await index(_Web(), _Request({"tier": "gold"})))["body"]

    off = _views(NoSnapshots(), table)  # no Redis: the history part and the index say so
    shown = await off["/ui/customers/{customer_id}"](_Web(), _Request(), "客户-0001")
    assert shown["status"] == 200 and 'id="history-unavailable"' in shown["body"] and "王芳" in shown["body"]
    searched = await off["/ui"](_Web(), _Request({"q": "客户-0001"}))
    assert searched["status"] == 200 and "Counts and lists live in Redis" in searched["body"]
    assert 'href="/ui/customers/%E5%AE%A2%E6%88%B7-0001"' in searched["body"]  # the page may know


async def test_the_pages_ask_for_the_api_token_when_one_is_set() -> None:
    state, *_ = scored("c1")
    pages = _views(_Redis({}, []), {b"c1": state.to_bytes()}, http_token="s3cret")
    for path, args in (("/ui/customers/{customer_id}", ("c1",)), ("/ui", ())):
        refused = await pages[path](_Web(), _Request(), *args)
        assert refused["status"] == 401 and refused["headers"] == {"WWW-Authenticate": "Bearer"}
        assert (await pages[path](_Web(), _Request(authorization="Bearer s3cret"), *args))["status"] == 200


def test_a_page_asked_for_again_reuses_the_scored_state_until_the_stored_one_changes() -> None:
    from streams.ui import _Scored
    from tests.unit.builders import placed, us

    policy, window = load_policy(), Window(MICROS_PER_DAY, 30)
    state = CustomerState("c1")
    state.absorb(placed("o1", 1, customer="c1"), window)
    evaluate(state, policy, window, us(2))
    stored = state.to_bytes()
    scored = _Scored(policy, window, size=2)
    first = scored.get("c1", stored)
    assert first is not None and scored.get("c1", bytes(stored)) is not None
    assert scored.get("c1", bytes(stored))[0] is first[0]  # type: ignore[index]  # not decoded again
    scored.keep_page("c1", "<p>page</p>")
    assert scored.page("c1") == "<p>page</p>"
    state.absorb(placed("o2", 2, customer="c1"), window)
    evaluate(state, policy, window, us(3))
    changed = scored.get("c1", state.to_bytes())
    assert changed is not None and changed[0] is not first[0]
    assert scored.page("c1") is None  # the page of the state before
    assert changed[1].kpis.order_count == 2
    assert scored.get("nobody", CustomerState("nobody").to_bytes()) is None  # never scored
    for n in range(3):  # bounded: the oldest goes
        other = CustomerState(f"x{n}")
        other.absorb(placed("o", 1, customer=f"x{n}"), window)
        evaluate(other, policy, window, us(2))
        scored.get(f"x{n}", other.to_bytes())
    assert list(scored._seen) == ["x1", "x2"]
