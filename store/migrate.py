"""Migration runner (psycopg): applies ``schema/sql/NNN_*.sql`` once each, in order.

Files ending in ``.timescale.sql`` apply only where the TimescaleDB extension can be
created; the flavour in use is recorded in ``wellpulse_meta`` and reported by /health.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

SQL_DIR = Path(__file__).resolve().parent.parent / "schema" / "sql"
TIMESCALE = "timescaledb"
POSTGRES = "postgresql"
_MIGRATION_LOCK = 0x57E11_0001  # pg_advisory_lock key: one migrator at a time
# Four files once shared the number 006 (and none had 012): they were renumbered, in the order they were always
# applied. `schema_migrations` of a database migrated before, or restored from a backup taken before, still holds
# the old names; they are renamed before the run so that nothing is applied twice.
RENAMED_MIGRATIONS: dict[str, str] = {
    "006_readings_1h.timescale.sql": "007_readings_1h.timescale.sql",
    "006_readings_1h_index.timescale.sql": "008_readings_1h_index.timescale.sql",
    "006_readings_hourly.sql": "009_readings_hourly.sql",
    "007_rules_alerts.sql": "010_rules_alerts.sql",
    "008_predictions.sql": "011_predictions.sql",
    "009_sync.sql": "012_sync.sql",
    "010_sensitivity.sql": "013_sensitivity.sql",
    "011_alarm_management.sql": "014_alarm_management.sql",
    "013_hardening.sql": "015_hardening.sql",
}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MigrationResult:
    flavour: str
    applied: list[str]
    timescale_version: str | None


def _try_enable_timescale(conn: psycopg.Connection) -> str | None:
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    if row is None:
        return None
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        # Installed but not preloaded (shared_preload_libraries): fall back, loudly.
        log.warning("timescaledb is installed but cannot be enabled (%s); using plain PostgreSQL", exc)
        return None
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return row[0] if row else None


def ensure_app_role(conn: psycopg.Connection, user: str, password: str | None) -> None:
    """The role the application connects as: it can log in and nothing more.

    No SUPERUSER, no BYPASSRLS, not the owner of any table: row-level security applies
    to it. Its privileges are granted in `grant_app_role` after every migration run.
    """
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    query = sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE").format(
        sql.Identifier(user))
    if password is not None:
        query = query + sql.SQL(" PASSWORD {}").format(sql.Literal(password))
    conn.execute(query)


def grant_app_role(conn: psycopg.Connection, user: str) -> None:
    """What the app may touch: rows of its tables (RLS filters them), never the past of audit_log or field_events."""
    role = sql.Identifier(user)
    dbname = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]  # always one row
    for statement in (
        "GRANT CONNECT ON DATABASE {db} TO {role}",
        # No temporary objects: they are what a definer function's search path could be tricked into using.
        "REVOKE TEMPORARY ON DATABASE {db} FROM PUBLIC",
        "REVOKE TEMPORARY ON DATABASE {db} FROM {role}",
        "GRANT USAGE ON SCHEMA public TO {role}",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
        "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {role}",
        "REVOKE UPDATE, DELETE, TRUNCATE ON audit_log, field_events FROM {role}",
        "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON schema_migrations, wellpulse_meta FROM {role}",
    ):
        conn.execute(sql.SQL(statement).format(role=role, db=sql.Identifier(dbname)))


def migrate(database_url: str, *, retention_days: int = 365, compress_after_days: int = 7,
            app_user: str = "wellpulse_app", app_password: str | None = None) -> MigrationResult:
    """Apply pending migrations; safe to run concurrently and repeatedly."""
    if retention_days < 3:
        # The 1-minute aggregate refreshes the last 2 days; retention must not cut into that window.
        raise ValueError("retention_days must be at least 3")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            ensure_app_role(conn, app_user, app_password)
            ts_version = _try_enable_timescale(conn)
            flavour = TIMESCALE if ts_version else POSTGRES
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            _rename_recorded_migrations(conn)
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            applied: list[str] = []
            for path in sorted(SQL_DIR.glob("*.sql")):
                if path.name in done or (path.name.endswith(".timescale.sql") and flavour != TIMESCALE):
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (path.name,))
                applied.append(path.name)
            if flavour == TIMESCALE:
                _apply_timescale_policies(conn, retention_days, compress_after_days)
            grant_app_role(conn, app_user)
            conn.execute(
                "INSERT INTO wellpulse_meta (key, value) VALUES ('storage_flavour', %s)"
                " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (flavour,),
            )
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    log.info("storage: %s%s; migrations applied: %s", flavour,
             f" {ts_version}" if ts_version else "", applied or "none pending")
    return MigrationResult(flavour=flavour, applied=applied, timescale_version=ts_version)


def _rename_recorded_migrations(conn: psycopg.Connection) -> None:
    """Give the migrations recorded under an old name (`RENAMED_MIGRATIONS`) their new one, keeping when they
    were applied. Called under the migration lock; one transaction, so a run sees all of them renamed or none."""
    with conn.transaction():
        for old, new in RENAMED_MIGRATIONS.items():
            conn.execute(
                "UPDATE schema_migrations SET version = %s WHERE version = %s"
                " AND NOT EXISTS (SELECT 1 FROM schema_migrations WHERE version = %s)", (new, old, new))
        # Should both names be recorded (a hand-edited table), the new one stands.
        conn.execute("DELETE FROM schema_migrations WHERE version = ANY(%s)", (list(RENAMED_MIGRATIONS),))


def _apply_timescale_policies(conn: psycopg.Connection, retention_days: int, compress_after_days: int) -> None:
    with conn.transaction():
        conn.execute("SELECT remove_retention_policy('readings', if_exists => true)")
        conn.execute(
            "SELECT add_retention_policy('readings', make_interval(days => %s))", (retention_days,)
        )
        conn.execute("SELECT remove_compression_policy('readings', if_exists => true)")
        conn.execute(
            "SELECT add_compression_policy('readings', make_interval(days => %s))", (compress_after_days,)
        )


def storage_flavour(database_url: str) -> str:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT value FROM wellpulse_meta WHERE key = 'storage_flavour'").fetchone()
        return row[0] if row else POSTGRES
