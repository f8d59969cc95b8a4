"""Scores and the tier decision with hysteresis (contract §4)."""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import sha256

from models.kpis import KpiName, Kpis
from models.policy import SegmentPolicy
from models.state import TierStatus

UNRATED = "unrated"
UNASSIGNED = "unassigned"  # the account manager or region of a customer whose profile names none


@dataclass(frozen=True, slots=True)
class KpiReason:
    """How one KPI entered the composite: its value, score, weight and share of the score."""

    kpi: KpiName
    value: float
    score: float
    weight: float
    contribution: float


@dataclass(frozen=True, slots=True)
class Score:
    composite: float | None  # None: no weighted KPI is defined
    weighted: tuple[tuple[KpiName, float, float, float], ...]  # (kpi, value, score, weight)

    @property
    def reasons(self) -> tuple[KpiReason, ...]:
        """Built when asked: only a tier change explains itself."""
        total = sum(w for *_, w in self.weighted)
        return tuple(
            KpiReason(name, value, score, weight, score * weight / total)
            for name, value, score, weight in self.weighted
        )


def kpi_score(value: float, good: float, bad: float) -> float:
    """Linear from bad (0) to good (100), clamped; works when good < bad too."""
    return min(100.0, max(0.0, (value - bad) / (good - bad) * 100.0))


def composite_score(kpis: Kpis, segment: SegmentPolicy) -> Score:
    weighted: list[tuple[KpiName, float, float, float]] = []
    for name, weight, good, bad in segment.scored:
        raw = getattr(kpis, name)
        if raw is not None:
            value = float(raw)
            score = (value - bad) / (good - bad) * 100.0  # kpi_score, inline: the hottest loop
            weighted.append((name, value, min(100.0, max(0.0, score)), weight))
    total_weight = sum(w for *_, w in weighted)
    if total_weight == 0:
        return Score(None, ())
    return Score(sum(s * w for _, _, s, w in weighted) / total_weight, tuple(weighted))


def band(score: float, segment: SegmentPolicy) -> str:
    """The tier whose band holds the score: the best tier whose minimum it reaches."""
    for tier, minimum in segment.tier_minimums:
        if score >= minimum:
            return tier
    return segment.tier_minimums[-1][0]


def next_tier(current: str | None, score: float, segment: SegmentPolicy) -> str:
    """Contract §4: first rating by band; then up only at the higher tier's minimum + h,
    down only below the current tier's minimum - h, landing in the band of the score."""
    names = [tier for tier, _ in segment.tier_minimums]
    if current is None or current not in names:
        return band(score, segment)
    index = names.index(current)
    minimums = dict(segment.tier_minimums)
    h = segment.hysteresis
    if index > 0 and score >= minimums[names[index - 1]] + h:
        return band(score, segment)
    if score < minimums[current] - h:
        return band(score, segment)
    return current


def warming_up(status: TierStatus, segment: SegmentPolicy, as_of: int) -> bool:
    """Not rated yet, and its history (from the earliest event accepted) is shorter than the
    segment's warm-up: a first rating on a few days of events would flap soon after."""
    if status.tier is not None or segment.warmup_us == 0:
        return False
    return status.first_seen is None or as_of < status.first_seen + segment.warmup_us


@dataclass(frozen=True, slots=True)
class TierDecision:
    """A tier change, explained (contract §5 ``customer-tier-changes``)."""

    event_id: str
    customer_id: str
    previous_tier: str
    new_tier: str
    previous_score: float | None
    score: float
    segment: str
    policy_version: str
    as_of: int
    kpis: Kpis
    reasons: tuple[KpiReason, ...]


def change_event_id(customer_id: str, sequence: int, previous_tier: str, new_tier: str) -> str:
    """Deterministic: the n-th change of a customer between the same tiers has one id,
    however often a replay emits it."""
    digest = sha256(f"{customer_id}\x1f{sequence}\x1f{previous_tier}\x1f{new_tier}".encode()).hexdigest()
    return f"tc-{digest[:32]}"
