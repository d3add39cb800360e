"""Analytics services: production summaries, well performance against decline curves, equipment health, and a
well's decline forecast.

Read-only. Each reads in the tenant's transaction (`Services.tenant_tx`), then fits curves (`models.decline`)
in a worker thread, outside the transaction and off the event loop. Ranges are days in the tenant's time zone
(`today` there is the default end); a bad range is `InvalidInput` naming ``from`` or ``to``.
"""

import asyncio
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg

from models.decline import (
    BOE_PER_MCF,
    MIN_DAYS_BELOW,
    WINDOW_DAYS,
    DeclineFit,
    InsufficientData,
    assess,
    fit_decline,
    forecast_months,
)
from schema.errors import InvalidInput, NotFound
from serve.services import Services
from store import analytics as store
from store.assets import live_well_ids
from store.production import tenant_today

__all__ = ["HISTORY_DAYS", "equipment_health", "production_summary", "resolve_range", "well_forecast",
           "well_performance"]

EARLIEST_DAY = date(1900, 1, 1)
MAX_RANGE_DAYS = 3 * 366 + 1  # three years of days: a dashboard, not an archive export
MAX_FUTURE_DAYS = 366  # records are never for future days; a range may still end a little ahead
HISTORY_DAYS = 2 * 365  # a decline curve is fitted on at most the two years before its window / forecast


def resolve_range(start: date | None, end: date | None, *, today: date, default_days: int,
                  max_days: int = MAX_RANGE_DAYS) -> tuple[date, date]:
    """[start, end]: ``end`` defaults to today, ``start`` to ``default_days`` days before ``end`` (both
    included); refused naming the field when ``to`` is more than `MAX_FUTURE_DAYS` ahead, ``from`` is after
    ``to`` or too early, or the range is too long.

    >>> resolve_range(None, date(2026, 3, 31), today=date(2026, 4, 1), default_days=30)
    (datetime.date(2026, 3, 2), datetime.date(2026, 3, 31))
    >>> resolve_range(None, date(1900, 1, 5), today=date(2026, 4, 1), default_days=30)
    (datetime.date(1900, 1, 1), datetime.date(1900, 1, 5))
    >>> resolve_range(date(2026, 4, 2), date(2026, 4, 1), today=date(2026, 4, 1), default_days=30)
    Traceback (most recent call last):
    ...
    schema.errors.InvalidInput: from is after to
    """
    end = end or today
    if end > today + timedelta(days=MAX_FUTURE_DAYS):
        raise InvalidInput("to is too late", [{"field": "to", "message": f"at most {MAX_FUTURE_DAYS} days after"
                                               f" today ({today})"}])
    if end < EARLIEST_DAY:
        raise InvalidInput("to is too early", [{"field": "to", "message": f"from {EARLIEST_DAY} on"}])
    start = start or max(end - timedelta(days=default_days - 1), EARLIEST_DAY)
    if start > end:
        raise InvalidInput("from is after to", [{"field": "from", "message": "must not be after to"}])
    if start < EARLIEST_DAY:
        raise InvalidInput("from is too early", [{"field": "from", "message": f"from {EARLIEST_DAY} on"}])
    if (end - start).days + 1 > max_days:
        raise InvalidInput("range too long", [{"field": "from", "message": f"at most {max_days} days from to"}])
    return start, end


async def production_summary(services: Services, tenant_id: str, *, period: str, group_by: str,
                             start: date | None, end: date | None, limit: int, offset: int,
                             ) -> tuple[list[dict[str, Any]], int]:
    """A page of sums per period and group (tenant, well or field); default range: the last 30 days for
    ``period=day``, the last 365 otherwise."""
    async with services.tenant_tx(tenant_id) as conn:
        first, last = resolve_range(start, end, today=await tenant_today(conn, tenant_id),
                                    default_days=30 if period == "day" else 365)
        rows, total = await store.production_summary(conn, tenant_id, period=period, group_by=group_by,
                                                     start=first, end=last, limit=limit, offset=offset)
    return [dict(r) for r in rows], total


def _rates(rows: Sequence[asyncpg.Record], basis: str) -> tuple[list[int], list[float], list[float | None]]:
    days = [r["day"].toordinal() for r in rows]
    rates = [r["oil_bbl"] + (r["gas_mcf"] * BOE_PER_MCF if basis == "boe" else 0.0) for r in rows]
    return days, rates, [r["runtime_hours"] for r in rows]


def _performance(rows: Sequence[asyncpg.Record], basis: str) -> dict[str, Any]:
    if not rows:
        return {"decline_model": None, "underperforming": False, "reason": "no production records"}
    p = assess(*_rates(rows, basis))
    ratio = p.actual / p.expected if p.expected else None
    return {"decline_model": p.fit.model if p.fit else None, "actual": p.actual, "expected": p.expected,
            "actual_vs_expected": ratio, "days_below_band": p.days_below if p.fit else None,
            "underperforming": p.underperforming, "reason": p.reason}


async def well_performance(services: Services, tenant_id: str, *, start: date | None, end: date | None,
                           basis: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """A page of live wells (by id) with their volumes, runtime and downtime over [start, end] (default: the
    last 30 days), and their last `WINDOW_DAYS` days of data up to ``end`` against the decline curve of the
    `HISTORY_DAYS` before."""
    async with services.tenant_tx(tenant_id) as conn:
        first, last = resolve_range(start, end, today=await tenant_today(conn, tenant_id), default_days=30)
        rows, total = await store.well_totals(conn, tenant_id, start=first, end=last, limit=limit, offset=offset)
        history = await store.well_history(conn, tenant_id, [r["well_id"] for r in rows],
                                           start=last - timedelta(days=HISTORY_DAYS + WINDOW_DAYS), end=last)
    days = (last - first).days + 1

    def fit_all() -> list[dict[str, Any]]:
        return [{**{k: v for k, v in r.items() if k != "total"}, "missing_days": days - r["records"], "basis": basis,
                 **_performance(history.get(r["well_id"], []), basis)} for r in rows]

    return await asyncio.to_thread(fit_all), total


async def equipment_health(services: Services, tenant_id: str, *, start: date | None, end: date | None, limit: int,
                           offset: int) -> tuple[list[dict[str, Any]], int]:
    """A page of live equipment (by id) with uptime, alerts, MTBF/MTTR and failure probability over
    [start 00:00 UTC, end + 1 day 00:00 UTC) (default: the last 30 days)."""
    async with services.tenant_tx(tenant_id) as conn:
        first, last = resolve_range(start, end, today=await tenant_today(conn, tenant_id), default_days=30)
        since = datetime.combine(first, time(), UTC)
        until = datetime.combine(last + timedelta(days=1), time(), UTC)
        rows, total = await store.equipment_health(conn, tenant_id, start=since, end=until, limit=limit,
                                                   offset=offset)
    range_hours = (until - since).total_seconds() / 3600
    return [_health(r, range_hours) for r in rows], total


def _health(r: dict[str, Any], range_hours: float) -> dict[str, Any]:
    down = min(float(r["downtime_hours"]), range_hours)
    failures = int(r["failures"] or 0)
    repairs = int(r["repairs"] or 0)
    return {
        "equipment_id": r["equipment_id"], "name": r["name"], "type": r["type"], "status": r["status"],
        "range_hours": range_hours, "downtime_hours": down, "uptime_pct": 100.0 * (1 - down / range_hours),
        "alerts": {s: {"count": int(r[f"{s}_count"] or 0), "hours": float(r[f"{s}_hours"] or 0)}
                   for s in ("info", "warning", "critical")},
        "failures": failures, "mtbf_hours": (range_hours - down) / failures if failures else None,
        "mttr_hours": float(r["repair_hours"]) / repairs if repairs else None,
        "failure_probability": r["failure_probability"], "prediction_updated_at": r["prediction_updated_at"],
    }


async def well_forecast(services: Services, tenant_id: str, well_id: str, *, months: int, basis: str,
                        ) -> dict[str, Any]:
    """The well's Arps fit over its last `HISTORY_DAYS` of records and ``months`` calendar months of forecast
    after its last record; ``status`` ``insufficient_data`` with the reason when it cannot be fitted.
    `NotFound` unless the well is live in the tenant."""
    async with services.tenant_tx(tenant_id) as conn:
        if not await live_well_ids(conn, tenant_id, [well_id]):
            raise NotFound(f"well {well_id} not found")
        today = await tenant_today(conn, tenant_id)
        rows = (await store.well_history(conn, tenant_id, [well_id], start=today - timedelta(days=HISTORY_DAYS),
                                         end=today)).get(well_id, [])

    def compute() -> dict[str, Any]:
        days, rates, runtime = _rates(rows, basis)
        base: dict[str, Any] = {"well_id": well_id, "basis": basis,
                                "last_day": rows[-1]["day"] if rows else None}
        fit = fit_decline(days, rates, runtime)
        if isinstance(fit, InsufficientData):
            return {**base, "status": "insufficient_data", "reason": fit.reason, "points": fit.points}
        return {**base, **_fit_fields(fit), "months": _months(fit, rows[-1]["day"], months),
                **_flag(days, rates, runtime)}

    return await asyncio.to_thread(compute)


def _fit_fields(fit: DeclineFit) -> dict[str, Any]:
    return {"status": "ok", "model": fit.model, "qi": fit.qi, "di": fit.di, "b": fit.b, "sigma": fit.sigma,
            "aic": fit.candidates, "points": fit.points, "first_day": date.fromordinal(int(fit.origin))}


def _months(fit: DeclineFit, last_day: date, months: int) -> list[dict[str, Any]]:
    return [vars(m) for m in forecast_months(fit, date.fromordinal(int(fit.origin)), last_day, months)]


def _flag(days: list[int], rates: list[float], runtime: list[float | None]) -> dict[str, Any]:
    p = assess(days, rates, runtime, window_days=WINDOW_DAYS, min_days_below=MIN_DAYS_BELOW)
    return {"underperforming": p.underperforming, "days_below_band": p.days_below if p.fit else None}
