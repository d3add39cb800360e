"""Wells over the REST API: CRUD, API-number and coordinate validation, search and bounding box,
delete rules, the equipment and timeline of a well, audit, and tenant isolation."""

import uuid
from datetime import timedelta
from typing import Any

import pytest

from schema.assets import API_STATE_CODES, format_api_number, parse_api_number
from tests.helpers import auth, create_tenant, new_tenant_id, now_utc


def api_number(state: str = "42") -> str:
    """A fresh, valid, dashed 10-digit API number."""
    n = uuid.uuid4().int
    return f"{state}-{n % 1000:03d}-{(n // 1000) % 100000:05d}"


def error_fields(resp: Any) -> list[str]:
    body = resp.json()
    assert set(body) == {"error"}, body
    return [d["field"] for d in body["error"]["details"]]


async def audit_rows(db_conn: Any, tenant: str, entity_type: str, entity_id: str) -> list[dict[str, Any]]:
    rows = await db_conn.fetch("SELECT action, actor_type, old_values::text AS old, new_values::text AS new"
                               " FROM audit_log WHERE tenant_id = $1 AND entity_type = $2 AND entity_id = $3"
                               " ORDER BY id", tenant, entity_type, entity_id)
    return [dict(r) for r in rows]


@pytest.fixture(scope="module")
async def tenant(stack: Any) -> str:
    t = new_tenant_id("wells")
    await create_tenant(stack, t, [("PJ-1", "pump_jack")])
    return t


# ----------------------------------------------------------------------------- the API number, pure


@pytest.mark.parametrize(("text", "digits"), [
    ("42-501-20130-03-00", "42501201300300"),
    ("42501201300300", "42501201300300"),
    ("42-501-20130", "4250120130"),
    ("4250120130", "4250120130"),
    ("42-501-20130-03", "425012013003"),
    ("42501-20130", "4250120130"),
    (" 05-123-45678 ", "0512345678"),
    ("51-001-00001", "5100100001"),  # Hawaii
    ("55-001-00001", "5500100001"),  # Alaska offshore
    ("56-001-00001", "5600100001"),
    ("60-710-40062", "6071040062"),  # Northern Gulf of Mexico
    ("61-001-00001", "6100100001"),
])
@pytest.mark.fast
def test_valid_api_numbers(text: str, digits: str) -> None:
    assert parse_api_number(text) == digits
    assert parse_api_number(format_api_number(digits)) == digits


@pytest.mark.parametrize("text", [
    "", "42", "42-501-2013", "425012013", "42501201300", "4250120130030", "425012013003000",
    "42-501-20130-03-00-00", "4-2501-20130", "42-５01-20130", "42-50-120130", "42--501-20130", "42 501 20130",
    "42-501-20130-",
    "AB-501-20130", "42-501-2013O", "00-501-20130", "52-501-20130", "53-001-00001", "54-001-00001",
    "57-001-00001", "59-001-00001", "62-001-00001", "99-001-00001", "４２-501-20130",
])
@pytest.mark.fast
def test_invalid_api_numbers(text: str) -> None:
    with pytest.raises(ValueError):
        parse_api_number(text)


@pytest.mark.fast
def test_state_codes_are_the_published_ones() -> None:
    assert len(API_STATE_CODES) == 51 + 4
    assert {"01", "08", "42", "49", "50", "51", "55", "56", "60", "61"} <= API_STATE_CODES
    assert not {"00", "52", "53", "54", "57", "58", "59", "62"} & API_STATE_CODES


# ----------------------------------------------------------------------------- CRUD


async def test_well_crud_and_audit(http: Any, db_conn: Any, tenant: str) -> None:
    manager = auth(tenant, "manager")
    number = api_number()
    body = {"id": f"W-{uuid.uuid4().hex[:6]}", "api_number": number.replace("-", ""), "name": "University 7-12H",
            "lease": "University Lands 7", "operator": "Example Co", "field": "Wasson", "status": "drilling",
            "latitude": 33.1, "longitude": -102.5, "spud_date": "2019-04-02", "metadata": {"pad": "P-12"}}
    r = await http.post("/v1/wells", json=body, headers=manager)
    assert r.status_code == 201, r.text
    well = r.json()["data"]
    assert well["api_number"] == number  # stored as digits, shown with dashes
    assert {k: well[k] for k in body if k != "api_number"} == {k: v for k, v in body.items() if k != "api_number"}
    assert well["equipment_ids"] == [] and well["created_at"] and well["updated_at"]
    wid = well["id"]
    assert await db_conn.fetchval("SELECT api_number FROM wells WHERE tenant_id = $1 AND id = $2",
                                  tenant, wid) == number.replace("-", "")

    r = await http.get(f"/v1/wells/{wid}", headers=auth(tenant, "viewer"))
    assert r.status_code == 200 and r.json()["data"] == well

    r = await http.patch(f"/v1/wells/{wid}", json={"status": "active", "lease": None, "latitude": 33.2,
                                                     "longitude": -102.6}, headers=manager)
    assert r.status_code == 200, r.text
    patched = r.json()["data"]
    assert (patched["status"], patched["lease"], patched["latitude"]) == ("active", None, 33.2)
    assert patched["name"] == body["name"] and patched["updated_at"] >= well["updated_at"]
    # An empty patch changes nothing and writes no audit entry.
    r = await http.patch(f"/v1/wells/{wid}", json={}, headers=manager)
    assert r.status_code == 200 and r.json()["data"]["updated_at"] == patched["updated_at"]

    # Server-made id.
    r = await http.post("/v1/wells", json={"api_number": api_number("60"), "name": "Offshore A-1"}, headers=manager)
    assert r.status_code == 201, r.text
    generated = r.json()["data"]
    assert generated["id"].startswith("W-") and generated["status"] == "active"
    assert generated["latitude"] is None and generated["metadata"] == {}

    r = await http.delete(f"/v1/wells/{wid}", headers=manager)
    assert r.status_code == 204, r.text
    for method in ("GET", "PATCH", "DELETE"):
        r = await http.request(method, f"/v1/wells/{wid}", headers=manager,
                               json={"name": "x"} if method == "PATCH" else None)
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND", (method, r.text)
    deleted_at = await db_conn.fetchval("SELECT deleted_at FROM wells WHERE tenant_id = $1 AND id = $2", tenant, wid)
    assert deleted_at is not None  # soft delete: the row stays
    listed = (await http.get("/v1/wells", headers=manager, params={"limit": 100})).json()["data"]
    assert wid not in {w["id"] for w in listed} and generated["id"] in {w["id"] for w in listed}
    # The API number is free again; the id is not.
    r = await http.post("/v1/wells", json={"api_number": number, "name": "Re-entry"}, headers=manager)
    assert r.status_code == 201, r.text
    r = await http.post("/v1/wells", json={"id": wid, "api_number": api_number(), "name": "Same id"},
                        headers=manager)
    assert r.status_code == 409 and error_fields(r) == ["id"]

    actions = [row["action"] for row in await audit_rows(db_conn, tenant, "well", wid)]
    assert actions == ["create", "update", "delete"]
    update = (await audit_rows(db_conn, tenant, "well", wid))[1]
    assert '"status": "drilling"' in update["old"] and '"status": "active"' in update["new"]
    assert '"name"' not in update["new"]  # only what changed


async def test_duplicate_api_number_is_409(http: Any, tenant: str) -> None:
    manager = auth(tenant, "manager")
    number = api_number()
    first = await http.post("/v1/wells", json={"api_number": number, "name": "A"}, headers=manager)
    assert first.status_code == 201
    # With or without dashes, it is the same number.
    r = await http.post("/v1/wells", json={"api_number": number.replace("-", ""), "name": "B"}, headers=manager)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "CONFLICT" and error_fields(r) == ["api_number"]
    other = await http.post("/v1/wells", json={"api_number": api_number(), "name": "C"}, headers=manager)
    r = await http.patch(f"/v1/wells/{other.json()['data']['id']}", json={"api_number": number}, headers=manager)
    assert r.status_code == 409 and error_fields(r) == ["api_number"]
    # Setting a well's own number again is no conflict.
    r = await http.patch(f"/v1/wells/{first.json()['data']['id']}", json={"api_number": number}, headers=manager)
    assert r.status_code == 200


@pytest.mark.parametrize(("body", "field"), [
    ({"api_number": "42-501-2013", "name": "x"}, "api_number"),
    ({"api_number": "52-501-20130", "name": "x"}, "api_number"),
    ({"api_number": 4250120130, "name": "x"}, "api_number"),
    ({"api_number": "42-501-20130"}, "name"),
    ({"api_number": "42-501-20130", "name": "  "}, "name"),
    ({"api_number": "42-501-20130", "name": "x\u0000y"}, "name"),
    ({"api_number": "42-501-20130", "name": "x", "latitude": 33.0}, "longitude"),
    ({"api_number": "42-501-20130", "name": "x", "longitude": -102.0}, "longitude"),
    ({"api_number": "42-501-20130", "name": "x", "latitude": 91, "longitude": 0}, "latitude"),
    ({"api_number": "42-501-20130", "name": "x", "latitude": 0, "longitude": -180.5}, "longitude"),
    ({"api_number": "42-501-20130", "name": "x", "latitude": "north", "longitude": 0}, "latitude"),
    ({"api_number": "42-501-20130", "name": "x", "status": "pumping"}, "status"),
    ({"api_number": "42-501-20130", "name": "x", "id": "a.b"}, "id"),
    ({"api_number": "42-501-20130", "name": "x", "id": "x" * 129}, "id"),
    ({"api_number": "42-501-20130", "name": "x", "spud_date": "2999-01-01"}, "spud_date"),
    ({"api_number": "42-501-20130", "name": "x", "spud_date": "yesterday"}, "spud_date"),
    ({"api_number": "42-501-20130", "name": "x", "metadata": {"k": "\u0000"}}, "metadata"),
    ({"api_number": "42-501-20130", "name": "x", "colour": "red"}, "colour"),
])
async def test_bad_well_input_is_422_naming_the_field(http: Any, tenant: str, body: dict[str, Any],
                                                      field: str) -> None:
    r = await http.post("/v1/wells", json=body, headers=auth(tenant, "manager"))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "VALIDATION_ERROR"
    assert field in error_fields(r), r.text


async def test_bad_well_patch_is_422_naming_the_field(http: Any, tenant: str) -> None:
    manager = auth(tenant, "manager")
    r = await http.post("/v1/wells", json={"api_number": api_number(), "name": "Patchy", "latitude": 31.0,
                                           "longitude": -101.0}, headers=manager)
    wid = r.json()["data"]["id"]
    for body, field in [({"latitude": None}, "latitude"), ({"longitude": None}, "longitude"),
                        ({"name": None}, "name"), ({"status": None}, "status"), ({"api_number": None}, "api_number"),
                        ({"api_number": "4250"}, "api_number"), ({"latitude": -90.01}, "latitude"),
                        ({"id": "other"}, "id")]:
        r = await http.patch(f"/v1/wells/{wid}", json=body, headers=manager)
        assert r.status_code == 422 and field in error_fields(r), (body, r.text)
    # Both cleared together is fine.
    r = await http.patch(f"/v1/wells/{wid}", json={"latitude": None, "longitude": None}, headers=manager)
    assert r.status_code == 200 and r.json()["data"]["latitude"] is None
    assert (await http.get("/v1/wells/not.an.id", headers=manager)).status_code == 422
    assert (await http.get("/v1/wells/NOPE", headers=manager)).status_code == 404


async def test_permissions_of_well_writes(http: Any, tenant: str) -> None:
    body = {"api_number": api_number(), "name": "Perm"}
    for role in ("operator", "viewer"):
        r = await http.post("/v1/wells", json=body, headers=auth(tenant, role))
        assert r.status_code == 403, (role, r.text)
    assert (await http.get("/v1/wells", headers=auth(tenant, "viewer"))).status_code == 200


# ----------------------------------------------------------------------------- search


async def test_search_filters_sort_fields_and_bbox(stack: Any, http: Any) -> None:
    t = new_tenant_id("wsearch")
    await create_tenant(stack, t, [])
    manager = auth(t, "manager")
    wells = [  # id, name, lease, status, lat, lon
        ("W-A", "Alpha 1", "North Lease", "active", 32.0, -102.0),
        ("W-B", "Alpha 2", "North Lease", "drilling", 32.5, -102.5),
        ("W-C", "Bravo 1", "South Lease", "inactive", 29.0, -95.0),
        ("W-D", "Charlie 1", None, "plugged_and_abandoned", None, None),
        ("W-E", "Fiji 1", "Pacific", "active", -17.0, 179.5),
        ("W-F", "Samoa 1", "Pacific", "active", -14.0, -171.0),
    ]
    numbers = {}
    for wid, name, lease, status, lat, lon in wells:
        numbers[wid] = api_number()
        r = await http.post("/v1/wells", json={"id": wid, "api_number": numbers[wid], "name": name, "lease": lease,
                                               "status": status, "latitude": lat, "longitude": lon}, headers=manager)
        assert r.status_code == 201, r.text

    async def ids(**params: Any) -> list[str]:
        r = await http.get("/v1/wells", headers=manager, params=params)
        assert r.status_code == 200, r.text
        return [w["id"] for w in r.json()["data"]]

    assert await ids() == ["W-A", "W-B", "W-C", "W-D", "W-E", "W-F"]  # by name
    assert await ids(name="like:alpha*") == ["W-A", "W-B"]
    assert await ids(name="like:*1", sort="-name") == ["W-F", "W-E", "W-D", "W-C", "W-A"]
    assert await ids(lease="North Lease") == ["W-A", "W-B"]
    assert await ids(status="in:active,drilling") == ["W-A", "W-B", "W-E", "W-F"]
    assert await ids(api_number=numbers["W-C"]) == ["W-C"]  # dashed, matched against digits
    assert await ids(api_number=numbers["W-C"].replace("-", "")) == ["W-C"]
    assert await ids(api_number=f"in:{numbers['W-A']},{numbers['W-B']}") == ["W-A", "W-B"]
    assert await ids(api_number=f"like:{numbers['W-E'][:9]}*") == ["W-E"]
    assert await ids(latitude="gte:32.0", sort="-latitude") == ["W-B", "W-A"]
    # Bounding boxes: min_lon,min_lat,max_lon,max_lat; wells without a location never match.
    assert await ids(bbox="-103,31.5,-101.9,32.6") == ["W-A", "W-B"]
    assert await ids(bbox="-103,31.5,-101.9,32.6", status="drilling") == ["W-B"]
    assert await ids(bbox="-180,-90,180,90") == ["W-A", "W-B", "W-C", "W-E", "W-F"]
    assert await ids(bbox="179,-20,-170,-10") == ["W-E", "W-F"]  # across the antimeridian
    assert await ids(bbox="0,0,1,1") == []
    r = await http.get("/v1/wells", headers=manager, params={"fields": "name", "limit": 2, "page": 2})
    page = r.json()
    assert page["data"] == [{"id": "W-C", "name": "Bravo 1"}, {"id": "W-D", "name": "Charlie 1"}]
    assert page["meta"]["pagination"] == {"page": 2, "limit": 2, "total": 6}
    for params, field in [({"bbox": "1,2,3"}, "bbox"), ({"bbox": "a,b,c,d"}, "bbox"), ({"bbox": "0,10,1,5"}, "bbox"),
                          ({"bbox": "0,-91,1,5"}, "bbox"), ({"bbox": "-181,0,1,5"}, "bbox"),
                          ({"bbox": "nan,0,1,5"}, "bbox"), ({"status": "pumping"}, "status"),
                          ({"colour": "red"}, "colour"), ({"sort": "metadata"}, "sort"), ({"limit": "101"}, "limit"),
                          ({"latitude": "like:3*"}, "latitude")]:
        r = await http.get("/v1/wells", headers=manager, params=params)
        assert r.status_code == 422 and field in error_fields(r), (params, r.text)


# ----------------------------------------------------------------------------- equipment, delete, timeline


async def test_delete_refused_while_equipment_assigned(http: Any, db_conn: Any, tenant: str) -> None:
    manager = auth(tenant, "manager")
    wid = (await http.post("/v1/wells", json={"api_number": api_number(), "name": "Shared"},
                           headers=manager)).json()["data"]["id"]
    eid = f"TNK-{uuid.uuid4().hex[:6]}"
    r = await http.post("/v1/equipment", json={"id": eid, "type": "tank_battery", "well_ids": [wid]}, headers=manager)
    assert r.status_code == 201, r.text
    assert (await http.get(f"/v1/wells/{wid}", headers=manager)).json()["data"]["equipment_ids"] == [eid]
    r = await http.delete(f"/v1/wells/{wid}", headers=manager)
    assert r.status_code == 409 and error_fields(r) == ["equipment_ids"] and eid in r.text
    assert (await http.get(f"/v1/wells/{wid}", headers=manager)).status_code == 200
    r = await http.delete(f"/v1/wells/{wid}", headers=manager, params={"detach": "true"})
    assert r.status_code == 204, r.text
    assert (await http.get(f"/v1/equipment/{eid}", headers=manager)).json()["data"]["well_ids"] == []
    last = (await audit_rows(db_conn, tenant, "well", wid))[-1]
    assert last["action"] == "delete" and eid in last["new"]


async def test_well_equipment_and_activities(http: Any, db_conn: Any, tenant: str) -> None:
    manager = auth(tenant, "manager")
    wid = (await http.post("/v1/wells", json={"api_number": api_number(), "name": "Timeline"},
                           headers=manager)).json()["data"]["id"]
    other = (await http.post("/v1/wells", json={"api_number": api_number(), "name": "Other"},
                             headers=manager)).json()["data"]["id"]
    pj, tnk, cmp_ = (f"{p}-{uuid.uuid4().hex[:6]}" for p in ("PJ", "TNK", "CMP"))
    for eid, etype, wells in ((pj, "pump_jack", [wid]), (tnk, "tank_battery", [wid, other]),
                              (cmp_, "compressor", [other])):
        r = await http.post("/v1/equipment", json={"id": eid, "type": etype, "well_ids": wells}, headers=manager)
        assert r.status_code == 201, r.text

    r = await http.get(f"/v1/wells/{wid}/equipment", headers=auth(tenant, "viewer"))
    assert r.status_code == 200, r.text
    assert [e["id"] for e in r.json()["data"]] == sorted([pj, tnk])
    r = await http.get(f"/v1/wells/{wid}/equipment", headers=manager, params={"type": "pump_jack", "fields": "type"})
    assert r.json()["data"] == [{"id": pj, "type": "pump_jack"}]
    assert r.json()["meta"]["pagination"]["total"] == 1
    r = await http.get("/v1/equipment", headers=manager, params={"well_id": other})
    assert [e["id"] for e in r.json()["data"]] == sorted([tnk, cmp_])

    t0 = now_utc().replace(microsecond=0)
    r = await http.post(f"/v1/equipment/{pj}/maintenance", headers=manager, json={
        "kind": "corrective", "description": "new packing", "started_at": (t0 - timedelta(hours=5)).isoformat(),
        "ended_at": (t0 - timedelta(hours=4)).isoformat()})
    assert r.status_code == 201, r.text
    await http.post(f"/v1/equipment/{cmp_}/maintenance", headers=manager, json={
        "started_at": (t0 - timedelta(hours=1)).isoformat(), "ended_at": t0.isoformat()})  # the other well's
    await db_conn.execute(
        "INSERT INTO alerts (tenant_id, equipment_id, rule_id, state, severity, message, opened_at)"
        " VALUES ($1, $2, 'level_high', 'resolved', 'warning', 'tank level high', $3)",
        tenant, tnk, t0 - timedelta(hours=2))
    await db_conn.execute(
        "INSERT INTO production_records (tenant_id, well_id, day, oil_bbl, gas_mcf, water_bbl, created_by)"
        " VALUES ($1, $2, $3, 12.5, 40, 3, 'test')", tenant, wid, now_utc().date() - timedelta(days=3))
    await http.patch(f"/v1/wells/{wid}", json={"lease": "Timeline Lease"}, headers=manager)

    r = await http.get(f"/v1/wells/{wid}/activities", headers=auth(tenant, "viewer"))
    assert r.status_code == 200, r.text
    items = r.json()["data"]
    kinds = [a["kind"] for a in items]
    # Newest first: the lease change and the creation (audit), the alert, the maintenance, the production day.
    assert kinds == ["audit", "audit", "alert", "maintenance", "production"], items
    assert [a["at"] for a in items] == sorted((a["at"] for a in items), reverse=True)
    assert items[0]["details"]["action"] == "update" and items[1]["details"]["action"] == "create"
    assert items[2]["equipment_id"] == tnk and "tank level high" in items[2]["summary"]
    assert items[3]["equipment_id"] == pj and items[3]["details"]["kind"] == "corrective"
    assert items[4]["details"]["oil_bbl"] == 12.5 and items[4]["equipment_id"] is None
    assert r.json()["meta"]["pagination"]["total"] == 5
    # The shared list conventions apply.
    r = await http.get(f"/v1/wells/{wid}/activities", headers=manager,
                       params={"kind": "in:alert,maintenance", "fields": "kind", "sort": "at"})
    assert r.json()["data"] == [{"id": items[3]["id"], "kind": "maintenance"}, {"id": items[2]["id"], "kind": "alert"}]
    r = await http.get(f"/v1/wells/{wid}/activities", headers=manager, params={"limit": 2, "page": 3})
    assert [a["id"] for a in r.json()["data"]] == [items[4]["id"]]
    r = await http.get(f"/v1/wells/{wid}/activities", headers=manager, params={"kind": "rumour"})
    assert r.status_code == 422 and error_fields(r) == ["kind"]
    for path in ("/v1/wells/NOPE-1/activities", "/v1/wells/NOPE-1/equipment"):
        assert (await http.get(path, headers=manager)).status_code == 404


# ----------------------------------------------------------------------------- tenant isolation


async def test_tenant_b_wells_are_404_and_invisible(stack: Any, http: Any, db_conn: Any) -> None:
    a, b = new_tenant_id("wiso-a"), new_tenant_id("wiso-b")
    await create_tenant(stack, a, [])
    await create_tenant(stack, b, [])
    number = api_number()
    # The same API number in two tenants is no conflict.
    rb = await http.post("/v1/wells", json={"id": "W-B", "api_number": number, "name": "B's"}, headers=auth(b, "admin"))
    ra = await http.post("/v1/wells", json={"id": "W-A", "api_number": number, "name": "A's"}, headers=auth(a, "admin"))
    assert rb.status_code == 201 and ra.status_code == 201
    admin_a = auth(a, "admin")
    before = await db_conn.fetchrow("SELECT name, deleted_at FROM wells WHERE tenant_id = $1 AND id = 'W-B'", b)
    for method, path, body in [("GET", "/v1/wells/W-B", None), ("PATCH", "/v1/wells/W-B", {"name": "A was here"}),
                               ("DELETE", "/v1/wells/W-B", None), ("GET", "/v1/wells/W-B/equipment", None),
                               ("GET", "/v1/wells/W-B/activities", None)]:
        r = await http.request(method, path, headers=admin_a, json=body)
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND", (method, path, r.text)
    assert await db_conn.fetchrow("SELECT name, deleted_at FROM wells WHERE tenant_id = $1 AND id = 'W-B'", b) == before
    listed = (await http.get("/v1/wells", headers=admin_a, params={"api_number": number})).json()
    assert [w["id"] for w in listed["data"]] == ["W-A"] and listed["meta"]["pagination"]["total"] == 1
    r = await http.post("/v1/equipment", json={"id": "PJ-X", "well_ids": ["W-B"]}, headers=admin_a)
    assert r.status_code == 422 and error_fields(r) == ["well_ids"]
