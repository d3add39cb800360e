"""The services in serve/ called as their routes call them, against PostgreSQL and NATS alone (fast tier).

No Ray, no Serve: `services` is the `serve.services.Services` a replica holds. What reaches the actors is the
``ctl.<tenant>`` message a service publishes after its commit; these tests read it off NATS. The routes' own
parsing, auth and status codes are tested over HTTP in the stack's tests (test_api_*, test_identity, test_sync).
"""

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schema.alerts import SilenceCreate
from schema.assets import EquipmentCreate, WellCreate, WellUpdate
from schema.errors import IdempotencyKeyReused, NotFound
from schema.identity import ApiKeyCreate, LoginRequest, TenantSettingsUpdate, UserCreate
from schema.subjects import ctl_subject
from schema.sync import parse_changes
from serve import alerts as alert_service
from serve import assets, identity, predictions
from serve import silences as silence_service
from serve import sync as sync_service
from serve.auth import Principal, Role
from serve.errors import ApiError
from store import alerts as alert_store
from store import sync as sync_store
from store.audit import AuditContext
from store.listing import ListQuery
from tests.helpers import seeded_tenant, wait_for

pytestmark = pytest.mark.fast


@pytest.fixture
async def tenant(services: Any) -> str:
    return await seeded_tenant(services.settings.database_url, "svc", [("PJ-1", "pump_jack")])


@pytest.fixture
def audit(tenant: str) -> AuditContext:
    return AuditContext(tenant, "user", str(uuid.uuid4()), "127.0.0.1", "req-1")


@pytest.fixture
async def ctl(services: Any, tenant: str) -> AsyncIterator[list[dict[str, Any]]]:
    """The control messages the tenant's actors would get, as they arrive."""
    received: list[dict[str, Any]] = []

    async def on_message(msg: Any) -> None:
        received.append(json.loads(msg.data))

    sub = await services.nc.subscribe(ctl_subject(tenant), cb=on_message)
    await services.nc.flush()
    try:
        yield received
    finally:
        await sub.unsubscribe()


async def _audited(services: Any, tenant: str, entity_type: str) -> list[str]:
    async with services.tenant_tx(tenant) as conn:
        return [r["action"] for r in await conn.fetch(
            "SELECT action FROM audit_log WHERE tenant_id = $1 AND entity_type = $2 ORDER BY id", tenant, entity_type)]


async def _told(ctl: list[dict[str, Any]], reload: str) -> dict[str, Any]:
    async def seen() -> dict[str, Any] | None:
        return next((m for m in ctl if m.get("reload") == reload), None)

    return await wait_for(seen, timeout=10, interval=0.02)


# ---------------------------------------------------------------------- serve.assets


async def test_wells_and_equipment(services: Any, tenant: str, audit: AuditContext, ctl: list) -> None:
    well = await assets.create_well(services, audit, WellCreate(id="W-1", api_number="4250120130", name="Uni 7"))
    assert well["id"] == "W-1" and (await assets.get_well(services, tenant, "W-1"))["name"] == "Uni 7"
    with pytest.raises(ApiError) as taken:
        await assets.create_well(services, audit, WellCreate(id="W-2", api_number="4250120130", name="dup"))
    assert taken.value.status == 409
    assert (await assets.update_well(services, audit, "W-1", WellUpdate(name="Uni 7-12H")))["name"] == "Uni 7-12H"
    equipment = await assets.create_equipment(services, audit, EquipmentCreate(id="PJ-2", type="pump_jack",
                                                                               well_ids=["W-1"]))
    assert equipment["id"] == "PJ-2"
    assert (await _told(ctl, "registry"))["reload"] == "registry"
    with pytest.raises(ApiError) as assigned:
        await assets.delete_well(services, audit, "W-1", detach=False)
    assert assigned.value.status == 409 and assigned.value.details[0]["field"] == "equipment_ids"
    await assets.delete_well(services, audit, "W-1", detach=True)
    await assets.delete_equipment(services, audit, "PJ-2")
    with pytest.raises(ApiError) as gone:
        await assets.get_well(services, tenant, "W-1")
    assert gone.value.status == 404
    assert await _audited(services, tenant, "well") == ["create", "update", "delete"]
    assert await _audited(services, tenant, "equipment") == ["create", "delete"]


# ---------------------------------------------------------------------- serve.identity


async def test_sign_in_refresh_and_reuse(services: Any, tenant: str, audit: AuditContext) -> None:
    user, _ = await identity.create_user(services, audit, UserCreate(email=f"ann@{tenant}.example", role="operator",
                                                                     password="correct horse battery staple"))
    login = LoginRequest(tenant=tenant, email=f"ann@{tenant}.example", password="correct horse battery staple")
    tokens = await identity.login(services, login, ip="10.0.0.1", user_agent="test", request_id=None)
    assert tokens.session_id and tokens.refresh_token
    with pytest.raises(ApiError) as wrong:
        await identity.login(services, login.model_copy(update={"password": "wrong horse battery staple"}),
                             ip="10.0.0.1", user_agent="test", request_id=None)
    assert wrong.value.status == 401
    rotated = await identity.refresh(services, tokens.refresh_token)
    assert rotated.refresh_token != tokens.refresh_token
    with pytest.raises(ApiError):  # a spent refresh token ends the whole session
        await identity.refresh(services, tokens.refresh_token)
    with pytest.raises(ApiError):
        await identity.refresh(services, rotated.refresh_token)
    assert "login" in await _audited(services, tenant, "session")
    assert (await identity.get_user(services, tenant, str(user["id"])))["email"] == f"ann@{tenant}.example"


async def test_api_keys_and_tenant_settings(services: Any, tenant: str, audit: AuditContext, ctl: list) -> None:
    scada = ApiKeyCreate(name="scada", scopes=["telemetry:write"])
    created, key = await identity.create_api_key(services, audit, scada)
    assert key and created["scopes"] == ["telemetry:write"]
    with pytest.raises(ApiError) as forbidden:
        await identity.create_api_key(services, audit, ApiKeyCreate(name="x", scopes=["users:write"]))
    assert forbidden.value.status == 422
    assert (await identity.revoke_api_key(services, audit, str(created["id"])))["revoked_at"] is not None
    assert (await identity.get_tenant_settings(services, tenant)).escalate_after_minutes is None
    updated = await identity.update_tenant_settings(services, audit, TenantSettingsUpdate(
        escalate_after_minutes=30, anomaly_sensitivity="high"))
    assert updated.escalate_after_minutes == 30
    assert (await _told(ctl, "registry"))["reload"] == "registry"  # the models follow the new sensitivity


# ---------------------------------------------------------------------- serve.predictions


async def test_predictions_reset_and_failure_report(services: Any, tenant: str, audit: AuditContext,
                                                    ctl: list) -> None:
    assert await predictions.get_predictions(services, tenant, "PJ-1") == {"equipment_id": "PJ-1",
                                                                           "equipment_type": "pump_jack"}
    with pytest.raises(ApiError) as unknown:
        await predictions.get_predictions(services, tenant, "PJ-404")
    assert unknown.value.status == 404
    assert await predictions.reset_model(services, audit, "PJ-1") == {"equipment_id": "PJ-1",
                                                                      "checkpoint_deleted": False}
    assert (await _told(ctl, "model_reset"))["equipment_id"] == "PJ-1"
    await predictions.report_failure(services, tenant, "PJ-1", datetime(2026, 11, 1, tzinfo=UTC))
    assert (await _told(ctl, "failure"))["failed_at"] == "2026-11-01T00:00:00+00:00"
    rows, total = await predictions.list_models(services, tenant, ListQuery())
    assert total == len(rows) == 0  # nothing learned yet: no actor ran
    assert await _audited(services, tenant, "model") == ["reset"]


# ---------------------------------------------------------------------- serve.sync


def _note(text: str) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "entity": "note", "op": "create", "id": str(uuid.uuid4()),
            "version": 0, "client_ts": "2026-11-22T06:00:00Z", "data": {"equipment_id": "PJ-1", "text": text}}


async def test_a_chunk_applies_once_per_key(services: Any, tenant: str, audit: AuditContext) -> None:
    ctx = sync_store.SyncContext(tenant_id=tenant, device_id="tablet-1", actor=f"user:{audit.actor_id}", audit=audit)
    changes, errors = parse_changes([_note("stuffing box leaking")])
    assert errors == []

    def apply(conn: Any) -> Any:
        return sync_store.apply_chunk(conn, ctx, changes, [], cursor=0, pull=True, pull_limit=100)

    body_hash = hashlib.sha256(b"chunk-1").hexdigest()
    first = await sync_service.run_chunk(services, ctx, key="key:1", body_hash=body_hash, apply=apply)
    again = await sync_service.run_chunk(services, ctx, key="key:1", body_hash=body_hash, apply=apply)
    assert not first.replayed and again.replayed and again.json == first.json
    assert [a["outcome"] for a in first.data["applied"]] == ["applied"]
    with pytest.raises(IdempotencyKeyReused):
        await sync_service.run_chunk(services, ctx, key="key:1", body_hash="another body", apply=apply)
    async with services.tenant_tx(tenant) as conn:
        assert await conn.fetchval("SELECT count(*) FROM field_notes WHERE tenant_id = $1", tenant) == 1


# ---------------------------------------------------------------------- serve.alerts, serve.silences


async def test_alert_actions_and_silences(services: Any, tenant: str, audit: AuditContext, ctl: list) -> None:
    principal = Principal(tenant, audit.actor_id, role=Role.OPERATOR, email=f"op@{tenant}.example")
    opened = alert_store.AlarmChange("opened", "PJ-1", "r1", "warning", datetime.now(UTC), "p high", {})
    async with services.tenant_tx(tenant) as conn:
        (event,) = await alert_store.persist_changes(conn, tenant, [opened])
    alert_id = event["alert_id"]
    acked = await alert_service.acknowledge(services, principal, audit, alert_id, comment="on it",
                                            verdict="false_alarm")
    assert acked["state"] == "acknowledged" and acked["acknowledged_by"] == principal.actor
    assert (await _told(ctl, "verdict"))["equipment_id"] == "PJ-1"  # the models learn the verdict
    assert (await alert_service.shelve(services, principal, audit, alert_id, minutes=30, reason="known")
            )["state"] == "shelved"
    assert (await alert_service.unshelve(services, principal, audit, alert_id))["state"] == "open"
    assert (await alert_service.resolve(services, principal, audit, alert_id, comment=None, verdict=None)
            )["state"] == "resolved"
    with pytest.raises(NotFound):
        await alert_service.acknowledge(services, principal, audit, 999_999_999, comment=None, verdict=None)
    assert await _audited(services, tenant, "alert") == ["acknowledge", "shelve", "unshelve", "resolve"]

    silence = await silence_service.create_silence(services, principal, audit, SilenceCreate(
        equipment_id="PJ-1", ends_at=datetime.now(UTC) + timedelta(hours=1), reason="workover"))
    assert silence["state"] == "active"
    assert (await _told(ctl, "silences"))["reload"] == "silences"  # the actors release what it holds when it ends
    ended = await silence_service.end_silence(services, principal, audit, silence["id"])
    assert ended["state"] == "cancelled"
    assert (await silence_service.end_silence(services, principal, audit, silence["id"]))["state"] == "cancelled"
    with pytest.raises(NotFound):
        await silence_service.get_silence(services, tenant, uuid.uuid4())
    assert await _audited(services, tenant, "silence") == ["create", "cancel"]
