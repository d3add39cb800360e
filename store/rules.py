"""The alert rules repository (``alert_rules``): the API manages them, the actors read the enabled ones
(`list_rules`).

The severity has a column of its own; rules written before it existed keep theirs in ``params``,
so reads take the column, else params, else the rules' default ("warning").
"""

from typing import Any

import asyncpg

from schema.severity import SEVERITIES
from store.db import Executor
from store.listing import FieldSpec, ResourceSpec

SEVERITY_SQL = "coalesce(severity, params->>'severity', 'warning')"
PARAMS_SQL = "params - 'severity'"
RULE_COLUMNS = (
    f"id, CASE WHEN name = '' THEN id ELSE name END AS name, description, kind, {SEVERITY_SQL} AS severity,"
    f" equipment_id, equipment_type, enabled, {PARAMS_SQL} AS params, created_by, created_at, updated_at"
)
RULES = ResourceSpec(
    name="rules", from_sql="alert_rules", default_sort="id", deleted_column="deleted_at",
    fields=(
        FieldSpec("id", "id"),
        FieldSpec("name", "CASE WHEN name = '' THEN id ELSE name END"),
        FieldSpec("description", "description", sortable=False),
        FieldSpec("kind", "kind", "enum", enum=("threshold", "rate_of_change", "stale_data", "stuck_sensor",
                                                 "anomaly", "failure_risk")),
        FieldSpec("severity", SEVERITY_SQL, "enum", enum=SEVERITIES),
        FieldSpec("equipment_id", "equipment_id"),
        FieldSpec("equipment_type", "equipment_type", "enum",
                  enum=("pump_jack", "compressor", "separator", "tank_battery", "meter", "other")),
        FieldSpec("enabled", "enabled", "bool"),
        FieldSpec("params", PARAMS_SQL, filterable=False, sortable=False),
        FieldSpec("created_by", "created_by"),
        FieldSpec("created_at", "created_at", "timestamp"),
        FieldSpec("updated_at", "updated_at", "timestamp"),
    ),
)


async def get_rule(conn: asyncpg.Connection, tenant_id: str, rule_id: str, *, lock: bool = False,
                   ) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {RULE_COLUMNS} FROM alert_rules WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"
        + (" FOR UPDATE" if lock else ""),
        tenant_id, rule_id,
    )


async def insert_rule(conn: asyncpg.Connection, tenant_id: str, values: dict[str, Any]) -> asyncpg.Record | None:
    """A new rule; a deleted rule of the same id is replaced. None when a live rule holds the id."""
    return await conn.fetchrow(
        "INSERT INTO alert_rules (tenant_id, id, name, description, kind, severity, equipment_id, equipment_type,"
        " enabled, params, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        " ON CONFLICT (tenant_id, id) DO UPDATE SET name = EXCLUDED.name, description = EXCLUDED.description,"
        " kind = EXCLUDED.kind, severity = EXCLUDED.severity, equipment_id = EXCLUDED.equipment_id,"
        " equipment_type = EXCLUDED.equipment_type, enabled = EXCLUDED.enabled, params = EXCLUDED.params,"
        " created_by = EXCLUDED.created_by, created_at = now(), updated_at = now(), deleted_at = NULL"
        " WHERE alert_rules.deleted_at IS NOT NULL"
        f" RETURNING {RULE_COLUMNS}",
        tenant_id, values["id"], values["name"], values["description"], values["kind"], values["severity"],
        values["equipment_id"], values["equipment_type"], values["enabled"], values["params"], values["created_by"],
    )


async def update_rule(conn: asyncpg.Connection, tenant_id: str, rule_id: str, values: dict[str, Any],
                      ) -> asyncpg.Record:
    return await conn.fetchrow(
        "UPDATE alert_rules SET name = $3, description = $4, severity = $5, equipment_id = $6, equipment_type = $7,"
        " enabled = $8, params = $9, updated_at = now() WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"
        f" RETURNING {RULE_COLUMNS}",
        tenant_id, rule_id, values["name"], values["description"], values["severity"], values["equipment_id"],
        values["equipment_type"], values["enabled"], values["params"],
    )


async def delete_rule(conn: asyncpg.Connection, tenant_id: str, rule_id: str) -> asyncpg.Record | None:
    """Soft delete; returns the rule as it was, or None when there is no live rule of that id."""
    return await conn.fetchrow(
        "UPDATE alert_rules SET deleted_at = now(), updated_at = now()"
        " WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"
        f" RETURNING {RULE_COLUMNS}",
        tenant_id, rule_id,
    )


async def list_rules(pool: Executor, tenant_id: str) -> list[asyncpg.Record]:
    """Enabled rules in the form `models.build_rule` takes: the severity column, when set, goes into params."""
    return await pool.fetch(
        "SELECT id, equipment_id, equipment_type, kind,"
        " CASE WHEN severity IS NULL THEN params ELSE params || jsonb_build_object('severity', severity) END"
        " AS params FROM alert_rules"
        " WHERE tenant_id = $1 AND enabled AND deleted_at IS NULL ORDER BY id",
        tenant_id,
    )
