"""Per-user notification preferences, on-call schedules and escalation chains: the services.

Preferences are the caller's own (an admin may read anyone's). Schedules and chains are the tenant's, managed by
those who manage notifications; each is checked whole before it is stored: its shape by `schema.oncall`, its
meaning by `notify.oncall` (rotations in order, overrides that do not overlap) and here (every user, schedule and
channel it names is the tenant's and live). A refusal names the field. The notifier reads them when it resolves
who hears of an alert (`actors.notifier`).
"""

import uuid
from datetime import UTC, datetime, time
from typing import Any

import asyncpg

from notify.oncall import ScheduleError
from notify.preferences import DEFAULT_CHANNELS
from schema.errors import Conflict, InvalidInput, NotFound
from schema.oncall import ChainCreate, ChainUpdate, PreferencesBody, ScheduleCreate, ScheduleUpdate
from serve.auth import Principal
from serve.errors import ApiError
from serve.listing import tenant_page
from serve.services import Services
from serve.uow import tenant_work
from store import notification_policies as policy_store
from store import oncall as store
from store.audit import AuditContext
from store.listing import ListQuery

__all__ = [
    "create_chain", "create_schedule", "delete_chain", "delete_schedule", "get_chain", "get_preferences",
    "get_schedule", "list_chains", "list_schedules", "on_call", "put_preferences", "update_chain",
    "update_schedule",
]


# ------------------------------------------------------------------------------------------- preferences


async def get_preferences(services: Services, principal: Principal, user_id: uuid.UUID | None = None,
                          ) -> dict[str, Any]:
    """The caller's preferences (or, ``user_id``, another user's: the route lets only admins ask), defaults
    filled in; `NotFound` for a user the tenant does not have."""
    target = user_id or _user_id(principal)
    async with services.tenant_tx(principal.tenant_id) as conn:
        if not await store.live_users(conn, principal.tenant_id, [target]):
            raise NotFound(f"user {target} not found")
        row = await store.get_preferences(conn, principal.tenant_id, target)
        zone = await store.tenant_zone(conn, principal.tenant_id)
    return _public(target, row, zone)


async def put_preferences(services: Services, principal: Principal, audit: AuditContext, body: PreferencesBody,
                          ) -> dict[str, Any]:
    """Replace the caller's preferences as a whole."""
    user_id = _user_id(principal)
    quiet = body.quiet_hours
    async with tenant_work(services, principal.tenant_id, audit) as uow:
        old = await store.get_preferences(uow.conn, principal.tenant_id, user_id)
        row = await store.put_preferences(
            uow.conn, principal.tenant_id, user_id, channels={k: list(v) for k, v in body.channels.items()},
            quiet_start=time.fromisoformat(quiet.start) if quiet else None,
            quiet_end=time.fromisoformat(quiet.end) if quiet else None, phone=body.phone)
        await uow.record(action="update" if old else "create", entity_type="notification_preferences",
                         entity_id=str(user_id), old=old, new=row)
        zone = await store.tenant_zone(uow.conn, principal.tenant_id)
    return _public(user_id, row, zone)


def _public(user_id: uuid.UUID, row: asyncpg.Record | None, zone: str) -> dict[str, Any]:
    prefs = store.preferences_of(row)
    quiet = None
    if prefs.quiet_start is not None and prefs.quiet_end is not None:
        quiet = {"start": prefs.quiet_start.strftime("%H:%M"), "end": prefs.quiet_end.strftime("%H:%M")}
    return {"user_id": user_id, "channels": {s: list(prefs.channels_for(s)) for s in DEFAULT_CHANNELS},
            "quiet_hours": quiet, "phone": prefs.phone, "timezone": zone,
            "updated_at": row["updated_at"] if row else None}


def _user_id(principal: Principal) -> uuid.UUID:
    if principal.mfa_setup_only:
        raise ApiError(403, "multi-factor sign-in must be set up first (POST /v1/auth/mfa/setup)",
                       code="MFA_SETUP_REQUIRED")
    return uuid.UUID(principal.subject)


# ------------------------------------------------------------------------------------------- schedules


async def list_schedules(services: Services, tenant_id: str, q: ListQuery) -> tuple[list[dict[str, Any]], int]:
    rows, total = await tenant_page(services, tenant_id, store.SCHEDULES, q)
    async with services.tenant_tx(tenant_id) as conn:
        zone = await store.tenant_zone(conn, tenant_id)
    return [{**r, "timezone": zone} for r in rows], total


async def get_schedule(services: Services, tenant_id: str, schedule_id: uuid.UUID) -> dict[str, Any]:
    async with services.tenant_tx(tenant_id) as conn:
        row = await store.get_schedule(conn, tenant_id, schedule_id)
        zone = await store.tenant_zone(conn, tenant_id)
    if row is None:
        raise NotFound(f"on-call schedule {schedule_id} not found")
    return {**row, "timezone": zone}


async def create_schedule(services: Services, principal: Principal, audit: AuditContext, body: ScheduleCreate,
                          ) -> dict[str, Any]:
    document = body.model_dump(mode="json")
    async with tenant_work(services, principal.tenant_id, audit) as uow:
        zone = await _check_schedule(uow.conn, principal.tenant_id, document["rotations"], document["overrides"])
        try:
            row = await store.insert_schedule(uow.conn, principal.tenant_id, name=body.name,
                                              rotations=document["rotations"], overrides=document["overrides"],
                                              created_by=principal.actor)
        except asyncpg.UniqueViolationError:
            raise _taken("on-call schedule", body.name) from None
        await uow.record(action="create", entity_type="oncall_schedule", entity_id=str(row["id"]), new=row)
    return {**row, "timezone": zone}


async def update_schedule(services: Services, principal: Principal, audit: AuditContext, schedule_id: uuid.UUID,
                          body: ScheduleUpdate) -> dict[str, Any]:
    given = body.model_dump(mode="json", include=body.model_fields_set)
    async with tenant_work(services, principal.tenant_id, audit) as uow:
        old = await store.get_schedule(uow.conn, principal.tenant_id, schedule_id)
        if old is None:
            raise NotFound(f"on-call schedule {schedule_id} not found")
        rotations = given.get("rotations") or old["rotations"]
        overrides = given["overrides"] if given.get("overrides") is not None else old["overrides"]
        name = body.name or old["name"]
        zone = await _check_schedule(uow.conn, principal.tenant_id, rotations, overrides)
        try:
            row = await store.update_schedule(uow.conn, principal.tenant_id, schedule_id, name=name,
                                              rotations=rotations, overrides=overrides)
        except asyncpg.UniqueViolationError:
            raise _taken("on-call schedule", name) from None
        await uow.record(action="update", entity_type="oncall_schedule", entity_id=str(schedule_id), old=old,
                         new=row)
    return {**row, "timezone": zone}


async def delete_schedule(services: Services, principal: Principal, audit: AuditContext,
                          schedule_id: uuid.UUID) -> None:
    """Soft delete; 409 while an escalation chain's step targets it."""
    async with tenant_work(services, principal.tenant_id, audit) as uow:
        naming = await store.chains_naming_schedule(uow.conn, principal.tenant_id, schedule_id)
        if naming:
            raise Conflict(f"escalation chains page this schedule: {', '.join(sorted(naming))}")
        if not await store.delete_schedule(uow.conn, principal.tenant_id, schedule_id):
            raise NotFound(f"on-call schedule {schedule_id} not found")
        await uow.record(action="delete", entity_type="oncall_schedule", entity_id=str(schedule_id))


async def on_call(services: Services, tenant_id: str, schedule_id: uuid.UUID, at: datetime | None,
                  ) -> dict[str, Any]:
    """Who is on call at ``at`` (now when None); an instant without an offset is refused naming ``at``."""
    if at is not None and (at.tzinfo is None or not 2000 <= at.year <= 2200):
        raise InvalidInput.on("at", "an instant with its UTC offset (2026-01-05T08:00:00Z), years 2000 to 2200")
    at = at or datetime.now(UTC)
    row = await get_schedule(services, tenant_id, schedule_id)
    answer = store.schedule_of(row["rotations"], row["overrides"], row["timezone"]).on_call(at)
    return {"schedule_id": schedule_id, "at": at, "user_id": uuid.UUID(answer.user) if answer.user else None,
            "source": answer.source, "rotation": answer.rotation, "until": answer.until}


async def _check_schedule(conn: asyncpg.Connection, tenant_id: str, rotations: list[dict[str, Any]],
                          overrides: list[dict[str, Any]]) -> str:
    """The tenant's zone, once the schedule is known usable; `InvalidInput` naming the field otherwise."""
    zone = await store.tenant_zone(conn, tenant_id)
    try:
        store.schedule_of(rotations, overrides, zone)
    except ScheduleError as exc:
        raise InvalidInput.on(exc.field, exc.message) from None
    named = [(f"rotations[{i}].members[{j}]", uuid.UUID(str(m))) for i, r in enumerate(rotations)
             for j, m in enumerate(r["members"])]
    named += [(f"overrides[{i}].user", uuid.UUID(str(o["user"]))) for i, o in enumerate(overrides)]
    live = await store.live_users(conn, tenant_id, [u for _, u in named])
    for field, user in named:
        if user not in live:
            raise InvalidInput.on(field, f"no user {user} in this tenant")
    return zone


# ------------------------------------------------------------------------------------------- chains


async def list_chains(services: Services, tenant_id: str, q: ListQuery) -> tuple[list[dict[str, Any]], int]:
    return await tenant_page(services, tenant_id, store.CHAINS, q)


async def get_chain(services: Services, tenant_id: str, chain_id: uuid.UUID) -> asyncpg.Record:
    async with services.tenant_tx(tenant_id) as conn:
        row = await store.get_chain(conn, tenant_id, chain_id)
    if row is None:
        raise NotFound(f"escalation chain {chain_id} not found")
    return row


async def create_chain(services: Services, principal: Principal, audit: AuditContext, body: ChainCreate,
                       ) -> asyncpg.Record:
    steps = body.model_dump(mode="json")["steps"]
    async with tenant_work(services, principal.tenant_id, audit) as uow:
        await _check_steps(uow.conn, principal.tenant_id, steps)
        try:
            row = await store.insert_chain(uow.conn, principal.tenant_id, name=body.name, steps=steps,
                                           repeat=body.repeat, created_by=principal.actor)
        except asyncpg.UniqueViolationError:
            raise _taken("escalation chain", body.name) from None
        await uow.record(action="create", entity_type="escalation_chain", entity_id=str(row["id"]), new=row)
    return row


async def update_chain(services: Services, principal: Principal, audit: AuditContext, chain_id: uuid.UUID,
                       body: ChainUpdate) -> asyncpg.Record:
    """Partial update; escalations already running take the new steps from their next step on."""
    given = body.model_dump(mode="json", include=body.model_fields_set)
    async with tenant_work(services, principal.tenant_id, audit) as uow:
        old = await store.get_chain(uow.conn, principal.tenant_id, chain_id)
        if old is None:
            raise NotFound(f"escalation chain {chain_id} not found")
        steps = given.get("steps") or old["steps"]
        await _check_steps(uow.conn, principal.tenant_id, steps)
        name = body.name or old["name"]
        try:
            row = await store.update_chain(uow.conn, principal.tenant_id, chain_id, name=name, steps=steps,
                                           repeat=old["repeat"] if body.repeat is None else body.repeat)
        except asyncpg.UniqueViolationError:
            raise _taken("escalation chain", name) from None
        await uow.record(action="update", entity_type="escalation_chain", entity_id=str(chain_id), old=old, new=row)
    return row


async def delete_chain(services: Services, principal: Principal, audit: AuditContext, chain_id: uuid.UUID) -> None:
    """Soft delete; a policy route naming it must be changed first (409), escalations running it stop."""
    async with tenant_work(services, principal.tenant_id, audit) as uow:
        policy = await policy_store.get_policy(uow.conn, principal.tenant_id)
        if policy is not None and any(r.get("escalation_chain") == str(chain_id)
                                      for r in policy["document"].get("routes", [])):
            raise Conflict(f"the notification policy routes alerts to escalation chain {chain_id}")
        if not await store.delete_chain(uow.conn, principal.tenant_id, chain_id):
            raise NotFound(f"escalation chain {chain_id} not found")
        await uow.record(action="delete", entity_type="escalation_chain", entity_id=str(chain_id))


async def _check_steps(conn: asyncpg.Connection, tenant_id: str, steps: list[dict[str, Any]]) -> None:
    users = [(f"steps[{i}].targets.users[{j}]", uuid.UUID(u)) for i, s in enumerate(steps)
             for j, u in enumerate(s["targets"]["users"])]
    live_users = await store.live_users(conn, tenant_id, [u for _, u in users])
    schedules = [(f"steps[{i}].targets.schedules[{j}]", uuid.UUID(u)) for i, s in enumerate(steps)
                 for j, u in enumerate(s["targets"]["schedules"])]
    live_schedules = await store.live_schedule_ids(conn, tenant_id, [u for _, u in schedules])
    channels = await policy_store.live_channel_ids(conn, tenant_id)
    for field, user in users:
        if user not in live_users:
            raise InvalidInput.on(field, f"no user {user} in this tenant")
    for field, schedule in schedules:
        if schedule not in live_schedules:
            raise InvalidInput.on(field, f"no on-call schedule {schedule}")
    for i, step in enumerate(steps):
        targets = step["targets"]
        for j, channel in enumerate(targets["channels"]):
            if channel not in channels:
                raise InvalidInput.on(f"steps[{i}].targets.channels[{j}]", f"no notification channel {channel}")
        if not (targets["users"] or targets["schedules"] or targets["channels"]):
            raise InvalidInput.on(f"steps[{i}].targets", "a step needs at least one user, schedule or channel")


def _taken(what: str, name: str) -> Conflict:
    return Conflict(f"an {what} named {name!r} exists" if what[0] in "aeiou" else f"a {what} named {name!r} exists")
