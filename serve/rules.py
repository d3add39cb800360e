"""Alert rule services: list, read, create, update, soft delete.

A rule is checked by the same constructor the actors run (`models.build_rule`), so what the API accepts, the
actors can build. Every change commits with its audit row in a unit of work (`serve.uow`), which tells the
tenant's actors after the commit (``ctl.<tenant>``); they rebuild their rules within seconds, and their periodic
reload covers a lost message. Refusals are `schema.errors` classes naming the field at fault.
"""

import uuid
from typing import Any

import asyncpg
from pydantic import ValidationError

from models import build_rule
from schema.errors import Conflict, InvalidInput, NotFound
from schema.rules import PARAMS_BY_KIND, RuleCreate, RuleUpdate
from serve.auth import Principal
from serve.errors import validation_details
from serve.listing import tenant_page
from serve.services import Services
from serve.uow import tenant_work
from store import assets as asset_store
from store import rules as store
from store.audit import AuditContext
from store.listing import ListQuery

__all__ = ["create_rule", "delete_rule", "get_rule", "list_rules", "update_rule"]

ENTITY = "alert_rule"  # the audit log's name for a rule


async def list_rules(services: Services, tenant_id: str, q: ListQuery) -> tuple[list[dict[str, Any]], int]:
    return await tenant_page(services, tenant_id, store.RULES, q)


async def get_rule(services: Services, tenant_id: str, rule_id: str) -> asyncpg.Record:
    async with services.tenant_tx(tenant_id) as conn:
        row = await store.get_rule(conn, tenant_id, rule_id)
    if row is None:
        raise _not_found(rule_id)
    return row


async def create_rule(services: Services, principal: Principal, audit: AuditContext, body: RuleCreate,
                      ) -> asyncpg.Record:
    """A new rule (``body.id`` or a generated one); `Conflict` when a live rule holds the id."""
    rule_id = body.id or f"rule-{uuid.uuid4().hex[:12]}"
    values = {"id": rule_id, "name": body.name or rule_id, "description": body.description, "kind": body.kind,
              "severity": body.severity, "equipment_id": body.equipment_id, "enabled": body.enabled,
              "equipment_type": body.equipment_type.value if body.equipment_type else None,
              "params": body.params.model_dump(exclude_unset=True), "created_by": principal.actor}
    _check_rule(values)
    async with tenant_work(services, principal.tenant_id, audit) as uow:
        await _check_scope(uow.conn, principal.tenant_id, values)
        row = await store.insert_rule(uow.conn, principal.tenant_id, values)
        if row is None:
            raise Conflict(f"rule {rule_id} already exists",
                           [{"field": "id", "message": "taken; PATCH the rule or choose another id"}])
        await uow.record(action="create", entity_type=ENTITY, entity_id=rule_id, new=row)
        uow.notify_actors("rules")
    return row


async def update_rule(services: Services, principal: Principal, audit: AuditContext, rule_id: str,
                      body: RuleUpdate) -> asyncpg.Record:
    """A partial update (`_merged`), checked as a new rule would be."""
    async with tenant_work(services, principal.tenant_id, audit) as uow:
        old = await store.get_rule(uow.conn, principal.tenant_id, rule_id, lock=True)
        if old is None:
            raise _not_found(rule_id)
        values = _merged(dict(old), body)
        _check_rule(values)
        await _check_scope(uow.conn, principal.tenant_id, values)
        row = await store.update_rule(uow.conn, principal.tenant_id, rule_id, values)
        await uow.record(action="update", entity_type=ENTITY, entity_id=rule_id, old=old, new=row)
        uow.notify_actors("rules")
    return row


async def delete_rule(services: Services, principal: Principal, audit: AuditContext, rule_id: str) -> None:
    """Soft delete: its open alerts resolve, and a default rule of the same id applies again."""
    async with tenant_work(services, principal.tenant_id, audit) as uow:
        old = await store.delete_rule(uow.conn, principal.tenant_id, rule_id)
        if old is None:
            raise _not_found(rule_id)
        await uow.record(action="delete", entity_type=ENTITY, entity_id=rule_id, old=old)
        uow.notify_actors("rules")


def _not_found(rule_id: str) -> NotFound:
    return NotFound(f"rule {rule_id} not found")


# ---------------------------------------------------------------- checks shared by create and update


def _merged(old: dict[str, Any], body: RuleUpdate) -> dict[str, Any]:
    """The rule after a PATCH. Naming either scope field replaces the scope; a null param is removed."""
    given = body.model_fields_set
    values = {k: old[k] for k in ("id", "name", "description", "kind", "severity", "equipment_id",
                                  "equipment_type", "enabled", "params")}
    for name in ("name", "description", "severity", "enabled"):
        if getattr(body, name) is not None:
            values[name] = getattr(body, name)
    if given & {"equipment_id", "equipment_type"}:
        values["equipment_id"] = body.equipment_id
        values["equipment_type"] = body.equipment_type.value if body.equipment_type else None
    if body.params is not None:
        params = {**(old["params"] or {}), **body.params}
        try:
            typed = PARAMS_BY_KIND[old["kind"]].model_validate({k: v for k, v in params.items() if v is not None})
        except ValidationError as exc:
            details = validation_details(exc.errors())
            raise InvalidInput(f"invalid params for a {old['kind']} rule",
                               [{**d, "field": f"params.{d['field']}"} for d in details]) from exc
        values["params"] = typed.model_dump(exclude_unset=True)
    return values


def _check_rule(values: dict[str, Any]) -> None:
    """What the actors would do with the rule: build it (`InvalidInput` naming the parameter when that fails)."""
    params = values["params"]
    try:
        build_rule(values["id"], values["kind"], {**params, "severity": values["severity"]})
    except ValueError as exc:
        reason = str(exc).split(": ", 1)[-1]
        word = reason.split(" ", 1)[0]
        field = f"params.{word}" if word in PARAMS_BY_KIND[values["kind"]].model_fields else "params"
        raise InvalidInput(f"invalid rule: {reason}", [{"field": field, "message": reason}]) from exc


async def _check_scope(conn: asyncpg.Connection, tenant_id: str, values: dict[str, Any]) -> None:
    """One equipment or one equipment type (or neither: the whole tenant), and the equipment must exist."""
    if values["equipment_id"] is not None and values["equipment_type"] is not None:
        raise InvalidInput("a rule applies to one equipment or one equipment type, not both",
                           [{"field": "equipment_type", "message": "give equipment_id or equipment_type"}])
    await asset_store.check_equipment_named(conn, tenant_id, values["equipment_id"])
