"""Probes of the security review (issue 20), each against the real servers: they failed before the fixes."""

import asyncio
import contextlib
import json
import pickle
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import nats
import pytest
import websockets
from nats.js.api import DiscardPolicy

from models import MODEL_VERSION
from store.embedded import EmbeddedPostgres
from tests.helpers import auth, create_tenant, new_tenant_id, normal_series, now_utc, publish, snapshot, wait_for
from tests.test_identity import add_user, bearer, login_ok


class _Payload:
    """What an attacker with the app role's password would store as a model checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


async def test_app_role_cannot_make_temp_objects_and_definers_name_pg_temp_last(stack: Any) -> None:
    """The probe: a temp view named `tenants` would have run as the definer functions' owner."""
    conn = await asyncpg.connect(stack.settings.resolved_app_database_url())
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TEMP VIEW tenants AS SELECT current_user::text AS id, true AS active,"
                               " NULL::timestamptz AS deleted_at")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE public.tenants_shadow (id text)")
        ids = [r[0] for r in await conn.fetch("SELECT * FROM wellpulse_active_tenants()")]
        assert "wellpulse_app" not in ids
    finally:
        await conn.close()
    owner = await asyncpg.connect(stack.settings.database_url)
    try:
        configs = await owner.fetch("SELECT proname, proconfig FROM pg_proc WHERE prosecdef")
    finally:
        await owner.close()
    assert configs, "no SECURITY DEFINER function found"
    for row in configs:
        path = next(c for c in row["proconfig"] if c.startswith("search_path="))
        assert path.endswith("pg_temp"), (row["proname"], path)


def test_an_embedded_cluster_made_with_trust_is_converted_to_passwords(tmp_path: Path) -> None:
    """Data dirs from before passwords (initdb --auth=trust) ask for one from their next start."""
    import psycopg

    server = EmbeddedPostgres(tmp_path / "pg", database="postgres").start()
    server.stop()
    hba = tmp_path / "pg" / "pg_hba.conf"
    hba.write_text(hba.read_text().replace("scram-sha-256", "trust"))  # as an older WellPulse left it
    server = EmbeddedPostgres(tmp_path / "pg", database="postgres").start()
    try:
        assert "trust" not in " ".join(ln for ln in hba.read_text().splitlines() if not ln.startswith("#"))
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(f"postgresql://postgres@127.0.0.1:{server.port}/postgres").close()
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    finally:
        server.stop()


async def test_database_asks_every_role_for_its_password(stack: Any) -> None:
    app_url = stack.settings.resolved_app_database_url()
    for password in ("wellpulse-app-dev-password", "", "wrong-" + uuid.uuid4().hex):
        url = app_url.replace(f":{stack.settings.secret('app_db_password')}@", f":{password}@")
        with pytest.raises((asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)):
            await asyncpg.connect(url)
    host_port = stack.settings.database_url.rsplit("@", 1)[1]
    with pytest.raises((asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)):
        await asyncpg.connect(f"postgresql://postgres@{host_port}")  # no more trust for the superuser


async def test_a_forged_checkpoint_is_never_unpickled(stack: Any, tmp_path: Path) -> None:
    tenant = new_tenant_id("forge")
    await create_tenant(stack, tenant, [("PJ-1", "pump_jack")])
    marker = tmp_path / "pwned"
    conn = await asyncpg.connect(stack.settings.resolved_app_database_url())
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('wellpulse.tenant_id', $1, true)", tenant)
            await conn.execute(
                "INSERT INTO model_checkpoints (tenant_id, equipment_id, model_version, state, samples_seen)"
                " VALUES ($1, 'PJ-1', $2, $3, 1)", tenant, MODEL_VERSION, pickle.dumps(_Payload(marker)))
    finally:
        await conn.close()
    series = normal_series(now_utc() - timedelta(minutes=10), 60)
    await publish(stack.settings.nats_url, tenant,
                  [("PJ-1", snapshot("PJ-1", ts, {"tubing_psi": v})) for ts, v in series])

    owner = await asyncpg.connect(stack.settings.database_url)
    try:
        async def resigned() -> bytes | None:
            state = await owner.fetchval("SELECT state FROM model_checkpoints WHERE tenant_id = $1", tenant)
            return state if state is not None and bytes(state).startswith(b"WPS1") else None

        await wait_for(resigned, timeout=60)  # the actor started a fresh model and saved it, signed
        stored = await owner.fetchval("SELECT count(*) FROM readings WHERE tenant_id = $1", tenant)
    finally:
        await owner.close()
    assert not marker.exists(), "the forged checkpoint ran code inside the actor"
    assert stored == len(series)  # and ingest went on


# ---------------------------------------------------------------------- WebSocket (item 3)


def _ws_url(stack: Any, **params: Any) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"ws://{stack.settings.host}:{stack.settings.port}/v1/alerts/ws" + (f"?{query}" if query else "")


async def _closed_with(ws: Any, seconds: float) -> int | None:
    """The close code once the server closes the socket within `seconds` (frames before it are skipped)."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                await ws.recv()
    except websockets.ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
    except TimeoutError:
        return None


async def test_sockets_per_principal_are_capped(stack: Any) -> None:
    tenant = new_tenant_id("wscap")
    await create_tenant(stack, tenant, [])
    cap = stack.settings.ws_max_per_principal
    async with contextlib.AsyncExitStack() as held:
        for _ in range(cap):
            await held.enter_async_context(websockets.connect(_ws_url(stack), additional_headers=auth(tenant)))
        with pytest.raises(websockets.InvalidStatus):  # refused at the handshake: the slot is not taken
            async with websockets.connect(_ws_url(stack), additional_headers=auth(tenant)):
                pass
        # Another principal of the same tenant still gets in.
        async with websockets.connect(_ws_url(stack), additional_headers=auth(tenant, "viewer")):
            pass
    async with websockets.connect(_ws_url(stack), additional_headers=auth(tenant)):  # slots come back
        pass


async def test_a_socket_closes_with_1008_when_its_session_or_key_ends(stack: Any, http: Any) -> None:
    tenant = new_tenant_id("wsrevoke")
    await create_tenant(stack, tenant, [])
    email, _ = await add_user(stack, tenant, "operator")
    session = (await login_ok(http, tenant, email))["access_token"]
    async with websockets.connect(_ws_url(stack), additional_headers=bearer(session)) as ws:
        assert (await http.post("/v1/auth/logout", headers=bearer(session))).status_code == 204
        assert await _closed_with(ws, 15) == 1008

    created = await http.post("/v1/api-keys", json={"name": "feed", "scopes": ["alerts:read"]},
                              headers=auth(tenant, "admin"))
    assert created.status_code == 201, created.text
    key = created.json()["data"]
    async with websockets.connect(_ws_url(stack), additional_headers=bearer(key["key"])) as ws:
        revoked = await http.delete(f"/v1/api-keys/{key['id']}", headers=auth(tenant, "admin"))
        assert revoked.status_code in (200, 204), revoked.text
        assert await _closed_with(ws, 15) == 1008

    # A role that loses alerts:read is closed too: a deactivated user.
    email2, user_id = await add_user(stack, tenant, "viewer")
    viewer = (await login_ok(http, tenant, email2))["access_token"]
    async with websockets.connect(_ws_url(stack), additional_headers=bearer(viewer)) as ws:
        done = await http.post(f"/v1/users/{user_id}/deactivate", headers=auth(tenant, "admin"))
        assert done.status_code in (200, 204), done.text
        assert await _closed_with(ws, 15) == 1008


async def test_replay_after_since_is_bounded_and_says_so(stack: Any) -> None:
    tenant = new_tenant_id("wsreplay")
    await create_tenant(stack, tenant, [])
    limit = stack.settings.ws_replay_max_events
    owner = await asyncpg.connect(stack.settings.database_url)
    try:
        alert_id = await owner.fetchval(
            "INSERT INTO alerts (tenant_id, equipment_id, rule_id, state, severity, message, opened_at)"
            " VALUES ($1, 'X-1', 'r', 'open', 'info', 'm', now()) RETURNING id", tenant)
        await owner.execute(
            "INSERT INTO alert_events (tenant_id, alert_id, equipment_id, rule_id, kind, state, severity, message,"
            " actor, occurred_at) SELECT $1, $2, 'X-1', 'r', 'updated', 'open', 'info', 'm' || g, 'test', now()"
            " FROM generate_series(1, $3) AS g", tenant, alert_id, limit + 25)
    finally:
        await owner.close()
    async with websockets.connect(_ws_url(stack, since=0), additional_headers=auth(tenant)) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert first["type"] == "replay_truncated" and first["limit"] == limit
        events = [json.loads(await asyncio.wait_for(ws.recv(), 30)) for _ in range(limit)]
    assert [e["message"] for e in events] == [f"m{i}" for i in range(26, limit + 26)]


# ---------------------------------------------------------------------- bodies (item 4)


async def _chunks(total: int, size: int = 256 * 1024) -> Any:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"x" * n


@pytest.mark.parametrize(("path", "limit_of"), [
    ("/v1/telemetry", lambda s: 4 * 1024 * 1024),
    ("/v1/production/import", lambda s: s.production_import_max_bytes),
    ("/v1/sync", lambda s: s.sync_max_chunk_bytes),
    ("/v1/wells", lambda s: 8 * 1024 * 1024),
])
async def test_bodies_over_their_limit_are_413_whether_declared_or_chunked(
        stack: Any, http: Any, path: str, limit_of: Any) -> None:
    tenant = new_tenant_id("body")
    await create_tenant(stack, tenant, [])
    h = {**auth(tenant, "admin"), "Content-Type": "text/csv" if "import" in path else "application/json"}
    limit = limit_of(stack.settings)
    declared = await http.post(path, headers={**h, "Content-Length": str(limit + 1)}, content=b"x" * (limit + 1))
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    chunked = await http.post(path, headers=h, content=_chunks(limit + 1))  # no Content-Length at all
    assert chunked.status_code == 413, chunked.text
    assert chunked.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert (await http.get("/health")).status_code == 200  # and the server is fine


async def test_streams_bound_their_disk_per_stream_and_per_feed(stack: Any) -> None:
    nc = await nats.connect(stack.settings.nats_url)
    try:
        js = nc.jetstream()
        for name, max_bytes in (("TELEMETRY", stack.settings.telemetry_stream_max_bytes),
                                ("DLQ", stack.settings.dlq_stream_max_bytes)):
            config = (await js.stream_info(name)).config
            assert config.max_bytes == max_bytes and config.discard == DiscardPolicy.OLD
            assert config.max_msgs_per_subject == stack.settings.stream_max_msgs_per_subject
    finally:
        await nc.close()


async def test_an_api_key_cannot_hold_alerts_through_a_maintenance_job(stack: Any, http: Any) -> None:
    """Keys never get alerts:silence; an open maintenance job would silence the equipment all the same."""
    tenant = new_tenant_id("keymaint")
    await create_tenant(stack, tenant, [("PJ-1", "pump_jack")])
    created = await http.post("/v1/api-keys", json={"name": "tablet", "scopes": ["field_data:write"]},
                              headers=auth(tenant, "admin"))
    key = bearer(created.json()["data"]["key"])
    start = "2026-11-01T06:00:00Z"
    refused = await http.post("/v1/equipment/PJ-1/maintenance", json={"kind": "preventive", "started_at": start},
                              headers=key)
    assert refused.status_code == 403 and "alerts:silence" in refused.json()["error"]["message"]
    event = await http.post("/v1/field-events", headers=key, json={
        "event_id": str(uuid.uuid4()), "type": "maintenance_started", "equipment_id": "PJ-1",
        "occurred_at": start, "data": {"kind": "preventive"}})
    assert event.status_code == 403, event.text
    finished = await http.post("/v1/equipment/PJ-1/maintenance", headers=key, json={
        "kind": "preventive", "started_at": start, "ended_at": "2026-11-01T07:00:00Z"})
    assert finished.status_code == 201, finished.text  # a job already over holds nothing: a key may record it
    operator = await http.post("/v1/equipment/PJ-1/maintenance", json={"kind": "preventive"},
                               headers=auth(tenant, "operator"))
    assert operator.status_code == 201, operator.text
