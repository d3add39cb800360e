"""Emissions against PostgreSQL and NATS alone (the services as the routes call them): thresholds' actual and
projected crossings of 80 % and 100 %, their severities, and latching (an unacknowledged crossing stays when the
usage falls back); flared gas from a flare meter's readings when the day's volume was not reported.

2 Mcf vented = 30.2592 kg CH4 + 2.104 kg CO2 = 30.2592 x 28 + 2.104 = 849.3616 kg CO2e (tests/test_emissions_model.py).
"""

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from schema.emissions import CalculateRequest
from serve import emissions as service
from store.audit import AuditContext
from tests.helpers import seeded_tenant
from tests.test_api_production import add_wells

pytestmark = pytest.mark.fast


async def test_actual_and_projected_crossings_and_latching(services: Any, pg_settings: Any) -> None:
    tenant = await seeded_tenant(pg_settings.database_url, "esg-t", [], users=False)
    conn = await asyncpg.connect(pg_settings.database_url)
    try:
        await add_wells(conn, tenant, "W-1")
        for day, vented in ((date(2025, 7, 1), 2.0), (date(2025, 7, 2), 0.0)):
            await conn.execute("INSERT INTO production_records (tenant_id, well_id, day, created_by)"
                               " VALUES ($1, 'W-1', $2, 't')", tenant, day)
            await conn.execute("INSERT INTO emission_activity (tenant_id, well_id, day, vented_mcf, updated_by)"
                               " VALUES ($1, 'W-1', $2, $3, 't')", tenant, day, vented)
        audit = AuditContext(tenant_id=tenant, actor_type="user", actor_id="u", ip=None, request_id=None)
        threshold = await service.create_threshold(services, audit, {
            "name": "site permit", "well_id": None, "gas": "CO2e", "period": "calendar_year", "limit_tonnes": 1.0})
        calc = CalculateRequest(start=date(2025, 7, 1), end=date(2025, 7, 2))

        async def alerts() -> dict[str, tuple[str, str, bool]]:
            rows = await conn.fetch("SELECT rule_id, severity, state, cleared_at IS NOT NULL AS cleared FROM alerts"
                                    " WHERE tenant_id = $1 AND equipment_id = 'esg-tenant'", tenant)
            return {r["rule_id"].rsplit(":", 1)[1]: (r["severity"], r["state"], r["cleared"]) for r in rows}

        # As of 2025-07-02 (day 183 of 365): actual 0.8493616 t = 84.9 % (80 % reached); projected
        # 0.8493616 / 183 x 365 = 1.694 t = 169 % (100 % projected).
        await service.calculate(services, audit, calc)
        assert await alerts() == {"80": ("warning", "open", False), "100": ("warning", "open", False)}
        status = (await service.list_thresholds(services, tenant))[0]["status"]
        assert status["as_of"] < date.today() and status["limit_tonnes"] == 1.0

        # Another 1 Mcf vented on 07-02: actual 0.8493616 + 0.4246808 = 1.2740424 t: 100 % reached, critical.
        await conn.execute("UPDATE emission_activity SET vented_mcf = 1 WHERE tenant_id = $1 AND day = $2",
                           tenant, date(2025, 7, 2))
        await service.calculate(services, audit, calc)
        assert await alerts() == {"80": ("warning", "open", False), "100": ("critical", "open", False)}
        events = await conn.fetch("SELECT kind, severity FROM alert_events WHERE tenant_id = $1 ORDER BY seq", tenant)
        assert [(e["kind"], e["severity"]) for e in events] == [
            ("opened", "warning"), ("opened", "warning"), ("updated", "critical")]

        # The permit raised to 100 t: both crossings clear, but nobody acknowledged them: they stay, latched.
        await service.update_threshold(services, audit, threshold["id"], {"limit_tonnes": 100.0})
        await service.calculate(services, audit, calc)
        assert await alerts() == {"80": ("warning", "open", True), "100": ("critical", "open", True)}
    finally:
        await conn.close()


async def test_flared_gas_from_a_flare_meter_when_not_reported(services: Any, pg_settings: Any) -> None:
    tenant = await seeded_tenant(pg_settings.database_url, "esg-f", [("MTR-1", "meter"), ("MTR-2", "meter")],
                                 users=False)
    conn = await asyncpg.connect(pg_settings.database_url)
    try:
        await add_wells(conn, tenant, "W-1", "W-2")
        await conn.execute("UPDATE equipment SET metadata = '{\"emission_source\": \"flare\"}' WHERE tenant_id = $1",
                           tenant)
        # MTR-1 serves W-1 alone; MTR-2 serves both wells, so which one flared is unknown: not used.
        await conn.executemany("INSERT INTO equipment_wells (tenant_id, equipment_id, well_id) VALUES ($1, $2, $3)",
                               [(tenant, "MTR-1", "W-1"), (tenant, "MTR-2", "W-1"), (tenant, "MTR-2", "W-2")])
        day = date(2025, 8, 1)
        await conn.executemany("INSERT INTO readings (tenant_id, equipment_id, sensor, ts, value)"
                               " VALUES ($1, $2, 'flow_mcfd', $3, 48)",
                               [(tenant, meter, datetime(2025, 8, 1, hour, tzinfo=UTC)) for hour in range(12)
                                for meter in ("MTR-1", "MTR-2")])
        await conn.executemany("INSERT INTO production_records (tenant_id, well_id, day, created_by)"
                               " VALUES ($1, $2, $3, 't')", [(tenant, "W-1", day), (tenant, "W-2", day)])
        audit = AuditContext(tenant_id=tenant, actor_type="user", actor_id="u", ip=None, request_id=None)
        result = await service.calculate(services, audit, CalculateRequest(start=day, end=day))
        assert {(g.well_id, g.source) for g in result.missing} == {
            ("W-1", "vented"), ("W-1", "fuel_gas"), ("W-2", "flared"), ("W-2", "vented"), ("W-2", "fuel_gas")}
        rows = await conn.fetch("SELECT well_id, kg, inputs FROM emissions WHERE tenant_id = $1 AND source = 'flaring'"
                                " AND gas = 'CO2'", tenant)
        [(well, kg, inputs)] = [(r["well_id"], r["kg"], r["inputs"]) for r in rows]
        # 48 Mcf/d over the 12 hours MTR-1 reported = 24 Mcf; CO2: 24 x 0.98 x 1.026 x 53.06 + 24 x 0.02 x 52.6
        # = 1280.4184512 + 25.248 = 1305.6664512 kg
        assert (well, kg) == ("W-1", pytest.approx(1305.6664512))
        assert json.loads(inputs) == {"flared_mcf": 24.0, "flare_telemetry_hours": 12}
    finally:
        await conn.close()


async def test_a_facility_threshold_counts_the_wells_of_its_field_only(services: Any, pg_settings: Any) -> None:
    """A permit for the facility "North Pad" (wells W-1 and W-2) against W-3 of another field.

    Vented a month ago: W-1 2 Mcf (849.3616 kg CO2e), W-2 1 Mcf (424.6808), W-3 4 Mcf (1,698.7232).
    North Pad: 849.3616 + 424.6808 = 1,274.0424 kg = 1.2740424 t against 2 t: 63.7 %, no crossing reached;
    the tenant as a whole (2.9727656 t) would be past 100 %.
    """
    tenant = await seeded_tenant(pg_settings.database_url, "esg-fac", [], users=False)
    conn = await asyncpg.connect(pg_settings.database_url)
    try:
        await add_wells(conn, tenant, "W-1", "W-2", "W-3")
        await conn.execute("UPDATE wells SET field = CASE WHEN id = 'W-3' THEN 'South' ELSE 'North Pad' END"
                           " WHERE tenant_id = $1", tenant)
        day = date.today() - timedelta(days=30)  # inside the rolling year the status is taken at (yesterday)
        for well, vented in (("W-1", 2.0), ("W-2", 1.0), ("W-3", 4.0)):
            # 60 Mcf of gas is 10 BOE, and no source here counts it (oil would flash in the tanks).
            await conn.execute("INSERT INTO production_records (tenant_id, well_id, day, gas_mcf, created_by)"
                               " VALUES ($1, $2, $3, 60, 't')", tenant, well, day)
            await conn.execute("INSERT INTO emission_activity (tenant_id, well_id, day, vented_mcf, updated_by)"
                               " VALUES ($1, $2, $3, $4, 't')", tenant, well, day, vented)
        audit = AuditContext(tenant_id=tenant, actor_type="user", actor_id="u", ip=None, request_id=None)
        await service.calculate(services, audit, CalculateRequest(start=day, end=day))
        row = await service.create_threshold(services, audit, {
            "name": "North Pad permit", "field": "North Pad", "gas": "CO2e", "period": "rolling_12_months",
            "limit_tonnes": 2.0})
        assert row["field"] == "North Pad" and row["well_id"] is None
        [status] = [t["status"] for t in await service.list_thresholds(services, tenant)]
        assert status["actual_tonnes"] == pytest.approx(1.2740424)

        # Summed per facility, each with its own BOE (2 x 10 and 10).
        summary = await service.summary(services, tenant, period="year", group_by="field", start=day, end=day,
                                        well_id=None)
        by_field = {r["key"]: r for r in summary}
        assert by_field["North Pad"]["co2e_kg"] == pytest.approx(1274.0424)
        assert by_field["North Pad"]["kg_co2e_per_boe"] == pytest.approx(1274.0424 / 20)
        assert by_field["South"]["co2e_kg"] == pytest.approx(1698.7232)

        with pytest.raises(Exception, match="a well or a field") as refused:
            await service.create_threshold(services, audit, {"name": "both", "well_id": "W-1", "field": "South",
                                                             "gas": "CO2e", "period": "calendar_year",
                                                             "limit_tonnes": 1.0})
        assert refused.value.details[0]["field"] == "field"  # type: ignore[attr-defined]
        with pytest.raises(Exception, match="no well of this tenant is in field"):
            await service.create_threshold(services, audit, {"name": "nowhere", "field": "Nowhere", "gas": "CO2e",
                                                             "period": "calendar_year", "limit_tonnes": 1.0})
    finally:
        await conn.close()
