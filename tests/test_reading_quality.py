"""Reading quality and historical snapshots: bad values stored but not learned, historical ones learned without
alerts (and a stale-data alert that fires once across an outage), quality stored on both write paths and shown
by ``GET .../readings?include_quality=true``."""

import json
from datetime import timedelta
from typing import Any

import asyncpg

from actors.tenant import learned_snapshot, stored_rows
from models import EquipmentState, Snapshot, StaleDataRule, ThresholdRule
from schema.telemetry import Reading
from store import db, readings
from store.migrate import migrate
from tests.helpers import auth, create_tenant, new_tenant_id, now_utc, publish, settled, wait_for

T_RULE = {"id": "t_high", "kind": "threshold",
          "params": {"sensor": "tubing_psi", "high": 1000.0, "for_seconds": 0, "severity": "critical"}}


def reading(**kw: Any) -> Reading:
    return Reading.model_validate({"equipment_id": "PJ-1", "ts": now_utc().isoformat(), **kw})


def test_bad_values_are_stored_with_their_flag_but_not_learned() -> None:
    r = reading(values={"a": 1.0, "b": 2.0, "c": 3.0}, quality={"b": "bad", "c": "uncertain"})
    assert [row[2:3] + row[5:] for row in stored_rows("t", "PJ-1", r)] == [("a", None, None), ("b", "bad", None),
                                                                          ("c", "uncertain", None)]
    assert {row[6] for row in stored_rows("t", "PJ-1", reading(values={"a": 1.0, "b": 2.0}, historical=True))} == {
        True}
    _ts, values, historical = learned_snapshot(r)
    assert values == {"a": 1.0, "c": 3.0} and not historical
    assert learned_snapshot(reading(values={"a": 1.0}, historical=True))[2] is True
    assert stored_rows("t", "PJ-1", reading(values={"a": 1.0}, quality={"a": "good"}))[0][5] is None


def test_historical_snapshots_learn_without_alerts_and_stale_fires_once() -> None:
    t0 = now_utc().replace(microsecond=0)
    eq = EquipmentState("PJ-1", "pump_jack", [ThresholdRule("t_high", "tubing_psi", high=1000.0),
                                              StaleDataRule(max_silence_seconds=60)])
    assert eq.learn_many([Snapshot(t0, {"tubing_psi": 800.0})]) == []
    stale = eq.tick(t0 + timedelta(seconds=120))  # the link is down: stale opens once
    assert [(c.kind, c.rule_id) for c in stale] == [("opened", "stale_data")]
    # The edge buffer forwards the outage, one value over the threshold among them: learned, no alert.
    backlog = [Snapshot(t0 + timedelta(seconds=10 * i), {"tubing_psi": 1200.0 if i == 5 else 800.0}, True)
               for i in range(1, 12)]
    before = eq.samples_seen
    assert eq.learn_many(backlog) == []
    assert eq.samples_seen == before + len(backlog) and eq.historical_snapshots == len(backlog)
    assert eq.tick(t0 + timedelta(seconds=125)) == []  # still open, not closed and opened again
    live = eq.learn_many([Snapshot(t0 + timedelta(seconds=126), {"tubing_psi": 800.0})])
    assert [(c.kind, c.rule_id) for c in live] == [("resolved", "stale_data")]


async def test_copy_path_stores_quality(database_url: str) -> None:
    """The owner's pool takes the COPY path (the app's, under row-level security, the unnest one: below)."""
    tenant = new_tenant_id("rq-copy")
    migrate(database_url)  # a no-op when the stack ran first
    pool = await db.create_pool(database_url)
    try:
        await pool.execute("INSERT INTO tenants (id, name) VALUES ($1, $1)", tenant)
        t = now_utc()
        rows: list[readings.QualifiedRow] = [(tenant, "PJ-1", "a", t, 1.0, None), (tenant, "PJ-1", "b", t, 2.0, "bad")]
        assert await readings.copy_readings(pool, rows) == 2
        got = await readings.fetch_readings(pool, tenant, "PJ-1", sensors=None, start=t - timedelta(seconds=1),
                                            end=t + timedelta(seconds=1), after=None, limit=10, quality=True)
        assert [(r["sensor"], r["quality"], r["historical"]) for r in got] == [("a", "good", False),
                                                                                ("b", "bad", False)]
        late: list[readings.IngestRow] = [(tenant, "PJ-1", "a", t - timedelta(seconds=5), 0.5, None, True)]
        assert await readings.copy_readings(pool, late) == 1
        snaps = await readings.readings_after(pool, tenant, "PJ-1", None, 10)
        assert [(json.loads(s["vals"]) if isinstance(s["vals"], str) else s["vals"], s["historical"])
                for s in snaps] == [({"a": 0.5}, True), ({"a": 1.0}, False)]
    finally:
        await pool.close()


async def test_ingest_stores_quality_and_alerts_only_on_live_good_values(stack: Any, http: Any,
                                                                        db_conn: asyncpg.Connection) -> None:
    tenant = new_tenant_id("rq")
    await create_tenant(stack, tenant, [("PJ-1", "pump_jack")], rules=[T_RULE])
    t0 = now_utc() - timedelta(minutes=2)
    bodies = [
        {"equipment_id": "PJ-1", "ts": (t0 + timedelta(seconds=i)).isoformat(),
         "values": {"tubing_psi": 800.0, "casing_psi": 250.0}} for i in range(5)]
    bodies.append({"equipment_id": "PJ-1", "ts": (t0 + timedelta(seconds=5)).isoformat(),
                   "values": {"tubing_psi": 5000.0, "casing_psi": 250.0}, "quality": {"tubing_psi": "bad"}})
    bodies.append({"equipment_id": "PJ-1", "ts": (t0 + timedelta(seconds=6)).isoformat(),
                   "values": {"tubing_psi": 5000.0}, "historical": True})
    bodies.append({"equipment_id": "PJ-1", "ts": (t0 + timedelta(seconds=7)).isoformat(),
                   "values": {"tubing_psi": 810.0, "casing_psi": 250.0}, "quality": {"casing_psi": "uncertain"}})
    await publish(stack.settings.nats_url, tenant, [("PJ-1", json.dumps(b).encode()) for b in bodies])

    async def stored() -> bool:
        return await db_conn.fetchval("SELECT count(*) FROM readings WHERE tenant_id = $1", tenant) == 15

    await wait_for(stored, timeout=60)
    await settled(stack, tenant)
    assert await db_conn.fetchval("SELECT count(*) FROM alerts WHERE tenant_id = $1 AND rule_id = 't_high'",
                                  tenant) == 0
    params = {"from": t0.isoformat(), "to": (t0 + timedelta(seconds=8)).isoformat(), "sensor": "tubing_psi"}
    plain = (await http.get("/v1/equipment/PJ-1/readings", params=params, headers=auth(tenant))).json()["data"]
    assert len(plain) == 8 and set(plain[0]) == {"sensor", "ts", "value"}  # unchanged by default
    with_quality = {**params, "include_quality": "true"}
    del with_quality["sensor"]
    r = await http.get("/v1/equipment/PJ-1/readings", params=with_quality, headers=auth(tenant))
    flagged = sorted((row["sensor"], row["value"], row["quality"]) for row in r.json()["data"]
                     if row["quality"] != "good")
    assert flagged == [("casing_psi", 250.0, "uncertain"), ("tubing_psi", 5000.0, "bad")]
    bucketed = await http.get("/v1/equipment/PJ-1/readings", params={"bucket": "1m", "include_quality": "true"},
                              headers=auth(tenant))
    assert bucketed.status_code == 422 and "include_quality" in bucketed.text
