"""Operators' verdicts (issue 11): given on acknowledge or resolve, stored on the alert and in its event, applied
once; a false alarm on an anomaly alert widens the sensor's normal in the equipment's models (the same pattern
scores lower next time, visible in its predictions), a planned change re-baselines without alerting; a new
anomaly alert names its expected band and the most recent similar alert with its verdict."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from models import EquipmentState, Snapshot
from models.equipment import VERDICT_WIDEN
from models.rules import AnomalyRule
from tests.helpers import auth, create_tenant, new_tenant_id, now_utc, publish, snapshot, wait_for
from tests.test_api_rules import error_fields

T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


def normal(i: int) -> float:
    return 800.0 + ((i * 37) % 11 - 5) * 0.8


def trained() -> EquipmentState:
    eq = EquipmentState("MTR-1", "meter", [AnomalyRule(for_count=1)], drift=False)
    eq.learn_many([Snapshot(T0 + timedelta(seconds=i), {"p": normal(i)}) for i in range(300)])
    return eq


def score_of(eq: EquipmentState, value: float, at: int) -> float:
    eq.learn_many([Snapshot(T0 + timedelta(seconds=at), {"p": value})])
    return eq.predictions()["anomaly"]["sensors"]["p"]["anomaly_score"]


@pytest.mark.fast
def test_false_alarm_lowers_the_next_score_of_the_same_pattern() -> None:
    before, after = trained(), EquipmentState.from_bytes(trained().to_bytes())
    assert after.apply_verdict(7, "anomaly", "false_alarm", ["p"])
    assert not after.apply_verdict(7, "anomaly", "false_alarm", ["p"])  # a replay: applied once
    assert after.predictions()["anomaly"]["sensors"]["p"]["tolerance"] == VERDICT_WIDEN
    assert before.predictions()["anomaly"]["sensors"]["p"]["tolerance"] == 1.0
    spike = 812.0
    s_before, s_after = score_of(before, spike, 400), score_of(after, spike, 400)
    assert 0.0 < s_after < s_before, (s_before, s_after)
    # A real alert, or a false alarm on a threshold rule, changes no model.
    assert after.apply_verdict(8, "anomaly", "real", ["p"]) and after.tolerance == {"p": VERDICT_WIDEN}
    assert after.apply_verdict(9, "p_high", "false_alarm", ["p"]) and after.tolerance == {"p": VERDICT_WIDEN}


@pytest.mark.fast
def test_the_expected_band_widens_once_with_a_false_alarm() -> None:
    """An anomaly alert's band is where a sensor's own score stays under the rule's level; a false alarm
    widens it by exactly its factor (the baselines carry the tolerance; nothing applies it twice)."""
    widths = []
    for widen in (False, True):
        eq = trained()
        if widen:
            eq.apply_verdict(1, "anomaly", "false_alarm", ["p"])
        changes = eq.learn_many([Snapshot(T0 + timedelta(seconds=400), {"p": 900.0})])
        sensor = next(c for c in changes if c.kind == "opened").details["sensors"][0]
        low, high = sensor["expected_band"]
        assert low < sensor["expected_mean"] < high < 900.0 and sensor["outside_band"] is True
        widths.append(high - low)
    assert widths[1] / widths[0] == pytest.approx(VERDICT_WIDEN, rel=1e-3)


@pytest.mark.fast
def test_false_alarm_also_widens_the_equipment_score() -> None:
    """The equipment's calibrated statistic reads the same sensors: a false alarm lowers it too."""
    rows = [{"p": normal(i), "q": 50.0 + ((i * 13) % 7 - 3) * 0.5} for i in range(2_000)]
    models = []
    for widen in (False, True):
        eq = EquipmentState("MTR-1", "meter", [AnomalyRule(for_count=1)], drift=False)
        eq.learn_many([Snapshot(T0 + timedelta(seconds=i), r) for i, r in enumerate(rows)])
        if widen:
            eq.apply_verdict(3, "anomaly", "false_alarm", ["p"])
        models.append(eq)
    shifted = {"p": 806.0, "q": 50.0}
    stats = [eq.scorer.statistic_one(shifted, (T0 + timedelta(seconds=2_000)).timestamp()) for eq in models]
    assert 0.0 < stats[1] < stats[0], stats


@pytest.mark.fast
def test_planned_rebaselines_without_alerting() -> None:
    eq = trained()
    assert eq.apply_verdict(1, "anomaly", "planned", ["p"])
    assert eq.predictions()["drift"]["rebaselining"] == ["p"]
    # The new operating point is learned, not alerted on.
    changes = eq.learn_many([Snapshot(T0 + timedelta(seconds=400 + i), {"p": normal(i) + 200.0}) for i in range(60)])
    assert [c for c in changes if c.kind == "opened"] == []
    assert abs(eq.predictions()["anomaly"]["sensors"]["p"]["expected_mean"] - 1000.0) < 5.0


async def test_verdicts_over_the_api_reach_the_models(stack: Any, http: Any, db_conn: Any) -> None:
    tenant, other = new_tenant_id("verdict"), new_tenant_id("verdict-b")
    await create_tenant(stack, tenant, [("MTR-1", "meter")])
    await create_tenant(stack, other, [("MTR-1", "meter")])
    start = now_utc() - timedelta(seconds=200)

    async def send(values: list[float], offset: int) -> None:
        await publish(stack.settings.nats_url, tenant, [
            ("MTR-1", snapshot("MTR-1", start + timedelta(seconds=offset + i), {"p": v}))
            for i, v in enumerate(values)])

    await send([normal(i) for i in range(60)] + [1200.0] * 4, 0)

    async def anomaly() -> Any:
        return await db_conn.fetchrow("SELECT * FROM alerts WHERE tenant_id = $1 AND rule_id = 'anomaly'"
                                      " AND state = 'open'", tenant)

    alert = await wait_for(anomaly, timeout=60)
    explained = json.loads(alert["details"])["sensors"][0]
    assert explained["sensor"] == "p" and explained["outside_band"] is True
    low, high = explained["expected_band"]
    assert low < 800.0 < high < 1200.0 and "similar" not in json.loads(alert["details"])
    op, url = auth(tenant, "operator"), f"/v1/alerts/{alert['id']}"
    # Bad input: an unknown verdict, another tenant's alert; nothing changes.
    r = await http.post(f"{url}/acknowledge", headers=op, json={"verdict": "maybe"})
    assert r.status_code == 422 and error_fields(r) == ["verdict"], r.text
    r = await http.post(f"{url}/acknowledge", headers=auth(other, "operator"), json={"verdict": "real"})
    assert r.status_code == 404
    r = await http.post(f"{url}/resolve", headers=auth(other, "operator"), json={"verdict": "real"})
    assert r.status_code == 404
    row = await db_conn.fetchrow("SELECT state, verdict FROM alerts WHERE id = $1", alert["id"])
    assert tuple(row) == ("open", None)
    # The verdict: stored, in the event, sent to the models.
    r = await http.post(f"{url}/acknowledge", headers=op, json={"comment": "valve test", "verdict": "false_alarm"})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert (data["state"], data["verdict"]) == ("acknowledged", "false_alarm") and data["verdict_by"]
    events = (await http.get(url, headers=auth(tenant, "viewer"))).json()["data"]["events"]
    assert events[-1]["kind"] == "acknowledged" and events[-1]["details"]["verdict"] == "false_alarm"

    async def learned() -> Any:
        return await db_conn.fetchval(
            "SELECT (p.sensors->'p'->>'tolerance')::float8 FROM predictions p JOIN alerts a ON a.tenant_id ="
            " p.tenant_id AND a.equipment_id = p.equipment_id WHERE a.id = $1 AND a.verdict_applied_at IS NOT NULL",
            alert["id"])

    assert await wait_for(learned, timeout=60) == VERDICT_WIDEN
    # Replayed: applied once (no event, the models unchanged); another verdict: 409 naming the field.
    n_events = len(events)
    for path in ("acknowledge", "resolve"):
        r = await http.post(f"{url}/{path}", headers=op, json={"verdict": "false_alarm"})
        if path == "acknowledge":
            assert r.status_code == 200 and r.json()["data"]["state"] == "acknowledged"
    r = await http.post(f"{url}/resolve", headers=op, json={"verdict": "real"})
    assert r.status_code == 409 and error_fields(r) == ["verdict"], r.text
    detail = (await http.get(url, headers=auth(tenant, "viewer"))).json()["data"]
    assert [e["kind"] for e in detail["events"]][n_events:] == ["resolved"]  # the replayed resolve closed it
    assert detail["verdict"] == "false_alarm"
    # The models' next reload (what a verdict's ctl message starts) finds nothing new to learn.
    tenant_actor = await stack.supervisor.tenant.remote(tenant)
    await (await tenant_actor.equipment_actor.remote("MTR-1")).reload.remote()
    assert await learned() == VERDICT_WIDEN
    # The next anomaly of the equipment names this one and its verdict.
    await send([normal(i) for i in range(40)] + [1500.0] * 4, 100)

    async def second() -> Any:
        row = await anomaly()
        return row if row is not None and row["id"] != alert["id"] else None

    new = await wait_for(second, timeout=60)
    similar = json.loads(new["details"])["similar"]
    assert (similar["alert_id"], similar["verdict"]) == (alert["id"], "false_alarm")
    # A verdict on a resolved alert that has none is recorded (event "verdict"), once.
    r = await http.post(f"/v1/alerts/{new['id']}/resolve", headers=op)
    assert r.status_code == 200
    for _ in range(2):
        r = await http.post(f"/v1/alerts/{new['id']}/resolve", headers=op, json={"verdict": "real"})
        assert r.status_code == 200 and r.json()["data"]["verdict"] == "real"
    kinds = [e["kind"] for e in (await http.get(f"/v1/alerts/{new['id']}", headers=op)).json()["data"]["events"]]
    assert kinds == ["opened", "resolved", "verdict"]
