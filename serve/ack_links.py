"""Acknowledging an alert from its notification: the signed, single-use, expiring link (`notify.acklinks`).

No login: the token is the credential. It is verified before anything is read (a malformed, forged or expired
token: `InvalidInput` on ``token``); its nonce is recorded in the transaction that acknowledges, so a second
use is a `Conflict` and changes nothing. The acknowledgement is the alert's ordinary one (`store.alerts`): its
event is published after the commit, and an acknowledged alert is no longer escalated.
"""

import time
from datetime import UTC, datetime
from typing import Any

from notify.acklinks import AckLink, AckLinkError, verify
from schema.errors import Conflict, InvalidInput, NotFound
from serve.services import Services
from serve.uow import tenant_work
from store import ack_links as store
from store import alerts as alert_store
from store.audit import AuditContext

__all__ = ["acknowledge", "describe"]

_SUMMARY = ("id", "equipment_id", "rule_id", "state", "severity", "message", "opened_at", "acknowledged_at")


def _link(services: Services, token: str) -> AckLink:
    key = services.settings.ack_link_key
    if key is None:
        raise NotFound("acknowledge links are not configured")
    try:
        return verify(key.get_secret_value().encode(), token, now=time.time())
    except AckLinkError as exc:
        raise InvalidInput.on("token", str(exc)) from None


async def describe(services: Services, token: str) -> dict[str, Any]:
    """The alert a valid link names, and whether the link was used; nothing changes."""
    link = _link(services, token)
    async with services.tenant_tx(link.tenant_id) as conn:
        alert = await alert_store.get_alert(conn, link.tenant_id, link.alert_id)
        used = await store.link_used(conn, link.tenant_id, link.nonce)
    if alert is None:
        raise NotFound(f"alert {link.alert_id} not found")
    return {"alert": {k: alert[k] for k in _SUMMARY}, "used": used,
            "expires_at": datetime.fromtimestamp(link.expires, UTC)}


async def acknowledge(services: Services, token: str, *, ip: str | None, request_id: str | None,
                      ) -> dict[str, Any]:
    """Acknowledge the alert the link names, once."""
    link = _link(services, token)
    audit = AuditContext(link.tenant_id, "system", f"ack-link:{link.nonce}", ip, request_id)
    async with tenant_work(services, link.tenant_id, audit) as uow:
        now = datetime.now(UTC)
        if not await store.use_link(uow.conn, link.tenant_id, link.nonce, link.alert_id, now=now):
            raise Conflict.on("token", "the acknowledge link was already used")
        alert, events = await alert_store.acknowledge_alert(uow.conn, link.tenant_id, link.alert_id,
                                                            actor=f"ack-link:{link.nonce[:8]}", comment=None,
                                                            now=now)
        if alert is None:
            raise NotFound(f"alert {link.alert_id} not found")
        summary = {k: alert[k] for k in _SUMMARY}
        if events:
            await uow.record(action="acknowledge", entity_type="alert", entity_id=str(link.alert_id),
                             old={"state": "open"}, new={"state": alert["state"], "via": "ack_link"})
        uow.publish_alert_events(events)
    return {"alert": summary, "used": True,
            "expires_at": datetime.fromtimestamp(link.expires, UTC)}
