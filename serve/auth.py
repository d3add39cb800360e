"""Who may do what: roles, the permission matrix, principals and access tokens.

The permission matrix below is the one place it is written down; every endpoint names
one permission (`serve.deps.require`), and the README's table is generated from it
(`permission_table_markdown`).

Access tokens are HS256 JWTs naming a user and a session (``sid``). They carry the role
for clients to read, but the server trusts the user's current role and status and the
session's revocation from the database (through `serve.sessions.AuthCache`): a demoted,
deactivated or deleted user, or a revoked session, stops working on the next request.
"""

import functools
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import jwt

from config import Settings
from config.secrets import key_id
from schema.ids import InvalidIdentifier, check_tenant_id

ALGORITHM = "HS256"
ACCESS_TOKEN_TYPE = "access"  # noqa: S105  a name or a file name, not a secret


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    OPERATOR = "operator"
    VIEWER = "viewer"


_ALL = frozenset(Role)
_WRITERS = frozenset({Role.ADMIN, Role.MANAGER})
_FIELD = frozenset({Role.ADMIN, Role.MANAGER, Role.OPERATOR})
_ADMIN = frozenset({Role.ADMIN})

# permission -> roles that have it. API keys get permissions as scopes instead of a role.
PERMISSIONS: dict[str, frozenset[Role]] = {
    "telemetry:read": _ALL,
    "telemetry:write": _FIELD,
    "alerts:read": _ALL,
    "alerts:acknowledge": _FIELD,  # acknowledge and resolve
    "alerts:silence": _FIELD,
    "assets:read": _ALL,
    "assets:write": _WRITERS,
    "field_data:write": _FIELD,  # maintenance and production records: what crews report
    "rules:read": _ALL,
    "rules:write": _WRITERS,
    "sync:write": _FIELD,
    "sync:review": _WRITERS,  # settle conflicts held for manual review
    "models:read": _ALL,
    "models:write": _WRITERS,
    "tenant:read": _ALL,
    "tenant:write": _ADMIN,
    "users:read": _WRITERS,
    "users:write": _ADMIN,
    "api_keys:manage": _ADMIN,
    "audit:read": _ADMIN,
    "notifications:manage": _WRITERS,  # channels: their settings name people and endpoints
}
# What an API key may be granted: machine work, never identity administration.
API_KEY_SCOPES: frozenset[str] = frozenset({
    "telemetry:read", "telemetry:write", "alerts:read", "alerts:acknowledge", "assets:read", "rules:read",
    "field_data:write", "sync:write", "models:read", "tenant:read",
})
# A session signed in only to enrol MFA (the tenant requires it for admins) may do this and no more.
MFA_SETUP_PERMISSIONS: frozenset[str] = frozenset()


class AuthError(Exception):
    """A credential that must be refused; the message is safe to show (it never echoes the credential)."""


class PrincipalKind(StrEnum):
    USER = "user"
    API_KEY = "api_key"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, as every route sees it."""

    tenant_id: str
    subject: str  # user id or API key id
    kind: PrincipalKind = PrincipalKind.USER
    role: Role | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    session_id: str | None = None
    email: str | None = None
    mfa_setup_only: bool = False
    expires_at: int | None = None  # an access token's expiry (epoch seconds); None for API keys

    def can(self, permission: str) -> bool:
        if self.mfa_setup_only:
            return permission in MFA_SETUP_PERMISSIONS
        if self.kind is PrincipalKind.API_KEY:
            return permission in self.scopes
        return self.role is not None and self.role in PERMISSIONS.get(permission, frozenset())

    @property
    def actor(self) -> str:
        """How this caller appears in alert events and logs."""
        return self.email or f"{self.kind.value}:{self.subject}"


@dataclass(frozen=True)
class AccessClaims:
    tenant_id: str
    user_id: str
    session_id: str
    role: Role
    expires_at: int


def jwt_keys(settings: Settings) -> dict[str, str]:
    """Keys that verify access tokens, by ``kid``: the current one and the one before the last rotation."""
    previous = settings.jwt_previous_secret.get_secret_value() if settings.jwt_previous_secret else None
    return _jwt_keys(settings.secret("jwt_secret"), previous)


@functools.lru_cache(maxsize=4)
def _jwt_keys(current: str, previous: str | None) -> dict[str, str]:
    return {key_id(k, "jwt"): k for k in (previous, current) if k is not None}


def mint_access_token(secret: str, *, tenant_id: str, user_id: str, session_id: str, role: str, minutes: int,
                      issuer: str = "wellpulse") -> str:
    check_tenant_id(tenant_id)
    now = int(time.time())
    claims = {
        "iss": issuer, "sub": user_id, "tenant": tenant_id, "sid": session_id, "role": Role(role).value,
        "typ": ACCESS_TOKEN_TYPE, "iat": now, "nbf": now, "exp": now + minutes * 60, "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"kid": key_id(secret, "jwt")})


def verify_access_token(keys: str | Mapping[str, str], token: str, *, issuer: str = "wellpulse") -> AccessClaims:
    """Signature (by the key its ``kid`` names), expiry, issuer and shape; raises `AuthError`.

    `keys` maps key ids to secrets (`jwt_keys`), or is one secret. A token without a ``kid``, or naming a key
    that is not current or previous, is refused before any signature check. Revocation is the caller's.
    """
    if len(token) > 4096:
        raise AuthError("invalid token")
    if isinstance(keys, str):
        keys = {key_id(keys, "jwt"): keys}
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.InvalidTokenError as exc:
        raise AuthError("invalid token") from exc
    secret = keys.get(kid) if isinstance(kid, str) else None
    if secret is None:
        raise AuthError("invalid token")
    try:
        # An explicit algorithm list refuses "alg: none" and key-confusion tricks.
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=issuer,
                            options={"require": ["exp", "iat", "sub", "iss", "sid"]})
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError("invalid token") from exc
    if claims.get("typ") != ACCESS_TOKEN_TYPE:
        raise AuthError("invalid token")
    try:
        tenant_id = check_tenant_id(claims.get("tenant"))
        role = Role(claims.get("role", ""))
        user_id = str(uuid.UUID(str(claims["sub"])))
        session_id = str(uuid.UUID(str(claims["sid"])))
    except (InvalidIdentifier, ValueError) as exc:
        raise AuthError("token lacks a valid tenant, user, session or role") from exc
    return AccessClaims(tenant_id=tenant_id, user_id=user_id, session_id=session_id, role=role,
                        expires_at=int(claims["exp"]))


def permission_table_markdown() -> str:
    """The matrix as the README shows it (a test keeps the README in step)."""
    roles = list(Role)
    lines = ["| permission | " + " | ".join(r.value for r in roles) + " | API key scope |",
             "|---|" + "---|" * len(roles) + "---|"]
    for permission, allowed in PERMISSIONS.items():
        cells = ["✓" if r in allowed else "" for r in roles]
        lines.append(f"| `{permission}` | " + " | ".join(cells) + f" | {'✓' if permission in API_KEY_SCOPES else ''} |")
    return "\n".join(lines)
