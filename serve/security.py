"""Secrets: password hashing and policy, opaque tokens, TOTP.

Passwords are hashed with argon2id (RFC 9106). Refresh tokens, API keys and one-time
tokens are 256-bit random strings; only their SHA-256 is stored. A slow hash adds
nothing to a secret that long, and lookups stay a primary-key read.

Opaque tokens name their tenant (``wpk_<tenant>_<secret>``) so the server can open a
transaction for that tenant before it looks the token up: row-level security never has
to be bypassed to authenticate.
"""

import hashlib
import secrets
import time
from dataclasses import dataclass

import pyotp
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from config import Settings
from schema.ids import InvalidIdentifier, check_tenant_id

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
TOTP_PERIOD = 30
TOKEN_KINDS = {"refresh": "wpr", "api_key": "wpk", "invitation": "wpi", "password_reset": "wpp"}
# A small sample of the most common passwords that pass the length rule.
COMMON_PASSWORDS = frozenset({
    "password1234", "123456789012", "qwertyuiop12", "iloveyou1234", "passwordpassword", "letmeinplease",
    "administrator", "welcome12345", "changeme1234", "qwerty123456", "1234567890ab", "abc123456789",
    "password123!", "wellpulse123", "oilandgas123", "p@ssw0rd1234",
})


class WeakPassword(ValueError):
    """A password refused by the policy; the message names the rule."""


def check_password_policy(password: str, *, email: str | None = None) -> None:
    """NIST SP 800-63B style: length and a blocklist, not composition rules."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"password must be at most {MAX_PASSWORD_LENGTH} characters")
    if len(set(password)) < 5:
        raise WeakPassword("password must contain at least 5 different characters")
    if password.lower() in COMMON_PASSWORDS:
        raise WeakPassword("password is too common")
    local = (email or "").split("@", 1)[0].lower()
    if len(local) >= 4 and local in password.lower():
        raise WeakPassword("password must not contain the email address")


class PasswordHashing:
    """argon2id with the configured cost; `verify` takes the same time for a missing user."""

    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self.hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism,
                                     type=Type.ID)
        self._dummy = self.hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """True when it matches; a None hash is checked against a dummy so timing says nothing."""
        try:
            return self.hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self.hasher.check_needs_rehash(stored)


def password_hashing(settings: Settings) -> PasswordHashing:
    """`PasswordHashing` at the configured argon2 cost (the API, the CLI and the tests hash alike)."""
    return PasswordHashing(time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib,
                           parallelism=settings.argon2_parallelism)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token(kind: str, tenant_id: str) -> str:
    """``<prefix>_<tenant>_<43 url-safe chars>``; '_' never occurs in a tenant id."""
    return f"{TOKEN_KINDS[kind]}_{check_tenant_id(tenant_id)}_{secrets.token_urlsafe(32)}"


def token_tenant(kind: str, token: str) -> str:
    """The tenant a token names, validated; raises `ValueError` for anything malformed."""
    if not isinstance(token, str) or len(token) > 200:
        raise ValueError("malformed token")
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_KINDS[kind] or len(parts[2]) < 40:
        raise ValueError("malformed token")
    try:
        return check_tenant_id(parts[1])
    except InvalidIdentifier as exc:
        raise ValueError("malformed token") from exc


def display_prefix(token: str) -> str:
    """What may be shown of a key after creation: enough to recognise it, not to use it."""
    kind, tenant, secret = token.split("_", 2)  # the secret itself may contain '_'
    return f"{kind}_{tenant}_{secret[:6]}"


@dataclass(frozen=True)
class TotpCheck:
    ok: bool
    step: int | None = None


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, *, email: str, issuer: str) -> str:
    return pyotp.TOTP(secret, interval=TOTP_PERIOD).provisioning_uri(name=email, issuer_name=issuer)


def verify_totp(secret: str, code: str, *, last_step: int | None, now: float | None = None) -> TotpCheck:
    """RFC 6238 with one step of clock drift either way; a code is accepted once (replay refused)."""
    if not code or not code.isdigit() or len(code) != 6:
        return TotpCheck(False)
    totp = pyotp.TOTP(secret, interval=TOTP_PERIOD)
    now = time.time() if now is None else now
    current = int(now // TOTP_PERIOD)
    for step in (current, current - 1, current + 1):
        if last_step is not None and step <= last_step:
            continue
        if secrets.compare_digest(totp.at(step * TOTP_PERIOD), code):
            return TotpCheck(True, step)
    return TotpCheck(False)
