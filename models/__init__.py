"""TierPulse's pure core: events, per-customer state, KPIs, policy, tiers, alerts. No I/O."""
