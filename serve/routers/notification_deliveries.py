"""The notifications sent (or being sent) for an alert: one delivery per alert event and channel, with its status,
attempts, last error, the provider's response code and the latency. `serve.notifications` reads them."""

from typing import Annotated, Any

from fastapi import APIRouter, Path

from schema.api import Envelope, ErrorEnvelope
from schema.notifications import DeliveryPublic
from serve import notifications as service
from serve.auth import Principal
from serve.deps import ServicesDep, require
from serve.listing import list_params, page_envelope, sparse_list
from store.listing import ListQuery
from store.notifications import DELIVERIES

router = APIRouter(prefix="/v1/alerts", tags=["notifications"])
Reader = Annotated[Principal, require("alerts:read")]
AlertId = Annotated[int, Path(ge=1, le=2**62)]
# The list page, parametrised at module level (see serve.listing.sparse_list).
DELIVERY_PAGE = Envelope.__class_getitem__(sparse_list(DeliveryPublic))


@router.get("/{alert_id}/notifications", response_model=DELIVERY_PAGE,
            response_model_exclude_unset=True, responses={404: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}})
async def list_alert_notifications(alert_id: AlertId, services: ServicesDep, principal: Reader,
                                   q: Annotated[ListQuery, list_params(DELIVERIES)]) -> dict[str, Any]:
    """Oldest first; `?status=failed` for those that gave up."""
    rows, total = await service.list_alert_deliveries(services, principal.tenant_id, alert_id, q)
    return page_envelope(rows, total, q)
