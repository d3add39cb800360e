"""Field events: stored append-only, projected, published on field.<tenant>.<equipment> after the commit, and
acted on by the running actors (maintenance silences an equipment's alerts, finishing it resumes them; a
finding opens the inspection alert; a failure is published as a label)."""

import json
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import nats
import pytest

from schema.field_events import FieldEventBatch
from store.db import TENANT_SETTING
from tests.helpers import auth, create_tenant, new_tenant_id, now_utc, publish, settled, snapshot, wait_for
from tests.test_sync import change, post_sync, sync_tenant, uid

TUBING_RULE = {"id": "tubing_high", "kind": "threshold",
               "params": {"sensor": "tubing_psi", "high": 1000.0, "for_seconds": 0, "severity": "critical"}}


def event(type_: str, equipment: str = "PJ-1", **data: Any) -> dict[str, Any]:
    return {"event_id": uid(), "type": type_, "equipment_id": equipment,
            "occurred_at": (now_utc() - timedelta(seconds=30)).isoformat(), "data": data}


class Listener:
    """Core NATS subscriptions to a tenant's field and alert subjects (JetStream publishes reach them too);
    ``messages`` holds each field event and each alert event with its subject."""

    def __init__(self, url: str, tenant: str) -> None:
        self.url, self.tenant = url, tenant
        self.messages: list[tuple[str, dict[str, Any]]] = []

    async def __aenter__(self) -> "Listener":
        self.nc = await nats.connect(self.url)

        async def got(msg: Any) -> None:
            body = json.loads(msg.data)
            if msg.subject.startswith("field."):
                batch = FieldEventBatch.model_validate(body)  # the published shape is the documented one
                assert batch.tenant_id == self.tenant and msg.subject.endswith(f".{batch.equipment_id}")
                self.messages.extend((msg.subject, event) for event in body["events"])
            else:
                self.messages.append((msg.subject, body))

        for subject in (f"field.{self.tenant}.>", f"alerts.{self.tenant}.>"):
            await self.nc.subscribe(subject, cb=got)
        await self.nc.flush()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.nc.close()

    async def wait(self, predicate: Any, timeout: float = 30.0) -> tuple[str, dict[str, Any]]:
        async def found() -> Any:
            return next((m for m in self.messages if predicate(*m)), None)

        return await wait_for(found, timeout=timeout)


@pytest.fixture(scope="module")
async def tenant(stack: Any) -> str:
    return await sync_tenant(stack, "field")


async def test_field_events_are_append_only_in_the_database(stack: Any, http: Any, tenant: str) -> None:
    r = await http.post("/v1/field-events", headers=auth(tenant), json=event("failure_reported", description="x"))
    assert r.status_code == 201, r.text
    conn = await asyncpg.connect(stack.settings.resolved_app_database_url())
    try:
        await conn.execute("SELECT set_config($1, $2, false)", TENANT_SETTING, tenant)
        assert await conn.fetchval("SELECT count(*) FROM field_events") >= 1
        for statement in ("UPDATE field_events SET outcome = 'x'", "DELETE FROM field_events",
                          "TRUNCATE field_events"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
    finally:
        await conn.close()
    owner = await asyncpg.connect(stack.settings.database_url)
    try:  # not even the owner: the trigger refuses
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await owner.execute("DELETE FROM field_events WHERE tenant_id = $1", tenant)
    finally:
        await owner.close()


async def test_one_event_is_stored_projected_and_published(stack: Any, http: Any, db_conn: Any, tenant: str) -> None:
    h = auth(tenant)
    job = uid()
    started = event("maintenance_started", "PJ-2", maintenance_id=job, kind="corrective",
                    description="replace belt")
    async with Listener(stack.settings.nats_url, tenant) as listener:
        r = await http.post("/v1/field-events", headers=h, json=started)
        assert r.status_code == 201, r.text
        stored = r.json()["data"]
        assert stored["record_id"] == job and stored["effects"] == ["maintenance_started"]
        assert not stored["duplicate"]
        subject, message = await listener.wait(lambda s, m: s.startswith("field.") and
                                               m["event_id"] == started["event_id"])
        assert subject == f"field.{tenant}.PJ-2"
        assert message["type"] == "maintenance_started" and message["effects"] == ["maintenance_started"]
    row = await db_conn.fetchrow("SELECT equipment_id, kind, description, ended_at, source FROM maintenance_records"
                                 " WHERE tenant_id = $1 AND id = $2::uuid", tenant, job)
    assert dict(row) == {"equipment_id": "PJ-2", "kind": "corrective", "description": "replace belt",
                         "ended_at": None, "source": "sync"}
    assert await db_conn.fetchval("SELECT status FROM equipment WHERE tenant_id = $1 AND id = 'PJ-2'",
                                  tenant) == "maintenance"
    # The same event again: its first answer, nothing new. Its id with other content: 409.
    again = await http.post("/v1/field-events", headers=h, json=started)
    assert again.status_code == 200 and again.json()["data"]["duplicate"]
    assert again.json()["data"]["record_id"] == job
    clash = await http.post("/v1/field-events", headers=h, json={**started, "equipment_id": "PJ-1"})
    assert clash.status_code == 409 and clash.json()["error"]["details"][0]["field"] == "event_id"
    assert await db_conn.fetchval("SELECT count(*) FROM field_events WHERE tenant_id = $1 AND event_id = $2::uuid",
                                  tenant, started["event_id"]) == 1
    # Finishing it restores the status.
    finished = event("maintenance_finished", "PJ-2", maintenance_id=job)
    r = await http.post("/v1/field-events", headers=h, json=finished)
    assert r.status_code == 201 and r.json()["data"]["effects"] == ["maintenance_finished"], r.text
    assert await db_conn.fetchval("SELECT status FROM equipment WHERE tenant_id = $1 AND id = 'PJ-2'",
                                  tenant) == "operational"
    # Bad events: 422 naming the field, 404 for equipment the tenant does not have.
    bad = await http.post("/v1/field-events", headers=h, json=event("maintenance_started", kind="nap"))
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "data.kind"
    unknown = await http.post("/v1/field-events", headers=h, json=event("failure_reported", "NOPE"))
    assert unknown.status_code == 404 and unknown.json()["error"]["details"][0]["field"] == "equipment_id"
    viewer = await http.post("/v1/field-events", headers=auth(tenant, "viewer"), json=event("failure_reported"))
    assert viewer.status_code == 403


async def test_a_finding_opens_the_inspection_alert(stack: Any, http: Any, db_conn: Any, tenant: str) -> None:
    async with Listener(stack.settings.nats_url, tenant) as listener:
        warn = event("inspection_finding", "PJ-1", severity="warning", description="guard loose")
        assert (await http.post("/v1/field-events", headers=auth(tenant), json=warn)).status_code == 201
        _, opened = await listener.wait(lambda s, m: s == f"alerts.{tenant}.PJ-1" and m["rule_id"] == "inspection")
        assert opened["kind"] == "opened" and opened["severity"] == "warning"
        # A synced inspection with a critical finding raises it.
        rid = uid()
        await post_sync(http, auth(tenant), "tablet-i", [change("inspection", "create", rid, {
            "equipment_id": "PJ-1", "inspected_at": now_utc().isoformat(),
            "findings": [{"description": "casing weeping", "severity": "critical"}]})])
        _, raised = await listener.wait(lambda s, m: m.get("rule_id") == "inspection" and m["kind"] == "updated")
        assert raised["severity"] == "critical"
    alert = await db_conn.fetchrow("SELECT state, severity, details FROM alerts WHERE tenant_id = $1"
                                   " AND equipment_id = 'PJ-1' AND rule_id = 'inspection'", tenant)
    assert alert["state"] == "open" and alert["severity"] == "critical"
    effects = await db_conn.fetchval("SELECT effects FROM field_events WHERE tenant_id = $1 AND record_id = $2::uuid",
                                     tenant, rid)
    assert "inspection_finding" in json.loads(effects)


async def test_a_reported_failure_is_published_and_labels_the_model(stack: Any, http: Any, tenant: str) -> None:
    failed = event("failure_reported", "PJ-1", description="rod parted", failure_mode="rod_part")

    async def labelled() -> Any:
        r = await http.get("/v1/equipment/PJ-1/predictions", headers=auth(tenant, "viewer"))
        failure = (r.json().get("data") or {}).get("failure") or {}
        at = failure.get("last_failure_at")
        return failure if at and datetime.fromisoformat(at) == datetime.fromisoformat(failed["occurred_at"]) else None

    async with Listener(stack.settings.nats_url, tenant) as listener:
        r = await http.post("/v1/field-events", headers=auth(tenant), json=failed)
        assert r.status_code == 201 and r.json()["data"]["effects"] == ["failure_reported"], r.text
        _, message = await listener.wait(lambda s, m: m.get("event_id") == failed["event_id"])
        assert message["effects"] == ["failure_reported"] and message["data"]["failure_mode"] == "rod_part"
        # The equipment's actor learned it (serve.predictions.report_failure): its failure model counts it.
        failure = await wait_for(labelled, timeout=60)
        assert failure["failures_seen"] >= 1
        # A failure repair synced from a device says the same on the stream (the actors read such jobs
        # from the table themselves).
        hours_ago = [(now_utc() - timedelta(hours=h)).isoformat() for h in (2, 1)]
        await post_sync(http, auth(tenant), "tablet-f", [change("maintenance_record", "create", uid(), {
            "equipment_id": "PJ-1", "kind": "failure_repair", "started_at": hours_ago[0], "ended_at": hours_ago[1]})])
        _, repair = await listener.wait(lambda s, m: m.get("type") == "maintenance_record.create"
                                        and "failure_reported" in m["effects"])
        assert repair["equipment_id"] == "PJ-1"


async def _alerts(db_conn: Any, tenant: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await db_conn.fetch(
        "SELECT id, state, severity FROM alerts WHERE tenant_id = $1 AND equipment_id = 'PJ-1'"
        " AND rule_id = 'tubing_high'", tenant)]


async def test_maintenance_from_a_device_silences_the_equipment_and_finishing_resumes(
        stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("silence")
    await create_tenant(stack, tenant, [("PJ-1", "pump_jack")], rules=[TUBING_RULE])
    h = auth(tenant)
    job = uid()
    start = now_utc() - timedelta(minutes=5)
    out = await post_sync(http, h, "tablet-m", [change("maintenance_record", "create", job, {
        "equipment_id": "PJ-1", "kind": "corrective", "started_at": start.isoformat()})])
    assert out["data"]["applied"][0]["outcome"] == "applied"
    # Tubing pressure far above the rule while the crew works: the actor's model sees it, nobody is paged.
    base = now_utc() - timedelta(seconds=90)
    await publish(stack.settings.nats_url, tenant, [
        ("PJ-1", snapshot("PJ-1", base + timedelta(seconds=i), {"tubing_psi": 4000.0})) for i in range(5)])

    async def held_back() -> bool:
        return bool(await db_conn.fetchval("SELECT count(*) FROM suppressed_alerts WHERE tenant_id = $1"
                                           " AND equipment_id = 'PJ-1' AND rule_id = 'tubing_high'", tenant))

    await wait_for(held_back, timeout=60)
    await settled(stack, tenant)
    assert await _alerts(db_conn, tenant) == [], "silenced while the maintenance is in progress"
    # The device finishes the job: the held-back alert opens, in the running actors.
    finish = change("maintenance_record", "update", job, {"ended_at": now_utc().isoformat()}, version=1, at=10)
    done = await post_sync(http, h, "tablet-m", [finish])
    assert done["data"]["applied"][0]["outcome"] == "applied"

    async def resumed() -> list[dict[str, Any]]:
        return [a for a in await _alerts(db_conn, tenant) if a["state"] == "open"]

    opened = await wait_for(resumed, timeout=60)
    assert opened[0]["severity"] == "critical"
    assert await db_conn.fetchval("SELECT status FROM equipment WHERE tenant_id = $1 AND id = 'PJ-1'",
                                  tenant) == "operational"
