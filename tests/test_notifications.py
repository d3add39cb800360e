"""Notification channels and deliveries against PostgreSQL alone (fast tier), with real receivers: an aiohttp
endpoint for the webhook, Slack and Teams channels and an aiosmtpd server for email.

The services are called as their routes call them; deliveries are run by `actors.notifier.Notifier` rounds with a
`config.ManualClock`, so backoff and giving up are checked at once instead of waited for.
"""

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from actors.notifier import Notifier, RetryPolicy
from config import ManualClock
from config.secrets import SecretBox
from schema.errors import Conflict, InvalidInput, NotFound
from schema.notifications import ChannelCreate, ChannelUpdate
from serve import notifications as service
from serve.auth import Principal, Role
from store import alerts as alert_store
from store import db
from store.admin import reseal_secrets
from store.audit import AuditContext
from store.listing import ListQuery
from tests.helpers import seeded_tenant
from tests.receivers import SMTP_PASSWORD, SMTP_USER, HttpReceiver, SmtpReceiver, signature_valid

pytestmark = pytest.mark.fast
SECRET = "webhook-secret-0123456789"
CREATE = TypeAdapter(ChannelCreate)


@pytest.fixture
async def tenant(services: Any) -> str:
    return await seeded_tenant(services.settings.database_url, "notify", [("PJ-1", "pump_jack")], users=False)


@pytest.fixture
def audit(tenant: str) -> AuditContext:
    return AuditContext(tenant, "user", str(uuid.uuid4()), "127.0.0.1", "req-1")


@pytest.fixture
def principal(tenant: str, audit: AuditContext) -> Principal:
    return Principal(tenant, audit.actor_id, role=Role.MANAGER, email=f"manager@{tenant}.example")


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    server = SmtpReceiver()
    server.start()
    yield server
    server.stop()


def webhook(url: str, name: str = "ops hook", **fields: Any) -> Any:
    return CREATE.validate_python({"kind": "webhook", "name": name, "config": {"url": url, "secret": SECRET},
                                   **fields})


async def create(services: Any, principal: Principal, audit: AuditContext, body: Any) -> Any:
    return await service.create_channel(services, principal, audit, body)


async def open_alert(services: Any, tenant: str, severity: str = "warning", rule: str = "flow_high") -> Any:
    """An alert opened as the models open one (`store.alerts.persist_changes`); its committed event."""
    change = alert_store.AlarmChange("opened", "PJ-1", rule, severity, datetime.now(UTC), "flow above 1000", {})
    async with db.tenant_tx(services.pool, tenant) as conn:
        [event] = await alert_store.persist_changes(conn, tenant, [change])
    return event


def notifier(services: Any, tenant: str, clock: ManualClock, published: list[Any] | None = None,
             **policy: float) -> Notifier:
    async def publish(events: Any) -> None:
        (published if published is not None else []).extend(events)

    return Notifier(services.pool, tenant, SecretBox.from_settings(services.settings),
                    policy=RetryPolicy(**{"timeout_seconds": 5.0, **policy}), clock=clock, publish=publish,
                    allow_private_networks=services.settings.notify_allow_private_networks)


async def deliveries(services: Any, tenant: str, alert_id: int) -> list[dict[str, Any]]:
    rows, _total = await service.list_alert_deliveries(services, tenant, alert_id, ListQuery(limit=100))
    return rows


# ------------------------------------------------------------------------------------------------ channels


async def test_channel_crud_keeps_secrets_write_only_and_sealed(services: Any, tenant: str, principal: Principal,
                                                                audit: AuditContext) -> None:
    row = await create(services, principal, audit, webhook("https://hooks.example.com/a"))
    assert row["kind"] == "webhook" and row["secret_set"] and row["config"] == {"url": "https://hooks.example.com/a"}
    async with db.tenant_tx(services.pool, tenant) as conn:
        stored = await conn.fetchval("SELECT secret FROM notification_channels WHERE id = $1", row["id"])
    assert stored.startswith("v1:") and SECRET not in stored

    renamed = await service.update_channel(services, principal, audit, row["id"], ChannelUpdate(
        name="night shift", min_severity="critical", config={"url": "https://hooks.example.com/b"}))
    assert (renamed["name"], renamed["min_severity"], renamed["secret_set"]) == ("night shift", "critical", True)
    async with db.tenant_tx(services.pool, tenant) as conn:
        kept = await conn.fetchval("SELECT secret FROM notification_channels WHERE id = $1", row["id"])
        audited = await conn.fetch("SELECT concat(old_values::text, new_values::text) AS text FROM audit_log"
                                   " WHERE tenant_id = $1 AND entity_id = $2", tenant, str(row["id"]))
    assert len(audited) == 2 and all(SECRET not in r["text"] and "v1:" not in r["text"] for r in audited)
    assert SecretBox.from_settings(services.settings).open(kept) == f'{{"secret": "{SECRET}"}}'

    listed, total = await service.list_channels(services, tenant, ListQuery())
    assert total == 1 and listed[0]["name"] == "night shift" and "secret" not in listed[0]
    await service.delete_channel(services, principal, audit, row["id"])
    with pytest.raises(NotFound):
        await service.get_channel(services, tenant, row["id"])
    with pytest.raises(NotFound):
        await service.delete_channel(services, principal, audit, row["id"])


async def test_bad_channel_settings_are_refused_naming_the_field(services: Any, principal: Principal,
                                                                 audit: AuditContext) -> None:
    for config, field in (({"url": "ftp://example.com/x", "secret": SECRET}, "url"),
                          ({"url": "not a url", "secret": SECRET}, "url"),
                          ({"url": "https://example.com", "secret": "short"}, "secret")):
        with pytest.raises(ValidationError) as exc:
            CREATE.validate_python({"kind": "webhook", "name": "x", "config": config})
        assert exc.value.errors()[0]["loc"][-1] == field
    with pytest.raises(ValidationError) as exc:
        CREATE.validate_python({"kind": "slack", "name": "x", "config": {"url": "javascript:alert(1)"}})
    assert exc.value.errors()[0]["loc"][-1] == "url"
    with pytest.raises(InvalidInput) as refused:
        await create(services, principal, audit, CREATE.validate_python(
            {"kind": "webhook", "name": "x", "config": {"url": "https://example.com"}}))
    assert refused.value.details == [{"field": "config.secret", "message": "required (write-only)"}]
    with pytest.raises(InvalidInput) as refused:
        await create(services, principal, audit, CREATE.validate_python({"kind": "email", "name": "mail", "config": {
            "smtp_host": "mail.example.com", "username": "u", "from_address": "wp@example.com",
            "to": ["ops@example.com"]}}))
    assert refused.value.details[0]["field"] == "config.password"
    first = await create(services, principal, audit, webhook("https://example.com/1", name="Same"))
    with pytest.raises(Conflict):
        await create(services, principal, audit, webhook("https://example.com/2", name="same"))
    with pytest.raises(InvalidInput) as refused:
        await service.update_channel(services, principal, audit, first["id"], ChannelUpdate(config={"url": "gopher:x"}))
    assert refused.value.details[0]["field"] == "config.url"


async def test_test_messages_reach_webhook_slack_teams_and_smtp(services: Any, principal: Principal,
                                                                audit: AuditContext, receiver: HttpReceiver,
                                                                smtp: SmtpReceiver) -> None:
    hook = await create(services, principal, audit, webhook(receiver.url("/hook")))
    slack = await create(services, principal, audit, CREATE.validate_python(
        {"kind": "slack", "name": "slack", "config": {"url": receiver.url("/slack")}}))
    teams = await create(services, principal, audit, CREATE.validate_python(
        {"kind": "teams", "name": "teams", "config": {"url": receiver.url("/teams")}}))
    mail = await create(services, principal, audit, CREATE.validate_python({"kind": "email", "name": "mail", "config": {
        "smtp_host": "127.0.0.1", "smtp_port": smtp.port, "security": "none", "username": SMTP_USER,
        "password": SMTP_PASSWORD, "from_address": "wellpulse@example.com", "to": ["ops@example.com"]}}))
    assert "url" not in slack["config"] and "password" not in mail["config"]
    for channel in (hook, slack, teams, mail):
        result = await service.test_channel(services, principal, channel["id"])
        assert result.ok, (channel["kind"], result)
    [signed] = receiver.at("/hook")
    assert signature_valid(SECRET, signed) and signed.json()["type"] == "test"
    assert not signature_valid("another-secret-456789", signed)
    assert receiver.at("/slack")[0].json()["text"].startswith("[WARNING] test notification")
    card = receiver.at("/teams")[0].json()["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    [envelope] = smtp.messages
    assert envelope.rcpt_tos == ["ops@example.com"]
    assert "test notification" in str(message_from_bytes(envelope.original_content or b"")["Subject"])


async def test_a_failing_test_reports_the_error_without_the_secret(services: Any, principal: Principal,
                                                                   audit: AuditContext, receiver: HttpReceiver,
                                                                   ) -> None:
    receiver.status = 500
    slack = await create(services, principal, audit, CREATE.validate_python(
        {"kind": "slack", "name": "slack", "config": {"url": receiver.url("/T000/B000/very-secret-path")}}))
    result = await service.test_channel(services, principal, slack["id"])
    assert not result.ok and result.response_code == 500 and "very-secret-path" not in (result.error or "")
    down = await create(services, principal, audit, webhook(HttpReceiver().url(), name="nobody listens"))
    result = await service.test_channel(services, principal, down["id"])
    assert not result.ok and result.response_code is None and result.error
    no_smtp = await create(services, principal, audit, CREATE.validate_python({"kind": "email", "name": "m", "config": {
        "smtp_host": "127.0.0.1", "smtp_port": HttpReceiver().port, "security": "starttls",
        "from_address": "wellpulse@example.com", "to": ["ops@example.com"]}}))
    result = await service.test_channel(services, principal, no_smtp["id"])
    assert not result.ok and result.error and "Connection refused" in result.error


# ------------------------------------------------------------------------------------------------ deliveries


async def test_an_alert_reaches_each_matching_channel_once_across_restarts(
        services: Any, tenant: str, principal: Principal, audit: AuditContext, receiver: HttpReceiver) -> None:
    await create(services, principal, audit, webhook(receiver.url("/hook")))
    await create(services, principal, audit, CREATE.validate_python(
        {"kind": "slack", "name": "critical only", "min_severity": "critical", "config": {"url": receiver.url("/s")}}))
    await create(services, principal, audit, webhook(receiver.url("/off"), name="disabled", enabled=False))
    event = await open_alert(services, tenant, "warning")
    clock = ManualClock(datetime.now(UTC))
    assert await notifier(services, tenant, clock).run_round() == 1
    assert await notifier(services, tenant, clock).run_round() == 0  # a restart: a new notifier, same rows
    [received] = receiver.requests
    assert received.path == "/hook" and signature_valid(SECRET, received)
    body = received.json()
    assert (body["type"], body["alert_id"], body["event_seq"]) == ("alert.opened", event["alert_id"], event["seq"])
    assert received.headers["X-WellPulse-Delivery"] == body["delivery_id"]
    [delivery] = await deliveries(services, tenant, event["alert_id"])
    assert (delivery["status"], delivery["attempts"], delivery["response_code"]) == ("sent", 1, 200)
    assert delivery["channel_name"] == "ops hook" and delivery["latency_ms"] > 0


async def test_a_receiver_down_then_back_gets_the_notification_once(
        services: Any, tenant: str, principal: Principal, audit: AuditContext, receiver: HttpReceiver) -> None:
    await create(services, principal, audit, webhook(receiver.url("/hook")))
    await receiver.stop()
    event = await open_alert(services, tenant)
    clock = ManualClock(datetime.now(UTC))
    sender = notifier(services, tenant, clock, backoff_seconds=10.0)
    assert await sender.run_round() == 1
    [pending] = await deliveries(services, tenant, event["alert_id"])
    assert (pending["status"], pending["attempts"]) == ("pending", 1) and pending["last_error"]
    assert pending["next_attempt_at"] > clock.now()
    assert await sender.run_round() == 0  # not due yet
    await receiver.start()
    clock.advance(timedelta(seconds=10))
    assert await sender.run_round() == 1
    assert await notifier(services, tenant, clock).run_round() == 0
    assert len(receiver.requests) == 1
    [sent] = await deliveries(services, tenant, event["alert_id"])
    assert (sent["status"], sent["attempts"], sent["last_error"]) == ("sent", 2, None)


async def test_a_delivery_out_of_time_fails_and_the_alert_says_so(
        services: Any, tenant: str, principal: Principal, audit: AuditContext, receiver: HttpReceiver) -> None:
    channel = await create(services, principal, audit, webhook(receiver.url("/hook")))
    await receiver.stop()
    event = await open_alert(services, tenant, "critical")
    clock, published = ManualClock(datetime.now(UTC)), []
    sender = notifier(services, tenant, clock, published, retry_seconds=60.0, backoff_seconds=40.0)
    await sender.run_round()
    clock.advance(timedelta(seconds=45))  # the second try comes at the deadline at the latest
    await sender.run_round()
    assert [d["status"] for d in await deliveries(services, tenant, event["alert_id"])] == ["pending"]
    clock.advance(timedelta(seconds=15))
    await sender.run_round()
    [failed] = await deliveries(services, tenant, event["alert_id"])
    assert (failed["status"], failed["attempts"]) == ("failed", 3) and failed["failed_at"] is not None
    [note] = published
    assert (note["kind"], note["alert_id"]) == ("notification_failed", event["alert_id"])
    assert note["details"]["channel_id"] == str(channel["id"]) and note["seq"] > event["seq"]
    assert await sender.run_round() == 0  # the failure event itself notifies nobody
    assert sender.stats()["failed"] == {"webhook": 1} and sender.stats()["attempt_errors"] == {"webhook": 3}


async def test_a_refusal_no_retry_can_change_fails_at_once(
        services: Any, tenant: str, principal: Principal, audit: AuditContext, receiver: HttpReceiver) -> None:
    await create(services, principal, audit, webhook(receiver.url("/hook")))
    receiver.status = 410
    event = await open_alert(services, tenant)
    await notifier(services, tenant, ManualClock(datetime.now(UTC))).run_round()
    [failed] = await deliveries(services, tenant, event["alert_id"])
    assert (failed["status"], failed["response_code"], failed["attempts"]) == ("failed", 410, 1)
    with pytest.raises(NotFound):
        await deliveries(services, tenant, 987_654_321)


async def test_a_rotated_data_key_reseals_channel_settings(services: Any, tenant: str, principal: Principal,
                                                           audit: AuditContext) -> None:
    """Channels sealed by the previous data key are sealed again by the current one at start-up, so dropping the
    previous key later strands none of them."""
    row = await create(services, principal, audit, webhook("https://hooks.example.com/rotated"))
    current = SecretBox.from_settings(services.settings)
    old = SecretBox("an-earlier-data-key-" + "k" * 32)
    async with db.tenant_tx(services.pool, tenant) as conn:
        await conn.execute("UPDATE notification_channels SET secret = $2 WHERE id = $1", row["id"],
                           old.seal(current.open(await conn.fetchval(
                               "SELECT secret FROM notification_channels WHERE id = $1", row["id"]))))
    rotated = SecretBox(current.current, previous=(old.current,))
    assert await asyncio.to_thread(reseal_secrets, services.settings.database_url, rotated) >= 1
    async with db.tenant_tx(services.pool, tenant) as conn:
        sealed = await conn.fetchval("SELECT secret FROM notification_channels WHERE id = $1", row["id"])
    assert current.is_current(sealed) and current.open(sealed) == f'{{"secret": "{SECRET}"}}'


async def test_disabling_a_channel_fails_what_was_pending_for_it(
        services: Any, tenant: str, principal: Principal, audit: AuditContext, receiver: HttpReceiver) -> None:
    channel = await create(services, principal, audit, webhook(receiver.url("/hook")))
    await receiver.stop()
    event = await open_alert(services, tenant)
    clock = ManualClock(datetime.now(UTC))
    await notifier(services, tenant, clock).run_round()
    await service.update_channel(services, principal, audit, channel["id"], ChannelUpdate(enabled=False))
    await receiver.start()
    clock.advance(timedelta(hours=1))
    assert await notifier(services, tenant, clock).run_round() == 0
    [failed] = await deliveries(services, tenant, event["alert_id"])
    assert (failed["status"], failed["last_error"]) == ("failed", "channel disabled") and receiver.requests == []
