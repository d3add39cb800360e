"""The caller's in-app notifications: list (newest first, `meta.unread`), mark read, delete. Any signed-in user,
for their own; `serve.in_app_notifications` reads and writes them, the notifier (`actors.notifier`) creates them."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Response
from pydantic import create_model

from schema.api import Envelope, ErrorEnvelope
from schema.in_app_notifications import InAppNotification, InboxMeta
from serve import in_app_notifications as service
from serve.deps import CurrentUser, ServicesDep
from serve.listing import list_params, page_envelope, sparse_list
from store.in_app_notifications import IN_APP
from store.listing import ListQuery

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])
ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorEnvelope}, 404: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}}
# The list page with the unread count in meta, built at module level under its own name (see
# serve.listing.sparse_list: Ray Serve pickles the routes' models by reference).
NotificationPage = create_model("NotificationPage", __module__=__name__,
                                data=(sparse_list(InAppNotification), ...), meta=(InboxMeta, ...))


@router.get("", response_model=NotificationPage, response_model_exclude_unset=True, responses=ERRORS)
async def list_notifications(services: ServicesDep, principal: CurrentUser,
                             q: Annotated[ListQuery, list_params(IN_APP)]) -> dict[str, Any]:
    """Newest first; `?read=false` for the unread ones. `meta.unread` counts the unread over all pages."""
    rows, total, unread = await service.list_notifications(services, principal, q)
    page = page_envelope(rows, total, q)
    page["meta"]["unread"] = unread
    return page


@router.patch("/{notification_id}/read", response_model=Envelope[InAppNotification], responses=ERRORS)
async def mark_read(notification_id: UUID, services: ServicesDep, principal: CurrentUser,
                    ) -> Envelope[InAppNotification]:
    """Idempotent: a notification read before keeps its first `read_at`."""
    row = await service.mark_read(services, principal, notification_id)
    return Envelope(data=InAppNotification(**row))


@router.delete("/{notification_id}", status_code=204, responses=ERRORS)
async def delete_notification(notification_id: UUID, services: ServicesDep, principal: CurrentUser) -> Response:
    """Gone from the list (kept as history)."""
    await service.delete_notification(services, principal, notification_id)
    return Response(status_code=204)
