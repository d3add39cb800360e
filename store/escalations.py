"""Escalations: an escalation chain run for one alert, step by step, until someone acknowledges it.

`start_escalations` runs in the notifier's planning transaction, with the routing of the alert's ``opened`` event
(`store.notification_policies.plan_routed`): one ``escalations`` row per (alert, chain), its first step due after
the step's ``after_seconds``. `fire_due` runs in a transaction of its own each round: for each escalation due, if
the alert is still open it plans the step's deliveries and moves the row to the next step, in that transaction.

Nothing doubled, nothing dropped: the row's (step, round, next_at) is committed with the deliveries the step
planned, and every delivery carries the idempotency key ``<event seq>:<round>:<step>:<user or "channel">:<medium
or channel id>`` (unique), so a crash before the commit re-fires the step and a crash after finds it done. Steps
are timed from when the step before was due (not from when it ran), so a notifier that was down fires the overdue
steps when it is back. A failed delivery does not hold a step up: steps follow the clock, and the failure is the
alert's ``notification_failed`` event (`store.notifications.mark_failed`).

Who a step reaches: each of its ``users``, and whoever is on call in each of its ``schedules`` (`notify.oncall`;
nobody before a schedule's first rotation starts), through the media of their preferences (`notify.preferences`:
per severity, quiet hours in the tenant's zone): ``email`` to their account's address through the tenant's oldest
enabled email channel, ``sms`` to their number through its oldest enabled SMS channel, ``in_app`` into their
inbox (numbered past the group reminders: `ESCALATION_REMINDER_BASE`); and each of its ``channels`` as
configured. A medium whose channel the tenant lacks is skipped (logged).
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from store import oncall as oncall_store
from store.in_app_notifications import INBOX_COLUMNS

__all__ = ["ESCALATION_REMINDER_BASE", "Fired", "fire_due", "start_escalations"]

log = logging.getLogger(__name__)
# An in-app notification of escalation step k of round r is reminder BASE + r * 100 + k (chains have at most 20
# steps), apart from the route groups' reminders 1, 2, ...
ESCALATION_REMINDER_BASE = 1_000_000
# A shelved or suppressed alert holds its escalation; it is looked at again after this long.
HOLD_SECONDS = 60.0
# Alert states after which an escalation stops for good.
STOPPING_STATES = ("acknowledged", "resolved")


@dataclass(frozen=True)
class Fired:
    """One escalation step that fired: which, and the deliveries and in-app notifications it planned."""

    alert_id: int
    chain_id: uuid.UUID
    step: int
    round: int
    deliveries: int
    in_app: list[asyncpg.Record]  # the in-app notifications planned (`store.in_app_notifications.INBOX_COLUMNS`)


async def start_escalations(conn: asyncpg.Connection, tenant_id: str, starts: list[tuple[int, int, str, str]], *,
                            now: datetime) -> int:
    """Open an escalation per (alert id, opened event seq, route, chain id) whose chain is live; one already
    open for the alert and chain stays as it is. Returns how many were opened."""
    if not starts:
        return 0
    opened = 0
    for alert_id, event_seq, route, chain_id in starts:
        opened += int(await conn.fetchval(
            """WITH s AS (
                   INSERT INTO escalations (tenant_id, alert_id, chain_id, event_seq, route, started_at, next_at)
                   SELECT $1, $2, c.id, $3, $4, $6::timestamptz,
                          $6::timestamptz
                          + make_interval(secs => coalesce((c.steps -> 0 ->> 'after_seconds')::float8, 0))
                   FROM escalation_chains c WHERE c.tenant_id = $1 AND c.id = $5::uuid AND c.deleted_at IS NULL
                   ON CONFLICT (tenant_id, alert_id, chain_id) DO NOTHING RETURNING 1)
               SELECT count(*) FROM s""", tenant_id, alert_id, event_seq, route, chain_id, now))
    return opened


async def fire_due(conn: asyncpg.Connection, tenant_id: str, *, now: datetime, limit: int) -> list[Fired]:
    """Fire every escalation step due at ``now`` whose alert is still open; stop those acknowledged or resolved.
    Run it in a transaction."""
    due = await conn.fetch(
        """SELECT x.alert_id, x.chain_id, x.event_seq, x.route, x.step, x.round, x.next_at, c.steps, c.repeat,
                  c.name AS chain_name, a.state, e.severity, e.rule_id, e.equipment_id, e.message, e.kind
           FROM escalations x
           JOIN escalation_chains c ON c.tenant_id = x.tenant_id AND c.id = x.chain_id
           JOIN alerts a ON a.tenant_id = x.tenant_id AND a.id = x.alert_id
           JOIN alert_events e ON e.seq = x.event_seq
           WHERE x.tenant_id = $1 AND x.next_at <= $2
           ORDER BY x.next_at LIMIT $3 FOR UPDATE OF x SKIP LOCKED""", tenant_id, now, limit)
    if not due:
        return []
    zone = ZoneInfo(await oncall_store.tenant_zone(conn, tenant_id))
    personal = await _personal_channels(conn, tenant_id)
    fired: list[Fired] = []
    for row in due:
        key = (tenant_id, row["alert_id"], row["chain_id"])
        if row["state"] in STOPPING_STATES:
            await conn.execute("UPDATE escalations SET next_at = NULL, stopped = $4 WHERE tenant_id = $1"
                               " AND alert_id = $2 AND chain_id = $3", *key, row["state"])
            continue
        if row["state"] != "open":  # shelved or suppressed: held, not fired
            await conn.execute("UPDATE escalations SET next_at = $4 WHERE tenant_id = $1 AND alert_id = $2"
                               " AND chain_id = $3", *key, now + timedelta(seconds=HOLD_SECONDS))
            continue
        steps: list[dict[str, Any]] = row["steps"]
        step, round_ = min(row["step"], len(steps) - 1), row["round"]
        fired.append(await _fire(conn, tenant_id, row, steps[step], step, round_, now=now, zone=zone,
                                 personal=personal))
        if step + 1 < len(steps):
            following: tuple[int, int] | None = (step + 1, round_)
        elif round_ < row["repeat"]:
            following = (0, round_ + 1)
        else:
            following = None
        if following is None:
            await conn.execute("UPDATE escalations SET step = $4, next_at = NULL, stopped = 'completed'"
                               " WHERE tenant_id = $1 AND alert_id = $2 AND chain_id = $3", *key, step + 1)
        else:
            # Timed from when this step was due, not from when it ran: a late notifier catches up.
            after = float(steps[following[0]].get("after_seconds") or 0)
            await conn.execute("UPDATE escalations SET step = $4, round = $5, next_at = $6 WHERE tenant_id = $1"
                               " AND alert_id = $2 AND chain_id = $3", *key, following[0], following[1],
                               row["next_at"] + timedelta(seconds=after))
    return fired


async def _personal_channels(conn: asyncpg.Connection, tenant_id: str) -> dict[str, tuple[uuid.UUID, str]]:
    """{medium: (channel id, kind)}: the tenant's oldest enabled email and SMS channels, which carry a person's
    email and text messages."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (kind) id, kind FROM notification_channels WHERE tenant_id = $1 AND enabled"
        " AND deleted_at IS NULL AND kind IN ('email', 'sms') ORDER BY kind, created_at, id", tenant_id)
    return {r["kind"]: (r["id"], r["kind"]) for r in rows}


async def _fire(conn: asyncpg.Connection, tenant_id: str, row: asyncpg.Record, spec: dict[str, Any], step: int,
                round_: int, *, now: datetime, zone: ZoneInfo,
                personal: dict[str, tuple[uuid.UUID, str]]) -> Fired:
    targets = spec.get("targets") or {}
    users = [uuid.UUID(u) for u in targets.get("users", [])]
    schedules = await oncall_store.schedules_by_id(conn, tenant_id, [uuid.UUID(s) for s in
                                                                     targets.get("schedules", [])])
    for schedule in schedules.values():
        on_call = schedule.on_call(now)
        if on_call.user is not None:
            users.append(uuid.UUID(on_call.user))
    seq, label = row["event_seq"], f"escalation {row['chain_name']}: step {step + 1}" + (
        f" (round {round_ + 1})" if round_ else "")
    prefix = f"{seq}:{round_}:{step}"
    deliveries: list[tuple[Any, ...]] = []  # (key, channel id, kind, user, address)
    in_app_users: list[uuid.UUID] = []
    local = now.astimezone(zone)
    for user_id, (address, prefs) in (await oncall_store.load_preferences(conn, tenant_id, set(users))).items():
        for medium in prefs.media(row["severity"], local):
            if medium == "in_app":
                in_app_users.append(user_id)
            elif medium in personal:
                channel_id, kind = personal[medium]
                to = address if medium == "email" else prefs.phone
                deliveries.append((f"{prefix}:{user_id}:{medium}", channel_id, kind, user_id, to))
            else:
                log.warning("escalation of alert %s in %s: no enabled %s channel for user %s", row["alert_id"],
                            tenant_id, medium, user_id)
    channels = await conn.fetch("SELECT id, kind FROM notification_channels WHERE tenant_id = $1 AND enabled"
                                " AND deleted_at IS NULL AND id = ANY($2::uuid[])", tenant_id,
                                [uuid.UUID(c) for c in targets.get("channels", [])])
    deliveries += [(f"{prefix}:channel:{c['id']}", c["id"], c["kind"], None, None) for c in channels]
    planned = 0
    if deliveries:
        planned = int(await conn.fetchval(
            """WITH planned AS (
                   INSERT INTO notification_deliveries (tenant_id, alert_id, event_seq, event_kind, channel_id,
                       channel_kind, next_attempt_at, created_at, route, escalation_key, escalation_step,
                       recipient_user, recipient)
                   SELECT $1, $2, $3, $4, d.channel_id, d.kind, $5, $5, $6, d.key, $7, d.user_id, d.address
                   FROM unnest($8::text[], $9::uuid[], $10::text[], $11::uuid[], $12::text[])
                        AS d(key, channel_id, kind, user_id, address)
                   ON CONFLICT (tenant_id, escalation_key) WHERE escalation_key IS NOT NULL DO NOTHING
                   RETURNING 1)
               SELECT count(*) FROM planned""",
            tenant_id, row["alert_id"], seq, row["kind"], now, label, step,
            [d[0] for d in deliveries], [d[1] for d in deliveries], [d[2] for d in deliveries],
            [d[3] for d in deliveries], [d[4] for d in deliveries]))
    in_app: list[asyncpg.Record] = []
    if in_app_users:
        rows = await conn.fetch(
            """INSERT INTO in_app_notifications (tenant_id, user_id, alert_id, event_seq, event_kind, reminder, title,
                                                 body, severity, created_at)
               SELECT $1, u, $2, $3, $4, $5, left(format('[%s] %s: %s on %s (alert %s)', $6::text, $7::text,
                      $8::text, $9::text, $2::bigint), 500), left(coalesce($10, ''), 4000), $6, $11
               FROM unnest($12::uuid[]) AS u
               ON CONFLICT (tenant_id, user_id, event_seq, reminder) DO NOTHING RETURNING """ + INBOX_COLUMNS,
            tenant_id, row["alert_id"], seq, row["kind"], ESCALATION_REMINDER_BASE + round_ * 100 + step,
            row["severity"], label, row["rule_id"], row["equipment_id"], row["message"], now, in_app_users)
        in_app = list(rows)
    return Fired(row["alert_id"], row["chain_id"], step, round_, planned, in_app)
