"""KPI distributions count customers, not evaluations: each customer in one band per KPI."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from prometheus_client import CollectorRegistry

from models.kpi_bands import KPI_BANDS, UNDEFINED, band_label, bands_of
from models.kpis import Kpis
from sinks.metrics import ScorerMetrics
from tests.unit.builders import DictTables, us
from tests.unit.test_pipeline import Record, order, pipeline


def _kpis(**values: object) -> Kpis:
    empty = Kpis(**dict.fromkeys(Kpis.__dataclass_fields__))  # type: ignore[arg-type]
    return replace(empty, **values)  # type: ignore[arg-type]


def test_each_kpi_falls_in_one_band_with_the_lower_bound_inclusive() -> None:
    kpis = _kpis(on_time_delivery_rate=Decimal("0.9"), first_response_minutes=Decimal("14.99"), csat=5)
    on_time, first_response, complaints, csat = bands_of(kpis)
    assert [band_label(name, band) for name, band in zip(KPI_BANDS, bands_of(kpis), strict=True)] == [
        "0.9-0.95",
        "<15",
        "none",
        ">=4.5",
    ]
    assert complaints == UNDEFINED and (on_time, first_response, csat) == (2, 0, 3)


def test_a_busy_customer_counts_once_in_its_current_band_however_often_it_was_evaluated() -> None:
    tables, scorer = DictTables(), pipeline()
    records = [Record("orders", 0, n, b"busy", order("busy", n)) for n in range(12)]
    records.append(Record("orders", 0, 12, b"quiet", order("quiet", 99)))
    for record in records:  # one batch per event: twelve evaluations of "busy"
        tables.store(scorer.process([record], tables, us(9)))
    registry = CollectorRegistry()
    metrics = ScorerMetrics(registry, ("strategic", "key", "standard", "at_risk", "unrated"), ())
    metrics.set_population(scorer.population[0])

    def customers(band: str) -> float:
        return sum(
            registry.get_sample_value(
                "tierpulse_kpi_customers", {"kpi": "complaint_rate", "segment": s, "band": band}
            )
            or 0
            for s in {key[1] for key in scorer.population[0]}
        )

    assert customers("<1") == 2  # two customers, no complaints: each counted once
    assert sum(scorer.population[0].values()) == 2


def test_the_bands_survive_the_stored_form_so_a_restart_counts_without_evaluating() -> None:
    tables, scorer = DictTables(), pipeline()
    tables.store(scorer.process([Record("orders", 0, 0, b"c1", order("c1", 1))], tables, us(9)))
    before = dict(scorer.population[0])
    restarted = pipeline()
    restarted.process([Record("sweep", 0, 0, None, b"")], tables, us(9, minutes=1 / 60))
    assert restarted.population[0] == before
    [(_, _, bands, _)] = before
    assert len(bands) == len(KPI_BANDS)
