"""Alerts as the API and the housekeeping see them: listing, events, acknowledge and resolve (with a verdict),
the alarm states of ISA-18.2 (shelved, latched, suppressed by design, out-of-service sensors), silences,
releasing what a silence or a suppression held back, and the alarm KPIs.

What the models and the field's inspections decide is written by `persist_changes`, the one writer of
model-made alerts: it holds alerts back while their equipment or rule is silenced and applies the alarm states.
Everything here takes the tenant's connection and filters on the tenant; events are committed before they
are published, like every alert event.

States: ``open`` → ``acknowledged`` → ``resolved``, and besides them ``shelved`` (put aside by an operator
until ``shelved_until``: it returns ``open``, unacknowledged, when that time ends or when its condition
clears and comes back) and ``suppressed`` (by design: every sensor it is about is out of service, its rule
needs the equipment running and it is not, or an upstream compressor is down; it returns to what it was
when that ends). A latched alert whose condition clears stays ``open`` with ``cleared_at`` set ("cleared,
awaiting acknowledgement") and acknowledging it resolves it.
"""

import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from schema.errors import Conflict, InvalidInput
from schema.severity import SEVERITIES, SEVERITY_RANK
from store.db import Executor, connection
from store.listing import FieldSpec, ResourceSpec

EVENT_COLUMNS = (
    "seq, tenant_id, alert_id, equipment_id, rule_id, kind, state, severity, message, details,"
    " actor, occurred_at, created_at"
)
_BASE_ALERT_COLUMNS = (
    "id, equipment_id, rule_id, state, severity, message, details, opened_at, updated_at,"
    " acknowledged_at, acknowledged_by, ack_comment, escalated_at, resolved_at, resolved_by, resolve_comment"
)


async def _serialize_tenant_events(conn: asyncpg.Connection, tenant_id: str) -> None:
    """Hold the tenant's event lock until the transaction ends (the WebSocket feed resumes by seq)."""
    # seq comes from a sequence, and concurrent transactions may commit out of seq order;
    # a client that resumes "since seq" would then skip the slower one. Taking a
    # per-tenant lock makes seq order and commit order the same within a tenant.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('alert_events:' || $1))", tenant_id)


async def _insert_event(
    conn: asyncpg.Connection, tenant_id: str, alert: asyncpg.Record, kind: str, actor: str,
    occurred_at: datetime, *, message: str | None = None, details: dict[str, Any] | None = None,
) -> asyncpg.Record:
    """An event row; its message says what changed (the alert row keeps why it opened)."""
    return await conn.fetchrow(
        f"INSERT INTO alert_events (tenant_id, alert_id, equipment_id, rule_id, kind, state, severity,"
        f" message, details, actor, occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        f" RETURNING {EVENT_COLUMNS}",
        tenant_id, alert["id"], alert["equipment_id"], alert["rule_id"], kind, alert["state"],
        alert["severity"], message if message is not None else alert["message"],
        details if details is not None else alert["details"], actor, occurred_at,
    )


ALERT_COLUMNS = (
    f"{_BASE_ALERT_COLUMNS}, occurrences, cleared_at, latched, requires_running, low_pressure, sensors, shelved_at,"
    " shelved_until, shelved_by, shelve_reason, suppressed_reason, verdict, verdict_by, verdict_at"
)
STATES = ("open", "acknowledged", "shelved", "suppressed", "resolved")
VERDICTS = ("real", "false_alarm", "planned")
_ALIASED_COLUMNS = ", ".join("a." + c.strip() for c in ALERT_COLUMNS.split(","))  # the same, of alias a
DEFAULT_MAX_SHELVE_MINUTES = 8 * 60

# The order of schema.severity in SQL (the column is NOT NULL and checked: every row has one of them).
SEVERITY_RANK_SQL = "CASE severity " + " ".join(f"WHEN '{s}' THEN {SEVERITY_RANK[s]}" for s in SEVERITIES) + " END"
ALERTS = ResourceSpec(
    name="alerts", from_sql="alerts", default_sort="-opened_at",
    fields=(
        FieldSpec("id", "id", "int"),
        FieldSpec("equipment_id", "equipment_id"),
        FieldSpec("rule_id", "rule_id"),
        FieldSpec("state", "state", "enum", enum=STATES),
        FieldSpec("severity", "severity", "enum", enum=SEVERITIES),
        FieldSpec("message", "message", sortable=False),
        FieldSpec("details", "details", filterable=False, sortable=False),
        FieldSpec("opened_at", "opened_at", "timestamp"),
        FieldSpec("updated_at", "updated_at", "timestamp"),
        FieldSpec("acknowledged_at", "acknowledged_at", "timestamp"),
        FieldSpec("acknowledged_by", "acknowledged_by"),
        FieldSpec("ack_comment", "ack_comment", filterable=False, sortable=False),
        FieldSpec("escalated_at", "escalated_at", "timestamp"),
        FieldSpec("resolved_at", "resolved_at", "timestamp"),
        FieldSpec("resolved_by", "resolved_by"),
        FieldSpec("resolve_comment", "resolve_comment", filterable=False, sortable=False),
        FieldSpec("occurrences", "occurrences", "int"),
        FieldSpec("cleared_at", "cleared_at", "timestamp"),
        FieldSpec("latched", "latched", "bool"),
        FieldSpec("sensors", "sensors", filterable=False, sortable=False),
        FieldSpec("shelved_until", "shelved_until", "timestamp"),
        FieldSpec("shelved_by", "shelved_by"),
        FieldSpec("shelve_reason", "shelve_reason", filterable=False, sortable=False),
        FieldSpec("suppressed_reason", "suppressed_reason", "enum",
                  enum=("out_of_service", "maintenance", "equipment_stopped", "upstream")),
        FieldSpec("verdict", "verdict", "enum", enum=VERDICTS),
        FieldSpec("verdict_by", "verdict_by"),
        FieldSpec("verdict_at", "verdict_at", "timestamp"),
    ),
)
# Equipment that serves one of the wells in $1 (a well-level view of the alerts).
WELL_FILTER_SQL = ("EXISTS (SELECT 1 FROM equipment_wells ew WHERE ew.tenant_id = alerts.tenant_id"
                   " AND ew.equipment_id = alerts.equipment_id AND ew.well_id = ANY($1::text[]))")
MIN_SEVERITY_SQL = f"({SEVERITY_RANK_SQL}) >= $1"

SILENCE_STATE_SQL = ("CASE WHEN cancelled_at IS NOT NULL THEN 'cancelled' WHEN starts_at > now() THEN 'scheduled'"
                     " WHEN ends_at > now() THEN 'active' ELSE 'expired' END")
SILENCE_COLUMNS = (f"id, equipment_id, rule_id, starts_at, ends_at, reason, {SILENCE_STATE_SQL} AS state,"
                   " created_by, created_at, cancelled_at, cancelled_by")
SILENCES = ResourceSpec(
    name="silences", from_sql="silences", default_sort="-created_at",
    fields=(
        FieldSpec("id", "id", "uuid"),
        FieldSpec("equipment_id", "equipment_id"),
        FieldSpec("rule_id", "rule_id"),
        FieldSpec("starts_at", "starts_at", "timestamp"),
        FieldSpec("ends_at", "ends_at", "timestamp"),
        FieldSpec("reason", "reason", sortable=False),
        FieldSpec("state", SILENCE_STATE_SQL, "enum", enum=("scheduled", "active", "expired", "cancelled")),
        FieldSpec("created_by", "created_by"),
        FieldSpec("created_at", "created_at", "timestamp"),
        FieldSpec("cancelled_at", "cancelled_at", "timestamp"),
        FieldSpec("cancelled_by", "cancelled_by"),
    ),
)


# ---------------------------------------------------------------- alerts


@dataclass(frozen=True)
class AlarmChange:
    """What the models decided (`models.AlertChange`) with the alarm profile of its rule (`models.alarm_profile`)."""

    kind: str  # opened | updated | resolved
    equipment_id: str
    rule_id: str
    severity: str
    ts: datetime
    message: str
    details: dict[str, Any]
    latched: bool = False
    requires_running: bool = False
    low_pressure: bool = False
    sensors: tuple[str, ...] = ()


async def get_alert(conn: Executor, tenant_id: str, alert_id: int, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {ALERT_COLUMNS} FROM alerts WHERE tenant_id = $1 AND id = $2" + (" FOR UPDATE" if lock else ""),
        tenant_id, alert_id)


async def alert_events(conn: Executor, tenant_id: str, alert_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {EVENT_COLUMNS} FROM alert_events WHERE tenant_id = $1 AND alert_id = $2 ORDER BY seq",
        tenant_id, alert_id)


async def _set(conn: asyncpg.Connection, alert_id: int, assignments: str, *args: Any) -> asyncpg.Record:
    """UPDATE one alert (``assignments`` written by us, values from $2 on); returns it."""
    return await conn.fetchrow(
        f"UPDATE alerts SET {assignments}, updated_at = now() WHERE id = $1 RETURNING {ALERT_COLUMNS}",
        alert_id, *args)


async def persist_changes(pool: Executor, tenant_id: str, changes: Sequence[AlarmChange], *, actor: str = "system",
                          ) -> list[asyncpg.Record]:
    """Apply model decisions to ``alerts`` and append ``alert_events``, in one transaction; returns the events.

    Idempotent against replays after a crash: an "opened" for a key that already has an open alert becomes an
    update of it (or nothing, if nothing changed), and one for a key whose alert opened at that very reading
    and has closed since is dropped (a model restored from an older checkpoint re-learns the readings and
    decides the same again); a "resolved" for a key with no open alert is dropped.
    Silences (``wellpulse_silenced``: a live silence of the equipment or rule, or the equipment in maintenance)
    hold a new alert back in ``suppressed_alerts`` (no alert, no event; a later "resolved" deletes it, and
    `release_suppressed` opens it once the silence is over; being rows, they survive actor restarts). Then the
    alarm states:

    - a new alert that is suppressed by design (`wellpulse_design_suppression`) opens ``suppressed`` (event
      "suppressed"; the housekeeping opens it when that ends);
    - a clear ("resolved") of a shelved alert, or of a latched one not yet acknowledged, keeps the alert and
      sets ``cleared_at`` (event "cleared"); when the condition comes back, a shelved alert returns open and
      unacknowledged (event "unshelved") and a latched one is active again (event "updated"), each counting
      one more occurrence;
    - a chattering alert held open by the models counts its occurrences (``details.occurrences``);
    - a new alert's details name the most recent similar resolved alert of the equipment (same rule,
      sharing its sensors) and that alert's verdict (``similar``).
    """
    events: list[asyncpg.Record] = []
    if not changes:
        return events
    async with connection(pool) as conn, conn.transaction():
        await _serialize_tenant_events(conn, tenant_id)
        for ch in changes:
            current = await conn.fetchrow(
                f"SELECT {ALERT_COLUMNS} FROM alerts WHERE tenant_id = $1 AND equipment_id = $2"
                " AND rule_id = $3 AND state <> 'resolved' FOR UPDATE",
                tenant_id, ch.equipment_id, ch.rule_id,
            )
            if current is None and ch.kind != "resolved" and await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM alerts WHERE tenant_id = $1 AND equipment_id = $2"
                    " AND rule_id = $3 AND opened_at = $4)", tenant_id, ch.equipment_id, ch.rule_id, ch.ts):
                continue  # an alert opened (and closed since) by this very reading: a replay, not a new one
            if current is None and await _suppressed(conn, tenant_id, ch):
                continue
            change = await (_close(conn, current, ch) if ch.kind == "resolved"
                            else _open(conn, tenant_id, ch) if current is None else _update(conn, current, ch))
            if change is not None:
                alert, kind, message, details = change
                events.append(await _insert_event(conn, tenant_id, alert, kind, actor, ch.ts,
                                                  message=message, details=details))
    return events


async def _suppressed(conn: asyncpg.Connection, tenant_id: str, ch: AlarmChange) -> bool:
    """For a key with no open alert: keep ``suppressed_alerts`` in step with ``ch``; True if it was held back."""
    if ch.kind != "resolved" and await conn.fetchval(
            "SELECT wellpulse_silenced($1, $2, $3, now())", tenant_id, ch.equipment_id, ch.rule_id):
        await conn.execute(
            "INSERT INTO suppressed_alerts (tenant_id, equipment_id, rule_id, severity, message, details,"
            " suppressed_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, equipment_id, rule_id)"
            " DO UPDATE SET severity = EXCLUDED.severity, message = EXCLUDED.message, details = EXCLUDED.details,"
            " updated_at = now()",
            tenant_id, ch.equipment_id, ch.rule_id, ch.severity, ch.message, ch.details, ch.ts,
        )
        return True
    await conn.execute(
        "DELETE FROM suppressed_alerts WHERE tenant_id = $1 AND equipment_id = $2 AND rule_id = $3",
        tenant_id, ch.equipment_id, ch.rule_id,
    )
    return False


Change = tuple[asyncpg.Record, str, str, dict[str, Any]] | None  # (alert, event kind, message, details)


async def _close(conn: asyncpg.Connection, current: asyncpg.Record | None, ch: AlarmChange) -> Change:
    if current is None or current["cleared_at"] is not None:
        return None  # nothing open, or already cleared (a replay)
    if current["state"] == "shelved" or (current["latched"] and current["state"] == "open"):
        alert = await _set(conn, current["id"], "cleared_at = $2", ch.ts)
        why = "shelved" if current["state"] == "shelved" else "latched: cleared, awaiting acknowledgement"
        return alert, "cleared", f"{ch.message} ({why})", {**ch.details, "cleared": True}
    alert = await _set(conn, current["id"], "state = 'resolved', resolved_at = $2, prior_state = NULL", ch.ts)
    return alert, "resolved", ch.message, ch.details


async def _open(conn: asyncpg.Connection, tenant_id: str, ch: AlarmChange) -> Change:
    reason = await conn.fetchval("SELECT wellpulse_design_suppression($1, $2, $3, $4, $5, now())", tenant_id,
                                 ch.equipment_id, list(ch.sensors), ch.requires_running, ch.low_pressure)
    details = dict(ch.details)
    similar = await similar_alert(conn, tenant_id, ch.equipment_id, ch.rule_id, ch.sensors)
    if similar is not None:
        details["similar"] = similar
    occurrences = details.get("occurrences", 1)
    alert = await conn.fetchrow(
        f"INSERT INTO alerts (tenant_id, equipment_id, rule_id, state, severity, message, details, opened_at,"
        f" latched, requires_running, low_pressure, sensors, suppressed_reason, occurrences)"
        f" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING {ALERT_COLUMNS}",
        tenant_id, ch.equipment_id, ch.rule_id, "open" if reason is None else "suppressed", ch.severity, ch.message,
        details, ch.ts, ch.latched, ch.requires_running, ch.low_pressure, list(ch.sensors), reason,
        occurrences if isinstance(occurrences, int) and occurrences >= 1 else 1,
    )
    if reason is None:
        return alert, "opened", ch.message, details
    return alert, "suppressed", f"{ch.message} (suppressed by design: {reason})", {**details, "suppressed": reason}


async def _update(conn: asyncpg.Connection, current: asyncpg.Record, ch: AlarmChange) -> Change:
    if current["cleared_at"] is not None:  # the condition came back while the alert stayed
        if current["state"] == "shelved":
            alert = await _set(
                conn, current["id"], "state = 'open', cleared_at = NULL, shelved_at = NULL, shelved_until = NULL,"
                " shelved_by = NULL, shelve_reason = NULL, acknowledged_at = NULL, acknowledged_by = NULL,"
                " ack_comment = NULL, occurrences = occurrences + 1, severity = $2, message = $3, details = $4",
                ch.severity, ch.message, ch.details)
            return alert, "unshelved", f"{ch.message} (came back while shelved: unshelved)", {
                **ch.details, "reason": "returned"}
        alert = await _set(conn, current["id"], "cleared_at = NULL, occurrences = occurrences + 1, severity = $2,"
                           " message = $3, details = $4", ch.severity, ch.message, ch.details)
        return alert, "updated", f"{ch.message} (came back before it was acknowledged)", {
            **ch.details, "returned": True}
    occurrences = ch.details.get("occurrences") if ch.details.get("chattering") else None
    if ch.kind == "opened" and current["severity"] == ch.severity and occurrences is None:
        return None  # a replayed "opened" for an alert that is already open
    if isinstance(occurrences, int):
        alert = await _set(conn, current["id"], "severity = $2, message = $3, details = $4,"
                           " occurrences = GREATEST(occurrences, $5)", ch.severity, ch.message, ch.details,
                           occurrences)
    else:
        alert = await _set(conn, current["id"], "severity = $2, message = $3, details = $4",
                           ch.severity, ch.message, ch.details)
    return alert, "updated", ch.message, ch.details


async def similar_alert(conn: Executor, tenant_id: str, equipment_id: str, rule_id: str, sensors: Sequence[str],
                        ) -> dict[str, Any] | None:
    """The most recent resolved alert of this equipment and rule about the same sensors (sharing one when none
    has all of them), with its verdict; None when there is none."""
    row = await conn.fetchrow(
        "SELECT id, opened_at, resolved_at, message, verdict, occurrences FROM alerts"
        " WHERE tenant_id = $1 AND equipment_id = $2 AND rule_id = $3 AND state = 'resolved'"
        " AND (sensors && $4::text[] OR cardinality($4::text[]) = 0)"
        " ORDER BY (sensors = $4::text[]) DESC, resolved_at DESC NULLS LAST LIMIT 1",
        tenant_id, equipment_id, rule_id, list(sensors))
    if row is None:
        return None
    return {"alert_id": row["id"], "opened_at": row["opened_at"].isoformat(),
            "resolved_at": None if row["resolved_at"] is None else row["resolved_at"].isoformat(),
            "message": row["message"], "verdict": row["verdict"], "occurrences": row["occurrences"]}


async def load_open_alerts(pool: Executor, tenant_id: str, equipment_ids: Sequence[str]) -> list[asyncpg.Record]:
    """Alerts the models must take as open: those whose condition holds (not resolved, not cleared), and those
    held back by a silence. A latched or shelved alert whose condition cleared is not: it waits for an operator
    or its shelve's end, and the models open it again when the condition comes back."""
    return await pool.fetch(
        "SELECT equipment_id, rule_id, severity FROM alerts"
        " WHERE tenant_id = $1 AND equipment_id = ANY($2) AND state <> 'resolved' AND cleared_at IS NULL"
        " UNION ALL SELECT equipment_id, rule_id, severity FROM suppressed_alerts"
        " WHERE tenant_id = $1 AND equipment_id = ANY($2)",
        tenant_id, list(equipment_ids),
    )


async def _verdict(conn: asyncpg.Connection, alert: asyncpg.Record, verdict: str | None, actor: str, now: datetime,
                   ) -> bool:
    """Record `verdict` on a locked alert; True when it is new. The same verdict again changes nothing; another
    one is a conflict (a verdict is given once)."""
    if verdict is None or alert["verdict"] == verdict:
        return False
    if alert["verdict"] is not None:
        raise Conflict.on("verdict", f"the alert already has the verdict {alert['verdict']!r}")
    await conn.execute("UPDATE alerts SET verdict = $2, verdict_by = $3, verdict_at = $4, verdict_applied_at = NULL"
                       " WHERE id = $1", alert["id"], verdict, actor, now)
    return True


async def acknowledge_alert(
    pool: Executor, tenant_id: str, alert_id: int, *, actor: str, comment: str | None, now: datetime,
    verdict: str | None = None,
) -> tuple[asyncpg.Record | None, list[asyncpg.Record]]:
    """Acknowledge (with an optional verdict). Returns (alert, events); no events when nothing changed.

    An open alert becomes acknowledged; a latched one whose condition cleared is resolved by it. Acknowledging
    an acknowledged alert again changes nothing (a new verdict is recorded). A resolved, shelved or suppressed
    alert: `Conflict` on ``state``; a second, different verdict: on ``verdict``.
    """
    async with connection(pool) as conn, conn.transaction():
        await _serialize_tenant_events(conn, tenant_id)
        alert = await get_alert(conn, tenant_id, alert_id, lock=True)
        if alert is None:
            return None, []
        if alert["state"] not in ("open", "acknowledged"):
            raise Conflict.on("state", f"the alert is {alert['state']}"
                              + ("; unshelve it first" if alert["state"] == "shelved" else ""))
        new_verdict = await _verdict(conn, alert, verdict, actor, now)
        details = {"comment": comment, **({"verdict": verdict} if verdict else {})}
        if alert["state"] == "acknowledged":
            if not new_verdict:
                return await get_alert(conn, tenant_id, alert_id), []
            alert = await get_alert(conn, tenant_id, alert_id)
            return alert, [await _insert_event(conn, tenant_id, alert, "verdict", actor, now,
                                               message=f"verdict {verdict} by {actor}", details=details)]
        alert = await _set(conn, alert_id, "state = 'acknowledged', acknowledged_at = $2, acknowledged_by = $3,"
                           " ack_comment = $4", now, actor, comment)
        events = [await _insert_event(conn, tenant_id, alert, "acknowledged", actor, now,
                                      message=f"acknowledged by {actor}", details=details)]
        if alert["latched"] and alert["cleared_at"] is not None:
            alert = await _set(conn, alert_id, "state = 'resolved', resolved_at = $2", now)
            events.append(await _insert_event(conn, tenant_id, alert, "resolved", actor, now,
                                              message=f"latched alert acknowledged by {actor} after it cleared",
                                              details={**details, "latched": True}))
        return alert, events


async def resolve_alert(
    pool: Executor, tenant_id: str, alert_id: int, *, actor: str, comment: str | None, now: datetime,
    verdict: str | None = None,
) -> tuple[asyncpg.Record | None, list[asyncpg.Record]]:
    """Resolve by hand (with an optional verdict). Returns (alert, events); none when nothing changed.

    The models still take the condition as holding: a new alert opens when it clears and comes back
    (or when the rule reports a new severity for it). A resolved alert stays as it is, but takes a verdict
    it has none of yet (event "verdict"); a second, different verdict is a `Conflict` on ``verdict``.
    """
    async with connection(pool) as conn, conn.transaction():
        await _serialize_tenant_events(conn, tenant_id)
        alert = await get_alert(conn, tenant_id, alert_id, lock=True)
        if alert is None:
            return None, []
        new_verdict = await _verdict(conn, alert, verdict, actor, now)
        details: dict[str, Any] = {"comment": comment, "manual": True, **({"verdict": verdict} if verdict else {})}
        if alert["state"] == "resolved":
            alert = await get_alert(conn, tenant_id, alert_id)
            if not new_verdict:
                return alert, []
            return alert, [await _insert_event(conn, tenant_id, alert, "verdict", actor, now,
                                               message=f"verdict {verdict} by {actor}", details=details)]
        alert = await _set(conn, alert_id, "state = 'resolved', resolved_at = $2, resolved_by = $3,"
                           " resolve_comment = $4, prior_state = NULL", now, actor, comment)
        return alert, [await _insert_event(conn, tenant_id, alert, "resolved", actor, now,
                                           message=f"resolved by {actor}", details=details)]


# ---------------------------------------------------------------- shelving


# One step up the order of schema.severity; critical stays critical.
_ESCALATED_SEVERITY_SQL = ("CASE severity " + " ".join(
    f"WHEN '{lower}' THEN '{higher}'" for lower, higher in itertools.pairwise(SEVERITIES)) + " ELSE severity END")


async def escalate_overdue(
    pool: Executor, tenant_id: str, *, older_than: datetime, now: datetime
) -> list[asyncpg.Record]:
    """Raise the severity of alerts left open and unacknowledged too long (once each).

    Not while the alert's equipment or rule is silenced (in maintenance): it escalates once
    the silence is over, if it is still unacknowledged then.
    """
    async with connection(pool) as conn, conn.transaction():
        await _serialize_tenant_events(conn, tenant_id)
        alerts = await conn.fetch(
            f"UPDATE alerts SET severity = {_ESCALATED_SEVERITY_SQL},"
            f" escalated_at = $3, updated_at = now()"
            f" WHERE tenant_id = $1 AND state = 'open' AND escalated_at IS NULL AND opened_at < $2"
            f" AND NOT wellpulse_silenced(tenant_id, equipment_id, rule_id, $3)"
            f" RETURNING {_BASE_ALERT_COLUMNS}",
            tenant_id, older_than, now,
        )
        return [await _insert_event(conn, tenant_id, a, "escalated", "system", now,
                                    message=f"escalated to {a['severity']}: not acknowledged since {a['opened_at']}",
                                    details={"opened_at": a["opened_at"].isoformat()})
                for a in alerts]


async def events_since(pool: Executor, tenant_id: str, since: int, limit: int) -> list[asyncpg.Record]:
    """Events after ``since`` in seq order, which is commit order (`_serialize_tenant_events`): a feed's resume."""
    return await pool.fetch(
        f"SELECT {EVENT_COLUMNS} FROM alert_events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        tenant_id, since, limit,
    )


async def replay_floor(conn: Executor, tenant_id: str, since: int, until: int, limit: int) -> int | None:
    """The seq after which the newest ``limit`` events of (since, until] begin; None when there are no more."""
    return await conn.fetchval(
        "SELECT seq FROM alert_events WHERE tenant_id = $1 AND seq > $2 AND seq <= $3"
        " ORDER BY seq DESC OFFSET $4 LIMIT 1", tenant_id, since, until, limit)


async def count_open_alerts(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Unresolved alerts per tenant and severity, for the metrics (across tenants: a definer function)."""
    return await pool.fetch("SELECT tenant_id, severity, n FROM wellpulse_open_alert_counts()")


async def max_shelve_minutes(conn: Executor, tenant_id: str) -> int:
    """The tenant's longest shelve (tenant setting ``max_shelve_minutes``; default 8 hours)."""
    minutes = await conn.fetchval("SELECT settings->>'max_shelve_minutes' FROM tenants WHERE id = $1", tenant_id)
    try:
        return DEFAULT_MAX_SHELVE_MINUTES if minutes is None else max(1, int(float(minutes)))
    except ValueError:
        return DEFAULT_MAX_SHELVE_MINUTES


async def shelve_alert(pool: Executor, tenant_id: str, alert_id: int, *, minutes: int, reason: str, actor: str,
                       now: datetime) -> tuple[asyncpg.Record | None, list[asyncpg.Record]]:
    """Shelve an open, acknowledged (or already shelved: a new end) alert for `minutes`; (alert, events).

    More than the tenant's maximum: `InvalidInput` on ``minutes``; a resolved or suppressed alert: `Conflict` on
    ``state``. It returns open and unacknowledged when the time ends (`release_suppressed`) or when its
    condition clears and comes back (`persist_changes`).
    """
    async with connection(pool) as conn, conn.transaction():
        limit = await max_shelve_minutes(conn, tenant_id)
        if minutes > limit:
            raise InvalidInput.on("minutes", f"at most {limit} minutes (the tenant's max_shelve_minutes)")
        await _serialize_tenant_events(conn, tenant_id)
        alert = await get_alert(conn, tenant_id, alert_id, lock=True)
        if alert is None:
            return None, []
        if alert["state"] not in ("open", "acknowledged", "shelved"):
            raise Conflict.on("state", f"a {alert['state']} alert cannot be shelved")
        until = now + timedelta(minutes=minutes)
        alert = await _set(conn, alert_id, "state = 'shelved', shelved_at = $2, shelved_until = $3, shelved_by = $4,"
                           " shelve_reason = $5", now, until, actor, reason)
        return alert, [await _insert_event(conn, tenant_id, alert, "shelved", actor, now,
                                           message=f"shelved by {actor} until {until.isoformat()}: {reason}",
                                           details={"minutes": minutes, "until": until.isoformat(),
                                                    "reason": reason})]


async def unshelve_alert(pool: Executor, tenant_id: str, alert_id: int, *, actor: str, now: datetime,
                         ) -> tuple[asyncpg.Record | None, list[asyncpg.Record]]:
    """Return a shelved alert now: open and unacknowledged, or resolved when its condition cleared meanwhile.
    Not shelved: `Conflict` on ``state``."""
    async with connection(pool) as conn, conn.transaction():
        await _serialize_tenant_events(conn, tenant_id)
        alert = await get_alert(conn, tenant_id, alert_id, lock=True)
        if alert is None:
            return None, []
        if alert["state"] != "shelved":
            raise Conflict.on("state", f"the alert is {alert['state']}, not shelved")
        event = await _unshelve(conn, tenant_id, alert, actor, now, f"unshelved by {actor}")
        return await get_alert(conn, tenant_id, alert_id), [event]


_UNSHELVE = ("state = CASE WHEN cleared_at IS NULL THEN 'open' ELSE 'resolved' END,"
             " resolved_at = CASE WHEN cleared_at IS NULL THEN NULL ELSE $2::timestamptz END,"
             " acknowledged_at = NULL, acknowledged_by = NULL, ack_comment = NULL,"
             " shelved_at = NULL, shelved_until = NULL, shelved_by = NULL, shelve_reason = NULL")


async def _unshelve(conn: asyncpg.Connection, tenant_id: str, alert: asyncpg.Record, actor: str, now: datetime,
                    why: str) -> asyncpg.Record:
    was = {"shelved_until": alert["shelved_until"].isoformat(), "shelved_by": alert["shelved_by"],
           "reason": alert["shelve_reason"]}
    alert = await _set(conn, alert["id"], _UNSHELVE, now)
    if alert["state"] == "resolved":
        return await _insert_event(conn, tenant_id, alert, "resolved", actor, now,
                                   message=f"{why}; its condition had cleared", details=was)
    return await _insert_event(conn, tenant_id, alert, "unshelved", actor, now,
                               message=f"{why}: back unacknowledged", details=was)


# ---------------------------------------------------------------- suppression by design, out of service

# The time a housekeeping decision is taken at: the caller's clock ($2), or the database's when it passes None.
_AT = "coalesce($2::timestamptz, now())"


async def sweep_alarm_states(conn: asyncpg.Connection, tenant_id: str, *, now: datetime | None = None,
                             ) -> list[asyncpg.Record]:
    """Shelves that ended by `now` return; suppression by design starts and ends with its cause. Returns the
    events. `now` is a parameter so that housekeeping's clock (a test's `config.ManualClock`) decides; None
    keeps the database's time, as the API's calls do.

    Run with the tenant's events serialized (`_serialize_tenant_events`) inside a transaction.
    """
    events = []
    for alert in await conn.fetch(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE tenant_id = $1 AND state = 'shelved'"
            f" AND shelved_until <= {_AT} FOR UPDATE", tenant_id, now):
        events.append(await _unshelve(conn, tenant_id, alert, "system", now or datetime.now(UTC),
                                      f"shelve ended at {alert['shelved_until'].isoformat()}"))
    for alert in await conn.fetch(
            "UPDATE alerts SET state = coalesce(prior_state, 'open'), prior_state = NULL, suppressed_reason = NULL,"
            " updated_at = now() WHERE tenant_id = $1 AND state = 'suppressed' AND wellpulse_design_suppression("
            f" tenant_id, equipment_id, sensors, requires_running, low_pressure, {_AT}) IS NULL"
            f" RETURNING {ALERT_COLUMNS}", tenant_id, now):
        # Annunciated for the first time (it opened suppressed): an opening, as KPIs and operators count them.
        announced = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM alert_events WHERE alert_id = $1 AND kind = 'opened')", alert["id"])
        kind = "unsuppressed" if announced else "opened"
        events.append(await _insert_event(conn, tenant_id, alert, kind, "system", alert["updated_at"],
                                          message=f"{alert['message']} (suppression by design ended)",
                                          details={**alert["details"], "unsuppressed": True}))
    for alert in await conn.fetch(
            "UPDATE alerts a SET prior_state = a.state, state = 'suppressed', suppressed_reason = r.reason,"
            " updated_at = now() FROM (SELECT id, wellpulse_design_suppression(tenant_id, equipment_id, sensors,"
            f" requires_running, low_pressure, {_AT}) AS reason FROM alerts WHERE tenant_id = $1"
            " AND state IN ('open', 'acknowledged') AND cleared_at IS NULL) r"
            f" WHERE a.id = r.id AND r.reason IS NOT NULL RETURNING {_ALIASED_COLUMNS}",
            tenant_id, now):
        events.append(await _insert_event(conn, tenant_id, alert, "suppressed", "system", alert["updated_at"],
                                          message=f"suppressed by design: {alert['suppressed_reason']}",
                                          details={"suppressed": alert["suppressed_reason"]}))
    return events


async def _housekeeping_due(conn: Executor, tenant_id: str, now: datetime | None) -> tuple[bool, bool]:
    """Whether a silence holds an alert back, and whether `sweep_alarm_states` has anything to do at `now`, in
    one read (no lock taken in the usual case, where both are False)."""
    row = await conn.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM suppressed_alerts WHERE tenant_id = $1) AS held,"
        f" EXISTS (SELECT 1 FROM alerts WHERE tenant_id = $1 AND state = 'shelved' AND shelved_until <= {_AT})"
        " OR EXISTS (SELECT 1 FROM alerts WHERE tenant_id = $1 AND state = 'suppressed'"
        f"  AND wellpulse_design_suppression(tenant_id, equipment_id, sensors, requires_running, low_pressure, {_AT})"
        "  IS NULL)"
        " OR EXISTS (SELECT 1 FROM alerts WHERE tenant_id = $1 AND state IN ('open', 'acknowledged')"
        "  AND cleared_at IS NULL AND wellpulse_design_suppression(tenant_id, equipment_id, sensors,"
        f"  requires_running, low_pressure, {_AT}) IS NOT NULL) AS due", tenant_id, now)
    return bool(row["held"]), bool(row["due"])


OOS_COLUMNS = "id, equipment_id, sensor, reason, since, until, created_by, ended_at, ended_by"


async def set_out_of_service(pool: Executor, tenant_id: str, equipment_id: str, sensor: str, *, reason: str,
                             until: datetime | None, actor: str) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
    """Take a sensor out of service (a live one gets the new reason and end); its open alerts are suppressed
    now. Returns (record, events)."""
    async with connection(pool) as conn, conn.transaction():
        await _serialize_tenant_events(conn, tenant_id)
        row = await conn.fetchrow(
            "UPDATE sensor_out_of_service SET reason = $4, until = $5 WHERE tenant_id = $1 AND equipment_id = $2"
            f" AND sensor = $3 AND ended_at IS NULL RETURNING {OOS_COLUMNS}",
            tenant_id, equipment_id, sensor, reason, until)
        if row is None:
            row = await conn.fetchrow(
                "INSERT INTO sensor_out_of_service (tenant_id, equipment_id, sensor, reason, until, created_by)"
                f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING {OOS_COLUMNS}",
                tenant_id, equipment_id, sensor, reason, until, actor)
        return row, await sweep_alarm_states(conn, tenant_id)


async def end_out_of_service(pool: Executor, tenant_id: str, equipment_id: str, sensor: str, *, actor: str,
                             ) -> tuple[asyncpg.Record | None, list[asyncpg.Record]]:
    """Return a sensor to service; its suppressed alerts come back now. (None, []) when it was in service."""
    async with connection(pool) as conn, conn.transaction():
        await _serialize_tenant_events(conn, tenant_id)
        row = await conn.fetchrow(
            "UPDATE sensor_out_of_service SET ended_at = now(), ended_by = $4 WHERE tenant_id = $1"
            f" AND equipment_id = $2 AND sensor = $3 AND ended_at IS NULL RETURNING {OOS_COLUMNS}",
            tenant_id, equipment_id, sensor, actor)
        if row is None:
            return None, []
        return row, await sweep_alarm_states(conn, tenant_id)


async def release_suppressed(pool: Executor, tenant_id: str, *, now: datetime | None = None,
                             ) -> list[asyncpg.Record]:
    """Open the alerts a silence held back whose silence (or maintenance) is over at `now`, end shelves whose
    time is up, and start or end suppression by design (`sweep_alarm_states`); returns their events.

    A held-back row exists only while its condition holds (the models' "resolved" deletes it), so
    each one released is an alert that still applies. It opens now: that is when operators hear of it.
    `now` is housekeeping's clock (a test's `config.ManualClock` ends a silence in no time); None keeps the
    database's time, as the reload after an API change does.
    """
    held, due = await _housekeeping_due(pool, tenant_id, now)
    if not held and not due:
        return []  # the usual case: no lock taken
    async with connection(pool) as conn, conn.transaction():
        await _serialize_tenant_events(conn, tenant_id)
        released = await conn.fetch(
            "DELETE FROM suppressed_alerts WHERE tenant_id = $1"
            f" AND NOT wellpulse_silenced(tenant_id, equipment_id, rule_id, {_AT})"
            " RETURNING equipment_id, rule_id, severity, message, details, suppressed_at",
            tenant_id, now,
        ) if held else []
        events = []
        for row in released:
            alert = await conn.fetchrow(
                f"INSERT INTO alerts (tenant_id, equipment_id, rule_id, state, severity, message, details, opened_at)"
                f" VALUES ($1, $2, $3, 'open', $4, $5, $6, coalesce($7::timestamptz, now()))"
                f" ON CONFLICT (tenant_id, equipment_id, rule_id) WHERE state <> 'resolved' DO NOTHING"
                f" RETURNING {ALERT_COLUMNS}",
                tenant_id, row["equipment_id"], row["rule_id"], row["severity"], row["message"], row["details"], now,
            )
            if alert is None:
                continue  # opened meanwhile by the models themselves
            since = row["suppressed_at"].isoformat()
            events.append(await _insert_event(conn, tenant_id, alert, "opened", "system", alert["opened_at"],
                                              message=f"{row['message']} (held since {since} by a silence"
                                                      " or maintenance)",
                                              details={**(row["details"] or {}), "held_since": since}))
        events += await sweep_alarm_states(conn, tenant_id, now=now)
        return events


async def escalate_after_seconds(conn: Executor, tenant_id: str) -> float | None:
    """The tenant's own escalation delay (tenant setting ``escalate_after_minutes``), or None."""
    minutes = await conn.fetchval(
        "SELECT settings->>'escalate_after_minutes' FROM tenants WHERE id = $1", tenant_id)
    return None if minutes is None else float(minutes) * 60.0


# ---------------------------------------------------------------- verdicts for the models


async def judged_alerts(conn: Executor, tenant_id: str, equipment_id: str, start: datetime,
                        end: datetime) -> list[asyncpg.Record]:
    """The equipment's alerts opened in ``[start, end)`` that an operator gave a verdict (for backtests)."""
    return await conn.fetch(
        "SELECT id, rule_id, opened_at, verdict FROM alerts WHERE tenant_id = $1 AND equipment_id = $2"
        " AND verdict IS NOT NULL AND opened_at >= $3 AND opened_at < $4 ORDER BY opened_at LIMIT 10000",
        tenant_id, equipment_id, start, end)


async def pending_verdicts(pool: Executor, tenant_id: str, equipment_ids: Sequence[str]) -> list[asyncpg.Record]:
    """Verdicts the models of these equipment have not learned yet, oldest first."""
    return await pool.fetch(
        "SELECT id, equipment_id, rule_id, verdict, sensors FROM alerts WHERE tenant_id = $1"
        " AND equipment_id = ANY($2::text[]) AND verdict IS NOT NULL AND verdict_applied_at IS NULL"
        " ORDER BY verdict_at, id", tenant_id, list(equipment_ids))


async def mark_verdicts_applied(pool: Executor, tenant_id: str, alert_ids: Sequence[int]) -> None:
    await pool.execute("UPDATE alerts SET verdict_applied_at = now() WHERE tenant_id = $1 AND id = ANY($2::bigint[])",
                       tenant_id, list(alert_ids))


# ---------------------------------------------------------------- silences


async def get_silence(conn: Executor, tenant_id: str, silence_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {SILENCE_COLUMNS} FROM silences WHERE tenant_id = $1 AND id = $2", tenant_id, silence_id)


async def insert_silence(conn: Executor, tenant_id: str, *, equipment_id: str | None, rule_id: str | None,
                         starts_at: datetime, ends_at: datetime, reason: str, created_by: str) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO silences (tenant_id, equipment_id, rule_id, starts_at, ends_at, reason, created_by)"
        f" VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {SILENCE_COLUMNS}",
        tenant_id, equipment_id, rule_id, starts_at, ends_at, reason, created_by)


async def cancel_silence(conn: Executor, tenant_id: str, silence_id: uuid.UUID, *, actor: str,
                         ) -> asyncpg.Record | None:
    """End a silence now; None when it was already cancelled or over (or does not exist)."""
    return await conn.fetchrow(
        "UPDATE silences SET cancelled_at = now(), cancelled_by = $3"
        " WHERE tenant_id = $1 AND id = $2 AND cancelled_at IS NULL AND ends_at > now()"
        f" RETURNING {SILENCE_COLUMNS}",
        tenant_id, silence_id, actor)



# ---------------------------------------------------------------- KPIs (ISA-18.2 alarm performance)

PERIOD = timedelta(minutes=10)
FLOOD_ABOVE = 10  # openings in one 10-minute period
CHATTER_OPENINGS, CHATTER_WINDOW = 3, timedelta(minutes=1)
STALE_AFTER = timedelta(hours=24)
BAD_ACTORS = 10
# Openings (an alert annunciated: opened, or opened when a suppression ended) in [$2, $3), with the equipment type.
_OPENINGS = (
    "SELECT e.equipment_id, e.rule_id, e.occurred_at, coalesce(q.type, 'other') AS etype"
    " FROM alert_events e LEFT JOIN equipment q ON q.tenant_id = e.tenant_id AND q.id = e.equipment_id"
    " WHERE e.tenant_id = $1 AND e.kind = 'opened' AND e.occurred_at >= $2 AND e.occurred_at < $3")
_ALERTS_OPENED = (
    "SELECT a.*, coalesce(q.type, 'other') AS etype FROM alerts a"
    " LEFT JOIN equipment q ON q.tenant_id = a.tenant_id AND q.id = a.equipment_id"
    " WHERE a.tenant_id = $1 AND a.opened_at >= $2 AND a.opened_at < $3")


async def alert_kpis(conn: Executor, tenant_id: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Alarm KPIs of [start, end) for the tenant (``tenant``) and per equipment type (``by_equipment_type``).

    Openings per 10 minutes (mean over every period of the span, empty ones included, and max) and the share
    of periods in flood (> 10 openings); chattering keys (≥ 3 openings of one equipment and rule within 1
    minute); stale alerts (not resolved, open more than 24 h at the end of the span, or now if earlier); the
    top 10 bad actors (equipment, rule, openings); mean and p90 seconds to acknowledge and to resolve (alerts
    opened in the span); verdicts and precision (real / (real + false_alarm)) per rule and per type.
    """
    periods = max(1, -(-int((end - start).total_seconds()) // int(PERIOD.total_seconds())))
    rate_rows = await conn.fetch(
        f"WITH o AS ({_OPENINGS}), b AS (SELECT etype, date_bin($4::interval, occurred_at, $2) AS period,"
        " count(*) AS n FROM o GROUP BY GROUPING SETS ((period), (etype, period)))"
        " SELECT etype, sum(n)::bigint AS openings, max(n)::bigint AS max_per_period,"
        " count(*) FILTER (WHERE n > $5)::bigint AS flood_periods FROM b GROUP BY etype",
        tenant_id, start, end, PERIOD, FLOOD_ABOVE)
    chatter_rows = await conn.fetch(
        f"WITH o AS ({_OPENINGS}), w AS (SELECT equipment_id, rule_id, etype, count(*) OVER (PARTITION BY"
        " equipment_id, rule_id ORDER BY occurred_at RANGE BETWEEN $4::interval PRECEDING AND CURRENT ROW) AS n"
        " FROM o) SELECT equipment_id, rule_id, etype, max(n)::bigint AS max_openings_per_window FROM w"
        " GROUP BY equipment_id, rule_id, etype HAVING max(n) >= $5 ORDER BY max(n) DESC, equipment_id, rule_id",
        tenant_id, start, end, CHATTER_WINDOW - timedelta(microseconds=1), CHATTER_OPENINGS)
    actor_rows = await conn.fetch(
        f"WITH o AS ({_OPENINGS}), c AS (SELECT equipment_id, rule_id, etype, count(*)::bigint AS openings FROM o"
        " GROUP BY equipment_id, rule_id, etype), r AS (SELECT *, row_number() OVER (ORDER BY openings DESC,"
        " equipment_id, rule_id) AS overall, row_number() OVER (PARTITION BY etype ORDER BY openings DESC,"
        " equipment_id, rule_id) AS in_type FROM c) SELECT * FROM r WHERE overall <= $4 OR in_type <= $4"
        " ORDER BY openings DESC, equipment_id, rule_id",
        tenant_id, start, end, BAD_ACTORS)
    at = min(end, datetime.now(UTC))
    stale_rows = await conn.fetch(
        "SELECT coalesce(q.type, 'other') AS etype, count(*)::bigint AS n FROM alerts a"
        " LEFT JOIN equipment q ON q.tenant_id = a.tenant_id AND q.id = a.equipment_id"
        " WHERE a.tenant_id = $1 AND a.opened_at <= $2::timestamptz - $3::interval"
        " AND (a.resolved_at IS NULL OR a.resolved_at > $2)"
        " GROUP BY GROUPING SETS ((), (coalesce(q.type, 'other')))",
        tenant_id, at, STALE_AFTER)
    time_rows = await conn.fetch(
        f"WITH a AS ({_ALERTS_OPENED}), d AS (SELECT etype,"
        " extract(epoch FROM acknowledged_at - opened_at)::float8 AS ack,"
        " extract(epoch FROM resolved_at - opened_at)::float8 AS res FROM a)"
        " SELECT etype, count(*)::bigint AS alerts, avg(ack) AS ack_mean,"
        " percentile_cont(0.9) WITHIN GROUP (ORDER BY ack) AS ack_p90, count(ack)::bigint AS acknowledged,"
        " avg(res) AS res_mean, percentile_cont(0.9) WITHIN GROUP (ORDER BY res) AS res_p90,"
        " count(res)::bigint AS resolved FROM d GROUP BY GROUPING SETS ((), (etype))",
        tenant_id, start, end)
    verdict_rows = await conn.fetch(
        f"WITH a AS ({_ALERTS_OPENED} AND a.verdict IS NOT NULL) SELECT etype, rule_id,"
        " count(*) FILTER (WHERE verdict = 'real')::bigint AS real,"
        " count(*) FILTER (WHERE verdict = 'false_alarm')::bigint AS false_alarm,"
        " count(*) FILTER (WHERE verdict = 'planned')::bigint AS planned"
        " FROM a GROUP BY GROUPING SETS ((), (etype), (rule_id))",
        tenant_id, start, end)
    return _assemble_kpis(start, end, periods, rate_rows, chatter_rows, actor_rows, stale_rows, time_rows,
                          verdict_rows)


def _precision(row: Any) -> dict[str, Any]:
    judged = row["real"] + row["false_alarm"]
    return {"real": row["real"], "false_alarm": row["false_alarm"], "planned": row["planned"],
            "precision": None if judged == 0 else round(row["real"] / judged, 4)}


def _assemble_kpis(start: datetime, end: datetime, periods: int, rate_rows: list[asyncpg.Record],
                   chatter_rows: list[asyncpg.Record], actor_rows: list[asyncpg.Record],
                   stale_rows: list[asyncpg.Record], time_rows: list[asyncpg.Record],
                   verdict_rows: list[asyncpg.Record]) -> dict[str, Any]:
    def part() -> dict[str, Any]:
        return {"openings": 0, "alerts_per_10min_mean": 0.0, "alerts_per_10min_max": 0, "flood_share": 0.0,
                "flood_periods": 0, "chattering": [], "stale": 0, "bad_actors": [],
                "time_to_acknowledge": {"count": 0, "mean_seconds": None, "p90_seconds": None},
                "time_to_resolve": {"count": 0, "mean_seconds": None, "p90_seconds": None},
                "verdicts": {"real": 0, "false_alarm": 0, "planned": 0, "precision": None}}

    tenant = part()
    by_type: dict[str, dict[str, Any]] = {}

    def of(etype: str | None) -> dict[str, Any]:
        return tenant if etype is None else by_type.setdefault(etype, part())

    for r in rate_rows:
        p = of(r["etype"])
        p.update(openings=r["openings"], alerts_per_10min_mean=round(r["openings"] / periods, 4),
                 alerts_per_10min_max=r["max_per_period"], flood_periods=r["flood_periods"],
                 flood_share=round(r["flood_periods"] / periods, 4))
    for r in chatter_rows:
        item = {"equipment_id": r["equipment_id"], "rule_id": r["rule_id"], "equipment_type": r["etype"],
                "max_openings_per_minute": r["max_openings_per_window"]}
        tenant["chattering"].append(item)
        of(r["etype"])["chattering"].append(item)
    for r in actor_rows:
        item = {"equipment_id": r["equipment_id"], "rule_id": r["rule_id"], "equipment_type": r["etype"],
                "count": r["openings"]}
        if r["overall"] <= BAD_ACTORS:
            tenant["bad_actors"].append(item)
        if r["in_type"] <= BAD_ACTORS:
            of(r["etype"])["bad_actors"].append(item)
    for r in stale_rows:
        of(r["etype"])["stale"] = r["n"]
    for r in time_rows:
        p = of(r["etype"])
        for key, prefix, count in (("time_to_acknowledge", "ack", "acknowledged"),
                                   ("time_to_resolve", "res", "resolved")):
            mean, p90 = r[f"{prefix}_mean"], r[f"{prefix}_p90"]
            p[key] = {"count": r[count], "mean_seconds": None if mean is None else round(mean, 3),
                      "p90_seconds": None if p90 is None else round(p90, 3)}
    by_rule = {}
    for r in verdict_rows:
        if r["rule_id"] is not None:
            by_rule[r["rule_id"]] = _precision(r)
        else:
            of(r["etype"])["verdicts"] = _precision(r)
    return {"from": start, "to": end, "periods": periods, "tenant": tenant,
            "by_equipment_type": dict(sorted(by_type.items())), "precision_by_rule": dict(sorted(by_rule.items()))}
