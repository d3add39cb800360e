"""The dashboards' numbers: production summaries, well performance, equipment health, decline forecasts.

Volumes are barrels (oil, water) and mcf (gas); BOE is ``oil_bbl + gas_mcf / 6`` (6 mcf of gas to a barrel of
oil, by energy content). A period without any production record is absent from a summary (a gap), never
reported as zero.
"""

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["AlertTotals", "EquipmentHealth", "ForecastMonth", "GroupBy", "PerformanceBasis", "ProductionPeriod",
           "SummaryPeriod", "WellForecast", "WellPerformance"]

GroupBy = Literal["tenant", "well", "field"]
PerformanceBasis = Literal["oil", "boe"]
SummaryPeriod = Literal["day", "week", "month"]


class ProductionPeriod(BaseModel):
    """Sums of one period (a day, an ISO week from Monday, a calendar month) for one group."""

    period_start: date
    group: str | None = Field(None, description="the well id or the field's name (null: the tenant, or wells"
                                                " without a field)")
    oil_bbl: float
    gas_mcf: float
    water_bbl: float
    boe: float
    records: int = Field(description="production records (well-days) in the period")
    wells: int
    producing_days: int = Field(description="well-days with a rate and a runtime other than 0")
    down_days: int = Field(description="well-days with runtime 0, or no runtime and no oil and no gas")
    runtime_hours: float = Field(description="sum over the records that report a runtime")
    avg_runtime_hours: float | None = Field(None, description="per record that reports a runtime")
    avg_oil_bbl_per_day: float = Field(description="oil per record (well-day)")
    avg_boe_per_day: float


class WellPerformance(BaseModel):
    """One well over [from, to], and its last 30 days of data against its decline curve.

    ``expected`` and ``actual`` are the volumes (``basis``) of the producing days of the 30 days ending at the
    well's last record on or before ``to``; the curve is fitted on the days before them.
    """

    well_id: str
    name: str
    field: str | None
    oil_bbl: float
    gas_mcf: float
    water_bbl: float
    boe: float
    records: int
    missing_days: int = Field(description="days of [from, to] without a record: a gap, not zero")
    producing_days: int
    down_days: int
    runtime_hours: float
    downtime_hours: float = Field(description="24 h minus the runtime, over the records that report one")
    basis: PerformanceBasis
    decline_model: str | None = None
    actual: float | None = None
    expected: float | None = None
    actual_vs_expected: float | None = Field(None, description="actual / expected")
    days_below_band: int | None = None
    underperforming: bool = Field(description="at least 14 producing days of the 30 below the 95 % band")
    reason: str | None = Field(None, description="why there is no expectation (too little history)")


class AlertTotals(BaseModel):
    count: int
    hours: float = Field(description="time open within the range (until resolved, or the range's end)")


class EquipmentHealth(BaseModel):
    """One equipment over [from 00:00 UTC, to + 1 day 00:00 UTC)."""

    equipment_id: str
    name: str
    type: str
    status: str
    range_hours: float
    downtime_hours: float = Field(description="union of its comms_loss / stale_data alerts and maintenance jobs")
    uptime_pct: float
    alerts: dict[str, AlertTotals] = Field(description="alerts opened in the range, by severity")
    failures: int = Field(description="failure_repair maintenance jobs started in the range")
    mtbf_hours: float | None = Field(None, description="(range - downtime) / failures; null without failures")
    mttr_hours: float | None = Field(None, description="mean length of the failure repairs ended in the range")
    failure_probability: float | None = Field(None, description="the failure model's latest (predictions)")
    prediction_updated_at: datetime | None = None


class ForecastMonth(BaseModel):
    month: date
    days: int = Field(description="days forecast in the month")
    rate: float = Field(description="expected mean daily rate")
    low: float = Field(description="the daily 95 % band's lower edge, averaged over the month")
    high: float
    volume: float = Field(description="expected volume of the month's days")


class WellForecast(BaseModel):
    """An Arps fit of the well's producing days and its forecast; ``status`` ``insufficient_data`` (with
    ``reason``, and no fit) when the history is too short."""

    well_id: str
    basis: PerformanceBasis
    status: Literal["ok", "insufficient_data"]
    reason: str | None = None
    model: Literal["exponential", "hyperbolic", "harmonic"] | None = None
    qi: float | None = Field(None, description="rate at first_day (per day)")
    di: float | None = Field(None, description="nominal initial decline, per day")
    b: float | None = None
    sigma: float | None = Field(None, description="residual standard deviation of the log rates")
    aic: dict[str, float] = Field(default_factory=dict, description="each model's AIC; the lowest wins")
    points: int = Field(description="producing days fitted")
    first_day: date | None = Field(None, description="the first producing day (t = 0)")
    last_day: date | None = None
    band: str = "95 % prediction band of the daily rate from the log residuals (parameter uncertainty left out)"
    underperforming: bool = False
    days_below_band: int | None = None
    months: list[ForecastMonth] = Field(default_factory=list)
