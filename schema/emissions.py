"""Emissions over the API: factors, a day's emission activity, a well's emitting equipment, the calculation, the
records, summaries, thresholds and compliance reports (request and response bodies)."""

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from schema.api import AlertPublic
from schema.production import WELL_ID_PATTERN, Volume

WellId = Annotated[str, StringConstraints(pattern=WELL_ID_PATTERN)]
FactorKey = Annotated[str, StringConstraints(pattern=r"^[a-z_]+\.[A-Za-z0-9_]+$", max_length=100)]
Citation = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
Gas = Literal["CO2", "CH4", "N2O", "VOC"]
ThresholdGas = Literal["CO2", "CH4", "N2O", "VOC", "CO2e"]
ThresholdPeriod = Literal["rolling_12_months", "calendar_month", "calendar_year"]
SummaryPeriod = Literal["day", "week", "month", "year"]
GroupBy = Literal["well", "field", "source", "gas"]
Count = Annotated[int, Field(ge=0, le=100_000)]
PositiveValue = Annotated[float, Field(allow_inf_nan=False)]
MAX_CALC_WELLS = 1000


class FactorPublic(BaseModel):
    """A factor as it applies: a default (``origin: default``, version ``default:...``) or a tenant's version."""

    key: str
    source: str
    gas: str | None
    value: float
    unit: str
    citation: str
    valid_from: date
    valid_to: date | None
    version: str
    origin: Literal["default", "tenant"]
    id: UUID | None = None
    created_by: str | None = None
    created_at: datetime | None = None


class FactorCreate(BaseModel):
    """A tenant's version of a factor. ``unit`` must be the key's unit (no conversion is assumed); ``value`` > 0;
    ``valid_from`` is required and ``valid_to`` (inclusive), when given, not before it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "key": "gas.ch4_mole_fraction", "value": 0.83, "unit": "mol/mol",
        "citation": "gas analysis, lab report 2026-114", "valid_from": "2026-01-01"}]})

    key: FactorKey
    value: PositiveValue
    unit: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    citation: Citation
    valid_from: date
    valid_to: date | None = None


class FactorUpdate(BaseModel):
    """A new version of a key from its latest: what is left out is carried over."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"value": 0.85,
                                                                                "valid_from": "2026-07-01"}]})

    value: PositiveValue | None = None
    unit: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None
    citation: Citation | None = None
    valid_from: date | None = None
    valid_to: date | None = None


class ActivityRecord(BaseModel):
    """A well's day of flared, vented and fuel gas (Mcf). Left out: not reported (that source is not computed and
    the calculation says so); 0: none."""

    model_config = ConfigDict(extra="forbid")

    well_id: WellId
    day: date
    flared_mcf: Volume | None = None
    vented_mcf: Volume | None = None
    fuel_gas_mcf: Volume | None = None


class ActivityBatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"records": [
        {"well_id": "W-0001", "day": "2026-11-20", "flared_mcf": 12.0, "vented_mcf": 0.5, "fuel_gas_mcf": 3.0}]}]})

    records: Annotated[list[ActivityRecord], Field(min_length=1, max_length=1000)]


class ActivityPublic(BaseModel):
    well_id: str
    day: date
    flared_mcf: float | None
    vented_mcf: float | None
    fuel_gas_mcf: float | None
    version: int
    updated_by: str
    updated_at: datetime


class PneumaticCounts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    high_bleed: Count = 0
    intermittent: Count = 0
    low_bleed: Count = 0


class ComponentCounts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    valve: Count = 0
    connector: Count = 0
    open_ended_line: Count = 0
    pressure_relief_valve: Count = 0


class EquipmentPut(BaseModel):
    """A well's emitting equipment (replaces what was stored)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "pneumatic_devices": {"intermittent": 4, "low_bleed": 2},
        "components": {"valve": 40, "connector": 120, "open_ended_line": 3, "pressure_relief_valve": 2},
        "engine_fuel_mcf_per_hour": 0.4}]})

    pneumatic_devices: PneumaticCounts = Field(default_factory=PneumaticCounts)
    components: ComponentCounts = Field(default_factory=ComponentCounts)
    engine_fuel_mcf_per_hour: Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)] | None = None


class EquipmentPublic(BaseModel):
    well_id: str
    pneumatic_devices: dict[str, int]
    components: dict[str, int]
    engine_fuel_mcf_per_hour: float | None
    version: int
    updated_by: str
    updated_at: datetime


class CalculateRequest(BaseModel):
    """Days [start, end] (inclusive, at most a year, none after today) of the listed wells or, without
    ``well_ids``, of every live well of the tenant."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "start": "2026-11-01", "end": "2026-11-30", "well_ids": ["W-0001"]}]})

    start: date
    end: date
    well_ids: Annotated[list[WellId], Field(min_length=1, max_length=MAX_CALC_WELLS)] | None = None


class GapPublic(BaseModel):
    well_id: str
    day: date
    reason: str
    source: str | None = None


class CalculationPublic(BaseModel):
    """What a calculation stored. ``gaps``: days without a production record (nothing computed, not zero);
    ``missing_activity``: days whose flared, vented or fuel gas was not reported (that source not computed)."""

    start: date
    end: date
    wells: int
    inserted: int
    superseded: int
    unchanged: int
    gaps: list[GapPublic]
    missing_activity: list[GapPublic]
    alert_events: int


class EmissionPublic(BaseModel):
    id: UUID
    well_id: str
    day: date
    source: str
    gas: str
    kg: float
    co2e_kg: float
    factors: list[dict[str, Any]]
    inputs: dict[str, float]
    calculated_at: datetime
    calculated_by: str
    superseded_by: UUID | None = None
    superseded_at: datetime | None = None


class EmissionSummary(BaseModel):
    """Sums of one period and group; ``kg_co2e_per_boe`` is null for a period without production."""

    period_start: date
    key: str = Field(description="the well, source or gas grouped by")
    co2e_kg: float
    co2_kg: float
    ch4_kg: float
    n2o_kg: float
    voc_kg: float
    boe: float = Field(description="barrels of oil equivalent: oil_bbl + gas_mcf / 6")
    kg_co2e_per_boe: float | None


class ThresholdCreate(BaseModel):
    """A permit limit in tonnes (> 0) of one gas or CO2e over a period, for a well, the wells of a field (a
    facility), or (neither) the tenant."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "name": "Title V CH4 cap", "gas": "CH4", "period": "rolling_12_months", "limit_tonnes": 100.0}]})

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    well_id: WellId | None = None
    field: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    gas: ThresholdGas
    period: ThresholdPeriod
    limit_tonnes: Annotated[float, Field(gt=0, le=1e12, allow_inf_nan=False)]


class ThresholdUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    well_id: WellId | None = None
    field: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    gas: ThresholdGas | None = None
    period: ThresholdPeriod | None = None
    limit_tonnes: Annotated[float, Field(gt=0, le=1e12, allow_inf_nan=False)] | None = None

    # name, gas, period and limit_tonnes may be left out but not set to null (checked by the service, naming
    # the field); well_id or field null leaves the threshold the tenant's, naming one replaces the other.


class ThresholdPublic(BaseModel):
    id: UUID
    name: str
    well_id: str | None
    field: str | None = None
    gas: str
    period: str
    limit_tonnes: float
    version: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    status: dict[str, Any] | None = Field(None, description="actual and projected use at the last complete day")


class ReportCreate(BaseModel):
    """A compliance report of a closed period (``end`` before today in the tenant's zone) for the listed wells
    (all live wells when left out)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "title": "Q3 2026 emissions", "start": "2026-07-01", "end": "2026-09-30"}]})

    title: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    start: date
    end: date
    well_ids: Annotated[list[WellId], Field(min_length=1, max_length=MAX_CALC_WELLS)] | None = None


class ReportPublic(BaseModel):
    id: UUID
    title: str
    period_start: date
    period_end: date
    well_ids: list[str]
    factor_versions: list[dict[str, Any]]
    totals: dict[str, Any]
    sha256: str
    size_bytes: int
    supersedes: UUID | None = None
    superseded_by: UUID | None = None
    superseded_at: datetime | None = None
    created_by: str
    created_at: datetime


class ThresholdAlert(AlertPublic):
    """An alert an emission threshold opened (its own class: list pages are built per class, see
    serve.listing.sparse_list)."""
