"""Secure by default (issue 18): no public secrets, key rotation, secrets at rest, real client addresses,
exposure of /metrics, security headers and CORS."""

import asyncio
import logging
import os
import stat
import subprocess
import sys
import uuid
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from config import Settings
from config.secrets import (
    GENERATED_SECRETS,
    KNOWN_PUBLIC_SECRETS,
    SecretBox,
    WeakSecret,
    check_secret,
    key_id,
    resolve_secrets,
    rotate_secret,
)
from serve.auth import AuthError, jwt_keys, mint_access_token, verify_access_token
from serve.edge import client_address
from serve.messages import LogSender
from serve.security import new_token
from store.embedded import free_port
from tests.helpers import create_tenant, metrics_auth, new_tenant_id, wait_for
from tests.test_identity import PW, add_user, bearer, login, login_ok

TENANT, USER, SESSION = "acme", str(uuid.uuid4()), str(uuid.uuid4())


def _token(secret: str) -> str:
    return mint_access_token(secret, tenant_id=TENANT, user_id=USER, session_id=SESSION, role="viewer", minutes=5)


@pytest.mark.fast
def test_unset_secrets_are_generated_once_private_and_reused(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("WELLPULSE_APP_DB_PASSWORD", raising=False)  # the suite sets it (tests/conftest.py)
    first = resolve_secrets(Settings(data_dir=tmp_path))  # type: ignore[call-arg]
    values = {field: first.secret(field) for field in GENERATED_SECRETS}
    assert len(set(values.values())) == len(values)  # each its own
    for field, value in values.items():
        check_secret(field, value)
        path = tmp_path / "secrets" / field
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text() == value
    again = resolve_secrets(Settings(data_dir=tmp_path))  # type: ignore[call-arg]
    assert {field: again.secret(field) for field in GENERATED_SECRETS} == values


@pytest.mark.fast
@pytest.mark.parametrize("value", [*sorted(KNOWN_PUBLIC_SECRETS), "short-but-random-3f9a"])
def test_a_weak_or_public_configured_secret_is_refused_by_name(tmp_path: Path, value: str) -> None:
    with pytest.raises(WeakSecret, match="WELLPULSE_JWT_SECRET"):
        resolve_secrets(Settings(data_dir=tmp_path, jwt_secret=SecretStr(value)))  # type: ignore[call-arg]
    with pytest.raises(WeakSecret, match="WELLPULSE_APP_DB_PASSWORD"):
        resolve_secrets(Settings(data_dir=tmp_path, app_db_password=SecretStr(value)))  # type: ignore[call-arg]


def test_wellpulse_up_refuses_the_old_default_secret_naming_the_variable(tmp_path: Path) -> None:
    env = {**os.environ, "WELLPULSE_JWT_SECRET": "dev-only-change-me-0123456789abcdef", "RAY_AUTH_MODE": "disabled"}
    for key in ("WELLPULSE_DATABASE_URL", "WELLPULSE_NATS_URL", "RAY_ADDRESS"):
        env.pop(key, None)
    done = subprocess.run([sys.executable, "-m", "cli", "up", "--data-dir", str(tmp_path / "wp"),
                           "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "WELLPULSE_JWT_SECRET" in done.stderr and "published" in done.stderr
    assert not (tmp_path / "wp" / "postgres").exists()  # refused before any server started


def test_key_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key(tmp_path: Path) -> None:
    before = resolve_secrets(Settings(data_dir=tmp_path))  # type: ignore[call-arg]
    old_token = _token(before.secret("jwt_secret"))
    new_kid = subprocess.run([sys.executable, "-m", "cli", "keys", "rotate", "--data-dir", str(tmp_path)],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    after = resolve_secrets(Settings(data_dir=tmp_path))  # type: ignore[call-arg]
    assert after.secret("jwt_secret") != before.secret("jwt_secret")
    assert key_id(after.secret("jwt_secret"), "jwt") in new_kid
    keys = jwt_keys(after)
    assert verify_access_token(keys, old_token).user_id == USER  # valid until it expires
    assert verify_access_token(keys, _token(after.secret("jwt_secret"))).user_id == USER
    rotate_secret(tmp_path, "jwt_secret")  # twice: the first key is gone
    with pytest.raises(AuthError):
        verify_access_token(jwt_keys(resolve_secrets(Settings(data_dir=tmp_path))), old_token)  # type: ignore[call-arg]


def test_a_configured_key_is_rotated_in_the_configuration_not_the_data_dir(tmp_path: Path) -> None:
    env = {**os.environ, "WELLPULSE_JWT_SECRET": "r" * 40}
    done = subprocess.run([sys.executable, "-m", "cli", "keys", "rotate", "--data-dir", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "WELLPULSE_JWT_PREVIOUS_SECRET" in done.stderr


@pytest.mark.fast
def test_data_key_rotation_still_opens_the_old_ciphertext(tmp_path: Path) -> None:
    sealed = SecretBox.from_settings(resolve_secrets(Settings(data_dir=tmp_path))).seal("JBSWY3DPEHPK3PXP")  # type: ignore[call-arg]
    rotate_secret(tmp_path, "data_key")
    box = SecretBox.from_settings(resolve_secrets(Settings(data_dir=tmp_path)))  # type: ignore[call-arg]
    assert not box.is_current(sealed) and box.open(sealed) == "JBSWY3DPEHPK3PXP"
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(ValueError):
        box.open(tampered)
    with pytest.raises(ValueError):
        SecretBox("z" * 40).open(sealed)  # a dump and the wrong key: nothing


@pytest.mark.fast
def test_forwarded_addresses_are_believed_only_from_trusted_proxies() -> None:
    proxies = [ip_network("10.0.0.0/8"), ip_network("fd00::/8")]
    chain = {"x-forwarded-for": "6.6.6.6, 198.51.100.4, 10.1.2.3"}
    assert client_address("10.0.0.1", chain, proxies) == "198.51.100.4"  # rightmost untrusted hop
    assert client_address("198.51.100.1", chain, proxies) == "198.51.100.1"  # a spoof from the Internet
    assert client_address("fd00::1", {"forwarded": 'for="[2001:db8::7]:443";proto=https'}, proxies) == "2001:db8::7"
    assert client_address("10.0.0.1", {}, proxies) == "10.0.0.1"
    assert client_address("127.0.0.1", chain, []) == "127.0.0.1"


async def test_a_spoofed_forwarded_header_is_ignored_and_counted(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("spoof")
    await create_tenant(stack, tenant, [])
    email, _ = await add_user(stack, tenant, "operator")

    async def spoofed_count() -> float:
        text = (await http.get("/metrics", headers=metrics_auth(stack))).text
        lines = [ln for ln in text.splitlines() if ln.startswith("wellpulse_spoofed_forwarded_headers_total")]
        return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0

    before = await spoofed_count()
    resp = await http.post("/v1/auth/login", json={"tenant": tenant, "email": email, "password": PW},
                           headers={"X-Forwarded-For": "203.0.113.99"})
    assert resp.status_code == 200, resp.text
    ip = await db_conn.fetchval("SELECT ip FROM audit_log WHERE tenant_id = $1 AND action = 'login'"
                                " ORDER BY id DESC LIMIT 1", tenant)
    assert ip is not None and "203.0.113.99" not in ip and ip.split("/")[0] == "127.0.0.1"
    assert await spoofed_count() >= before + 1


async def test_metrics_need_their_token_and_answers_carry_security_headers(stack: Any, http: Any) -> None:
    assert (await http.get("/metrics")).status_code == 401
    assert (await http.get("/metrics", headers={"Authorization": "Bearer " + "w" * 64})).status_code == 401
    ok = await http.get("/metrics", headers=metrics_auth(stack))
    assert ok.status_code == 200 and "wellpulse_open_alerts" in ok.text
    for path in ("/health", "/v1/alerts", "/openapi.json"):
        resp = await http.get(path, headers={"Origin": "https://evil.example"})
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in resp.headers["content-security-policy"]
        assert "access-control-allow-origin" not in resp.headers  # CORS is off unless configured
        assert "strict-transport-security" not in resp.headers  # public_url is http here
    docs = await http.get("/docs")
    assert "cdn.jsdelivr.net" in docs.headers["content-security-policy"]


async def test_parallel_guesses_are_counted_before_they_are_checked(stack: Any, http: Any) -> None:
    tenant = new_tenant_id("guess")
    await create_tenant(stack, tenant, [])
    email, _ = await add_user(stack, tenant, "operator")
    guesses = await asyncio.gather(*(http.post("/v1/auth/login", json={
        "tenant": tenant, "email": email, "password": f"guess number {i:04d}"}) for i in range(30)))
    statuses = [g.status_code for g in guesses]
    # Each attempt is counted before its password is verified: past the slow-down allowance, the rest wait.
    assert statuses.count(401) <= stack.settings.login_lock_after, statuses
    assert statuses.count(429) >= 30 - stack.settings.login_lock_after


async def test_every_credential_check_is_throttled_like_sign_in(stack: Any, http: Any) -> None:
    """A stolen session cannot guess the password at /auth/password or /mfa/setup, nor a code at /mfa/enable."""
    tenant = new_tenant_id("reauth")
    await create_tenant(stack, tenant, [])
    email, _ = await add_user(stack, tenant, "operator")
    h = bearer((await login_ok(http, tenant, email))["access_token"])
    no_password = await http.post("/v1/auth/mfa/setup", headers=h)
    assert no_password.status_code == 422  # enrolling a factor asks for the password again
    for path, body in (("/v1/auth/password", lambda i: {"current_password": f"wrong guess {i:04d}",
                                                          "new_password": "a brand new passphrase 1"}),
                       ("/v1/auth/mfa/setup", lambda i: {"password": f"wrong guess {i:04d}"})):
        answers = [(await http.post(path, json=body(i), headers=h)).status_code for i in range(8)]
        assert 401 in answers and answers[-1] == 429, (path, answers)
        await _wait_unlocked(http, tenant, email)


async def _wait_unlocked(http: Any, tenant: str, email: str) -> None:
    async def ok() -> bool:
        return (await login(http, tenant, email)).status_code == 200

    await wait_for(ok, timeout=40, interval=1.0)


@pytest.mark.fast
async def test_the_log_sender_never_writes_a_one_time_token(caplog: Any) -> None:
    token = new_token("password_reset", "acme")
    with caplog.at_level(logging.INFO, logger="wellpulse.messages"):
        await LogSender().send(to="ops@acme.example", subject="Reset", body=f"https://x/reset?token={token}\n{token}")
    assert "ops@acme.example" in caplog.text and "redacted" in caplog.text
    assert token not in caplog.text and token.rsplit("_", 1)[1] not in caplog.text
