"""Alert rules of the caller's tenant: list, create, read, update, delete (soft). The routes parse and answer;
`serve.rules` checks the rule as the actors would build it, commits the change with its audit row and tells the
actors after the commit.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Response

from schema.api import Envelope, ErrorEnvelope
from schema.rules import RuleCreate, RulePublic, RuleUpdate
from serve import rules as service
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require
from serve.listing import list_params, page_envelope, sparse_list
from store.listing import ListQuery
from store.rules import RULES

router = APIRouter(prefix="/v1/rules", tags=["rules"])
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorEnvelope}, 409: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}}
Reader = Annotated[Principal, require("rules:read")]
Writer = Annotated[Principal, require("rules:write")]
RuleIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
# List pages, parametrised at module level (see serve.listing.sparse_list).
RULE_PAGE = Envelope.__class_getitem__(sparse_list(RulePublic))


@router.get("", response_model=RULE_PAGE, response_model_exclude_unset=True,
            responses=ERRORS)
async def list_rules(services: ServicesDep, principal: Reader,
                     q: Annotated[ListQuery, list_params(RULES)]) -> dict[str, Any]:
    """The tenant's own rules (the defaults of each equipment type apply besides them)."""
    rows, total = await service.list_rules(services, principal.tenant_id, q)
    return page_envelope(rows, total, q)


@router.post("", status_code=201, response_model=Envelope[RulePublic], responses=ERRORS)
async def create_rule(body: Annotated[RuleCreate, Body()], services: ServicesDep, principal: Writer, audit: Audit,
                      ) -> Envelope[RulePublic]:
    """A rule for one equipment (`equipment_id`), an equipment type (`equipment_type`) or the whole tenant.
    Running actors apply it within seconds."""
    row = await service.create_rule(services, principal, audit, body)
    return Envelope(data=RulePublic(**row))


@router.get("/{rule_id}", response_model=Envelope[RulePublic], responses=ERRORS)
async def get_rule(rule_id: RuleIdPath, services: ServicesDep, principal: Reader) -> Envelope[RulePublic]:
    row = await service.get_rule(services, principal.tenant_id, rule_id)
    return Envelope(data=RulePublic(**row))


@router.patch("/{rule_id}", response_model=Envelope[RulePublic], responses=ERRORS)
async def update_rule(rule_id: RuleIdPath, body: RuleUpdate, services: ServicesDep, principal: Writer, audit: Audit,
                      ) -> Envelope[RulePublic]:
    """Partial update; running actors apply it within seconds."""
    row = await service.update_rule(services, principal, audit, rule_id, body)
    return Envelope(data=RulePublic(**row))


@router.delete("/{rule_id}", status_code=204, responses=ERRORS)
async def delete_rule(rule_id: RuleIdPath, services: ServicesDep, principal: Writer, audit: Audit) -> Response:
    """Soft delete. Its open alerts resolve; a default rule of the same id applies again."""
    await service.delete_rule(services, principal, audit, rule_id)
    return Response(status_code=204)
