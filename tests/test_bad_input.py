"""Bad input never blocks a stream: DLQ on the bus, 4xx with the envelope over HTTP."""

import json
from datetime import timedelta
from typing import Any

import nats

from tests.helpers import auth, create_tenant, metrics_auth, new_tenant_id, now_utc, publish, snapshot, token, wait_for


async def dlq_messages(nats_url: str, tenant: str, expected: int) -> list[dict[str, Any]]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(f"dlq.{tenant}", durable=None, stream="DLQ")
        out: list[dict[str, Any]] = []
        while len(out) < expected:
            try:
                msgs = await sub.fetch(expected - len(out), timeout=2)
            except nats.errors.TimeoutError:
                break
            out.extend(json.loads(m.data) for m in msgs)
        return out
    finally:
        await nc.close()


async def test_poison_messages_go_to_dlq_and_good_ones_flow(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("dlq")
    await create_tenant(stack, tenant, [("M-1", "meter")])
    start = now_utc() - timedelta(minutes=5)
    good = [("M-1", snapshot("M-1", start + timedelta(seconds=i), {"flow_mcfd": 500.0 + i})) for i in range(40)]
    bad = [
        ("M-1", b"this is not json"),
        ("M-1", b'{"equipment_id": "M-1", "ts": "2026-11-22T06:00:00", "values": {"flow_mcfd": 1}}'),  # naive
        ("M-1", json.dumps({"equipment_id": "M-1", "ts": (now_utc() + timedelta(days=2)).isoformat(),
                            "values": {"flow_mcfd": 1}}).encode()),  # far future
        ("M-1", b'{"equipment_id": "M-1", "ts": "2026-11-22T06:00:00Z", "values": {"flow_mcfd": NaN}}'),
        ("M-1", b'{"equipment_id": "M-1", "ts": "2026-11-22T06:00:00Z", "values": {"flow_mcfd": Infinity}}'),
        ("M-1", b'{"equipment_id": "M.1", "ts": "2026-11-22T06:00:00Z", "values": {"flow_mcfd": 1}}'),
        ("M-1", b'{"equipment_id": "M-2", "ts": "2026-11-22T06:00:00Z", "values": {"flow_mcfd": 1}}'),  # mismatch
        ("M-1", b'{"equipment_id": "M-1", "ts": "2026-11-22T06:00:00Z", "values": {"Flow rate": 1}}'),
        ("M-1", b'{"equipment_id": "M-1", "ts": "2026-11-22T06:00:00Z", "values": {}}'),
        ("M-1", b'[1, 2, 3]'),
        ("M-1", b'{"equipment_id": "M-1", "ts": "0001-01-01T00:00:00Z", "values": {"flow_mcfd": 1}}'),  # year 1
        ("M-1", json.dumps({"equipment_id": "M-1", "ts": start.isoformat(),
                            "values": {"flow_mcfd": 1e308}}).encode()),  # finite, but overflows a bucket sum
    ]
    # Poison first, then interleaved: the good ones behind them must still arrive.
    messages = bad[:5] + [m for pair in zip(good[:7], bad[5:], strict=True) for m in pair] + good[7:]
    await publish(stack.settings.nats_url, tenant, messages)

    async def all_good_stored() -> bool:
        return await db_conn.fetchval("SELECT count(*) FROM readings WHERE tenant_id = $1", tenant) == len(good)

    await wait_for(all_good_stored)
    parked = await dlq_messages(stack.settings.nats_url, tenant, len(bad))
    assert len(parked) == len(bad)
    assert all(p["reason"] and p["subject"] == f"tele.{tenant}.M-1" for p in parked)
    assert parked[0]["payload"] == "this is not json"

    async def dlq_counted() -> str | None:
        text = (await http.get("/metrics", headers=metrics_auth(stack))).text
        lines = [ln for ln in text.splitlines() if ln.startswith("wellpulse_dlq_messages_total") and tenant in ln]
        return text if sum(float(ln.rsplit(" ", 1)[1]) for ln in lines) == len(bad) else None

    text = await wait_for(dlq_counted, timeout=15)
    by_device = {ln.split("reason=\"")[1].split("\"")[0]: float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
                 if ln.startswith("wellpulse_dlq_device_messages_total") and tenant in ln and 'device="M-1"' in ln}
    assert sum(by_device.values()) == len(bad)  # every one counted against the device it was published for
    assert by_device["clock_skew"] == 2 and by_device["not_json"] == 1  # far future, year 1


async def test_http_ingest_publishes_to_the_same_path(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("http")
    await create_tenant(stack, tenant, [("TNK-1", "tank_battery")])
    ts = now_utc() - timedelta(seconds=30)
    body = {"readings": [{"equipment_id": "TNK-1", "ts": (ts + timedelta(seconds=i)).isoformat(),
                          "values": {"level_ft": 10.0 + i, "pressure_psi": 0.5}} for i in range(5)]}
    headers = {**auth(tenant), "Idempotency-Key": "batch-0001"}
    first = await http.post("/v1/telemetry", json=body, headers=headers)
    assert first.status_code == 202, first.text
    assert first.json()["data"] == {"messages": 1, "readings": 10, "equipment": ["TNK-1"],
                                    "idempotent_replay": False}
    again = await http.post("/v1/telemetry", json=body, headers=headers)
    assert again.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["data"]["idempotent_replay"] is True
    other = await http.post("/v1/telemetry", json={**body, "readings": body["readings"][:1]}, headers=headers)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"

    async def stored() -> bool:
        return await db_conn.fetchval("SELECT count(*) FROM readings WHERE tenant_id = $1", tenant) == 10

    await wait_for(stored)


async def test_http_ingest_rejects_bad_bodies_with_the_envelope(stack: Any, http: Any) -> None:
    tenant = new_tenant_id("bad")
    await create_tenant(stack, tenant, [])
    h = auth(tenant)
    cases = [
        (b"not json", 422),
        (b'{"equipment_id": "PJ-1", "ts": "2026-11-22T06:00:00", "values": {"a": 1}}', 422),
        (b'{"equipment_id": "PJ-1", "ts": "2026-11-22T06:00:00Z", "values": {"a": NaN}}', 422),
        (b'{"equipment_id": "PJ.1", "ts": "2026-11-22T06:00:00Z", "values": {"a": 1}}', 422),
        (b'{"equipment_id": "PJ>1", "ts": "2026-11-22T06:00:00Z", "values": {"a": 1}}', 422),
        (b'{"equipment_id": "PJ 1", "ts": "2026-11-22T06:00:00Z", "values": {"a": 1}}', 422),
        (b'{"readings": []}', 422),
        (b'{"equipment_id": "PJ-1", "ts": "2099-01-01T00:00:00Z", "values": {"a": 1}}', 422),
        (b'{"equipment_id": "PJ-1", "ts": "2026-11-22T06:00:00Z", "values": {"a": "high"}}', 422),
        (b'{"equipment_id": "PJ-1", "ts": "2026-11-22T06:00:00Z", "values": {"a": 1}, "x": 1}', 422),
    ]
    for body, status in cases:
        resp = await http.post("/v1/telemetry", content=body, headers={**h, "Content-Type": "application/json"})
        assert resp.status_code == status, (body, resp.text)
        error = resp.json()["error"]
        assert error["code"] == "VALIDATION_ERROR" and error["message"] and error["details"], body
        assert all({"field", "message"} <= set(d) for d in error["details"])
    unauthenticated = await http.post("/v1/telemetry", content=cases[0][0])
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["code"] == "UNAUTHORIZED"
    viewer = await http.post("/v1/telemetry", content=b"{}", headers=auth(tenant, "viewer"))
    assert viewer.status_code == 403
    forged = token(tenant).rsplit(".", 1)[0] + ".c2lnbmF0dXJl"
    assert (await http.get("/v1/alerts", headers={"Authorization": f"Bearer {forged}"})).status_code == 401
    assert (await http.get("/v1/alerts?limit=101", headers=h)).status_code == 422
    assert (await http.get("/v1/equipment/a.b/readings", headers=h)).status_code == 422
    assert (await http.get("/v1/equipment/X/readings?cursor=zzz", headers=h)).status_code in (400, 404)
