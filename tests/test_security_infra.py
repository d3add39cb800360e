"""Probes of the security review (issue 20), each against the real servers: they failed before the fixes."""

import pickle
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from models import MODEL_VERSION
from tests.helpers import create_tenant, new_tenant_id, normal_series, now_utc, publish, snapshot, wait_for


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
