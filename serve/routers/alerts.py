"""Alerts: list, read, acknowledge; and the live WebSocket feed."""

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from schema.alerts import SEVERITY_RANK, AlertEvent
from schema.api import AcknowledgeRequest, AlertPublic, Envelope, ErrorEnvelope, Meta, Pagination
from schema.ids import EquipmentId, InvalidIdentifier, check_equipment_id
from schema.subjects import alerts_subject
from serve.auth import Principal
from serve.deps import ACCESS_COOKIE, Audit, ServicesDep, authenticate, bearer_token, get_services, require
from serve.errors import ApiError
from store import audit as audit_log
from store import db

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])
log = logging.getLogger(__name__)
SeverityName = Literal["info", "warning", "critical"]
WS_POLICY_VIOLATION = 1008
WS_TRY_AGAIN_LATER = 1013
SEND_TIMEOUT = 10.0


@router.get("", response_model=Envelope[list[AlertPublic]], responses={422: {"model": ErrorEnvelope}})
async def list_alerts(
    services: ServicesDep,
    principal: Annotated[Principal, require("alerts:read")],
    state: Annotated[str | None, Query(description="open, acknowledged, resolved; comma list or in:a,b")] = None,
    equipment_id: EquipmentId | None = None,
    min_severity: SeverityName = "info",
    page: Annotated[int, Query(ge=1)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Envelope[list[AlertPublic]]:
    states = None
    if state:
        states = [s.strip() for s in state.removeprefix("in:").split(",") if s.strip()]
        if not set(states) <= {"open", "acknowledged", "resolved"}:
            raise ApiError(422, "invalid state filter",
                           details=[{"field": "state", "message": "use open, acknowledged, resolved"}])
    async with services.tenant_tx(principal.tenant_id) as conn:
        rows, total = await db.list_alerts(conn, principal.tenant_id, states=states, equipment_id=equipment_id,
                                           min_severity_rank=SEVERITY_RANK[min_severity], limit=limit,
                                           offset=(page - 1) * limit)
    return Envelope(data=[AlertPublic(**dict(r)) for r in rows],
                    meta=Meta(pagination=Pagination(page=page, limit=limit, total=total)))


@router.get("/{alert_id}", response_model=Envelope[AlertPublic], responses={404: {"model": ErrorEnvelope}})
async def get_alert(
    services: ServicesDep,
    principal: Annotated[Principal, require("alerts:read")],
    alert_id: Annotated[int, Path(ge=1, le=2**62)],
) -> Envelope[AlertPublic]:
    async with services.tenant_tx(principal.tenant_id) as conn:
        row = await db.get_alert(conn, principal.tenant_id, alert_id)
    if row is None:
        raise ApiError(404, f"alert {alert_id} not found")
    return Envelope(data=AlertPublic(**dict(row)))


@router.post("/{alert_id}/acknowledge", response_model=Envelope[AlertPublic],
             responses={404: {"model": ErrorEnvelope}, 409: {"model": ErrorEnvelope}})
async def acknowledge(
    services: ServicesDep,
    principal: Annotated[Principal, require("alerts:acknowledge")],
    alert_id: Annotated[int, Path(ge=1, le=2**62)],
    audit: Audit,
    body: AcknowledgeRequest | None = None,
) -> Envelope[AlertPublic]:
    comment = body.comment if body else None
    async with services.tenant_tx(principal.tenant_id) as conn:
        alert, event = await db.acknowledge_alert(conn, principal.tenant_id, alert_id, actor=principal.actor,
                                                  comment=comment, now=datetime.now(UTC))
        if event is not None:
            await audit_log.record(conn, audit, action="acknowledge", entity_type="alert", entity_id=str(alert_id),
                                   old={"state": "open"}, new={"state": alert["state"], "comment": comment})
    if alert is None:
        raise ApiError(404, f"alert {alert_id} not found")
    if event is None:
        if alert["state"] == "resolved":
            raise ApiError(409, "alert is already resolved")
        return Envelope(data=AlertPublic(**dict(alert)))  # already acknowledged: same answer, no new event
    ev = AlertEvent(**dict(event))
    await services.js.publish(alerts_subject(principal.tenant_id, ev.equipment_id), ev.model_dump_json().encode(),
                              headers={"Nats-Msg-Id": f"alert-event-{ev.seq}"})
    return Envelope(data=AlertPublic(**dict(alert)))


def _ws_filters(equipment: str | None, min_severity: str) -> tuple[frozenset[str] | None, int]:
    ids = frozenset(check_equipment_id(e.strip()) for e in equipment.split(",") if e.strip()) if equipment else None
    if min_severity not in SEVERITY_RANK:
        raise ValueError("min_severity must be info, warning or critical")
    return ids, SEVERITY_RANK[min_severity]


@router.websocket("/ws")
async def alerts_ws(
    websocket: WebSocket,
    token: str | None = None,
    since: Annotated[int | None, Query(ge=0)] = None,
    equipment: str | None = None,
    min_severity: str = "info",
) -> None:
    """Alert events of the caller's tenant: first those after ``since``, then live ones.

    Auth: ``Authorization: Bearer`` or ``?token=`` (browsers cannot set headers).
    A client too slow to keep up is closed with 1013; it reconnects with ``since``.
    """
    try:
        services = await get_services(websocket)  # type: ignore[arg-type]
        credential = (bearer_token(websocket.headers.get("authorization")) or token
                      or websocket.cookies.get(ACCESS_COOKIE))
        principal = await authenticate(services, credential)
        if not principal.can("alerts:read"):
            raise ApiError(403, "lacks permission alerts:read")
        equipment_ids, severity_rank = _ws_filters(equipment, min_severity)
    except (ApiError, InvalidIdentifier, ValueError) as exc:
        reason = getattr(exc, "message", str(exc))[:120]
        log.info("alert WebSocket refused: %s", reason)  # never the token itself
        await websocket.close(code=WS_POLICY_VIOLATION, reason=reason)
        return
    await websocket.accept()
    hub = services.hub
    client, replay_until = await hub.register(principal.tenant_id, equipment=equipment_ids,
                                              min_severity=severity_rank)
    receiver = asyncio.create_task(_drain_incoming(websocket))
    last_seq = since or 0
    try:
        if since is not None:
            while last_seq < replay_until:
                async with services.tenant_tx(principal.tenant_id) as conn:
                    rows = await db.events_since(conn, principal.tenant_id, last_seq, 500)
                rows = [r for r in rows if r["seq"] <= replay_until]
                if not rows:
                    break
                for row in rows:
                    event = AlertEvent(**dict(row))
                    last_seq = event.seq
                    if client.wants(event):
                        await websocket.send_text(event.model_dump_json())
        while True:
            getter = asyncio.create_task(client.queue.get())
            done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done:
                getter.cancel()
                return
            event = getter.result()
            if event.seq <= last_seq:
                continue  # already sent in the replay
            await asyncio.wait_for(websocket.send_text(event.model_dump_json()), SEND_TIMEOUT)
            last_seq = event.seq
            if client.overflowed:
                # Whatever is still queued is replayed when the client comes back with since.
                await asyncio.wait_for(websocket.close(
                    code=WS_TRY_AGAIN_LATER, reason=f"client too slow; reconnect with since={last_seq}"),
                    SEND_TIMEOUT)
                return
    except (WebSocketDisconnect, TimeoutError):
        return
    finally:
        receiver.cancel()
        await hub.unregister(client)
        if websocket.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close()


async def _drain_incoming(websocket: WebSocket) -> None:
    """Reads until the client leaves: a handler that only sends never notices (DESIGN.md 9)."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await websocket.receive_text()
