"""The dashboards' numbers (issue 17): production summaries, well performance, equipment health, and a well's
decline-curve forecast. The routes parse and answer; `serve.analytics` reads and fits.

Lists follow the list conventions' pagination (``page``, ``limit``, ``meta.pagination`` with the total). Ranges
are ``from`` and ``to``, days in the tenant's time zone, both included; at most three years.
"""

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from schema.analytics import (
    EquipmentHealth,
    GroupBy,
    PerformanceBasis,
    ProductionPeriod,
    SummaryPeriod,
    WellForecast,
    WellPerformance,
)
from schema.api import Envelope, ErrorEnvelope
from schema.production import WELL_ID_PATTERN
from serve import analytics as service
from serve.auth import Principal
from serve.deps import ServicesDep, require
from serve.errors import ApiError
from serve.listing import page_envelope
from store.listing import DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET, ListQuery

router = APIRouter(prefix="/v1", tags=["analytics"])
Reader = Annotated[Principal, require("assets:read")]
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}}
From = Annotated[date | None, Query(alias="from", description="first day (inclusive); default: 30 days before `to`")]
To = Annotated[date | None, Query(description="last day (inclusive); default: today in the tenant's time zone")]
Page = Annotated[int, Query(ge=1, description="page number, from 1")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"items per page, 1 to {MAX_LIMIT}")]
# Each well of a page is fitted (a few ms each): a smaller page than other lists.
MAX_WELLS_PER_PAGE = 50
WellLimit = Annotated[int, Query(ge=1, le=MAX_WELLS_PER_PAGE, description=f"wells per page, 1 to {MAX_WELLS_PER_PAGE}")]
WellPath = Annotated[str, Path(pattern=WELL_ID_PATTERN, description="the well's id")]


def _page(page: int, limit: int) -> ListQuery:
    q = ListQuery(page=page, limit=limit)
    if q.offset > MAX_OFFSET:
        raise ApiError(422, "page too far", details=[{"field": "page", "message": f"(page - 1) * limit may not"
                                                      f" exceed {MAX_OFFSET}"}])
    return q


@router.get("/analytics/production-summary", response_model=Envelope[list[ProductionPeriod]],
            response_model_exclude_unset=True, responses=ERRORS)
async def production_summary(
    services: ServicesDep, principal: Reader, from_: From = None, to: To = None,
    period: Annotated[SummaryPeriod, Query(description="day, ISO week (from Monday) or calendar month")] = "month",
    group_by: Annotated[GroupBy, Query(description="one row per period for the tenant, or per well or field")
                        ] = "tenant",
    page: Page = 1, limit: Limit = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """Oil, gas, water and BOE totals, producing and down well-days, runtime and averages per period and group,
    in period then group order. Default range: 30 days for `period=day`, else 365. A period without
    records is absent (a gap), not zero."""
    q = _page(page, limit)
    rows, total = await service.production_summary(services, principal.tenant_id, period=period, group_by=group_by,
                                                   start=from_, end=to, limit=q.limit, offset=q.offset)
    return page_envelope([ProductionPeriod(**r).model_dump() for r in rows], total, q)


@router.get("/analytics/well-performance", response_model=Envelope[list[WellPerformance]],
            response_model_exclude_unset=True, responses=ERRORS)
async def well_performance(
    services: ServicesDep, principal: Reader, from_: From = None, to: To = None,
    basis: Annotated[PerformanceBasis, Query(description="oil, or BOE (oil + gas / 6)")] = "oil",
    page: Page = 1, limit: WellLimit = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """Per live well (by id): volumes, runtime, downtime and missing days over [from, to]; and the 30 days of
    data ending at `to` against the Arps curve fitted on the two years before them (actual vs expected,
    underperforming at 14 or more producing days below the 95 % band)."""
    q = _page(page, limit)
    rows, total = await service.well_performance(services, principal.tenant_id, start=from_, end=to, basis=basis,
                                                 limit=q.limit, offset=q.offset)
    return page_envelope([WellPerformance(**r).model_dump() for r in rows], total, q)


@router.get("/analytics/equipment-health", response_model=Envelope[list[EquipmentHealth]],
            response_model_exclude_unset=True, responses=ERRORS)
async def equipment_health(services: ServicesDep, principal: Reader, from_: From = None, to: To = None,
                           page: Page = 1, limit: Limit = DEFAULT_LIMIT) -> dict[str, Any]:
    """Per live equipment (by id) over [from, to] (whole UTC days): uptime (downtime is the union of its
    `comms_loss` and `stale_data` alerts and its maintenance jobs), alerts opened by severity with the hours
    they were open, MTBF and MTTR from `failure_repair` maintenance jobs, and the failure model's probability."""
    q = _page(page, limit)
    rows, total = await service.equipment_health(services, principal.tenant_id, start=from_, end=to,
                                                 limit=q.limit, offset=q.offset)
    return page_envelope([EquipmentHealth(**r).model_dump() for r in rows], total, q)


@router.get("/wells/{well_id}/forecast", response_model=Envelope[WellForecast], responses=ERRORS)
async def well_forecast(
    well_id: WellPath, services: ServicesDep, principal: Reader,
    months: Annotated[int, Query(ge=1, le=60, description="calendar months to forecast, 1 to 60")] = 12,
    basis: Annotated[PerformanceBasis, Query(description="oil, or BOE (oil + gas / 6)")] = "oil",
) -> Envelope[WellForecast]:
    """An Arps decline fit (exponential, hyperbolic with b in [0.01, 0.99], or harmonic: the lowest AIC on log
    rates) over the well's producing days of the last two years (down days left out), and `months` months of
    forecast with a 95 % band. Too little history (under 30 producing days, or a span under 30 days) is
    answered with `status: insufficient_data` and the `reason`, not an error."""
    result = await service.well_forecast(services, principal.tenant_id, well_id, months=months, basis=basis)
    return Envelope(data=WellForecast(**result))
