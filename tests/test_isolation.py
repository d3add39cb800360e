"""Cross-tenant isolation: tenant A's credentials against every tenant B resource, and RLS on its own.

Over HTTP and the WebSocket, A's admin token and A's API key (every grantable scope) only ever get
404 or 403 for B's ids and never a row of B in a list. In the database, raw SQL that omits the
tenant filter, run as the application's role with A set, sees no row of B: row-level security
holds even where the application's own ``WHERE tenant_id = $1`` is missing.
"""

import asyncio
import json
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import websockets

from serve.auth import API_KEY_SCOPES, mint_access_token
from store.db import TENANT_SETTING, tenant_tx
from tests.helpers import JWT_SECRET, auth, create_tenant, new_tenant_id, now_utc, publish, snapshot, wait_for

RULE = {"id": "flow_high", "kind": "threshold",
        "params": {"sensor": "flow_mcfd", "high": 1000.0, "for_seconds": 0, "severity": "critical"}}
# Values that tell the tenants' readings apart (both have an MTR-1).
A_VALUES, B_VALUES = [500.0, 5000.0], [777.0, 7777.0]
# Where TimescaleDB is installed, readings (and the aggregates over it) are scoped by the
# application's filter only (schema/sql/003_identity.sql): the one documented exception.
TIMESCALE_EXCEPTIONS = {"readings", "readings_1m", "readings_1h"}


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


async def _alert_ids(conn: asyncpg.Connection, tenant: str) -> list[int]:
    return [r["id"] for r in await conn.fetch("SELECT id FROM alerts WHERE tenant_id = $1 ORDER BY id", tenant)]


async def _feed(stack: Any, tenant: str, equipment: str, values: list[float], offset_s: int = 0) -> None:
    base = now_utc().replace(microsecond=0) - timedelta(seconds=300 - offset_s)
    await publish(stack.settings.nats_url, tenant, [
        (equipment, snapshot(equipment, base + timedelta(seconds=i), {"flow_mcfd": v})) for i, v in enumerate(values)])


@pytest.fixture(scope="module")
async def tenants(stack: Any) -> dict[str, Any]:
    """A and B, each with equipment, readings, an open alert, users, and an API key with every scope."""
    a, b = new_tenant_id("iso-a"), new_tenant_id("iso-b")
    await create_tenant(stack, a, [("MTR-1", "meter"), ("MTR-A", "meter")], rules=[RULE])
    await create_tenant(stack, b, [("MTR-1", "meter"), ("MTR-B", "meter")], rules=[RULE])
    await asyncio.gather(_feed(stack, a, "MTR-1", A_VALUES), _feed(stack, a, "MTR-A", A_VALUES),
                         _feed(stack, b, "MTR-1", B_VALUES), _feed(stack, b, "MTR-B", B_VALUES))
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        async def both_alerted() -> bool:
            return len(await _alert_ids(conn, a)) >= 2 and len(await _alert_ids(conn, b)) >= 2

        await wait_for(both_alerted, timeout=60)
        info: dict[str, Any] = {"a": a, "b": b}
        for t in (a, b):
            info[t] = {
                "alerts": await _alert_ids(conn, t),
                "users": [str(r["id"]) for r in await conn.fetch("SELECT id FROM users WHERE tenant_id = $1", t)],
            }
    finally:
        await conn.close()
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
        for t in (a, b):
            r = await http.post("/v1/api-keys", headers=auth(t, "admin"),
                                json={"name": "isolation", "scopes": sorted(API_KEY_SCOPES)})
            assert r.status_code == 201, r.text
            info[t]["key"], info[t]["key_id"] = r.json()["data"]["key"], r.json()["data"]["id"]
    return info


def _credentials(tenants: dict[str, Any]) -> dict[str, dict[str, str]]:
    a = tenants["a"]
    return {"token": auth(a, "admin"), "api_key": bearer(tenants[a]["key"])}


async def _b_state(stack: Any, b: str, known_alerts: list[int]) -> dict[str, Any]:
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        return {
            "users": [dict(r) for r in await conn.fetch(
                "SELECT id, name, role, status, deleted_at FROM users WHERE tenant_id = $1 ORDER BY id", b)],
            # Only B's human-made alert state: B's own models may open an alert meanwhile (its feed
            # stopped, say), which no request of A's could cause.
            "alerts": [dict(r) for r in await conn.fetch(
                "SELECT id, state, acknowledged_by, verdict, shelved_until FROM alerts WHERE tenant_id = $1"
                " AND (acknowledged_by IS NOT NULL OR state IN ('acknowledged', 'resolved', 'shelved')"
                " OR verdict IS NOT NULL OR id = ANY($2)) ORDER BY id", b, known_alerts)],
            "keys": [dict(r) for r in await conn.fetch(
                "SELECT id, revoked_at FROM api_keys WHERE tenant_id = $1 ORDER BY id", b)],
            "settings": await conn.fetchval("SELECT settings::text FROM tenants WHERE id = $1", b),
        }
    finally:
        await conn.close()


# ----------------------------------------------------------------------------- HTTP


@pytest.mark.parametrize("who", ["token", "api_key"])
async def test_b_resources_are_404_or_403_for_a(stack: Any, http: Any, tenants: dict[str, Any], who: str) -> None:
    a, b = tenants["a"], tenants["b"]
    headers = _credentials(tenants)[who]
    before = await _b_state(stack, b, list(tenants[b]["alerts"]))
    requests: list[tuple[str, str, Any]] = []
    for alert_id in tenants[b]["alerts"]:
        requests += [("GET", f"/v1/alerts/{alert_id}", None),
                     ("POST", f"/v1/alerts/{alert_id}/acknowledge", {"comment": "from tenant A"})]
    for user_id in tenants[b]["users"]:
        requests += [("GET", f"/v1/users/{user_id}", None),
                     ("PATCH", f"/v1/users/{user_id}", {"name": "renamed by A"}),
                     ("PATCH", f"/v1/users/{user_id}/role", {"role": "viewer"}),
                     ("POST", f"/v1/users/{user_id}/deactivate", None),
                     ("POST", f"/v1/users/{user_id}/activate", None),
                     ("DELETE", f"/v1/users/{user_id}", None)]
    requests += [("DELETE", f"/v1/api-keys/{tenants[b]['key_id']}", None),
                 ("GET", "/v1/equipment/MTR-B/readings", None)]
    leaks = []
    for method, path, body in requests:
        r = await http.request(method, path, headers=headers, json=body)
        if r.status_code not in (403, 404):
            leaks.append((method, path, r.status_code, r.text[:200]))
        elif r.status_code == 404:
            assert r.json()["error"]["code"] == "NOT_FOUND"
    assert leaks == [], f"{who} of {a} reached {b}: {leaks}"
    assert await _b_state(stack, b, list(tenants[b]["alerts"])) == before, "tenant B changed under tenant A's requests"
    # B's key and B's users still work.
    assert (await http.get("/v1/alerts", headers=bearer(tenants[b]["key"]))).status_code == 200
    assert (await http.get("/v1/auth/me", headers=auth(b, "admin"))).status_code == 200


@pytest.mark.parametrize("who", ["token", "api_key"])
async def test_lists_never_contain_b(stack: Any, http: Any, tenants: dict[str, Any], who: str) -> None:
    a, b = tenants["a"], tenants["b"]
    headers = _credentials(tenants)[who]
    alerts = await http.get("/v1/alerts", headers=headers, params={"limit": 100})
    assert alerts.status_code == 200
    ids = {x["id"] for x in alerts.json()["data"]}
    # The models may open alerts of their own (drift, anomaly) beside the test's: compare with the table.
    owner = await asyncpg.connect(stack.settings.database_url)
    try:
        a_ids = {r["id"] for r in await owner.fetch("SELECT id FROM alerts WHERE tenant_id = $1", a)}
        b_ids = {r["id"] for r in await owner.fetch("SELECT id FROM alerts WHERE tenant_id = $1", b)}
    finally:
        await owner.close()
    assert set(tenants[a]["alerts"]) <= ids <= a_ids and not ids & b_ids
    assert alerts.json()["meta"]["pagination"]["total"] == len(ids)
    filtered = await http.get("/v1/alerts", headers=headers, params={"equipment_id": "MTR-B"})
    assert filtered.json()["data"] == []
    # Same equipment id in both tenants: A sees its own readings only.
    readings = await http.get("/v1/equipment/MTR-1/readings", headers=headers,
                              params={"from": (now_utc() - timedelta(hours=1)).isoformat()})
    assert readings.status_code == 200
    values = sorted(x["value"] for x in readings.json()["data"])
    assert values == sorted(A_VALUES), values
    buckets = await http.get("/v1/equipment/MTR-1/readings", headers=headers,
                             params={"from": (now_utc() - timedelta(hours=1)).isoformat(), "bucket": "1h"})
    assert sum(x["count"] for x in buckets.json()["data"]) == len(A_VALUES)
    assert max(x["max"] for x in buckets.json()["data"]) == max(A_VALUES)
    settings = await http.get("/v1/tenant/settings", headers=headers)
    assert settings.json()["data"]["id"] == a
    if who == "token":
        users = (await http.get("/v1/users", headers=headers, params={"limit": 100})).json()["data"]
        assert {u["id"] for u in users} == set(tenants[a]["users"])
        assert all(u["email"].endswith(f"@{a}.example") for u in users)
        keys = (await http.get("/v1/api-keys", headers=headers, params={"limit": 100})).json()["data"]
        assert tenants[b]["key_id"] not in {k["id"] for k in keys} and tenants[a]["key_id"] in {k["id"] for k in keys}
        audit = (await http.get("/v1/audit-logs", headers=headers, params={"limit": 100})).json()["data"]
        b_actors = set(tenants[b]["users"]) | {tenants[b]["key_id"]}
        assert audit and not {e["actor_id"] for e in audit} & b_actors
        for b_user in tenants[b]["users"]:
            by_b = await http.get("/v1/audit-logs", headers=headers, params={"user": b_user})
            assert by_b.status_code == 200 and by_b.json()["data"] == []


async def test_a_credential_naming_tenant_b_is_refused(http: Any, tenants: dict[str, Any], db_conn: Any) -> None:
    """A validly signed token claiming tenant B for A's user and session, and A's key relabelled B: 401."""
    a, b = tenants["a"], tenants["b"]
    row = await db_conn.fetchrow(
        "SELECT s.user_id, s.id FROM auth_sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.tenant_id = $1 AND u.role = 'admin' AND s.revoked_at IS NULL LIMIT 1", a)
    forged = mint_access_token(JWT_SECRET, tenant_id=b, user_id=str(row["user_id"]), session_id=str(row["id"]),
                               role="admin", minutes=5)
    r = await http.get("/v1/alerts", headers=bearer(forged))
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
    relabelled = tenants[a]["key"].replace(f"_{a}_", f"_{b}_", 1)
    assert relabelled != tenants[a]["key"]
    r = await http.get("/v1/alerts", headers=bearer(relabelled))
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"


# ----------------------------------------------------------------------------- WebSocket


async def _collect(ws: Any, seconds: float, until: Any = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                out.append(json.loads(await ws.recv()))
                if until is not None and until(out):
                    return out
    except TimeoutError:
        return out


@pytest.mark.parametrize("who", ["token", "api_key"])
async def test_websocket_never_delivers_b(stack: Any, tenants: dict[str, Any], db_conn: Any, who: str) -> None:
    a, b = tenants["a"], tenants["b"]
    url = f"ws://{stack.settings.host}:{stack.settings.port}/v1/alerts/ws?since=0"
    async with websockets.connect(url, additional_headers=_credentials(tenants)[who]) as ws:
        replay = await _collect(ws, 2)
        assert replay, "A's own events are replayed with since=0"
        # B opens (and resolves) alerts while A listens; then A resolves one of its own.
        await _feed(stack, b, "MTR-B", [100.0, 9999.0, 100.0], offset_s=10 + (who == "api_key") * 10)
        await _feed(stack, b, "MTR-1", [100.0, 9999.0, 100.0], offset_s=10 + (who == "api_key") * 10)
        seen_a_before = max(e["seq"] for e in replay)
        await _feed(stack, a, "MTR-A", [100.0, 9999.0], offset_s=10 + (who == "api_key") * 10)
        live = await _collect(ws, 20, until=lambda got: any(e["tenant_id"] == a and e["seq"] > seen_a_before
                                                            for e in got))
        live += await _collect(ws, 3)  # B's events would have had time to arrive too
    b_seqs = {r["seq"] for r in await db_conn.fetch("SELECT seq FROM alert_events WHERE tenant_id = $1", b)}
    assert len(b_seqs) >= 4, "B's new alert events were committed while A listened"
    events = replay + live
    assert {e["tenant_id"] for e in events} == {a}, [e for e in events if e["tenant_id"] != a]
    assert not {e["seq"] for e in events} & b_seqs
    assert not {e["alert_id"] for e in events} & set(tenants[b]["alerts"])
    assert any(e["seq"] > seen_a_before for e in live), "A's own live event arrived"


# ----------------------------------------------------------------------------- the database alone


async def _tenant_relations(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """(name, relkind) of every table or view in public with a tenant_id column."""
    rows = await conn.fetch(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY c.relname")
    return [(r["relname"], r["relkind"]) for r in rows]


async def _timescale(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"))


@pytest.fixture
async def app_conn(stack: Any) -> Any:
    conn = await asyncpg.connect(stack.settings.resolved_app_database_url())
    try:
        yield conn
    finally:
        await conn.close()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def test_raw_sql_without_tenant_filter_sees_only_the_set_tenant(
        app_conn: Any, db_conn: Any, tenants: dict[str, Any]) -> None:
    a, b = tenants["a"], tenants["b"]
    assert await app_conn.fetchval("SELECT current_user") != await db_conn.fetchval("SELECT current_user")
    relations = await _tenant_relations(db_conn)
    names = {n for n, _ in relations}
    assert {"equipment", "alert_rules", "alerts", "alert_events", "readings", "users", "auth_sessions",
            "api_keys", "audit_log", "silences", "suppressed_alerts", "manual_readings", "inspections", "field_notes",
            "attachments", "field_events", "sync_changes", "sync_devices", "sync_receipts", "sync_uploads",
            "sync_conflicts", "sync_record_aliases", "predictions", "type_models"} <= names, names
    skip = TIMESCALE_EXCEPTIONS if await _timescale(db_conn) else set()
    await app_conn.execute("SELECT set_config($1, $2, false)", TENANT_SETTING, a)
    leaks, a_blind = [], []
    for name, _ in relations:
        if name in skip:
            continue
        t = _ident(name)
        b_rows = await app_conn.fetchval(f"SELECT count(*) FROM {t} WHERE tenant_id = $1", b)
        all_rows = await app_conn.fetchval(f"SELECT count(*) FROM {t}")
        a_rows = await app_conn.fetchval(f"SELECT count(*) FROM {t} WHERE tenant_id = $1", a)
        b_actual = await db_conn.fetchval(f"SELECT count(*) FROM {t} WHERE tenant_id = $1", b)
        a_actual = await db_conn.fetchval(f"SELECT count(*) FROM {t} WHERE tenant_id = $1", a)
        if b_rows or all_rows != a_rows:
            leaks.append((name, b_rows, all_rows, a_rows))
        if a_rows != a_actual:
            a_blind.append((name, a_rows, a_actual))
        assert b_actual > 0 or name not in {"equipment", "alerts", "alert_events", "users", "api_keys"}, name
    assert leaks == [], f"with tenant {a} set, rows of other tenants are visible: {leaks}"
    assert a_blind == [], f"tenant {a} cannot see its own rows: {a_blind}"
    # tenants itself: only A's row.
    assert await app_conn.fetchval("SELECT count(*) FROM tenants WHERE id = $1", b) == 0
    assert await app_conn.fetchval("SELECT count(*) FROM tenants WHERE id = $1", a) == 1
    assert await app_conn.fetchval("SELECT array_agg(id) FROM tenants") == [a]


async def test_raw_sql_with_no_tenant_set_sees_nothing(app_conn: Any, db_conn: Any, tenants: dict[str, Any]) -> None:
    assert await app_conn.fetchval("SELECT current_setting($1, true)", TENANT_SETTING) in (None, "")
    skip = TIMESCALE_EXCEPTIONS if await _timescale(db_conn) else set()
    visible = {}
    for name, _ in await _tenant_relations(db_conn):
        if name not in skip:
            visible[name] = await app_conn.fetchval(f"SELECT count(*) FROM {_ident(name)}")
    visible["tenants"] = await app_conn.fetchval("SELECT count(*) FROM tenants")
    assert {k: v for k, v in visible.items() if v} == {}
    # An empty string (what RESET leaves on some servers) matches nothing either.
    await app_conn.execute("SELECT set_config($1, '', false)", TENANT_SETTING)
    assert await app_conn.fetchval("SELECT count(*) FROM alerts") == 0


async def test_rls_refuses_writes_to_another_tenant(app_conn: Any, db_conn: Any, tenants: dict[str, Any]) -> None:
    a, b = tenants["a"], tenants["b"]
    await app_conn.execute("SELECT set_config($1, $2, false)", TENANT_SETTING, a)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        await app_conn.execute(
            "INSERT INTO alert_rules (tenant_id, id, kind, params) VALUES ($1, 'planted', 'threshold', '{}')", b)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        await app_conn.execute("INSERT INTO equipment (tenant_id, id, type, name) VALUES ($1, 'PLANTED', 'meter', 'x')",
                               b)
    # Moving one of A's own rows to B is refused too (WITH CHECK on the new row).
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        await app_conn.execute("UPDATE alert_rules SET tenant_id = $1 WHERE tenant_id = $2", b, a)
    tx = app_conn.transaction()
    await tx.start()
    try:
        assert await app_conn.execute("UPDATE alert_rules SET enabled = false WHERE tenant_id = $1", b) == "UPDATE 0"
        assert await app_conn.execute("DELETE FROM alerts WHERE tenant_id = $1", b) == "DELETE 0"
        assert await app_conn.execute("UPDATE users SET name = 'x' WHERE tenant_id = $1", b) == "UPDATE 0"
    finally:
        await tx.rollback()
    assert await db_conn.fetchval("SELECT count(*) FROM alert_rules WHERE tenant_id = $1 AND id = 'planted'", b) == 0
    assert await db_conn.fetchval("SELECT count(*) FROM alert_rules WHERE tenant_id = $1 AND enabled", b) == 1


async def test_tenant_tx_scope_ends_with_the_transaction(stack: Any, db_conn: Any, tenants: dict[str, Any]) -> None:
    """The API names its tenant per transaction; a pooled connection must not keep it afterwards."""
    a, b = tenants["a"], tenants["b"]
    a_alerts = len(await _alert_ids(db_conn, a))
    pool = await asyncpg.create_pool(stack.settings.resolved_app_database_url(), min_size=1, max_size=1)
    try:
        async with tenant_tx(pool, a) as conn:
            assert await conn.fetchval("SELECT count(*) FROM alerts") == a_alerts > 0
        async with pool.acquire() as conn:  # the same (only) connection
            assert await conn.fetchval("SELECT count(*) FROM alerts") == 0
        async with tenant_tx(pool, b) as conn:
            assert {r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM alerts")} == {b}
    finally:
        await pool.close()


async def test_every_tenant_table_has_row_level_security(db_conn: Any) -> None:
    """Fails when a table with a tenant_id column is added without RLS (and a policy)."""
    timescale = await _timescale(db_conn)
    rows = await db_conn.fetch(
        "SELECT c.relname, c.relrowsecurity, (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname")
    assert rows
    missing = [r["relname"] for r in rows
               if not (r["relrowsecurity"] and r["policies"]) and not (timescale and r["relname"] == "readings")]
    assert missing == [], f"tenant tables without row-level security: {missing}"
    tenants = await db_conn.fetchrow("SELECT relrowsecurity FROM pg_class WHERE oid = 'public.tenants'::regclass")
    assert tenants["relrowsecurity"]
    if not timescale:
        assert "readings" in {r["relname"] for r in rows if r["relrowsecurity"]}


async def test_views_over_tenant_tables_do_not_bypass_rls(db_conn: Any) -> None:
    """A view runs with its owner's rights: one over a tenant table must be security_invoker (or not exist)."""
    rows = await db_conn.fetch(
        "SELECT c.relname, c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'"
        " WHERE n.nspname = 'public' AND c.relkind IN ('v', 'm')")
    timescale = await _timescale(db_conn)
    bad = [r["relname"] for r in rows if "security_invoker=true" not in (r["reloptions"] or [])
           and not (timescale and r["relname"] in TIMESCALE_EXCEPTIONS)]
    assert bad == [], f"views over tenant data that bypass RLS: {bad}"


async def test_app_role_cannot_bypass_rls(stack: Any, db_conn: Any, app_conn: Any) -> None:
    app_user = await app_conn.fetchval("SELECT current_user")
    assert app_user == stack.settings.app_db_user
    role = await db_conn.fetchrow("SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles"
                                  " WHERE rolname = $1", app_user)
    assert role is not None and not role["rolsuper"] and not role["rolbypassrls"]
    assert not role["rolcreaterole"] and not role["rolcreatedb"]
    # An owner bypasses its table's RLS (unless FORCE): the app role owns nothing in public.
    owned = await db_conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = $1)", app_user)
    assert [r["relname"] for r in owned] == []
    # Nor is it a member of a role that could (e.g. the migrating superuser).
    inherited = await db_conn.fetch(
        "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
        " WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = $1) AND (r.rolsuper OR r.rolbypassrls)", app_user)
    assert inherited == []
