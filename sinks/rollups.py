"""Rollups per account manager and region (contract v2 §5), kept exact inside Redis.

Each customer's snapshot is written by one Lua script that also keeps the customer's
*contribution* (owners, tier, revenue, score, open alerts, retained) in a hash of its own, takes
the old contribution out of the rollups it was in and adds the new one. A script runs
atomically, so a rollup always equals the sum over the contributions stored — one per customer
with a snapshot, the latest — whichever worker writes, in any order, as often as it likes:
writing the same contribution again takes it out and puts it back. A customer moving to another
manager leaves the old rollup in the same step it enters the new one. The same step keeps the
customer's entry in the name index (sinks/names.py).

Sums are integers (revenue in millionths, scores in billionths: HINCRBY is exact), and the
contract's fields (`revenue` with 2 decimals, `mean_score`, `retention_rate`) are derived from
them in the same script.

Revenue per tier (``revenue_units:tier:{tier}``, and ``revenue:tier:{tier}`` with 2 decimals
derived from it) is kept apart: the contribution records where its revenue was counted per tier
(``tiered:*`` fields), and the script takes out what those fields say. A script of an earlier
version, which knows nothing of them, may still rewrite the contribution (a rolling update)
without making this take out what it never put in. ``revenue_customers`` counts the customers
whose revenue is counted per tier: a rollup whose customers were not all written since (data
of an earlier version) has fewer, and its revenue per tier is unknown (``rollup_json``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from models.evaluation import Snapshot
from models.kpi_index import EXACT
from models.tiering import UNRATED
from sinks.names import index_member, name_of

DIMENSIONS = ("account_manager", "region")
SEVERITIES = ("critical", "warning", "info")
_REVENUE_UNIT = Decimal("0.000001")
# A customer's revenue counts at most this much in a rollup (10^12, in millionths): a sum of
# many stays within the 64-bit integers Redis adds (the script refuses a step past them).
MAX_REVENUE_UNITS = 10**18

# KEYS: snapshot hash, contribution hash. ARGV: prefix, customer id, the contribution's fields
# (``contribution`` order), then the snapshot's fields as name, value pairs.
WRITE_SNAPSHOT = """
local prefix, customer = ARGV[1], ARGV[2]
local names = {'account_manager', 'region', 'tier', 'revenue', 'score', 'critical', 'warning', 'info',
               'retained', 'name_member'}
local new = {}
for i, name in ipairs(names) do new[name] = ARGV[2 + i] end
local fields = {}
for i = 3 + #names, #ARGV do table.insert(fields, ARGV[i]) end
redis.call('HSET', KEYS[1], unpack(fields))

local function negated(number)
  if string.sub(number, 1, 1) == '-' then return string.sub(number, 2) end
  return '-' .. number
end

-- Millionths (text; false when absent) to 2 decimals from the text, not a double: exact up to
-- 2^53 cents.
local function decimal2(units)
  units = units or '0'
  local whole, rest = 0, tonumber(units)
  if #units > 4 then whole, rest = tonumber(string.sub(units, 1, -5)), tonumber(string.sub(units, -4)) end
  local cents = whole + (rest >= 5000 and 1 or 0)
  return string.format('%d.%02d', math.floor(cents / 100), cents % 100)
end

local function derive(key)
  local r = redis.call('HMGET', key, 'revenue_units', 'score_units', 'rated', 'retained_sum',
                      'retained_count')
  redis.call('HSET', key, 'revenue', decimal2(r[1]))
  local rated = tonumber(r[3] or '0')
  local mean = rated > 0 and string.format('%.6f', tonumber(r[2] or '0') / 1e9 / rated) or ''
  redis.call('HSET', key, 'mean_score', mean)
  local counted = tonumber(r[5] or '0')
  local rate = counted > 0 and string.format('%.6f', tonumber(r[4] or '0') / counted) or ''
  redis.call('HSET', key, 'retention_rate', rate)
end

local function apply(c, sign)
  local function add(key, field, number)
    if number ~= '' and number ~= '0' then
      redis.call('HINCRBY', key, field, sign > 0 and number or negated(number))
    end
  end
  for _, dimension in ipairs({'account_manager', 'region'}) do
    local name = c[dimension]
    local key = prefix .. 'rollup:' .. dimension .. ':' .. name
    -- The names a dimension has had: listing them needs no SCAN of a shared keyspace.
    if sign > 0 then redis.call('SADD', prefix .. 'rollups:' .. dimension, name) end
    redis.call('HINCRBY', key, 'tier:' .. c.tier, sign)
    add(key, 'revenue_units', c.revenue)
    if c.score ~= '' then
      add(key, 'score_units', c.score)
      redis.call('HINCRBY', key, 'rated', sign)
    end
    for _, severity in ipairs({'critical', 'warning', 'info'}) do
      add(key, 'alerts:' .. severity, c[severity])
    end
    if c.retained ~= '' then
      add(key, 'retained_sum', c.retained)
      redis.call('HINCRBY', key, 'retained_count', sign)
    end
    local members = prefix .. 'members:' .. dimension .. ':' .. name .. ':' .. c.tier
    if sign > 0 then redis.call('SADD', members, customer) else redis.call('SREM', members, customer) end
    derive(key)
  end
  local everyone = prefix .. 'tier:' .. c.tier
  if sign > 0 then
    redis.call('SADD', everyone, customer)
    redis.call('SADD', prefix .. 'tiers', c.tier)  -- (the tiers with a set: no SCAN to find them)
  else
    redis.call('SREM', everyone, customer)
  end
end

-- The revenue per tier: c holds the owners, tier and revenue it is counted under.
local function apply_tiered(c, sign)
  for _, dimension in ipairs({'account_manager', 'region'}) do
    local key = prefix .. 'rollup:' .. dimension .. ':' .. c[dimension]
    local units = 'revenue_units:tier:' .. c.tier
    if c.revenue ~= '' and c.revenue ~= '0' then
      redis.call('HINCRBY', key, units, sign > 0 and c.revenue or negated(c.revenue))
    end
    redis.call('HINCRBY', key, 'revenue_customers', sign)
    redis.call('HSET', key, 'revenue:tier:' .. c.tier, decimal2(redis.call('HGET', key, units)))
  end
end

local stored = redis.call('HGETALL', KEYS[2])
local old = nil
if #stored > 0 then
  old = {}
  for i = 1, #stored, 2 do old[stored[i]] = stored[i + 1] end
end
-- A revenue sum past what HINCRBY holds would stop the script half way: checked first (as
-- doubles, with a margin), and then the rollups keep the old contribution whole.
for _, dimension in ipairs({'account_manager', 'region'}) do
  local key = prefix .. 'rollup:' .. dimension .. ':' .. new[dimension]
  local sum = tonumber(redis.call('HGET', key, 'revenue_units') or '0') + tonumber(new.revenue)
  if old and old[dimension] == new[dimension] then sum = sum - tonumber(old.revenue) end
  if sum > 9.0e18 then return 0 end
end
if old then apply(old, -1) end
-- Where the old revenue counts per tier, as this script wrote it (none: an earlier version's).
if old and old['tiered:tier'] then
  apply_tiered({account_manager = old['tiered:account_manager'], region = old['tiered:region'],
                tier = old['tiered:tier'], revenue = old['tiered:revenue']}, -1)
end
apply(new, 1)
apply_tiered(new, 1)
local index = prefix .. 'names'
if old and old.name_member and old.name_member ~= '' then redis.call('ZREM', index, old.name_member) end
if new.name_member ~= '' then redis.call('ZADD', index, 0, new.name_member) end
local flat = {}
for _, name in ipairs(names) do table.insert(flat, name); table.insert(flat, new[name]) end
for _, name in ipairs({'account_manager', 'region', 'tier', 'revenue'}) do
  table.insert(flat, 'tiered:' .. name); table.insert(flat, new[name])
end
redis.call('HSET', KEYS[2], unpack(flat))
return 1
"""


def contribution(snapshot: Snapshot) -> list[str]:
    """What the customer adds to its rollups, and its member of the name index, as the script's
    arguments (ints as text)."""
    kpis, alerts = snapshot.kpis, dict(snapshot.open_alerts)
    exact = kpis.revenue.quantize(_REVENUE_UNIT, ROUND_HALF_UP, context=EXACT)
    revenue = min(int(exact.scaleb(6, context=EXACT)), MAX_REVENUE_UNITS)
    rated = snapshot.score is not None and snapshot.tier != "unrated"
    return [
        *snapshot.owners,
        snapshot.tier,
        str(revenue),
        str(round(snapshot.score * 1e9)) if rated and snapshot.score is not None else "",
        *(str(alerts.get(severity, 0)) for severity in SEVERITIES),
        "" if kpis.retained is None else str(kpis.retained),
        index_member(name_of(snapshot), snapshot.customer_id),
    ]


def rollup_json(fields: dict[str, str], members: dict[str, list[str]]) -> dict[str, Any]:
    """A rollup hash as the HTTP API answers it: the contract's fields, the revenue per tier
    (None while some of its customers' revenue is not counted per tier: written by an earlier
    version, and not since), then its customers."""

    def counts(kind: str) -> dict[str, int]:
        return {k.split(":", 1)[1]: int(v) for k, v in fields.items() if k.startswith(kind) and int(v)}

    tiers = counts("tier:")
    by_tier = None
    if int(fields.get("revenue_customers") or 0) == sum(tiers.values()):
        by_tier = {tier: float(fields.get(f"revenue:tier:{tier}") or 0) for tier in tiers}
    return {
        "revenue": float(fields.get("revenue") or 0),
        "mean_score": float(fields["mean_score"]) if fields.get("mean_score") else None,
        "retention_rate": float(fields["retention_rate"]) if fields.get("retention_rate") else None,
        "tiers": tiers,
        "alerts": counts("alerts:"),
        "revenue_by_tier": by_tier,
        "customers": members,
    }


def at_risk_tier(tiers: Sequence[str]) -> str:
    """The tier whose customers' revenue is at risk: the policy's worst (``tiers`` best first)."""
    rated = [tier for tier in tiers if tier != UNRATED]
    return rated[-1] if rated else UNRATED


def revenue_at_risk(rollup: Mapping[str, Any], at_risk: str) -> float | None:
    """Σ revenue of a rollup's customers in the ``at_risk`` tier (None: not known yet)."""
    by_tier = rollup.get("revenue_by_tier")
    return None if by_tier is None else float(by_tier.get(at_risk, 0.0))


OTHER = "other"  # the label of every rollup past the bound, summed


def bounded(rollups: list[dict[str, Any]], max_names: int) -> list[dict[str, Any]]:
    """The rollups as metrics label them: the ``max_names`` largest by revenue under their own
    name, the rest summed under ``other`` — names come from producers' profiles, and a flood of
    distinct ones must not make a flood of series (contract v2 §5, Metrics)."""
    ranked = sorted(rollups, key=lambda r: (-r["revenue"], r["name"]))
    kept, rest = ranked[:max_names], ranked[max_names:]
    if not rest:
        return kept
    other: dict[str, Any] = {"name": OTHER, "revenue": 0.0, "tiers": {}, "alerts": {}, "revenue_by_tier": {}}
    for rollup in rest:
        other["revenue"] += rollup["revenue"]
        for kind in ("tiers", "alerts", "revenue_by_tier"):
            if rollup.get(kind) is None:  # (revenue per tier not known yet: not known summed)
                other[kind] = None
            elif other[kind] is not None:
                for key, n in rollup[kind].items():
                    other[kind][key] = other[kind].get(key, 0) + n
    return [*kept, other]
