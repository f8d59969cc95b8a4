"""The policy lab's backtest against the live scorer on the same real topics (issue #17)."""

from __future__ import annotations

import asyncio
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from models.event_time import to_rfc3339
from models.policy import DEFAULT_POLICY_PATH, load_policy, parse_policy
from models.state import CustomerState
from models.tiering import next_tier
from streams import cli
from streams.backtest import policy_run, replay
from tests.integration.harness import ScorerRun
from tests.integration.test_backlog import backlog


async def test_a_backtest_of_the_running_policy_ends_where_the_live_scorer_did(scorer: ScorerRun) -> None:
    """Customer by customer: the same segment, and at the same as_of the same score. The tier is
    the same too, except where hysteresis lets a score sit in either of two tiers: then the tier
    depends on the path, which depends on how the reading interleaved the topics (live, Faust's
    fetches; here, aiokafka's). Each side's tier must then hold at that score (contract §4)."""
    scorer.partitions = 4
    log = backlog(customers=60, days=40, seed=23)  # messy, ±36 h out of order, a tenth unkeyed
    await scorer.produce(log)
    scorer.start_worker(0)
    live = await scorer.finished()
    settings = scorer.settings()
    policy = load_policy()
    run = policy_run(policy, settings)
    assert await replay(settings, [run], progress=False) == len(log)
    assert run.final.keys() == live.keys()
    same_instant, same_tier = 0, 0
    for customer, snapshot in run.final.items():
        seen = live[customer]
        assert snapshot.segment == seen["segment"], customer
        if to_rfc3339(snapshot.as_of) != seen["as_of"]:
            continue  # (a snapshot only the sweep refreshes: days_since_last_order moved on)
        same_instant += 1
        assert snapshot.score == pytest.approx(float(seen["score"]), abs=1e-9), customer
        if snapshot.tier == seen["tier"]:
            same_tier += 1
            continue
        stored = run.tables.customer(customer)
        assert stored is not None
        segment = CustomerState.from_bytes(stored).segment(policy)
        for tier in (snapshot.tier, seen["tier"]):
            assert next_tier(tier, snapshot.score, segment) == tier, (customer, tier, snapshot.score)
    # Most compare at one instant: a snapshot is rewritten only when its content changes, so the
    # live one can be older than the backtest's where the worker's wall-clock sweep ran later.
    assert same_instant >= len(live) / 2
    print(f"backtest vs live: {same_tier} of {same_instant} customers in the same tier at the same as_of")


def test_the_backtest_command_compares_a_candidate_and_writes_its_report(
    scorer: ScorerRun,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = backlog(customers=30, days=35, seed=5)
    asyncio.run(scorer.produce(log))  # (a test of its own: the command runs its own event loop)
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    raw["version"] += "-stricter"
    tiers = raw["segments"][raw["default_segment"]]["tiers"]
    raw["segments"][raw["default_segment"]]["tiers"] = {t: m + 10 if m > 0 else m for t, m in tiers.items()}
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    parse_policy(raw)  # (valid)
    for name, value in scorer.env(0, 0).items():
        if name.startswith("TIERPULSE_"):
            monkeypatch.setenv(name, value)
    out = tmp_path / "report"
    assert cli.main(["backtest", "--policy", str(candidate), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "backtest.json").read_text(encoding="utf-8"))
    assert summary["events"] == len(log)
    assert summary["policies"]["candidate"]["version"].endswith("-stricter")
    # The matrix counts every customer once; its off-diagonal cells are the customers listed.
    # (Not "nobody moves up": before its profile arrives a customer is scored in the default
    # segment, whose minimums the candidate raised, and hysteresis carries that path on.)
    matrix = summary["transitions"]
    assert sum(sum(row.values()) for row in matrix.values()) == summary["customers"]
    moved = sum(n for source, row in matrix.items() for target, n in row.items() if source != target)
    assert moved == len(summary["differing"])
    order = [*raw["tiers"], "unrated"]
    assert summary["differing"], "a stricter policy moved nobody"
    # A promotion keeps each customer's tier and moves it only past a new minimum - h: only
    # customers the backtest ends elsewhere can move, and only down.
    promotion = summary["promotion"]
    assert 0 < promotion["tier_changes"] <= len(summary["differing"])
    assert all(order.index(m["to"]) > order.index(m["from"]) for m in promotion["from_to"])
    rows = (out / "differing.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 1 + len(summary["differing"])
    assert f"{len(summary['differing'])} customers end in another tier" in printed
    page = Page()
    page.feed((out / "backtest.html").read_text(encoding="utf-8"))
    assert page.tags["svg"] == 2 and page.tags["polygon"] >= 2 and page.tags["table"] >= 3


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
