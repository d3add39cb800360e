"""Identity services: sign-in, sessions, passwords, MFA, users, API keys, tenant settings.

Routes parse and call these; these open the unit of work (`Services.tenant_tx`), write
the audit row in the same transaction, and push auth changes to every replica after the
commit. Errors are `ApiError`s with messages safe to show.
"""

import asyncio
import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from config.secrets import SecretBox
from schema.identity import (
    ApiKeyCreate,
    LoginRequest,
    TenantSettings,
    TenantSettingsUpdate,
    UserCreate,
)
from serve.auth import API_KEY_SCOPES, PERMISSIONS, Principal, mint_access_token
from serve.errors import ApiError
from serve.security import (
    WeakPassword,
    check_password_policy,
    display_prefix,
    new_token,
    new_totp_secret,
    token_hash,
    token_tenant,
    totp_uri,
    verify_totp,
)
from serve.services import Services
from store import audit, identity
from store.audit import AuditContext

log = logging.getLogger(__name__)
INVALID_LOGIN = "invalid tenant, email or password"
TENANT_SETTING_DEFAULTS: dict[str, Any] = {"timezone": "UTC", "units": "imperial", "mfa_required_for_admins": False,
                                           "escalate_after_minutes": None, "max_shelve_minutes": 480,
                                           "sync_strategies": {},  # TenantSettings fills in the defaults
                                           "anomaly_sensitivity": "medium", "anomaly_sensitivity_by_type": {}}


@dataclass(frozen=True)
class IssuedTokens:
    session_id: str
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_at: datetime
    mfa_setup_required: bool


def _weak(exc: WeakPassword, field: str) -> ApiError:
    return ApiError(422, "password refused", code="WEAK_PASSWORD", details=[{"field": field, "message": str(exc)}])


def _totp_seed(services: Services, user: asyncpg.Record) -> str:
    """The user's TOTP seed, opened with the data key (a seed stored before encryption is read as is until the
    next start seals it)."""
    stored = str(user["mfa_secret"])
    return SecretBox.from_settings(services.settings).open(stored) if SecretBox.is_sealed(stored) else stored


def _throttle_key(services: Services, kind: str, value: str) -> bytes:
    # Keyed, so the table holds no email or address in clear (and none can be guessed from it).
    secret = services.settings.secret("jwt_secret").encode()
    return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).digest()


# ---------------------------------------------------------------------- sign-in


async def login(services: Services, body: LoginRequest, *, ip: str | None, user_agent: str | None,
                request_id: str | None) -> IssuedTokens:
    keys = _credential_keys(services, body.tenant, body.email, ip)
    await _attempt(services, keys)
    async with services.tenant_tx(body.tenant) as conn:
        user = await identity.get_user_for_login(conn, body.tenant, body.email)
    stored = user["password_hash"] if user is not None and user["status"] == "active" else None
    # argon2 is CPU-bound for tens of ms: off the event loop, and run for unknown users too.
    ok = await asyncio.to_thread(services.passwords.verify, stored, body.password)
    if not ok:
        raise ApiError(401, INVALID_LOGIN, code="INVALID_CREDENTIALS")
    assert user is not None  # noqa: S101  narrows a type; not a check of input
    user_id = str(user["id"])
    async with services.tenant_tx(body.tenant) as conn:
        tenant = await identity.get_tenant(conn, body.tenant)
        policy = tenant_policy(tenant)
        mfa_setup_only = False
        if user["mfa_enabled"]:
            if body.totp is None:
                raise ApiError(401, "a TOTP code is required", code="MFA_REQUIRED")
            check = verify_totp(_totp_seed(services, user), body.totp, last_step=user["mfa_last_step"])
            if (not check.ok or check.step is None  # a good code has its step
                    or not await identity.claim_totp_step(conn, body.tenant, user_id, check.step)):
                raise ApiError(401, "invalid TOTP code", code="INVALID_CREDENTIALS")
        elif user["role"] == "admin" and policy["mfa_required_for_admins"]:
            mfa_setup_only = True
        if services.passwords.needs_rehash(user["password_hash"]):
            new_hash = await asyncio.to_thread(services.passwords.hash, body.password)
            await identity.update_user(conn, body.tenant, user_id, password_hash=new_hash)
        await identity.update_user(conn, body.tenant, user_id, last_login_at=datetime.now(UTC))
        tokens = await _new_session(services, conn, body.tenant, user_id, user["role"], ip=ip,
                                    user_agent=user_agent, mfa_setup_only=mfa_setup_only)
        await audit.record(conn, AuditContext(body.tenant, "user", user_id, ip, request_id), action="login",
                           entity_type="session", entity_id=tokens.session_id, new={"client": body.client,
                                                                      "mfa": bool(user["mfa_enabled"])})
    await _succeeded(services, keys)
    return tokens


def _credential_keys(services: Services, tenant_id: str, email: str, ip: str | None) -> list[bytes]:
    """Throttle keys of a credential check: the account first, then the client's address."""
    keys = [_throttle_key(services, "account", f"{tenant_id}:{email.lower()}")]
    if ip:
        keys.append(_throttle_key(services, "address", ip))
    return keys


async def _attempt(services: Services, keys: list[bytes], *, what: str = "sign-ins",
                   allowance: tuple[int, int] | None = None) -> None:
    """Count an attempt on every key before the credential is checked; 429 when one of them is locked.

    Every endpoint that checks a password or a code goes through here, so a stolen session cannot guess
    the password at /auth/password, nor a TOTP code at /mfa/disable, any faster than at sign-in.
    """
    s = services.settings
    slowdown, lock = allowance or (s.login_slowdown_after, s.login_lock_after)
    for i, key in enumerate(keys):
        # An address may be shared (a field office's NAT): it gets five times the account's allowance.
        factor = 1 if i == 0 else 5
        state = await identity.count_attempt(
            services.pool, key, slowdown_after=slowdown * factor, lock_after=lock * factor,
            lock_seconds=s.login_lock_seconds, forget_after=timedelta(seconds=s.login_lock_seconds))
        if state.refused:
            locked = state.locked_until or datetime.now(UTC)
            wait = max(1, int((locked - datetime.now(UTC)).total_seconds() + 0.999))
            raise ApiError(429, f"too many {what}; try again in {wait} s", code="LOGIN_THROTTLED",
                           headers={"Retry-After": str(wait)})


async def _principal_attempt(services: Services, principal: Principal, ctx: AuditContext) -> list[bytes]:
    """`_attempt` for a signed-in user re-entering a credential: the same account key as sign-in."""
    keys = _credential_keys(services, principal.tenant_id, principal.email or principal.subject, ctx.ip)
    await _attempt(services, keys)
    return keys


async def _succeeded(services: Services, keys: list[bytes]) -> None:
    await identity.clear_login_failures(services.pool, keys[0])
    for key in keys[1:]:
        await identity.forget_attempt(services.pool, key)


async def _new_session(services: Services, conn: Any, tenant_id: str, user_id: str, role: str, *, ip: str | None,
                       user_agent: str | None, mfa_setup_only: bool) -> IssuedTokens:
    s = services.settings
    lifetime = timedelta(days=s.refresh_token_days)
    session_id = await identity.create_session(conn, tenant_id, user_id, lifetime=lifetime, ip=ip,
                                               user_agent=user_agent, mfa_setup_only=mfa_setup_only)
    return await _issue(services, conn, tenant_id, user_id, role, session_id, mfa_setup_only)


async def _issue(services: Services, conn: Any, tenant_id: str, user_id: str, role: str, session_id: str,
                 mfa_setup_only: bool) -> IssuedTokens:
    s = services.settings
    refresh = new_token("refresh", tenant_id)
    expires_at = datetime.now(UTC) + timedelta(days=s.refresh_token_days)
    await identity.add_refresh_token(conn, tenant_id, session_id, token_hash(refresh), expires_at)
    access = mint_access_token(s.secret("jwt_secret"), tenant_id=tenant_id, user_id=user_id,
                               session_id=session_id, role=role, minutes=s.access_token_minutes, issuer=s.jwt_issuer)
    return IssuedTokens(session_id, access, refresh, s.access_token_minutes * 60, expires_at, mfa_setup_only)


async def refresh(services: Services, token: str) -> IssuedTokens:
    """Rotate: the old refresh token is spent; presenting a spent one revokes its whole family."""
    try:
        tenant_id = token_tenant("refresh", token)
    except ValueError as exc:
        raise ApiError(401, "invalid refresh token", code="INVALID_REFRESH_TOKEN") from exc
    digest = token_hash(token)
    reused_session: str | None = None
    async with services.tenant_tx(tenant_id) as conn:
        row = await identity.take_refresh_token(conn, tenant_id, digest)
        now = datetime.now(UTC)
        if row is None:
            raise ApiError(401, "invalid refresh token", code="INVALID_REFRESH_TOKEN")
        session_id = str(row["session_id"])
        if row["used_at"] is not None:
            # A spent token came back: it was stolen, or the client is confused. End the family.
            if await identity.revoke_session(conn, tenant_id, session_id, "refresh token reused"):
                await audit.record(conn, AuditContext(tenant_id, "system", "auth"), action="revoke",
                                   entity_type="session", entity_id=session_id,
                                   new={"reason": "refresh token reused"})
            reused_session = session_id
        elif (row["revoked_at"] is not None or row["expires_at"] <= now or row["session_expires_at"] <= now
              or row["status"] != "active" or row["deleted_at"] is not None):
            raise ApiError(401, "session ended", code="INVALID_REFRESH_TOKEN")
        else:
            await identity.mark_refresh_used(conn, tenant_id, digest)
            await identity.touch_session(conn, tenant_id, session_id)
            tokens = await _issue(services, conn, tenant_id, str(row["user_id"]), row["role"], session_id,
                                  row["mfa_setup_only"])
    if reused_session is not None:
        await services.auth.changed(tenant_id, session_id=reused_session)
        raise ApiError(401, "refresh token already used; the session is revoked", code="REFRESH_TOKEN_REUSED")
    return tokens


async def logout(services: Services, principal: Principal, ctx: AuditContext) -> None:
    if principal.session_id is None:
        return
    async with services.tenant_tx(principal.tenant_id) as conn:
        if await identity.revoke_session(conn, principal.tenant_id, principal.session_id, "logout"):
            await audit.record(conn, ctx, action="logout", entity_type="session", entity_id=principal.session_id)
    await services.auth.changed(principal.tenant_id, session_id=principal.session_id)


# ---------------------------------------------------------------------- passwords


async def forgot_password(services: Services, tenant_id: str, email: str, *, ip: str | None = None) -> None:
    """Sends a reset link if the account exists; the caller answers the same either way.

    Throttled per account and per address (known or not, alike), so nobody can bomb a mailbox; a new link
    does not void the last one (each expires, and either one works once).
    """
    keys = [_throttle_key(services, "reset", f"{tenant_id}:{email.lower()}")]
    if ip:
        keys.append(_throttle_key(services, "reset-address", ip))
    await _attempt(services, keys, what="reset requests", allowance=(2, 5))
    s = services.settings
    async with services.tenant_tx(tenant_id) as conn:
        user = await identity.get_user_for_login(conn, tenant_id, email)
        if user is None or user["status"] != "active":
            return
        token = new_token("password_reset", tenant_id)
        await identity.add_one_time_token(conn, tenant_id, str(user["id"]), purpose="password_reset",
                                          digest=token_hash(token),
                                          lifetime=timedelta(minutes=s.password_reset_minutes))
    await services.sender.send(
        to=email, subject="Reset your WellPulse password",
        body=f"Use this link within {s.password_reset_minutes} minutes to choose a new password:\n"
             f"{s.public_url}/reset-password?token={token}\n(token: {token})")


async def reset_password(services: Services, token: str, new_password: str, *, ip: str | None,
                         request_id: str | None) -> None:
    await _use_token_set_password(services, token, new_password, purpose="password_reset", name=None, ip=ip,
                                  request_id=request_id)


async def accept_invitation(services: Services, token: str, password: str, name: str | None, *, ip: str | None,
                            request_id: str | None) -> None:
    await _use_token_set_password(services, token, password, purpose="invitation", name=name, ip=ip,
                                  request_id=request_id)


async def _use_token_set_password(services: Services, token: str, password: str, *, purpose: str,
                                  name: str | None, ip: str | None, request_id: str | None) -> None:
    bad = ApiError(400, "invalid or expired token", code="INVALID_TOKEN", details=[{"field": "token",
                                                                                 "message": "not usable"}])
    try:
        tenant_id = token_tenant(purpose, token)
    except ValueError as exc:
        raise bad from exc
    async with services.tenant_tx(tenant_id) as conn:
        user_id = await identity.use_one_time_token(conn, tenant_id, token_hash(token), purpose)
        if user_id is None:
            raise bad
        user = await identity.get_user(conn, tenant_id, user_id)
        if user is None or user["status"] == "deactivated":
            raise bad
        try:
            check_password_policy(password, email=user["email"])
        except WeakPassword as exc:
            raise _weak(exc, "password" if purpose == "invitation" else "new_password") from exc
        password_hash = await asyncio.to_thread(services.passwords.hash, password)
        changes: dict[str, Any] = {"password_hash": password_hash, "password_changed_at": datetime.now(UTC)}
        if purpose == "invitation":
            changes["status"] = "active"
            if name:
                changes["name"] = name
        await identity.update_user(conn, tenant_id, user_id, **changes)
        await identity.revoke_user_sessions(conn, tenant_id, user_id, "password set")
        await audit.record(conn, AuditContext(tenant_id, "user", user_id, ip, request_id),
                           action="accept_invitation" if purpose == "invitation" else "reset_password",
                           entity_type="user", entity_id=user_id)
    await services.auth.changed(tenant_id, user_id=user_id)


async def change_password(services: Services, principal: Principal, ctx: AuditContext, current: str, new: str,
                          ) -> None:
    keys = await _principal_attempt(services, principal, ctx)
    async with services.tenant_tx(principal.tenant_id) as conn:
        user = await identity.get_user_secrets(conn, principal.tenant_id, principal.subject)
        if user is None or not await asyncio.to_thread(services.passwords.verify, user["password_hash"], current):
            raise ApiError(401, "current password is wrong", code="INVALID_CREDENTIALS")
        await _succeeded(services, keys)
        try:
            check_password_policy(new, email=user["email"])
        except WeakPassword as exc:
            raise _weak(exc, "new_password") from exc
        new_hash = await asyncio.to_thread(services.passwords.hash, new)
        await identity.update_user(conn, principal.tenant_id, principal.subject, password_hash=new_hash,
                                   password_changed_at=datetime.now(UTC))
        ended = await identity.revoke_user_sessions(conn, principal.tenant_id, principal.subject, "password changed")
        await audit.record(conn, ctx, action="change_password", entity_type="user", entity_id=principal.subject,
                           new={"sessions_ended": len(ended)})
    await services.auth.changed(principal.tenant_id, user_id=principal.subject)


# ---------------------------------------------------------------------- MFA


async def mfa_setup(services: Services, principal: Principal, ctx: AuditContext, password: str,
                    ) -> tuple[str, str]:
    """A new TOTP seed, after the password is given again: a stolen session alone cannot enrol its own factor."""
    secret = new_totp_secret()
    keys = await _principal_attempt(services, principal, ctx)
    async with services.tenant_tx(principal.tenant_id) as conn:
        user = await identity.get_user_secrets(conn, principal.tenant_id, principal.subject)
        if user is None:
            raise ApiError(404, "user not found")
        if not await asyncio.to_thread(services.passwords.verify, user["password_hash"], password):
            raise ApiError(401, "password is wrong", code="INVALID_CREDENTIALS")
        await _succeeded(services, keys)
        if user["mfa_enabled"]:
            raise ApiError(409, "multi-factor sign-in is already on; disable it first")
        await identity.update_user(conn, principal.tenant_id, principal.subject,
                                   mfa_secret=SecretBox.from_settings(services.settings).seal(secret))
        await audit.record(conn, ctx, action="mfa_setup", entity_type="user", entity_id=principal.subject)
    return secret, totp_uri(secret, email=user["email"], issuer="WellPulse")


async def mfa_enable(services: Services, principal: Principal, ctx: AuditContext, code: str) -> None:
    keys = await _principal_attempt(services, principal, ctx)
    async with services.tenant_tx(principal.tenant_id) as conn:
        user = await identity.get_user_secrets(conn, principal.tenant_id, principal.subject)
        if user is None or not user["mfa_secret"]:
            raise ApiError(409, "call /v1/auth/mfa/setup first")
        check = verify_totp(_totp_seed(services, user), code, last_step=user["mfa_last_step"])
        if not check.ok:
            raise ApiError(422, "invalid TOTP code", details=[{"field": "code", "message": "does not match"}])
        await _succeeded(services, keys)
        await identity.update_user(conn, principal.tenant_id, principal.subject, mfa_enabled=True,
                                   mfa_last_step=check.step)
        # Sessions signed in only to enrol must sign in again, now with a code.
        await identity.revoke_user_sessions(conn, principal.tenant_id, principal.subject, "mfa enabled")
        await audit.record(conn, ctx, action="mfa_enable", entity_type="user", entity_id=principal.subject)
    await services.auth.changed(principal.tenant_id, user_id=principal.subject)


async def mfa_disable(services: Services, principal: Principal, ctx: AuditContext, code: str) -> None:
    keys = await _principal_attempt(services, principal, ctx)
    async with services.tenant_tx(principal.tenant_id) as conn:
        user = await identity.get_user_secrets(conn, principal.tenant_id, principal.subject)
        if user is None or not user["mfa_enabled"]:
            raise ApiError(409, "multi-factor sign-in is not on")
        tenant = await identity.get_tenant(conn, principal.tenant_id)
        policy = tenant_policy(tenant)
        if user["role"] == "admin" and policy["mfa_required_for_admins"]:
            raise ApiError(409, "this tenant requires multi-factor sign-in for admins")
        if not verify_totp(_totp_seed(services, user), code, last_step=user["mfa_last_step"]).ok:
            raise ApiError(422, "invalid TOTP code", details=[{"field": "code", "message": "does not match"}])
        await _succeeded(services, keys)
        await identity.update_user(conn, principal.tenant_id, principal.subject, mfa_enabled=False,
                                   mfa_secret=None, mfa_last_step=None)
        await audit.record(conn, ctx, action="mfa_disable", entity_type="user", entity_id=principal.subject)


# ---------------------------------------------------------------------- users


async def create_user(services: Services, ctx: AuditContext, body: UserCreate,
                      ) -> tuple[dict[str, Any], datetime | None]:
    s = services.settings
    password_hash = None
    if body.password is not None:
        try:
            check_password_policy(body.password, email=body.email)
        except WeakPassword as exc:
            raise _weak(exc, "password") from exc
        password_hash = await asyncio.to_thread(services.passwords.hash, body.password)
    token = None
    expires_at = None
    async with services.tenant_tx(ctx.tenant_id) as conn:
        if await conn.fetchval("SELECT 1 FROM users WHERE tenant_id = $1 AND email = $2 AND deleted_at IS NULL",
                               ctx.tenant_id, body.email):
            raise ApiError(409, "a user with this email exists", code="CONFLICT",
                           details=[{"field": "email", "message": "already in use"}])
        try:
            async with conn.transaction():  # a savepoint: the race with a concurrent invitation is a 409
                user = await identity.create_user(
                    conn, ctx.tenant_id, email=body.email, name=body.name, role=body.role,
                    status="active" if password_hash else "invited", password_hash=password_hash,
                    invited_by=ctx.actor_id if ctx.actor_type == "user" else None)
        except asyncpg.UniqueViolationError as exc:
            raise ApiError(409, "a user with this email exists", code="CONFLICT",
                           details=[{"field": "email", "message": "already in use"}]) from exc
        if password_hash is None:
            token = new_token("invitation", ctx.tenant_id)
            expires_at = await identity.add_one_time_token(
                conn, ctx.tenant_id, str(user["id"]), purpose="invitation", digest=token_hash(token),
                lifetime=timedelta(days=s.invitation_days))
        await audit.record(conn, ctx, action="create" if password_hash else "invite", entity_type="user",
                           entity_id=str(user["id"]), new=dict(user))
    if token is not None:
        await services.sender.send(
            to=body.email, subject="You are invited to WellPulse",
            body=f"You were invited to tenant {ctx.tenant_id} as {body.role}. Set your password within "
                 f"{s.invitation_days} days:\n{s.public_url}/accept-invitation?token={token}\n(token: {token})")
    return dict(user), expires_at


async def get_user(services: Services, tenant_id: str, user_id: str) -> dict[str, Any]:
    async with services.tenant_tx(tenant_id) as conn:
        user = await identity.get_user(conn, tenant_id, user_id)
    if user is None:
        raise ApiError(404, f"user {user_id} not found")
    return dict(user)


async def update_user(services: Services, ctx: AuditContext, user_id: str, *, action: str,
                      end_sessions: bool = False, **changes: Any) -> dict[str, Any]:
    """One change of a user, with the guard that a tenant never loses its last active admin."""
    async with services.tenant_tx(ctx.tenant_id) as conn:
        old = await identity.get_user(conn, ctx.tenant_id, user_id)
        if old is None:
            raise ApiError(404, f"user {user_id} not found")
        loses_admin = old["role"] == "admin" and old["status"] == "active" and (
            changes.get("role", "admin") != "admin" or changes.get("status", "active") != "active"
            or "deleted_at" in changes)
        if loses_admin and await identity.count_active_admins(conn, ctx.tenant_id) <= 1:
            raise ApiError(409, "the tenant must keep at least one active admin", code="LAST_ADMIN")
        new = await identity.update_user(conn, ctx.tenant_id, user_id, **changes)
        if end_sessions:
            await identity.revoke_user_sessions(conn, ctx.tenant_id, user_id, action)
        await audit.record(conn, ctx, action=action, entity_type="user", entity_id=user_id, old=dict(old),
                           new=dict(new) if new is not None else {"deleted": True})
    await services.auth.changed(ctx.tenant_id, user_id=user_id)
    return dict(new) if new is not None else dict(old)


# ---------------------------------------------------------------------- API keys


async def create_api_key(services: Services, ctx: AuditContext, body: ApiKeyCreate) -> tuple[dict[str, Any], str]:
    unknown = sorted(set(body.scopes) - API_KEY_SCOPES)
    if unknown:
        allowed = ", ".join(sorted(API_KEY_SCOPES))
        raise ApiError(422, "unknown or forbidden scope",
                       details=[{"field": "scopes", "message": f"{', '.join(unknown)} not allowed; use {allowed}"}])
    key = new_token("api_key", ctx.tenant_id)
    expires_at = datetime.now(UTC) + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    async with services.tenant_tx(ctx.tenant_id) as conn:
        row = await identity.create_api_key(conn, ctx.tenant_id, name=body.name, prefix=display_prefix(key),
                                            digest=token_hash(key), scopes=sorted(set(body.scopes)),
                                            created_by=ctx.actor_id if ctx.actor_type == "user" else None,
                                            expires_at=expires_at)
        await audit.record(conn, ctx, action="create", entity_type="api_key", entity_id=str(row["id"]),
                           new=dict(row))
    return dict(row), key


async def revoke_api_key(services: Services, ctx: AuditContext, key_id: str) -> dict[str, Any]:
    async with services.tenant_tx(ctx.tenant_id) as conn:
        old = await identity.get_api_key(conn, ctx.tenant_id, key_id)
        if old is None:
            raise ApiError(404, f"API key {key_id} not found")
        row = await identity.revoke_api_key(conn, ctx.tenant_id, key_id)
        if row is None:  # deleted since the read above
            raise ApiError(404, f"API key {key_id} not found")
        public = {k: v for k, v in dict(row).items() if k != "key_hash_hex"}
        await audit.record(conn, ctx, action="revoke", entity_type="api_key", entity_id=key_id, old=dict(old),
                           new=public)
    await services.auth.changed(ctx.tenant_id, key_hash=row["key_hash_hex"])
    return public


# ---------------------------------------------------------------------- tenant settings


def tenant_policy(row: Any) -> dict[str, Any]:
    """A tenant's settings over the defaults (a missing tenant gets the defaults)."""
    return {**TENANT_SETTING_DEFAULTS, **((row["settings"] if row is not None else None) or {})}


def tenant_settings(row: Any) -> TenantSettings:
    merged = tenant_policy(row)
    return TenantSettings(id=row["id"], name=row["name"], **{k: merged[k] for k in TENANT_SETTING_DEFAULTS})


async def get_tenant_settings(services: Services, tenant_id: str) -> TenantSettings:
    async with services.tenant_tx(tenant_id) as conn:
        row = await identity.get_tenant(conn, tenant_id)
    if row is None:
        raise ApiError(404, "tenant not found")
    return tenant_settings(row)


async def update_tenant_settings(services: Services, ctx: AuditContext, body: TenantSettingsUpdate,
                                 ) -> TenantSettings:
    changes = body.model_dump(exclude_none=True)
    async with services.tenant_tx(ctx.tenant_id) as conn:
        row = await identity.get_tenant(conn, ctx.tenant_id)
        if row is None:
            raise ApiError(404, "tenant not found")
        old = tenant_settings(row)
        settings = {**(row["settings"] or {}), **{k: v for k, v in changes.items() if k != "name"}}
        new_row = await identity.update_tenant(conn, ctx.tenant_id, name=changes.get("name", row["name"]),
                                               settings=settings)
        new = tenant_settings(new_row)
        await audit.record(conn, ctx, action="update", entity_type="tenant", entity_id=ctx.tenant_id,
                           old=old.model_dump(), new=new.model_dump())
    if {"anomaly_sensitivity", "anomaly_sensitivity_by_type"} & changes.keys():
        await services.notify_actors(ctx.tenant_id, "registry")  # the models' rules follow the new choice
    return new


def permissions_of(principal: Principal) -> list[str]:
    return sorted(p for p in PERMISSIONS if principal.can(p))
