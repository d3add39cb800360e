"""Daily production records of wells: CRUD, batch, CSV import and export, and period sums. The routes parse and
answer; `serve.production` checks, stores and audits.

"Today" is the tenant's (its `timezone` setting, UTC by default): a record may be for today
or earlier, never for a day that has not started there yet.
"""

from datetime import date
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from schema.api import Envelope, ErrorEnvelope
from schema.production import (
    WELL_ID_PATTERN,
    CsvProblem,
    Period,
    ProductionBatch,
    ProductionCreate,
    ProductionCreated,
    ProductionPublic,
    ProductionSummary,
    ProductionUpdate,
    parse_production_csv,
)
from serve import production as service
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require
from serve.errors import ApiError
from serve.listing import list_params, page_envelope, sparse_list
from store import production as store
from store.listing import ListQuery

router = APIRouter(prefix="/v1", tags=["production"])
Reader = Annotated[Principal, require("assets:read")]
Writer = Annotated[Principal, require("field_data:write")]
WellPath = Annotated[str, Path(pattern=WELL_ID_PATTERN)]
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorEnvelope}, 409: {"model": ErrorEnvelope},
                                           422: {"model": ErrorEnvelope}}
CSV_MEDIA_TYPE = "text/csv"
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {200: {
    "content": {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}}, "description": "CSV with a header row, streamed"}}


# ---------------------------------------------------------------- collection
# List pages, parametrised at module level (see serve.listing.sparse_list).
PRODUCTION_PAGE = Envelope.__class_getitem__(sparse_list(ProductionPublic))


@router.get("/production", response_model=PRODUCTION_PAGE, response_model_exclude_unset=True,
            responses=ERRORS)
async def list_production(services: ServicesDep, principal: Reader,
                          q: Annotated[ListQuery, list_params(store.PRODUCTION)]) -> dict[str, Any]:
    """Production records of the tenant, newest day first; filter on any field (`well_id`, `day`, volumes,
    `source`...)."""
    rows, total = await service.list_records(services, principal.tenant_id, q)
    return page_envelope(rows, total, q)


@router.post("/production", status_code=201, response_model=Envelope[ProductionPublic], responses=ERRORS)
async def create_production(body: ProductionCreate, services: ServicesDep, principal: Writer, audit: Audit,
                            ) -> Envelope[ProductionPublic]:
    """One day of one well; 409 if that well already has a record for that day."""
    [row] = await service.create_records(services, audit, [body], source="api", label=store.single_label)
    return Envelope(data=ProductionPublic(**dict(row)))


@router.post("/production/batch", status_code=201, response_model=Envelope[ProductionCreated], responses=ERRORS)
async def create_production_batch(body: ProductionBatch, services: ServicesDep, principal: Writer, audit: Audit,
                                  ) -> Envelope[ProductionCreated]:
    """Up to 1,000 records, all or nothing: any bad record (named `records.<index>.<field>`) and none is stored."""
    rows = await service.create_records(services, audit, body.records, source="api", label=store.batch_label)
    return Envelope(data=ProductionCreated(count=len(rows), ids=[r["id"] for r in rows]))


@router.post("/production/import", status_code=201, response_model=Envelope[ProductionCreated],
             responses={**ERRORS, 415: {"model": ErrorEnvelope}},
             openapi_extra={"requestBody": {"required": True, "content": {CSV_MEDIA_TYPE: {"schema": {
                 "type": "string", "example": "well_id,day,oil_bbl,gas_mcf,water_bbl,runtime_hours\n"
                                              "W-0001,2026-11-20,42.5,130,88,23.5\n"}}}}})
async def import_production(request: Request, services: ServicesDep, principal: Writer, audit: Audit,
                            ) -> Envelope[ProductionCreated]:
    """A `text/csv` body: a header row of field names (`well_id` and `day` required; `oil_bbl`, `gas_mcf`,
    `water_bbl`, `runtime_hours`, `tubing_psi`, `casing_psi`, `line_psi`, `temperature_f`, `notes`
    optional; an export's extra columns are ignored), then up to 10,000 records. All or
    nothing: every problem is reported as `line <n>.<column>` and none is stored."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in (CSV_MEDIA_TYPE, "application/csv"):
        raise ApiError(415, "send the records as text/csv",
                       details=[{"field": "Content-Type", "message": "expected text/csv"}])
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(422, "the CSV is not UTF-8", details=[{"field": "body", "message": str(exc)}]) from exc
    try:
        parsed = parse_production_csv(text)
    except CsvProblem as exc:
        raise ApiError(422, f"{len(exc.details)} problem(s) in the CSV; nothing was stored",
                       details=exc.details) from exc
    lines = [line for line, _ in parsed]

    def label(index: int, field: str) -> str:
        return f"line {lines[index]}.{field}"

    rows = await service.create_records(services, audit, [r for _, r in parsed], source="import", label=label)
    return Envelope(data=ProductionCreated(count=len(rows), ids=[r["id"] for r in rows]))


@router.get("/production/export", response_class=StreamingResponse, responses={**CSV_RESPONSE, **ERRORS})
async def export_production(
    services: ServicesDep, principal: Reader,
    well_id: Annotated[str | None, Query(pattern=WELL_ID_PATTERN)] = None,
    from_: Annotated[date | None, Query(alias="from", description="first day (inclusive)")] = None,
    to: Annotated[date | None, Query(description="last day (inclusive)")] = None,
) -> StreamingResponse:
    """The tenant's records (or one well's) as CSV, ordered by well and day, streamed from a server-side cursor.
    The file imports again as it is (`POST /v1/production/import`)."""
    if from_ and to and from_ > to:
        raise ApiError(422, "from is after to", details=[{"field": "from", "message": "must not be after to"}])
    chunks = await service.export_csv(services, principal.tenant_id, well_id=well_id, start=from_, end=to)
    filename = f"production-{well_id or principal.tenant_id}.csv"
    return StreamingResponse(chunks, media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/production/summary", response_model=Envelope[list[ProductionSummary]], responses=ERRORS)
async def production_summary(
    services: ServicesDep, principal: Reader,
    period: Period = "day",
    from_: Annotated[date | None, Query(alias="from", description="first day (inclusive); default: a year "
                                        "before `to` (30 days for period=day)")] = None,
    to: Annotated[date | None, Query(description="last day (inclusive); default: today")] = None,
    well_id: Annotated[str | None, Query(pattern=WELL_ID_PATTERN, description="one well; default: the tenant")] = None,
) -> Envelope[list[ProductionSummary]]:
    """Sums of oil, gas and water and the average runtime per day, ISO week (from Monday) or calendar month,
    for one well or the whole tenant. Every period of the range is listed, empty ones with zeros; only
    days in [from, to] count, so the first and last periods may be partial. At most 1,000 periods."""
    rows = await service.summary(services, principal.tenant_id, period=period, start=from_, end=to, well_id=well_id)
    return Envelope(data=[ProductionSummary(**dict(r)) for r in rows])


# ---------------------------------------------------------------- one record


@router.get("/production/{record_id}", response_model=Envelope[ProductionPublic], responses=ERRORS)
async def get_production(record_id: UUID, services: ServicesDep, principal: Reader) -> Envelope[ProductionPublic]:
    row = await service.get_record(services, principal.tenant_id, record_id)
    return Envelope(data=ProductionPublic(**dict(row)))


@router.patch("/production/{record_id}", response_model=Envelope[ProductionPublic], responses=ERRORS)
async def update_production(record_id: UUID, body: ProductionUpdate, services: ServicesDep, principal: Writer,
                            audit: Audit) -> Envelope[ProductionPublic]:
    """A partial update; each change bumps `version`. Send the `version` you read to be refused (409) if
    someone changed the record meanwhile. `runtime_hours`, the pressures, `temperature_f` and `notes` may be
    set to null; the volumes may not."""
    changes = body.model_dump(exclude_unset=True)
    expected = changes.pop("version", None)
    row = await service.update_record(services, audit, record_id, changes, expected)
    return Envelope(data=ProductionPublic(**dict(row)))


@router.delete("/production/{record_id}", status_code=204, responses=ERRORS)
async def delete_production(record_id: UUID, services: ServicesDep, principal: Writer, audit: Audit) -> Response:
    """Soft delete: the record leaves lists, sums and exports, and its well and day may be recorded again."""
    await service.delete_record(services, audit, record_id)
    return Response(status_code=204)


# ---------------------------------------------------------------- per well


@router.get("/wells/{well_id}/production", response_model=PRODUCTION_PAGE,
            response_model_exclude_unset=True, responses=ERRORS)
async def well_production(well_id: WellPath, services: ServicesDep, principal: Reader,
                          q: Annotated[ListQuery, list_params(store.PRODUCTION, reserved={"well_id"})],
                          ) -> dict[str, Any]:
    """The well's records, newest day first, with the same filters, sorting and fields as `GET /v1/production`."""
    rows, total = await service.list_records(services, principal.tenant_id, q, well_id=well_id)
    return page_envelope(rows, total, q)
