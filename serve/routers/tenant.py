"""The caller's tenant: name, time zone, units, MFA policy."""

from typing import Annotated

from fastapi import APIRouter

from schema.api import Envelope, ErrorEnvelope
from schema.identity import TenantSettings, TenantSettingsUpdate
from serve import identity
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require

router = APIRouter(prefix="/v1/tenant", tags=["tenant"])


@router.get("/settings", response_model=Envelope[TenantSettings], responses={403: {"model": ErrorEnvelope}})
async def get_settings(services: ServicesDep, principal: Annotated[Principal, require("tenant:read")],
                       ) -> Envelope[TenantSettings]:
    return Envelope(data=await identity.get_tenant_settings(services, principal.tenant_id))


@router.patch("/settings", response_model=Envelope[TenantSettings],
              responses={403: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}})
async def update_settings(body: TenantSettingsUpdate, services: ServicesDep,
                          principal: Annotated[Principal, require("tenant:write")], audit: Audit,
                          ) -> Envelope[TenantSettings]:
    """Partial update. Turning on `mfa_required_for_admins` makes admins without MFA enrol at their next sign-in."""
    return Envelope(data=await identity.update_tenant_settings(services, audit, body))
