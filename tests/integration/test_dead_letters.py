"""`tierpulse dead-letters`: list what was dead-lettered, and send fixed originals back to their
topics, where a running worker scores them (README: Operations)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from tests.integration.harness import REPO, ScorerRun, free_port, wait_for_async


def _cli(scorer: ScorerRun, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "dead-letters", *args],
        cwd=REPO,
        env=scorer.env(free_port(), 9),
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_fixed_dead_letters_go_back_to_their_topic_and_are_scored(scorer: ScorerRun) -> None:
    scorer.start_worker()
    now = datetime.now(UTC)
    order = {
        "event_id": "dl-1",
        "customer_id": "客户-dl",
        "order_id": "o-dl",
        "type": "placed",
        "amount": "40",
        "occurred_at": (now - timedelta(hours=1)).isoformat(),
        "promised_at": (now + timedelta(days=1)).isoformat(),
    }
    # As an earlier version with a bug left it: a valid order, dead-lettered by an internal error.
    letter = {
        "topic": scorer.topic("orders"),
        "partition": 0,
        "offset": 0,
        "key_base64": base64.b64encode("客户-dl".encode()).decode(),
        "value_base64": base64.b64encode(json.dumps(order).encode()).decode(),
        "truncated": False,
        "reason": "internal_error: KeyError: 'promised_at'",
        "customer_id": "客户-dl",
        "dead_lettered_at": now.isoformat(),
    }
    await scorer.produce([("dead_letters", b"x", json.dumps(letter).encode())])
    await scorer.produce([("orders", b"someone", b"{not json")])  # the worker dead-letters this one
    await wait_for_async(
        lambda: _cli(scorer, "list").stderr.strip().endswith("2 dead letters"), 60, "two dead letters"
    )
    listed = _cli(scorer, "list", "--reason", "internal_error", "--json")
    assert [json.loads(line)["customer_id"] for line in listed.stdout.splitlines()] == ["客户-dl"]
    dry = _cli(scorer, "resend", "--reason", "internal_error")
    assert dry.returncode == 0 and "1 would be re-sent" in dry.stderr
    sent = _cli(scorer, "resend", "--reason", "internal_error", "--yes")
    assert sent.returncode == 0 and "re-sent 1 of 1" in sent.stderr, sent.stderr
    await wait_for_async(
        lambda: scorer.snapshot("客户-dl").get("order_count") == "1", 60, "the order scored", scorer.logs
    )
