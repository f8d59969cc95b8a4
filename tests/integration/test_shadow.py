"""Shadow mode on a real broker (issue #17): turned on by a restart, it scores every customer with
a candidate policy from the tier each held, sends its changes to their own topic, and its state
survives SIGKILLs like the live one; the live outputs stay the live policy's."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from models.policy import DEFAULT_POLICY_PATH, load_policy
from tests.integration.harness import ScorerRun, chain_problems, wait_for_async
from tests.integration.test_resilience import demo_log, final_state_is_exact


def stricter_candidate(directory: Path) -> tuple[Path, str]:
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    raw["version"] += "-candidate"
    for segment in raw["segments"].values():
        if "tiers" in segment:
            segment["tiers"] = {t: min(100, m + 20) if m > 0 else m for t, m in segment["tiers"].items()}
    path = directory / "candidate.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path, str(raw["version"])


def shadow_pairs(scorer: ScorerRun) -> Counter[tuple[str, str]]:
    """tierpulse_shadow_customers summed over the live workers."""
    pairs: Counter[tuple[str, str]] = Counter()
    for text in scorer.metrics_texts():
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "tierpulse_shadow_customers":
                    pairs[(sample.labels["tier"], sample.labels["shadow_tier"])] += int(sample.value)
    return pairs


async def test_shadow_mode_starts_from_the_live_tiers_and_survives_sigkills(
    scorer: ScorerRun, tmp_path: Path
) -> None:
    log = demo_log(customers=40, days=20, seed=31)
    first, rest = log[: len(log) // 2], log[len(log) // 2 :]
    worker, _ = scorer.start_worker()
    await scorer.produce(first)
    live = await scorer.finished()
    live_tiers = {customer: snapshot["tier"] for customer, snapshot in live.items()}
    live_before = {c["event_id"] for c in await scorer.read("tier_changes")}

    candidate, version = stricter_candidate(tmp_path)
    scorer.stop_all()
    scorer.extra_env["TIERPULSE_SHADOW_POLICY_PATH"] = str(candidate)
    worker, _ = scorer.start_worker()
    # Turned on, the shadow scores every customer at once (its stored version is not the candidate's).
    await wait_for_async(
        lambda: sum(shadow_pairs(scorer).values()) == len(live), 60, "every customer shadowed", scorer.logs
    )
    promoted = await scorer.read("tier_changes_shadow")
    assert promoted, "a stricter candidate moves some customers down"
    assert chain_problems(promoted, start=live_tiers) == []
    tiers = list(load_policy().tiers)
    for change in promoted:  # from the tier the customer held, and only down: it is stricter
        assert tiers.index(change["new_tier"]) > tiers.index(change["previous_tier"]), change
    moved = {c["customer_id"]: c["new_tier"] for c in promoted}
    assert shadow_pairs(scorer) == Counter((tier, moved.get(c, tier)) for c, tier in live_tiers.items())
    assert {c["event_id"] for c in await scorer.read("tier_changes")} == live_before  # the CRM saw nothing

    for chunk in (rest[0::3], rest[1::3]):
        await scorer.produce(chunk)
        await asyncio.sleep(1.5)  # part-way through...
        scorer.kill(worker)  # ... SIGKILL
        worker, _ = scorer.start_worker()
    await scorer.produce(rest[2::3])
    snapshots = await final_state_is_exact(scorer, log)  # the live side, as without shadow mode

    shadow = await scorer.read("tier_changes_shadow")
    assert chain_problems(shadow, start=live_tiers) == []  # no restart began the shadow again
    assert {c["policy_version"] for c in shadow} == {version}
    live_changes = await scorer.read("tier_changes")
    assert {c["policy_version"] for c in live_changes} == {load_policy().version}
    assert not {c["event_id"] for c in shadow} & {c["event_id"] for c in live_changes}
    last_shadow = {**live_tiers, **{c["customer_id"]: c["new_tier"] for c in shadow}}
    expected = Counter((s["tier"], last_shadow.get(c, "unrated")) for c, s in snapshots.items())
    await wait_for_async(lambda: shadow_pairs(scorer) == expected, 30, "the shadow gauge", scorer.logs)
