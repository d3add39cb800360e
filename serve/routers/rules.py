"""Alert rules of the caller's tenant: list, create, read, update, delete (soft).

A rule is checked by the same constructor the actors run (`models.build_rule`), so what the API
accepts, the actors can build. After every committed change the tenant's actors are told
(``ctl.<tenant>``) and rebuild their rules within seconds; their periodic reload covers a lost message.
"""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Response
from pydantic import ValidationError

from models import build_rule
from schema.api import Envelope, ErrorEnvelope
from schema.rules import PARAMS_BY_KIND, RuleCreate, RulePublic, RuleUpdate
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require
from serve.errors import ApiError, validation_details
from serve.listing import list_params, page_envelope, sparse
from store import assets as asset_store
from store import audit as audit_log
from store import rules as store
from store.listing import ListQuery, fetch_page

router = APIRouter(prefix="/v1/rules", tags=["rules"])
ERRORS = {404: {"model": ErrorEnvelope}, 409: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}}
Reader = Annotated[Principal, require("rules:read")]
Writer = Annotated[Principal, require("rules:write")]
RuleIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


@router.get("", response_model=Envelope[list[sparse(RulePublic)]], response_model_exclude_unset=True,
            responses=ERRORS)
async def list_rules(services: ServicesDep, principal: Reader,
                     q: Annotated[ListQuery, list_params(store.RULES)]) -> dict[str, Any]:
    """The tenant's own rules (the defaults of each equipment type apply besides them)."""
    async with services.tenant_tx(principal.tenant_id) as conn:
        rows, total = await fetch_page(conn, store.RULES, q, principal.tenant_id)
    return page_envelope(rows, total, q)


@router.post("", status_code=201, response_model=Envelope[RulePublic], responses=ERRORS)
async def create_rule(body: Annotated[RuleCreate, Body()], services: ServicesDep, principal: Writer, audit: Audit,
                      ) -> Envelope[RulePublic]:
    """A rule for one equipment (`equipment_id`), an equipment type (`equipment_type`) or the whole tenant.
    Running actors apply it within seconds."""
    rule_id = body.id or f"rule-{uuid.uuid4().hex[:12]}"
    values = {"id": rule_id, "name": body.name or rule_id, "description": body.description, "kind": body.kind,
              "severity": body.severity, "equipment_id": body.equipment_id, "enabled": body.enabled,
              "equipment_type": body.equipment_type.value if body.equipment_type else None,
              "params": body.params.model_dump(exclude_unset=True), "created_by": principal.actor}
    _check_rule(values)
    async with services.tenant_tx(principal.tenant_id) as conn:
        await _check_scope(conn, principal.tenant_id, values)
        row = await store.insert_rule(conn, principal.tenant_id, values)
        if row is None:
            raise ApiError(409, f"rule {rule_id} already exists",
                           details=[{"field": "id", "message": "taken; PATCH the rule or choose another id"}])
        await audit_log.record(conn, audit, action="create", entity_type="alert_rule", entity_id=rule_id, new=row)
    await services.notify_actors(principal.tenant_id, "rules")
    return Envelope(data=RulePublic(**row))


@router.get("/{rule_id}", response_model=Envelope[RulePublic], responses=ERRORS)
async def get_rule(rule_id: RuleIdPath, services: ServicesDep, principal: Reader) -> Envelope[RulePublic]:
    async with services.tenant_tx(principal.tenant_id) as conn:
        row = await store.get_rule(conn, principal.tenant_id, rule_id)
    if row is None:
        raise ApiError(404, f"rule {rule_id} not found")
    return Envelope(data=RulePublic(**row))


@router.patch("/{rule_id}", response_model=Envelope[RulePublic], responses=ERRORS)
async def update_rule(rule_id: RuleIdPath, body: RuleUpdate, services: ServicesDep, principal: Writer, audit: Audit,
                      ) -> Envelope[RulePublic]:
    """Partial update; running actors apply it within seconds."""
    async with services.tenant_tx(principal.tenant_id) as conn:
        old = await store.get_rule(conn, principal.tenant_id, rule_id, lock=True)
        if old is None:
            raise ApiError(404, f"rule {rule_id} not found")
        values = _merged(dict(old), body)
        _check_rule(values)
        await _check_scope(conn, principal.tenant_id, values)
        row = await store.update_rule(conn, principal.tenant_id, rule_id, values)
        await audit_log.record(conn, audit, action="update", entity_type="alert_rule", entity_id=rule_id,
                               old=old, new=row)
    await services.notify_actors(principal.tenant_id, "rules")
    return Envelope(data=RulePublic(**row))


@router.delete("/{rule_id}", status_code=204, responses=ERRORS)
async def delete_rule(rule_id: RuleIdPath, services: ServicesDep, principal: Writer, audit: Audit) -> Response:
    """Soft delete. Its open alerts resolve; a default rule of the same id applies again."""
    async with services.tenant_tx(principal.tenant_id) as conn:
        old = await store.delete_rule(conn, principal.tenant_id, rule_id)
        if old is None:
            raise ApiError(404, f"rule {rule_id} not found")
        await audit_log.record(conn, audit, action="delete", entity_type="alert_rule", entity_id=rule_id, old=old)
    await services.notify_actors(principal.tenant_id, "rules")
    return Response(status_code=204)


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
            raise ApiError(422, f"invalid params for a {old['kind']} rule",
                           details=[{**d, "field": f"params.{d['field']}"} for d in details]) from exc
        values["params"] = typed.model_dump(exclude_unset=True)
    return values


def _check_rule(values: dict[str, Any]) -> None:
    """What the actors would do with the rule: build it (422 naming the parameter when that fails)."""
    params = values["params"]
    try:
        build_rule(values["id"], values["kind"], {**params, "severity": values["severity"]})
    except ValueError as exc:
        reason = str(exc).split(": ", 1)[-1]
        word = reason.split(" ", 1)[0]
        field = f"params.{word}" if word in PARAMS_BY_KIND[values["kind"]].model_fields else "params"
        raise ApiError(422, f"invalid rule: {reason}", details=[{"field": field, "message": reason}]) from exc


async def _check_scope(conn: Any, tenant_id: str, values: dict[str, Any]) -> None:
    if values["equipment_id"] is not None and values["equipment_type"] is not None:
        raise ApiError(422, "a rule applies to one equipment or one equipment type, not both",
                       details=[{"field": "equipment_type", "message": "give equipment_id or equipment_type"}])
    equipment_id = values["equipment_id"]
    if equipment_id is not None and not await asset_store.equipment_exists(conn, tenant_id, equipment_id):
        raise ApiError(422, f"unknown equipment {values['equipment_id']}",
                       details=[{"field": "equipment_id", "message": "no such equipment in this tenant"}])
