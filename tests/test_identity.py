"""Sign-in and account flows against the running stack: login, cookies, refresh rotation, logout,
deactivation, roles, invitations, password reset, MFA, lockout, API keys and hostile input."""

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from typing import Any

import asyncpg
import jwt
import pyotp
import pytest

from config.secrets import key_id
from serve.security import password_hashing
from store import admin
from tests.helpers import JWT_SECRET, auth, create_tenant, new_tenant_id, now_utc, wait_for

PW = "correct horse battery staple"
NEW_PW = "a different long passphrase 42"
_HASHERS: dict[int, Any] = {}


# ---------------------------------------------------------------------- helpers


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


def error(resp: Any) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "details"} <= set(body["error"]), body
    return body["error"]


async def add_user(stack: Any, tenant: str, role: str = "operator", password: str | None = PW,
                   email: str | None = None) -> tuple[str, str]:
    """A new active user with this password (hashed the way the server hashes); (email, id)."""
    email = email or f"{role}-{uuid.uuid4().hex[:6]}@{tenant}.example"
    hasher = _HASHERS.get(id(stack))
    if hasher is None:
        hasher = _HASHERS[id(stack)] = password_hashing(stack.settings)
    password_hash = await asyncio.to_thread(hasher.hash, password) if password is not None else None
    user_id = await asyncio.to_thread(admin.ensure_user, stack.settings.database_url, tenant, email, role=role,
                                      password_hash=password_hash)
    return email, user_id


async def login(http: Any, tenant: str, email: str, password: str = PW, **extra: Any) -> Any:
    return await http.post("/v1/auth/login", json={"tenant": tenant, "email": email, "password": password, **extra})


async def login_ok(http: Any, tenant: str, email: str, password: str = PW, **extra: Any) -> dict[str, Any]:
    resp = await login(http, tenant, email, password, **extra)
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]


def outbox(stack: Any, email: str) -> list[dict[str, Any]]:
    path = stack.settings.message_sender.removeprefix("file:")
    try:
        with open(path) as f:
            lines = [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []
    return [m for m in lines if m["to"] == email]


def token_in(message: dict[str, Any]) -> str:
    match = re.search(r"\(token: (\S+)\)", message["body"])
    assert match, message
    return match.group(1)


async def wait_for_token(stack: Any, email: str, count: int = 1) -> str:
    async def arrived() -> list[dict[str, Any]] | None:
        messages = outbox(stack, email)
        return messages if len(messages) >= count else None

    messages = await wait_for(arrived, timeout=10)
    return token_in(messages[-1])


def set_cookies(resp: Any) -> dict[str, str]:
    """name -> the whole Set-Cookie line."""
    return {line.split("=", 1)[0]: line for line in resp.headers.get_list("set-cookie")}


def cookie_value(line: str) -> str:
    return line.split(";", 1)[0].split("=", 1)[1].strip('"')


def throttle_key(kind: str, value: str) -> bytes:
    return hmac.new(JWT_SECRET.encode(), f"{kind}:{value}".encode(), hashlib.sha256).digest()


async def user_id_of(http: Any, headers: dict[str, str]) -> str:
    resp = await http.get("/v1/auth/me", headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]["id"]


def reading(equipment_id: str = "M-1") -> dict[str, Any]:
    return {"equipment_id": equipment_id, "ts": now_utc().isoformat(), "values": {"flow_mcfd": 512.0}}


@pytest.fixture(autouse=True)
async def no_login_throttle(stack: Any) -> None:
    """Every test here signs in from 127.0.0.1, whose address counter never resets on success
    (by design: it counts failures across accounts). Start each test with a clean slate."""
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        await conn.execute("DELETE FROM login_throttle")
    finally:
        await conn.close()


# ---------------------------------------------------------------------- login


async def test_login_tokens_and_me(stack: Any, http: Any) -> None:
    tenant = new_tenant_id("login")
    await create_tenant(stack, tenant, [])
    email, user_id = await add_user(stack, tenant, "operator")
    data = await login_ok(http, tenant, email.upper())  # addresses are case-insensitive
    assert data["access_token"] and data["refresh_token"]
    assert data["refresh_token"].startswith(f"wpr_{tenant}_")
    assert data["token_type"] == "Bearer"
    assert data["expires_in"] == stack.settings.access_token_minutes * 60
    assert data["mfa_setup_required"] is False

    me = await http.get("/v1/auth/me", headers=bearer(data["access_token"]))
    assert me.status_code == 200, me.text
    me = me.json()["data"]
    assert me["id"] == user_id and me["email"] == email and me["role"] == "operator"
    assert me["tenant_id"] == tenant and me["session_id"]
    assert "telemetry:write" in me["permissions"] and "alerts:acknowledge" in me["permissions"]
    assert "users:write" not in me["permissions"] and "audit:read" not in me["permissions"]
    assert me["last_login_at"] is not None
    assert "password_hash" not in me and "mfa_secret" not in me


async def test_a_demo_restart_sets_the_password_it_prints(stack: Any, http: Any) -> None:
    """`wellpulse up --demo` prints a new password each start: the existing user must take it."""
    tenant = new_tenant_id("demopw")
    await create_tenant(stack, tenant, [])
    email, user_id = await add_user(stack, tenant, "admin", password="first-password-123")
    hasher = password_hashing(stack.settings)
    again = await asyncio.to_thread(admin.ensure_user, stack.settings.database_url, tenant, email, role="admin",
                                    password_hash=hasher.hash("second-password-456"), reset_password=True)
    assert again == user_id
    assert (await login(http, tenant, email, "first-password-123")).status_code == 401
    await login_ok(http, tenant, email, "second-password-456")
    kept = await asyncio.to_thread(admin.ensure_user, stack.settings.database_url, tenant, email, role="admin",
                                   password_hash=hasher.hash("third-password-789"))  # without: unchanged
    assert kept == user_id
    await login_ok(http, tenant, email, "second-password-456")


async def test_wrong_password_unknown_email_unknown_tenant_and_invited_look_identical(stack: Any, http: Any,
                                                                                       ) -> None:
    tenant = new_tenant_id("login")
    await create_tenant(stack, tenant, [])
    email, _ = await add_user(stack, tenant, "operator")
    invited, _ = await add_user(stack, tenant, "viewer", password=None)
    answers = [
        await login(http, tenant, email, "not the right password"),
        await login(http, tenant, f"nobody@{tenant}.example", PW),
        await login(http, new_tenant_id("nope"), email, PW),
        await login(http, tenant, invited, PW),
    ]
    for resp in answers:
        assert resp.status_code == 401, resp.text
        assert error(resp)["code"] == "INVALID_CREDENTIALS"
        assert resp.json() == answers[0].json()
    assert "access_token" not in answers[0].text


async def test_web_client_gets_secure_cookies_and_they_authenticate(stack: Any, http: Any) -> None:
    tenant = new_tenant_id("web")
    await create_tenant(stack, tenant, [])
    email, user_id = await add_user(stack, tenant, "manager")
    resp = await login(http, tenant, email, client="web")
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert "access_token" not in data and "refresh_token" not in data
    cookies = set_cookies(resp)
    assert set(cookies) >= {"wp_access", "wp_refresh"}, cookies
    for name in ("wp_access", "wp_refresh"):
        attrs = [a.strip().lower() for a in cookies[name].split(";")]
        assert "httponly" in attrs and "secure" in attrs and "samesite=strict" in attrs, cookies[name]
    assert "path=/v1/auth" in cookies["wp_refresh"].lower()
    access, refresh = cookie_value(cookies["wp_access"]), cookie_value(cookies["wp_refresh"])
    assert access not in resp.text and refresh not in resp.text

    me = await http.get("/v1/auth/me", headers={"Cookie": f"wp_access={access}"})
    assert me.status_code == 200, me.text
    assert me.json()["data"]["id"] == user_id

    # A state-changing request on the strength of a cookie needs the CSRF header, from this origin.
    for headers in ({}, {"X-WellPulse-CSRF": "1", "Origin": "https://evil.example"}):
        refused = await http.post("/v1/auth/refresh", headers={"Cookie": f"wp_refresh={refresh}", **headers})
        assert refused.status_code == 403 and error(refused)["code"] == "CSRF_REJECTED", refused.text
        refused = await http.post("/v1/auth/logout", headers={"Cookie": f"wp_access={access}", **headers})
        assert refused.status_code == 403 and error(refused)["code"] == "CSRF_REJECTED", refused.text
    # The refresh cookie rotates and answers with cookies again, no tokens in the body.
    rotated = await http.post("/v1/auth/refresh", headers={"Cookie": f"wp_refresh={refresh}",
                                                           "X-WellPulse-CSRF": "1"})
    assert rotated.status_code == 200, rotated.text
    assert "access_token" not in rotated.json()["data"]
    new_cookies = set_cookies(rotated)
    assert cookie_value(new_cookies["wp_refresh"]) != refresh
    me = await http.get("/v1/auth/me", headers={"Cookie": f"wp_access={cookie_value(new_cookies['wp_access'])}"})
    assert me.status_code == 200, me.text


# ---------------------------------------------------------------------- refresh and logout


async def test_refresh_rotates_and_reuse_revokes_the_session(stack: Any, http: Any) -> None:
    tenant = new_tenant_id("refresh")
    await create_tenant(stack, tenant, [])
    email, _ = await add_user(stack, tenant, "operator")
    first = await login_ok(http, tenant, email)

    resp = await http.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert resp.status_code == 200, resp.text
    second = resp.json()["data"]
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert (await http.get("/v1/auth/me", headers=bearer(second["access_token"]))).status_code == 200

    reused = await http.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401, reused.text
    assert error(reused)["code"] == "REFRESH_TOKEN_REUSED"

    # The whole family is gone: the newest refresh token and both access tokens.
    newest = await http.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert newest.status_code == 401, newest.text
    assert error(newest)["code"] == "INVALID_REFRESH_TOKEN"
    for access in (second["access_token"], first["access_token"]):
        resp = await http.get("/v1/auth/me", headers=bearer(access))
        assert resp.status_code == 401, resp.text
        error(resp)

    # Another sign-in of the same user is untouched by it.
    other = await login_ok(http, tenant, email)
    assert (await http.get("/v1/auth/me", headers=bearer(other["access_token"]))).status_code == 200


async def test_logout_ends_access_and_refresh_at_once(stack: Any, http: Any) -> None:
    tenant = new_tenant_id("logout")
    await create_tenant(stack, tenant, [])
    email, _ = await add_user(stack, tenant, "viewer")
    tokens = await login_ok(http, tenant, email)
    assert (await http.get("/v1/auth/me", headers=bearer(tokens["access_token"]))).status_code == 200
    out = await http.post("/v1/auth/logout", headers=bearer(tokens["access_token"]))
    assert out.status_code == 204, out.text
    after = await http.get("/v1/auth/me", headers=bearer(tokens["access_token"]))
    assert after.status_code == 401, after.text
    assert error(after)["code"] == "UNAUTHORIZED"
    refreshed = await http.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401, refreshed.text
    assert error(refreshed)["code"] == "INVALID_REFRESH_TOKEN"


# ---------------------------------------------------------------------- users changed by an admin


async def test_deactivate_activate_and_delete_end_sessions(stack: Any, http: Any) -> None:
    tenant = new_tenant_id("deact")
    await create_tenant(stack, tenant, [])
    admin_h = auth(tenant, "admin")
    email, user_id = await add_user(stack, tenant, "operator")
    tokens = await login_ok(http, tenant, email)
    h = bearer(tokens["access_token"])
    assert (await http.get("/v1/auth/me", headers=h)).status_code == 200  # now cached by the replica

    resp = await http.post(f"/v1/users/{user_id}/deactivate", headers=admin_h)
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["status"] == "deactivated"
    resp = await http.get("/v1/auth/me", headers=h)
    assert resp.status_code == 401, resp.text
    error(resp)
    assert (await http.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).status_code == 401
    denied = await login(http, tenant, email)
    assert denied.status_code == 401 and error(denied)["code"] == "INVALID_CREDENTIALS"

    resp = await http.post(f"/v1/users/{user_id}/activate", headers=admin_h)
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["status"] == "active"
    assert (await http.get("/v1/auth/me", headers=h)).status_code == 401  # sessions stayed ended
    again = await login_ok(http, tenant, email)
    h = bearer(again["access_token"])
    assert (await http.get("/v1/auth/me", headers=h)).status_code == 200

    resp = await http.delete(f"/v1/users/{user_id}", headers=admin_h)
    assert resp.status_code == 204, resp.text
    assert (await http.get("/v1/auth/me", headers=h)).status_code == 401
    assert (await login(http, tenant, email)).status_code == 401
    assert (await http.get(f"/v1/users/{user_id}", headers=admin_h)).status_code == 404
    listed = await http.get("/v1/users", headers=admin_h, params={"limit": 100})
    assert user_id not in {u["id"] for u in listed.json()["data"]}
    # The address is free again.
    recreated = await http.post("/v1/users", headers=admin_h, json={"email": email, "role": "viewer"})
    assert recreated.status_code == 201, recreated.text


async def test_role_change_applies_to_the_next_request(stack: Any, http: Any) -> None:
    tenant = new_tenant_id("role")
    await create_tenant(stack, tenant, [("M-1", "meter")])
    email, user_id = await add_user(stack, tenant, "operator")
    h = bearer((await login_ok(http, tenant, email))["access_token"])
    resp = await http.post("/v1/telemetry", json=reading(), headers=h)
    assert resp.status_code == 202, resp.text

    resp = await http.patch(f"/v1/users/{user_id}/role", json={"role": "viewer"}, headers=auth(tenant, "admin"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["role"] == "viewer"
    resp = await http.post("/v1/telemetry", json=reading(), headers=h)
    assert resp.status_code == 403, resp.text
    assert error(resp)["code"] == "FORBIDDEN"
    me = (await http.get("/v1/auth/me", headers=h)).json()["data"]
    assert me["role"] == "viewer" and "telemetry:write" not in me["permissions"]

    # A role change by someone who is not an admin is refused.
    resp = await http.patch(f"/v1/users/{user_id}/role", json={"role": "admin"}, headers=auth(tenant, "manager"))
    assert resp.status_code == 403, resp.text
    bad = await http.patch(f"/v1/users/{user_id}/role", json={"role": "root"}, headers=auth(tenant, "admin"))
    assert bad.status_code == 422 and error(bad)["code"] == "VALIDATION_ERROR"


async def test_last_admin_is_kept(stack: Any, http: Any) -> None:
    tenant = new_tenant_id("lastadm")
    await create_tenant(stack, tenant, [])
    admin_h = auth(tenant, "admin")
    admin_id = await user_id_of(http, admin_h)
    for method, path, body in (("PATCH", f"/v1/users/{admin_id}/role", {"role": "viewer"}),
                               ("POST", f"/v1/users/{admin_id}/deactivate", None),
                               ("DELETE", f"/v1/users/{admin_id}", None)):
        resp = await http.request(method, path, json=body, headers=admin_h)
        assert resp.status_code == 409, (path, resp.text)
        assert error(resp)["code"] == "LAST_ADMIN"
    assert (await http.get("/v1/auth/me", headers=admin_h)).json()["data"]["role"] == "admin"

    # With a second admin, the first may step down.
    second, second_id = await add_user(stack, tenant, "admin")
    resp = await http.patch(f"/v1/users/{admin_id}/role", json={"role": "manager"}, headers=admin_h)
    assert resp.status_code == 200, resp.text
    second_h = bearer((await login_ok(http, tenant, second))["access_token"])
    resp = await http.post(f"/v1/users/{second_id}/deactivate", headers=second_h)
    assert resp.status_code == 409 and error(resp)["code"] == "LAST_ADMIN"


async def test_concurrent_demotions_keep_one_admin(stack: Any, http: Any, db_conn: Any) -> None:
    """Two admins demoting each other at the same moment: the tenant must still have an admin.
    Over HTTP the window is narrow, so the service itself is called twice at once as well."""
    from serve import identity as service
    from serve.services import Services
    from store.audit import AuditContext

    services = await Services(stack.settings).ready()
    try:
        for attempt in range(6):
            tenant = new_tenant_id("race")
            await create_tenant(stack, tenant, [])
            first_id = await user_id_of(http, auth(tenant, "admin"))
            second, second_id = await add_user(stack, tenant, "admin")
            if attempt % 2 == 0:
                second_h = bearer((await login_ok(http, tenant, second))["access_token"])
                answers = await asyncio.gather(
                    http.patch(f"/v1/users/{second_id}/role", json={"role": "viewer"}, headers=auth(tenant, "admin")),
                    http.patch(f"/v1/users/{first_id}/role", json={"role": "viewer"}, headers=second_h))
                outcome: Any = sorted(a.status_code for a in answers)
            else:
                results = await asyncio.gather(
                    service.update_user(services, AuditContext(tenant, "user", first_id), second_id,
                                        action="change_role", role="viewer"),
                    service.update_user(services, AuditContext(tenant, "user", second_id), first_id,
                                        action="change_role", role="viewer"), return_exceptions=True)
                outcome = [type(r).__name__ for r in results]
            admins = await db_conn.fetchval("SELECT count(*) FROM users WHERE tenant_id = $1 AND role = 'admin'"
                                            " AND status = 'active' AND deleted_at IS NULL", tenant)
            assert admins >= 1, f"tenant {tenant} lost its last admin (attempt {attempt}: {outcome})"
    finally:
        await services.close()


async def test_concurrent_invitations_of_one_address(stack: Any, http: Any) -> None:
    """The same address invited several times at once: one 201, the rest 409 CONFLICT, never a 500
    (the unique index catches what the service's check-then-insert misses)."""
    from schema.identity import UserCreate
    from serve import identity as service
    from serve.errors import ApiError
    from serve.services import Services
    from store.audit import AuditContext

    tenant = new_tenant_id("dupe")
    await create_tenant(stack, tenant, [])
    admin_id = await user_id_of(http, auth(tenant, "admin"))
    for i in range(4):
        email = f"twin{i}@{tenant}.example"
        answers = await asyncio.gather(*[
            http.post("/v1/users", json={"email": email, "role": "viewer"}, headers=auth(tenant, "admin"))
            for _ in range(4)])
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [201, 409, 409, 409], [(a.status_code, a.text[:120]) for a in answers]
    services = await Services(stack.settings).ready()
    try:
        for i in range(4):
            body = UserCreate(email=f"direct{i}@{tenant}.example", role="viewer")
            results = await asyncio.gather(*[service.create_user(services, AuditContext(tenant, "user", admin_id), body)
                                             for _ in range(4)], return_exceptions=True)
            unexpected = [r for r in results if isinstance(r, BaseException)
                          and not (isinstance(r, ApiError) and r.status == 409)]
            assert not unexpected, f"would answer 500: {unexpected!r}"
            assert sum(not isinstance(r, BaseException) for r in results) == 1
    finally:
        await services.close()


# ---------------------------------------------------------------------- invitations and resets


async def test_invitation_accept_weak_then_good_password(stack: Any, http: Any) -> None:
    tenant = new_tenant_id("invite")
    await create_tenant(stack, tenant, [])
    email = f"ivy-{uuid.uuid4().hex[:4]}@{tenant}.example"
    resp = await http.post("/v1/users", json={"email": email, "role": "operator", "name": "Ivy"},
                           headers=auth(tenant, "admin"))
    assert resp.status_code == 201, resp.text
    data = resp.json()["data"]
    assert data["user"]["status"] == "invited" and data["invitation_expires_at"]
    token = await wait_for_token(stack, email)
    assert token.startswith(f"wpi_{tenant}_")
    assert token not in resp.text  # only the invitee sees it

    assert (await login(http, tenant, email, PW)).status_code == 401  # not accepted yet
    # An invited account gets no reset link (it has no password to reset).
    forgot = await http.post("/v1/auth/forgot-password", json={"tenant": tenant, "email": email})
    assert forgot.status_code == 202 and len(outbox(stack, email)) == 1

    for weak, rule in (("short", "at least 12 characters"), ("password1234", "too common"),
                       ("aaaaaaaaaaaaaaaa", "5 different characters"), (f"xx{email.split('@')[0]}yy!", "email")):
        resp = await http.post("/v1/auth/accept-invitation", json={"token": token, "password": weak})
        assert resp.status_code == 422, (weak, resp.text)
        err = error(resp)
        assert err["code"] == "WEAK_PASSWORD"
        assert err["details"][0]["field"] == "password" and rule in err["details"][0]["message"], err

    # A refused password does not use up the token.
    resp = await http.post("/v1/auth/accept-invitation", json={"token": token, "password": PW, "name": "Ivy Q"})
    assert resp.status_code == 204, resp.text
    tokens = await login_ok(http, tenant, email, PW)
    me = (await http.get("/v1/auth/me", headers=bearer(tokens["access_token"]))).json()["data"]
    assert me["status"] == "active" and me["name"] == "Ivy Q" and me["role"] == "operator"

    again = await http.post("/v1/auth/accept-invitation", json={"token": token, "password": NEW_PW})
    assert again.status_code == 400, again.text
    assert error(again)["code"] == "INVALID_TOKEN"
    assert (await login(http, tenant, email, NEW_PW)).status_code == 401


async def test_create_user_with_password_and_weak_password(stack: Any, http: Any) -> None:
    tenant = new_tenant_id("create")
    await create_tenant(stack, tenant, [])
    email = f"carl@{tenant}.example"
    weak = await http.post("/v1/users", json={"email": email, "role": "viewer", "password": "shortpw"},
                           headers=auth(tenant, "admin"))
    assert weak.status_code == 422 and error(weak)["code"] == "WEAK_PASSWORD"
    assert "12" in error(weak)["details"][0]["message"]
    resp = await http.post("/v1/users", json={"email": email, "role": "viewer", "password": PW},
                           headers=auth(tenant, "admin"))
    assert resp.status_code == 201, resp.text
    assert resp.json()["data"]["user"]["status"] == "active"
    assert outbox(stack, email) == []
    await login_ok(http, tenant, email)
    dup = await http.post("/v1/users", json={"email": email.upper(), "role": "viewer"}, headers=auth(tenant, "admin"))
    assert dup.status_code == 409, dup.text
    manager = await http.post("/v1/users", json={"email": f"m2@{tenant}.example", "role": "admin"},
                              headers=auth(tenant, "manager"))
    assert manager.status_code == 403, manager.text


async def test_forgot_and_reset_password(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("reset")
    await create_tenant(stack, tenant, [])
    email, _ = await add_user(stack, tenant, "operator")
    unknown = f"ghost@{tenant}.example"
    old_session = await login_ok(http, tenant, email)

    answers = [await http.post("/v1/auth/forgot-password", json={"tenant": tenant, "email": e})
               for e in (unknown, email)]
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].json() == answers[1].json()
    token = await wait_for_token(stack, email)
    assert outbox(stack, unknown) == []

    weak = await http.post("/v1/auth/reset-password", json={"token": token, "new_password": "tiny"})
    assert weak.status_code == 422 and error(weak)["code"] == "WEAK_PASSWORD"
    assert error(weak)["details"][0]["field"] == "new_password"
    resp = await http.post("/v1/auth/reset-password", json={"token": token, "new_password": NEW_PW})
    assert resp.status_code == 204, resp.text
    await login_ok(http, tenant, email, NEW_PW)
    assert (await login(http, tenant, email, PW)).status_code == 401
    # Every earlier session ended.
    assert (await http.get("/v1/auth/me", headers=bearer(old_session["access_token"]))).status_code == 401
    reuse = await http.post("/v1/auth/reset-password", json={"token": token, "new_password": PW})
    assert reuse.status_code == 400 and error(reuse)["code"] == "INVALID_TOKEN"

    # An expired token is refused (and stays unusable).
    await http.post("/v1/auth/forgot-password", json={"tenant": tenant, "email": email})
    expiring = await wait_for_token(stack, email, count=2)
    await db_conn.execute("UPDATE one_time_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
                          hashlib.sha256(expiring.encode()).digest())
    resp = await http.post("/v1/auth/reset-password", json={"token": expiring, "new_password": PW})
    assert resp.status_code == 400 and error(resp)["code"] == "INVALID_TOKEN"

    # Requests are throttled per account (a mailbox cannot be bombed), and a newer link does not void the
    # older one (else every request would kill the link just mailed); using one voids the others.
    await http.post("/v1/auth/forgot-password", json={"tenant": tenant, "email": email})
    older = await wait_for_token(stack, email, count=3)
    throttled = await http.post("/v1/auth/forgot-password", json={"tenant": tenant, "email": email})
    assert throttled.status_code == 429 and error(throttled)["code"] == "LOGIN_THROTTLED", throttled.text
    ghost = await http.post("/v1/auth/forgot-password", json={"tenant": tenant, "email": f"nobody@{tenant}.example"})
    assert ghost.status_code == 202  # another account: its own allowance

    async def accepted() -> bool:
        r = await http.post("/v1/auth/forgot-password", json={"tenant": tenant, "email": email})
        return r.status_code == 202

    await wait_for(accepted, timeout=10, interval=0.5)
    newer = await wait_for_token(stack, email, count=4)
    # A reset token is no invitation token, and the reverse.
    resp = await http.post("/v1/auth/accept-invitation", json={"token": newer, "password": PW})
    assert resp.status_code == 400, resp.text
    assert (await http.post("/v1/auth/reset-password", json={"token": older, "new_password": PW})).status_code == 204
    assert (await http.post("/v1/auth/reset-password", json={"token": newer, "new_password": PW})).status_code == 400
    await login_ok(http, tenant, email, PW)


async def test_change_password_ends_sessions(stack: Any, http: Any) -> None:
    tenant = new_tenant_id("chpw")
    await create_tenant(stack, tenant, [])
    email, _ = await add_user(stack, tenant, "viewer")
    h = bearer((await login_ok(http, tenant, email))["access_token"])
    wrong = await http.post("/v1/auth/password", json={"current_password": "nope nope nope", "new_password": NEW_PW},
                            headers=h)
    assert wrong.status_code == 401 and error(wrong)["code"] == "INVALID_CREDENTIALS"
    resp = await http.post("/v1/auth/password", json={"current_password": PW, "new_password": NEW_PW}, headers=h)
    assert resp.status_code == 204, resp.text
    assert (await http.get("/v1/auth/me", headers=h)).status_code == 401
    await login_ok(http, tenant, email, NEW_PW)


# ---------------------------------------------------------------------- MFA


def next_code(secret: str) -> str:
    """The code of the next 30 s step: accepted (one step of drift) and never the one just used."""
    return pyotp.TOTP(secret).at(time.time() + 30)


async def test_mfa_totp_login_and_replay(stack: Any, http: Any) -> None:
    tenant = new_tenant_id("mfa")
    await create_tenant(stack, tenant, [])
    email, _ = await add_user(stack, tenant, "operator")
    h = bearer((await login_ok(http, tenant, email))["access_token"])
    setup = await http.post("/v1/auth/mfa/setup", json={"password": PW}, headers=h)
    assert setup.status_code == 200, setup.text
    secret = setup.json()["data"]["secret"]
    assert setup.json()["data"]["otpauth_uri"].startswith("otpauth://totp/")
    bad = await http.post("/v1/auth/mfa/enable", json={"code": "12345"}, headers=h)
    assert bad.status_code == 422, bad.text
    resp = await http.post("/v1/auth/mfa/enable", json={"code": pyotp.TOTP(secret).now()}, headers=h)
    assert resp.status_code == 204, resp.text
    assert (await http.get("/v1/auth/me", headers=h)).status_code == 401  # sign in again, with a code

    missing = await login(http, tenant, email)
    assert missing.status_code == 401 and error(missing)["code"] == "MFA_REQUIRED"
    assert "access_token" not in missing.text
    wrong_pw = await login(http, tenant, email, "wrong password here", totp=next_code(secret))
    assert wrong_pw.status_code == 401 and error(wrong_pw)["code"] == "INVALID_CREDENTIALS"
    code = next_code(secret)
    ok = await login(http, tenant, email, totp=code)
    assert ok.status_code == 200, ok.text
    me = await http.get("/v1/auth/me", headers=bearer(ok.json()["data"]["access_token"]))
    assert me.json()["data"]["mfa_enabled"] is True
    replay = await login(http, tenant, email, totp=code)
    assert replay.status_code == 401, replay.text
    assert error(replay)["code"] == "INVALID_CREDENTIALS"
    assert "access_token" not in replay.text


async def test_totp_seed_sealed_at_rest_and_one_code_signs_in_once(stack: Any, http: Any) -> None:
    """The seed in the database is AES-GCM ciphertext; concurrent sign-ins with one code: one wins."""
    tenant = new_tenant_id("mfarace")
    await create_tenant(stack, tenant, [])
    email, _ = await add_user(stack, tenant, "operator")
    h = bearer((await login_ok(http, tenant, email))["access_token"])
    secret = (await http.post("/v1/auth/mfa/setup", json={"password": PW}, headers=h)).json()["data"]["secret"]
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        stored = await conn.fetchval("SELECT mfa_secret FROM users WHERE tenant_id = $1 AND email = $2",
                                     tenant, email)
    finally:
        await conn.close()
    assert stored.startswith("v1:") and secret not in stored
    resp = await http.post("/v1/auth/mfa/enable", json={"code": pyotp.TOTP(secret).now()}, headers=h)
    assert resp.status_code == 204, resp.text
    code = next_code(secret)
    results = await asyncio.gather(*(login(http, tenant, email, totp=code) for _ in range(4)))
    statuses = [r.status_code for r in results]
    assert statuses.count(200) == 1, statuses


async def test_tenant_policy_forces_admin_mfa_enrolment(stack: Any, http: Any) -> None:
    tenant = new_tenant_id("mfapol")
    await create_tenant(stack, tenant, [])
    email, _ = await add_user(stack, tenant, "admin")
    operator_email, _ = await add_user(stack, tenant, "operator")
    resp = await http.patch("/v1/tenant/settings", json={"mfa_required_for_admins": True},
                            headers=auth(tenant, "admin"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["mfa_required_for_admins"] is True
    forbidden = await http.patch("/v1/tenant/settings", json={"units": "metric"}, headers=auth(tenant, "manager"))
    assert forbidden.status_code == 403, forbidden.text

    # Non-admins are not affected.
    op = await login_ok(http, tenant, operator_email)
    assert op["mfa_setup_required"] is False
    assert (await http.get("/v1/alerts", headers=bearer(op["access_token"]))).status_code == 200

    data = await login_ok(http, tenant, email)
    assert data["mfa_setup_required"] is True
    h = bearer(data["access_token"])
    for method, path in (("GET", "/v1/alerts"), ("GET", "/v1/users"), ("GET", "/v1/tenant/settings")):
        resp = await http.request(method, path, headers=h)
        assert resp.status_code == 403, (path, resp.text)
        assert error(resp)["code"] == "MFA_SETUP_REQUIRED"
    # A refreshed token of that session is just as limited.
    rotated = await http.post("/v1/auth/refresh", json={"refresh_token": data["refresh_token"]})
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["data"]["mfa_setup_required"] is True
    resp = await http.get("/v1/alerts", headers=bearer(rotated.json()["data"]["access_token"]))
    assert resp.status_code == 403 and error(resp)["code"] == "MFA_SETUP_REQUIRED"

    h = bearer(rotated.json()["data"]["access_token"])
    assert (await http.get("/v1/auth/me", headers=h)).status_code == 200
    setup = await http.post("/v1/auth/mfa/setup", json={"password": PW}, headers=h)
    assert setup.status_code == 200, setup.text
    secret = setup.json()["data"]["secret"]
    resp = await http.post("/v1/auth/mfa/enable", json={"code": pyotp.TOTP(secret).now()}, headers=h)
    assert resp.status_code == 204, resp.text
    full = await login_ok(http, tenant, email, totp=next_code(secret))
    assert full["mfa_setup_required"] is False
    assert (await http.get("/v1/alerts", headers=bearer(full["access_token"]))).status_code == 200


# ---------------------------------------------------------------------- lockout


async def _failures_until_locked(stack: Any, http: Any, db_conn: Any, tenant: str, email: str,
                                 ) -> list[tuple[int, str]]:
    """Wrong passwords until the account locks, skipping each short backoff by clearing
    `locked_until` in the database (after checking that it was enforced)."""
    s = stack.settings
    key = throttle_key("account", f"{tenant}:{email}")
    seen: list[tuple[int, str]] = []
    for attempt in range(1, s.login_lock_after + 1):
        resp = await login(http, tenant, email, f"wrong password {attempt}")
        assert resp.status_code == 401, (attempt, resp.text)
        seen.append((resp.status_code, error(resp)["code"]))
        locked_until = await db_conn.fetchval("SELECT locked_until FROM login_throttle WHERE key = $1", key)
        if attempt <= s.login_slowdown_after:
            assert locked_until is None, attempt
            continue
        assert locked_until is not None, attempt
        if attempt == s.login_lock_after:
            break
        throttled = await login(http, tenant, email, f"wrong password {attempt}b")
        assert throttled.status_code == 429, (attempt, throttled.text)
        assert error(throttled)["code"] == "LOGIN_THROTTLED"
        assert int(throttled.headers["retry-after"]) >= 1
        seen.append((throttled.status_code, error(throttled)["code"]))
        await db_conn.execute("UPDATE login_throttle SET locked_until = now() - interval '1 second' WHERE key = $1",
                              key)
    failures = await db_conn.fetchval("SELECT failures FROM login_throttle WHERE key = $1", key)
    assert failures == s.login_lock_after
    return seen


async def test_lockout_known_and_unknown_accounts_alike(stack: Any, http: Any, db_conn: Any) -> None:
    s = stack.settings
    tenant = new_tenant_id("lock")
    await create_tenant(stack, tenant, [])
    email, _ = await add_user(stack, tenant, "operator")
    known = await _failures_until_locked(stack, http, db_conn, tenant, email)
    assert known[:s.login_slowdown_after] == [(401, "INVALID_CREDENTIALS")] * s.login_slowdown_after
    assert (429, "LOGIN_THROTTLED") in known

    # Locked: even the right password is refused, for the lock's whole length.
    right = await login(http, tenant, email, PW)
    assert right.status_code == 429, right.text
    assert error(right)["code"] == "LOGIN_THROTTLED"
    retry_after = int(right.headers["retry-after"])
    assert s.login_lock_seconds - 60 <= retry_after <= s.login_lock_seconds

    # Another account of the tenant is not locked by it (the address allows five times as many).
    other, _ = await add_user(stack, tenant, "viewer")
    await login_ok(http, tenant, other)

    # An unknown address in the same tenant goes through exactly the same steps.
    await db_conn.execute("DELETE FROM login_throttle WHERE key <> $1",
                          throttle_key("account", f"{tenant}:{email}"))
    ghost = f"ghost@{tenant}.example"
    assert await _failures_until_locked(stack, http, db_conn, tenant, ghost) == known
    resp = await login(http, tenant, ghost, PW)
    assert resp.status_code == 429 and error(resp)["code"] == "LOGIN_THROTTLED"
    assert abs(int(resp.headers["retry-after"]) - retry_after) <= 5


# ---------------------------------------------------------------------- API keys


async def test_api_key_lifecycle(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("keys")
    await create_tenant(stack, tenant, [("M-1", "meter")])
    admin_h = auth(tenant, "admin")
    resp = await http.post("/v1/api-keys", json={"name": "gateway 7", "scopes": ["telemetry:write"]},
                           headers=admin_h)
    assert resp.status_code == 201, resp.text
    created = resp.json()["data"]
    key, key_id = created["key"], created["id"]
    assert key.startswith(f"wpk_{tenant}_") and key.startswith(created["prefix"])
    assert created["scopes"] == ["telemetry:write"] and created["revoked_at"] is None

    listed = await http.get("/v1/api-keys", headers=admin_h)
    assert listed.status_code == 200, listed.text
    assert key not in listed.text and key.split("_", 2)[2] not in listed.text
    row = next(k for k in listed.json()["data"] if k["id"] == key_id)
    assert row["prefix"] == created["prefix"] and "key" not in row and row["last_used_at"] is None
    assert listed.json()["meta"]["pagination"]["total"] == 1

    kh = bearer(key)
    ingest = await http.post("/v1/telemetry", json=reading(), headers=kh)
    assert ingest.status_code == 202, ingest.text
    denied = await http.get("/v1/alerts", headers=kh)
    assert denied.status_code == 403, denied.text
    assert error(denied)["code"] == "FORBIDDEN" and "alerts:read" in error(denied)["message"]
    not_a_user = await http.get("/v1/auth/me", headers=kh)
    assert not_a_user.status_code == 403, not_a_user.text
    assert (await http.get("/v1/api-keys", headers=kh)).status_code == 403

    async def used() -> Any:
        return await db_conn.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", uuid.UUID(key_id))

    await wait_for(used, timeout=10)
    listed = (await http.get("/v1/api-keys", headers=admin_h)).json()["data"]
    assert next(k for k in listed if k["id"] == key_id)["last_used_at"] is not None

    for scopes in (["users:write"], ["api_keys:manage"], ["audit:read"], ["telemetry:write", "no:such"]):
        bad = await http.post("/v1/api-keys", json={"name": "x", "scopes": scopes}, headers=admin_h)
        assert bad.status_code == 422, (scopes, bad.text)
        assert error(bad)["details"][0]["field"] == "scopes"
    assert (await http.post("/v1/api-keys", json={"name": "x", "scopes": ["telemetry:read"]},
                            headers=auth(tenant, "manager"))).status_code == 403

    revoked = await http.delete(f"/v1/api-keys/{key_id}", headers=admin_h)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["data"]["revoked_at"] is not None and "key_hash_hex" not in revoked.text
    after = await http.post("/v1/telemetry", json=reading(), headers=kh)
    assert after.status_code == 401, after.text
    assert key not in after.text
    error(after)
    assert (await http.delete(f"/v1/api-keys/{uuid.uuid4()}", headers=admin_h)).status_code == 404

    # A key of one tenant names that tenant: it cannot be replayed against another's.
    forged = f"wpk_{new_tenant_id('other')}_{key.split('_', 2)[2]}"
    assert (await http.post("/v1/telemetry", json=reading(), headers=bearer(forged))).status_code == 401


async def test_api_key_prefix_shows_at_most_six_secret_characters(stack: Any, http: Any) -> None:
    """The listed prefix is `wpk_<tenant>_` plus six characters of the secret, whatever the secret
    contains (token_urlsafe uses '_' too: about half of all keys have one)."""
    tenant = new_tenant_id("prefix")
    await create_tenant(stack, tenant, [])
    leaks = []
    for i in range(12):
        resp = await http.post("/v1/api-keys", json={"name": f"k{i}", "scopes": ["telemetry:read"]},
                               headers=auth(tenant, "admin"))
        assert resp.status_code == 201, resp.text
        data = resp.json()["data"]
        secret = data["key"].split("_", 2)[2]
        if data["prefix"] != f"wpk_{tenant}_{secret[:6]}":
            leaks.append((data["prefix"], len(data["prefix"]) - len(f"wpk_{tenant}_")))
    assert not leaks, f"prefixes showing more than 6 secret characters (prefix, chars shown): {leaks}"


# ---------------------------------------------------------------------- hostile input


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_forged_tokens_are_refused_without_echo(stack: Any, http: Any) -> None:
    tenant = new_tenant_id("forge")
    await create_tenant(stack, tenant, [])
    me = (await http.get("/v1/auth/me", headers=auth(tenant, "admin"))).json()["data"]
    now = int(time.time())
    claims = {"iss": "wellpulse", "sub": me["id"], "tenant": tenant, "sid": me["session_id"], "role": "admin",
              "typ": "access", "iat": now, "nbf": now, "exp": now + 600}
    kid = {"kid": key_id(JWT_SECRET, "jwt")}

    def sign(c: dict[str, Any], key: str = JWT_SECRET, alg: str = "HS256", headers: Any = kid) -> str:
        return jwt.encode(c, key, algorithm=alg, headers=headers)

    forged = [
        _b64({"alg": "none", "typ": "JWT", **kid}) + "." + _b64(claims) + ".",
        _b64({"alg": "none", "typ": "JWT", **kid}) + "." + _b64(claims) + "." + _b64({}),
        sign(claims, "not-the-secret-but-long-enough-0123456789"),
        sign(claims, "dev-only-change-me-0123456789abcdef", headers=None),  # the old public default
        sign(claims, headers=None),  # the right key, but no kid
        sign(claims, headers={"kid": "0123456789abcdef"}),  # a kid nobody has
        sign(claims, "another-key-0123456789abcdef0123456789", headers={"kid": key_id("another", "jwt")}),
        sign({**claims, "exp": now - 10}),  # expired
        sign({**claims, "typ": "refresh"}),
        sign({**claims, "sid": str(uuid.uuid4())}),  # no such session
        sign({**claims, "tenant": new_tenant_id("x")}),  # other tenant
        sign({**claims, "iss": "evil"}),
        sign(claims, alg="HS512"),
        "x" * 5000,
        "wpk_" + "a" * 60,
        f"wpk_{tenant}_" + "b" * 43,
    ]
    for token in forged:
        resp = await http.get("/v1/users", headers=bearer(token))
        assert resp.status_code == 401, (token[:40], resp.text)
        err = error(resp)
        assert token not in resp.text and token[-20:] not in err["message"]
        assert resp.headers.get("www-authenticate", "").lower().startswith("bearer")
    # The genuine claims with the right secret do work (the forgeries failed for their flaw).
    assert (await http.get("/v1/users", headers=bearer(sign(claims)))).status_code == 200
    nothing = await http.get("/v1/users")
    assert nothing.status_code == 401 and error(nothing)["code"] == "UNAUTHORIZED"


async def test_bad_bodies_get_4xx_envelopes_never_500(stack: Any, http: Any) -> None:
    tenant = new_tenant_id("badbody")
    await create_tenant(stack, tenant, [])
    admin_h = auth(tenant, "admin")
    json_h = {"Content-Type": "application/json"}
    long = "a" * 100_000
    cases: list[tuple[str, str, Any, dict[str, str]]] = [
        ("POST", "/v1/auth/login", b"{not json", json_h),
        ("POST", "/v1/auth/login", b"[]", json_h),
        ("POST", "/v1/auth/login", b"", json_h),
        ("POST", "/v1/auth/login", b"[" * 100_000 + b"]" * 100_000, json_h),
        ("POST", "/v1/auth/login", {"tenant": tenant, "email": long + "@x.example", "password": PW}, {}),
        ("POST", "/v1/auth/login", {"tenant": tenant, "email": f"a@{tenant}.example", "password": long}, {}),
        ("POST", "/v1/auth/login", {"tenant": long, "email": f"a@{tenant}.example", "password": PW}, {}),
        ("POST", "/v1/auth/login", {"tenant": "T_UPPER'; --", "email": "a@b.example", "password": PW}, {}),
        ("POST", "/v1/auth/login", {"tenant": tenant, "email": "not-an-email", "password": PW}, {}),
        ("POST", "/v1/auth/login", {"tenant": tenant, "email": f"a@{tenant}.example", "password": PW,
                                    "totp": "12ab56"}, {}),
        ("POST", "/v1/auth/login", {"tenant": tenant, "email": f"a@{tenant}.example", "password": PW,
                                    "role": "admin"}, {}),
        ("POST", "/v1/auth/refresh", {"refresh_token": long}, {}),
        ("POST", "/v1/auth/refresh", {"refresh_token": "wpr_" + "z" * 60}, {}),
        ("POST", "/v1/auth/refresh", b"{", json_h),
        ("POST", "/v1/auth/forgot-password", {"tenant": tenant, "email": long}, {}),
        ("POST", "/v1/auth/reset-password", {"token": "wpp_" + "x" * 50, "new_password": PW}, {}),
        ("POST", "/v1/auth/reset-password", {"token": f"wpp_{tenant}_" + "x" * 50, "new_password": long}, {}),
        ("POST", "/v1/auth/accept-invitation", {"token": long, "password": PW}, {}),
        ("POST", "/v1/auth/accept-invitation", {"token": f"wpi_{tenant}_" + "y" * 50, "password": PW,
                                                "name": long}, {}),
        ("POST", "/v1/users", {"email": f"n@{tenant}.example", "role": "viewer", "name": long}, admin_h),
        ("POST", "/v1/users", {"email": f"n@{tenant}.example", "role": "superuser"}, admin_h),
        ("POST", "/v1/users", b"\xff\xfe\x00", {**admin_h, **json_h}),
        ("PATCH", "/v1/users/not-a-uuid/role", {"role": "viewer"}, admin_h),
        ("PATCH", f"/v1/users/{uuid.uuid4()}/role", {"role": "viewer"}, admin_h),
        ("POST", "/v1/api-keys", {"name": long, "scopes": ["telemetry:read"]}, admin_h),
        ("POST", "/v1/api-keys", {"name": "k", "scopes": ["telemetry:read"] * 1000}, admin_h),
        ("POST", "/v1/api-keys", {"name": "k", "scopes": []}, admin_h),
        ("PATCH", "/v1/tenant/settings", {"timezone": "Mars/Olympus"}, admin_h),
        ("PATCH", "/v1/tenant/settings", {"timezone": long}, admin_h),
        ("GET", "/v1/audit-logs?from=yesterday", None, admin_h),
        ("GET", "/v1/audit-logs?from=2026-01-01T00:00:00", None, admin_h),
        ("GET", "/v1/audit-logs?action=" + "a" * 501, None, admin_h),
        ("GET", "/v1/audit-logs?page=0", None, admin_h),
    ]
    for method, path, body, headers in cases:
        kwargs: dict[str, Any] = {"headers": headers}
        if isinstance(body, bytes):
            kwargs["content"] = body
        elif body is not None:
            kwargs["json"] = body
        resp = await http.request(method, path, **kwargs)
        assert 400 <= resp.status_code < 500, (method, path, str(body)[:80], resp.status_code, resp.text[:300])
        error(resp)
        assert long not in resp.text, (path, "the over-long value is echoed back")
