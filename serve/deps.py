"""FastAPI dependencies: services, the caller, permission checks and the audit context.

Auth and tenant scope are parameters of a route, never code inside it:

    async def list_users(principal: Annotated[Principal, require("users:read")], ...)
"""

import uuid
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from serve.auth import AuthError, Principal, PrincipalKind, Role, jwt_keys, verify_access_token
from serve.edge import client_address
from serve.errors import ApiError
from serve.ratelimit import enforce_rate_limit
from serve.security import token_hash, token_tenant
from serve.services import Services
from store.audit import AuditContext

ACCESS_COOKIE = "wp_access"
REFRESH_COOKIE = "wp_refresh"
CSRF_HEADER = "X-WellPulse-CSRF"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


async def get_services(request: HTTPConnection) -> Services:
    """The replica's ready `Services` (a WebSocket connect asks for them too)."""
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        # Created in the replica on first use; the app object Serve hands requests to is
        # not the one the deployment class saw, so it cannot be attached earlier.
        services = request.app.state.services = Services(request.app.state.settings)
    try:
        return await services.ready()
    except Exception as exc:
        raise ApiError(503, f"backing services unavailable: {type(exc).__name__}") from exc


ServicesDep = Annotated[Services, Depends(get_services)]


def bearer_token(authorization: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


async def authenticate(services: Services, token: str | None) -> Principal:
    """A principal for an access JWT or an API key, or `ApiError` 401 (the reason never echoes the token)."""
    if not token:
        raise ApiError(401, "missing credentials", headers=_UNAUTHORIZED)
    if token.startswith("wpk_"):
        return await _api_key_principal(services, token)
    settings = services.settings
    try:
        claims = verify_access_token(jwt_keys(settings), token, issuer=settings.jwt_issuer)
    except AuthError as exc:
        raise ApiError(401, str(exc), headers=_UNAUTHORIZED) from exc
    state = await services.auth.user_state(claims.tenant_id, claims.user_id, claims.session_id)
    if state is None or not state.session_live:
        raise ApiError(401, "session ended", headers=_UNAUTHORIZED)
    if not state.active:
        raise ApiError(401, "account is not active", headers=_UNAUTHORIZED)
    return Principal(tenant_id=claims.tenant_id, subject=claims.user_id, kind=PrincipalKind.USER,
                     role=Role(state.role), session_id=claims.session_id, email=state.email,
                     mfa_setup_only=state.mfa_setup_only, expires_at=claims.expires_at)


async def _api_key_principal(services: Services, key: str) -> Principal:
    try:
        tenant_id = token_tenant("api_key", key)
    except ValueError as exc:
        raise ApiError(401, "invalid API key", headers=_UNAUTHORIZED) from exc
    state = await services.auth.api_key(tenant_id, token_hash(key))
    if state is None or not state.live:
        raise ApiError(401, "invalid API key", headers=_UNAUTHORIZED)
    return Principal(tenant_id=tenant_id, subject=state.key_id, kind=PrincipalKind.API_KEY, scopes=state.scopes)


def request_credential(request: Request) -> str | None:
    return bearer_token(request.headers.get("authorization")) or request.cookies.get(ACCESS_COOKIE)


def check_csrf(request: Request) -> None:
    """A request that changes state on the strength of a cookie must come from our own pages.

    The cookies are SameSite=Strict already; on top of that such a request must carry ``X-WellPulse-CSRF``
    (a header a cross-site form cannot send, and cross-origin scripts may not without a CORS grant), and an
    ``Origin``, when the browser sends one, must be this server or an allowed CORS origin.
    """
    if request.method in SAFE_METHODS:
        return
    if not request.headers.get(CSRF_HEADER):
        raise ApiError(403, f"a signed-in browser request that changes state needs the {CSRF_HEADER} header",
                       code="CSRF_REJECTED")
    if not same_origin(request):
        raise ApiError(403, "cross-origin request refused", code="CSRF_REJECTED")


def same_origin(connection: HTTPConnection) -> bool:
    """No ``Origin`` (not a browser's cross-origin request), this server's, or an allowed CORS origin.

    ``null`` (a sandboxed or ``file:`` page) has no host: refused.
    """
    origin = connection.headers.get("origin")
    if origin is None:
        return True
    allowed = getattr(connection.app.state.settings, "cors_origin_list", None) or []
    return urlsplit(origin).netloc == connection.headers.get("host") or origin in allowed


async def current_principal(request: Request, services: ServicesDep) -> Principal:
    if not bearer_token(request.headers.get("authorization")) and request.cookies.get(ACCESS_COOKIE):
        check_csrf(request)
    principal = await authenticate(services, request_credential(request))
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def current_user(principal: CurrentPrincipal) -> Principal:
    """A signed-in person (not an API key), even one whose session may only enrol MFA."""
    if principal.kind is not PrincipalKind.USER:
        raise ApiError(403, "this endpoint is for users, not API keys")
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]


def require(permission: str, *, batch: bool = False, essential: bool = False) -> Any:
    """``Annotated[Principal, require("alerts:acknowledge")]``: the caller, if allowed and within its rate.

    ``essential``: exempt from the tenant's hourly bucket (serve/ratelimit.py), for acknowledging alerts.
    """

    async def check(request: Request, principal: CurrentPrincipal, services: ServicesDep) -> Principal:
        if principal.mfa_setup_only:
            raise ApiError(403, "multi-factor sign-in must be set up first (POST /v1/auth/mfa/setup)",
                           code="MFA_SETUP_REQUIRED")
        if not principal.can(permission):
            who = f"role {principal.role.value}" if principal.role else "this API key"
            raise ApiError(403, f"{who} lacks permission {permission}")
        await enforce_rate_limit(request, services, principal, batch=batch, essential=essential)
        return principal

    check.permission = permission  # type: ignore[attr-defined]  # read by the permission-matrix test
    return Depends(check)


def client_ip(request: Request) -> str | None:
    """The client's address: the TCP peer, or what a trusted proxy forwarded (serve/edge.py)."""
    peer = request.client.host if request.client else None
    return client_address(peer, request.headers, getattr(request.app.state, "trusted_proxies", ()))


def audit_context(request: Request, principal: Principal) -> AuditContext:
    return AuditContext(tenant_id=principal.tenant_id, actor_type=principal.kind.value, actor_id=principal.subject,
                        ip=client_ip(request), request_id=request_id(request))


def request_id(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    if rid is None:
        rid = request.state.request_id = uuid.uuid4().hex
    return rid


async def get_audit(request: Request, principal: CurrentPrincipal) -> AuditContext:
    return audit_context(request, principal)


Audit = Annotated[AuditContext, Depends(get_audit)]


def require_silence_for_open_job(principal: Principal, *, open_job: bool) -> None:
    """An open maintenance job holds alerts: the caller must be allowed to silence them."""
    if open_job and not principal.can("alerts:silence"):
        who = f"role {principal.role.value}" if principal.role else "an API key"
        raise ApiError(403, f"{who} cannot start a maintenance job: a job in progress holds the equipment's"
                       " alerts, which needs alerts:silence")
