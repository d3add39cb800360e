"""POST /v1/sync against the real stack: chunks applied whole, changes flowing back, retries answered once,
bad chunks refused with the offending change named and nothing applied, upload sessions that resume."""

import asyncio
import contextlib
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.helpers import auth, create_tenant, new_tenant_id, wait_for

# ----------------------------------------------------------------------------- shared with the other sync tests

T0 = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


def ts(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def uid() -> str:
    return str(uuid.uuid4())


def change(entity: str, op: str, record_id: str, data: dict[str, Any] | None = None, *, version: int = 0,
           at: float = 0.0, event_id: str | None = None) -> dict[str, Any]:
    return {"event_id": event_id or uid(), "entity": entity, "op": op, "id": record_id, "version": version,
            "client_ts": ts(at), "data": data or {}}


def reading(equipment: str = "PJ-1", value: float = 800.0, sensor: str = "tubing_psi") -> dict[str, Any]:
    return {"equipment_id": equipment, "sensor": sensor, "value": value, "unit": "psi", "read_at": ts(0)}


async def sync_tenant(stack: Any, prefix: str = "sync") -> str:
    """A tenant with two pump jacks and two wells."""
    tenant = new_tenant_id(prefix)
    await create_tenant(stack, tenant, [("PJ-1", "pump_jack"), ("PJ-2", "pump_jack")])
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        for i, well in enumerate(("W-1", "W-2")):
            await conn.execute("INSERT INTO wells (tenant_id, id, api_number, name) VALUES ($1, $2, $3, $2)",
                               tenant, well, f"420010000{i}")
    finally:
        await conn.close()
    return tenant


async def post_sync(http: Any, headers: dict[str, str], device: str, changes: list[dict[str, Any]], *,
                    cursor: int = 0, expect: int = 200, **extra: Any) -> dict[str, Any]:
    r = await http.post("/v1/sync", headers=headers, json={"device_id": device, "cursor": cursor,
                                                           "changes": changes, **extra})
    assert r.status_code == expect, r.text
    return r.json()


async def drop_after_sending(base_url: str, method: str, path: str, headers: dict[str, str], body: bytes, *,
                             until: Any = None, timeout: float = 60.0) -> None:
    """Send a request and hang up without reading the answer: a device losing its signal mid-sync.

    With ``until`` (an async predicate), the connection stays open until it holds (the server has
    committed, say) and is then dropped unread: the device never hears the answer.
    """
    parts = urlsplit(base_url)
    _reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    head = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
    try:
        if until is not None:
            await wait_for(until, timeout=timeout)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


# ----------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
async def tenant(stack: Any) -> str:
    return await sync_tenant(stack)


async def counts(db_conn: Any, tenant: str) -> dict[str, int]:
    out = {}
    for table in ("manual_readings", "production_records", "maintenance_records", "inspections", "field_notes",
                  "attachments", "field_events", "sync_conflicts", "sync_changes"):
        out[table] = await db_conn.fetchval(f"SELECT count(*) FROM {table} WHERE tenant_id = $1", tenant)
    return out


def every_entity() -> list[dict[str, Any]]:
    return [
        change("manual_reading", "create", uid(), reading()),
        change("production_record", "create", uid(), {"well_id": "W-1", "day": "2026-11-19", "oil_bbl": 120.5}),
        change("maintenance_record", "create", uid(), {"equipment_id": "PJ-2", "kind": "corrective",
                                                       "started_at": ts(0), "ended_at": ts(3600)}),
        change("inspection", "create", uid(), {"equipment_id": "PJ-1", "inspected_at": ts(0),
                                               "checklist": {"guards": True}, "findings": []}),
        change("note", "create", uid(), {"equipment_id": "PJ-1", "text": "stuffing box leaking", "tags": ["leak"]}),
        change("attachment", "create", uid(), {"equipment_id": "PJ-1", "filename": "box.jpg",
                                               "content_type": "image/jpeg"}),
    ]


async def test_a_chunk_lands_whole_and_flows_to_other_devices(http: Any, db_conn: Any, tenant: str) -> None:
    h = auth(tenant, "operator")
    chunk = every_entity()
    before = await counts(db_conn, tenant)
    a = (await post_sync(http, h, "tablet-a", chunk))["data"]
    assert [x["outcome"] for x in a["applied"]] == ["applied"] * 6
    assert [x["version"] for x in a["applied"]] == [1] * 6
    assert a["conflicts"] == [] and a["changes"] == [], "a device's own changes, applied as sent, are not echoed"
    assert a["cursor"] > 0
    after = await counts(db_conn, tenant)
    for table in ("manual_readings", "production_records", "maintenance_records", "inspections", "field_notes",
                  "attachments"):
        assert after[table] == before[table] + 1, table
    assert after["field_events"] == before["field_events"] + 6
    row = await db_conn.fetchrow("SELECT source, version, created_by FROM production_records WHERE tenant_id = $1"
                                 " AND id = $2::uuid", tenant, chunk[1]["id"])
    assert (row["source"], row["version"], row["created_by"]) == ("sync", 1, f"operator@{tenant}.example")
    # Another device starting from scratch gets all six, in server order, with their data.
    b = (await post_sync(http, h, "tablet-b", []))["data"]
    got = {c["id"]: c for c in b["changes"]}
    assert {c["id"] for c in chunk} <= set(got)
    assert got[chunk[0]["id"]]["data"]["value"] == 800.0 and got[chunk[0]["id"]]["op"] == "create"
    assert b["cursor"] >= a["cursor"]
    seqs = [c["seq"] for c in b["changes"]]
    assert seqs == sorted(seqs)
    # From its new cursor on, nothing new.
    again = (await post_sync(http, h, "tablet-b", [], cursor=b["cursor"]))["data"]
    assert again["changes"] == [] and again["cursor"] == b["cursor"]
    # An update from B flows back to A, with the new version.
    upd = change("note", "update", chunk[4]["id"], {"text": "stuffing box replaced"}, version=1, at=60)
    assert (await post_sync(http, h, "tablet-b", [upd], cursor=b["cursor"]))["data"]["applied"][0]["version"] == 2
    back = (await post_sync(http, h, "tablet-a", [], cursor=a["cursor"]))["data"]
    notes = [c for c in back["changes"] if c["id"] == chunk[4]["id"]]
    assert len(notes) == 1 and notes[0]["version"] == 2 and notes[0]["data"]["text"] == "stuffing box replaced"
    assert notes[0]["origin"] == "tablet-b"


async def test_rest_side_changes_flow_back(http: Any, db_conn: Any, tenant: str) -> None:
    """Production and maintenance records changed outside sync (the REST API) reach devices via the change log."""
    h = auth(tenant, "operator")
    rid = uid()
    first = (await post_sync(http, h, "tablet-rest", [change("production_record", "create", rid,
                                                              {"well_id": "W-2", "day": "2026-11-18",
                                                               "oil_bbl": 50.0})]))["data"]
    # What the REST API's SQL does: an UPDATE without the sync origin (and without bumping the version).
    await db_conn.execute("UPDATE production_records SET gas_mcf = 77.0 WHERE tenant_id = $1 AND id = $2::uuid",
                          tenant, rid)
    pulled = (await post_sync(http, h, "tablet-rest", [], cursor=first["cursor"]))["data"]
    mine = [c for c in pulled["changes"] if c["id"] == rid]
    assert len(mine) == 1 and mine[0]["origin"] == "api" and mine[0]["data"]["gas_mcf"] == 77.0
    assert mine[0]["version"] == 2, "the trigger bumps a version an edit outside sync forgot"
    # A device that had not seen it and edits the same field: the API's write is concurrent with it.
    stale = change("production_record", "update", rid, {"gas_mcf": 60.0}, version=1, at=10)
    out = (await post_sync(http, h, "tablet-other", [stale], cursor=pulled["cursor"]))["data"]
    assert out["applied"][0]["outcome"] == "lost" and out["conflicts"][0]["strategy"] == "highest_value"
    assert await db_conn.fetchval("SELECT gas_mcf FROM production_records WHERE tenant_id = $1 AND id = $2::uuid",
                                  tenant, rid) == 77.0


async def test_a_retry_after_a_dropped_connection_applies_nothing_twice(stack: Any, http: Any, db_conn: Any,
                                                                        tenant: str) -> None:
    h = auth(tenant, "operator")
    chunk = [change("manual_reading", "create", uid(), reading(value=float(i))) for i in range(50)]
    body = {"device_id": "tablet-drop", "cursor": 0, "changes": chunk}
    before = await counts(db_conn, tenant)

    async def stored() -> bool:
        return bool(await db_conn.fetchval("SELECT count(*) FROM sync_receipts WHERE tenant_id = $1 AND key = $2",
                                           tenant, "key:" + hashlib.sha256(b"chunk-1").hexdigest()))

    # The device sends, the server commits, the connection dies before the answer arrives.
    await drop_after_sending(stack.base_url, "POST", "/v1/sync", {**h, "Idempotency-Key": "chunk-1"}, dumps(body),
                             until=stored)
    after_drop = await counts(db_conn, tenant)
    assert after_drop["manual_readings"] == before["manual_readings"] + 50
    retry = await http.post("/v1/sync", headers={**h, "Idempotency-Key": "chunk-1"}, json=body)
    assert retry.status_code == 200, retry.text
    assert retry.headers.get("idempotent-replayed") == "true"
    again = await http.post("/v1/sync", headers={**h, "Idempotency-Key": "chunk-1"}, json=body)
    assert again.json() == retry.json(), "the same answer every time"
    assert [a["outcome"] for a in retry.json()["data"]["applied"]] == ["applied"] * 50
    assert await counts(db_conn, tenant) == after_drop, "nothing applied twice"
    # The same key with another body is a client bug: 409.
    other = {**body, "changes": chunk[:1]}
    r = await http.post("/v1/sync", headers={**h, "Idempotency-Key": "chunk-1"}, json=other)
    assert r.status_code == 409 and r.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    # Without a key, the same chunk again (same event ids): the same answer, nothing applied.
    plain = {"device_id": "tablet-drop", "changes": [change("note", "create", uid(), {"text": "x"})]}
    first = await http.post("/v1/sync", headers=h, json=plain)
    second = await http.post("/v1/sync", headers=h, json=plain)
    assert first.status_code == second.status_code == 200
    assert second.headers.get("idempotent-replayed") == "true" and second.json() == first.json()
    # Its events re-sent in another chunk: recognised one by one.
    mixed = await post_sync(http, h, "tablet-drop", [*plain["changes"], change("note", "create", uid(),
                                                                                {"text": "y"})])
    assert [a["outcome"] for a in mixed["data"]["applied"]] == ["duplicate", "applied"]


async def _refused(http: Any, db_conn: Any, tenant: str, headers: dict[str, str], changes: list[dict[str, Any]],
                   status: int, field: str, **extra: Any) -> dict[str, Any]:
    before = await counts(db_conn, tenant)
    r = await http.post("/v1/sync", headers=headers, json={"device_id": "tablet-bad", "changes": changes, **extra})
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["details"], body
    assert field in [d["field"] for d in body["error"]["details"]], body
    assert await counts(db_conn, tenant) == before, "nothing of the chunk was applied"
    return body


async def test_bad_chunks_are_refused_whole_naming_the_change(stack: Any, http: Any, db_conn: Any,
                                                              tenant: str) -> None:
    h = auth(tenant, "operator")
    good = change("note", "create", uid(), {"text": "fine"})
    existing = uid()
    await post_sync(http, h, "tablet-bad", [change("manual_reading", "create", existing, reading())])
    r = await http.post("/v1/sync", headers={**h, "Content-Type": "application/json"}, content=b"{not json")
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "body"
    await _refused(http, db_conn, tenant, h, [good, change("well", "create", uid(), {})], 422, "changes[1].entity")
    await _refused(http, db_conn, tenant, h, [good, {"event_id": "nope"}], 422, "changes[1].event_id")
    await _refused(http, db_conn, tenant, h, [good, change("manual_reading", "create", uid(),
                                                           {**reading(), "value": "high"})], 422,
                   "changes[1].data.value")
    await _refused(http, db_conn, tenant, h, [good, change("manual_reading", "update", uid(), {"value": 1.0},
                                                           version=1)], 404, "changes[1].id")
    await _refused(http, db_conn, tenant, h, [good, change("manual_reading", "update", existing, {"value": 1.0},
                                                           version=7)], 422, "changes[1].version")
    await _refused(http, db_conn, tenant, h, [good, change("manual_reading", "create", uid(),
                                                           reading(equipment="NOPE"))], 404,
                   "changes[1].data.equipment_id")
    await _refused(http, db_conn, tenant, h, [good, change("maintenance_record", "create", uid(), {
        "equipment_id": "PJ-1", "started_at": ts(100), "ended_at": ts(0)})], 422, "changes[1].data")
    # An event id already used with other content: 409, nothing applied (the good change neither).
    used = (await post_sync(http, h, "tablet-bad", [change("note", "create", uid(), {"text": "a"})]))
    event_id = used["data"]["applied"][0]["event_id"]
    await _refused(http, db_conn, tenant, h, [good, change("note", "create", uid(), {"text": "b"},
                                                           event_id=event_id)], 409, "changes[1].event_id")
    twice = uid()
    await _refused(http, db_conn, tenant, h, [change("note", "create", uid(), {"text": "1"}, event_id=twice),
                                              change("note", "create", uid(), {"text": "2"}, event_id=twice)],
                   409, "changes[1].event_id")
    # Oversized: more changes than the server takes in one chunk.
    limit = stack.settings.sync_max_changes_per_chunk
    too_many = [change("note", "create", uid(), {"text": "x"}) for _ in range(limit + 1)]
    await _refused(http, db_conn, tenant, h, too_many, 413, "changes")
    await _refused(http, db_conn, tenant, h, [], 422, "cursor", cursor=2**61)
    status = (await http.get("/v1/sync/status/tablet-bad", headers=h)).json()["data"]
    assert status["last_error"] and status["last_error_at"] and status["syncs"] >= 2


async def test_another_tenants_records_and_equipment_are_unknown(stack: Any, http: Any, db_conn: Any,
                                                                tenant: str) -> None:
    other = await sync_tenant(stack, "sync-b")
    theirs = uid()
    await post_sync(http, auth(other, "operator"), "tablet-b1", [change("manual_reading", "create", theirs,
                                                                        reading())])
    h = auth(tenant, "operator")
    await _refused(http, db_conn, tenant, h, [change("manual_reading", "update", theirs, {"value": 1.0},
                                                     version=1)], 404, "changes[0].id")
    await _refused(http, db_conn, tenant, h, [change("manual_reading", "delete", theirs, version=1)], 404,
                   "changes[0].id")
    # Its equipment ids are the same names; a well only B has is unknown to A.
    await db_conn.execute("INSERT INTO wells (tenant_id, id, api_number, name) VALUES ($1, 'W-B', '4200100099', 'b')",
                          other)
    await _refused(http, db_conn, tenant, h, [change("production_record", "create", uid(),
                                                     {"well_id": "W-B", "day": "2026-11-01"})], 404,
                   "changes[0].data.well_id")
    assert await db_conn.fetchval("SELECT value FROM manual_readings WHERE tenant_id = $1 AND id = $2::uuid",
                                  other, theirs) == 800.0
    # Nothing of B's flows to A.
    pulled = (await post_sync(http, h, "tablet-iso", []))["data"]["changes"]
    assert theirs not in {c["id"] for c in pulled}
    assert (await http.get("/v1/sync/status/tablet-b1", headers=h)).status_code == 404
    # B's conflicts and upload sessions are unknown to A, whatever A's role.
    hb = auth(other, "operator")
    await post_sync(http, hb, "tablet-b2", [change("manual_reading", "update", theirs, {"value": 5.0}, version=1,
                                                   at=5)])
    clash = await post_sync(http, hb, "tablet-b3", [change("manual_reading", "update", theirs, {"value": 6.0},
                                                           version=1, at=1)])
    conflict_id = clash["data"]["conflicts"][0]["id"]
    upload = (await http.post("/v1/sync/uploads", headers=hb, json={"device_id": "tablet-b3"})).json()["data"]
    admin = auth(tenant, "admin")
    for method, path, body in (("GET", f"/v1/sync/conflicts/{conflict_id}", None),
                               ("POST", f"/v1/sync/conflicts/{conflict_id}/resolve", {"choose": "server"}),
                               ("GET", f"/v1/sync/uploads/{upload['id']}", None),
                               ("PUT", f"/v1/sync/uploads/{upload['id']}/chunks/0", {"changes": []}),
                               ("POST", f"/v1/sync/uploads/{upload['id']}/complete", None)):
        r = await http.request(method, path, headers=admin, json=body)
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND", (method, path, r.text)
    listed = (await http.get("/v1/sync/conflicts", headers=admin, params={"limit": 100})).json()["data"]
    assert conflict_id not in {c["id"] for c in listed}
    assert (await http.get(f"/v1/sync/uploads/{upload['id']}", headers=hb)).json()["data"]["next_chunk"] == 0


async def test_upload_session_of_ten_thousand_survives_a_drop(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = await sync_tenant(stack, "sync-up")
    h = auth(tenant, "operator")
    records = [change("manual_reading", "create", uid(), reading(value=float(i), sensor=f"s{i % 7}"), at=i)
               for i in range(10_000)]
    chunks = [records[i:i + 1000] for i in range(0, 10_000, 1000)]
    session = await http.post("/v1/sync/uploads", headers=h, json={"device_id": "tablet-up", "total_chunks": 10})
    assert session.status_code == 201, session.text
    upload = session.json()["data"]
    assert upload["next_chunk"] == 0 and upload["status"] == "open"
    path = f"/v1/sync/uploads/{upload['id']}"
    for n in range(5):
        r = await http.put(f"{path}/chunks/{n}", headers=h, json={"changes": chunks[n]})
        assert r.status_code == 200, r.text
        assert r.json()["data"]["chunk"] == n and len(r.json()["data"]["applied"]) == 1000
    async def next_chunk() -> int:
        return (await http.get(path, headers=h)).json()["data"]["next_chunk"]

    async def committed() -> bool:
        return await next_chunk() == 6

    # Chunk 5 is committed and the signal is lost before its answer arrives; chunk 6 is lost on the way
    # (the server may or may not have applied it when the connection drops).
    await drop_after_sending(stack.base_url, "PUT", f"{path}/chunks/5", h, dumps({"changes": chunks[5]}),
                             until=committed)
    await drop_after_sending(stack.base_url, "PUT", f"{path}/chunks/6", h, dumps({"changes": chunks[6]}))
    # Nothing to wait for: whether and when the server applies the dropped chunk 6 is not the device's to know,
    # and each step below holds either way (the upload row and the chunk's receipt key serialise its attempts:
    # a late one replays the first answer).
    resume = await next_chunk()
    assert resume in (6, 7)
    # Out of order: refused, saying which chunk comes next.
    skip = await http.put(f"{path}/chunks/8", headers=h, json={"changes": chunks[8]})
    assert skip.status_code == 409 and skip.json()["error"]["details"][0]["field"] == "n"
    for n in range(5, 10):  # the device resends from the last chunk it did not hear back about
        r = await http.put(f"{path}/chunks/{n}", headers=h, json={"changes": chunks[n]})
        assert r.status_code == 200, r.text
        if n < resume:
            assert r.headers.get("idempotent-replayed") == "true"
    done = await http.post(f"{path}/complete", headers=h)
    assert done.status_code == 200, done.text
    assert done.json()["data"]["upload"]["status"] == "completed"
    assert done.json()["data"]["upload"]["applied_changes"] == 10_000
    assert done.json()["data"]["changes"] == [], "the device's own records are not sent back"
    assert await db_conn.fetchval("SELECT count(*) FROM manual_readings WHERE tenant_id = $1", tenant) == 10_000
    assert await db_conn.fetchval("SELECT count(DISTINCT id) FROM manual_readings WHERE tenant_id = $1"
                                  " AND id = ANY($2::uuid[])", tenant, [c["id"] for c in records]) == 10_000
    assert await db_conn.fetchval("SELECT count(*) FROM field_events WHERE tenant_id = $1", tenant) == 10_000
    status = (await http.get("/v1/sync/status/tablet-up", headers=h)).json()["data"]
    assert status["last_cursor"] == done.json()["data"]["cursor"]


async def test_attachment_content_upload_and_download(stack: Any, http: Any, db_conn: Any, tenant: str) -> None:
    h = auth(tenant, "operator")
    photo = b"\xff\xd8\xff" + bytes(range(256)) * 40
    sha = hashlib.sha256(photo).hexdigest()
    aid = uid()
    await post_sync(http, h, "tablet-cam", [change("attachment", "create", aid, {
        "equipment_id": "PJ-1", "filename": "gauge.jpg", "content_type": "image/jpeg", "sha256": sha})])
    missing = await http.get(f"/v1/sync/attachments/{aid}/content", headers=h)
    assert missing.status_code == 404
    wrong = await http.put(f"/v1/sync/attachments/{aid}/content", headers=h, content=b"not the photo")
    assert wrong.status_code == 409 and wrong.json()["error"]["code"] == "CONFLICT"
    for _ in range(2):  # a retried upload changes nothing
        put = await http.put(f"/v1/sync/attachments/{aid}/content", headers=h, content=photo)
        assert put.status_code == 200, put.text
        assert put.json()["data"] == {"id": aid, "sha256": sha, "size_bytes": len(photo),
                                      "content_type": "image/jpeg"}
    got = await http.get(f"/v1/sync/attachments/{aid}/content", headers=auth(tenant, "viewer"))
    assert got.status_code == 200 and got.content == photo and got.headers["content-type"] == "image/jpeg"
    # Always a download that the browser may neither sniff nor run (stored XSS against a signed-in admin).
    assert got.headers["content-disposition"].startswith("attachment;")
    assert got.headers["x-content-type-options"] == "nosniff" and got.headers["content-security-policy"] == "sandbox"
    for risky in ("text/html", "image/svg+xml", "application/javascript", "text/html; charset=utf-8"):
        refused = await http.post("/v1/sync", headers=h, json={"device_id": "tablet-cam", "cursor": 0, "changes": [
            change("attachment", "create", uid(), {"filename": "x.html", "content_type": risky})]})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["details"][0]["field"] == "changes[0].data.content_type", refused.text
    row = await db_conn.fetchrow("SELECT content_stored, size_bytes FROM attachments WHERE tenant_id = $1"
                                 " AND id = $2::uuid", tenant, aid)
    assert row["content_stored"] and row["size_bytes"] == len(photo)
    stored = list(stack.settings.data_dir.glob(f"attachments/{tenant}/*/{sha}"))
    assert len(stored) == 1 and stored[0].read_bytes() == photo
    other = await sync_tenant(stack, "sync-cam")
    assert (await http.get(f"/v1/sync/attachments/{aid}/content", headers=auth(other, "admin"))).status_code == 404
    assert (await http.put(f"/v1/sync/attachments/{aid}/content", headers=auth(other, "admin"),
                           content=photo)).status_code == 404
