"""Emissions (ESG): factors, a day's emission activity, wells' emitting equipment, calculation, records,
summaries, export, thresholds and their alerts, compliance reports. The routes parse and answer;
`serve.emissions` checks, stores and audits.

Reading is for every role (as production's); writing for the roles that write production records (operator,
manager, admin), like `serve/routers/production.py`.
"""

from datetime import date
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Path, Query, Response

from schema.api import Envelope, ErrorEnvelope
from schema.emissions import (
    ActivityBatch,
    ActivityPublic,
    CalculateRequest,
    CalculationPublic,
    EmissionPublic,
    EmissionSummary,
    EquipmentPublic,
    EquipmentPut,
    FactorCreate,
    FactorKey,
    FactorPublic,
    FactorUpdate,
    GapPublic,
    GroupBy,
    ReportCreate,
    ReportPublic,
    SummaryPeriod,
    ThresholdAlert,
    ThresholdCreate,
    ThresholdPublic,
    ThresholdUpdate,
)
from schema.production import WELL_ID_PATTERN
from serve import emissions as service
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require
from serve.errors import ApiError
from serve.listing import list_params, page_envelope, sparse_list
from store import alerts as alert_store
from store import emissions as store
from store.listing import ListQuery

router = APIRouter(prefix="/v1", tags=["emissions"])
Reader = Annotated[Principal, require("assets:read")]
Writer = Annotated[Principal, require("field_data:write")]
WellPath = Annotated[str, Path(pattern=WELL_ID_PATTERN)]
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorEnvelope}, 409: {"model": ErrorEnvelope},
                                           422: {"model": ErrorEnvelope}}
MEDIA = {"csv": "text/csv; charset=utf-8",
         "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
EMISSION_PAGE = Envelope.__class_getitem__(sparse_list(EmissionPublic))
REPORT_PAGE = Envelope.__class_getitem__(sparse_list(ReportPublic))
THRESHOLD_ALERT_PAGE = Envelope.__class_getitem__(sparse_list(ThresholdAlert))
From = Annotated[date | None, Query(alias="from", description="first day (inclusive)")]
To = Annotated[date | None, Query(description="last day (inclusive)")]
WellQuery = Annotated[str | None, Query(pattern=WELL_ID_PATTERN, description="one well; default: the tenant")]


# ---------------------------------------------------------------- factors


@router.get("/emissions/factors", response_model=Envelope[list[FactorPublic]], responses=ERRORS)
async def list_factors(services: ServicesDep, principal: Reader) -> Envelope[list[FactorPublic]]:
    """The defaults (each with the source of its number) and the tenant's versions. On a day, a key's factor is
    the tenant's highest version valid that day, else the default."""
    rows = await service.list_factors(services, principal.tenant_id)
    return Envelope(data=[FactorPublic(**r) for r in rows])


@router.post("/emissions/factors", status_code=201, response_model=Envelope[FactorPublic], responses=ERRORS)
async def create_factor(body: FactorCreate, services: ServicesDep, principal: Writer, audit: Audit,
                        ) -> Envelope[FactorPublic]:
    """The tenant's next version of a factor: its key's unit, a value > 0, a valid period (`valid_from`,
    optional inclusive `valid_to`). Records computed before keep the version they used."""
    return Envelope(data=FactorPublic(**await service.create_factor(services, audit, body)))


@router.patch("/emissions/factors/{key}", response_model=Envelope[FactorPublic], responses=ERRORS)
async def update_factor(key: Annotated[FactorKey, Path()], body: FactorUpdate, services: ServicesDep,
                        principal: Writer, audit: Audit) -> Envelope[FactorPublic]:
    """A new version of the key from its latest (the tenant's, else the default), with what the body changes."""
    row = await service.update_factor(services, audit, key, body.model_dump(exclude_unset=True))
    return Envelope(data=FactorPublic(**row))


# ---------------------------------------------------------------- activity and equipment


@router.post("/emissions/activity", response_model=Envelope[list[ActivityPublic]], responses=ERRORS)
async def put_activity(body: ActivityBatch, services: ServicesDep, principal: Writer, audit: Audit,
                       ) -> Envelope[list[ActivityPublic]]:
    """Flared, vented and fuel gas (Mcf) per well and day, all or nothing; a day already stored is replaced
    (recalculate to supersede its emissions)."""
    rows = await service.put_activity(services, audit, body.records)
    return Envelope(data=[ActivityPublic(**dict(r)) for r in rows])


@router.get("/emissions/equipment/{well_id}", response_model=Envelope[EquipmentPublic], responses=ERRORS)
async def get_equipment(well_id: WellPath, services: ServicesDep, principal: Reader) -> Envelope[EquipmentPublic]:
    return Envelope(data=EquipmentPublic(**dict(await service.get_equipment(services, principal.tenant_id, well_id))))


@router.put("/emissions/equipment/{well_id}", response_model=Envelope[EquipmentPublic], responses=ERRORS)
async def put_equipment(well_id: WellPath, body: EquipmentPut, services: ServicesDep, principal: Writer,
                        audit: Audit) -> Envelope[EquipmentPublic]:
    """The well's pneumatic devices and fugitive components by type, and its engine's fuel rate."""
    return Envelope(data=EquipmentPublic(**dict(await service.put_equipment(services, audit, well_id, body))))


# ---------------------------------------------------------------- calculation and records


@router.post("/emissions/calculate", response_model=Envelope[CalculationPublic], responses=ERRORS)
async def calculate(body: CalculateRequest, services: ServicesDep, principal: Writer, audit: Audit,
                    ) -> Envelope[CalculationPublic]:
    """Compute [start, end] for the wells (or the tenant). A changed amount supersedes the stored record (kept);
    an unchanged one stays. Days without production are `gaps`, never zero. Thresholds are then evaluated and
    alert through the alert lifecycle."""
    r = await service.calculate(services, audit, body)
    return Envelope(data=CalculationPublic(
        start=r.start, end=r.end, wells=len(r.wells), inserted=r.inserted, superseded=r.superseded,
        unchanged=r.unchanged, gaps=[GapPublic(**vars_of(g)) for g in r.gaps],
        missing_activity=[GapPublic(**vars_of(g)) for g in r.missing], alert_events=len(r.events)))


def vars_of(gap: Any) -> dict[str, Any]:
    return {"well_id": gap.well_id, "day": gap.day, "reason": gap.reason, "source": gap.source}


@router.get("/emissions", response_model=EMISSION_PAGE, response_model_exclude_unset=True, responses=ERRORS)
async def list_emissions(services: ServicesDep, principal: Reader,
                         q: Annotated[ListQuery, list_params(store.EMISSIONS, reserved={"include_superseded"})],
                         include_superseded: bool = False) -> dict[str, Any]:
    """Emission records, newest day first; superseded ones only with `include_superseded=true`. Filter on any
    field (`well_id`, `day=gte:2026-01-01`, `source`, `gas`...)."""
    rows, total = await service.list_emissions(services, principal.tenant_id, q, include_superseded=include_superseded)
    return page_envelope(rows, total, q)


@router.get("/emissions/summary", response_model=Envelope[list[EmissionSummary]], responses=ERRORS)
async def emissions_summary(services: ServicesDep, principal: Reader, period: SummaryPeriod = "month",
                            group_by: GroupBy = "gas", from_: From = None, to: To = None,
                            well_id: WellQuery = None) -> Envelope[list[EmissionSummary]]:
    """Sums per day, ISO week, month or year and per well, source or gas, with kg CO2e per BOE (BOE = oil_bbl +
    gas_mcf / 6; the group's well's production when grouped by well, else all wells'). Default: the year to
    today."""
    rows = await service.summary(services, principal.tenant_id, period=period, group_by=group_by, start=from_, end=to,
                                 well_id=well_id)
    return Envelope(data=[EmissionSummary(**r) for r in rows])


@router.get("/analytics/emissions-summary", response_model=Envelope[list[EmissionSummary]], responses=ERRORS)
async def analytics_emissions_summary(services: ServicesDep, principal: Reader, period: SummaryPeriod = "month",
                                      group_by: GroupBy = "gas", from_: From = None, to: To = None,
                                      well_id: WellQuery = None) -> Envelope[list[EmissionSummary]]:
    """The dashboards' emissions KPIs: the same numbers as `GET /v1/emissions/summary`."""
    rows = await service.summary(services, principal.tenant_id, period=period, group_by=group_by, start=from_, end=to,
                                 well_id=well_id)
    return Envelope(data=[EmissionSummary(**r) for r in rows])


@router.get("/emissions/export", response_class=Response, responses={
    200: {"content": {MEDIA["csv"]: {}, MEDIA["xlsx"]: {}}, "description": "CSV or XLSX"}, **ERRORS})
async def export_emissions(services: ServicesDep, principal: Reader, format: Literal["csv", "xlsx"] = "csv",
                           from_: From = None, to: To = None, well_id: WellQuery = None) -> Response:
    """The live records as CSV or XLSX: id, well, day, source, gas, kg, kg CO2e, the factor versions used."""
    if from_ and to and from_ > to:
        raise ApiError(422, "from is after to", details=[{"field": "from", "message": "must not be after to"}])
    content = await service.export(services, principal.tenant_id, fmt=format, start=from_, end=to, well_id=well_id)
    name = f"emissions-{well_id or principal.tenant_id}.{format}"
    return Response(content, media_type=MEDIA[format],
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# ---------------------------------------------------------------- thresholds


@router.get("/emissions/thresholds", response_model=Envelope[list[ThresholdPublic]], responses=ERRORS)
async def list_thresholds(services: ServicesDep, principal: Reader) -> Envelope[list[ThresholdPublic]]:
    """Each threshold with its status at yesterday (tenant's zone): actual and projected tonnes and % of the limit."""
    rows = await service.list_thresholds(services, principal.tenant_id)
    return Envelope(data=[ThresholdPublic(**r) for r in rows])


@router.post("/emissions/thresholds", status_code=201, response_model=Envelope[ThresholdPublic], responses=ERRORS)
async def create_threshold(body: ThresholdCreate, services: ServicesDep, principal: Writer, audit: Audit,
                           ) -> Envelope[ThresholdPublic]:
    """A limit (> 0 tonnes) of a gas or CO2e per rolling 12 months, calendar month or year, for a well or the
    tenant. At 80 % and 100 % (actual, or projected to the period's end at the current rate) an alert opens."""
    row = await service.create_threshold(services, audit, body.model_dump())
    return Envelope(data=ThresholdPublic(**dict(row)))


@router.patch("/emissions/thresholds/{threshold_id}", response_model=Envelope[ThresholdPublic], responses=ERRORS)
async def update_threshold(threshold_id: UUID, body: ThresholdUpdate, services: ServicesDep, principal: Writer,
                           audit: Audit) -> Envelope[ThresholdPublic]:
    row = await service.update_threshold(services, audit, threshold_id, body.model_dump(exclude_unset=True))
    return Envelope(data=ThresholdPublic(**dict(row)))


@router.delete("/emissions/thresholds/{threshold_id}", status_code=204, responses=ERRORS)
async def delete_threshold(threshold_id: UUID, services: ServicesDep, principal: Writer, audit: Audit) -> Response:
    await service.delete_threshold(services, audit, threshold_id)
    return Response(status_code=204)


@router.get("/emissions/alerts", response_model=THRESHOLD_ALERT_PAGE, response_model_exclude_unset=True,
            responses=ERRORS)
async def threshold_alerts(services: ServicesDep, principal: Annotated[Principal, require("alerts:read")],
                           q: Annotated[ListQuery, list_params(alert_store.ALERTS)]) -> dict[str, Any]:
    """Alerts opened by emission thresholds (pseudo-equipment `esg-<well>` or `esg-tenant`, rule
    `emissions_threshold:<id>:80|100`); acknowledge them at `POST /v1/alerts/{id}/acknowledge`."""
    rows, total = await service.list_threshold_alerts(services, principal.tenant_id, q)
    return page_envelope(rows, total, q)


# ---------------------------------------------------------------- reports


@router.post("/emissions/reports", status_code=201, response_model=Envelope[ReportPublic], responses=ERRORS)
async def create_report(body: ReportCreate, services: ServicesDep, principal: Writer, audit: Audit,
                        ) -> Envelope[ReportPublic]:
    """A PDF of a closed period (422 on `end` if it is today or later in the tenant's zone), stored with its
    SHA-256. Never edited or deleted (the database refuses both); kept at least 7 years."""
    return Envelope(data=ReportPublic(**dict(await service.create_report(services, audit, body))))


@router.get("/emissions/reports", response_model=REPORT_PAGE, response_model_exclude_unset=True, responses=ERRORS)
async def list_reports(services: ServicesDep, principal: Reader,
                       q: Annotated[ListQuery, list_params(store.REPORTS)]) -> dict[str, Any]:
    rows, total = await service.list_reports(services, principal.tenant_id, q)
    return page_envelope(rows, total, q)


@router.get("/emissions/reports/{report_id}", response_model=Envelope[ReportPublic], responses=ERRORS)
async def get_report(report_id: UUID, services: ServicesDep, principal: Reader) -> Envelope[ReportPublic]:
    return Envelope(data=ReportPublic(**dict(await service.get_report(services, principal.tenant_id, report_id))))


@router.get("/emissions/reports/{report_id}/pdf", response_class=Response,
            responses={200: {"content": {"application/pdf": {}}}, **ERRORS})
async def report_pdf(report_id: UUID, services: ServicesDep, principal: Reader) -> Response:
    """The stored PDF; `X-Content-SHA256` is its hash as recorded at creation."""
    row = await service.report_pdf(services, principal.tenant_id, report_id)
    return Response(bytes(row["content"]), media_type="application/pdf", headers={
        "X-Content-SHA256": row["sha256"], "Content-Disposition": f'attachment; filename="report-{report_id}.pdf"'})


@router.post("/emissions/reports/{report_id}/supersede", status_code=201, response_model=Envelope[ReportPublic],
             responses=ERRORS)
async def supersede_report(report_id: UUID, services: ServicesDep, principal: Writer, audit: Audit,
                           title: Annotated[str | None, Body(embed=True, min_length=1, max_length=200)] = None,
                           ) -> Envelope[ReportPublic]:
    """A new report of the same period and wells from the records as they are now; the old one stays, marked
    `superseded_by` the new one (409 if it already was)."""
    row = await service.supersede_report(services, audit, report_id, title)
    return Envelope(data=ReportPublic(**dict(row)))
