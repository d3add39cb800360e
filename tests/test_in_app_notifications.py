"""In-app notifications through the whole stack: an alert opened by the real ingest path becomes one notification
per user of the tenant who may read alerts (planned by the TenantActor's notifier), listed newest first with the
unread count, marked read, deleted, never doubled by a replay and never visible to another user or tenant."""

from typing import Any

from serve.auth import PERMISSIONS
from store.in_app_notifications import ALERT_READER_ROLES
from tests.helpers import ROLES, auth, create_tenant, new_tenant_id, wait_for
from tests.test_notifications_stack import RULE, open_flow_alert


def test_the_roles_notified_are_those_that_read_alerts() -> None:
    assert set(ALERT_READER_ROLES) == {r.value for r in PERMISSIONS["alerts:read"]}


async def inbox(http: Any, tenant: str, role: str, query: str = "") -> dict[str, Any]:
    response = await http.get(f"/v1/notifications{query}", headers=auth(tenant, role))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_an_opened_alert_reaches_every_user_of_the_tenant_once(stack: Any, http: Any, db_conn: Any) -> None:
    tenant, other = new_tenant_id("inapp"), new_tenant_id("inapp-other")
    await create_tenant(stack, tenant, [("MTR-1", "meter")], rules=[RULE])
    await create_tenant(stack, other, [("MTR-1", "meter")], rules=[RULE])
    await open_flow_alert(stack, tenant)

    async def arrived() -> Any:
        page = await inbox(http, tenant, "viewer")
        return page if page["data"] else None

    page = await wait_for(arrived, timeout=60)
    [note] = page["data"]
    assert note["event_kind"] == "opened" and note["severity"] == "warning" and note["read"] is False
    assert "flow_high" in note["title"] and "MTR-1" in note["title"]
    assert page["meta"]["unread"] == 1 and page["meta"]["pagination"]["total"] == 1
    operator = await inbox(http, tenant, "operator")
    assert len(operator["data"]) == 1 and operator["data"][0]["id"] != note["id"]
    assert operator["data"][0]["alert_id"] == note["alert_id"]
    assert (await inbox(http, other, "operator"))["data"] == []
    users = await db_conn.fetchval("SELECT count(DISTINCT user_id) FROM in_app_notifications WHERE tenant_id = $1",
                                   tenant)
    assert users == len(ROLES)

    # Read: the count drops; reading again changes nothing.
    read = await http.patch(f"/v1/notifications/{note['id']}/read", headers=auth(tenant, "viewer"))
    assert read.status_code == 200 and read.json()["data"]["read"] is True, read.text
    again = await http.patch(f"/v1/notifications/{note['id']}/read", headers=auth(tenant, "viewer"))
    assert again.json()["data"]["read_at"] == read.json()["data"]["read_at"]
    assert (await inbox(http, tenant, "viewer"))["meta"]["unread"] == 0
    assert (await inbox(http, tenant, "viewer", "?read=false"))["data"] == []
    assert (await inbox(http, tenant, "operator"))["meta"]["unread"] == 1

    # A replay of the events (the cursor moved back, as after a crash before it was committed) adds nothing.
    last = await db_conn.fetchval("SELECT max(seq) FROM alert_events WHERE tenant_id = $1", tenant)
    await db_conn.execute("UPDATE notification_cursors SET seq = 0 WHERE tenant_id = $1", tenant)

    async def replanned() -> bool:
        seq = await db_conn.fetchval("SELECT seq FROM notification_cursors WHERE tenant_id = $1", tenant)
        return seq is not None and seq >= last

    await wait_for(replanned)
    assert await db_conn.fetchval("SELECT count(*) FROM in_app_notifications WHERE tenant_id = $1",
                                  tenant) == len(ROLES)

    # Someone else's notification, in this tenant or another: not found, and untouched.
    mine = operator["data"][0]["id"]
    for tenant_id, role in ((tenant, "viewer"), (other, "operator")):
        for method, path in (("PATCH", f"/v1/notifications/{mine}/read"), ("DELETE", f"/v1/notifications/{mine}")):
            refused = await http.request(method, path, headers=auth(tenant_id, role))
            assert refused.status_code == 404 and refused.json()["error"]["code"] == "NOT_FOUND", refused.text
    assert (await inbox(http, tenant, "operator"))["meta"]["unread"] == 1

    # Delete: gone from the list and the count; a second delete is a 404.
    gone = await http.delete(f"/v1/notifications/{mine}", headers=auth(tenant, "operator"))
    assert gone.status_code == 204
    after = await inbox(http, tenant, "operator")
    assert after["data"] == [] and after["meta"]["unread"] == 0
    assert (await http.delete(f"/v1/notifications/{mine}", headers=auth(tenant, "operator"))).status_code == 404
