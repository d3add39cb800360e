"""`wellpulse tenant ...` and `wellpulse token` as an operator runs them, against the running stack."""

import asyncio
import os
import subprocess
import sys
from typing import Any

from tests.helpers import new_tenant_id, wait_for

PASSWORD = "correct horse battery staple"


def wellpulse(stack: Any, *args: str, password: str | None = PASSWORD) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WELLPULSE_DATABASE_URL": stack.settings.database_url,
           "WELLPULSE_NATS_URL": stack.settings.nats_url,
           "WELLPULSE_JWT_SECRET": stack.settings.secret("jwt_secret"),
           "WELLPULSE_ARGON2_TIME_COST": "1", "WELLPULSE_ARGON2_MEMORY_KIB": "8192"}
    env.pop("WELLPULSE_ADMIN_PASSWORD", None)
    if password is not None:
        env["WELLPULSE_ADMIN_PASSWORD"] = password
    return subprocess.run([sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


async def test_operator_bootstraps_lists_and_deactivates_a_tenant(stack: Any, http: Any) -> None:
    tenant = new_tenant_id("cli")
    email = f"ops@{tenant}.example"
    created = await asyncio.to_thread(wellpulse, stack, "tenant", "create", tenant, "--name", "Acme Oil",
                                      "--admin-email", email)
    assert created.returncode == 0, created.stderr
    assert PASSWORD not in created.stdout + created.stderr
    again = await asyncio.to_thread(wellpulse, stack, "tenant", "create", tenant, "--name", "x", "--admin-email", email)
    assert again.returncode == 2 and "exists" in again.stderr

    login = await http.post("/v1/auth/login", json={"tenant": tenant, "email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    access = login.json()["data"]["access_token"]
    me = await http.get("/v1/auth/me", headers={"Authorization": f"Bearer {access}"})
    assert me.json()["data"]["role"] == "admin" and "users:write" in me.json()["data"]["permissions"]

    listed = await asyncio.to_thread(wellpulse, stack, "tenant", "list")
    assert listed.returncode == 0 and any(line.startswith(tenant) and " yes " in line
                                          for line in listed.stdout.splitlines())

    minted = await asyncio.to_thread(wellpulse, stack, "token", "--tenant", tenant, "--email", email)
    assert minted.returncode == 0, minted.stderr
    cli_token = minted.stdout.strip()
    assert (await http.get("/v1/tenant/settings", headers={"Authorization": f"Bearer {cli_token}"})).status_code == 200

    off = await asyncio.to_thread(wellpulse, stack, "tenant", "deactivate", tenant)
    assert off.returncode == 0, off.stderr

    async def refused() -> bool:
        resp = await http.get("/v1/auth/me", headers={"Authorization": f"Bearer {access}"})
        return resp.status_code == 401

    await wait_for(refused, timeout=5)  # revoked in the database and announced to the replicas over NATS
    again_login = await http.post("/v1/auth/login", json={"tenant": tenant, "email": email, "password": PASSWORD})
    assert again_login.status_code == 401


async def test_passwords_never_come_from_argv_and_weak_ones_are_refused(stack: Any) -> None:
    tenant = new_tenant_id("cliw")
    argv = await asyncio.to_thread(wellpulse, stack, "tenant", "create", tenant, "--name", "x", "--admin-email",
                                   "a@b.example", "--password", PASSWORD)
    assert argv.returncode == 2 and "unrecognized arguments" in argv.stderr
    weak = await asyncio.to_thread(wellpulse, stack, "tenant", "create", tenant, "--name", "x", "--admin-email",
                                   "a@b.example", password="short")
    assert weak.returncode == 2 and "at least 12 characters" in weak.stderr
    no_terminal = await asyncio.to_thread(wellpulse, stack, "tenant", "create", tenant, "--name", "x",
                                          "--admin-email", "a@b.example", password=None)
    assert no_terminal.returncode == 2 and "WELLPULSE_ADMIN_PASSWORD" in no_terminal.stderr
    bad_id = await asyncio.to_thread(wellpulse, stack, "tenant", "create", "Bad.Tenant", "--name", "x",
                                     "--admin-email", "a@b.example")
    assert bad_id.returncode == 2 and "invalid tenant id" in bad_id.stderr
