"""Pure pieces: tokens, identifiers and subjects, telemetry parsing, actor placement."""

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from pydantic import ValidationError

from actors.placement import place
from schema.ids import InvalidIdentifier
from schema.subjects import alerts_subject, split_tele_subject, tele_subject
from schema.telemetry import parse_telemetry
from serve.auth import AuthError, Principal, PrincipalKind, Role, mint_access_token, verify_access_token

pytestmark = pytest.mark.fast  # no Ray, no Serve: `./wp test -m fast`

SECRET = "unit-secret-0123456789abcdef0123456789"
UID = "2f1e0c3a-9a55-4b1e-8a61-3a3cf1f0b7a1"
SID = "7c9a7a52-3c0e-4d8e-9f5e-1b2b3c4d5e6f"
IDS = {"sub": UID, "sid": SID, "typ": "access"}


def mint_token(secret: str, *, tenant_id: str, role: str, subject: str = UID, minutes: int = 5) -> str:
    return mint_access_token(secret, tenant_id=tenant_id, user_id=subject, session_id=SID, role=role,
                             minutes=minutes)


def test_token_roundtrip_carries_tenant_user_and_session() -> None:
    claims = verify_access_token(SECRET, mint_token(SECRET, tenant_id="acme", role="viewer"))
    assert (claims.tenant_id, claims.role, claims.user_id, claims.session_id) == ("acme", Role.VIEWER, UID, SID)
    viewer = Principal(tenant_id="acme", subject=UID, role=Role.VIEWER)
    assert viewer.can("alerts:read") and not viewer.can("alerts:acknowledge")
    key = Principal(tenant_id="acme", subject="k", kind=PrincipalKind.API_KEY, scopes=frozenset({"telemetry:write"}))
    assert key.can("telemetry:write") and not key.can("telemetry:read") and not key.can("users:write")


def _unsigned(claims: dict) -> str:
    def b64(d: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


@pytest.mark.parametrize("token", [
    _unsigned({"iss": "wellpulse", **IDS, "tenant": "acme", "role": "admin", "iat": int(time.time()),
               "exp": int(time.time()) + 60}),
    mint_token("another-secret-0123456789abcdef0123", tenant_id="acme", role="admin"),
    jwt.encode({"iss": "wellpulse", **IDS, "tenant": "acme", "role": "admin", "iat": 1, "exp": 2}, SECRET),
    jwt.encode({"iss": "someone-else", **IDS, "tenant": "acme", "role": "admin", "iat": int(time.time()),
                "exp": int(time.time()) + 60}, SECRET),
    jwt.encode({"iss": "wellpulse", **IDS, "tenant": "acme.>", "role": "admin", "iat": int(time.time()),
                "exp": int(time.time()) + 60}, SECRET),
    jwt.encode({"iss": "wellpulse", **IDS, "tenant": "acme", "role": "root", "iat": int(time.time()),
                "exp": int(time.time()) + 60}, SECRET),
    "not-a-token",
])
def test_bad_tokens_are_refused(token: str) -> None:
    with pytest.raises(AuthError):
        verify_access_token(SECRET, token)


@pytest.mark.parametrize("bad", ["a.b", "a*", "a>", "a b", "", "x" * 129, "tab\tbed"])
def test_identifiers_that_would_break_subject_isolation_are_refused(bad: str) -> None:
    with pytest.raises(InvalidIdentifier):
        tele_subject("acme", bad)
    with pytest.raises(InvalidIdentifier):
        alerts_subject(bad if bad else ".", "PJ-1")


def test_subjects_roundtrip() -> None:
    assert split_tele_subject(tele_subject("acme", "PJ-0042")) == ("acme", "PJ-0042")
    with pytest.raises(ValueError):
        split_tele_subject("tele.acme.PJ.1")


def test_telemetry_timestamps_are_normalised_to_utc_and_checked() -> None:
    batch = parse_telemetry(b'{"equipment_id": "PJ-1", "ts": "2026-11-22T08:00:00+02:00", "values": {"a": 1}}')
    assert batch.readings[0].ts == datetime(2026, 11, 22, 6, tzinfo=UTC)
    future = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    with pytest.raises(ValidationError):
        parse_telemetry(json.dumps({"equipment_id": "PJ-1", "ts": future, "values": {"a": 1}}))
    assert parse_telemetry(json.dumps({"equipment_id": "PJ-1", "ts": future, "values": {"a": 1}}),
                           max_future_skew=timedelta(hours=1)).readings
    old = (datetime.now(UTC) - timedelta(days=400)).isoformat()
    for ts, value in ((old, 1.0), ("0001-01-01T00:00:00Z", 1.0), (future, 1e308), (future, -1e16)):
        with pytest.raises(ValidationError):
            parse_telemetry(json.dumps({"equipment_id": "PJ-1", "ts": ts, "values": {"a": value}}),
                            max_future_skew=timedelta(hours=1))
    assert parse_telemetry(json.dumps({"equipment_id": "PJ-1", "ts": old, "values": {"a": -1e15}}),
                           max_age=timedelta(days=500)).readings


def test_placement_is_stable_when_the_budget_changes() -> None:
    equipment = [f"PJ-{i:04d}" for i in range(400)]
    before, after = place(equipment, budget=8), place(equipment, budget=9)
    moved = sum(before[e] != after[e] for e in equipment)
    assert 0 < moved < len(equipment) * 0.2  # about 1/9 move, not all of them
    assert len(set(before.values())) == 8
    assert place(equipment, budget=8) == before  # deterministic across calls and processes


def test_a_second_instance_cannot_take_a_data_dir_or_port_in_use(tmp_path: Any) -> None:
    import socket

    from config import Settings
    from serve.runtime import Stack

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        settings = Settings(data_dir=tmp_path, port=busy.getsockname()[1])
        first, second = Stack(settings), Stack(settings)
        first._claim_data_dir()
        with pytest.raises(RuntimeError, match="another WellPulse"):
            second._claim_data_dir()
        with pytest.raises(RuntimeError, match="cannot listen"):
            first._check_port_free()
