"""FastAPI dependencies: services, the caller, and permission checks as route parameters."""

from typing import Annotated

from fastapi import Depends, Request

from serve.auth import AuthError, Principal, verify_token
from serve.errors import ApiError
from serve.services import Services


async def get_services(request: Request) -> Services:
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


def authenticate(services: Services, token: str | None) -> Principal:
    if not token:
        raise ApiError(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    try:
        return verify_token(services.settings.jwt_secret.get_secret_value(), token,
                            issuer=services.settings.jwt_issuer)
    except AuthError as exc:
        raise ApiError(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc


async def current_principal(request: Request, services: ServicesDep) -> Principal:
    return authenticate(services, bearer_token(request.headers.get("authorization")))


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require(permission: str):
    """``Depends(require("alerts:acknowledge"))``: the caller, if allowed."""

    async def check(principal: CurrentPrincipal) -> Principal:
        if not principal.can(permission):
            raise ApiError(403, f"role {principal.role.value} lacks permission {permission}")
        return principal

    return Depends(check)
