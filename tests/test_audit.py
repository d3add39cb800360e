"""The audit trail: every mutation leaves a row (who, what, before/after, from where, which request),
admins can search it, and the database itself keeps it append-only."""

import json
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from tests.helpers import auth, create_tenant, new_tenant_id, now_utc
from tests.test_identity import (
    PW,
    add_user,
    bearer,
    error,
    no_login_throttle,  # noqa: F401  (autouse here too)
    user_id_of,
)


async def audit_row(db_conn: Any, tenant: str, resp: Any) -> dict[str, Any]:
    """The single audit row the request behind `resp` wrote (found by its request id)."""
    rid = resp.headers["x-request-id"]
    rows = await db_conn.fetch("SELECT * FROM audit_log WHERE tenant_id = $1 AND request_id = $2", tenant, rid)
    assert len(rows) == 1, (resp.request.url, rid, rows)
    row = dict(rows[0])
    for column in ("old_values", "new_values"):  # jsonb arrives as text without a codec
        if isinstance(row[column], str):
            row[column] = json.loads(row[column])
    return row


def rid() -> dict[str, str]:
    return {"X-Request-ID": f"test-{uuid.uuid4().hex}"}


async def test_each_mutation_is_audited(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("audit")
    await create_tenant(stack, tenant, [("M-1", "meter")])
    admin_h = auth(tenant, "admin")
    admin_id = await user_id_of(http, admin_h)

    def check(row: dict[str, Any], action: str, entity_type: str, entity_id: str | None, *,
              actor: str = admin_id, actor_type: str = "user") -> None:
        assert (row["action"], row["entity_type"]) == (action, entity_type), dict(row)
        if entity_id is not None:
            assert row["entity_id"] == entity_id, dict(row)
        assert (row["actor_type"], row["actor_id"]) == (actor_type, actor), dict(row)
        assert row["ip"] == "127.0.0.1", dict(row)
        assert row["request_id"], dict(row)

    # The request id is the one the caller sent (Serve echoes it), so support can find the row.
    headers = rid()
    resp = await http.post("/v1/users", json={"email": f"ann@{tenant}.example", "role": "operator",
                                              "password": PW}, headers={**admin_h, **headers})
    assert resp.status_code == 201, resp.text
    assert resp.headers["x-request-id"] == headers["X-Request-ID"]
    ann = resp.json()["data"]["user"]["id"]
    row = await audit_row(db_conn, tenant, resp)
    check(row, "create", "user", ann)
    assert row["request_id"] == headers["X-Request-ID"]
    assert row["new_values"]["email"] == f"ann@{tenant}.example" and row["new_values"]["role"] == "operator"
    assert "password_hash" not in row["new_values"] and PW not in str(row["new_values"])

    resp = await http.post("/v1/users", json={"email": f"bob@{tenant}.example", "role": "viewer"},
                           headers={**admin_h, **rid()})
    assert resp.status_code == 201, resp.text
    bob = resp.json()["data"]["user"]["id"]
    row = await audit_row(db_conn, tenant, resp)
    check(row, "invite", "user", bob)
    assert row["new_values"]["status"] == "invited"

    resp = await http.patch(f"/v1/users/{ann}/role", json={"role": "viewer"}, headers={**admin_h, **rid()})
    assert resp.status_code == 200, resp.text
    row = await audit_row(db_conn, tenant, resp)
    check(row, "change_role", "user", ann)
    assert (row["old_values"]["role"], row["new_values"]["role"]) == ("operator", "viewer")

    resp = await http.post(f"/v1/users/{ann}/deactivate", headers={**admin_h, **rid()})
    assert resp.status_code == 200, resp.text
    row = await audit_row(db_conn, tenant, resp)
    check(row, "deactivate", "user", ann)
    assert (row["old_values"]["status"], row["new_values"]["status"]) == ("active", "deactivated")

    resp = await http.delete(f"/v1/users/{bob}", headers={**admin_h, **rid()})
    assert resp.status_code == 204, resp.text
    row = await audit_row(db_conn, tenant, resp)
    check(row, "delete", "user", bob)
    assert row["old_values"]["deleted_at"] is None and row["new_values"]["deleted_at"] is not None

    resp = await http.post("/v1/api-keys", json={"name": "gw", "scopes": ["telemetry:write"]},
                           headers={**admin_h, **rid()})
    assert resp.status_code == 201, resp.text
    key, key_id = resp.json()["data"]["key"], resp.json()["data"]["id"]
    row = await audit_row(db_conn, tenant, resp)
    check(row, "create", "api_key", key_id)
    assert row["new_values"]["scopes"] == ["telemetry:write"]
    assert key not in str(dict(row)) and key.split("_", 2)[2] not in str(dict(row))

    resp = await http.delete(f"/v1/api-keys/{key_id}", headers={**admin_h, **rid()})
    assert resp.status_code == 200, resp.text
    row = await audit_row(db_conn, tenant, resp)
    check(row, "revoke", "api_key", key_id)
    assert row["old_values"]["revoked_at"] is None and row["new_values"]["revoked_at"] is not None
    assert "key_hash" not in str(dict(row["new_values"]))

    resp = await http.patch("/v1/tenant/settings", json={"timezone": "America/Chicago", "units": "metric"},
                            headers={**admin_h, **rid()})
    assert resp.status_code == 200, resp.text
    row = await audit_row(db_conn, tenant, resp)
    check(row, "update", "tenant", tenant)
    assert (row["old_values"]["timezone"], row["new_values"]["timezone"]) == ("UTC", "America/Chicago")
    assert (row["old_values"]["units"], row["new_values"]["units"]) == ("imperial", "metric")

    email, carl = await add_user(stack, tenant, "operator")
    resp = await http.post("/v1/auth/login", json={"tenant": tenant, "email": email, "password": PW},
                           headers=rid())
    assert resp.status_code == 200, resp.text
    row = await audit_row(db_conn, tenant, resp)
    check(row, "login", "session", None, actor=carl)
    failed = await http.post("/v1/auth/login", json={"tenant": tenant, "email": email, "password": "wrong one!!"},
                             headers=rid())
    assert failed.status_code == 401
    carl_h = bearer(resp.json()["data"]["access_token"])

    alert_id = await db_conn.fetchval(
        "INSERT INTO alerts (tenant_id, equipment_id, rule_id, state, severity, message, opened_at)"
        " VALUES ($1, 'M-1', 'audit_test', 'open', 'warning', 'test alert', now()) RETURNING id", tenant)
    resp = await http.post(f"/v1/alerts/{alert_id}/acknowledge", json={"comment": "on it"},
                           headers={**carl_h, **rid()})
    assert resp.status_code == 200, resp.text
    row = await audit_row(db_conn, tenant, resp)
    check(row, "acknowledge", "alert", str(alert_id), actor=carl)
    assert row["new_values"] == {"state": "acknowledged", "comment": "on it"}

    resp = await http.post("/v1/auth/logout", headers={**carl_h, **rid()})
    assert resp.status_code == 204, resp.text
    check(await audit_row(db_conn, tenant, resp), "logout", "session", None, actor=carl)

    # Reads write nothing.
    before = await db_conn.fetchval("SELECT count(*) FROM audit_log WHERE tenant_id = $1", tenant)
    for path in ("/v1/users", "/v1/api-keys", "/v1/tenant/settings", "/v1/audit-logs"):
        assert (await http.get(path, headers=admin_h)).status_code == 200
    assert await db_conn.fetchval("SELECT count(*) FROM audit_log WHERE tenant_id = $1", tenant) == before


async def test_audit_log_api_filters_and_pages(stack: Any, http: Any, db_conn: Any) -> None:
    tenant, other = new_tenant_id("auditapi"), new_tenant_id("auditoth")
    await create_tenant(stack, tenant, [])
    await create_tenant(stack, other, [])
    admin_h = auth(tenant, "admin")
    admin_id = await user_id_of(http, admin_h)
    await http.post("/v1/users", json={"email": f"zed@{other}.example", "role": "viewer"},
                    headers=auth(other, "admin"))

    # The bounds of the time filters are read from the database's clock, which stamps the rows: a request that
    # starts after the bound is read is audited after it.
    start = await db_conn.fetchval("SELECT clock_timestamp()")
    invited = []
    for name in ("a", "b", "c"):
        resp = await http.post("/v1/users", json={"email": f"{name}@{tenant}.example", "role": "viewer"},
                               headers=admin_h)
        assert resp.status_code == 201, resp.text
        invited.append(resp.json()["data"]["user"]["id"])
    middle = await db_conn.fetchval("SELECT clock_timestamp()")
    resp = await http.patch(f"/v1/users/{invited[0]}/role", json={"role": "operator"}, headers=admin_h)
    assert resp.status_code == 200, resp.text
    resp = await http.patch("/v1/tenant/settings", json={"units": "metric"}, headers=admin_h)
    assert resp.status_code == 200, resp.text

    async def page(**params: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        resp = await http.get("/v1/audit-logs", params=params, headers=admin_h)
        assert resp.status_code == 200, (params, resp.text)
        return resp.json()["data"], resp.json()["meta"]["pagination"]

    rows, pagination = await page(action="invite", entity_type="user", limit=2)
    assert pagination["total"] == 3 and len(rows) == 2 and pagination["limit"] == 2
    rows2, pagination2 = await page(action="invite", entity_type="user", limit=2, page=2)
    assert pagination2["total"] == 3 and len(rows2) == 1 and pagination2["page"] == 2
    assert {r["entity_id"] for r in rows + rows2} == set(invited)
    assert all(r["actor_id"] == admin_id and r["ip"] and r["request_id"] for r in rows + rows2)
    assert rows[0]["at"] >= rows[1]["at"] >= rows2[0]["at"]  # newest first

    later, _ = await page(**{"from": middle.isoformat()})
    assert [r["action"] for r in later] == ["update", "change_role"]
    earlier, p = await page(**{"from": start.isoformat(), "to": middle.isoformat()})
    assert [r["action"] for r in earlier] == ["invite"] * 3 and p["total"] == 3
    tenant_rows, p = await page(entity_type="tenant")
    assert p["total"] == 1 and tenant_rows[0]["new_values"]["units"] == "metric"
    by_admin, p = await page(user=admin_id, **{"from": start.isoformat()})
    assert p["total"] == 5 and {r["actor_id"] for r in by_admin} == {admin_id}
    nobody, p = await page(user=str(uuid.uuid4()))
    assert nobody == [] and p["total"] == 0
    everything, p = await page(limit=100)
    assert all("zed@" not in str(r) for r in everything)  # the other tenant's rows stay there

    naive = await http.get("/v1/audit-logs", params={"from": "2026-01-01T00:00:00"}, headers=admin_h)
    assert naive.status_code == 422 and error(naive)["details"][0]["field"] == "from"
    for role in ("manager", "operator", "viewer"):
        resp = await http.get("/v1/audit-logs", headers=auth(tenant, role))
        assert resp.status_code == 403, (role, resp.text)
        assert error(resp)["code"] == "FORBIDDEN"
    assert (await http.get("/v1/audit-logs")).status_code == 401


async def _refused(conn: asyncpg.Connection, sql: str, *args: Any) -> asyncpg.PostgresError:
    """Run `sql` in a transaction that is rolled back whatever happens; return the error it raised."""
    tx = conn.transaction()
    await tx.start()
    try:
        with pytest.raises(asyncpg.PostgresError) as caught:
            await conn.execute(sql, *args)
        return caught.value
    finally:
        await tx.rollback()


async def test_database_keeps_audit_log_append_only(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("auditdb")
    await create_tenant(stack, tenant, [])
    resp = await http.patch("/v1/tenant/settings", json={"units": "metric"}, headers=auth(tenant, "admin"))
    assert resp.status_code == 200, resp.text
    row = await audit_row(db_conn, tenant, resp)
    before = await db_conn.fetchval("SELECT count(*) FROM audit_log")

    app = await asyncpg.connect(stack.settings.resolved_app_database_url())
    try:
        await app.execute("SELECT set_config('wellpulse.tenant_id', $1, false)", tenant)
        assert await app.fetchval("SELECT count(*) FROM audit_log WHERE id = $1", row["id"]) == 1
        for sql in ("UPDATE audit_log SET action = 'tampered' WHERE id = $1",
                    "DELETE FROM audit_log WHERE id = $1"):
            exc = await _refused(app, sql, row["id"])
            assert isinstance(exc, asyncpg.InsufficientPrivilegeError), (sql, type(exc), exc)
            assert "permission denied for table audit_log" in str(exc), exc
        exc = await _refused(app, "TRUNCATE audit_log")
        assert isinstance(exc, asyncpg.InsufficientPrivilegeError), (type(exc), exc)
        # Appending is what the app does, and only within its own tenant.
        exc = await _refused(app, "INSERT INTO audit_log (tenant_id, actor_type, actor_id, action, entity_type)"
                                  " VALUES ($1, 'system', 'x', 'forged', 'user')", new_tenant_id("else"))
        assert isinstance(exc, asyncpg.InsufficientPrivilegeError | asyncpg.ForeignKeyViolationError), exc
    finally:
        await app.close()

    for sql, op in (("UPDATE audit_log SET action = 'tampered' WHERE id = $1", "UPDATE"),
                    ("DELETE FROM audit_log WHERE id = $1", "DELETE")):
        exc = await _refused(db_conn, sql, row["id"])
        assert isinstance(exc, asyncpg.InsufficientPrivilegeError), (sql, type(exc), exc)
        assert f"audit_log is append-only: {op} refused" in str(exc), exc
    exc = await _refused(db_conn, "TRUNCATE audit_log")
    assert isinstance(exc, asyncpg.InsufficientPrivilegeError), (type(exc), exc)
    assert "audit_log is append-only: TRUNCATE refused" in str(exc), exc

    after = await db_conn.fetchrow("SELECT * FROM audit_log WHERE id = $1", row["id"])
    assert after["action"] == row["action"] == "update" and after["at"] == row["at"]
    assert json.loads(after["new_values"]) == row["new_values"]
    assert await db_conn.fetchval("SELECT count(*) FROM audit_log") >= before
    assert timedelta(0) <= now_utc() - after["at"] < timedelta(minutes=5)
