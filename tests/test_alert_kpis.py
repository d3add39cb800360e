"""Alarm KPIs (``GET /v1/alerts/kpis``, issue 11) computed from a known sequence of alerts and events written
straight into the store: rates per 10 minutes and flood, chattering, stale alerts, bad actors, times to
acknowledge and resolve, precision from verdicts; per tenant and per equipment type, and nothing of another
tenant's."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import auth, create_tenant, new_tenant_id
from tests.test_api_rules import error_fields

BASE = (datetime.now(UTC) - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)


async def _alert(conn: Any, tenant: str, equipment: str, rule: str, at: datetime, *, resolve_after: float | None,
                 ack_after: float | None = None, verdict: str | None = None, event: bool = True) -> int:
    resolved = None if resolve_after is None else at + timedelta(seconds=resolve_after)
    acked = None if ack_after is None else at + timedelta(seconds=ack_after)
    alert_id = await conn.fetchval(
        "INSERT INTO alerts (tenant_id, equipment_id, rule_id, state, severity, message, opened_at, acknowledged_at,"
        " resolved_at, verdict) VALUES ($1, $2, $3, $4, 'warning', 'kpi', $5, $6, $7, $8) RETURNING id",
        tenant, equipment, rule, "open" if resolved is None else "resolved", at, acked, resolved, verdict)
    if event:
        await conn.execute(
            "INSERT INTO alert_events (tenant_id, alert_id, equipment_id, rule_id, kind, state, severity, message,"
            " actor, occurred_at) VALUES ($1, $2, $3, $4, 'opened', 'open', 'warning', 'kpi', 'system', $5)",
            tenant, alert_id, equipment, rule, at)
    return alert_id


async def _sequence(conn: Any, tenant: str) -> None:
    """14 openings in the hour from BASE (6 periods of 10 minutes):

    - period 0: MTR-1/a at 0, 20, 40 s (chattering) and MTR-2/b every minute from 2 min (8): 11, a flood;
    - period 2: PJ-1/c at 25 and 27 min; period 5: MTR-1/a at 55 min.

    Meters resolve after 300 s, pump jacks after 900 s; three are acknowledged after 60, 120 and 600 s.
    Verdicts: b real ×3 and false_alarm ×1; c planned and false_alarm. One PJ-1 alert opened two days before
    BASE is still open (stale), and an opening one second before BASE is out of the span.
    """
    a = BASE
    for s in (0, 20, 40):
        await _alert(conn, tenant, "MTR-1", "a", a + timedelta(seconds=s), resolve_after=300,
                     ack_after={0: 60, 20: 120, 40: 600}[s])
    verdicts = ["real", "real", "real", "false_alarm", None, None, None, None]
    for i in range(8):
        await _alert(conn, tenant, "MTR-2", "b", a + timedelta(minutes=2 + i), resolve_after=300, verdict=verdicts[i])
    await _alert(conn, tenant, "PJ-1", "c", a + timedelta(minutes=25), resolve_after=900, verdict="planned")
    await _alert(conn, tenant, "PJ-1", "c", a + timedelta(minutes=27), resolve_after=900, verdict="false_alarm")
    await _alert(conn, tenant, "MTR-1", "a", a + timedelta(minutes=55), resolve_after=300)
    await _alert(conn, tenant, "PJ-1", "stuck", a - timedelta(days=2), resolve_after=None, event=False)
    await _alert(conn, tenant, "MTR-1", "a", a - timedelta(seconds=1), resolve_after=300)


@pytest.fixture
async def kpi_tenant(stack: Any, db_conn: Any) -> str:
    tenant = new_tenant_id("kpi")
    await create_tenant(stack, tenant, [("MTR-1", "meter"), ("MTR-2", "meter"), ("PJ-1", "pump_jack")])
    await _sequence(db_conn, tenant)
    return tenant


async def test_kpis_of_a_known_sequence(stack: Any, http: Any, db_conn: Any, kpi_tenant: str) -> None:
    span = {"from": BASE.isoformat(), "to": (BASE + timedelta(hours=1)).isoformat()}
    r = await http.get("/v1/alerts/kpis", headers=auth(kpi_tenant, "viewer"), params=span)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["periods"] == 6 and data["from"].startswith(BASE.strftime("%Y-%m-%dT%H:%M"))
    t = data["tenant"]
    assert t["openings"] == 14
    assert (t["alerts_per_10min_mean"], t["alerts_per_10min_max"]) == (round(14 / 6, 4), 11)
    assert (t["flood_periods"], t["flood_share"]) == (1, round(1 / 6, 4))
    assert t["chattering"] == [{"equipment_id": "MTR-1", "rule_id": "a", "max_openings_per_minute": 3,
                                "equipment_type": "meter", "count": None}]
    assert t["stale"] == 1
    assert [(b["equipment_id"], b["rule_id"], b["count"]) for b in t["bad_actors"]] == [
        ("MTR-2", "b", 8), ("MTR-1", "a", 4), ("PJ-1", "c", 2)]
    assert t["time_to_acknowledge"] == {"count": 3, "mean_seconds": 260.0, "p90_seconds": 504.0}
    assert t["time_to_resolve"] == {"count": 14, "mean_seconds": round((12 * 300 + 2 * 900) / 14, 3),
                                    "p90_seconds": 720.0}
    assert t["verdicts"] == {"real": 3, "false_alarm": 2, "planned": 1, "precision": 0.6}
    meter, pump = data["by_equipment_type"]["meter"], data["by_equipment_type"]["pump_jack"]
    assert (meter["openings"], meter["alerts_per_10min_max"], meter["flood_periods"]) == (12, 11, 1)
    assert (pump["openings"], pump["alerts_per_10min_max"], pump["flood_periods"], pump["stale"]) == (2, 2, 0, 1)
    assert meter["stale"] == 0 and pump["chattering"] == [] and len(meter["chattering"]) == 1
    assert pump["time_to_resolve"] == {"count": 2, "mean_seconds": 900.0, "p90_seconds": 900.0}
    assert pump["time_to_acknowledge"] == {"count": 0, "mean_seconds": None, "p90_seconds": None}
    assert meter["verdicts"]["precision"] == 0.75 and pump["verdicts"]["precision"] == 0.0
    assert data["precision_by_rule"] == {
        "b": {"real": 3, "false_alarm": 1, "planned": 0, "precision": 0.75},
        "c": {"real": 0, "false_alarm": 1, "planned": 1, "precision": 0.0}}
    # Another tenant sees none of it.
    other = new_tenant_id("kpi-b")
    await create_tenant(stack, other, [("MTR-1", "meter")])
    r = await http.get("/v1/alerts/kpis", headers=auth(other, "viewer"), params=span)
    assert r.status_code == 200 and r.json()["data"]["tenant"]["openings"] == 0
    assert r.json()["data"]["precision_by_rule"] == {} and r.json()["data"]["tenant"]["stale"] == 0


async def test_kpis_bad_input(http: Any, kpi_tenant: str) -> None:
    h = auth(kpi_tenant, "viewer")
    end = BASE + timedelta(hours=1)
    for params, field in [({"from": end.isoformat(), "to": BASE.isoformat()}, "from"),
                          ({"from": "2026-01-01T00:00:00", "to": end.isoformat()}, "from"),
                          ({"from": "yesterday"}, "from"), ({"to": "soon"}, "to"),
                          ({"from": (end - timedelta(days=93)).isoformat(), "to": end.isoformat()}, "from")]:
        r = await http.get("/v1/alerts/kpis", headers=h, params=params)
        assert r.status_code == 422 and error_fields(r) == [field], (params, r.text)
    r = await http.get("/v1/alerts/kpis", headers=h)  # the last 24 hours
    assert r.status_code == 200 and r.json()["data"]["periods"] == 144
    assert (await http.get("/v1/alerts/kpis")).status_code == 401
