"""Notification channel services: create, read, update, delete and test a tenant's channels, and list the
deliveries of an alert.

A channel's write-only settings (`schema.notifications.SECRET_FIELDS`) are sealed with the data key
(`config.secrets.SecretBox`) before they reach the store, never logged, never answered, and never in an audit
row (the audit records what the API shows). Sending is the notifier's (`actors.notifier`); the test here sends one
message through the same adapter (`store.senders`) and answers how it went.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from pydantic import BaseModel, ValidationError

from config.secrets import SecretBox
from schema.errors import Conflict, InvalidInput, NotFound
from schema.notifications import (
    CONFIG_MODELS,
    REQUIRED_SECRETS,
    SECRET_FIELDS,
    ChannelCreate,
    ChannelTestResult,
    ChannelUpdate,
)
from serve.auth import Principal
from serve.listing import tenant_page
from serve.services import Services
from serve.uow import tenant_work
from store import alerts as alert_store
from store import notifications as store
from store.audit import AuditContext
from store.listing import ListQuery
from store.senders import PRIVATE_HINT, Notice, destination_refusal, send

__all__ = ["create_channel", "delete_channel", "get_channel", "list_alert_deliveries", "list_channels",
           "notification_metrics", "test_channel", "update_channel"]


async def list_channels(services: Services, tenant_id: str, q: ListQuery) -> tuple[list[dict[str, Any]], int]:
    return await tenant_page(services, tenant_id, store.CHANNELS, q)


async def get_channel(services: Services, tenant_id: str, channel_id: uuid.UUID) -> asyncpg.Record:
    async with services.tenant_tx(tenant_id) as conn:
        row = await store.get_channel(conn, tenant_id, channel_id)
    if row is None:
        raise _not_found(channel_id)
    return row


async def create_channel(services: Services, principal: Principal, audit: AuditContext, body: ChannelCreate,
                         ) -> asyncpg.Record:
    """A channel; `InvalidInput` naming the field when a setting it needs is missing, `Conflict` on a taken name."""
    public, secrets = _split(body.kind, body.config)
    _check_secrets(body.kind, public, secrets)
    _check_destination(services, body.kind, public, secrets)
    sealed = store.seal_secrets(SecretBox.from_settings(services.settings), secrets)
    async with tenant_work(services, principal.tenant_id, audit) as uow:
        try:
            row = await store.insert_channel(uow.conn, principal.tenant_id, name=body.name, kind=body.kind,
                                             enabled=body.enabled, min_severity=body.min_severity, config=public,
                                             secret=sealed, created_by=principal.actor)
        except asyncpg.UniqueViolationError:
            raise _name_taken(body.name) from None
        await uow.record(action="create", entity_type="notification_channel", entity_id=str(row["id"]), new=row)
    return row


async def update_channel(services: Services, principal: Principal, audit: AuditContext, channel_id: uuid.UUID,
                         body: ChannelUpdate) -> asyncpg.Record:
    """Partial update; a new ``config`` replaces the old, keeping each write-only setting it leaves out."""
    box = SecretBox.from_settings(services.settings)
    async with tenant_work(services, principal.tenant_id, audit) as uow:
        old = await store.get_channel(uow.conn, principal.tenant_id, channel_id, with_secret=True)
        if old is None:
            raise _not_found(channel_id)
        kind, public, sealed = old["kind"], old["config"], old["secret"]
        if body.config is not None:
            public, secrets = _split(kind, _parse_config(kind, body.config))
            secrets = {**store.open_secrets(box, sealed), **secrets}
            _check_secrets(kind, public, secrets)
            _check_destination(services, kind, public, secrets)
            sealed = store.seal_secrets(box, secrets)
        name = body.name if body.name is not None else old["name"]
        try:
            row = await store.update_channel(
                uow.conn, principal.tenant_id, channel_id, name=name,
                enabled=old["enabled"] if body.enabled is None else body.enabled,
                min_severity=body.min_severity or old["min_severity"], config=public, secret=sealed)
        except asyncpg.UniqueViolationError:
            raise _name_taken(name) from None
        old_public = {k: v for k, v in old.items() if k != "secret"}
        await uow.record(action="update", entity_type="notification_channel", entity_id=str(channel_id),
                         old=old_public, new=row)
    return row


async def delete_channel(services: Services, principal: Principal, audit: AuditContext,
                         channel_id: uuid.UUID) -> None:
    """Soft delete: its settings go, its deliveries stay as history (pending ones fail)."""
    async with tenant_work(services, principal.tenant_id, audit) as uow:
        if not await store.delete_channel(uow.conn, principal.tenant_id, channel_id):
            raise _not_found(channel_id)
        await uow.record(action="delete", entity_type="notification_channel", entity_id=str(channel_id))


async def test_channel(services: Services, principal: Principal, channel_id: uuid.UUID) -> ChannelTestResult:
    """Send a test message through the channel now (enabled or not) and say how it went; nothing is stored."""
    async with services.tenant_tx(principal.tenant_id) as conn:
        row = await store.get_channel(conn, principal.tenant_id, channel_id, with_secret=True)
    if row is None:
        raise _not_found(channel_id)
    try:
        secrets = store.open_secrets(SecretBox.from_settings(services.settings), row["secret"])
    except ValueError:
        return ChannelTestResult(ok=False, error="the channel's secret cannot be opened (data key changed?)",
                                 latency_ms=0.0)
    notice = Notice(delivery_id=f"test-{uuid.uuid4()}", tenant_id=principal.tenant_id, alert_id=0, event_seq=0,
                    event_kind="test", equipment_id="-", rule_id="test", severity=row["min_severity"], state="open",
                    message=f"A test of the channel {row['name']!r}, sent by {principal.actor}.",
                    occurred_at=datetime.now(UTC), test=True)
    result = await send(row["kind"], row["config"], secrets, notice,
                        timeout=services.settings.notification_timeout_seconds,
                        allow_private_networks=services.settings.notify_allow_private_networks)
    return ChannelTestResult(ok=result.ok, error=result.error, response_code=result.response_code,
                             latency_ms=result.latency_ms)


async def list_alert_deliveries(services: Services, tenant_id: str, alert_id: int, q: ListQuery,
                                ) -> tuple[list[dict[str, Any]], int]:
    """The deliveries of one alert's events, oldest first; `NotFound` when the tenant has no such alert."""
    async with services.tenant_tx(tenant_id) as conn:
        if await alert_store.get_alert(conn, tenant_id, alert_id) is None:
            raise NotFound(f"alert {alert_id} not found")
    return await tenant_page(services, tenant_id, store.DELIVERIES, q, extra_where=[("alert_id = $1", [alert_id])])


def _parse_config(kind: str, config: dict[str, Any]) -> BaseModel:
    try:
        return CONFIG_MODELS[kind].model_validate(config)
    except ValidationError as exc:
        details = [{"field": ".".join(["config", *(str(p) for p in e["loc"])]), "message": e["msg"]}
                   for e in exc.errors()[:50]]
        raise InvalidInput(f"invalid {kind} channel settings", details) from None


def _split(kind: str, config: BaseModel) -> tuple[dict[str, Any], dict[str, str]]:
    """(what the API shows, the write-only settings given) of a kind's settings."""
    hidden = SECRET_FIELDS[kind]
    public = config.model_dump(mode="json", exclude=set(hidden))
    secrets = {name: value.get_secret_value() for name in hidden if (value := getattr(config, name)) is not None}
    return public, secrets


def _check_secrets(kind: str, public: dict[str, Any], secrets: dict[str, str]) -> None:
    missing = [name for name in REQUIRED_SECRETS[kind] if name not in secrets]
    if kind == "email" and public.get("username") and "password" not in secrets:
        missing.append("password")
    if missing:
        raise InvalidInput(f"a {kind} channel needs " + ", ".join(missing),
                           [{"field": f"config.{name}", "message": "required (write-only)"} for name in missing])


def _check_destination(services: Services, kind: str, public: dict[str, Any], secrets: dict[str, str]) -> None:
    """Refuse, naming ``config.url``, a destination on a loopback, private or link-local address unless the
    operator allows private networks; a name is checked again at each send, once resolved (`store.senders`)."""
    if kind == "email" or services.settings.notify_allow_private_networks:
        return
    url = public.get("url") if kind in ("webhook", "sms") else secrets.get("url")
    refusal = destination_refusal(str(url or ""))
    if refusal is not None:
        raise InvalidInput.on("config.url", f"{refusal}; {PRIVATE_HINT}")


def _not_found(channel_id: uuid.UUID) -> NotFound:
    return NotFound(f"notification channel {channel_id} not found")


def _name_taken(name: str) -> Conflict:
    return Conflict(f"a notification channel named {name!r} exists",
                    [{"field": "name", "message": "already used by another channel"}])


def notification_metrics(tenants: dict[str, dict[str, Any]]) -> list[Metric]:
    """Deliveries, failures and delivery latency per tenant and channel kind, from the notifiers' counters in
    the TenantActors' stats (`actors.notifier.Notifier.stats`); /metrics adds them to its snapshot."""
    sent = CounterMetricFamily("wellpulse_notifications_sent", "Notifications delivered", labels=["tenant", "kind"])
    failed = CounterMetricFamily("wellpulse_notifications_failed", "Notifications given up after their retries",
                                 labels=["tenant", "kind"])
    errors = CounterMetricFamily("wellpulse_notification_attempt_errors", "Delivery attempts that failed",
                                 labels=["tenant", "kind"])
    latency = HistogramMetricFamily("wellpulse_notification_latency_seconds", "Time one delivery attempt took",
                                    labels=["tenant", "kind"])
    for tenant, st in tenants.items():
        counters = st.get("notifications")
        if not counters:
            continue
        for family, key in ((sent, "sent"), (failed, "failed"), (errors, "attempt_errors")):
            for kind, n in counters[key].items():
                family.add_metric([tenant, kind], n)
        for kind, hist in counters["latency_hist"].items():
            cumulative, buckets = 0, []
            for bound, n in zip(counters["latency_buckets"], hist, strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            latency.add_metric([tenant, kind], buckets, counters["latency_sum"][kind])
    return [sent, failed, errors, latency]
