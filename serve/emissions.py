"""Emissions services: factors (defaults and the tenant's versions), a day's emission activity, a well's emitting
equipment, the calculation and its records, summaries and exports, thresholds and their alerts, and compliance
reports.

Writes run in a unit of work (`serve.uow`): the change's audit row in its transaction, the alert events a
calculation's thresholds committed published after the commit (so the notifier, the WebSocket feed and the
audit see them like any alert's). Refusals are `schema.errors` classes naming the field at fault.
"""

import csv
import hashlib
import io
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import openpyxl

from models.emissions import DEFAULT_FACTORS, FACTOR_GASES, FACTOR_UNITS, GWP_NAME
from schema.emissions import ActivityRecord, CalculateRequest, EquipmentPut, FactorCreate, ReportCreate
from schema.errors import Conflict, InvalidInput, NotFound
from serve.emissions_pdf import render_report
from serve.listing import tenant_page
from serve.services import Services
from serve.uow import tenant_work
from store import alerts as alert_store
from store import emissions as store
from store.assets import live_well_ids
from store.audit import AuditContext
from store.listing import ListQuery, fetch_page

__all__ = ["calculate", "create_factor", "create_report", "create_threshold", "delete_threshold", "export",
           "get_equipment", "get_report", "list_emissions", "list_factors", "list_reports", "list_threshold_alerts",
           "list_thresholds", "put_activity", "put_equipment", "report_pdf", "summary", "supersede_report",
           "update_factor", "update_threshold"]

EXPORT_COLUMNS = ("id", "well_id", "day", "source", "gas", "kg", "co2e_kg", "factor_versions", "calculated_at")
_FRACTION_UNITS = frozenset({"mol/mol", "fraction"})
MAX_SUMMARY_DAYS = 3660
MAX_EXPORT_ROWS = 200_000


# ---------------------------------------------------------------- factors


def _default_public(f: Any) -> dict[str, Any]:
    return {"key": f.key, "source": f.source, "gas": f.gas, "value": f.value, "unit": f.unit, "citation": f.citation,
            "valid_from": f.valid_from, "valid_to": f.valid_to, "version": f.version, "origin": "default"}


def _tenant_public(row: asyncpg.Record) -> dict[str, Any]:
    return {**dict(row), "version": f"tenant:{row['version']}", "origin": "tenant"}


async def list_factors(services: Services, tenant_id: str) -> list[dict[str, Any]]:
    """Every default (with its citation), then the tenant's versions, newest first per key."""
    async with services.tenant_tx(tenant_id) as conn:
        rows = await store.factor_versions(conn, tenant_id)
    return [_default_public(f) for f in DEFAULT_FACTORS] + [_tenant_public(r) for r in rows]


def check_factor(key: str, value: float, unit: str, valid_from: date, valid_to: date | None) -> None:
    """A factor the calculation can use: a known key, in its unit, a positive value (a fraction at most 1), a
    valid period that ends no earlier than it starts.

    >>> check_factor("gas.hhv", 1.1, "MMBtu/scf", date(2026, 1, 1), None)
    Traceback (most recent call last):
    ...
    schema.errors.InvalidInput: unit must be MMBtu/Mcf for gas.hhv (no conversion is assumed), not MMBtu/scf
    """
    if key not in FACTOR_UNITS:
        raise InvalidInput.on("key", f"unknown factor {key!r}; known: {', '.join(sorted(FACTOR_UNITS))}")
    if unit != FACTOR_UNITS[key]:
        raise InvalidInput.on("unit", f"unit must be {FACTOR_UNITS[key]} for {key} (no conversion is assumed),"
                                      f" not {unit}")
    if not value > 0:
        raise InvalidInput.on("value", "must be greater than 0")
    if unit in _FRACTION_UNITS and value > 1:
        raise InvalidInput.on("value", f"a fraction ({unit}) is at most 1")
    if valid_to is not None and valid_to < valid_from:
        raise InvalidInput.on("valid_to", "must not be before valid_from")


async def create_factor(services: Services, audit: AuditContext, body: FactorCreate) -> dict[str, Any]:
    check_factor(body.key, body.value, body.unit, body.valid_from, body.valid_to)
    async with tenant_work(services, audit.tenant_id, audit) as uow:
        row = await store.insert_factor_version(
            uow.conn, audit.tenant_id, key=body.key, source=body.key.split(".")[0], gas=FACTOR_GASES[body.key],
            value=body.value, unit=body.unit, citation=body.citation, valid_from=body.valid_from,
            valid_to=body.valid_to, created_by=audit.actor_id)
        await uow.record(action="create", entity_type="emission_factor", entity_id=f"{row['key']}@{row['version']}",
                         new=row)
    return _tenant_public(row)


async def update_factor(services: Services, audit: AuditContext, key: str, changes: dict[str, Any]) -> dict[str, Any]:
    """A new version of ``key`` from its latest (the tenant's, else the default's), with ``changes``."""
    if key not in FACTOR_UNITS:
        raise NotFound(f"no factor {key}")
    for name in ("value", "unit", "citation", "valid_from"):
        if name in changes and changes[name] is None:
            raise InvalidInput.on(name, f"{name} may not be null")
    async with tenant_work(services, audit.tenant_id, audit) as uow:
        latest = await store.factor_versions(uow.conn, audit.tenant_id, key)
        base = dict(latest[0]) if latest else _default_public(next(f for f in DEFAULT_FACTORS if f.key == key))
        merged = {**base, **changes}
        check_factor(key, merged["value"], merged["unit"], merged["valid_from"], merged["valid_to"])
        row = await store.insert_factor_version(
            uow.conn, audit.tenant_id, key=key, source=base["source"], gas=base["gas"], value=merged["value"],
            unit=merged["unit"], citation=merged["citation"], valid_from=merged["valid_from"],
            valid_to=merged["valid_to"], created_by=audit.actor_id)
        await uow.record(action="update", entity_type="emission_factor", entity_id=f"{key}@{row['version']}",
                         old={k: base[k] for k in changes}, new=row)
    return _tenant_public(row)


# ---------------------------------------------------------------- activity and equipment


async def put_activity(services: Services, audit: AuditContext, records: list[ActivityRecord]) -> list[asyncpg.Record]:
    async with tenant_work(services, audit.tenant_id, audit) as uow:
        rows = await store.upsert_activity(uow.conn, audit.tenant_id, [r.model_dump() for r in records],
                                           updated_by=audit.actor_id)
        await uow.record(action="upsert", entity_type="emission_activity", entity_id=None,
                         new={"count": len(rows), "days": [f"{r['well_id']}/{r['day']}" for r in rows][:100]})
    return rows


async def get_equipment(services: Services, tenant_id: str, well_id: str) -> asyncpg.Record:
    async with services.tenant_tx(tenant_id) as conn:
        row = await store.get_equipment(conn, tenant_id, well_id)
    if row is None:
        raise NotFound(f"no emitting equipment recorded for well {well_id}")
    return row


async def put_equipment(services: Services, audit: AuditContext, well_id: str, body: EquipmentPut) -> asyncpg.Record:
    async with tenant_work(services, audit.tenant_id, audit) as uow:
        before, after = await store.put_equipment(
            uow.conn, audit.tenant_id, well_id, pneumatic_devices=body.pneumatic_devices.model_dump(),
            components=body.components.model_dump(), engine_fuel_mcf_per_hour=body.engine_fuel_mcf_per_hour,
            updated_by=audit.actor_id)
        await uow.record(action="update" if before else "create", entity_type="emission_equipment",
                         entity_id=well_id, old=before, new=after)
    return after


# ---------------------------------------------------------------- calculation and records


async def calculate(services: Services, audit: AuditContext, body: CalculateRequest) -> store.Calculation:
    """Calculate, supersede what changed, evaluate the thresholds; publish their alert events after the commit."""
    async with tenant_work(services, audit.tenant_id, audit) as uow:
        store.check_period(body.start, body.end, await store.tenant_today(uow.conn, audit.tenant_id))
        result = await store.calculate(uow.conn, audit.tenant_id, start=body.start, end=body.end,
                                       well_ids=body.well_ids, actor=audit.actor_id, now=datetime.now(UTC))
        await uow.record(action="calculate", entity_type="emissions", entity_id=None, new={
            "start": body.start, "end": body.end, "wells": len(result.wells), "inserted": result.inserted,
            "superseded": result.superseded, "unchanged": result.unchanged, "gaps": len(result.gaps)})
        uow.publish_alert_events(result.events)
    return result


async def list_emissions(services: Services, tenant_id: str, q: ListQuery, *,
                         include_superseded: bool) -> tuple[list[dict[str, Any]], int]:
    async with services.tenant_tx(tenant_id) as conn:
        return await fetch_page(conn, store.EMISSIONS, q, tenant_id, include_deleted=include_superseded)


def _range(start: date | None, end: date | None, today: date, *, default_days: int) -> tuple[date, date]:
    end = end or today
    start = start or end - timedelta(days=default_days)
    if start > end:
        raise InvalidInput.on("from", "must not be after to")
    if (end - start).days > MAX_SUMMARY_DAYS:
        raise InvalidInput.on("from", f"at most {MAX_SUMMARY_DAYS} days")
    return start, end


async def summary(services: Services, tenant_id: str, *, period: str, group_by: str, start: date | None,
                  end: date | None, well_id: str | None) -> list[dict[str, Any]]:
    """Sums per period and group over [start, end] (default: the year to today), with intensity."""
    async with services.tenant_tx(tenant_id) as conn:
        first, last = _range(start, end, await store.tenant_today(conn, tenant_id), default_days=364)
        if well_id is not None and not await live_well_ids(conn, tenant_id, [well_id]):
            raise NotFound(f"well {well_id} not found")
        return await store.summary(conn, tenant_id, period=period, group_by=group_by, start=first, end=last,
                                   well_id=well_id)


def _export_cells(row: asyncpg.Record) -> list[Any]:
    versions = ";".join(f"{f['key']}@{f['version']}" for f in row["factors"])
    return [str(row["id"]), row["well_id"], row["day"].isoformat(), row["source"], row["gas"], row["kg"],
            row["co2e_kg"], versions, row["calculated_at"].isoformat()]


async def export(services: Services, tenant_id: str, *, fmt: str, start: date | None, end: date | None,
                 well_id: str | None) -> bytes:
    """The live records as CSV (UTF-8) or an XLSX workbook (one sheet, ``emissions``), ordered by well, day,
    source and gas."""
    async with services.tenant_tx(tenant_id) as conn:
        if well_id is not None and not await live_well_ids(conn, tenant_id, [well_id]):
            raise NotFound(f"well {well_id} not found")
        rows = await store.export_rows(conn, tenant_id, start=start, end=end, well_id=well_id)
    if len(rows) > MAX_EXPORT_ROWS:
        raise InvalidInput.on("from", f"{len(rows)} records: at most {MAX_EXPORT_ROWS} per export; narrow the period")
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(EXPORT_COLUMNS)
        writer.writerows(_export_cells(r) for r in rows)
        return out.getvalue().encode()
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("emissions")
    sheet.append(list(EXPORT_COLUMNS))
    for r in rows:
        sheet.append(_export_cells(r))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# ---------------------------------------------------------------- thresholds


async def _yesterday(conn: asyncpg.Connection, tenant_id: str) -> date:
    return await store.tenant_today(conn, tenant_id) - timedelta(days=1)


async def list_thresholds(services: Services, tenant_id: str) -> list[dict[str, Any]]:
    """The live thresholds, each with its status at the last complete day."""
    async with services.tenant_tx(tenant_id) as conn:
        statuses = await store.threshold_statuses(conn, tenant_id, as_of=await _yesterday(conn, tenant_id))
    return [{**s["threshold"], "status": {k: v for k, v in s.items() if k != "threshold"}} for s in statuses]


async def create_threshold(services: Services, audit: AuditContext, values: dict[str, Any]) -> asyncpg.Record:
    async with tenant_work(services, audit.tenant_id, audit) as uow:
        row = await store.insert_threshold(uow.conn, audit.tenant_id, values, audit.actor_id)
        await uow.record(action="create", entity_type="emission_threshold", entity_id=str(row["id"]), new=row)
        uow.publish_alert_events(await store.evaluate_thresholds(
            uow.conn, audit.tenant_id, as_of=await _yesterday(uow.conn, audit.tenant_id), now=datetime.now(UTC)))
    return row


async def update_threshold(services: Services, audit: AuditContext, threshold_id: uuid.UUID,
                           changes: dict[str, Any]) -> asyncpg.Record:
    for name in ("name", "gas", "period", "limit_tonnes"):
        if name in changes and changes[name] is None:
            raise InvalidInput.on(name, f"{name} may not be null")
    async with tenant_work(services, audit.tenant_id, audit) as uow:
        found = await store.update_threshold(uow.conn, audit.tenant_id, threshold_id, changes)
        if found is None:
            raise NotFound(f"threshold {threshold_id} not found")
        old, row = found
        await uow.record(action="update", entity_type="emission_threshold", entity_id=str(threshold_id),
                         old={k: old[k] for k in changes}, new={k: row[k] for k in changes})
        if store.threshold_alert_key(old) != store.threshold_alert_key(row):  # moved to another well or the tenant
            uow.publish_alert_events(await _resolve_threshold_alerts(uow.conn, audit.tenant_id, old, "moved"))
        uow.publish_alert_events(await store.evaluate_thresholds(
            uow.conn, audit.tenant_id, as_of=await _yesterday(uow.conn, audit.tenant_id), now=datetime.now(UTC)))
    return row


async def delete_threshold(services: Services, audit: AuditContext, threshold_id: uuid.UUID) -> None:
    """Soft delete; the threshold's open alerts resolve."""
    async with tenant_work(services, audit.tenant_id, audit) as uow:
        row = await store.delete_threshold(uow.conn, audit.tenant_id, threshold_id)
        if row is None:
            raise NotFound(f"threshold {threshold_id} not found")
        await uow.record(action="delete", entity_type="emission_threshold", entity_id=str(threshold_id), old=row)
        uow.publish_alert_events(await _resolve_threshold_alerts(uow.conn, audit.tenant_id, row, "deleted"))


async def _resolve_threshold_alerts(conn: asyncpg.Connection, tenant_id: str, threshold: asyncpg.Record,
                                    why: str) -> list[Any]:
    """Clear the threshold's alerts under its (old) key: resolved, or awaiting acknowledgement if unacknowledged
    (they are latched)."""
    equipment_id, rule_prefix = store.threshold_alert_key(threshold)
    now = datetime.now(UTC)
    return await alert_store.persist_changes(conn, tenant_id, [
        alert_store.AlarmChange("resolved", equipment_id, f"{rule_prefix}:{level}", "info", now,
                                f"{threshold['name']}: threshold {why}", {"threshold_id": str(threshold["id"])})
        for level in (80, 100)])


async def list_threshold_alerts(services: Services, tenant_id: str, q: ListQuery) -> tuple[list[dict[str, Any]], int]:
    """Alerts opened by emission thresholds (the same rows as ``GET /v1/alerts``)."""
    return await tenant_page(services, tenant_id, alert_store.ALERTS, q, extra_where=[
        ("rule_id LIKE $1", [f"{store.THRESHOLD_RULE_PREFIX}%"])])


# ---------------------------------------------------------------- reports


async def _report(conn: asyncpg.Connection, audit: AuditContext, *, title: str, start: date, end: date,
                  well_ids: list[str] | None, supersedes: uuid.UUID | None) -> asyncpg.Record:
    tenant_id = audit.tenant_id
    today = await store.tenant_today(conn, tenant_id)
    if start > end:
        raise InvalidInput.on("start", "start is after end")
    if end >= today:
        raise InvalidInput.on("end", f"the period is still open: end must be before today ({today} in the tenant's"
                                     " time zone)")
    if well_ids is None:
        wells = [r["id"] for r in await conn.fetch(
            "SELECT id FROM wells WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY id", tenant_id)]
    else:
        live = await live_well_ids(conn, tenant_id, well_ids)
        unknown = [i for i, w in enumerate(well_ids) if w not in live]
        if unknown:
            raise InvalidInput.on(f"well_ids.{unknown[0]}", f"no well {well_ids[unknown[0]]!r} in this tenant")
        wells = sorted(set(well_ids))
    data = await store.report_data(conn, tenant_id, start=start, end=end, well_ids=wells)
    statuses = await store.threshold_statuses(conn, tenant_id, as_of=end)
    report_id = uuid.uuid4()
    thresholds = [{"name": s["threshold"]["name"], "gas": s["threshold"]["gas"], "period": s["threshold"]["period"],
                   "well_id": s["threshold"]["well_id"], "limit_tonnes": s["limit_tonnes"],
                   "actual_tonnes": s["actual_tonnes"], "actual_pct": s["actual_pct"],
                   "projected_pct": s["projected_pct"]} for s in statuses]
    totals = {k: data[k] for k in ("by_gas", "by_well", "by_month", "co2e_kg", "boe", "kg_co2e_per_boe", "gap_days")}
    totals |= {"thresholds": thresholds, "gwp": GWP_NAME}
    content = render_report(report_id=report_id, tenant_id=tenant_id, title=title, start=start, end=end,
                            wells=wells, totals=totals, factor_versions=data["factor_versions"],
                            generated_at=datetime.now(UTC), supersedes=supersedes)
    return await store.insert_report(
        conn, tenant_id, report_id=report_id, title=title, period_start=start, period_end=end, well_ids=wells,
        factor_versions=data["factor_versions"], totals=totals, content=content,
        sha256=hashlib.sha256(content).hexdigest(), supersedes=supersedes, created_by=audit.actor_id)


async def create_report(services: Services, audit: AuditContext, body: ReportCreate) -> asyncpg.Record:
    async with tenant_work(services, audit.tenant_id, audit) as uow:
        row = await _report(uow.conn, audit, title=body.title, start=body.start, end=body.end,
                            well_ids=body.well_ids, supersedes=None)
        await uow.record(action="create", entity_type="emission_report", entity_id=str(row["id"]), new=row)
    return row


async def supersede_report(services: Services, audit: AuditContext, report_id: uuid.UUID,
                           title: str | None) -> asyncpg.Record:
    """A new report of the same period and wells from the records as they are now; the old one stays, marked
    superseded by it. A report already superseded is refused (409): supersede its successor."""
    async with tenant_work(services, audit.tenant_id, audit) as uow:
        old = await store.get_report(uow.conn, audit.tenant_id, report_id, lock=True)
        if old is None:
            raise NotFound(f"report {report_id} not found")
        if old["superseded_at"] is not None:
            raise Conflict.on("id", f"report {report_id} is already superseded by {old['superseded_by']}")
        new = await _report(uow.conn, audit, title=title or old["title"], start=old["period_start"],
                            end=old["period_end"], well_ids=list(old["well_ids"]), supersedes=report_id)
        await store.mark_superseded(uow.conn, audit.tenant_id, report_id, new["id"])
        await uow.record(action="supersede", entity_type="emission_report", entity_id=str(report_id),
                         old={"id": str(report_id), "sha256": old["sha256"]},
                         new={"id": str(new["id"]), "sha256": new["sha256"]})
    return new


async def list_reports(services: Services, tenant_id: str, q: ListQuery) -> tuple[list[dict[str, Any]], int]:
    return await tenant_page(services, tenant_id, store.REPORTS, q)


async def get_report(services: Services, tenant_id: str, report_id: uuid.UUID) -> asyncpg.Record:
    async with services.tenant_tx(tenant_id) as conn:
        row = await store.get_report(conn, tenant_id, report_id)
    if row is None:
        raise NotFound(f"report {report_id} not found")
    return row


async def report_pdf(services: Services, tenant_id: str, report_id: uuid.UUID) -> asyncpg.Record:
    async with services.tenant_tx(tenant_id) as conn:
        row = await store.report_content(conn, tenant_id, report_id)
    if row is None:
        raise NotFound(f"report {report_id} not found")
    return row
