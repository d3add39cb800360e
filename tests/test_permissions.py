"""Every endpoint against every role and every API-key scope: allow or deny exactly as the matrix says.

The table is the app itself: routes are enumerated from `serve.app.build_app`, each route's
permission is read from its `serve.deps.require` dependency (``check.permission``), and the
expected answer from `serve.auth.PERMISSIONS` / `API_KEY_SCOPES`. A route added without a
permission fails `test_every_v1_route_declares_exactly_one_permission`.
"""

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import websockets
from fastapi.routing import APIRoute, APIWebSocketRoute

from config import Settings
from serve.app import build_app, route_contexts
from serve.auth import API_KEY_SCOPES, PERMISSIONS, Role, permission_table_markdown
from serve.deps import current_principal, current_user
from tests.helpers import ROLES, auth, create_tenant, new_tenant_id

README = Path(__file__).resolve().parent.parent / "README.md"
# Credentials in the body (or, for an acknowledge link, the path), no principal.
PUBLIC_AUTH = {"/v1/auth/login", "/v1/auth/refresh", "/v1/auth/forgot-password", "/v1/auth/reset-password",
               "/v1/auth/accept-invitation", "/v1/ack-links/{token}"}
# Any signed-in user, no permission (never called here with the shared sessions: logout would end them).
SELF_SERVICE = {"/v1/auth/me", "/v1/auth/logout", "/v1/auth/password", "/v1/auth/mfa/setup",
                "/v1/auth/mfa/enable", "/v1/auth/mfa/disable",
                # one's own in-app notifications
                "/v1/notifications", "/v1/notifications/{notification_id}/read",
                "/v1/notifications/{notification_id}",
                # one's own notification preferences
                "/v1/notification-preferences"}
# WebSocket routes authenticate inside the handler; each must be listed here with its permission.
WEBSOCKETS = {"/v1/alerts/ws": "alerts:read"}
# Bodies that are valid (or harmless) and cannot change anything: ids are random, so allowed calls 404.
BODIES: dict[tuple[str, str], Any] = {
    ("PATCH", "/v1/users/{user_id}"): {"name": "nobody"},
    ("PATCH", "/v1/users/{user_id}/role"): {"role": "viewer"},
    ("POST", "/v1/users"): {},  # 422 when allowed: nobody is created
    ("POST", "/v1/api-keys"): {},  # 422 when allowed
    ("PATCH", "/v1/tenant/settings"): {},  # an empty partial update
    ("POST", "/v1/telemetry"): {},  # 422 when allowed: nothing published
    ("POST", "/v1/alerts/{alert_id}/acknowledge"): {"comment": "permission test"},
    ("POST", "/v1/alerts/{alert_id}/resolve"): {"comment": "permission test"},  # 404 when allowed
    ("POST", "/v1/rules"): {},  # 422 when allowed: no kind, nothing created
    ("POST", "/v1/silences"): {},  # 422 when allowed: no window, nothing silenced
    ("POST", "/v1/wells"): {},  # 422 when allowed: nothing created
    ("POST", "/v1/equipment"): {"well_ids": ["NOPE-no-such-well"]},  # 422 when allowed (unknown well)
    ("PUT", "/v1/equipment/{equipment_id}/sensors"): {"sensors": []},  # 404 when allowed
    ("POST", "/v1/sync"): {"device_id": "permission-test"},  # a pull-only sync: nothing applied
    ("POST", "/v1/sync/uploads"): {},  # 422 when allowed: no device, no session
    ("POST", "/v1/sync/conflicts/{conflict_id}/resolve"): {"choose": "server"},  # 404 when allowed
    ("POST", "/v1/field-events"): {},  # 422 when allowed: nothing stored
    # A finished job (an open one also needs alerts:silence, which keys never get: tests/test_security_infra.py).
    ("POST", "/v1/equipment/{equipment_id}/maintenance"): {
        "kind": "preventive", "started_at": "2026-01-01T00:00:00Z", "ended_at": "2026-01-01T01:00:00Z"},
}


def _walk(dependant: Any) -> list[Any]:
    out = []
    for sub in dependant.dependencies:
        out.append(sub.call)
        out.extend(_walk(sub))
    return out


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    permissions: tuple[str, ...]  # every `require` found in the dependency tree
    calls: tuple[Any, ...]
    path_params: tuple[tuple[str, Any], ...]
    has_body: bool

    @property
    def permission(self) -> str:
        assert len(self.permissions) == 1, self
        return self.permissions[0]

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _app_routes() -> tuple[list[Endpoint], list[str]]:
    app = build_app(Settings(jwt_secret="permission-table-" + "x" * 32))  # type: ignore[arg-type]
    endpoints, websocket_paths = [], []
    for original, route in route_contexts(app):
        if isinstance(original, APIWebSocketRoute):
            websocket_paths.append(route.path)
            continue
        if not isinstance(original, APIRoute):
            continue
        calls = _walk(route.dependant)
        permissions = tuple(p for p in (getattr(c, "permission", None) for c in calls) if p is not None)
        params = tuple((p.name, p.field_info.annotation) for p in route.dependant.path_params)
        for method in sorted(route.methods):
            endpoints.append(Endpoint(method, route.path, permissions, tuple(calls), params,
                                      original.body_field is not None))
    return endpoints, websocket_paths


ENDPOINTS, WEBSOCKET_PATHS = _app_routes()
PROTECTED = [e for e in ENDPOINTS if e.path.startswith("/v1/") and e.path not in PUBLIC_AUTH | SELF_SERVICE]


def _fill(endpoint: Endpoint) -> str:
    path = endpoint.path
    for name, annotation in endpoint.path_params:
        if annotation is uuid.UUID:
            value = str(uuid.uuid4())
        elif annotation is int:
            value = "999999"
        else:
            value = f"NOPE-{uuid.uuid4().hex[:8]}"
        path = path.replace("{" + name + "}", value)
    return path


async def call(http: Any, endpoint: Endpoint, headers: dict[str, str]) -> Any:
    body = BODIES.get((endpoint.method, endpoint.path), {} if endpoint.has_body else None)
    return await http.request(endpoint.method, _fill(endpoint), headers=headers, json=body)


def assert_envelope(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], list)


def assert_allowed(response: Any, what: str) -> None:
    # 404/409/422/2xx: the permission check passed and the route did its work (or refused the input).
    assert response.status_code not in (401, 403), (what, response.status_code, response.text)
    assert response.status_code < 500, (what, response.status_code, response.text)


# ----------------------------------------------------------------------------- the table itself (no stack)


@pytest.mark.fast
def test_routes_were_found() -> None:
    paths = {e.path for e in ENDPOINTS}
    assert {"/v1/alerts", "/v1/users", "/v1/api-keys", "/v1/tenant/settings", "/v1/auth/login"} <= paths
    assert len(PROTECTED) >= 15


@pytest.mark.fast
def test_every_v1_route_declares_exactly_one_permission() -> None:
    unprotected = [str(e) for e in PROTECTED if len(e.permissions) != 1]
    assert unprotected == [], f"routes without exactly one require(...): {unprotected}"
    unknown = [(str(e), e.permission) for e in PROTECTED if e.permission not in PERMISSIONS]
    assert unknown == [], f"routes naming a permission the matrix lacks: {unknown}"
    # ... and it is enforced through the authenticated principal, not a stand-alone check.
    assert all(current_principal in e.calls for e in PROTECTED)


@pytest.mark.fast
def test_self_service_routes_need_a_user_and_no_permission() -> None:
    found = {e.path: e for e in ENDPOINTS if e.path in SELF_SERVICE}
    assert set(found) == SELF_SERVICE
    for e in found.values():
        assert e.permissions == (), e
        assert current_user in e.calls, f"{e} must depend on current_user (a person, not an API key)"


@pytest.mark.fast
def test_public_auth_routes_take_no_credential() -> None:
    found = {e.path: e for e in ENDPOINTS if e.path in PUBLIC_AUTH}
    assert set(found) == PUBLIC_AUTH
    for e in found.values():
        assert e.permissions == () and current_principal not in e.calls, e


@pytest.mark.fast
def test_every_v1_route_is_classified() -> None:
    v1 = {e.path for e in ENDPOINTS if e.path.startswith("/v1/")}
    assert v1 == {e.path for e in PROTECTED} | PUBLIC_AUTH | SELF_SERVICE
    assert {e.path for e in ENDPOINTS if not e.path.startswith("/v1/")} <= {
        "/health", "/health/{part}", "/metrics",
        "/", "/console/{version}/{name:path}"}  # the console's page and files (static, no data: serve/console)
    assert sorted(WEBSOCKET_PATHS) == sorted(WEBSOCKETS), "a new WebSocket route: add it and its permission here"


@pytest.mark.fast
def test_matrix_is_consistent() -> None:
    assert API_KEY_SCOPES <= set(PERMISSIONS)
    assert all(Role.ADMIN in roles for roles in PERMISSIONS.values()), "admins hold every permission"
    for identity_admin in ("users:read", "users:write", "api_keys:manage", "audit:read", "tenant:write"):
        assert identity_admin not in API_KEY_SCOPES
    # A lower role never holds what a higher one lacks.
    order = [Role.VIEWER, Role.OPERATOR, Role.MANAGER, Role.ADMIN]
    for permission, roles in PERMISSIONS.items():
        ranks = [order.index(r) for r in roles]
        assert ranks and set(ranks) == set(range(min(ranks), 4)), permission


@pytest.mark.fast
def test_readme_permission_table_matches_the_matrix() -> None:
    table = permission_table_markdown()
    text = README.read_text(encoding="utf-8")
    assert table in text, "README's permission table is out of date: paste serve.auth.permission_table_markdown()"
    start, end = text.index("<!-- permission-matrix:start -->"), text.index("<!-- permission-matrix:end -->")
    assert text[start:end].strip().removeprefix("<!-- permission-matrix:start -->").strip() == table


# ----------------------------------------------------------------------------- against the running stack


@pytest.fixture(scope="module")
async def perm_tenant(stack: Any) -> dict[str, Any]:
    """A tenant with one user per role and one API key per grantable scope (plus one with all of them)."""
    import httpx

    tenant = new_tenant_id("perm")
    await create_tenant(stack, tenant, [("MTR-1", "meter")])
    keys: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
        for scope in [*sorted(API_KEY_SCOPES), "*"]:
            scopes = sorted(API_KEY_SCOPES) if scope == "*" else [scope]
            r = await http.post("/v1/api-keys", headers=auth(tenant, "admin"),
                                json={"name": f"perm {scope}", "scopes": scopes})
            assert r.status_code == 201, r.text
            keys[scope] = r.json()["data"]["key"]
    return {"tenant": tenant, "keys": keys}


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", PROTECTED, ids=str)
async def test_role_matrix(http: Any, perm_tenant: dict[str, Any], endpoint: Endpoint, role: str) -> None:
    response = await call(http, endpoint, auth(perm_tenant["tenant"], role))
    if Role(role) in PERMISSIONS[endpoint.permission]:
        assert_allowed(response, f"{role} on {endpoint}")
    else:
        assert_envelope(response, 403, "FORBIDDEN")


@pytest.mark.parametrize("scope", sorted(API_KEY_SCOPES))
@pytest.mark.parametrize("endpoint", PROTECTED, ids=str)
async def test_api_key_scope_matrix(http: Any, perm_tenant: dict[str, Any], endpoint: Endpoint, scope: str) -> None:
    response = await call(http, endpoint, bearer(perm_tenant["keys"][scope]))
    if endpoint.permission == scope:
        assert_allowed(response, f"key with {scope} on {endpoint}")
    else:
        assert_envelope(response, 403, "FORBIDDEN")


@pytest.mark.parametrize("endpoint", PROTECTED, ids=str)
async def test_api_key_with_every_scope(http: Any, perm_tenant: dict[str, Any], endpoint: Endpoint) -> None:
    """Even a key holding every grantable scope never passes identity administration (nor any other
    permission kept for people, such as registry and rule writes)."""
    response = await call(http, endpoint, bearer(perm_tenant["keys"]["*"]))
    if endpoint.permission in API_KEY_SCOPES:
        assert_allowed(response, f"all-scope key on {endpoint}")
    else:
        assert endpoint.permission in set(PERMISSIONS) - API_KEY_SCOPES
        assert_envelope(response, 403, "FORBIDDEN")


async def test_api_keys_cannot_be_granted_admin_permissions(http: Any, perm_tenant: dict[str, Any]) -> None:
    for permission in [*sorted(set(PERMISSIONS) - API_KEY_SCOPES), "nonsense:scope"]:
        r = await http.post("/v1/api-keys", headers=auth(perm_tenant["tenant"], "admin"),
                            json={"name": "too much", "scopes": ["alerts:read", permission]})
        assert_envelope(r, 422, "VALIDATION_ERROR")


async def test_api_keys_are_not_users(http: Any, perm_tenant: dict[str, Any]) -> None:
    """Self-service routes need a person: a key (even with every scope) gets 403; every role gets in."""
    r = await http.get("/v1/auth/me", headers=bearer(perm_tenant["keys"]["*"]))
    assert_envelope(r, 403, "FORBIDDEN")
    for endpoint in (e for e in ENDPOINTS if e.path in SELF_SERVICE and e.path != "/v1/auth/me"):
        # Bodies are invalid on purpose: a key is refused before they are looked at.
        r = await http.request(endpoint.method, endpoint.path, headers=bearer(perm_tenant["keys"]["*"]),
                               json={} if endpoint.has_body else None)
        assert_envelope(r, 403, "FORBIDDEN")
    for role in ROLES:
        me = await http.get("/v1/auth/me", headers=auth(perm_tenant["tenant"], role))
        assert me.status_code == 200, me.text
        data = me.json()["data"]
        assert data["role"] == role
        assert sorted(data["permissions"]) == sorted(p for p, roles in PERMISSIONS.items() if Role(role) in roles)


@pytest.mark.parametrize("credential", ["none", "garbage", "bad-jwt", "bad-key", "basic"])
@pytest.mark.parametrize("endpoint", [*PROTECTED, *(e for e in ENDPOINTS if e.path in SELF_SERVICE)], ids=str)
async def test_unauthenticated_is_401(http: Any, perm_tenant: dict[str, Any], endpoint: Endpoint,
                                      credential: str) -> None:
    headers = {
        "none": {},
        "garbage": bearer("not-a-token"),
        "bad-jwt": bearer("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"),
        "bad-key": bearer(f"wpk_{perm_tenant['tenant']}_{'A' * 43}"),
        "basic": {"Authorization": "Basic YWRtaW46YWRtaW4="},
    }[credential]
    response = await call(http, endpoint, headers)
    assert_envelope(response, 401, "UNAUTHORIZED")
    assert response.headers.get("www-authenticate") == "Bearer"


async def test_revoked_key_is_401_everywhere(http: Any, perm_tenant: dict[str, Any]) -> None:
    admin = auth(perm_tenant["tenant"], "admin")
    created = (await http.post("/v1/api-keys", headers=admin,
                               json={"name": "short-lived", "scopes": ["alerts:read"]})).json()["data"]
    assert (await http.get("/v1/alerts", headers=bearer(created["key"]))).status_code == 200
    assert (await http.delete(f"/v1/api-keys/{created['id']}", headers=admin)).status_code == 200
    r = await http.get("/v1/alerts", headers=bearer(created["key"]))
    assert_envelope(r, 401, "UNAUTHORIZED")


def _ws(stack: Any) -> str:
    return f"ws://{stack.settings.host}:{stack.settings.port}/v1/alerts/ws"


async def test_websocket_permission(stack: Any, perm_tenant: dict[str, Any]) -> None:
    """Every role and a key with alerts:read get in; a key without it and no credential are refused."""
    assert WEBSOCKETS["/v1/alerts/ws"] in API_KEY_SCOPES
    admitted = [auth(perm_tenant["tenant"], role) for role in ROLES] + [bearer(perm_tenant["keys"]["alerts:read"])]
    for headers in admitted:
        async with websockets.connect(_ws(stack), additional_headers=headers) as ws:
            await ws.ping()
    refused = [bearer(perm_tenant["keys"][s]) for s in sorted(API_KEY_SCOPES) if s != "alerts:read"] + [{}]
    for headers in refused:
        # Closed before accept: the server answers the handshake with 403 (or closes with 1008).
        with pytest.raises((websockets.InvalidStatus, websockets.ConnectionClosed)) as refused_with:
            async with websockets.connect(_ws(stack), additional_headers=headers) as ws:
                await ws.recv()
        if isinstance(refused_with.value, websockets.InvalidStatus):
            assert refused_with.value.response.status_code == 403
        else:
            assert refused_with.value.rcvd is not None and refused_with.value.rcvd.code == 1008
