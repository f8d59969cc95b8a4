"""The HTTP API's optional bearer token, on a real worker: the customer pages ask for it, the
probe and /metrics do not, and the token never shows in the worker's log."""

from __future__ import annotations

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
    assert TOKEN not in scorer.logs()
