"""Access tokens: HS256 JWTs carrying the tenant and the role.

Identity management (users, API keys, refresh) builds on this; here the contract is
only: a token names a tenant and a role, expires, and is signed with our secret.
"""

import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum

import jwt

from schema.ids import InvalidIdentifier, check_tenant_id

ALGORITHM = "HS256"


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    OPERATOR = "operator"
    VIEWER = "viewer"


# What each role may do; every endpoint names one of these permissions.
PERMISSIONS: dict[str, frozenset[Role]] = {
    "telemetry:read": frozenset(Role),
    "telemetry:write": frozenset({Role.ADMIN, Role.MANAGER, Role.OPERATOR}),
    "alerts:read": frozenset(Role),
    "alerts:acknowledge": frozenset({Role.ADMIN, Role.MANAGER, Role.OPERATOR}),
    "system:read": frozenset(Role),
}


class AuthError(Exception):
    """A token that must be refused; the message is safe to show (it never echoes the token)."""


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    subject: str
    role: Role
    scopes: frozenset[str] = field(default_factory=frozenset)

    def can(self, permission: str) -> bool:
        return self.role in PERMISSIONS.get(permission, frozenset()) or permission in self.scopes


def mint_token(secret: str, *, tenant_id: str, role: str, subject: str, minutes: int, issuer: str = "wellpulse",
               scopes: list[str] | None = None) -> str:
    check_tenant_id(tenant_id)
    now = int(time.time())
    claims = {
        "iss": issuer, "sub": subject, "tenant": tenant_id, "role": Role(role).value,
        "iat": now, "nbf": now, "exp": now + minutes * 60, "jti": uuid.uuid4().hex,
    }
    if scopes:
        claims["scopes"] = scopes
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str, *, issuer: str = "wellpulse") -> Principal:
    try:
        # An explicit algorithm list refuses "alg: none" and key-confusion tricks.
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=issuer,
                            options={"require": ["exp", "iat", "sub", "iss"]})
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError("invalid token") from exc
    try:
        tenant_id = check_tenant_id(claims.get("tenant"))
        role = Role(claims.get("role"))
    except (InvalidIdentifier, ValueError) as exc:
        raise AuthError("token lacks a valid tenant or role") from exc
    scopes = claims.get("scopes") or []
    if not isinstance(scopes, list):
        raise AuthError("invalid scopes claim")
    return Principal(tenant_id=tenant_id, subject=str(claims["sub"]), role=role,
                     scopes=frozenset(str(s) for s in scopes))
