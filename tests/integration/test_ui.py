"""The web UI in a real browser (Debian's chromium, headless, driven by selenium) against a real
worker: a customer page shows what the snapshot in Redis says, formatted as the page formats it;
a profile that carries a script is shown as text and never runs; Chinese text arrives intact;
the index lists the tiers and rollups (with their revenue at risk), its search opens a
customer's page by id and lists customers by the start of their name.

``TIERPULSE_UI_SCREENSHOTS=1`` also saves the pages to docs/ui-customer.png and
docs/ui-index.png (for the README; install fonts-noto-cjk first, or the Chinese glyphs are
boxes in the picture — the text checks do not depend on fonts).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from deploy import services
from models.kpis import KPI_NAMES
from streams.ui_pages import format_kpi, format_score
from tests.integration.harness import REPO, ScorerRun

XSS = "<script>window.__xss=1</script>"
HOSTILE, CHINESE = "acme-xss", "客户-0001"
BASE = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=20)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    # Debian's packages, installed when absent as the services are (root on CI), else one line.
    try:
        chromium = services._require_binary("chromium", "chromium")
        chromedriver = services._require_binary("chromedriver", "chromium-driver")
    except services.ServiceError as error:
        pytest.fail(str(error), pytrace=False)
    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _message(kind: str, body: dict[str, Any]) -> tuple[str, bytes, bytes]:
    return kind, body["customer_id"].encode(), json.dumps(body, ensure_ascii=False).encode()


def _orders(customer: str, days: range, late_from: int) -> list[tuple[str, bytes, bytes]]:
    """An order a day, promised for the next day; delivered half a day early until ``late_from``,
    two days late after; produced in event-time order, as a live producer sends them."""
    messages = []
    for day in days:
        promised = (BASE + timedelta(days=day + 1)).isoformat()
        common = {"customer_id": customer, "order_id": f"{customer}-{day}", "promised_at": promised}
        delivered = BASE + timedelta(days=day + (0.5 if day < late_from else 3))
        messages += [
            _message(
                "orders",
                {
                    **common,
                    "event_id": f"{customer}-placed-{day}",
                    "type": "placed",
                    "amount": "1800.00",
                    "occurred_at": (BASE + timedelta(days=day)).isoformat(),
                },
            ),
            _message(
                "orders",
                {
                    **common,
                    "event_id": f"{customer}-delivered-{day}",
                    "type": "delivered",
                    "occurred_at": delivered.isoformat(),
                },
            ),
        ]
    return messages


def _in_event_time_order(messages: list[tuple[str, bytes, bytes]]) -> list[tuple[str, bytes, bytes]]:
    return sorted(messages, key=lambda message: str(json.loads(message[2])["occurred_at"]))


def _profiles() -> list[tuple[str, bytes, bytes]]:
    return [
        _message(
            "customers",
            {
                "customer_id": HOSTILE,
                "segment": "standard",
                "name": XSS,
                "account_manager": XSS,
                "region": "west",
            },
        ),
        _message(
            "customers",
            {
                "customer_id": CHINESE,
                "segment": "standard",
                "name": "王芳",
                "account_manager": "李雷",
                "region": "华东",
            },
        ),
    ]


def _visible(driver: WebDriver) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


def _screenshot(driver: WebDriver, name: str) -> None:
    if os.environ.get("TIERPULSE_UI_SCREENSHOTS") != "1":
        return
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(600, int(height) + 40))
    driver.save_screenshot(str(REPO / "docs" / name))
    driver.set_window_size(1280, 1000)


def _fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), str(response.headers["Content-Type"])
    except urllib.error.HTTPError as error:
        return error.code, str(error.headers["Content-Type"])


def _shows_the_snapshot(driver: WebDriver, snapshot: dict[str, str]) -> None:
    """The page's tier, score and every KPI value are the snapshot's, as the page formats them."""
    assert driver.find_element(By.ID, "tier").text == snapshot["tier"]
    score = float(snapshot["score"]) if snapshot["score"] else None
    assert driver.find_element(By.ID, "score").text == format_score(score)
    for name in KPI_NAMES:
        raw = snapshot[name]
        shown = driver.find_element(By.CSS_SELECTOR, f'tr[data-kpi="{name}"] .kpi-value').text
        assert shown == format_kpi(name, float(raw) if raw else None), (name, raw, shown)


async def test_customer_pages_and_the_index_in_a_real_browser(scorer: ScorerRun, browser: WebDriver) -> None:
    _, port = scorer.start_worker()
    base = f"http://127.0.0.1:{port}"
    await scorer.produce(
        [
            *_profiles(),
            *_in_event_time_order(_orders(HOSTILE, range(12), 6) + _orders(CHINESE, range(12), 12)),
        ]
    )
    snapshots = await scorer.finished()
    assert {HOSTILE, CHINESE} <= set(snapshots), snapshots.keys()

    browser.get(f"{base}/ui/customers/{quote(HOSTILE, safe='')}")
    _shows_the_snapshot(browser, snapshots[HOSTILE])
    assert browser.execute_script("return window.__xss") is None  # shown, never run
    assert XSS in _visible(browser)  # the literal text, as the producer sent it
    history = scorer.history(HOSTILE)
    assert history and len(browser.find_elements(By.CSS_SELECTOR, "#history li")) == len(history)

    url = f"{base}/ui/customers/{quote(CHINESE, safe='')}"
    status, content_type = _fetch(url)
    assert status == 200 and content_type.replace(" ", "").lower() == "text/html;charset=utf-8"
    browser.get(url)
    _shows_the_snapshot(browser, snapshots[CHINESE])
    text = _visible(browser)
    assert all(word in text for word in (CHINESE, "王芳", "李雷", "华东")), text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#history li")) == len(scorer.history(CHINESE))
    _screenshot(browser, "ui-customer.png")

    assert _fetch(f"{base}/ui/customers/nobody")[0] == 404

    browser.get(f"{base}/ui")
    text = _visible(browser)
    assert browser.execute_script("return window.__xss") is None
    assert XSS in text and "李雷" in text and "华东" in text  # the rollups' names
    for dimension in ("account_manager", "region"):
        headers = [th.text for th in browser.find_elements(By.CSS_SELECTOR, f"#rollup-{dimension} th")]
        assert headers[:3] == [dimension.replace("_", " "), "revenue", "revenue at risk"], headers
    tiers = browser.find_elements(By.CSS_SELECTOR, "#tiers a")
    assert {a.text for a in tiers} >= {"strategic", "key", "standard", "at_risk", "unrated"}
    _screenshot(browser, "ui-index.png")

    browser.get(f"{base}/ui?tier={quote(snapshots[CHINESE]['tier'])}")
    listed = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#listing a")]
    assert CHINESE in listed

    browser.get(f"{base}/ui?q={quote(CHINESE)}")  # the search opens the customer's page
    assert browser.current_url == url and browser.find_element(By.ID, "tier").text
    browser.get(f"{base}/ui?q=nobody")
    assert "No customer nobody has a snapshot, and no customer name starts with it." in _visible(browser)

    browser.get(f"{base}/ui?q={quote('王')}")  # the start of a name: a list of the customers so named
    found = [(a.text, a.get_attribute("href")) for a in browser.find_elements(By.CSS_SELECTOR, "#matches a")]
    assert ("王芳", url) in found and (CHINESE, url) in found
    browser.get(f"{base}/ui?q={quote('<SCRIPT>')}")  # casefolded; the name shown as text, never run
    assert [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#matches a")] == [XSS, HOSTILE]
    assert browser.execute_script("return window.__xss") is None
