"""Notification policies, reminders, acknowledge links and the demo's mail sink, against PostgreSQL alone (fast
tier) with real receivers (aiohttp, aiosmtpd): a tree refused naming the field, alerts routed by it and grouped into
one message, a mute timing that holds a message until its window ends, reminders until acknowledged, a link that
acknowledges once (over HTTP, in process), and an alert email landing in the sink. Deliveries are run by
`actors.notifier.Notifier` rounds with a `config.ManualClock`, so waits and windows are checked at once.
"""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from actors.notifier import ack_links_of
from config import ManualClock
from notify.acklinks import AckLinks
from schema.errors import InvalidInput, NotFound
from schema.notification_policies import PolicyDocument
from serve import notification_policies as service
from serve.app import build_app
from serve.auth import Principal, Role
from store import alerts as alert_store
from store import db
from store.admin import ensure_email_channel
from store.audit import AuditContext
from store.mailsink import MailSink
from tests.helpers import seeded_tenant
from tests.receivers import HttpReceiver
from tests.test_notifications import create, notifier, open_alert, webhook

pytestmark = pytest.mark.fast


@pytest.fixture
async def tenant(services: Any) -> str:
    return await seeded_tenant(services.settings.database_url, "policy",
                               [("PJ-1", "pump_jack"), ("C-1", "compressor")], users=False)


@pytest.fixture
def audit(tenant: str) -> AuditContext:
    return AuditContext(tenant, "user", str(uuid.uuid4()), "127.0.0.1", "req-1")


@pytest.fixture
def principal(tenant: str, audit: AuditContext) -> Principal:
    return Principal(tenant, audit.actor_id, role=Role.MANAGER)


def document(routes: list[dict[str, Any]], **more: Any) -> PolicyDocument:
    return PolicyDocument.model_validate({"routes": routes, **more})


async def put(services: Any, principal: Principal, audit: AuditContext, routes: list[dict[str, Any]],
              **more: Any) -> dict[str, Any]:
    return await service.put_policy(services, principal, audit, document(routes, **more))


async def test_a_tree_that_cannot_be_used_is_refused_naming_the_field(
        services: Any, principal: Principal, audit: AuditContext) -> None:
    hook = await create(services, principal, audit, webhook("https://hooks.example.com/a"))
    ok = {"name": "root", "channels": [str(hook["id"])]}
    for routes, more, field in (
            ([ok, {"name": "a", "parent": "b"}, {"name": "b", "parent": "a"}], {}, "routes[1].parent"),
            ([ok, {"name": "a", "parent": "nobody"}], {}, "routes[1].parent"),
            ([ok, {"name": "a", "parent": "root", "matchers": {"colour": ["red"]}}], {}, "routes[1].matchers.colour"),
            ([{**ok, "group_by": ["well_id", "shoe_size"]}], {}, "routes[0].group_by[1]"),
            ([ok, {"name": "root2"}], {}, "routes"),
            ([{**ok, "mute_timings": ["weekends"]}], {}, "routes[0].mute_timings[0]"),
            ([{"name": "root", "channels": [str(uuid.uuid4())]}], {}, "routes[0].channels[0]"),
            ([ok, {"name": "root", "parent": "root"}], {}, "routes[1].name"),
            ([ok], {"mute_timings": [{"name": "w", "weekdays": ["someday"], "start": "01:00", "end": "02:00"}]},
             "mute_timings[0].weekdays")):
        with pytest.raises(InvalidInput) as refused:
            await put(services, principal, audit, routes, **more)
        assert refused.value.details[0]["field"] == field, (routes, refused.value.details)
    with pytest.raises(NotFound):
        await service.get_policy(services, principal.tenant_id)
    stored = await put(services, principal, audit, [ok])
    assert (await service.get_policy(services, principal.tenant_id))["routes"] == stored["routes"]
    await service.delete_policy(services, principal, audit)
    with pytest.raises(NotFound):
        await service.delete_policy(services, principal, audit)


async def test_alerts_follow_the_tree_and_a_group_goes_out_as_one_message(
        services: Any, tenant: str, principal: Principal, audit: AuditContext, receiver: HttpReceiver) -> None:
    team = await create(services, principal, audit, webhook(receiver.url("/team"), name="team"))
    pager = await create(services, principal, audit, webhook(receiver.url("/pager"), name="pager"))
    await put(services, principal, audit, [
        {"name": "root", "channels": [str(team["id"])], "group_by": ["equipment_id"], "group_wait": 30,
         "group_interval": 300},
        {"name": "critical", "parent": "root", "matchers": {"severity": ["critical"]},
         "channels": [str(pager["id"])], "group_wait": 0}])
    clock = ManualClock(datetime.now(UTC))
    first = await open_alert(services, tenant, "warning", rule="flow_high")
    second = await open_alert(services, tenant, "warning", rule="pressure_low")
    await open_alert(services, tenant, "critical", rule="motor_trip")
    assert await notifier(services, tenant, clock).run_round() == 1  # the critical one at once, to the pager only
    assert [r.path for r in receiver.requests] == ["/pager"]

    clock.advance(timedelta(seconds=31))
    assert await notifier(services, tenant, clock).run_round() == 1
    grouped = receiver.at("/team")[0].json()
    assert [a["alert_id"] for a in grouped["alerts"]] == [first["alert_id"], second["alert_id"]]
    assert grouped["severity"] == "warning" and "flow_high" in grouped["message"] and grouped["group"] == "root"

    await open_alert(services, tenant, "warning", rule="vibration")
    clock.advance(timedelta(seconds=100))  # within the group's interval: held
    assert await notifier(services, tenant, clock).run_round() == 0
    clock.advance(timedelta(seconds=201))
    assert await notifier(services, tenant, clock).run_round() == 1
    assert await notifier(services, tenant, clock).run_round() == 0  # a restart sends nothing twice
    assert len(receiver.at("/team")) == 2 and receiver.at("/team")[1].json()["rule_id"] == "vibration"


async def test_a_mute_timing_in_the_tenants_zone_holds_the_message_until_it_ends(
        services: Any, tenant: str, principal: Principal, audit: AuditContext, receiver: HttpReceiver) -> None:
    hook = await create(services, principal, audit, webhook(receiver.url("/hook")))
    async with db.tenant_tx(services.pool, tenant) as conn:
        await conn.execute("UPDATE tenants SET settings = settings || '{\"timezone\": \"America/Chicago\"}'"
                           " WHERE id = $1", tenant)
    clock = ManualClock(datetime.now(UTC))
    local = clock.now().astimezone(ZoneInfo("America/Chicago"))
    start, end = local - timedelta(minutes=30), local + timedelta(minutes=90)
    await put(services, principal, audit, [
        {"name": "root", "channels": [str(hook["id"])], "group_wait": 0, "mute_timings": ["shift change"]}],
        mute_timings=[{"name": "shift change", "weekdays": [], "start": start.strftime("%H:%M"),
                       "end": end.strftime("%H:%M")}])
    await open_alert(services, tenant, "critical")
    assert await notifier(services, tenant, clock).run_round() == 0
    clock.advance(timedelta(minutes=60))
    assert await notifier(services, tenant, clock).run_round() == 0
    clock.advance(timedelta(minutes=31))
    assert await notifier(services, tenant, clock).run_round() == 1
    assert len(receiver.requests) == 1


# ------------------------------------------------------------------------------------------------ acknowledge links


async def test_the_link_in_a_notification_acknowledges_its_alert_once(
        services: Any, tenant: str, principal: Principal, audit: AuditContext, receiver: HttpReceiver) -> None:
    await create(services, principal, audit, webhook(receiver.url("/hook")))
    event = await open_alert(services, tenant, "critical")
    links = ack_links_of(services.settings)
    assert links is not None
    sender = notifier(services, tenant, ManualClock(datetime.now(UTC)))
    sender.ack_links = links
    assert await sender.run_round() == 1
    await sender.close()
    body = receiver.requests[0].json()
    token = body["ack_token"]
    assert body["ack_url"].endswith(f"/v1/ack-links/{token}") and f".{event['alert_id']}." in token

    app = build_app(services.settings)
    app.state.services = services
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        shown = await http.get(f"/v1/ack-links/{token}")
        assert shown.status_code == 200, shown.text
        assert (shown.json()["data"]["used"], shown.json()["data"]["alert"]["state"]) == (False, "open")
        done = await http.post(f"/v1/ack-links/{token}")
        assert done.status_code == 200 and done.json()["data"]["alert"]["state"] == "acknowledged", done.text
        again = await http.post(f"/v1/ack-links/{token}")
        assert again.status_code == 409 and again.json()["error"]["details"][0]["field"] == "token", again.text
        key = links.key
        expired, _url = AckLinks(key, "http://x", -1.0).make(tenant, event["alert_id"], "cd" * 16,
                                                             now=datetime.now(UTC).timestamp())
        forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        for bad, reason in ((expired, "expired"), (forged, "forged"), ("not-a-token", "malformed")):
            refused = await http.post(f"/v1/ack-links/{bad}")
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["details"][0] == {"field": "token",
                                                             "message": f"the acknowledge link is {reason}"}
    async with db.tenant_tx(services.pool, tenant) as conn:
        kinds = await conn.fetch("SELECT kind, actor FROM alert_events WHERE alert_id = $1 ORDER BY seq",
                                 event["alert_id"])
    assert [(k["kind"], k["actor"].split(":")[0]) for k in kinds][1:] == [("acknowledged", "ack-link")]


async def test_a_group_reminds_of_its_unacknowledged_alerts_until_they_are_acknowledged(
        services: Any, tenant: str, principal: Principal, audit: AuditContext, receiver: HttpReceiver) -> None:
    hook = await create(services, principal, audit, webhook(receiver.url("/hook")))
    await put(services, principal, audit, [{"name": "root", "channels": [str(hook["id"])], "group_wait": 0,
                                            "repeat_interval": 600}])
    first = await open_alert(services, tenant, "critical", rule="motor_trip")
    second = await open_alert(services, tenant, "warning", rule="flow_high")
    clock = ManualClock(datetime.now(UTC))
    assert await notifier(services, tenant, clock).run_round() == 1
    clock.advance(timedelta(seconds=599))
    assert await notifier(services, tenant, clock).run_round() == 0
    async with db.tenant_tx(services.pool, tenant) as conn:
        await alert_store.acknowledge_alert(conn, tenant, first["alert_id"], actor="op", comment=None,
                                            now=datetime.now(UTC))
    clock.advance(timedelta(seconds=2))
    assert await notifier(services, tenant, clock).run_round() == 1
    assert await notifier(services, tenant, clock).run_round() == 0  # a restart reminds nobody twice
    reminder = receiver.requests[1].json()
    assert (reminder["alert_id"], reminder["alerts"]) == (second["alert_id"], [])
    async with db.tenant_tx(services.pool, tenant) as conn:
        await alert_store.acknowledge_alert(conn, tenant, second["alert_id"], actor="op", comment=None,
                                            now=datetime.now(UTC))
    clock.advance(timedelta(seconds=601))
    assert await notifier(services, tenant, clock).run_round() == 0  # everything acknowledged: silence
    assert len(receiver.requests) == 2


# ------------------------------------------------------------------------------------------------ the demo's mail


async def test_the_demo_mail_sink_receives_an_alert_email(services: Any, tenant: str, tmp_path: Path) -> None:
    """What `wellpulse up --demo` sets up: an SMTP sink writing under the data dir, and an email channel to it."""
    sink = MailSink(tmp_path / "demo-mail")
    sink.start()
    try:
        await asyncio.to_thread(ensure_email_channel, services.settings.database_url, tenant,
                                name="demo mail sink", smtp_port=sink.port, to="operator@demo.example")
        await open_alert(services, tenant, "critical")
        sender = notifier(services, tenant, ManualClock(datetime.now(UTC)))
        assert await sender.run_round() == 1
        await sender.close()
    finally:
        sink.stop()
    [mail] = list((tmp_path / "demo-mail").glob("*.eml"))
    message = message_from_bytes(mail.read_bytes())
    assert message["To"] == "operator@demo.example" and "[CRITICAL] alert opened" in str(message["Subject"])
