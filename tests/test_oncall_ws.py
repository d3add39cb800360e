"""In-app notifications on the alert WebSocket, through the whole stack: a user's socket opened with
``notifications=true`` gets their own notification of an alert opened by the real ingest path (pushed by the
TenantActor's notifier after the commit), beside the alert event itself; another user's socket gets that user's own
notification and never this one's; a socket without the flag gets alert events only."""

import asyncio
import json
from typing import Any

import websockets

from tests.helpers import auth, create_tenant, new_tenant_id
from tests.test_alert_feed import ws_url
from tests.test_notifications_stack import RULE, open_flow_alert


async def collect(ws: Any, until: Any, seconds: float) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(seconds):
            while not until(got):
                got.append(json.loads(await ws.recv()))
    except TimeoutError:
        pass
    return got


async def test_a_users_notification_arrives_on_their_socket(stack: Any, http: Any) -> None:
    tenant = new_tenant_id("inapp-ws")
    await create_tenant(stack, tenant, [("MTR-1", "meter")], rules=[RULE])
    async with websockets.connect(ws_url(stack, notifications="true"), additional_headers=auth(tenant, "viewer")) \
            as viewer, websockets.connect(ws_url(stack, notifications="true"),
                                          additional_headers=auth(tenant, "operator")) as operator, \
            websockets.connect(ws_url(stack), additional_headers=auth(tenant, "manager")) as plain:
        await open_flow_alert(stack, tenant)

        def pushed(got: list[dict[str, Any]]) -> bool:
            return any(m.get("type") == "notification" for m in got) and any("seq" in m for m in got)

        seen = await collect(viewer, pushed, 60)
        [push] = [m for m in seen if m.get("type") == "notification"]
        event = next(m for m in seen if "seq" in m)
        assert push["data"]["alert_id"] == event["alert_id"] and push["data"]["event_seq"] == event["seq"]
        assert push["data"]["read"] is False and "flow_high" in push["data"]["title"]
        inbox = await http.get("/v1/notifications", headers=auth(tenant, "viewer"))
        assert [n["id"] for n in inbox.json()["data"]] == [push["data"]["id"]]

        theirs = await collect(operator, pushed, 10)
        [own] = [m for m in theirs if m.get("type") == "notification"]
        assert own["data"]["id"] != push["data"]["id"] and own["data"]["event_seq"] == event["seq"]
        others = await collect(plain, lambda got: False, 2)
        assert others and all("seq" in m and "type" not in m for m in others)
