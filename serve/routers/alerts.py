"""Alerts: list, read (with their events), acknowledge and resolve (with a verdict), shelve and unshelve, the
alarm KPIs; and the live WebSocket feed."""

import asyncio
import contextlib
import json
import logging
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from schema.alerts import (
    AcknowledgeBody,
    AlertDetail,
    AlertEvent,
    AlertKpis,
    ResolveRequest,
    ShelveRequest,
)
from schema.api import AlertPublic, Envelope, ErrorEnvelope
from schema.ids import InvalidIdentifier, check_equipment_id
from schema.in_app_notifications import InAppPush
from schema.severity import SEVERITIES, SEVERITY_RANK, Severity
from serve import alerts as service
from serve.auth import Principal, PrincipalKind
from serve.deps import (
    ACCESS_COOKIE,
    Audit,
    ServicesDep,
    authenticate,
    bearer_token,
    get_services,
    require,
    same_origin,
)
from serve.errors import ApiError
from serve.hub import TooManySockets
from serve.listing import list_params, page_envelope, sparse_list
from serve.ratelimit import enforce_rate_limit
from store import alerts as store
from store.listing import ListQuery

MAX_KPI_DAYS = 92

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])
log = logging.getLogger(__name__)
AlertId = Annotated[int, Path(ge=1, le=2**62)]
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorEnvelope}, 409: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}}
WS_POLICY_VIOLATION = 1008
WS_TRY_AGAIN_LATER = 1013
SEND_TIMEOUT = 10.0
_WELL_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
# List pages, parametrised at module level (see serve.listing.sparse_list).
ALERT_PAGE = Envelope.__class_getitem__(sparse_list(AlertPublic))


@router.get("", response_model=ALERT_PAGE, response_model_exclude_unset=True,
            responses=ERRORS)
async def list_alerts(
    services: ServicesDep,
    principal: Annotated[Principal, require("alerts:read")],
    q: Annotated[ListQuery, list_params(store.ALERTS, reserved={"min_severity", "well_id"})],
    min_severity: Annotated[Severity, Query(description="Only alerts at least this severe.")] = "info",
    well_id: Annotated[str | None, Query(max_length=2000, description=(
        "Alerts of the equipment serving this well (`W-1`), or one of these wells (`in:W-1,W-2`)."))] = None,
) -> dict[str, Any]:
    """Newest first by default. Filter e.g. `?state=in:open,acknowledged&opened_at=gte:2026-11-01`."""
    well_ids = _well_ids(well_id) if well_id is not None else None
    rows, total = await service.list_alerts(services, principal.tenant_id, q, min_severity=min_severity,
                                            well_ids=well_ids)
    return page_envelope(rows, total, q)


@router.get("/kpis", response_model=Envelope[AlertKpis], response_model_by_alias=True, responses=ERRORS)
async def kpis(
    services: ServicesDep,
    principal: Annotated[Principal, require("alerts:read")],
    start: Annotated[datetime | None, Query(alias="from", description="RFC 3339 with a zone; default: 24 h "
                                             "before `to`.")] = None,
    end: Annotated[datetime | None, Query(alias="to", description="RFC 3339 with a zone; default now.")] = None,
) -> dict[str, Any]:
    """Alarm health (ISA-18.2) over [from, to), for the tenant and per equipment type: alerts per 10 minutes
    (mean, max, share of periods in flood: > 10), chattering keys (≥ 3 openings within 1 minute), stale alerts
    (open > 24 h), the top 10 bad actors, mean and p90 time to acknowledge and to resolve, and precision
    from operators' verdicts per rule and per equipment type. At most 92 days."""
    start, end = _kpi_span(start, end)
    data = await service.kpis(services, principal.tenant_id, start, end)
    return {"data": AlertKpis.model_validate(data).model_dump(mode="json", by_alias=True)}


def _kpi_span(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.tzinfo is None:
            raise ApiError(422, f"{name} needs a time zone",
                           details=[{"field": name, "message": "RFC 3339 with a zone"}])
    end = end or datetime.now(UTC)
    start = start or end - timedelta(hours=24)
    if start >= end:
        raise ApiError(422, "from must be before to", details=[{"field": "from", "message": "must be before to"}])
    if end - start > timedelta(days=MAX_KPI_DAYS):
        raise ApiError(422, f"at most {MAX_KPI_DAYS} days",
                       details=[{"field": "from", "message": f"at most {MAX_KPI_DAYS} days before to"}])
    return start, end


@router.get("/{alert_id}", response_model=Envelope[AlertDetail], responses=ERRORS)
async def get_alert(
    services: ServicesDep,
    principal: Annotated[Principal, require("alerts:read")],
    alert_id: AlertId,
) -> Envelope[AlertDetail]:
    """The alert and every change it went through (opened, updated, escalated, acknowledged, resolved)."""
    row, events = await service.get_alert(services, principal.tenant_id, alert_id)
    return Envelope(data=AlertDetail(**dict(row), events=[AlertEvent(**dict(e)) for e in events]))


@router.post("/{alert_id}/acknowledge", response_model=Envelope[AlertPublic], responses=ERRORS)
async def acknowledge(
    services: ServicesDep,
    principal: Annotated[Principal, require("alerts:acknowledge", essential=True)],
    alert_id: AlertId,
    audit: Audit,
    body: AcknowledgeBody | None = None,
) -> Envelope[AlertPublic]:
    """Acknowledge an open alert, with an optional comment and verdict. A latched alert whose condition
    cleared resolves. Acknowledging again changes nothing (a verdict not given before is recorded). A
    resolved, shelved or suppressed alert: 409."""
    comment, verdict = (body.comment, body.verdict) if body else (None, None)
    alert = await service.acknowledge(services, principal, audit, alert_id, comment=comment, verdict=verdict)
    return Envelope(data=AlertPublic(**dict(alert)))


@router.post("/{alert_id}/resolve", response_model=Envelope[AlertPublic], responses=ERRORS)
async def resolve(
    services: ServicesDep,
    principal: Annotated[Principal, require("alerts:acknowledge", essential=True)],
    alert_id: AlertId,
    audit: Audit,
    body: ResolveRequest | None = None,
) -> Envelope[AlertPublic]:
    """Close an open or acknowledged alert by hand, with an optional comment. Resolving a resolved alert
    changes nothing and answers the same. A new alert opens once the condition clears and comes back (or
    its rule reports a new severity)."""
    comment, verdict = (body.comment, body.verdict) if body else (None, None)
    alert = await service.resolve(services, principal, audit, alert_id, comment=comment, verdict=verdict)
    return Envelope(data=AlertPublic(**dict(alert)))


@router.post("/{alert_id}/shelve", response_model=Envelope[AlertPublic], responses=ERRORS)
async def shelve(
    services: ServicesDep,
    principal: Annotated[Principal, require("alerts:silence")],
    alert_id: AlertId,
    audit: Audit,
    body: ShelveRequest,
) -> Envelope[AlertPublic]:
    """Put an open or acknowledged alert aside for `minutes` (at most the tenant's `max_shelve_minutes`, default
    8 h) with a reason. It returns open and unacknowledged when the time ends, or earlier when its condition
    clears and comes back. Shelving a shelved alert sets a new end. A resolved or suppressed alert: 409."""
    alert = await service.shelve(services, principal, audit, alert_id, minutes=body.minutes, reason=body.reason)
    return Envelope(data=AlertPublic(**dict(alert)))


@router.post("/{alert_id}/unshelve", response_model=Envelope[AlertPublic], responses=ERRORS)
async def unshelve(
    services: ServicesDep,
    principal: Annotated[Principal, require("alerts:silence")],
    alert_id: AlertId,
    audit: Audit,
) -> Envelope[AlertPublic]:
    """Return a shelved alert now: open and unacknowledged (resolved if its condition cleared meanwhile)."""
    alert = await service.unshelve(services, principal, audit, alert_id)
    return Envelope(data=AlertPublic(**dict(alert)))


def _well_ids(raw: str) -> list[str]:
    text = raw.strip()
    for prefix in ("eq:", "in:"):
        text = text.removeprefix(prefix)
    ids = [w.strip() for w in text.split(",")]
    if not ids or len(ids) > 100 or not all(_WELL_ID.match(w) for w in ids):
        raise ApiError(422, "invalid well_id filter", details=[{
            "field": "well_id", "message": "a well id, or in: and up to 100 comma-separated well ids"}])
    return ids


def _ws_filters(equipment: str | None, min_severity: str) -> tuple[frozenset[str] | None, int]:
    ids = frozenset(check_equipment_id(e.strip()) for e in equipment.split(",") if e.strip()) if equipment else None
    if min_severity not in SEVERITY_RANK:
        raise ValueError(f"min_severity must be one of {', '.join(SEVERITIES)}")
    return ids, SEVERITY_RANK[min_severity]


@router.websocket("/ws")
async def alerts_ws(
    websocket: WebSocket,
    token: str | None = None,
    since: Annotated[int | None, Query(ge=0)] = None,
    equipment: str | None = None,
    min_severity: str = "info",
    notifications: bool = False,
) -> None:
    """Alert events of the caller's tenant: first those after ``since``, then live ones; ``notifications=true``:
    the caller's in-app notifications too, as made, ``{"type": "notification", "data": {...}}`` (events: no type).

    Auth: ``Authorization: Bearer``, ``?token=`` (browsers cannot set headers) or the web-session cookie (then
    only from this origin: another site's page cannot open a socket on the operator's session).
    A client too slow to keep up is closed with 1013; it reconnects with ``since``.
    """
    try:
        services = await get_services(websocket)
        credential = bearer_token(websocket.headers.get("authorization")) or token
        if not credential and (credential := websocket.cookies.get(ACCESS_COOKIE)) and not same_origin(websocket):
            raise ApiError(403, "a cookie-authenticated socket must come from this origin")
        principal = await _socket_principal(services, credential)
        equipment_ids, severity_rank = _ws_filters(equipment, min_severity)
        await enforce_rate_limit(websocket, services, principal)  # a connect is a request
        client, replay_until = await services.hub.register(
            principal.tenant_id, equipment=equipment_ids, min_severity=severity_rank, principal=principal.subject,
            notifications=notifications and principal.kind is PrincipalKind.USER)
    except (ApiError, InvalidIdentifier, ValueError, TooManySockets) as exc:
        reason = getattr(exc, "message", str(exc))[:120]
        log.info("alert WebSocket refused: %s", reason)  # never the token itself
        await websocket.close(code=WS_POLICY_VIOLATION, reason=reason)
        return
    hub = services.hub
    try:
        await websocket.accept()
    except Exception:
        await hub.unregister(client)
        raise
    receiver = asyncio.create_task(_drain_incoming(websocket))
    recheck: asyncio.Task[Any] | None = None
    last_seq = since or 0
    try:
        if since is not None:
            last_seq = await _replay(websocket, services, client, since, replay_until)
        while True:
            # One task per event (the getter): the receiver and the recheck wait across events, and what is
            # already queued is sent without waiting at all.
            if client.queue.empty():
                if recheck is None:
                    recheck = asyncio.create_task(client.recheck.wait())
                getter = asyncio.create_task(client.queue.get())
                done, _ = await asyncio.wait({getter, receiver, recheck}, return_when=asyncio.FIRST_COMPLETED,
                                             timeout=_until_recheck(principal, services.settings.auth_cache_seconds))
                if receiver in done:
                    getter.cancel()
                    return
                if getter not in done:
                    getter.cancel()
                    if recheck in done:
                        recheck = None
                    client.recheck.clear()
                    if await _refused(websocket, services, credential):
                        return
                    continue
                event = getter.result()
            else:
                event = client.queue.get_nowait()
            last_seq = await _send_queued(websocket, event, last_seq)
            if client.overflowed:
                await _close_too_slow(websocket, last_seq)
                return
    except (WebSocketDisconnect, TimeoutError):
        return
    finally:
        receiver.cancel()
        if recheck is not None:
            recheck.cancel()
        await hub.unregister(client)
        if websocket.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close()


async def _refused(websocket: WebSocket, services: Any, credential: str | None) -> bool:
    """Check the socket's credential again; when it no longer reads alerts (logged out, revoked, deactivated,
    demoted or expired) close the socket too and answer True."""
    refusal = await _still_allowed(services, credential)
    if refusal is None:
        return False
    async with asyncio.timeout(SEND_TIMEOUT):
        await websocket.close(code=WS_POLICY_VIOLATION, reason=refusal)
    return True


async def _close_too_slow(websocket: WebSocket, last_seq: int) -> None:
    """Whatever is still queued is replayed when the client comes back with since."""
    async with asyncio.timeout(SEND_TIMEOUT):
        await websocket.close(code=WS_TRY_AGAIN_LATER, reason=f"client too slow; reconnect with since={last_seq}")


async def _send_queued(websocket: WebSocket, item: AlertEvent | InAppPush, last_seq: int) -> int:
    """Send one queued item; returns the seq of the last alert event sent (an event the replay sent already is
    skipped; an in-app notification has no seq)."""
    if isinstance(item, AlertEvent) and item.seq <= last_seq:
        return last_seq
    async with asyncio.timeout(SEND_TIMEOUT):
        await websocket.send_text(item.as_json() if isinstance(item, AlertEvent) else item.model_dump_json())
    return item.seq if isinstance(item, AlertEvent) else last_seq


async def _socket_principal(services: Any, credential: str | None) -> Principal:
    principal = await authenticate(services, credential)
    if not principal.can("alerts:read"):
        raise ApiError(403, "lacks permission alerts:read")
    return principal


async def _still_allowed(services: Any, credential: str | None) -> str | None:
    """None while the socket's credential still reads alerts; else why it no longer does."""
    try:
        await _socket_principal(services, credential)
    except ApiError as exc:
        return exc.message[:120]
    return None


def _until_recheck(principal: Principal, every: float) -> float:
    """Seconds until the credential must be checked again: its expiry, or the cache period at most."""
    every = max(every, 1.0)
    if principal.expires_at is None:
        return every
    return max(0.0, min(every, principal.expires_at - time.time() + 0.5))


async def _replay(websocket: WebSocket, services: Any, client: Any, since: int, replay_until: int) -> int:
    """Send what the client missed after ``since``, at most ``ws_replay_max_events`` of it; the new cursor.

    A longer gap is cut to its newest events, and the first frame says so (the rest is in ``/v1/alerts``).
    """
    tenant_id, limit = client.tenant_id, services.settings.ws_replay_max_events
    floor = await service.replay_floor(services, tenant_id, since, replay_until, limit)
    last_seq = since
    if floor is not None:
        last_seq = floor
        await websocket.send_text(json.dumps({"type": "replay_truncated", "since": since, "resumed_after": floor,
                                              "limit": limit, "hint": "older events: GET /v1/alerts"}))
    while last_seq < replay_until:
        rows = await service.events_after(services, tenant_id, last_seq, 500)
        rows = [r for r in rows if r["seq"] <= replay_until]
        if not rows:
            break
        for row in rows:
            event = AlertEvent(**dict(row))
            last_seq = event.seq
            if client.wants(event):
                await websocket.send_text(event.model_dump_json())
    return last_seq


async def _drain_incoming(websocket: WebSocket) -> None:
    """Reads until the client leaves: a handler that only sends never notices (DESIGN.md 9)."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await websocket.receive_text()
