"""Predictions, the model listing, failure labels, model resets and backtests against the running stack.

The equipment actors learn published readings and write predictions at each checkpoint (every 2 s in the
tests); the API reads them from the database. Failure labels travel as ``ctl.<tenant>`` messages
(`serve.predictions.report_failure`) or come from ``failure_repair`` maintenance records.
"""

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from serve.predictions import report_failure
from serve.services import Services
from tests.helpers import auth, create_tenant, new_tenant_id, now_utc, publish, snapshot, wait_for

N = 180  # one snapshot a minute over 3 hours: three failure-model samples (one an hour of reading time)
SPIKES = {60, 61, 62, 63}  # tubing_psi far above normal there


def values(i: int) -> dict[str, float]:
    wobble = ((i * 37) % 11 - 5) * 0.8
    return {
        "tubing_psi": (1_400.0 if i in SPIKES else 800.0) + wobble,
        "casing_psi": 250.0 - wobble,
        "motor_current_a": 42.0 + wobble / 10,
    }


@pytest.fixture(scope="module")
async def fleet(stack: Any) -> dict[str, Any]:
    a, b = new_tenant_id("pred-a"), new_tenant_id("pred-b")
    await create_tenant(stack, a, [("PJ-1", "pump_jack"), ("PJ-2", "pump_jack")])
    await create_tenant(stack, b, [("PJ-B", "pump_jack")])
    start = (now_utc() - timedelta(hours=5)).replace(microsecond=0)
    stamps = [start + timedelta(minutes=i) for i in range(N)]
    await publish(stack.settings.nats_url, a, [("PJ-1", snapshot("PJ-1", t, values(i))) for i, t in enumerate(stamps)])
    await publish(stack.settings.nats_url, b, [("PJ-B", snapshot("PJ-B", t, values(i))) for i, t in enumerate(stamps)])
    return {"a": a, "b": b, "stamps": stamps}


async def predictions(http: Any, tenant: str, eid: str, role: str = "viewer") -> dict[str, Any]:
    r = await http.get(f"/v1/equipment/{eid}/predictions", headers=auth(tenant, role))
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def learned(http: Any, tenant: str, eid: str, n: int) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        p = await predictions(http, tenant, eid)
        return p if p["samples_seen"] == n else None

    return await wait_for(check, timeout=90)


def errors(r: Any) -> list[str]:
    return [d["field"] for d in r.json()["error"]["details"]]


async def test_predictions_after_readings(http: Any, fleet: dict[str, Any]) -> None:
    a, stamps = fleet["a"], fleet["stamps"]
    p = await learned(http, a, "PJ-1", N)
    assert p["equipment_type"] == "pump_jack" and p["model_version"].startswith("wellpulse-models-")
    assert datetime.fromisoformat(p["last_learned_at"]) == stamps[-1]
    assert p["values_seen"] == 3 * N and not p["warming_up"] and p["state_bytes"] > 1_000
    sensors = {s["sensor"]: s for s in p["anomaly"]["sensors"]}
    assert set(sensors) == {"tubing_psi", "casing_psi", "motor_current_a"}
    assert abs(sensors["tubing_psi"]["expected_mean"] - 800.0) < 20.0 and sensors["tubing_psi"]["expected_std"] > 0
    assert all(0.0 <= s["anomaly_score"] <= 1.0 and not s["warming_up"] for s in sensors.values())
    assert {"drifts", "last_drift_at", "rebaselining"} <= set(sensors["casing_psi"]["drift"])
    assert 0.0 <= p["anomaly"]["score"] <= 1.0 and 0.0 <= p["anomaly"]["equipment_score"] <= 1.0
    failure = p["failure"]
    assert 0.0 <= failure["probability"] <= 1.0 and failure["horizon_days"] == 7.0
    assert failure["failures_seen"] == 0 and failure["runtime_days"] > 0.1
    assert p["drift"]["enabled"] is True and isinstance(p["drift"]["events"], dict)


async def test_predictions_of_silent_unknown_and_foreign_equipment(http: Any, fleet: dict[str, Any]) -> None:
    a, b = fleet["a"], fleet["b"]
    silent = await predictions(http, a, "PJ-2")
    assert silent["samples_seen"] == 0 and silent["model_version"] is None and silent["warming_up"] is True
    assert silent["anomaly"] is None and silent["equipment_type"] == "pump_jack"
    for eid in ("NOPE", "PJ-B"):  # unknown, and tenant B's
        r = await http.get(f"/v1/equipment/{eid}/predictions", headers=auth(a, "admin"))
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND", r.text
    r = await http.get("/v1/equipment/bad.id/predictions", headers=auth(a, "admin"))
    assert r.status_code in (404, 422)
    await learned(http, b, "PJ-B", N)  # B's own equipment is there for B


async def test_model_listing_uses_the_shared_list_conventions(http: Any, fleet: dict[str, Any]) -> None:
    a = fleet["a"]
    await learned(http, a, "PJ-1", N)
    r = await http.get("/v1/ml/models", headers=auth(a, "viewer"), params={"limit": 100})
    assert r.status_code == 200, r.text
    models = {m["id"]: m for m in r.json()["data"]}
    pj1 = models["PJ-1"]
    assert (pj1["kind"], pj1["equipment_id"], pj1["equipment_type"], pj1["samples_seen"]) == (
        "equipment", "PJ-1", "pump_jack", N)
    assert pj1["size_bytes"] > 1_000 and pj1["model_version"].startswith("wellpulse-models-")
    assert datetime.fromisoformat(pj1["last_learned_at"]) == fleet["stamps"][-1]
    assert "PJ-B" not in models and r.json()["meta"]["pagination"]["total"] == len(models)
    sparse = await http.get("/v1/ml/models", headers=auth(a, "viewer"),
                            params={"fields": "size_bytes", "kind": "equipment", "sort": "-size_bytes"})
    assert sparse.status_code == 200 and all(set(m) == {"id", "size_bytes"} for m in sparse.json()["data"])
    sizes = [m["size_bytes"] for m in sparse.json()["data"]]
    assert sizes == sorted(sizes, reverse=True)
    for params, field in [({"bogus": "1"}, "bogus"), ({"kind": "robot"}, "kind"),
                          ({"size_bytes": "gt:x"}, "size_bytes"), ({"limit": "500"}, "limit"),
                          ({"sort": "state"}, "sort")]:
        bad = await http.get("/v1/ml/models", headers=auth(a, "viewer"), params=params)
        assert bad.status_code == 422 and field in errors(bad), (params, bad.text)


async def test_failure_labels_teach_the_type_model_and_new_equipment_adopts_it(
        stack: Any, http: Any, fleet: dict[str, Any]) -> None:
    a, stamps = fleet["a"], fleet["stamps"]
    before = (await learned(http, a, "PJ-1", N))["failure"]
    services = await Services(stack.settings).ready()
    try:
        await report_failure(services, a, "PJ-1", stamps[-1])
        await report_failure(services, a, "PJ-1", stamps[-1])  # delivered twice: learned once
    finally:
        await services.close()

    async def labelled() -> dict[str, Any] | None:
        p = await predictions(http, a, "PJ-1")
        return p if p["failure"]["failures_seen"] >= 1 else None

    after = (await wait_for(labelled, timeout=60))["failure"]
    assert datetime.fromisoformat(after["last_failure_at"]) == stamps[-1]
    # The three hourly samples before the failure are now "failed within 7 days": the same features are riskier.
    assert after["labels_seen"] >= before["labels_seen"] + 3 and after["probability"] > before["probability"]

    async def shared() -> dict[str, Any] | None:
        r = await http.get("/v1/ml/models", headers=auth(a, "viewer"), params={"kind": "equipment_type"})
        return next(iter(r.json()["data"]), None)

    type_model = await wait_for(shared, timeout=30)
    assert (type_model["id"], type_model["equipment_type"], type_model["equipment_id"]) == (
        "type:pump_jack", "pump_jack", None)
    assert type_model["samples_seen"] >= 3 and type_model["size_bytes"] > 0
    assert (await predictions(http, a, "PJ-1"))["failure"]["failures_seen"] == 1

    # A new pump jack starts from the type's model: it knows what it learned on day one.
    r = await http.post("/v1/equipment", headers=auth(a, "manager"), json={"id": "PJ-3", "type": "pump_jack"})
    assert r.status_code == 201, r.text
    start = now_utc().replace(microsecond=0) - timedelta(minutes=10)
    await publish(stack.settings.nats_url, a, [
        ("PJ-3", snapshot("PJ-3", start + timedelta(minutes=i), values(i))) for i in range(5)])
    new = (await learned(http, a, "PJ-3", 5))["failure"]
    assert new["labels_seen"] >= type_model["samples_seen"] and new["failures_seen"] == 0


async def test_a_failure_repair_job_is_a_label(http: Any, fleet: dict[str, Any]) -> None:
    a, stamps = fleet["a"], fleet["stamps"]
    started, ended = stamps[100], stamps[110]
    r = await http.post("/v1/equipment/PJ-1/maintenance", headers=auth(a, "operator"), json={
        "kind": "failure_repair", "description": "rod parted", "started_at": started.isoformat(),
        "ended_at": ended.isoformat()})
    assert r.status_code == 201, r.text

    async def relabelled() -> dict[str, Any] | None:
        p = (await predictions(http, a, "PJ-1"))["failure"]
        return p if p["failures_seen"] == 2 and p["last_maintenance_at"] else None

    failure = await wait_for(relabelled, timeout=90)  # the next reload of the actors reads the record
    assert datetime.fromisoformat(failure["last_maintenance_at"]) == ended


async def test_backtest_over_stored_readings(http: Any, fleet: dict[str, Any]) -> None:
    a, stamps = fleet["a"], fleet["stamps"]
    await learned(http, a, "PJ-1", N)
    body = {"from": stamps[0].isoformat(), "to": (stamps[-1] + timedelta(seconds=1)).isoformat(),
            "rules": [{"id": "psi_watch", "kind": "threshold",
                       "params": {"sensor": "tubing_psi", "high": 1_000, "severity": "warning"}}],
            "include_scores": True, "max_points": 20}
    r = await http.post("/v1/equipment/PJ-1/backtest", headers=auth(a, "viewer"), json=body)
    assert r.status_code == 200, r.text
    out = r.json()["data"]
    assert out["snapshots"] == out["learned"] == N and datetime.fromisoformat(out["from"]) == stamps[0]
    assert out["sensors"] == ["casing_psi", "motor_current_a", "tubing_psi"]
    rules = {x["rule_id"]: x for x in out["rules"]}
    assert rules["psi_watch"]["alerts"] == 1 and rules["psi_watch"]["by_severity"] == {"warning": 1}
    assert rules["psi_watch"]["kind"] == "threshold" and "anomaly" in rules and "stale_data" in rules
    watch = [x for x in out["alerts"] if x["rule_id"] == "psi_watch"]
    assert datetime.fromisoformat(watch[0]["opened_at"]) == stamps[min(SPIKES)]
    assert datetime.fromisoformat(watch[0]["resolved_at"]) == stamps[max(SPIKES) + 1]
    assert len(out["scores"]) == 20 and all(0.0 <= p["anomaly_score"] <= 1.0 for p in out["scores"])
    assert max(p["alert"] for p in out["scores"]) == 1
    # No look-ahead: the replay of the first half opens the same alerts, at the same times.
    half = await http.post("/v1/equipment/PJ-1/backtest", headers=auth(a, "viewer"),
                           json={**body, "to": stamps[N // 2].isoformat(), "include_scores": False})
    assert half.status_code == 200 and half.json()["data"]["scores"] is None

    def opened(alerts: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return [(x["rule_id"], x["opened_at"]) for x in alerts
                if datetime.fromisoformat(x["opened_at"]) < stamps[N // 2]]

    assert opened(half.json()["data"]["alerts"]) == opened(out["alerts"]) != []


async def test_backtest_reports_agreement_with_verdicts(http: Any, fleet: dict[str, Any], db_conn: Any) -> None:
    """Operators judged two alerts the live system raised: the replay raises the real one again, not the false
    alarm; precision and recall against those verdicts come back with the backtest."""
    a, stamps = fleet["a"], fleet["stamps"]
    await learned(http, a, "PJ-1", N)
    body = {"from": stamps[0].isoformat(), "to": (stamps[-1] + timedelta(seconds=1)).isoformat(),
            "rules": [{"id": "psi_watch", "kind": "threshold",
                       "params": {"sensor": "tubing_psi", "high": 1_000, "severity": "warning"}}]}
    r = await http.post("/v1/equipment/PJ-1/backtest", headers=auth(a, "viewer"), json=body)
    assert r.status_code == 200 and r.json()["data"]["verdicts"] is None  # nothing judged yet
    for at, verdict in ((stamps[min(SPIKES)], "real"), (stamps[10], "false_alarm")):
        await db_conn.execute(
            "INSERT INTO alerts (tenant_id, equipment_id, rule_id, state, severity, message, opened_at, resolved_at,"
            " verdict, verdict_by, verdict_at) VALUES ($1, 'PJ-1', 'psi_watch', 'resolved', 'warning', 'm', $2, $2,"
            " $3, 'op', now())", a, at, verdict)
    r = await http.post("/v1/equipment/PJ-1/backtest", headers=auth(a, "viewer"), json=body)
    v = r.json()["data"]["verdicts"]
    assert v["real"] == {"judged": 1, "raised_again": 1} and v["false_alarm"] == {"judged": 1, "raised_again": 0}
    assert v["precision"] == 1.0 and v["recall"] == 1.0
    # Another tenant's verdicts never count here.
    other = await http.post("/v1/equipment/PJ-B/backtest", headers=auth(fleet["b"], "viewer"), json=body)
    assert other.status_code == 200 and other.json()["data"]["verdicts"] is None


async def test_backtest_bad_input(http: Any, fleet: dict[str, Any]) -> None:
    a, b = fleet["a"], fleet["b"]
    t0 = now_utc().replace(microsecond=0)
    ok = {"from": (t0 - timedelta(days=1)).isoformat(), "to": t0.isoformat()}
    cases = [
        ({**ok, "from": (t0 - timedelta(days=40)).isoformat()}, "to"),
        ({**ok, "to": (t0 - timedelta(days=2)).isoformat()}, "to"),
        ({**ok, "from": "2026-11-01T00:00:00"}, "from"),
        ({**ok, "rules": [{"id": "x", "kind": "threshold", "params": {"sensor": "p", "hgh": 1}}]}, "rules.0"),
        ({**ok, "rules": [{"id": "x", "kind": "magic"}]}, "rules.0.kind"),
        ({**ok, "sensitivity": "extreme"}, "sensitivity"),
        ({**ok, "max_points": 0}, "max_points"),
        ({"to": t0.isoformat()}, "from"),
    ]
    for body, field in cases:
        r = await http.post("/v1/equipment/PJ-1/backtest", headers=auth(a, "viewer"), json=body)
        assert r.status_code == 422, (body, r.text)
        assert any(f.startswith(field) for f in errors(r)), (body, r.text)
    for eid in ("NOPE", "PJ-B"):
        r = await http.post(f"/v1/equipment/{eid}/backtest", headers=auth(a, "viewer"), json=ok)
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    empty = await http.post("/v1/equipment/PJ-2/backtest", headers=auth(a, "viewer"), json=ok)
    assert empty.status_code == 200 and empty.json()["data"]["snapshots"] == 0
    assert (await http.post("/v1/equipment/PJ-B/backtest", headers=auth(b, "viewer"), json=ok)).status_code == 200


async def test_model_reset(stack: Any, http: Any, db_conn: Any, fleet: dict[str, Any]) -> None:
    a, b = fleet["a"], fleet["b"]
    await learned(http, a, "PJ-1", N)
    r = await http.post("/v1/equipment/PJ-1/model/reset", headers=auth(a, "operator"))
    assert r.status_code == 403
    for eid in ("NOPE", "PJ-B"):
        r = await http.post(f"/v1/equipment/{eid}/model/reset", headers=auth(a, "manager"))
        assert r.status_code == 404
    r = await http.post("/v1/equipment/PJ-1/model/reset", headers=auth(a, "manager"))
    assert r.status_code == 202, r.text
    assert r.json()["data"] == {"equipment_id": "PJ-1", "checkpoint_deleted": True, "status": "requested"}
    entry = await db_conn.fetchrow(
        "SELECT actor_id, old_values, new_values FROM audit_log WHERE tenant_id = $1 AND entity_type = 'model'"
        " AND action = 'reset' AND entity_id = 'PJ-1'", a)
    assert entry is not None and json.loads(entry["old_values"])["samples_seen"] >= N
    assert json.loads(entry["new_values"]) == {"samples_seen": 0, "checkpoint_deleted": True}

    async def fresh_model() -> dict[str, Any] | None:  # the actor saved a fresh model
        p = await predictions(http, a, "PJ-1")
        return p if p["samples_seen"] == 0 and p["model_version"] is not None else None

    fresh = await wait_for(fresh_model, timeout=60)
    assert fresh["warming_up"] is True and fresh["values_seen"] == 0
    # It starts from the type's shared model, and reads the maintenance records again (facts, not learning).
    assert fresh["failure"]["labels_seen"] >= 3
    assert datetime.fromisoformat(fresh["failure"]["last_maintenance_at"]) == fleet["stamps"][110]
    # It warms up from the next reading: what was stored before is not learned again.
    later = fleet["stamps"][-1] + timedelta(minutes=30)
    await publish(stack.settings.nats_url, a, [
        ("PJ-1", snapshot("PJ-1", later + timedelta(minutes=i), values(i))) for i in range(7)])
    p = await learned(http, a, "PJ-1", 7)
    assert datetime.fromisoformat(p["last_learned_at"]) == later + timedelta(minutes=6)
    # Tenant B's model of the same type was not touched.
    assert (await predictions(http, b, "PJ-B"))["samples_seen"] == N
