"""The HTTP API on a real worker: the optional bearer token (the customer pages ask for it, the
probes and /metrics do not, and it never shows in the log), the probes' status codes, and a
worker without Redis."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.integration.harness import ScorerRun, wait_for

TOKEN = "s3cret-token-for-the-test"


def status(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_customer_pages_ask_for_the_token_and_the_probes_do_not(scorer: ScorerRun) -> None:
    scorer.extra_env["TIERPULSE_HTTP_TOKEN"] = TOKEN
    _, port = scorer.start_worker()
    wait_for(lambda: scorer.settled(1), 60, "the worker to own its partitions", scorer.logs)
    base = f"http://127.0.0.1:{port}"
    assert status(f"{base}/customers/nobody") == 401
    assert status(f"{base}/customers/nobody", "wrong") == 401
    assert status(f"{base}/customers/nobody", TOKEN) == 404  # let in: an unknown customer
    assert status(f"{base}/customers/nobody/history") == 401
    assert status(f"{base}/customers/nobody/history", TOKEN) == 200
    assert status(f"{base}/healthz") == 200 and status(f"{base}/metrics") == 200
    wait_for(lambda: status(f"{base}/readyz") == 200, 30, "/readyz to say ready", scorer.logs)
    assert TOKEN not in scorer.logs()


def test_the_readiness_probe_fails_while_redis_is_down_and_liveness_holds(scorer: ScorerRun) -> None:
    scorer.extra_env["TIERPULSE_REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens there
    scorer.extra_env["TIERPULSE_DEBUG_PAGES"] = "false"  # the default (the harness turns them on)
    _, port = scorer.start_worker()
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: status(f"{base}/readyz") == 503, 60, "/readyz to say not ready", scorer.logs)
    assert status(f"{base}/healthz") == 200
    assert status(f"{base}/router") == 404  # Faust's debug pages are off by default


def test_without_redis_the_worker_is_ready_and_says_where_histories_would_be(scorer: ScorerRun) -> None:
    scorer.extra_env["TIERPULSE_REDIS_URL"] = ""
    _, port = scorer.start_worker()
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: status(f"{base}/readyz") == 200, 60, "/readyz to say ready", scorer.logs)
    with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
        assert json.loads(response.read())["redis"] == "off"
    assert status(f"{base}/customers/nobody/history") == 503
