"""KPI bands: how many customers have an on-time rate under 90 %, a first response over an hour.

A histogram observed at each evaluation counts a busy customer many times; the dashboards' KPI
distributions count customers instead. Each customer's last evaluation puts it in one band per
KPI below (stored with its tier status, so a restart counts it again without evaluating it),
and the worker keeps the count per segment and band (``tierpulse_kpi_customers``). The bounds
are fixed here, in the KPI's own unit, so that the series stay comparable when a policy's
good/bad values move.
"""

from __future__ import annotations

from bisect import bisect_right

from models.kpis import KpiName, Kpis

# KPI -> the band bounds, ascending: band i holds bounds[i-1] <= value < bounds[i].
KPI_BANDS: dict[KpiName, tuple[float, ...]] = {
    "on_time_delivery_rate": (0.8, 0.9, 0.95, 0.99),
    "first_response_minutes": (15, 60, 240, 1440),
    "complaint_rate": (1, 5, 10, 25),
    "csat": (3, 4, 4.5),
}
UNDEFINED = -1  # the KPI is null (no deliveries, no tickets, …)


def bands_of(kpis: Kpis) -> list[int]:
    """The band index of each KPI of KPI_BANDS, in its order (UNDEFINED for a null KPI)."""
    found = []
    for name, bounds in KPI_BANDS.items():
        value = kpis.value(name)
        found.append(UNDEFINED if value is None else bisect_right(bounds, float(value)))
    return found


def band_label(name: KpiName, band: int) -> str:
    """The band as a label: ``<0.8``, ``0.8-0.9``, ``>=0.99``, ``none``."""
    if band == UNDEFINED:
        return "none"
    bounds = KPI_BANDS[name]
    if band == 0:
        return f"<{bounds[0]:g}"
    if band == len(bounds):
        return f">={bounds[-1]:g}"
    return f"{bounds[band - 1]:g}-{bounds[band]:g}"
