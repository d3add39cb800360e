"""Notification policies: a tenant's routing tree (`notify.routing`), and the deliveries planned through it.

With a policy, `plan_routed` reads the events after the tenant's cursor (as `store.notifications.plan_deliveries`
does without one), routes each event that notifies, adds it to its route's group and moves the cursor, in the
caller's transaction. `flush_groups` turns each group that is due into one delivery per channel listing the
group's new events (``event_seqs``), marks them flushed and sets when the group may speak next, in one
transaction: an event is in exactly one message per group, whatever crashes when. A group quiet for its
``repeat_interval`` reminds of its alerts still open (a reminder is numbered, the number is part of the
delivery's key); acknowledging an alert stops its reminders. An alert opened on a route that names an escalation
chain starts an escalation in the same transaction (`store.escalations`).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from notify.routing import AlertFacts, PolicyTree
from schema.severity import SEVERITIES
from store.db import Executor
from store.escalations import start_escalations
from store.notifications import NOTIFY_KINDS, advance_cursor, read_cursor

__all__ = ["Policy", "delete_policy", "flush_groups", "get_policy", "live_channel_ids", "load_policy", "plan_routed",
           "put_policy"]

MutedUntil = Callable[[Sequence[str], datetime], datetime | None]


@dataclass(frozen=True)
class Policy:
    """A tenant's parsed tree and the time zone its mute timings are read in."""

    tree: PolicyTree
    zone: str

    def muted_until(self, timings: Sequence[str], at: datetime) -> datetime | None:
        return self.tree.muted_until(timings, at, self.zone)


async def get_policy(conn: Executor, tenant_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT document, updated_by, updated_at FROM notification_policies"
                               " WHERE tenant_id = $1", tenant_id)


async def put_policy(conn: Executor, tenant_id: str, document: dict[str, Any], *, updated_by: str,
                     ) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO notification_policies (tenant_id, document, updated_by) VALUES ($1, $2, $3)"
        " ON CONFLICT (tenant_id) DO UPDATE SET document = excluded.document, updated_by = excluded.updated_by,"
        " updated_at = now() RETURNING document, updated_by, updated_at", tenant_id, document, updated_by)


async def delete_policy(conn: Executor, tenant_id: str) -> bool:
    return await conn.fetchval("DELETE FROM notification_policies WHERE tenant_id = $1 RETURNING true",
                               tenant_id) is not None


async def live_channel_ids(conn: Executor, tenant_id: str) -> set[str]:
    """The ids of the tenant's channels that are not deleted (a policy may name only these)."""
    return {str(c) for c in await conn.fetchval(
        "SELECT coalesce(array_agg(id), '{}') FROM notification_channels WHERE tenant_id = $1"
        " AND deleted_at IS NULL", tenant_id)}


async def load_policy(conn: Executor, tenant_id: str) -> Policy | None:
    """The tenant's tree in its time zone; None when it has none (every channel hears of every alert)."""
    row = await conn.fetchrow(
        "SELECT p.document, coalesce(t.settings->>'timezone', 'UTC') AS zone FROM notification_policies p"
        " JOIN tenants t ON t.id = p.tenant_id WHERE p.tenant_id = $1", tenant_id)
    return None if row is None else Policy(PolicyTree.parse(row["document"]), row["zone"])


def _facts(row: asyncpg.Record) -> AlertFacts:
    metadata = row["metadata"] or {}
    return AlertFacts(severity=row["severity"], equipment_id=row["equipment_id"],
                      equipment_type=row["equipment_type"], rule_id=row["rule_id"], rule_kind=row["rule_kind"],
                      well_ids=tuple(row["well_ids"]),
                      labels={str(k): str(v) for k, v in metadata.items() if isinstance(v, str | int | float)})


async def plan_routed(conn: asyncpg.Connection, tenant_id: str, policy: Policy, *, now: datetime,
                      limit: int) -> tuple[int, int]:
    """Route up to ``limit`` events after the cursor into their groups and move the cursor; returns (events read,
    group entries added). Run it in a transaction."""
    cursor = await read_cursor(conn, tenant_id)
    events = await conn.fetch(
        """SELECT e.seq, e.alert_id, e.kind, e.severity, e.equipment_id, e.rule_id,
                  coalesce(q.type, 'other') AS equipment_type, q.metadata, coalesce(r.kind, e.rule_id) AS rule_kind,
                  ARRAY(SELECT w.well_id FROM equipment_wells w WHERE w.tenant_id = $1
                        AND w.equipment_id = e.equipment_id ORDER BY w.well_id) AS well_ids
           FROM alert_events e
           LEFT JOIN equipment q ON q.tenant_id = $1 AND q.id = e.equipment_id
           LEFT JOIN alert_rules r ON r.tenant_id = $1 AND r.id = e.rule_id AND r.deleted_at IS NULL
           WHERE e.tenant_id = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3""", tenant_id, cursor, limit)
    entries = []
    starts: list[tuple[int, int, str, str]] = []
    for event in events:
        if event["kind"] not in NOTIFY_KINDS:
            continue
        for match in policy.tree.route(_facts(event)):
            if match.route.escalation_chain and event["kind"] == "opened":
                starts.append((event["alert_id"], event["seq"], match.route.name, match.route.escalation_chain))
            if match.channels:
                route = match.route
                entries.append((tenant_id, route.name, match.group_key, list(match.channels), route.group_interval,
                                list(route.mute_timings), now + timedelta(seconds=route.group_wait), event["seq"],
                                route.repeat_interval))
    if entries:
        await conn.executemany(
            """WITH g AS (
                   INSERT INTO notification_groups (tenant_id, route, group_key, channels, group_interval,
                                                    mute_timings, next_flush_at, repeat_interval)
                   VALUES ($1, $2, $3, $4::text[]::uuid[], $5, $6, $7, $9)
                   ON CONFLICT (tenant_id, route, group_key) DO UPDATE SET
                       channels = excluded.channels, group_interval = excluded.group_interval,
                       mute_timings = excluded.mute_timings, repeat_interval = excluded.repeat_interval,
                       next_flush_at = coalesce(notification_groups.next_flush_at, greatest(
                           excluded.next_flush_at,
                           notification_groups.last_sent_at + make_interval(secs => excluded.group_interval)))
                   RETURNING id)
               INSERT INTO notification_group_items (tenant_id, group_id, event_seq)
               SELECT $1, id, $8 FROM g ON CONFLICT DO NOTHING""", entries)
    await start_escalations(conn, tenant_id, starts, now=now)
    if events:
        await advance_cursor(conn, tenant_id, events[-1]["seq"])
    return len(events), len(entries)


async def flush_groups(conn: asyncpg.Connection, tenant_id: str, *, now: datetime, muted_until: MutedUntil,
                       limit: int) -> int:
    """Plan one delivery per channel for each due group, listing its unsent events; returns deliveries planned.
    A group under an active mute timing waits for the window's end. Run it in a transaction."""
    groups = await conn.fetch(
        "SELECT id, route, channels, group_interval, mute_timings FROM notification_groups WHERE tenant_id = $1"
        " AND next_flush_at <= $2 ORDER BY next_flush_at LIMIT $3 FOR UPDATE SKIP LOCKED", tenant_id, now, limit)
    planned = 0
    for group in groups:
        until = muted_until(group["mute_timings"], now)
        if until is not None:
            await conn.execute("UPDATE notification_groups SET next_flush_at = $3 WHERE tenant_id = $1 AND id = $2",
                               tenant_id, group["id"], until)
            continue
        seqs = sorted(await conn.fetchval(
            "WITH f AS (UPDATE notification_group_items SET flushed_at = $3 WHERE tenant_id = $1 AND group_id = $2"
            " AND flushed_at IS NULL RETURNING event_seq) SELECT coalesce(array_agg(event_seq), '{}') FROM f",
            tenant_id, group["id"], now))
        if seqs:
            planned += await _plan_group_message(conn, tenant_id, group, seqs, now)
        await conn.execute(
            "UPDATE notification_groups SET next_flush_at = NULL, last_sent_at = CASE WHEN $3 THEN $4"
            " ELSE last_sent_at END WHERE tenant_id = $1 AND id = $2", tenant_id, group["id"], bool(seqs), now)
    return planned + await _remind(conn, tenant_id, now=now, muted_until=muted_until, limit=limit)


async def _remind(conn: asyncpg.Connection, tenant_id: str, *, now: datetime, muted_until: MutedUntil,
                  limit: int) -> int:
    """Reminders: each group quiet for its ``repeat_interval`` sends again the alerts it sent that are still open
    (an acknowledged or resolved alert is not repeated); a group with none open falls silent."""
    groups = await conn.fetch(
        "SELECT id, route, channels, mute_timings, reminders FROM notification_groups WHERE tenant_id = $1"
        " AND next_flush_at IS NULL AND repeat_interval > 0"
        " AND last_sent_at + make_interval(secs => repeat_interval) <= $2"
        " ORDER BY last_sent_at LIMIT $3 FOR UPDATE SKIP LOCKED", tenant_id, now, limit)
    planned = 0
    for group in groups:
        if muted_until(group["mute_timings"], now) is not None:
            continue
        seqs = sorted(await conn.fetchval(
            """SELECT coalesce(array_agg(seq), '{}') FROM (
                   SELECT DISTINCT ON (e.alert_id) e.seq FROM notification_group_items i
                   JOIN alert_events e ON e.seq = i.event_seq
                   JOIN alerts a ON a.id = e.alert_id AND a.tenant_id = $1
                   WHERE i.tenant_id = $1 AND i.group_id = $2 AND i.flushed_at IS NOT NULL AND a.state = 'open'
                   ORDER BY e.alert_id, e.seq DESC) latest""", tenant_id, group["id"]))
        if seqs:
            planned += await _plan_group_message(conn, tenant_id, group, seqs, now, reminder=group["reminders"] + 1)
        await conn.execute(
            "UPDATE notification_groups SET reminders = reminders + $3::int, last_sent_at = CASE WHEN $3 > 0"
            " THEN $4::timestamptz END WHERE tenant_id = $1 AND id = $2",
            tenant_id, group["id"], 1 if seqs else 0, now)
    return planned


async def _plan_group_message(conn: asyncpg.Connection, tenant_id: str, group: asyncpg.Record, seqs: list[int],
                              now: datetime, *, reminder: int = 0) -> int:
    """One delivery per live channel of the group whose ``min_severity`` the gravest listed event reaches."""
    rank = "array_position(ARRAY[" + ", ".join(f"'{s}'" for s in SEVERITIES) + "], {})"
    return int(await conn.fetchval(
        f"""WITH gravest AS (SELECT max({rank.format('severity')}) AS r FROM alert_events
                             WHERE tenant_id = $1 AND seq = ANY($3::bigint[])),
                 planned AS (
                 INSERT INTO notification_deliveries (tenant_id, alert_id, event_seq, event_kind, channel_id,
                     channel_kind, next_attempt_at, created_at, event_seqs, route, reminder)
                 SELECT $1, e.alert_id, e.seq, e.kind, c.id, c.kind, $4, $4, $3::bigint[], $5, $7
                 FROM alert_events e, gravest
                 JOIN notification_channels c ON c.tenant_id = $1 AND c.id = ANY($2::uuid[]) AND c.enabled
                  AND c.deleted_at IS NULL
                 WHERE e.seq = $6 AND gravest.r >= {rank.format('c.min_severity')}
                 ON CONFLICT (tenant_id, event_seq, channel_id, reminder) WHERE escalation_key IS NULL
                 DO NOTHING RETURNING 1)
            SELECT count(*) FROM planned""",
        tenant_id, group["channels"], seqs, now, group["route"], seqs[-1], reminder))
