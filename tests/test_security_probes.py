"""Hostile input against every endpoint the OpenAPI document names (issue 18's security suite): injection strings
in every list endpoint's filters, sort and sparse fields; oversized bodies to every endpoint that takes one."""

import asyncio
from typing import Any

import pytest

from tests.helpers import auth, create_tenant, new_tenant_id

INJECTIONS = ["' OR '1'='1", "1; DROP TABLE alerts; --", "id) UNION SELECT password_hash FROM users --",
              "eq:' OR 1=1 --", "in:a','b", "like:%' OR '%'='", "../../etc/passwd", "\u0000", "-id;select 1",
              "name,(select 1)", "${jndi:ldap://x}", "gte:2020-01-01'::timestamptz --"]


@pytest.fixture(scope="module")
async def probe_tenant(stack: Any) -> str:
    tenant = new_tenant_id("probe")
    await create_tenant(stack, tenant, [("PJ-1", "pump_jack")])
    return tenant


async def _openapi(http: Any) -> dict[str, Any]:
    return (await http.get("/openapi.json")).json()


def _list_endpoints(doc: dict[str, Any]) -> list[str]:
    """GET endpoints without path parameters that take ``sort`` and ``fields``: the shared listing."""
    out = []
    for path, ops in doc["paths"].items():
        get = ops.get("get")
        if get and "{" not in path:
            names = {p["name"] for p in get.get("parameters", [])}
            if {"sort", "fields"} <= names:
                out.append(path)
    return out


async def test_list_filters_sort_and_fields_refuse_injection_without_a_5xx(
        stack: Any, http: Any, probe_tenant: str) -> None:
    doc = await _openapi(http)
    lists = _list_endpoints(doc)
    assert len(lists) >= 8, lists  # alerts, wells, equipment, rules, production, users, keys, audit...
    h = auth(probe_tenant, "admin")
    probes = [(path, name, bad) for path in lists
              for name in (p["name"] for p in doc["paths"][path]["get"].get("parameters", [])
                           if p["name"] not in {"page", "limit"})
              for bad in INJECTIONS]
    gate = asyncio.Semaphore(16)  # as many clients at once as a busy tenant has: the answers must not change

    async def probe(path: str, name: str, bad: str) -> None:
        async with gate:
            resp = await http.get(path, params={name: bad}, headers=h)
        assert resp.status_code < 500, (path, name, bad, resp.text)
        if resp.status_code == 200:  # taken as a literal value: it matched nothing it should not
            assert resp.json()["meta"]["pagination"]["total"] == 0 or name in {"sort", "fields"}, (path, name, bad)
        else:
            assert resp.json()["error"]["code"] in {"VALIDATION_ERROR", "BAD_REQUEST"}, resp.text

    await asyncio.gather(*(probe(*p) for p in probes))
    answered = len(probes)
    assert answered > 500


async def test_every_body_taking_endpoint_refuses_an_oversized_body(stack: Any, http: Any, probe_tenant: str) -> None:
    doc = await _openapi(http)
    h = {**auth(probe_tenant, "admin"), "Content-Type": "application/json"}
    big = b"[" + b"1," * (5 * 1024 * 1024) + b"1]"  # 10 MiB: over every endpoint's limit
    probed = 0
    for path, ops in doc["paths"].items():
        for method in ("post", "put", "patch"):
            if method not in ops or "requestBody" not in ops[method]:
                continue
            concrete = path.replace("{", "").replace("}", "")  # any id: the body is refused before the route
            resp = await http.request(method.upper(), concrete, headers=h, content=big)
            assert resp.status_code == 413, (method, path, resp.status_code, resp.text[:200])
            assert resp.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
            probed += 1
    assert probed >= 20


async def test_attachment_names_are_metadata_never_paths(stack: Any, http: Any, probe_tenant: str) -> None:
    """A device's file name never reaches the file system: content is stored by its SHA-256."""
    import hashlib
    import uuid

    h = auth(probe_tenant, "operator")
    content = b"gauge photo bytes"
    sha = hashlib.sha256(content).hexdigest()
    root = stack.settings.attachment_dir or stack.settings.data_dir / "attachments"
    # Other test modules of this worker may have stored attachments in the same stack: only what this test
    # writes is looked at.
    before = {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()
    for name in ("../../../../etc/passwd", "..\\..\\boot.ini", "/abs/path.jpg", "x/../../y.jpg"):
        aid = str(uuid.uuid4())
        synced = await http.post("/v1/sync", headers=h, json={"device_id": "probe-tab", "cursor": 0, "changes": [{
            "event_id": str(uuid.uuid4()), "entity": "attachment", "op": "create", "id": aid, "version": 0,
            "client_ts": "2026-11-22T06:00:00Z", "data": {"filename": name, "content_type": "image/jpeg",
                                                          "sha256": sha}}]})
        assert synced.status_code in (200, 422), synced.text
        if synced.status_code == 200:
            put = await http.put(f"/v1/sync/attachments/{aid}/content", headers=h, content=content)
            assert put.status_code == 200, put.text
    stored = [p for p in root.rglob("*") if p.is_file() and p not in before]
    assert stored and all(p.name == sha and root / probe_tenant in p.parents for p in stored), stored
    # Nothing named after a device's file name was written anywhere the stack writes.
    names = {"passwd", "boot.ini", "path.jpg", "y.jpg", "..\\..\\boot.ini"}
    assert not [p for p in stack.settings.data_dir.parent.rglob("*") if p.name in names]
