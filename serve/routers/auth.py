"""Sign-in, sessions and the caller's own account: /v1/auth/*."""

from typing import Any

from fastapi import APIRouter, Request, Response

from schema.api import Envelope, ErrorEnvelope
from schema.identity import (
    AcceptInvitationRequest,
    ChangePasswordRequest,
    ForgotPasswordRequest,
    LoginRequest,
    Me,
    MfaCode,
    MfaSetup,
    PasswordConfirmation,
    RefreshRequest,
    ResetPasswordRequest,
    TokenPair,
)
from serve import identity
from serve.deps import (
    ACCESS_COOKIE,
    REFRESH_COOKIE,
    CurrentUser,
    ServicesDep,
    audit_context,
    check_csrf,
    client_ip,
    request_id,
)
from serve.errors import ApiError

router = APIRouter(prefix="/v1/auth", tags=["auth"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}, 429: {"model": ErrorEnvelope}}
REFRESH_PATH = "/v1/auth"


def _answer(response: Response, tokens: identity.IssuedTokens, *, web: bool) -> Envelope[TokenPair]:
    pair = TokenPair(expires_in=tokens.expires_in, mfa_setup_required=tokens.mfa_setup_required)
    if not web:
        pair.access_token, pair.refresh_token = tokens.access_token, tokens.refresh_token
        return Envelope(data=pair)
    # Web clients: neither token is readable by scripts; SameSite=Strict keeps them off cross-site requests.
    response.set_cookie(ACCESS_COOKIE, tokens.access_token, max_age=tokens.expires_in, httponly=True, secure=True,
                        samesite="strict", path="/")
    response.set_cookie(REFRESH_COOKIE, tokens.refresh_token, expires=tokens.refresh_expires_at, httponly=True,
                        secure=True, samesite="strict", path=REFRESH_PATH)
    return Envelope(data=pair)


@router.post("/login", response_model=Envelope[TokenPair], response_model_exclude_none=True, responses=ERRORS)
async def login(body: LoginRequest, request: Request, response: Response, services: ServicesDep,
                ) -> Envelope[TokenPair]:
    """Tenant, email and password (and `totp` when MFA is on). The answer is the same for an unknown
    email and a wrong password; repeated failures slow down, then lock the account (and the address)."""
    tokens = await identity.login(services, body, ip=client_ip(request),
                                  user_agent=request.headers.get("user-agent"), request_id=request_id(request))
    return _answer(response, tokens, web=body.client == "web")


@router.post("/refresh", response_model=Envelope[TokenPair], response_model_exclude_none=True, responses=ERRORS)
async def refresh(request: Request, response: Response, services: ServicesDep,
                  body: RefreshRequest | None = None) -> Envelope[TokenPair]:
    """Rotates the refresh token. Presenting one already used revokes its whole session. A browser sending
    the `wp_refresh` cookie also sends the `X-WellPulse-CSRF` header (403 without it)."""
    token = body.refresh_token if body else None
    if not token and request.cookies.get(REFRESH_COOKIE):
        check_csrf(request)
        token = request.cookies.get(REFRESH_COOKIE)
    if not token:
        raise ApiError(401, "missing refresh token", code="INVALID_REFRESH_TOKEN")
    tokens = await identity.refresh(services, token)
    from_cookie = not (body and body.refresh_token)
    return _answer(response, tokens, web=from_cookie)


@router.post("/logout", status_code=204, responses=ERRORS)
async def logout(request: Request, services: ServicesDep, principal: CurrentUser) -> Response:
    """Ends this session: its access and refresh tokens stop working at once."""
    await identity.logout(services, principal, audit_context(request, principal))
    response = Response(status_code=204)
    response.delete_cookie(ACCESS_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    response.delete_cookie(REFRESH_COOKIE, path=REFRESH_PATH, secure=True, httponly=True, samesite="strict")
    return response


@router.get("/me", response_model=Envelope[Me], responses=ERRORS)
async def me(services: ServicesDep, principal: CurrentUser) -> Envelope[Me]:
    user = await identity.get_user(services, principal.tenant_id, principal.subject)
    return Envelope(data=Me(**user, tenant_id=principal.tenant_id, session_id=principal.session_id,
                            permissions=identity.permissions_of(principal)))


@router.post("/password", status_code=204, responses=ERRORS)
async def change_password(body: ChangePasswordRequest, request: Request, services: ServicesDep,
                          principal: CurrentUser) -> Response:
    """Changes the caller's password and ends all of the caller's sessions."""
    await identity.change_password(services, principal, audit_context(request, principal), body.current_password,
                                   body.new_password)
    return Response(status_code=204)


@router.post("/forgot-password", status_code=202, responses=ERRORS)
async def forgot_password(body: ForgotPasswordRequest, request: Request, services: ServicesDep) -> dict[str, str]:
    """Sends a single-use reset link if the account exists; the answer is the same if it does not.
    Throttled per account and per address (429 with `Retry-After`)."""
    await identity.forgot_password(services, body.tenant, body.email, ip=client_ip(request))
    return {"status": "if the account exists, a reset link is on its way"}


@router.post("/reset-password", status_code=204, responses={400: {"model": ErrorEnvelope}, **ERRORS})
async def reset_password(body: ResetPasswordRequest, request: Request, services: ServicesDep) -> Response:
    """Sets a new password with a reset token (single use, expires); ends every session of the account."""
    await identity.reset_password(services, body.token, body.new_password, ip=client_ip(request),
                                  request_id=request_id(request))
    return Response(status_code=204)


@router.post("/accept-invitation", status_code=204, responses={400: {"model": ErrorEnvelope}, **ERRORS})
async def accept_invitation(body: AcceptInvitationRequest, request: Request, services: ServicesDep) -> Response:
    """Activates an invited account with its first password."""
    await identity.accept_invitation(services, body.token, body.password, body.name, ip=client_ip(request),
                                     request_id=request_id(request))
    return Response(status_code=204)


@router.post("/mfa/setup", response_model=Envelope[MfaSetup], responses=ERRORS)
async def mfa_setup(body: PasswordConfirmation, request: Request, services: ServicesDep,
                    principal: CurrentUser) -> Envelope[MfaSetup]:
    """A new TOTP secret (and its otpauth:// URI for an authenticator app); confirm with /mfa/enable.
    Asks for the password again: a session alone does not enrol a factor."""
    secret, uri = await identity.mfa_setup(services, principal, audit_context(request, principal), body.password)
    return Envelope(data=MfaSetup(secret=secret, otpauth_uri=uri))


@router.post("/mfa/enable", status_code=204, responses=ERRORS)
async def mfa_enable(body: MfaCode, request: Request, services: ServicesDep, principal: CurrentUser) -> Response:
    """Turns MFA on with a code from the authenticator; every session must sign in again."""
    await identity.mfa_enable(services, principal, audit_context(request, principal), body.code)
    return Response(status_code=204)


@router.post("/mfa/disable", status_code=204, responses=ERRORS)
async def mfa_disable(body: MfaCode, request: Request, services: ServicesDep, principal: CurrentUser) -> Response:
    await identity.mfa_disable(services, principal, audit_context(request, principal), body.code)
    return Response(status_code=204)


__all__ = ["router"]
