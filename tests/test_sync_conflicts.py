"""Two devices edit the same record offline, then sync: for every strategy the outcome is the one specified and
the same whichever device syncs first; the losing version stays in the conflicts, the field events and the audit
trail. Two tenants replay the same story with the same ids, one per order, so their records must be identical."""

import json
from typing import Any

import pytest

from tests.helpers import auth
from tests.test_sync import change, post_sync, reading, sync_tenant, ts, uid

SEED_EVENT = "seed"
DATA_COLUMNS = {
    "manual_reading": ("manual_readings", "equipment_id, sensor, value, unit, read_at, notes"),
    "production_record": ("production_records", "well_id, day, oil_bbl, gas_mcf, water_bbl, notes"),
    "inspection": ("inspections", "equipment_id, inspected_at, checklist, findings, notes"),
    "note": ("field_notes", "equipment_id, title, text, tags"),
    "attachment": ("attachments", "equipment_id, filename, caption, sha256, kept_from"),
}


@pytest.fixture(scope="module")
async def pair(stack: Any) -> dict[str, str]:
    """Tenant ``ab`` hears device A first, tenant ``ba`` device B first."""
    return {"ab": await sync_tenant(stack, "order-ab"), "ba": await sync_tenant(stack, "order-ba")}


async def record(db_conn: Any, tenant: str, entity: str, record_id: str) -> dict[str, Any]:
    table, columns = DATA_COLUMNS[entity]
    row = await db_conn.fetchrow(f"SELECT {columns}, version, deleted_at IS NOT NULL AS deleted FROM {table}"
                                 f" WHERE tenant_id = $1 AND id = $2::uuid", tenant, record_id)
    assert row is not None, (tenant, entity, record_id)
    return {k: (json.loads(v) if k in ("checklist", "findings", "tags") and isinstance(v, str) else v)
            for k, v in dict(row).items()}


async def play(http: Any, pair: dict[str, str], entity: str, seed: dict[str, Any], a: dict[str, Any],
               b: dict[str, Any]) -> dict[str, Any]:
    """Seed the record, then A's and B's offline edits in both orders; the answers, per order and device."""
    answers: dict[str, Any] = {}
    for order, tenant in pair.items():
        h = auth(tenant, "operator")
        await post_sync(http, h, "office", [{**seed, "event_id": seed["event_id"]}])
        edits = {"a": a, "b": b}
        for device in order:
            answers[(order, device)] = (await post_sync(http, h, f"tablet-{device}", [edits[device]]))["data"]
    return answers


async def converged(http: Any, pair: dict[str, str], entity: str, record_id: str, db_conn: Any) -> dict[str, Any]:
    """The record is identical in both tenants, and every device's pulled copy is what the server holds."""
    rows = [await record(db_conn, t, entity, record_id) for t in pair.values()]
    assert rows[0] == rows[1], rows
    for tenant in pair.values():
        for device in ("tablet-a", "tablet-b"):
            pulled = (await post_sync(http, auth(tenant, "operator"), device, []))["data"]["changes"]
            last = [c for c in pulled if c["id"] == record_id][-1]
            assert last["version"] == rows[0]["version"]
    return rows[0]


async def losing_version_kept(db_conn: Any, tenant: str, record_id: str, event_id: str, data: dict[str, Any]) -> None:
    conflicts = await db_conn.fetch("SELECT versions FROM sync_conflicts WHERE tenant_id = $1 AND record_id = $2::uuid",
                                    tenant, record_id)
    versions = [v for c in conflicts for v in json.loads(c["versions"])]
    assert any(v["event_id"] == event_id and all(v["data"].get(k) == x for k, x in data.items()) for v in versions), \
        versions
    assert await db_conn.fetchval("SELECT data FROM field_events WHERE tenant_id = $1 AND event_id = $2::uuid",
                                  tenant, event_id) is not None
    trail = await db_conn.fetch("SELECT new_values FROM audit_log WHERE tenant_id = $1 AND action = 'sync_conflict'"
                                " AND entity_id = $2", tenant, record_id)
    assert any(event_id in r["new_values"] for r in trail), "the conflict and its versions are in the audit trail"


def edits(entity: str, record_id: str, a: dict[str, Any], b: dict[str, Any], *, ta: float = 5, tb: float = 9,
          op_a: str = "update", op_b: str = "update") -> tuple[dict[str, Any], dict[str, Any]]:
    return (change(entity, op_a, record_id, a, version=1, at=ta, event_id=uid()),
            change(entity, op_b, record_id, b, version=1, at=tb, event_id=uid()))


async def test_newest_wins_for_manual_readings(http: Any, db_conn: Any, pair: dict[str, str]) -> None:
    rid = uid()
    seed = change("manual_reading", "create", rid, reading(value=800.0), event_id=uid())
    a, b = edits("manual_reading", rid, {"value": 812.0, "notes": "A"}, {"value": 790.0}, ta=5, tb=9)
    answers = await play(http, pair, "manual_reading", seed, a, b)
    row = await converged(http, pair, "manual_reading", rid, db_conn)
    assert (row["value"], row["notes"], row["version"]) == (790.0, "A", 3), row
    assert answers[("ab", "b")]["applied"][0]["outcome"] == "won"
    assert answers[("ba", "a")]["applied"][0]["outcome"] == "lost"
    settled = answers[("ba", "a")]["conflicts"][0]
    assert settled["strategy"] == "newest_wins" and settled["status"] == "settled"
    assert settled["fields"] == [{"field": "value", "server": 790.0, "client": 812.0, "result": 790.0}]
    for tenant in pair.values():
        await losing_version_kept(db_conn, tenant, rid, a["event_id"], {"value": 812.0})


async def test_newest_wins_ties_break_by_event_id(http: Any, db_conn: Any, pair: dict[str, str]) -> None:
    rid = uid()
    seed = change("manual_reading", "create", rid, reading(value=800.0), event_id=uid())
    low, high = sorted([uid(), uid()])
    a = change("manual_reading", "update", rid, {"value": 1.0}, version=1, at=7, event_id=high)
    b = change("manual_reading", "update", rid, {"value": 2.0}, version=1, at=7, event_id=low)
    await play(http, pair, "manual_reading", seed, a, b)
    row = await converged(http, pair, "manual_reading", rid, db_conn)
    assert row["value"] == 1.0, "same timestamp: the larger event id wins, in both orders"


async def test_highest_value_for_production_volumes(http: Any, db_conn: Any, pair: dict[str, str]) -> None:
    rid = uid()
    seed = change("production_record", "create", rid, {"well_id": "W-1", "day": "2026-11-10", "oil_bbl": 100.0,
                                                       "gas_mcf": 50.0, "water_bbl": 20.0}, event_id=uid())
    a, b = edits("production_record", rid, {"oil_bbl": 120.0, "notes": "meter A"},
                 {"oil_bbl": 95.0, "gas_mcf": 61.0, "notes": "meter B"}, ta=9, tb=5)
    answers = await play(http, pair, "production_record", seed, a, b)
    row = await converged(http, pair, "production_record", rid, db_conn)
    assert (row["oil_bbl"], row["gas_mcf"], row["water_bbl"], row["notes"]) == (120.0, 61.0, 20.0, "meter A"), row
    assert {c["strategy"] for k, v in answers.items() for c in v["conflicts"]} == {"highest_value"}
    for tenant in pair.values():
        await losing_version_kept(db_conn, tenant, rid, b["event_id"], {"oil_bbl": 95.0})


async def test_highest_value_keeps_a_record_deleted_on_another_device(http: Any, db_conn: Any,
                                                                      pair: dict[str, str]) -> None:
    rid = uid()
    seed = change("production_record", "create", rid, {"well_id": "W-2", "day": "2026-11-11", "oil_bbl": 10.0},
                  event_id=uid())
    a, b = edits("production_record", rid, {}, {"oil_bbl": 14.0}, ta=9, tb=5, op_a="delete")
    await play(http, pair, "production_record", seed, a, b)
    row = await converged(http, pair, "production_record", rid, db_conn)
    assert not row["deleted"] and row["oil_bbl"] == 14.0


async def test_two_devices_create_the_same_well_day(http: Any, db_conn: Any, pair: dict[str, str]) -> None:
    """One production record per well and day: the second create lands on the first as a conflict."""
    day = {"well_id": "W-1", "day": "2026-11-12"}
    ra, rb = uid(), uid()
    a = change("production_record", "create", ra, {**day, "oil_bbl": 80.0}, at=5, event_id=uid())
    b = change("production_record", "create", rb, {**day, "oil_bbl": 85.0, "water_bbl": 3.0}, at=9, event_id=uid())
    answers = {}
    for order, tenant in pair.items():
        h = auth(tenant, "operator")
        for device in order:
            answers[(order, device)] = (await post_sync(http, h, f"tablet-{device}",
                                                        [{"a": a, "b": b}[device]]))["data"]
    volumes = []
    for order, tenant in pair.items():
        rows = await db_conn.fetch("SELECT id::text, oil_bbl, water_bbl FROM production_records WHERE tenant_id = $1"
                                   " AND well_id = 'W-1' AND day = '2026-11-12' AND deleted_at IS NULL", tenant)
        assert len(rows) == 1
        volumes.append((rows[0]["oil_bbl"], rows[0]["water_bbl"]))
        # The record is the first device's; the second's create landed on it under its own id (an alias).
        first_id = {"a": ra, "b": rb}[order[0]]
        second = answers[(order, order[1])]["applied"][0]
        assert rows[0]["id"] == first_id and second["record_id"] == first_id != second["id"]
    assert volumes[0] == volumes[1] == (85.0, 3.0)
    # The second device's id keeps working: an update through it reaches the one record.
    tenant = pair["ab"]
    upd = change("production_record", "update", rb, {"notes": "via alias"}, version=2, at=20)
    out = (await post_sync(http, auth(tenant, "operator"), "tablet-b", [upd]))["data"]["applied"][0]
    assert out["record_id"] == ra and out["outcome"] == "applied"


async def test_manual_review_for_inspections_waits_for_a_person(http: Any, db_conn: Any, pair: dict[str, str]) -> None:
    rid = uid()
    seed = change("inspection", "create", rid, {"equipment_id": "PJ-1", "inspected_at": ts(0), "notes": "ok"},
                  event_id=uid())
    leak = {"description": "valve leaking", "severity": "critical", "code": "V1"}
    a, b = edits("inspection", rid, {"notes": "valve leaking", "findings": [leak]}, {"notes": "all good"})
    answers = await play(http, pair, "inspection", seed, a, b)
    row = await converged(http, pair, "inspection", rid, db_conn)
    # Never settled automatically: back to the last agreed version, both versions waiting, in either order.
    assert (row["notes"], row["findings"], row["version"]) == ("ok", [], 3), row
    assert answers[("ab", "b")]["applied"][0]["outcome"] == answers[("ba", "a")]["applied"][0]["outcome"] == "pending"
    pending = {}
    for order, tenant in pair.items():
        r = await http.get("/v1/sync/conflicts", headers=auth(tenant, "manager"),
                           params={"status": "pending", "entity": "inspection"})
        assert r.status_code == 200, r.text
        items = [c for c in r.json()["data"] if c["record_id"] == rid]
        assert len(items) == 1
        pending[order] = items[0]
    assert [v["event_id"] for v in pending["ab"]["versions"]] == [v["event_id"] for v in pending["ba"]["versions"]]
    assert [v["state"] for v in pending["ab"]["versions"]] == [v["state"] for v in pending["ba"]["versions"]]
    assert {v["event_id"] for v in pending["ab"]["versions"]} == {a["event_id"], b["event_id"]}
    tenant = pair["ab"]
    status = (await http.get("/v1/sync/status/tablet-a", headers=auth(tenant, "operator"))).json()["data"]
    assert status["pending_conflicts"] == 1
    # A third edit meanwhile waits too.
    late = change("inspection", "update", rid, {"notes": "rechecked"}, version=3, at=30)
    out = (await post_sync(http, auth(tenant, "operator"), "tablet-c", [late]))["data"]
    assert out["applied"][0]["outcome"] == "pending" and out["applied"][0]["conflict_id"] == pending["ab"]["id"]
    assert (await record(db_conn, tenant, "inspection", rid))["notes"] == "ok"
    # Operators may not settle it; a manager chooses A's version.
    url = f"/v1/sync/conflicts/{pending['ab']['id']}/resolve"
    forbidden = await http.post(url, headers=auth(tenant, "operator"), json={"choose": a["event_id"]})
    assert forbidden.status_code == 403
    wrong = await http.post(url, headers=auth(tenant, "manager"), json={"choose": uid()})
    assert wrong.status_code == 422 and wrong.json()["error"]["details"][0]["field"] == "choose"
    done = await http.post(url, headers=auth(tenant, "manager"), json={"choose": a["event_id"], "comment": "leak seen"})
    assert done.status_code == 200, done.text
    settled = done.json()["data"]
    assert settled["status"] == "settled" and settled["settled_by"] == f"manager@{tenant}.example"
    row = await record(db_conn, tenant, "inspection", rid)
    assert row["notes"] == "valve leaking" and row["findings"][0]["severity"] == "critical" and row["version"] == 5
    again = await http.post(url, headers=auth(tenant, "manager"), json={"choose": "server"})
    assert again.status_code == 409
    # The decision flows to the devices, and the critical finding it accepted opened the inspection alert.
    pulled = (await post_sync(http, auth(tenant, "operator"), "tablet-b", []))["data"]["changes"]
    assert [c for c in pulled if c["id"] == rid][-1]["data"]["notes"] == "valve leaking"
    alert = await db_conn.fetchrow("SELECT severity, state FROM alerts WHERE tenant_id = $1 AND equipment_id = 'PJ-1'"
                                   " AND rule_id = 'inspection'", tenant)
    assert alert is not None and alert["severity"] == "critical"
    # A merged version supplied by the reviewer, on the other tenant.
    other = pair["ba"]
    merged = await http.post(f"/v1/sync/conflicts/{pending['ba']['id']}/resolve", headers=auth(other, "admin"),
                             json={"data": {"notes": "leak fixed on site", "findings": []}})
    assert merged.status_code == 200, merged.text
    assert (await record(db_conn, other, "inspection", rid))["notes"] == "leak fixed on site"


async def test_merge_keeps_both_texts_of_notes(http: Any, db_conn: Any, pair: dict[str, str]) -> None:
    rid = uid()
    seed = change("note", "create", rid, {"equipment_id": "PJ-2", "text": "pump ok", "tags": ["pump"]},
                  event_id=uid())
    a, b = edits("note", rid, {"text": "pump ok\nbelt worn", "tags": ["pump", "belt"]},
                 {"text": "pump ok\noil low", "tags": ["oil"]})
    answers = await play(http, pair, "note", seed, a, b)
    row = await converged(http, pair, "note", rid, db_conn)
    assert row["text"] == "pump ok\nbelt worn\noil low", row
    assert row["tags"] == ["pump", "belt", "oil"]
    assert answers[("ab", "b")]["applied"][0]["outcome"] == "merged"
    for tenant in pair.values():
        await losing_version_kept(db_conn, tenant, rid, a["event_id"], {"text": "pump ok\nbelt worn"})


async def test_keep_both_for_attachments(http: Any, db_conn: Any, pair: dict[str, str]) -> None:
    rid = uid()
    seed = change("attachment", "create", rid, {"equipment_id": "PJ-1", "filename": "wellhead.jpg",
                                                "caption": "wellhead"}, event_id=uid())
    a, b = edits("attachment", rid, {"caption": "before repair", "sha256": "a" * 64}, {"caption": "after repair"})
    answers = await play(http, pair, "attachment", seed, a, b)
    row = await converged(http, pair, "attachment", rid, db_conn)
    assert row["caption"] == "after repair" and row["sha256"] == "a" * 64, row
    copies = []
    for tenant in pair.values():
        kept = await db_conn.fetch("SELECT id::text, caption, sha256, kept_from::text FROM attachments"
                                   " WHERE tenant_id = $1 AND kept_from = $2::uuid", tenant, rid)
        assert len(kept) == 1
        copies.append(dict(kept[0]))
    assert copies[0] == copies[1] and copies[0]["caption"] == "before repair" and copies[0]["sha256"] == "a" * 64
    settled = answers[("ab", "b")]["conflicts"][0]
    assert settled["outcome"] == "kept_both" and settled["copy_id"] == copies[0]["id"]
    # The copy is a record like any other: it reaches the devices.
    pulled = (await post_sync(http, auth(pair["ab"], "operator"), "tablet-z", []))["data"]["changes"]
    assert copies[0]["id"] in {c["id"] for c in pulled}


async def test_a_tenant_chooses_its_strategies(http: Any, db_conn: Any, stack: Any) -> None:
    tenant = await sync_tenant(stack, "strategy")
    admin = auth(tenant, "admin")
    bad = await http.patch("/v1/tenant/settings", headers=admin,
                           json={"sync_strategies": {"production_record": "keep_both"}})
    assert bad.status_code == 422
    r = await http.patch("/v1/tenant/settings", headers=admin, json={"sync_strategies": {"note": "newest_wins"}})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["sync_strategies"]["note"] == "newest_wins"
    assert r.json()["data"]["sync_strategies"]["inspection"] == "manual_review"
    h = auth(tenant, "operator")
    rid = uid()
    await post_sync(http, h, "office", [change("note", "create", rid, {"text": "pump ok"})])
    await post_sync(http, h, "tablet-a", [change("note", "update", rid, {"text": "A"}, version=1, at=9)])
    out = (await post_sync(http, h, "tablet-b", [change("note", "update", rid, {"text": "B"}, version=1, at=5)]))
    assert out["data"]["conflicts"][0]["strategy"] == "newest_wins"
    assert (await record(db_conn, tenant, "note", rid))["text"] == "A", "newest wins instead of merging"
