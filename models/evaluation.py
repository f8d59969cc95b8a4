"""One evaluation of a customer as of a watermark: KPIs, score, tier, alerts, snapshot.

This is the single entry point the stream layer calls after absorbing events or
on the sweep; it mutates only the customer's state and returns what to emit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from hashlib import blake2b

from models.alerts import AlertContext, AlertEvent, conditions, transitions
from models.event_time import Window, to_rfc3339
from models.kpi_bands import bands_of
from models.kpis import KPI_NAMES, Kpis
from models.outputs import ALERTS, TIER_CHANGES, TIER_CHANGES_SHADOW, alert_body, tier_change_body
from models.policy import Policy, SegmentPolicy
from models.schedule import next_due
from models.state import CustomerState, TierStatus
from models.tiering import (
    UNASSIGNED,
    UNRATED,
    TierDecision,
    change_event_id,
    composite_score,
    next_tier,
    warming_up,
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Contract §5: current state of one customer (Redis hash and HTTP answer)."""

    customer_id: str
    tier: str
    score: float | None
    segment: str
    policy_version: str
    as_of: int
    kpis: Kpis
    # Who owns the account (its latest profile's; "unassigned" when none) and its open alerts by
    # severity: what it adds to the rollups (contract v2 §5), not in the snapshot's own fields.
    owners: tuple[str, str] = (UNASSIGNED, UNASSIGNED)  # (account_manager, region)
    open_alerts: tuple[tuple[str, int], ...] = ()
    name: str = ""  # the latest profile's name ("" when none): for the name index (sinks/names.py)

    def as_json(self) -> dict[str, object]:
        return {
            "customer_id": self.customer_id,
            "tier": self.tier,
            "score": self.score,
            "segment": self.segment,
            "policy_version": self.policy_version,
            "as_of": to_rfc3339(self.as_of),
            "kpis": self.kpis.as_json(),
        }

    def redis_fields(self) -> dict[str, str]:
        """Every value as text; an undefined KPI or score is the empty string."""
        fields = {
            "tier": self.tier,
            "score": "" if self.score is None else repr(self.score),
            "segment": self.segment,
            "policy_version": self.policy_version,
            "as_of": to_rfc3339(self.as_of),
        }
        for name in KPI_NAMES:
            value = getattr(self.kpis, name)
            fields[name] = "" if value is None else str(value)
        return fields


@dataclass(frozen=True, slots=True)
class Evaluation:
    snapshot: Snapshot
    change: TierDecision | None
    alerts: tuple[AlertEvent, ...]
    changed: bool  # the snapshot's content (all but as_of) differs from the last evaluation's
    due: int | None  # when the tier or alerts could change without new events: evaluate then
    refresh: int | None  # when the snapshot's days_since_last_order changes: evaluate by the sweep
    shadow_change: TierDecision | None = None  # the shadow policy's (streams: shadow mode)
    shadow_error: str = ""  # the shadow policy's evaluation raised this: its status is as before


def evaluate(
    state: CustomerState, policy: Policy, window: Window, as_of: int, shadow: Policy | None = None
) -> Evaluation:
    """Decide the customer's tier and alerts as of ``as_of``, and with ``shadow`` its tier under
    that second policy too (``_shadow``). All or nothing: if it raises, the tier status is as
    before, so no decision is kept without the outputs that announce it. The shadow's decision
    is all or nothing apart: a shadow policy that raises leaves the live decision standing and
    its own status as before (``shadow_error``)."""
    before = state.status.copy()
    try:
        evaluation = _evaluate(state, policy, window, as_of)
    except Exception:
        state.status = before
        state.index = None  # perhaps half updated: rebuilt from the records when next needed
        raise
    if shadow is None:
        state.shadow = None  # shadow mode off: its status goes with the next write
        return evaluation
    shadow_before = None if state.shadow is None else state.shadow.copy()
    due_before = state.status.due
    try:
        return _shadow(state, shadow, window, as_of, before, evaluation)
    except Exception as error:
        state.shadow, state.status.due = shadow_before, due_before
        state.index = None
        return replace(evaluation, shadow_error=f"{type(error).__name__}: {error}"[:500])


def _shadow(
    state: CustomerState,
    shadow: Policy,
    window: Window,
    as_of: int,
    live_before: TierStatus,
    evaluation: Evaluation,
) -> Evaluation:
    """The shadow policy's decision, by the same code with the shadow's tier status in place of
    the live one. The shadow starts where the live tier stood before this evaluation (and starts
    again so when its policy version changes): its first changes are what promoting it now would
    emit (README, "Policy lab"). Only its tier changes are output, to their own topic, through
    the live outbox (delivered and crash-safe like the live ones); its alerts are not."""
    status = state.shadow
    if status is None or status.policy_version not in (None, shadow.version):
        start = live_before.as_of if live_before.as_of is not None else as_of
        status = TierStatus(
            tier=live_before.tier,
            change_score=live_before.change_score,
            as_of=live_before.as_of,
            started=start,
        )
    status.first_seen = state.status.first_seen  # (absorbing events keeps the live one's)
    live = state.status
    state.status = status
    try:
        # Ids of its own: by version and start, so a shadow started again never repeats an id.
        decided = _evaluate(
            state, shadow, window, as_of, scope=f"shadow\x1f{shadow.version}\x1f{status.started}\x1f"
        )
    finally:
        state.status, state.shadow = live, status
    live.outbox += [[TIER_CHANGES_SHADOW, body] for kind, body in status.outbox if kind == TIER_CHANGES]
    status.outbox.clear()
    due = min((d for d in (evaluation.due, decided.due) if d is not None), default=None)
    live.due = due  # (stored in the head: adoption schedules by it)
    return replace(evaluation, due=due, shadow_change=decided.change)


def _evaluate(
    state: CustomerState, policy: Policy, window: Window, as_of: int, scope: str = ""
) -> Evaluation:
    # Never back in time: a batch replayed after a crash between storing states and storing the
    # partition's progress re-runs an older watermark over states that were already evaluated later.
    if state.status.as_of is not None:
        as_of = max(as_of, state.status.as_of)
    state.prune(as_of, window)
    segment = state.segment(policy)
    kpis = state.kpis(as_of, window, segment.sla_us)
    score = composite_score(kpis, segment)
    status = state.status
    change = None
    if score.composite is not None and not warming_up(status, segment, as_of):
        new_tier = next_tier(status.tier, score.composite, segment)
        if new_tier != status.tier:
            previous = status.tier or UNRATED
            change = TierDecision(
                # (a scope keeps the shadow's ids apart from the live ones)
                event_id=change_event_id(scope + state.customer_id, status.changes, previous, new_tier),
                customer_id=state.customer_id,
                previous_tier=previous,
                new_tier=new_tier,
                previous_score=status.change_score,
                score=score.composite,
                segment=segment.name,
                policy_version=policy.version,
                as_of=as_of,
                kpis=kpis,
                reasons=score.reasons,
            )
            status.tier, status.change_score = new_tier, score.composite
            status.changes += 1
    status.score, status.as_of = score.composite, as_of
    status.bands = bands_of(kpis)
    tier = status.tier or UNRATED
    holding = conditions(policy.alerts, state, kpis, tier, segment, as_of)
    alerts = transitions(state, holding, kpis, as_of, AlertContext(tier, segment.name, *_owners(state)))
    snapshot = _snapshot(state, segment, policy, as_of, kpis)
    fingerprint = _fingerprint(snapshot)
    changed = fingerprint != status.fingerprint
    status.fingerprint = fingerprint
    status.outbox += [[TIER_CHANGES, tier_change_body(change)]] if change is not None else []
    status.outbox += [[ALERTS, alert_body(alert)] for alert in alerts]
    due, refresh = next_due(state, policy, segment, window, as_of, kpis)
    status.policy_version, status.segment, status.due, status.refresh = (
        policy.version,
        segment.name,
        due,
        refresh,
    )
    return Evaluation(snapshot, change, tuple(alerts), changed, due, refresh)


def current_snapshot(state: CustomerState, policy: Policy, window: Window) -> Snapshot | None:
    """The snapshot of the last evaluation, recomputed read-only (None: never evaluated)."""
    as_of = state.status.as_of
    if as_of is None:
        return None
    segment = state.segment(policy)
    return _snapshot(state, segment, policy, as_of, state.kpis(as_of, window, segment.sla_us))


def _snapshot(
    state: CustomerState, segment: SegmentPolicy, policy: Policy, as_of: int, kpis: Kpis
) -> Snapshot:
    """The snapshot of the tier status as it stands (after this evaluation, or the last one)."""
    status = state.status
    return Snapshot(
        state.customer_id,
        status.tier or UNRATED,
        status.score,
        segment.name,
        policy.version,
        as_of,
        kpis,
        _owners(state),
        _open_alerts(state),
        (state.profile or {}).get("name") or "",
    )


def _owners(state: CustomerState) -> tuple[str, str]:
    profile = state.profile or {}
    return profile.get("account_manager") or UNASSIGNED, profile.get("region") or UNASSIGNED


def _open_alerts(state: CustomerState) -> tuple[tuple[str, int], ...]:
    """Firing alerts by severity (the alert memory: [id, rule, severity, ...] per open alert)."""
    severities = Counter(str(record[2]) for record in state.status.alerts.values())
    return tuple(sorted(severities.items()))


def _fingerprint(snapshot: Snapshot) -> str:
    content = repr(
        (
            snapshot.tier,
            snapshot.score,
            snapshot.segment,
            snapshot.policy_version,
            snapshot.kpis,
            snapshot.owners,
            snapshot.open_alerts,
            snapshot.name,  # (a rename alone is written: the name index follows it)
        )
    )
    return blake2b(content.encode(), digest_size=8).hexdigest()
