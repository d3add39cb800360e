"""Notifications through the whole stack: channels over HTTP (validation envelopes, write-only secrets,
permissions), and alerts opened by the real ingest path delivered by the TenantActor's notifier to a real
receiver exactly once, also when the receiver is down for a while."""

from datetime import timedelta
from typing import Any

from tests.helpers import auth, create_tenant, metrics_auth, new_tenant_id, now_utc, publish, snapshot, wait_for
from tests.receivers import HttpReceiver, signature_valid

SECRET = "stack-webhook-secret-0123"
RULE = {"id": "flow_high", "kind": "threshold",
        "params": {"sensor": "flow_mcfd", "high": 1000.0, "for_seconds": 0, "severity": "warning"}}


async def open_flow_alert(stack: Any, tenant: str) -> None:
    base = now_utc().replace(microsecond=0) - timedelta(seconds=600)
    values = [500.0] * 5 + [1500.0] * 3
    await publish(stack.settings.nats_url, tenant, [
        ("MTR-1", snapshot("MTR-1", base + timedelta(seconds=i), {"flow_mcfd": v})) for i, v in enumerate(values)])


async def add_webhook(http: Any, tenant: str, url: str) -> dict[str, Any]:
    response = await http.post("/v1/notification-channels", headers=auth(tenant, "manager"), json={
        "kind": "webhook", "name": "control room", "config": {"url": url, "secret": SECRET}})
    assert response.status_code == 201, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


async def delivery_rows(db_conn: Any, tenant: str) -> list[Any]:
    return await db_conn.fetch(  # type: ignore[no-any-return]
        "SELECT * FROM notification_deliveries WHERE tenant_id = $1 ORDER BY created_at", tenant)


async def test_channels_over_http(stack: Any, http: Any, receiver: HttpReceiver) -> None:
    tenant = new_tenant_id("chan")
    await create_tenant(stack, tenant, [("MTR-1", "meter")])
    manager = auth(tenant, "manager")
    bad = await http.post("/v1/notification-channels", headers=manager, json={
        "kind": "webhook", "name": "x", "config": {"url": "ftp://example.com/in", "secret": SECRET}})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"].endswith("config.url"), bad.text
    no_secret = await http.post("/v1/notification-channels", headers=manager, json={
        "kind": "webhook", "name": "x", "config": {"url": "https://example.com/in"}})
    assert no_secret.status_code == 422 and no_secret.json()["error"]["details"][0]["field"] == "config.secret"
    forbidden = await http.get("/v1/notification-channels", headers=auth(tenant, "operator"))
    assert forbidden.status_code == 403

    channel = await add_webhook(http, tenant, receiver.url())
    assert SECRET not in str(channel) and channel["secret_set"] is True
    tested = await http.post(f"/v1/notification-channels/{channel['id']}/test", headers=manager)
    assert tested.status_code == 200 and tested.json()["data"]["ok"] is True, tested.text
    assert signature_valid(SECRET, receiver.requests[0])
    patched = await http.patch(f"/v1/notification-channels/{channel['id']}", headers=manager,
                               json={"enabled": False})
    assert patched.json()["data"]["enabled"] is False and patched.json()["data"]["secret_set"] is True
    listed = await http.get("/v1/notification-channels?kind=webhook", headers=manager)
    assert [c["id"] for c in listed.json()["data"]] == [channel["id"]] and SECRET not in listed.text
    assert (await http.delete(f"/v1/notification-channels/{channel['id']}", headers=manager)).status_code == 204
    gone = await http.get(f"/v1/notification-channels/{channel['id']}", headers=manager)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "NOT_FOUND"


async def test_an_opened_alert_reaches_the_receiver_exactly_once(stack: Any, http: Any, db_conn: Any,
                                                                 receiver: HttpReceiver) -> None:
    tenant = new_tenant_id("notify")
    await create_tenant(stack, tenant, [("MTR-1", "meter")], rules=[RULE])
    await add_webhook(http, tenant, receiver.url())
    await open_flow_alert(stack, tenant)
    await wait_for(lambda: _some(receiver.requests), timeout=60)
    [received] = receiver.requests
    assert signature_valid(SECRET, received) and received.json()["type"] == "alert.opened"
    alert_id = received.json()["alert_id"]

    async def sent() -> Any:
        rows = (await http.get(f"/v1/alerts/{alert_id}/notifications", headers=auth(tenant, "viewer"))).json()
        return rows["data"] if rows["data"] and rows["data"][0]["status"] == "sent" else None

    [delivery] = await wait_for(sent)
    assert delivery["attempts"] == 1 and delivery["response_code"] == 200 and delivery["channel_kind"] == "webhook"
    # Another event wakes the notifier; once its cursor is past it, the opening has not gone out again.
    ack = await http.post(f"/v1/alerts/{alert_id}/acknowledge", headers=auth(tenant), json={"comment": "on it"})
    assert ack.status_code == 200, ack.text
    last = await db_conn.fetchval("SELECT max(seq) FROM alert_events WHERE tenant_id = $1", tenant)

    async def planned_past_ack() -> bool:
        seq = await db_conn.fetchval("SELECT seq FROM notification_cursors WHERE tenant_id = $1", tenant)
        return seq is not None and seq >= last

    await wait_for(planned_past_ack)
    assert len(receiver.requests) == 1
    metrics = await http.get("/metrics", headers=metrics_auth(stack))
    assert f'wellpulse_notifications_sent_total{{kind="webhook",tenant="{tenant}"}} 1.0' in metrics.text


async def test_a_receiver_down_then_back_up_gets_the_alert_once(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("down")
    await create_tenant(stack, tenant, [("MTR-1", "meter")], rules=[RULE])
    receiver = HttpReceiver()  # not listening yet: connections are refused
    await add_webhook(http, tenant, receiver.url())
    await open_flow_alert(stack, tenant)

    async def tried_and_failed() -> bool:
        rows = await delivery_rows(db_conn, tenant)
        return bool(rows) and rows[0]["attempts"] >= 1 and rows[0]["last_error"] is not None

    await wait_for(tried_and_failed, timeout=60)
    await receiver.start()
    try:
        async def sent() -> bool:
            rows = await delivery_rows(db_conn, tenant)
            return rows[0]["status"] == "sent"

        await wait_for(sent, timeout=60)
        [row] = await delivery_rows(db_conn, tenant)
        assert row["attempts"] >= 2 and len(receiver.requests) == 1
        assert receiver.requests[0].headers["X-WellPulse-Delivery"] == str(row["id"])
    finally:
        await receiver.stop()


async def _some(items: list[Any]) -> bool:
    return bool(items)
