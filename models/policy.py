"""The scoring policy (contract §4): tiers, segments, weights, thresholds, alerts.

Segments and their precedence
-----------------------------
The ``default_segment`` is complete: weights, a good/bad pair per weighted KPI,
a minimum score per tier, a hysteresis margin and response SLAs. Every other
segment is an overlay that applies to a customer when its ``match`` holds for
the customer's profile (all listed fields equal; without ``match`` a segment
matches ``segment: <its name>``). Matching overlays apply in ascending
``priority`` (then name), each replacing single entries of what came before:
one KPI's weight, one KPI's good/bad pair, one priority's SLA, the hysteresis, the warm-up.
A ``tiers`` table is replaced whole, so bands never interleave. A key account
that is also service-oriented therefore keeps the key-account weights and takes
the service-oriented response thresholds, if service-oriented has the higher
priority. The effective segment's name is the matched names joined by ``+``.

A policy is checked whole before use: ``load_policy`` lists every problem
(path in the file, what is wrong) in one :class:`PolicyError`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.event_time import MICROS_PER_DAY, MICROS_PER_MINUTE
from models.kpis import KPI_NAMES, KpiName

Priority = Literal["P1", "P2", "P3", "P4"]
DEFAULT_SLA_MINUTES: dict[Priority, float] = {"P1": 60, "P2": 240, "P3": 1440, "P4": 4320}
DEFAULT_POLICY_PATH = Path(__file__).with_name("default_policy.yaml")


class PolicyError(Exception):
    """The policy file cannot be used; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"policy {source} is invalid ({len(problems)} problems):\n{listing}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KpiThreshold(_Strict):
    good: float
    bad: float


class SegmentSpec(_Strict):
    match: dict[str, str] | None = None
    priority: int = 0
    weights: dict[KpiName, Annotated[float, Field(ge=0)]] = {}
    kpis: dict[KpiName, KpiThreshold] = {}
    tiers: dict[str, float] | None = None
    hysteresis: Annotated[float, Field(ge=0, le=50)] | None = None
    warmup_days: Annotated[float, Field(ge=0, le=365)] | None = None
    sla_minutes: dict[Priority, Annotated[float, Field(gt=0)]] = {}


class KpiCondition(_Strict):
    name: KpiName
    below: float | None = None
    above: float | None = None


class TicketCondition(_Strict):
    priority: Priority
    minutes_before_deadline: Annotated[float, Field(ge=0)] = 0


_DURATION_UNITS_US = {
    "s": 1_000_000,
    "m": MICROS_PER_MINUTE,
    "h": 60 * MICROS_PER_MINUTE,
    "d": MICROS_PER_DAY,
}


class AlertRule(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
    severity: Literal["info", "warning", "critical"]
    kpi: KpiCondition | None = None
    ticket: TicketCondition | None = None
    tiers: list[str] | None = None
    segments: list[str] | None = None
    # A hold-down as Prometheus rules have it ("30m", "2h", "1d"): the alert fires once its
    # condition has held that long in event time. Not in the contract: a policy without it
    # fires as contract §5 says.
    hold: Annotated[str | None, Field(alias="for", pattern=r"^[0-9]+(\.[0-9]+)?[smhd]$")] = None
    runbook: Annotated[str | None, Field(max_length=2000, pattern=r"^https?://\S+$")] = None

    @property
    def hold_us(self) -> int:
        if self.hold is None:
            return 0
        return round(float(self.hold[:-1]) * _DURATION_UNITS_US[self.hold[-1]])


class PolicyDocument(_Strict):
    version: Annotated[str, Field(min_length=1, max_length=64)]
    tiers: Annotated[list[str], Field(min_length=2)]
    default_segment: str
    segments: dict[str, SegmentSpec]
    alerts: list[AlertRule] = []


@dataclass(frozen=True, slots=True)
class SegmentPolicy:
    """What scores one customer: the default segment with its matching overlays applied."""

    name: str
    matched: tuple[str, ...]
    weights: Mapping[KpiName, float]
    thresholds: Mapping[KpiName, KpiThreshold]
    tier_minimums: tuple[tuple[str, float], ...]  # best first
    hysteresis: float
    sla_us: tuple[int, int, int, int]  # P1..P4
    warmup_us: int = 0  # a customer is first rated once its history is this long
    # (kpi, weight, good, bad) of the KPIs weighed, in KPI_NAMES order: what scoring reads.
    scored: tuple[tuple[KpiName, float, float, float], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        scored = tuple(
            (name, self.weights[name], self.thresholds[name].good, self.thresholds[name].bad)
            for name in KPI_NAMES
            if self.weights.get(name, 0.0) > 0 and name in self.thresholds  # (a parsed policy has both)
        )
        object.__setattr__(self, "scored", scored)


@dataclass(frozen=True)
class Policy:
    version: str
    tiers: tuple[str, ...]
    default_segment: str
    segments: Mapping[str, SegmentSpec]
    alerts: tuple[AlertRule, ...]
    # Resolved segments by the overlays that match: resolution runs on every evaluation, and
    # keyed so the cache is bounded by the policy (its segments' combinations), never by how many
    # distinct profiles producers send.
    _resolved: dict[tuple[str, ...], SegmentPolicy] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def segment_named(self, name: str) -> SegmentPolicy:
        """One segment as it scores: the default segment with that one overlay applied."""
        overlays = () if name == self.default_segment else (name,)
        resolved = self._resolved.get(overlays)
        if resolved is None:
            resolved = self._resolved[overlays] = _resolve(self, list(overlays))
        return resolved

    def segment_for(self, profile: Mapping[str, str] | None) -> SegmentPolicy:
        """The effective segment policy for a customer profile (None: never seen)."""
        overlays = tuple(
            name
            for _, name in sorted(
                (spec.priority, name)
                for name, spec in self.segments.items()
                if name != self.default_segment and profile and _matches(name, spec, profile)
            )
        )
        resolved = self._resolved.get(overlays)
        if resolved is None:
            resolved = self._resolved[overlays] = _resolve(self, list(overlays))
        return resolved


def _matches(name: str, spec: SegmentSpec, profile: Mapping[str, str]) -> bool:
    wanted = spec.match if spec.match is not None else {"segment": name}
    return all(profile.get(field) == value for field, value in wanted.items())


def _resolve(policy: Policy, overlay_names: list[str]) -> SegmentPolicy:
    base = policy.segments[policy.default_segment]
    weights, thresholds = dict(base.weights), dict(base.kpis)
    tiers: dict[str, float] = dict(base.tiers or {})
    hysteresis = base.hysteresis or 0.0
    warmup_days = base.warmup_days or 0.0
    sla: dict[Priority, float] = {**DEFAULT_SLA_MINUTES, **base.sla_minutes}
    for name in overlay_names:
        spec = policy.segments[name]
        weights.update(spec.weights)
        thresholds.update(spec.kpis)
        sla.update(spec.sla_minutes)
        tiers = dict(spec.tiers) if spec.tiers is not None else tiers
        hysteresis = spec.hysteresis if spec.hysteresis is not None else hysteresis
        warmup_days = spec.warmup_days if spec.warmup_days is not None else warmup_days
    return SegmentPolicy(
        name="+".join(overlay_names) or policy.default_segment,
        matched=tuple(overlay_names) or (policy.default_segment,),
        weights={k: w for k, w in weights.items() if w > 0},
        thresholds=thresholds,
        tier_minimums=tuple((tier, tiers[tier]) for tier in policy.tiers),
        hysteresis=hysteresis,
        sla_us=_sla_us(sla),
        warmup_us=round(warmup_days * MICROS_PER_DAY),
    )


def _sla_us(sla_minutes: Mapping[Priority, float]) -> tuple[int, int, int, int]:
    p1, p2, p3, p4 = (round(sla_minutes[p] * MICROS_PER_MINUTE) for p in ("P1", "P2", "P3", "P4"))
    return p1, p2, p3, p4


# ------------------------------------------------------------------ loading


MAX_POLICY_BYTES = 1024 * 1024  # a policy is a page of YAML; a larger file is a mistake or an attack


def load_policy(path: Path | str = DEFAULT_POLICY_PATH) -> Policy:
    """Read and check a policy file; raise PolicyError listing every problem."""
    source = str(path)
    try:
        size = Path(path).stat().st_size
        if size > MAX_POLICY_BYTES:
            raise PolicyError(
                source, [f"the file is {size} bytes, more than the limit of {MAX_POLICY_BYTES}"]
            )
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise PolicyError(source, [f"cannot read the file: {error.strerror or error}"]) from None
    except yaml.YAMLError as error:
        raise PolicyError(source, [f"not valid YAML: {error}".replace("\n", " ")]) from None
    return parse_policy(raw, source)


def load_shadow_policy(path: Path | None, live: Policy) -> Policy | None:
    """The shadow policy (shadow mode; None without a path): a policy file like any other, with
    a version of its own, since its tier changes, stored statuses and metrics are told apart by it."""
    if path is None:
        return None
    shadow = load_policy(path)
    if shadow.version == live.version:
        raise PolicyError(
            str(path),
            [f"version {shadow.version!r} is the live policy's: a shadow policy needs a version of its own"],
        )
    return shadow


def parse_policy(raw: Any, source: str = "<policy>") -> Policy:
    if not isinstance(raw, dict):
        raise PolicyError(
            source, ["the file must hold a mapping with version, tiers, default_segment, segments"]
        )
    problems: list[str] = []
    document: PolicyDocument | None = None
    try:
        document = PolicyDocument.model_validate(raw)
    except ValidationError as error:
        for item in error.errors(include_url=False):
            where = ".".join(str(part) for part in item["loc"])
            problems.append(f"{where}: {item['msg']}")
    problems += _semantic_problems(raw)
    if problems or document is None:
        raise PolicyError(source, problems)
    return Policy(
        version=document.version,
        tiers=tuple(document.tiers),
        default_segment=document.default_segment,
        segments=document.segments,
        alerts=tuple(document.alerts),
    )


def _semantic_problems(raw: dict[str, Any]) -> list[str]:
    """Cross-references and consistency, checked on the raw document so that they are
    reported together with any type errors."""
    problems: list[str] = []
    tiers = raw.get("tiers")
    tier_names = [t for t in tiers if isinstance(t, str)] if isinstance(tiers, list) else []
    if len(set(tier_names)) != len(tier_names):
        problems.append("tiers: tier names must be unique")
    segments = _mapping(raw.get("segments"))
    default = raw.get("default_segment")
    if isinstance(default, str) and default not in segments:
        problems.append(f"default_segment: '{default}' is not one of the segments {sorted(segments)}")
    for name, spec in segments.items():
        if isinstance(spec, dict):
            problems += _segment_problems(f"segments.{name}", spec, tier_names, complete=name == default)
    for index, rule in enumerate(raw.get("alerts") or []):
        if isinstance(rule, dict):
            problems += _alert_problems(f"alerts.{index}", rule, tier_names, list(segments))
    return problems


def _mapping(value: Any) -> dict[str, Any]:
    """A part of the raw document that should be a mapping; {} when it is not (already reported)."""
    return value if isinstance(value, dict) else {}


def _segment_problems(path: str, spec: dict[str, Any], tier_names: list[str], complete: bool) -> list[str]:
    problems = []
    weights, kpis = _mapping(spec.get("weights")), _mapping(spec.get("kpis"))
    for kpi, pair in kpis.items():
        if isinstance(pair, dict) and pair.get("good") is not None and pair.get("good") == pair.get("bad"):
            problems.append(f"{path}.kpis.{kpi}: good and bad are equal ({pair.get('good')}), no scale")
    if complete:
        if not any(isinstance(w, int | float) and w > 0 for w in weights.values()):
            problems.append(f"{path}.weights: the default segment needs at least one positive weight")
        for kpi in weights:
            if kpi in KPI_NAMES and kpi not in kpis:
                problems.append(f"{path}.kpis.{kpi}: weighted KPI needs good and bad values")
        if spec.get("tiers") is None:
            problems.append(f"{path}.tiers: the default segment needs a minimum score per tier")
    tiers = spec.get("tiers")
    if isinstance(tiers, dict):
        problems += _tier_table_problems(f"{path}.tiers", tiers, tier_names)
    return problems


def _tier_table_problems(path: str, table: dict[str, Any], tier_names: list[str]) -> list[str]:
    problems = [f"{path}.{t}: not a tier (tiers are {tier_names})" for t in table if t not in tier_names]
    problems += [f"{path}: missing the minimum score of tier '{t}'" for t in tier_names if t not in table]
    minimums = [table[t] for t in tier_names if isinstance(table.get(t), int | float)]
    if len(minimums) == len(tier_names) and tier_names:
        if any(a <= b for a, b in itertools.pairwise(minimums)):
            problems.append(f"{path}: minimums must fall strictly from best to worst tier, got {minimums}")
        if minimums[-1] > 0:
            problems.append(
                f"{path}.{tier_names[-1]}: the worst tier must start at 0 or below, got {minimums[-1]}"
            )
    return problems


def _alert_problems(path: str, rule: dict[str, Any], tier_names: list[str], segments: list[str]) -> list[str]:
    problems = []
    if (rule.get("kpi") is None) == (rule.get("ticket") is None):
        problems.append(f"{path}: give exactly one of 'kpi' or 'ticket'")
    kpi = rule.get("kpi")
    if isinstance(kpi, dict) and (kpi.get("below") is None) == (kpi.get("above") is None):
        problems.append(f"{path}.kpi: give exactly one of 'below' or 'above'")
    for tier in rule.get("tiers") or []:
        if tier not in [*tier_names, "unrated"]:
            problems.append(f"{path}.tiers: '{tier}' is not a tier")
    for segment in rule.get("segments") or []:
        if segment not in segments:
            problems.append(f"{path}.segments: '{segment}' is not a segment")
    return problems
