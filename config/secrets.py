"""Secrets with no public default: configured, or generated once into the data dir and reused.

Every secret that `Settings` does not carry is read from ``<data_dir>/secrets/<name>`` (mode 0600), or made
there with `secrets.token_urlsafe` the first time. A configured secret is checked: at least 32 bytes and none
of the values that have ever appeared in this repository (old defaults, examples), so a production start
never signs tokens or opens its database with a value an attacker can read on GitHub.

`SecretBox` encrypts small secrets at rest (TOTP seeds, channel passwords) with AES-256-GCM; the key id
travels beside the ciphertext, so a rotated key still opens what the previous one sealed.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from config.settings import Settings

__all__ = [
    "GENERATED_SECRETS",
    "KNOWN_PUBLIC_SECRETS",
    "MIN_SECRET_BYTES",
    "SecretBox",
    "UntrustedBlob",
    "WeakSecret",
    "check_secret",
    "key_id",
    "read_or_make_secret",
    "resolve_secrets",
    "rotate_secret",
    "sign_blob",
    "verify_blob",
]

MIN_SECRET_BYTES = 32
# (settings field, environment variable) of every secret made when it is not configured.
GENERATED_SECRETS: Mapping[str, str] = {
    "jwt_secret": "WELLPULSE_JWT_SECRET",
    "app_db_password": "WELLPULSE_APP_DB_PASSWORD",
    "data_key": "WELLPULSE_DATA_KEY",
    "model_signing_key": "WELLPULSE_MODEL_SIGNING_KEY",
    "metrics_token": "WELLPULSE_METRICS_TOKEN",
    "ack_link_key": "WELLPULSE_ACK_LINK_KEY",
}
# Keys that rotate: current field -> (its previous key's field, that one's variable). The previous key is
# accepted (checked) when configured, and read from the data dir after `rotate_secret`.
ROTATING_SECRETS: Mapping[str, tuple[str, str]] = {
    "jwt_secret": ("jwt_previous_secret", "WELLPULSE_JWT_PREVIOUS_SECRET"),
    "data_key": ("data_previous_key", "WELLPULSE_DATA_PREVIOUS_KEY"),
}
# Values that were defaults or examples in this repository at some point: public, so never a secret.
KNOWN_PUBLIC_SECRETS = frozenset({
    "dev-only-change-me-0123456789abcdef",
    "wellpulse-app-dev-password",
    "wellpulse",
    "changeme",
    "change-me",
    "secret",
    "password",
})
SECRETS_DIR = "secrets"


class WeakSecret(ValueError):
    """A configured secret that must not be used; the message names the variable."""


def check_secret(variable: str, value: str) -> None:
    """Refuse a secret that is short or public.

    >>> check_secret("WELLPULSE_JWT_SECRET", "x" * 40)
    >>> check_secret("WELLPULSE_JWT_SECRET", "dev-only-change-me-0123456789abcdef")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    config.secrets.WeakSecret: WELLPULSE_JWT_SECRET is a value published in the WellPulse repository; ...
    """
    hint = ("set a random one (e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))') or unset it to"
            " have one generated")
    if value in KNOWN_PUBLIC_SECRETS:
        raise WeakSecret(f"{variable} is a value published in the WellPulse repository; {hint}")
    if len(value.encode()) < MIN_SECRET_BYTES:
        raise WeakSecret(f"{variable} is shorter than {MIN_SECRET_BYTES} bytes; {hint}")


def key_id(secret: str, purpose: str) -> str:
    """A short public name of a key (a hash: it tells keys apart, it reveals nothing of them).

    >>> key_id("a" * 40, "jwt") == key_id("a" * 40, "jwt"), key_id("a" * 40, "jwt") == key_id("a" * 40, "data")
    (True, False)
    """
    return hashlib.sha256(f"wellpulse:{purpose}:{secret}".encode()).hexdigest()[:16]


def _write_private(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def read_or_make_secret(path: Path, make: Callable[[], str] = lambda: secrets.token_urlsafe(48)) -> str:
    """The secret kept in `path` (mode 0600), made with `make` on first use.

    Two processes starting at once get the same value: the file is created exclusively, and the loser reads
    the winner's. Every generated secret of WellPulse is kept this way (here, the NATS passwords, the embedded
    PostgreSQL's superuser, Ray's token).
    """
    with contextlib.suppress(FileNotFoundError):
        value = path.read_text().strip()
        if value:
            return value
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = make()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        existing = path.read_text().strip()
        if existing:
            return existing
        _write_private(path, value)  # an empty file left by a crash
        return value
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value


def resolve_secrets(settings: Settings) -> Settings:
    """`settings` with every secret filled in: configured ones checked, missing ones from the data dir.

    Raises `WeakSecret` (naming the variable) for a configured secret that is short or public.
    """
    folder = Path(settings.data_dir) / SECRETS_DIR
    update: dict[str, SecretStr] = {}
    for field, variable in GENERATED_SECRETS.items():
        configured: SecretStr | None = getattr(settings, field)
        if configured is not None:
            check_secret(variable, configured.get_secret_value())
        else:
            update[field] = SecretStr(read_or_make_secret(folder / field))
    for current, (field, variable) in ROTATING_SECRETS.items():
        configured = getattr(settings, field)
        if configured is not None:
            check_secret(variable, configured.get_secret_value())
        elif (folder / field).exists() and getattr(settings, current) is None:  # rotated in the data dir
            update[field] = SecretStr((folder / field).read_text().strip())
    return settings.model_copy(update=update) if update else settings


def rotate_secret(data_dir: Path, field: str) -> str:
    """Make a new current secret in the data dir; the old one becomes the previous one.

    For the JWT key (``jwt_secret``) and the data key (``data_key``): a restarted server signs and seals with
    the new key and still accepts what the previous one made. Returns the new key's id.
    """
    previous_field = ROTATING_SECRETS[field][0]
    folder = Path(data_dir) / SECRETS_DIR
    current = folder / field
    if current.exists():
        _write_private(folder / previous_field, current.read_text().strip())
    value = secrets.token_urlsafe(48)
    _write_private(current, value)
    return key_id(value, "jwt" if field == "jwt_secret" else "data")


@dataclass(frozen=True)
class SecretBox:
    """AES-256-GCM for small secrets at rest; ``v1:<key id>:<base64 nonce+ciphertext>``.

    Parameters
    ----------
    current
        The key that seals (any string of >= 32 bytes; the AES key is derived from it).
    previous
        Keys that still open what they sealed (after a rotation).

    Examples
    --------
    >>> box = SecretBox("k" * 40)
    >>> sealed = box.seal("JBSWY3DPEHPK3PXP")
    >>> sealed.startswith("v1:") and "JBSWY3DP" not in sealed
    True
    >>> box.open(sealed)
    'JBSWY3DPEHPK3PXP'
    >>> SecretBox("n" * 40, previous=("k" * 40,)).open(sealed)
    'JBSWY3DPEHPK3PXP'
    >>> box.is_current(sealed), SecretBox("n" * 40).is_current(sealed)
    (True, False)
    """

    current: str
    previous: tuple[str, ...] = ()

    @staticmethod
    def _aes_key(secret: str) -> bytes:
        return hashlib.sha256(f"wellpulse-data-key:{secret}".encode()).digest()

    def _keys(self) -> dict[str, bytes]:
        return {key_id(k, "data"): self._aes_key(k) for k in (self.current, *self.previous)}

    def seal(self, plaintext: str) -> str:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        kid = key_id(self.current, "data")
        nonce = secrets.token_bytes(12)
        ct = AESGCM(self._aes_key(self.current)).encrypt(nonce, plaintext.encode(), kid.encode())
        return f"v1:{kid}:{base64.urlsafe_b64encode(nonce + ct).decode()}"

    @staticmethod
    def is_sealed(value: str) -> bool:
        return value.startswith("v1:")

    def is_current(self, value: str) -> bool:
        return value.startswith(f"v1:{key_id(self.current, 'data')}:")

    def open(self, value: str) -> str:
        """The plaintext; `ValueError` when no key of this box sealed it or it was altered."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            version, kid, body = value.split(":", 2)
            raw = base64.urlsafe_b64decode(body)
        except ValueError as exc:
            raise ValueError("not a sealed secret") from exc
        key = self._keys().get(kid)
        if version != "v1" or key is None:
            raise ValueError(f"sealed with an unknown key {kid!r}")
        try:
            return AESGCM(key).decrypt(raw[:12], raw[12:], kid.encode()).decode()
        except InvalidTag as exc:
            raise ValueError("sealed secret does not verify") from exc

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        if settings.data_key is None:
            raise RuntimeError("data_key is not resolved yet (config.secrets.resolve_secrets)")
        previous = (settings.data_previous_key.get_secret_value(),) if settings.data_previous_key else ()
        return cls(settings.data_key.get_secret_value(), previous)


class UntrustedBlob(ValueError):
    """Stored bytes whose signature does not verify: never unpickle them."""


_BLOB_MAGIC = b"WPS1"


def sign_blob(key: str, payload: bytes) -> bytes:
    """``payload`` with an HMAC-SHA256 of it in front, for bytes that will be unpickled later (checkpoints).

    The database role that stores them may be the attacker's; the key lives with the servers, not in the
    database, so a blob written by anyone else fails `verify_blob` instead of running code.

    >>> blob = sign_blob("k" * 40, b"state")
    >>> verify_blob("k" * 40, blob)
    b'state'
    >>> verify_blob("other" * 8, blob)
    Traceback (most recent call last):
    ...
    config.secrets.UntrustedBlob: signature does not verify
    """
    return _BLOB_MAGIC + hmac.new(key.encode(), payload, hashlib.sha256).digest() + payload


def verify_blob(key: str, blob: bytes) -> bytes:
    """The payload of a `sign_blob` result; `UntrustedBlob` when unsigned, altered or signed by another key."""
    if not blob.startswith(_BLOB_MAGIC) or len(blob) < len(_BLOB_MAGIC) + 32:
        raise UntrustedBlob("not a signed blob")
    mac, payload = blob[len(_BLOB_MAGIC):len(_BLOB_MAGIC) + 32], blob[len(_BLOB_MAGIC) + 32:]
    if not hmac.compare_digest(mac, hmac.new(key.encode(), payload, hashlib.sha256).digest()):
        raise UntrustedBlob("signature does not verify")
    return payload
