"""The KPIs of contract §3, as of one watermark."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Literal, get_args

KpiName = Literal[
    "revenue",
    "order_count",
    "on_time_delivery_rate",
    "first_response_minutes",
    "response_sla_rate",
    "complaint_rate",
    "csat",
    "days_since_last_order",
    "gross_margin_rate",
    "revenue_growth",
    "tenure_days",
    "receivables_collection_rate",
    "overdue_receivables",
    "lifetime_revenue",
    "retained",
    "revenue_per_service_hour",
]
KPI_NAMES: tuple[KpiName, ...] = get_args(KpiName)


@dataclass(frozen=True, slots=True)
class Kpis:
    """None means undefined (contract: null)."""

    revenue: Decimal
    order_count: int
    on_time_delivery_rate: float | None
    first_response_minutes: float | None
    response_sla_rate: float | None
    complaint_rate: float
    csat: float | None
    days_since_last_order: Decimal | None
    gross_margin_rate: float | None
    revenue_growth: float | None
    tenure_days: Decimal | None
    receivables_collection_rate: float | None
    overdue_receivables: Decimal
    lifetime_revenue: Decimal
    retained: int | None
    revenue_per_service_hour: float | None

    def value(self, name: KpiName) -> float | None:
        """A KPI as a number for scoring (None when undefined)."""
        raw = getattr(self, name)
        return None if raw is None else float(raw)

    def as_json(self) -> dict[str, float | int | None]:
        """JSON numbers for the outputs; Decimals become the nearest float."""
        return {k: (float(v) if isinstance(v, Decimal) else v) for k, v in asdict(self).items()}
