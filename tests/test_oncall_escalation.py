"""Escalation chains against PostgreSQL alone (fast tier) with real receivers (aiosmtpd for mail, aiohttp for the
SMS provider and webhooks): a chain refused naming the field; an alert opened on a route naming a chain reaches
step 1's user by email and in-app at once, a broken webhook of step 1 fails (a `notification_failed` event) and
step 2 still fires after its delay, by SMS to whoever is on call; a step interrupted before its commit fires once
when the notifier comes back; acknowledging stops the chain. Rounds run with a `config.ManualClock`, so the
delays (seconds) are checked at once.
"""

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from typing import Any

import pytest
from pydantic import ValidationError

from config import ManualClock
from schema.errors import Conflict, InvalidInput
from schema.notification_policies import PolicyDocument
from schema.oncall import ChainCreate, PreferencesBody, ScheduleCreate
from serve import notification_policies as policy_service
from serve import notifications as notification_service
from serve import oncall as service
from store import alerts as alert_store
from store import db, escalations
from tests.helpers import seeded_tenant
from tests.receivers import SMTP_PASSWORD, SMTP_USER, HttpReceiver, SmtpReceiver
from tests.test_notifications import CREATE, create, deliveries, notifier, open_alert, webhook
from tests.test_oncall import as_user

pytestmark = pytest.mark.fast
PHONE = "+15550100777"


@pytest.fixture(scope="module")
async def tenant(services: Any) -> str:
    return await seeded_tenant(services.settings.database_url, "escalate", [("PJ-1", "pump_jack")])


@pytest.fixture(scope="module")
async def users(services: Any, tenant: str) -> dict[str, uuid.UUID]:
    async with db.tenant_tx(services.pool, tenant) as conn:
        rows = await conn.fetch("SELECT id, role FROM users WHERE tenant_id = $1", tenant)
    return {r["role"]: r["id"] for r in rows}


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpReceiver]:
    server = SmtpReceiver()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[HttpReceiver]:
    receiver = HttpReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


async def test_a_chain_naming_what_the_tenant_lacks_is_refused(services: Any, tenant: str,
                                                               users: dict[str, uuid.UUID]) -> None:
    manager, audit = as_user(tenant, users, "manager")
    for targets, field in (({"users": [str(uuid.uuid4())]}, "steps[0].targets.users[0]"),
                           ({"schedules": [str(uuid.uuid4())]}, "steps[0].targets.schedules[0]"),
                           ({"channels": [str(uuid.uuid4())]}, "steps[0].targets.channels[0]"),
                           ({}, "steps[0].targets")):
        with pytest.raises(InvalidInput) as refused:
            await service.create_chain(services, manager, audit, ChainCreate.model_validate(
                {"name": "bad", "steps": [{"targets": targets}]}))
        assert refused.value.details[0]["field"] == field
    with pytest.raises(InvalidInput) as refused:
        await policy_service.put_policy(services, manager, audit, PolicyDocument.model_validate(
            {"routes": [{"name": "root", "escalation_chain": str(uuid.uuid4())}]}))
    assert refused.value.details[0]["field"] == "routes[0].escalation_chain"


async def test_the_chain_escalates_until_acknowledged_and_nothing_is_doubled(
        services: Any, tenant: str, users: dict[str, uuid.UUID], smtp: SmtpReceiver,
        provider: HttpReceiver) -> None:
    manager, audit = as_user(tenant, users, "manager")
    await create(services, manager, audit, CREATE.validate_python({"kind": "email", "name": "mail", "config": {
        "smtp_host": "127.0.0.1", "smtp_port": smtp.port, "security": "none", "username": SMTP_USER,
        "password": SMTP_PASSWORD, "from_address": "wellpulse@example.com", "to": ["ops@example.com"]}}))
    await create(services, manager, audit, CREATE.validate_python({"kind": "sms", "name": "texts", "config": {
        "url": provider.url("/sms"), "token": "provider-token-123", "from_number": "WellPulse"}}))
    dead = HttpReceiver()  # never started: connection refused
    broken = await create(services, manager, audit, webhook(dead.url("/hook"), name="broken"))
    # The manager is on call; by their preferences critical alerts reach them by SMS alone.
    boss, boss_audit = as_user(tenant, users, "manager")
    await service.put_preferences(services, boss, boss_audit, PreferencesBody.model_validate(
        {"channels": {"critical": ["sms"]}, "phone": PHONE}))
    schedule = await service.create_schedule(services, manager, audit, ScheduleCreate.model_validate(
        {"name": "managers", "rotations": [{"members": [str(users["manager"])], "handoff": "daily",
                                            "start": str(date.today() - timedelta(days=3))}]}))
    chain = await service.create_chain(services, manager, audit, ChainCreate.model_validate({
        "name": "pump trips", "repeat": 1, "steps": [
            {"after_seconds": 0, "targets": {"users": [str(users["operator"])], "channels": [str(broken["id"])]}},
            {"after_seconds": 600, "targets": {"schedules": [str(schedule["id"])]}}]}))
    await policy_service.put_policy(services, manager, audit, PolicyDocument.model_validate(
        {"routes": [{"name": "root", "escalation_chain": str(chain["id"])}]}))
    with pytest.raises(Conflict):
        await service.delete_chain(services, manager, audit, chain["id"])
    with pytest.raises(Conflict) as in_use:
        await service.delete_schedule(services, manager, audit, schedule["id"])
    assert "pump trips" in str(in_use.value)

    clock = ManualClock(datetime.now(UTC))
    event = await open_alert(services, tenant, "critical", rule="motor_trip")
    published: list[Any] = []
    await notifier(services, tenant, clock, published, retry_seconds=0).run_round()
    mail = [message_from_bytes(m.original_content) for m in smtp.messages]
    assert [m["To"] for m in mail] == [f"operator@{tenant}.example"]
    assert "motor_trip" in mail[0]["Subject"]
    first = await deliveries(services, tenant, event["alert_id"])
    assert sorted((d["channel_kind"], d["status"], d["escalation_step"]) for d in first) == [
        ("email", "sent", 0), ("webhook", "failed", 0)]
    assert [e["kind"] for e in published] == ["notification_failed"]
    async with db.tenant_tx(services.pool, tenant) as conn:
        inbox = await conn.fetch("SELECT user_id, reminder, title FROM in_app_notifications WHERE tenant_id = $1"
                                 " AND reminder >= $2", tenant, escalations.ESCALATION_REMINDER_BASE)
    assert [(r["user_id"], r["reminder"]) for r in inbox] == [(users["operator"], escalations.ESCALATION_REMINDER_BASE)]
    assert "step 1" in inbox[0]["title"]

    clock.advance(timedelta(seconds=599))  # not yet: nothing new, however often the notifier comes back
    for _ in range(2):
        await notifier(services, tenant, clock, retry_seconds=0).run_round()
    assert len(await deliveries(services, tenant, event["alert_id"])) == 2 and not provider.requests

    clock.advance(timedelta(seconds=1))
    # The notifier dies after firing step 2 and before its commit: nothing of it stays...
    with pytest.raises(RuntimeError):
        async with db.tenant_tx(services.pool, tenant) as conn:
            assert [f.step for f in await escalations.fire_due(conn, tenant, now=clock.now(), limit=10)] == [1]
            raise RuntimeError("crash before commit")
    assert len(await deliveries(services, tenant, event["alert_id"])) == 2
    # ...and when it is back the step fires once, to whoever is on call, by their preferences.
    for _ in range(2):
        await notifier(services, tenant, clock, retry_seconds=0).run_round()
    texts = provider.at("/sms")
    assert len(texts) == 1 and texts[0].json()["to"] == PHONE and "motor_trip" in texts[0].json()["text"]
    assert texts[0].headers["Authorization"] == "Bearer provider-token-123"
    second = await deliveries(services, tenant, event["alert_id"])
    sms = [d for d in second if d["channel_kind"] == "sms"]
    assert [(d["recipient"], d["recipient_user"], d["status"]) for d in sms] == [(PHONE, users["manager"], "sent")]
    # The repeat began at once (step 1's delay is 0): the operator heard again, in round 2.
    assert len(smtp.messages) == 2

    async with db.tenant_tx(services.pool, tenant) as conn:
        await alert_store.acknowledge_alert(conn, tenant, event["alert_id"], actor="op", comment=None,
                                            now=clock.now())
    clock.advance(timedelta(hours=2))
    for _ in range(2):
        await notifier(services, tenant, clock, retry_seconds=0).run_round()
    assert len(provider.at("/sms")) == 1 and len(smtp.messages) == 2
    async with db.tenant_tx(services.pool, tenant) as conn:
        stopped = await conn.fetchrow("SELECT next_at, stopped FROM escalations WHERE tenant_id = $1", tenant)
    assert (stopped["next_at"], stopped["stopped"]) == (None, "acknowledged")


async def test_an_sms_channel_keeps_its_token_write_only_and_texts_each_number(
        services: Any, tenant: str, users: dict[str, uuid.UUID], provider: HttpReceiver) -> None:
    manager, audit = as_user(tenant, users, "manager")
    before = len(provider.at("/texts"))
    channel = await create(services, manager, audit, CREATE.validate_python({"kind": "sms", "name": "crew texts",
        "config": {"url": provider.url("/texts"), "token": "sms-token-456", "to": ["+15550100001", "+15550100002"]}}))
    assert channel["secret_set"] and "token" not in channel["config"] and channel["kind"] == "sms"
    result = await notification_service.test_channel(services, manager, channel["id"])
    assert result.ok, result
    texts = provider.at("/texts")[before:]
    assert [t.json()["to"] for t in texts] == ["+15550100001", "+15550100002"]
    assert all(t.headers["Authorization"] == "Bearer sms-token-456" for t in texts)
    assert "test notification" in texts[0].json()["text"]
    with pytest.raises(ValidationError) as refused:
        CREATE.validate_python({"kind": "sms", "name": "x", "config": {"url": provider.url(), "to": ["555-0100"]}})
    assert refused.value.errors()[0]["loc"] == ("sms", "config", "to", 0)


async def test_quiet_hours_keep_all_but_critical_to_the_inbox(services: Any, smtp: SmtpReceiver) -> None:
    tenant = await seeded_tenant(services.settings.database_url, "quiet", [("PJ-1", "pump_jack")])
    async with db.tenant_tx(services.pool, tenant) as conn:
        users = {r["role"]: r["id"] for r in await conn.fetch("SELECT id, role FROM users WHERE tenant_id = $1",
                                                               tenant)}
    manager, audit = as_user(tenant, users, "manager")
    await create(services, manager, audit, CREATE.validate_python({"kind": "email", "name": "mail", "config": {
        "smtp_host": "127.0.0.1", "smtp_port": smtp.port, "security": "none", "username": SMTP_USER,
        "password": SMTP_PASSWORD, "from_address": "wellpulse@example.com", "to": ["ops@example.com"]}}))
    operator, operator_audit = as_user(tenant, users, "operator")
    await service.put_preferences(services, operator, operator_audit, PreferencesBody.model_validate(
        {"channels": {"warning": ["email", "in_app"]}, "quiet_hours": {"start": "22:00", "end": "06:00"}}))
    chain = await service.create_chain(services, manager, audit, ChainCreate.model_validate(
        {"name": "night", "steps": [{"targets": {"users": [str(users["operator"])]}}]}))
    await policy_service.put_policy(services, manager, audit, PolicyDocument.model_validate(
        {"routes": [{"name": "root", "escalation_chain": str(chain["id"])}]}))
    mine = f"operator@{tenant}.example"
    sent_before = sum(1 for m in smtp.messages if mine in m.rcpt_tos)
    clock = ManualClock(datetime(2026, 1, 5, 23, 30, tzinfo=UTC))  # the tenant's zone is UTC: quiet hours
    announced: list[Any] = []

    async def announce(rows: Any) -> None:
        announced.extend(rows)

    sender = notifier(services, tenant, clock)
    sender.announce = announce
    warning = await open_alert(services, tenant, "warning", rule="flow_high")
    await sender.run_round()
    assert sum(1 for m in smtp.messages if mine in m.rcpt_tos) == sent_before
    critical = await open_alert(services, tenant, "critical", rule="motor_trip")
    await sender.run_round()
    await sender.close()
    assert sum(1 for m in smtp.messages if mine in m.rcpt_tos) == sent_before + 1  # critical comes through
    async with db.tenant_tx(services.pool, tenant) as conn:
        inbox = {r["alert_id"] for r in await conn.fetch(
            "SELECT alert_id FROM in_app_notifications WHERE tenant_id = $1 AND user_id = $2 AND reminder >= $3",
            tenant, users["operator"], escalations.ESCALATION_REMINDER_BASE)}
    assert inbox == {warning["alert_id"], critical["alert_id"]}
    # Every in-app row committed (each user's of each event, and the escalation's) was announced for the WebSocket.
    pushed = [(r["user_id"], r["alert_id"]) for r in announced]
    assert len(pushed) == len(set(pushed)) + 2 and pushed.count((users["operator"], warning["alert_id"])) == 2
