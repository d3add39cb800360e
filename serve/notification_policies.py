"""Notification policy services: read, replace and remove a tenant's routing tree.

The document is checked whole before it is stored: its shape by `schema.notification_policies`, its meaning by
`notify.routing.PolicyTree.parse` (one root, no cycle, known matcher and group_by fields, mute timings that exist)
and here (every channel a live channel of the tenant). A refusal names the field. The notifier reads the stored
tree on each round (`actors.notifier`).
"""

from typing import Any

from notify.routing import PolicyError, PolicyTree
from schema.errors import InvalidInput, NotFound
from schema.notification_policies import PolicyDocument
from serve.auth import Principal
from serve.services import Services
from serve.uow import tenant_work
from store import notification_policies as store
from store import oncall as oncall_store
from store.audit import AuditContext

__all__ = ["delete_policy", "get_policy", "put_policy"]


async def get_policy(services: Services, tenant_id: str) -> dict[str, Any]:
    async with services.tenant_tx(tenant_id) as conn:
        row = await store.get_policy(conn, tenant_id)
    if row is None:
        raise NotFound("no notification policy: every enabled channel hears of every alert")
    return {**row["document"], "updated_by": row["updated_by"], "updated_at": row["updated_at"]}


async def put_policy(services: Services, principal: Principal, audit: AuditContext, body: PolicyDocument,
                     ) -> dict[str, Any]:
    """Replace the tenant's tree; `InvalidInput` naming the field when it cannot be used."""
    document = body.model_dump(mode="json", by_alias=True, exclude_none=True)
    try:
        tree = PolicyTree.parse(document)
    except PolicyError as exc:
        raise InvalidInput.on(exc.field, exc.message) from None
    async with tenant_work(services, principal.tenant_id, audit) as uow:
        if tree.channel_ids():
            _check_channels(document, await store.live_channel_ids(uow.conn, principal.tenant_id))
        if tree.chain_ids():
            live = await oncall_store.live_chain_ids(uow.conn, principal.tenant_id)
            for i, route in enumerate(document["routes"]):
                if route.get("escalation_chain") and route["escalation_chain"] not in live:
                    raise InvalidInput.on(f"routes[{i}].escalation_chain",
                                          f"no escalation chain {route['escalation_chain']}")
        old = await store.get_policy(uow.conn, principal.tenant_id)
        row = await store.put_policy(uow.conn, principal.tenant_id, document, updated_by=principal.subject)
        await uow.record(action="update" if old else "create", entity_type="notification_policy",
                         entity_id=principal.tenant_id, old=old, new=row)
    return {**row["document"], "updated_by": row["updated_by"], "updated_at": row["updated_at"]}


async def delete_policy(services: Services, principal: Principal, audit: AuditContext) -> None:
    """Back to every enabled channel hearing of every alert; groups already gathered still go out."""
    async with tenant_work(services, principal.tenant_id, audit) as uow:
        if not await store.delete_policy(uow.conn, principal.tenant_id):
            raise NotFound("no notification policy to delete")
        await uow.record(action="delete", entity_type="notification_policy", entity_id=principal.tenant_id)


def _check_channels(document: dict[str, Any], live: set[str]) -> None:
    for i, route in enumerate(document["routes"]):
        for j, channel in enumerate(route.get("channels", [])):
            if channel not in live:
                raise InvalidInput.on(f"routes[{i}].channels[{j}]", f"no notification channel {channel}")
