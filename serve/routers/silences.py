"""Silences: no alert opens (or pages anyone) for an equipment, a rule, or a rule on one equipment, for a
while. A condition that holds when the silence ends opens its alert then (see `store.alerts.persist_changes`).

Equipment in maintenance is silenced the same way, without a silence row (``wellpulse_silenced``).
"""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter

from schema.alerts import MAX_SILENCE_DAYS, Silence, SilenceCreate
from schema.api import Envelope, ErrorEnvelope
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require
from serve.errors import ApiError
from serve.listing import list_params, page_envelope, sparse
from store import alerts as store
from store import assets as asset_store
from store import audit as audit_log
from store.listing import ListQuery, fetch_page

router = APIRouter(prefix="/v1/silences", tags=["silences"])
ERRORS = {404: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}}
Reader = Annotated[Principal, require("alerts:read")]
Silencer = Annotated[Principal, require("alerts:silence")]


@router.get("", response_model=Envelope[list[sparse(Silence)]], response_model_exclude_unset=True,
            responses=ERRORS)
async def list_silences(services: ServicesDep, principal: Reader,
                        q: Annotated[ListQuery, list_params(store.SILENCES)]) -> dict[str, Any]:
    """Newest first; `?state=active` for those in force now."""
    async with services.tenant_tx(principal.tenant_id) as conn:
        rows, total = await fetch_page(conn, store.SILENCES, q, principal.tenant_id)
    return page_envelope(rows, total, q)


@router.post("", status_code=201, response_model=Envelope[Silence], responses=ERRORS)
async def create_silence(body: SilenceCreate, services: ServicesDep, principal: Silencer, audit: Audit,
                         ) -> Envelope[Silence]:
    """Takes effect within seconds in the running actors."""
    now = datetime.now(UTC)
    starts_at = body.starts_at or now
    _check_window(starts_at, body.ends_at, now)
    if body.equipment_id is None and body.rule_id is None:
        raise ApiError(422, "a silence needs equipment_id, rule_id or both",
                       details=[{"field": "equipment_id", "message": "give equipment_id and/or rule_id"}])
    async with services.tenant_tx(principal.tenant_id) as conn:
        if body.equipment_id is not None and not await asset_store.equipment_exists(conn, principal.tenant_id,
                                                                           body.equipment_id):
            raise ApiError(422, f"unknown equipment {body.equipment_id}",
                           details=[{"field": "equipment_id", "message": "no such equipment in this tenant"}])
        row = await store.insert_silence(conn, principal.tenant_id, equipment_id=body.equipment_id,
                                         rule_id=body.rule_id, starts_at=starts_at, ends_at=body.ends_at,
                                         reason=body.reason, created_by=principal.actor)
        await audit_log.record(conn, audit, action="create", entity_type="silence", entity_id=str(row["id"]),
                               new=row)
    await services.notify_actors(principal.tenant_id, "silences")
    return Envelope(data=Silence(**row))


@router.get("/{silence_id}", response_model=Envelope[Silence], responses=ERRORS)
async def get_silence(silence_id: UUID, services: ServicesDep, principal: Reader) -> Envelope[Silence]:
    async with services.tenant_tx(principal.tenant_id) as conn:
        row = await store.get_silence(conn, principal.tenant_id, silence_id)
    if row is None:
        raise ApiError(404, f"silence {silence_id} not found")
    return Envelope(data=Silence(**row))


@router.delete("/{silence_id}", response_model=Envelope[Silence], responses=ERRORS)
async def end_silence(silence_id: UUID, services: ServicesDep, principal: Silencer, audit: Audit,
                      ) -> Envelope[Silence]:
    """End the silence now (the row stays, `cancelled_at`/`cancelled_by` set). Alerts it held back whose
    condition still holds open within seconds. A silence already over is answered as it is."""
    async with services.tenant_tx(principal.tenant_id) as conn:
        row = await store.cancel_silence(conn, principal.tenant_id, silence_id, actor=principal.actor)
        if row is not None:
            await audit_log.record(conn, audit, action="cancel", entity_type="silence", entity_id=str(silence_id),
                                   new={"cancelled_at": row["cancelled_at"], "cancelled_by": row["cancelled_by"]})
        else:
            row = await store.get_silence(conn, principal.tenant_id, silence_id)
            if row is None:
                raise ApiError(404, f"silence {silence_id} not found")
            return Envelope(data=Silence(**row))
    await services.notify_actors(principal.tenant_id, "silences")
    return Envelope(data=Silence(**row))


def _check_window(starts_at: datetime, ends_at: datetime, now: datetime) -> None:
    for name, value in (("starts_at", starts_at), ("ends_at", ends_at)):
        if value.tzinfo is None:
            raise ApiError(422, f"{name} needs a time zone", details=[{"field": name, "message": "naive timestamp"}])
    problems = []
    if ends_at <= now:
        problems.append("must be in the future")
    if ends_at <= starts_at:
        problems.append("must be after starts_at")
    if ends_at - starts_at > timedelta(days=MAX_SILENCE_DAYS):
        problems.append(f"at most {MAX_SILENCE_DAYS} days after starts_at")
    if problems:
        raise ApiError(422, "invalid silence window",
                       details=[{"field": "ends_at", "message": p} for p in problems])
